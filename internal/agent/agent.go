// Package agent gathers a Linux host's hardware (DMI/SMBIOS identity, CPUs,
// DIMMs, disks, NICs) from /sys and /proc, for provisiond agent report.
// Reading serials, UUIDs and DIMMs needs root; without it the report has
// what an unprivileged user can read.
package agent

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/provisiond/provisiond/internal/inventory"
)

// Host says where to read from. Root "" means "/" (a test may point it at
// a copy of another machine's /sys and /proc).
type Host struct {
	Root string
}

func (h Host) path(p string) string { return filepath.Join(h.root(), p) }

func (h Host) root() string {
	if h.Root == "" {
		return "/"
	}
	return h.Root
}

func (h Host) read(p string) string {
	b, err := os.ReadFile(h.path(p))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), ""))
}

// Gather reads the host's hardware. Missing pieces are left empty; the
// notes say what could not be read and why.
func (h Host) Gather() (inventory.Hardware, []string) {
	var a inventory.Hardware
	var notes []string
	a.Vendor = h.read("sys/class/dmi/id/sys_vendor")
	a.Model = h.read("sys/class/dmi/id/product_name")
	a.Serial = h.read("sys/class/dmi/id/product_serial")
	a.UUID = strings.ToLower(h.read("sys/class/dmi/id/product_uuid"))
	a.BIOSVersion = h.read("sys/class/dmi/id/bios_version")
	if a.Serial == "" && a.Vendor != "" && os.Geteuid() != 0 {
		notes = append(notes, "serial and UUID need root (DMI)")
	}
	a.CPUs = h.cpus()
	dimms, err := h.dimms()
	if err != nil {
		notes = append(notes, "DIMMs: "+err.Error())
	}
	a.DIMMs = dimms
	if raw, err := h.smbios(); err == nil {
		if loc, ok := ParseLocator(raw); ok {
			// The OA's name for the enclosure: machine adopt's and
			// matching's bay.
			a.Enclosure, a.Bay = loc.Enclosure, loc.Bay
		}
	}
	if len(a.DIMMs) == 0 {
		a.MemoryGB = h.memTotalGB()
	}
	a.Disks = h.disks()
	a.NICs = h.nics()
	for _, n := range a.NICs {
		if n.MAC != "" {
			return a, notes
		}
	}
	notes = append(notes, "no physical NIC found")
	return a, notes
}

func (h Host) cpus() []inventory.CPU {
	f, err := os.Open(h.path("proc/cpuinfo"))
	if err != nil {
		return nil
	}
	defer f.Close()
	type sock struct {
		model          string
		cores, threads int
	}
	socks := map[int]*sock{}
	cur := map[string]string{}
	flush := func() {
		if len(cur) == 0 {
			return
		}
		id, _ := strconv.Atoi(cur["physical id"])
		s := socks[id]
		if s == nil {
			s = &sock{model: cur["model name"]}
			socks[id] = s
		}
		s.threads++
		if c, err := strconv.Atoi(cur["cpu cores"]); err == nil {
			s.cores = c
		}
		cur = map[string]string{}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok {
			cur[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	flush()
	ids := make([]int, 0, len(socks))
	for id := range socks {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	var out []inventory.CPU
	for i, id := range ids {
		s := socks[id]
		if s.cores == 0 {
			s.cores = s.threads
		}
		out = append(out, inventory.CPU{Socket: i + 1, Model: s.model, Cores: s.cores, Threads: s.threads})
	}
	return out
}

func (h Host) memTotalGB() float64 {
	for _, line := range strings.Split(h.read("proc/meminfo"), "\n") {
		if strings.HasPrefix(line, "MemTotal:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return math.Round(kb/1024/1024*10) / 10
			}
		}
	}
	return 0
}

// dimms reads SMBIOS type 17 (Memory Device) structures.
func (h Host) dimms() ([]inventory.DIMM, error) {
	raw, err := h.smbios()
	if err != nil {
		return nil, err
	}
	return ParseDIMMs(raw), nil
}

func (h Host) smbios() ([]byte, error) {
	raw, err := os.ReadFile(h.path("sys/firmware/dmi/tables/DMI"))
	if err != nil {
		if os.IsPermission(err) {
			return nil, fmt.Errorf("reading the SMBIOS table needs root")
		}
		return nil, fmt.Errorf("no SMBIOS table (%v)", err)
	}
	return raw, nil
}

// walkSMBIOS calls fn for each structure of a raw SMBIOS table, with its
// formatted area and a lookup of its strings. Malformed structures end the
// walk.
func walkSMBIOS(t []byte, fn func(typ byte, f []byte, str func(off int) string)) {
	for i := 0; i+4 <= len(t); {
		typ, n := t[i], int(t[i+1])
		if n < 4 || i+n > len(t) {
			return
		}
		f := t[i : i+n]
		// Strings follow the formatted area, ending with a double NUL.
		j := i + n
		var strs []string
		for j < len(t) {
			end := j
			for end < len(t) && t[end] != 0 {
				end++
			}
			if end == j {
				j++
				break
			}
			strs = append(strs, string(t[j:end]))
			j = end + 1
		}
		if len(strs) == 0 && j < len(t) && t[j] == 0 {
			j++
		}
		if typ == 127 {
			return
		}
		fn(typ, f, func(off int) string {
			if off >= len(f) || f[off] == 0 || int(f[off]) > len(strs) {
				return ""
			}
			return strings.TrimSpace(strs[f[off]-1])
		})
		i = j
	}
}

// ParseDIMMs decodes the installed memory devices of a raw SMBIOS table.
// Malformed structures end the walk; what was read before is kept.
func ParseDIMMs(t []byte) []inventory.DIMM {
	var out []inventory.DIMM
	walkSMBIOS(t, func(typ byte, f []byte, str func(int) string) {
		n := len(f)
		u16 := func(off int) int {
			if off+2 > len(f) {
				return 0
			}
			return int(binary.LittleEndian.Uint16(f[off:]))
		}
		if typ != 17 || n < 0x15 {
			return
		}
		size := u16(0x0C)
		var mb float64
		switch {
		case size == 0 || size == 0xFFFF:
		case size == 0x7FFF && n >= 0x20:
			mb = float64(binary.LittleEndian.Uint32(f[0x1C:]) & 0x7FFFFFFF)
		case size&0x8000 != 0:
			mb = float64(size&0x7FFF) / 1024
		default:
			mb = float64(size)
		}
		if mb <= 0 {
			return
		}
		d := inventory.DIMM{Slot: str(0x10), SizeGB: mb / 1024, Type: memType(f[0x12], u16(0x13))}
		if n >= 0x17 {
			d.SpeedMTs = u16(0x15)
		}
		if n >= 0x1B {
			if s := str(0x18); inventory.Usable(s) {
				d.Serial = s
			}
			if s := str(0x1A); inventory.Usable(s) {
				d.PartNumber = s
			}
		}
		out = append(out, d)
	})
	return out
}

// Locator is where an HP blade sits, as its firmware tells it (SMBIOS
// type 204, "HP ProLiant System/Rack Locator", filled in from the
// enclosure's Onboard Administrator).
type Locator struct {
	Enclosure, EnclosureSerial string
	Bay                        int
}

// ParseLocator reads the HP System/Rack Locator of a raw SMBIOS table:
// the enclosure's name (string at 0x05), the server's bay (string at
// 0x07) and the enclosure's serial (string at 0x0A). ok is false when the
// table has none (not an HP blade).
func ParseLocator(t []byte) (loc Locator, ok bool) {
	walkSMBIOS(t, func(typ byte, f []byte, str func(int) string) {
		if typ != 204 || len(f) < 0x0B || ok {
			return
		}
		bay, err := strconv.Atoi(str(0x07))
		if err != nil || bay <= 0 || !inventory.Usable(str(0x05)) {
			return
		}
		loc, ok = Locator{Enclosure: str(0x05), EnclosureSerial: str(0x0A), Bay: bay}, true
	})
	return loc, ok
}

func memType(t byte, detail int) string {
	names := map[byte]string{0x0F: "SDRAM", 0x12: "DDR", 0x13: "DDR2", 0x14: "DDR2 FB-DIMM", 0x18: "DDR3",
		0x1A: "DDR4", 0x1B: "LPDDR", 0x1C: "LPDDR2", 0x1D: "LPDDR3", 0x1E: "LPDDR4", 0x22: "DDR5", 0x23: "LPDDR5", 0x07: "RAM"}
	s := names[t]
	if s == "" {
		return ""
	}
	if detail&(1<<13) != 0 {
		s += " registered"
	}
	return s
}

var skipDisk = []string{"loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd"}

func (h Host) disks() []inventory.Disk {
	ents, err := os.ReadDir(h.path("sys/block"))
	if err != nil {
		return nil
	}
	root := h.rootDisks()
	var out []inventory.Disk
	for _, e := range ents {
		name := e.Name()
		skip := false
		for _, p := range skipDisk {
			if strings.HasPrefix(name, p) {
				skip = true
			}
		}
		if skip || h.read("sys/block/"+name+"/removable") == "1" {
			continue
		}
		sectors, _ := strconv.ParseFloat(h.read("sys/block/"+name+"/size"), 64)
		if sectors == 0 {
			continue
		}
		d := inventory.Disk{Device: name, SizeGB: math.Round(sectors*512/1e9*10) / 10}
		d.Model = h.read("sys/block/" + name + "/device/model")
		if s := h.read("sys/block/" + name + "/device/serial"); inventory.Usable(s) {
			d.Serial = s
		} else if s := h.read("sys/block/" + name + "/serial"); inventory.Usable(s) {
			d.Serial = s // virtio-blk
		}
		real, _ := filepath.EvalSymlinks(h.path("sys/block/" + name))
		switch {
		case strings.Contains(real, "/nvme"):
			d.Bus, d.Type = "NVMe", "ssd"
		case strings.Contains(real, "/usb"):
			d.Bus = "USB"
		case strings.Contains(real, "/virtio"):
			d.Bus = "virtio"
		case strings.Contains(real, "/ata"):
			d.Bus = "SATA"
		case strings.Contains(real, "/end_device") || strings.Contains(real, "/port-"):
			d.Bus = "SAS"
		}
		if d.Type == "" {
			switch h.read("sys/block/" + name + "/queue/rotational") {
			case "1":
				d.Type = "hdd"
			case "0":
				d.Type = "ssd"
			}
		}
		d.Root = root[name]
		out = append(out, d)
	}
	return out
}

// rootDisks finds the disks under the root filesystem (through partitions
// and device-mapper layers).
func (h Host) rootDisks() map[string]bool {
	out := map[string]bool{}
	var majmin string
	for _, line := range strings.Split(h.read("proc/self/mountinfo"), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == "/" {
			majmin = f[2]
		}
	}
	if majmin == "" {
		return out
	}
	dev, err := filepath.EvalSymlinks(h.path("sys/dev/block/" + majmin))
	if err != nil {
		return out
	}
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		if depth > 8 {
			return
		}
		if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
			out[filepath.Base(filepath.Dir(dir))] = true
			return
		}
		slaves, _ := os.ReadDir(filepath.Join(dir, "slaves"))
		if len(slaves) == 0 {
			out[filepath.Base(dir)] = true
			return
		}
		for _, s := range slaves {
			real, err := filepath.EvalSymlinks(filepath.Join(dir, "slaves", s.Name()))
			if err == nil {
				walk(real, depth+1)
			}
		}
	}
	walk(dev, 0)
	return out
}

func (h Host) nics() []inventory.NIC {
	ents, err := os.ReadDir(h.path("sys/class/net"))
	if err != nil {
		return nil
	}
	def := h.defaultRouteIface()
	var out []inventory.NIC
	for _, e := range ents {
		name := e.Name()
		base := "sys/class/net/" + name
		if _, err := os.Stat(h.path(base + "/device")); err != nil {
			continue // virtual: lo, bridges, veth, tunnels
		}
		n := inventory.NIC{Name: name, Boot: name == def}
		if mac, err := inventory.NormalizeMAC(h.read(base + "/address")); err == nil {
			n.MAC = mac
		}
		if drv, err := filepath.EvalSymlinks(h.path(base + "/device/driver")); err == nil {
			n.Driver = filepath.Base(drv)
		}
		if s, err := strconv.Atoi(h.read(base + "/speed")); err == nil && s > 0 {
			n.SpeedMbps = s
		}
		n.Chip = h.pciName(h.read(base+"/device/vendor"), h.read(base+"/device/device"))
		out = append(out, n)
	}
	return out
}

func (h Host) defaultRouteIface() string {
	for _, line := range strings.Split(h.read("proc/net/route"), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "00000000" {
			return f[0]
		}
	}
	return ""
}

// pciName names a PCI device from the pci.ids database when the host has
// it (Debian's pci.ids package), else "vendor:device".
func (h Host) pciName(vendor, device string) string {
	v := strings.TrimPrefix(vendor, "0x")
	d := strings.TrimPrefix(device, "0x")
	if v == "" || d == "" {
		return ""
	}
	for _, p := range []string{"usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids"} {
		if name, ok := lookupPCI(h.path(p), v, d); ok {
			return name
		}
	}
	return v + ":" + d
}

// lookupPCI finds device d of vendor v in a pci.ids file.
func lookupPCI(path, v, d string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, v+"  "):
			in = true
		case in && strings.HasPrefix(line, "\t"+d+"  "):
			return strings.TrimSpace(line[len(d)+3:]), true
		case in && line != "" && line[0] != '\t' && line[0] != '#':
			return "", false
		}
	}
	return "", false
}
