package commission

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/assets"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
)

// Source says what the commissioning image is made of.
type Source struct {
	// KernelDir holds boot/vmlinuz-VERSION and lib/modules/VERSION: "/"
	// for the Debian kernel installed on the daemon's host, or a
	// linux-image package unpacked anywhere (dpkg-deb -x).
	KernelDir string
	// Binary is provisiond's own binary (static: it is the image's
	// /init).
	Binary string
	// Drivers are the modules to carry (DefaultModules when empty).
	Drivers []string
	// FirmwareDirs are searched for the modules' firmware.
	FirmwareDirs []string
	// Shell is a static busybox the image carries for holds ("" none).
	Shell string
}

// Prefix is where the images live in the asset cache.
const Prefix = "commission"

// Provider builds the commissioning image into the asset cache, once per
// kernel and binary, and gives the commission profile its paths
// ({{extra "commission" "kernel"}}, "initrd"). It is safe for concurrent
// use.
type Provider struct {
	src   Source
	cache *assets.Cache
	log   *slog.Logger

	mu     sync.Mutex
	binSum string // the binary's sha256, read once: it is the running one
	// man is the manifest (image.json) of the image built last, read
	// once per image.
	man *Manifest
}

// NewProvider returns a Provider.
func NewProvider(src Source, cache *assets.Cache, log *slog.Logger) *Provider {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if src.KernelDir == "" {
		src.KernelDir = "/"
	}
	return &Provider{src: src, cache: cache, log: log}
}

// Name implements booter.Extra.
func (p *Provider) Name() string { return "commission" }

// Wants implements booter.Extra.
func (p *Provider) Wants(pr *profile.Profile) bool { return slices.Contains(pr.Uses, "commission") }

// Values implements booter.Extra: the image's kernel and initrd below the
// assets directory, or a NotReadyError while it is built.
func (p *Provider) Values(_ context.Context, _ *inventory.Machine, _ map[string]string) (map[string]string, error) {
	k, err := p.plan()
	if err != nil {
		return nil, err
	}
	if man, ok := p.cache.Complete(k.entry); ok {
		return map[string]string{"kernel": k.entry + "/vmlinuz", "initrd": k.entry + "/initrd.img",
			"kernel_version": k.version, "modules": man.Meta["modules"]}, nil
	}
	if at, err := p.cache.LastFailure(k.entry); err != nil && time.Since(at) < time.Minute {
		return nil, fmt.Errorf("the commissioning image could not be built: %w", err)
	}
	p.start(k)
	return nil, &profile.NotReadyError{What: "building the commissioning image for kernel " + k.version, RetryAfter: 5 * time.Second}
}

// BootNIC checks that the image drives the NIC a machine boots from, by
// iPXE's busid fact (01:80:86:10:0e). ok is false only when the image is
// built and none of its modules drives that PCI device; detail says which.
func (p *Provider) BootNIC(busid string) (detail string, ok bool) {
	vendor, device, isPCI := ParseBusID(busid)
	if !isPCI {
		return "", true
	}
	k, err := p.plan()
	if err != nil {
		return "", true
	}
	if _, done := p.cache.Complete(k.entry); !done {
		return "", true
	}
	man := p.manifest(k.entry)
	if man == nil || len(man.PCI) == 0 {
		return "", true
	}
	id := fmt.Sprintf("%04x:%04x", vendor, device)
	if mod := man.Driver(vendor, device); mod != "" {
		return "PCI " + id + " is driven by " + mod, true
	}
	return "no driver in the commissioning image for the boot NIC, PCI " + id + ": add its module to commission.drivers; the machine will power itself off", false
}

// manifest is entry's image.json, read once (nil when unreadable).
func (p *Provider) manifest(entry string) *Manifest {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.man != nil && p.man.entry == entry {
		return p.man
	}
	raw, err := os.ReadFile(p.cache.File(entry, "image.json"))
	if err != nil {
		return nil
	}
	var man Manifest
	if json.Unmarshal(raw, &man) != nil {
		return nil
	}
	man.entry = entry
	p.man = &man
	return p.man
}

// Pull starts building the image unless it is cached (nil job then),
// for provisiond assets pull commission; info describes it.
func (p *Provider) Pull() (*assets.Job, map[string]string, error) {
	k, err := p.plan()
	if err != nil {
		return nil, nil, err
	}
	info := map[string]string{"entry": k.entry, "kernel": k.version, "modules_from": k.modules, "path": "/assets/" + k.entry}
	if _, ok := p.cache.Complete(k.entry); ok {
		return nil, info, nil
	}
	return p.start(k), info, nil
}

// key is one image: its entry in the cache and what it is built from.
type key struct {
	entry, version, vmlinuz, modules string
}

// plan finds the kernel and names the image: the kernel's version, and a
// hash of the kernel, the binary, the drivers and the shell.
func (p *Provider) plan() (key, error) {
	vmlinuz, modules, version, err := FindKernel(p.src.KernelDir)
	if err != nil {
		return key{}, err
	}
	sum, err := p.binarySum()
	if err != nil {
		return key{}, err
	}
	st, err := os.Stat(vmlinuz)
	if err != nil {
		return key{}, err
	}
	h := sha256.New()
	fmt.Fprintln(h, version, st.Size(), st.ModTime().UnixNano(), sum, strings.Join(p.drivers(), ","), p.src.Shell, strings.Join(p.src.FirmwareDirs, ","))
	return key{entry: Prefix + "/" + version + "-" + hex.EncodeToString(h.Sum(nil))[:12], version: version, vmlinuz: vmlinuz, modules: modules}, nil
}

func (p *Provider) drivers() []string {
	if len(p.src.Drivers) > 0 {
		return p.src.Drivers
	}
	return DefaultModules()
}

func (p *Provider) binarySum() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.binSum != "" {
		return p.binSum, nil
	}
	if p.src.Binary == "" {
		return "", fmt.Errorf("the daemon could not find its own binary (the commissioning image's /init): commissioning is not available")
	}
	if err := Static(p.src.Binary); err != nil {
		return "", err
	}
	f, err := os.Open(p.src.Binary)
	if err != nil {
		return "", fmt.Errorf("reading provisiond's binary for the commissioning image: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	p.binSum = hex.EncodeToString(h.Sum(nil))
	return p.binSum, nil
}

func (p *Provider) start(k key) *assets.Job {
	meta := map[string]string{"kind": "commission", "version": k.version, "kernel": k.version, "modules_from": k.modules}
	return p.cache.Build(k.entry, meta, func(dir string) error {
		t0 := time.Now()
		tree, err := OpenTree(k.modules)
		if err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(dir, "initrd.img"))
		if err != nil {
			return err
		}
		man, err := BuildImage(f, ImageOptions{Binary: p.src.Binary, Tree: tree, Modules: p.src.Drivers, FirmwareDirs: p.src.FirmwareDirs, Shell: p.src.Shell})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := copyFile(k.vmlinuz, filepath.Join(dir, "vmlinuz")); err != nil {
			return err
		}
		raw, _ := json.MarshalIndent(man, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, "image.json"), raw, 0o644); err != nil {
			return err
		}
		meta["modules"] = strconv.Itoa(len(man.Modules))
		meta["missing"] = strings.Join(man.Missing, ",")
		meta["no_firmware"] = strconv.Itoa(len(man.NoFirmware))
		p.log.Info("commissioning image built", "entry", k.entry, "kernel", k.version, "modules", len(man.Modules),
			"missing", man.Missing, "firmware", len(man.Firmware), "no_firmware", len(man.NoFirmware), "bytes", man.Bytes, "took", time.Since(t0).Round(time.Millisecond))
		p.prune(k.entry)
		return nil
	})
}

// prune removes the images built for other kernels or binaries.
func (p *Provider) prune(keep string) {
	old, err := p.cache.Entries(Prefix)
	if err != nil {
		return
	}
	for _, m := range old {
		if m.Entry != keep && m.Meta["kind"] == "commission" {
			if err := p.cache.Remove(m.Entry); err == nil {
				p.log.Info("old commissioning image removed", "entry", m.Entry)
			}
		}
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// FindKernel finds the newest kernel in dir that has its modules:
// boot/vmlinuz-VERSION with lib/modules/VERSION.
func FindKernel(dir string) (vmlinuz, modules, version string, err error) {
	found, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	var versions []string
	for _, f := range found {
		v := strings.TrimPrefix(filepath.Base(f), "vmlinuz-")
		if st, err := os.Stat(filepath.Join(dir, "lib", "modules", v)); err == nil && st.IsDir() {
			versions = append(versions, v)
		}
	}
	if len(versions) == 0 {
		return "", "", "", fmt.Errorf("no kernel with its modules in %s (boot/vmlinuz-VERSION and lib/modules/VERSION): apt-get install linux-image-amd64, or set commission.kernel_dir to a linux-image package unpacked with dpkg-deb -x", dir)
	}
	sort.Slice(versions, func(i, j int) bool { return versionLess(versions[i], versions[j]) })
	v := versions[len(versions)-1]
	return filepath.Join(dir, "boot", "vmlinuz-"+v), filepath.Join(dir, "lib", "modules", v), v, nil
}

// versionLess compares kernel versions (6.1.0-9-amd64 < 6.1.0-10-amd64)
// by their numbers in turn.
func versionLess(a, b string) bool {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' })
	}
	x, y := split(a), split(b)
	for i := 0; i < len(x) && i < len(y); i++ {
		xn, xerr := strconv.Atoi(x[i])
		yn, yerr := strconv.Atoi(y[i])
		switch {
		case xerr == nil && yerr == nil && xn != yn:
			return xn < yn
		case (xerr != nil || yerr != nil) && x[i] != y[i]:
			return x[i] < y[i]
		}
	}
	return len(x) < len(y)
}
