// Package commission builds the commissioning image: an initramfs whose
// /init is provisiond's own binary, with the kernel modules the homelab's
// NICs and disk controllers need (and their dependencies and firmware),
// taken from the Debian kernel the operator installed.
package commission

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultModules are the drivers of this homelab's NICs and disk
// controllers (homelab.md): Emulex be2net (BL460c Gen8 554FLB), Broadcom
// bnx2 (x3550 M3), bnx2x and tg3, Intel e1000e, igb and ixgbe, virtio (the
// lab's QEMU machines, with their RNG: the DHCP client needs random
// numbers, and a CPU without RDRAND has few so early), HP Smart Array (hpsa: P220i), LSI megaraid_sas and
// mpt3sas, AHCI and NVMe.
func DefaultModules() []string {
	return []string{"be2net", "bnx2", "bnx2x", "tg3", "e1000e", "igb", "ixgbe",
		"virtio_net", "virtio_blk", "virtio_scsi", "virtio_pci", "virtio_rng", "hpsa", "megaraid_sas", "mpt3sas", "ahci", "sd_mod", "nvme"}
}

// Module is one kernel module as the image carries it.
type Module struct {
	// Name is the module's name (underscores: virtio_net).
	Name string
	// Path is its file, relative to the kernel's modules directory.
	Path string
	// Depends are the modules it needs loaded first.
	Depends []string
	// Firmware are the firmware files it may ask for (relative to
	// /lib/firmware).
	Firmware []string
	// SoftDeps are what it wants loaded first without linking to it
	// (softdep=pre:), by module name or alias: libcrc32c needs a crc32c
	// implementation, which the kernel would load through modprobe.
	SoftDeps []string
	// Aliases are the names it also answers to (alias=).
	Aliases []string
}

// modName normalises a module name as the kernel does: - and _ are one.
func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// Tree is a kernel's modules directory (/lib/modules/VERSION, or the same
// unpacked from Debian's linux-image package), indexed by module name.
type Tree struct {
	// Dir is the directory; Version its base name.
	Dir, Version string
	files        map[string]string // name -> path relative to Dir
	aliases      map[string]string // alias -> name, read when first needed
}

// OpenTree indexes the .ko files under dir by name. It reads no module
// yet: a module's information is read when it is resolved.
func OpenTree(dir string) (*Tree, error) {
	t := &Tree{Dir: dir, Version: filepath.Base(filepath.Clean(dir)), files: map[string]string{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".ko") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		t.files[modName(strings.TrimSuffix(d.Name(), ".ko"))] = rel
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the kernel modules in %s: %w", dir, err)
	}
	if len(t.files) == 0 {
		return nil, fmt.Errorf("%s holds no kernel module (.ko): is it /lib/modules/VERSION of an installed Debian kernel (apt-get install linux-image-amd64)? Compressed modules (.ko.xz) are not read", dir)
	}
	return t, nil
}

// Len is the number of modules in the tree.
func (t *Tree) Len() int { return len(t.files) }

// Info reads a module's name, dependencies and firmware from its .modinfo
// section.
func (t *Tree) Info(name string) (*Module, error) {
	rel, ok := t.files[modName(name)]
	if !ok {
		return nil, fmt.Errorf("module %s: not in %s", name, t.Dir)
	}
	f, err := elf.Open(filepath.Join(t.Dir, rel))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", name, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s (%s): no .modinfo section: not a kernel module", name, rel)
	}
	raw, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: reading .modinfo: %w", name, err)
	}
	m := &Module{Name: modName(name), Path: rel}
	for _, kv := range bytes.Split(raw, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			m.Name = modName(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					m.Depends = append(m.Depends, modName(d))
				}
			}
		case "firmware":
			m.Firmware = append(m.Firmware, v)
		case "softdep":
			if pre, ok := strings.CutPrefix(strings.TrimSpace(v), "pre:"); ok {
				pre, _, _ = strings.Cut(pre, "post:")
				m.SoftDeps = append(m.SoftDeps, strings.Fields(pre)...)
			}
		case "alias":
			m.Aliases = append(m.Aliases, v)
		}
	}
	return m, nil
}

// Resolution is what resolving a module list found.
type Resolution struct {
	// Modules are the modules to load, each after its dependencies.
	Modules []*Module
	// Missing are the modules asked for that the kernel does not have
	// (built in, or not built: nothing to load).
	Missing []string
}

// Resolve returns the modules named and everything they depend on, in an
// order that loads dependencies first.
func (t *Tree) Resolve(names []string) (*Resolution, error) {
	res := &Resolution{}
	state := map[string]int{} // 1: being visited, 2: done
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		name = modName(name)
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(path, name), " -> "))
		}
		if _, ok := t.files[name]; !ok {
			if len(path) == 0 {
				res.Missing = append(res.Missing, name)
				state[name] = 2
				return nil
			}
			return fmt.Errorf("module %s needs %s, which is not in %s", path[len(path)-1], name, t.Dir)
		}
		state[name] = 1
		m, err := t.Info(name)
		if err != nil {
			return err
		}
		for _, d := range m.Depends {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		for _, d := range m.SoftDeps {
			if real, ok := t.lookup(d); ok && state[real] == 0 {
				if err := visit(real, append(path, name)); err != nil {
					return err
				}
			}
		}
		state[name] = 2
		res.Modules = append(res.Modules, m)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// lookup finds a module by name, else by alias (the aliases of every
// module are read the first time one is needed).
func (t *Tree) lookup(name string) (string, bool) {
	if _, ok := t.files[modName(name)]; ok {
		return modName(name), true
	}
	if t.aliases == nil {
		t.aliases = map[string]string{}
		for n := range t.files {
			m, err := t.Info(n)
			if err != nil {
				continue
			}
			for _, a := range m.Aliases {
				if _, taken := t.aliases[a]; !taken || strings.HasSuffix(n, "_generic") {
					t.aliases[a] = n
				}
			}
		}
	}
	n, ok := t.aliases[name]
	return n, ok
}

// findFirmware looks a firmware file up in dirs (the first that has it).
func findFirmware(dirs []string, name string) (string, bool) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, true
		}
	}
	return "", false
}
