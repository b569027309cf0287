package commission

import (
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/provisiond/provisiond/internal/initramfs"
)

// ImageOptions say what goes into a commissioning image.
type ImageOptions struct {
	// Binary is provisiond's own static binary: the image's /init.
	Binary string
	// Tree is the kernel's modules (OpenTree).
	Tree *Tree
	// Modules are the drivers to carry, with their dependencies
	// (DefaultModules when empty).
	Modules []string
	// FirmwareDirs are searched, in order, for the firmware the modules
	// name (Debian's /lib/firmware with the firmware-* packages).
	FirmwareDirs []string
	// Shell is a static busybox, carried as /bin/busybox for holds ("":
	// none).
	Shell string
}

// Manifest says what an image holds and lacks.
type Manifest struct {
	// Kernel is the modules' kernel version.
	Kernel string `json:"kernel"`
	// Modules are loaded in this order by /init.
	Modules []string `json:"modules"`
	// Missing are drivers asked for that this kernel has no module of.
	Missing []string `json:"missing,omitempty"`
	// Firmware are the firmware files carried.
	Firmware []string `json:"firmware,omitempty"`
	// NoFirmware are the firmware files modules name that were not
	// found (a NIC that needs one will not come up: install Debian's
	// firmware-* package for it).
	NoFirmware []string `json:"no_firmware,omitempty"`
	// PCI are the PCI aliases of the modules carried
	// (pci:v00008086d000010D3sv*... -> e1000e): which NICs the image
	// drives.
	PCI map[string]string `json:"pci,omitempty"`
	// Shell says whether the image carries a shell for holds, or why
	// not.
	Shell string `json:"shell,omitempty"`
	// Bytes is the compressed image's size.
	Bytes int64 `json:"bytes"`

	entry string // the asset cache entry it was read from
}

// ModulesList is where the image keeps the load order, one module path
// (under /lib/modules/VERSION) per line.
const ModulesList = "/etc/provisiond/modules"

// BuildImage writes the commissioning initramfs (newc cpio, gzip) to w:
// /init is the binary; the modules (each after its dependencies) and
// their firmware as the kernel expects them under /lib; the load order in
// ModulesList.
func BuildImage(w io.Writer, o ImageOptions) (*Manifest, error) {
	if o.Binary == "" {
		return nil, fmt.Errorf("building the commissioning image: no provisiond binary for /init")
	}
	if err := Static(o.Binary); err != nil {
		return nil, fmt.Errorf("building the commissioning image: %w", err)
	}
	bin, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("building the commissioning image: reading provisiond's binary: %w", err)
	}
	names := o.Modules
	if len(names) == 0 {
		names = DefaultModules()
	}
	res, err := o.Tree.Resolve(names)
	if err != nil {
		return nil, fmt.Errorf("building the commissioning image: %w", err)
	}
	man := &Manifest{Kernel: o.Tree.Version, Missing: res.Missing}
	files := []initramfs.File{{Path: "/init", Mode: 0o755, Data: bin}}
	var order []string
	seenFW := map[string]bool{}
	for _, m := range res.Modules {
		data, err := os.ReadFile(path.Join(o.Tree.Dir, m.Path))
		if err != nil {
			return nil, fmt.Errorf("building the commissioning image: %w", err)
		}
		files = append(files, initramfs.File{Path: path.Join("/lib/modules", o.Tree.Version, m.Path), Mode: 0o644, Data: data})
		order = append(order, m.Path)
		man.Modules = append(man.Modules, m.Name)
		for _, a := range m.Aliases {
			if strings.HasPrefix(a, "pci:") {
				if man.PCI == nil {
					man.PCI = map[string]string{}
				}
				man.PCI[a] = m.Name
			}
		}
		for _, fw := range m.Firmware {
			if seenFW[fw] {
				continue
			}
			seenFW[fw] = true
			p, ok := findFirmware(o.FirmwareDirs, fw)
			if !ok {
				man.NoFirmware = append(man.NoFirmware, fw)
				continue
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("building the commissioning image: %w", err)
			}
			files = append(files, initramfs.File{Path: path.Join("/lib/firmware", fw), Mode: 0o644, Data: data})
			man.Firmware = append(man.Firmware, fw)
		}
	}
	files = shell(files, man, o.Shell)
	files = append(files, initramfs.File{Path: ModulesList, Mode: 0o644, Data: []byte(strings.Join(order, "\n") + "\n")})
	cw := &countWriter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if err := initramfs.Write(zw, files); err != nil {
		return nil, fmt.Errorf("building the commissioning image: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("building the commissioning image: %w", err)
	}
	man.Bytes = cw.n
	return man, nil
}

// shell adds the static busybox at path as /bin/busybox (for holds), or
// says in the manifest why not.
func shell(files []initramfs.File, man *Manifest, path string) []initramfs.File {
	if path == "" {
		return files
	}
	if err := Static(path); err != nil {
		man.Shell = "none: " + err.Error()
		return files
	}
	data, err := os.ReadFile(path)
	if err != nil {
		man.Shell = "none: " + err.Error()
		return files
	}
	man.Shell = "/bin/busybox from " + path
	return append(files, initramfs.File{Path: "/bin/busybox", Mode: 0o755, Data: data})
}

// Static checks that path is a statically linked executable (no program
// interpreter): in the image there is no C library to load.
func Static(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: the commissioning image needs a static binary (build provisiond with CGO_ENABLED=0, as make build does; for the shell, apt-get install busybox-static)", path)
		}
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
