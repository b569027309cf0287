package inventory

import (
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/provisiond/provisiond/internal/bmc/protocol"
)

// Hardware is what an operator tracks about a piece of hardware: where it is,
// what it is made of, how its BMC is reached, and what it is for. A
// Machine embeds the operator's record; what discovery saw is kept apart
// (Machine.Observed) so that differences show as drift.
type Hardware struct {
	// Tag is the asset tag when it differs from the name (SYS-005 for ODEN).
	Tag string `json:"tag,omitempty" yaml:"tag,omitempty"`
	// Enclosure names the enclosure (a System of kind enclosure) the
	// machine sits in; Bay is its bay there.
	Enclosure string `json:"enclosure,omitempty" yaml:"enclosure,omitempty"`
	Bay       int    `json:"bay,omitempty" yaml:"bay,omitempty"`
	// Rack and Unit place rack-mounted hardware.
	Rack string `json:"rack,omitempty" yaml:"rack,omitempty"`
	Unit int    `json:"unit,omitempty" yaml:"unit,omitempty"`

	Vendor string `json:"vendor,omitempty" yaml:"vendor,omitempty"`
	Model  string `json:"model,omitempty" yaml:"model,omitempty"`
	Serial string `json:"serial,omitempty" yaml:"serial,omitempty"`
	UUID   string `json:"uuid,omitempty" yaml:"uuid,omitempty"`
	// BIOSVersion is the system firmware's version string.
	BIOSVersion string `json:"bios_version,omitempty" yaml:"bios_version,omitempty"`

	CPUs []CPU `json:"cpus,omitempty" yaml:"cpus,omitempty"`
	// MemoryGB is the installed memory when the DIMMs are not listed one
	// by one. With DIMMs listed it must equal their sum.
	MemoryGB float64 `json:"memory_gb,omitempty" yaml:"memory_gb,omitempty"`
	DIMMs    []DIMM  `json:"dimms,omitempty" yaml:"dimms,omitempty"`
	Disks    []Disk  `json:"disks,omitempty" yaml:"disks,omitempty"`
	NICs     []NIC   `json:"nics,omitempty" yaml:"nics,omitempty"`
	// Components are other parts worth tracking: storage controllers,
	// HBAs, GPUs.
	Components []Component `json:"components,omitempty" yaml:"components,omitempty"`
	BMC        *BMC        `json:"bmc,omitempty" yaml:"bmc,omitempty"`
	// Control says what powers the machine and sets its next boot: bmc
	// (its own BMC), oa (its enclosure's Onboard Administrator, falling
	// back to the BMC when the OA does not answer), or empty: the
	// enclosure's blade_control.
	Control string `json:"control,omitempty" yaml:"control,omitempty"`

	// Role is what the machine is used for today (talos, slurm, proxmox).
	Role string `json:"role,omitempty" yaml:"role,omitempty"`
	// Labels are free-form key=value pairs for selecting machines.
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// Notes is free text for the operator.
	Notes string `json:"notes,omitempty" yaml:"notes,omitempty"`
}

// CPU is one processor socket.
type CPU struct {
	Socket  int    `json:"socket,omitempty" yaml:"socket,omitempty"`
	Model   string `json:"model,omitempty" yaml:"model,omitempty"`
	Cores   int    `json:"cores,omitempty" yaml:"cores,omitempty"`
	Threads int    `json:"threads,omitempty" yaml:"threads,omitempty"`
}

// DIMM is one memory module.
type DIMM struct {
	// Slot is the board's locator (PROC 1 DIMM 3, CPU1_DIMM_A1).
	Slot   string  `json:"slot,omitempty" yaml:"slot,omitempty"`
	SizeGB float64 `json:"size_gb" yaml:"size_gb"`
	// Type is DDR3, DDR4, ... with registered/ECC details as the operator
	// writes them.
	Type     string `json:"type,omitempty" yaml:"type,omitempty"`
	SpeedMTs int    `json:"speed_mts,omitempty" yaml:"speed_mts,omitempty"`
	// Part is the spare-parts tag of this kind of module (RAM-007).
	Part   string `json:"part,omitempty" yaml:"part,omitempty"`
	Serial string `json:"serial,omitempty" yaml:"serial,omitempty"`
	// PartNumber is the maker's part number as the module's SPD gives it
	// to SMBIOS (HP 647899-B21 sells as 664690-001 modules).
	PartNumber string `json:"part_number,omitempty" yaml:"part_number,omitempty"`
}

// Disk uses.
const (
	DiskUseBoot    = "boot"
	DiskUseOSD     = "osd"
	DiskUseScratch = "scratch"
	DiskUseNone    = "none"
)

// Disk is one drive.
type Disk struct {
	// Device is the OS name (sda, nvme0n1) when known.
	Device string `json:"device,omitempty" yaml:"device,omitempty"`
	// Bus is SATA, SAS, NVMe, USB or virtio.
	Bus string `json:"bus,omitempty" yaml:"bus,omitempty"`
	// Type is ssd or hdd.
	Type   string  `json:"type,omitempty" yaml:"type,omitempty"`
	SizeGB float64 `json:"size_gb" yaml:"size_gb"`
	Model  string  `json:"model,omitempty" yaml:"model,omitempty"`
	Serial string  `json:"serial,omitempty" yaml:"serial,omitempty"`
	// Part is the disk's own asset tag (HDD-013) or its spare-parts kind.
	Part string `json:"part,omitempty" yaml:"part,omitempty"`
	// Use is boot, osd, scratch or none ("" = not decided).
	Use string `json:"use,omitempty" yaml:"use,omitempty"`
	// Root is set by the agent on the disk that holds the running system's
	// root filesystem.
	Root bool `json:"root,omitempty" yaml:"root,omitempty"`
}

// NIC is one network port.
type NIC struct {
	MAC  string `json:"mac,omitempty" yaml:"mac,omitempty"`
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Chip is the controller (BCM5709, 82599) or its driver (bnx2).
	Chip      string `json:"chip,omitempty" yaml:"chip,omitempty"`
	Driver    string `json:"driver,omitempty" yaml:"driver,omitempty"`
	SpeedMbps int    `json:"speed_mbps,omitempty" yaml:"speed_mbps,omitempty"`
	// Boot marks the port that PXE-boots.
	Boot bool `json:"boot,omitempty" yaml:"boot,omitempty"`
}

// Component is any other tracked part (a RAID controller in HBA mode).
type Component struct {
	Kind  string `json:"kind" yaml:"kind"`
	Slot  string `json:"slot,omitempty" yaml:"slot,omitempty"`
	Model string `json:"model,omitempty" yaml:"model,omitempty"`
	Part  string `json:"part,omitempty" yaml:"part,omitempty"`
	Mode  string `json:"mode,omitempty" yaml:"mode,omitempty"`
	Notes string `json:"notes,omitempty" yaml:"notes,omitempty"`
}

// BMC protocols (package protocol lists them all).
const (
	BMCIPMI    = protocol.IPMI
	BMCRedfish = protocol.Redfish
)

// BMC says how to reach a machine's management controller. The password
// itself is a secret; the record only names it.
type BMC struct {
	Address  string `json:"address" yaml:"address"`
	Port     int    `json:"port,omitempty" yaml:"port,omitempty"`
	Protocol string `json:"protocol,omitempty" yaml:"protocol,omitempty"`
	// CipherSuite is the IPMI cipher suite (3 or 17 on most BMCs).
	CipherSuite int    `json:"cipher_suite,omitempty" yaml:"cipher_suite,omitempty"`
	Username    string `json:"username,omitempty" yaml:"username,omitempty"`
	// PasswordSecret names the stored secret that holds the password
	// (sealed in the database under the data directory's key).
	PasswordSecret string `json:"password_secret,omitempty" yaml:"password_secret,omitempty"`
	// PasswordFile names a file on the daemon's host that holds the
	// password instead (absolute path; a trailing newline is dropped).
	PasswordFile string `json:"password_file,omitempty" yaml:"password_file,omitempty"`
	// PasswordEnv names an environment variable of the daemon that holds
	// the password instead.
	PasswordEnv string `json:"password_env,omitempty" yaml:"password_env,omitempty"`
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// TotalMemoryGB is the machine's memory: the DIMMs' sum when they are
// listed, otherwise MemoryGB.
func (a *Hardware) TotalMemoryGB() float64 {
	if len(a.DIMMs) == 0 {
		return a.MemoryGB
	}
	var sum float64
	for _, d := range a.DIMMs {
		sum += d.SizeGB
	}
	return sum
}

// CPUKnown reports whether at least one CPU model is recorded.
func (a *Hardware) CPUKnown() bool {
	for _, c := range a.CPUs {
		if known(c.Model) {
			return true
		}
	}
	return false
}

func known(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	return s != "" && s != "unknown" && s != "?"
}

var procRE = regexp.MustCompile(`(?i)(?:proc(?:essor)?|cpu|p)[ _-]?(\d+)`)

// DIMMSocket returns the CPU socket a DIMM slot belongs to, read from its
// locator (PROC 1 DIMM 3, CPU2_DIMM_A1, P1-DIMMA1), or 0 when the locator
// does not say.
func DIMMSocket(slot string) int {
	m := procRE.FindStringSubmatch(slot)
	if m == nil {
		return 0
	}
	n := 0
	fmt.Sscan(m[1], &n)
	return n
}

func (a *Hardware) validate(what string) error {
	if a.Bay < 0 || a.Unit < 0 {
		return fmt.Errorf("%s: bay and unit cannot be negative", what)
	}
	if a.MemoryGB < 0 {
		return fmt.Errorf("%s: memory_gb cannot be negative", what)
	}
	if len(a.DIMMs) > 0 && a.MemoryGB != 0 && math.Abs(a.TotalMemoryGB()-a.MemoryGB) > 0.01 {
		return fmt.Errorf("%s: memory_gb is %g but the DIMMs listed add up to %g GB: fix one of them, or leave memory_gb out", what, a.MemoryGB, a.TotalMemoryGB())
	}
	slots := map[string]bool{}
	for _, d := range a.DIMMs {
		if d.SizeGB <= 0 {
			return fmt.Errorf("%s: DIMM %q needs size_gb > 0", what, d.Slot)
		}
		if d.Slot != "" {
			if slots[d.Slot] {
				return fmt.Errorf("%s: DIMM slot %q is listed twice", what, d.Slot)
			}
			slots[d.Slot] = true
		}
	}
	devs := map[string]bool{}
	for _, d := range a.Disks {
		if d.SizeGB < 0 {
			return fmt.Errorf("%s: disk %q has a negative size", what, d.Device)
		}
		switch d.Use {
		case "", DiskUseBoot, DiskUseOSD, DiskUseScratch, DiskUseNone:
		default:
			return fmt.Errorf("%s: disk %q use %q is not one of boot, osd, scratch, none", what, d.Device, d.Use)
		}
		if d.Device != "" {
			if devs[d.Device] {
				return fmt.Errorf("%s: disk device %q is listed twice", what, d.Device)
			}
			devs[d.Device] = true
		}
	}
	for i := range a.NICs {
		if a.NICs[i].MAC == "" {
			continue
		}
		mac, err := NormalizeMAC(a.NICs[i].MAC)
		if err != nil {
			return fmt.Errorf("%s: NIC %s: %w", what, a.NICs[i].Name, err)
		}
		a.NICs[i].MAC = mac
	}
	for _, c := range a.Components {
		if c.Kind == "" {
			return fmt.Errorf("%s: every component needs a kind (controller, hba, gpu, ...)", what)
		}
	}
	switch a.Control {
	case "", ControlBMC, ControlOA:
	default:
		return fmt.Errorf("%s: control %q is not bmc or oa", what, a.Control)
	}
	if a.BMC != nil {
		if a.BMC.Address == "" {
			return fmt.Errorf("%s: the BMC needs an address", what)
		}
		p, err := protocol.Lookup(a.BMC.Protocol)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if p.Enclosure && !strings.HasPrefix(what, "system ") {
			return fmt.Errorf("%s: %s is an enclosure's manager, not a machine's BMC: record it on the enclosure, and set control: oa on the machine (or blade_control: oa on the enclosure)", what, p.Name)
		}
		if a.BMC.Port < 0 || a.BMC.Port > 65535 {
			return fmt.Errorf("%s: BMC port %d is out of range", what, a.BMC.Port)
		}
		if a.BMC.PasswordSecret != "" {
			if err := ValidSecretName(a.BMC.PasswordSecret); err != nil {
				return fmt.Errorf("%s: BMC password_secret: %w", what, err)
			}
		}
		n := 0
		for _, s := range []string{a.BMC.PasswordSecret, a.BMC.PasswordFile, a.BMC.PasswordEnv} {
			if s != "" {
				n++
			}
		}
		if n > 1 {
			return fmt.Errorf("%s: give the BMC password one way: password_secret, password_file or password_env", what)
		}
		if a.BMC.PasswordFile != "" && !strings.HasPrefix(a.BMC.PasswordFile, "/") {
			return fmt.Errorf("%s: BMC password_file %q must be an absolute path", what, a.BMC.PasswordFile)
		}
		if a.BMC.PasswordEnv != "" && !envName.MatchString(a.BMC.PasswordEnv) {
			return fmt.Errorf("%s: BMC password_env %q is not an environment variable name", what, a.BMC.PasswordEnv)
		}
		if a.BMC.CipherSuite < 0 || a.BMC.CipherSuite > 17 {
			return fmt.Errorf("%s: IPMI cipher suite %d is not between 0 and 17", what, a.BMC.CipherSuite)
		}
	}
	for k := range a.Labels {
		if k == "" || strings.ContainsAny(k, " \t\r\n=,") {
			return fmt.Errorf("%s: label name %q is invalid (no spaces, '=' or ',')", what, k)
		}
	}
	return nil
}

// System is hardware that is not a PXE-booted machine: a blade enclosure,
// a disk shelf, a router, a switch.
type System struct {
	Name string `json:"name" yaml:"name"`
	Tag  string `json:"tag,omitempty" yaml:"tag,omitempty"`
	// Kind is enclosure, disk-shelf, router, switch or other.
	Kind   string `json:"kind" yaml:"kind"`
	Vendor string `json:"vendor,omitempty" yaml:"vendor,omitempty"`
	Model  string `json:"model,omitempty" yaml:"model,omitempty"`
	Serial string `json:"serial,omitempty" yaml:"serial,omitempty"`
	// Bays is the number of device bays of an enclosure.
	Bays int    `json:"bays,omitempty" yaml:"bays,omitempty"`
	Rack string `json:"rack,omitempty" yaml:"rack,omitempty"`
	Unit int    `json:"unit,omitempty" yaml:"unit,omitempty"`
	// Disks of a disk shelf.
	Disks      []Disk      `json:"disks,omitempty" yaml:"disks,omitempty"`
	Components []Component `json:"components,omitempty" yaml:"components,omitempty"`
	// BMC is the management processor (a C7000's Onboard Administrator).
	BMC *BMC `json:"bmc,omitempty" yaml:"bmc,omitempty"`
	// OALegacyTLS lets provisiond reach an Onboard Administrator whose
	// firmware offers only TLS 1.0 or old ciphers (before OA 4.x), which
	// Go refuses otherwise. Off by default: turn it on for that OA only.
	OALegacyTLS bool `json:"oa_legacy_tls,omitempty" yaml:"oa_legacy_tls,omitempty"`
	// BladeControl is how the enclosure's blades are powered and set to
	// PXE unless a machine says otherwise: bmc (each blade's own BMC, the
	// default) or oa (the enclosure's BMC, its Onboard Administrator).
	BladeControl string `json:"blade_control,omitempty" yaml:"blade_control,omitempty"`
	// BladeNames is the pattern of the machines an enclosure sync
	// creates for blades it finds no record of: {bay}, {bay:03},
	// {enclosure} (default BLD-{bay:03}).
	BladeNames string            `json:"blade_names,omitempty" yaml:"blade_names,omitempty"`
	Role       string            `json:"role,omitempty" yaml:"role,omitempty"`
	Labels     map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Notes      string            `json:"notes,omitempty" yaml:"notes,omitempty"`
}

// What controls a blade (Hardware.Control, System.BladeControl).
const (
	ControlBMC = "bmc"
	ControlOA  = "oa"
)

// System kinds.
const (
	KindEnclosure = "enclosure"
)

// Validate checks a system record.
func (s *System) Validate() error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("system name %q is invalid: use 1-63 letters, digits, '.', '_' or '-'", s.Name)
	}
	if s.Kind == "" {
		return fmt.Errorf("system %s needs a kind (enclosure, disk-shelf, router, switch, other)", s.Name)
	}
	if s.Bays < 0 || (s.Kind == KindEnclosure && s.Bays == 0) {
		return fmt.Errorf("system %s: an enclosure needs its number of bays (bays: 16)", s.Name)
	}
	switch s.BladeControl {
	case "", ControlBMC:
	case ControlOA:
		if s.BMC == nil || s.BMC.Protocol != protocol.OA {
			return fmt.Errorf("system %s: blade_control: oa needs the enclosure's bmc to be its Onboard Administrator (protocol: oa)", s.Name)
		}
	default:
		return fmt.Errorf("system %s: blade_control %q is not bmc or oa", s.Name, s.BladeControl)
	}
	a := Hardware{Disks: s.Disks, Components: s.Components, BMC: s.BMC, Labels: s.Labels}
	return a.validate("system " + s.Name)
}

// Part kinds the planner understands.
const (
	PartDIMM = "dimm"
	PartDisk = "disk"
)

// Part is an entry of the spare-parts pool: Count identical parts under
// one tag.
type Part struct {
	Tag string `json:"tag" yaml:"tag"`
	// Kind is dimm, disk, controller, cpu, nic or other.
	Kind        string `json:"kind" yaml:"kind"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	Count       int    `json:"count" yaml:"count"`
	Location    string `json:"location,omitempty" yaml:"location,omitempty"`
	// SizeGB is a DIMM's or disk's capacity.
	SizeGB float64 `json:"size_gb,omitempty" yaml:"size_gb,omitempty"`
	// Type is DDR3 RDIMM, ssd, hdd, ...
	Type     string `json:"type,omitempty" yaml:"type,omitempty"`
	SpeedMTs int    `json:"speed_mts,omitempty" yaml:"speed_mts,omitempty"`
	// Bus is a disk's interface (SATA, SAS, NVMe).
	Bus   string `json:"bus,omitempty" yaml:"bus,omitempty"`
	Model string `json:"model,omitempty" yaml:"model,omitempty"`
	Notes string `json:"notes,omitempty" yaml:"notes,omitempty"`
}

// Validate checks a spare-parts entry.
func (p *Part) Validate() error {
	if !nameRE.MatchString(p.Tag) {
		return fmt.Errorf("part tag %q is invalid: use 1-63 letters, digits, '.', '_' or '-'", p.Tag)
	}
	if p.Kind == "" {
		return fmt.Errorf("part %s needs a kind (dimm, disk, controller, ...)", p.Tag)
	}
	if p.Count < 0 {
		return fmt.Errorf("part %s: count cannot be negative", p.Tag)
	}
	if (p.Kind == PartDIMM || p.Kind == PartDisk) && p.SizeGB <= 0 {
		return fmt.Errorf("part %s: a %s needs size_gb so the planner can use it", p.Tag, p.Kind)
	}
	return nil
}

// Range is an inclusive range; a zero Max means no upper bound.
type Range struct {
	Min float64 `json:"min,omitempty" yaml:"min,omitempty"`
	Max float64 `json:"max,omitempty" yaml:"max,omitempty"`
}

// Role is what a machine needs to take on a job. Roles are data: built-in
// defaults, the config file and the inventory can each define them.
type Role struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	// MemoryGB is the memory the role wants. Below Min a machine does not
	// qualify; the planner never adds memory beyond Max.
	MemoryGB Range `json:"memory_gb,omitzero" yaml:"memory_gb,omitempty"`
	// BootDisk says the role installs to a disk of its own.
	BootDisk bool `json:"boot_disk,omitempty" yaml:"boot_disk,omitempty"`
	// OSDDisks and ScratchDisks are how many further disks it needs.
	OSDDisks     int `json:"osd_disks,omitempty" yaml:"osd_disks,omitempty"`
	ScratchDisks int `json:"scratch_disks,omitempty" yaml:"scratch_disks,omitempty"`
	// MinCores is the least number of CPU cores (all sockets).
	MinCores int `json:"min_cores,omitempty" yaml:"min_cores,omitempty"`
	// CPUModels, when set, are the CPU models the role takes: a machine
	// qualifies when its CPUs' model contains one of them (E5-2670,
	// "E5-2650 v2"; case-insensitive).
	CPUModels []string `json:"cpu_models,omitempty" yaml:"cpu_models,omitempty"`
	// Rank orders qualifying machines: memory, disks or cores.
	Rank string `json:"rank,omitempty" yaml:"rank,omitempty"`
}

// Validate checks a role definition.
func (r *Role) Validate() error {
	if !nameRE.MatchString(r.Name) {
		return fmt.Errorf("role name %q is invalid: use letters, digits, '.', '_' or '-'", r.Name)
	}
	if r.MemoryGB.Min < 0 || (r.MemoryGB.Max != 0 && r.MemoryGB.Max < r.MemoryGB.Min) {
		return fmt.Errorf("role %s: memory_gb range %g-%g is not a range", r.Name, r.MemoryGB.Min, r.MemoryGB.Max)
	}
	for _, c := range r.CPUModels {
		if strings.TrimSpace(c) == "" {
			return fmt.Errorf("role %s: cpu_models has an empty entry", r.Name)
		}
	}
	if r.OSDDisks < 0 || r.ScratchDisks < 0 || r.MinCores < 0 {
		return fmt.Errorf("role %s: counts cannot be negative", r.Name)
	}
	switch r.Rank {
	case "", "memory", "disks", "cores":
	default:
		return fmt.Errorf("role %s: rank %q is not memory, disks or cores", r.Name, r.Rank)
	}
	return nil
}

// EnclosureOf is the enclosure whose bay machine m sits in (nil: none in
// systems, or m is in no bay).
func EnclosureOf(m *Machine, systems []System) *System {
	if m.Enclosure == "" || m.Bay < 1 {
		return nil
	}
	for i := range systems {
		if strings.EqualFold(systems[i].Name, m.Enclosure) {
			return &systems[i]
		}
	}
	return nil
}

// ManagedBy is the Onboard Administrator that manages machine m's bay: its
// enclosure, when that records its OA (bmc with protocol oa); nil
// otherwise. The OA can light the blade's locator LED whatever controls
// its power.
func ManagedBy(m *Machine, systems []System) *System {
	if sys := EnclosureOf(m, systems); sys != nil && sys.BMC != nil && sys.BMC.Protocol == protocol.OA {
		return sys
	}
	return nil
}

// ControlledBy says what powers machine m and sets its next boot, with the
// enclosures systems: ControlOA when it sits in a bay of an enclosure whose
// Onboard Administrator controls it (its control: oa, or the enclosure's
// blade_control: oa, unless its control is bmc), ControlBMC when it has a
// BMC of its own, "" when nothing can. The enclosure, when it is the OA's,
// is returned with it.
func ControlledBy(m *Machine, systems []System) (string, *System) {
	if sys := EnclosureOf(m, systems); sys != nil && m.Control != ControlBMC &&
		(m.Control == ControlOA || sys.BladeControl == ControlOA) {
		return ControlOA, sys
	}
	if m.BMC != nil && m.BMC.Address != "" {
		return ControlBMC, nil
	}
	return "", nil
}

// SwapUUID byte-swaps the first three groups of a UUID: SMBIOS stores them
// little-endian, and firmware, tools and an enclosure's OA disagree on the
// order they print.
func SwapUUID(u string) (string, error) {
	g := strings.Split(u, "-")
	if len(g) != 5 || len(g[0]) != 8 || len(g[1]) != 4 || len(g[2]) != 4 || len(g[3]) != 4 || len(g[4]) != 12 {
		return "", fmt.Errorf("%q is not a UUID (8-4-4-4-12 hex digits)", u)
	}
	rev := func(s string) string {
		var b strings.Builder
		for i := len(s) - 2; i >= 0; i -= 2 {
			b.WriteString(s[i : i+2])
		}
		return b.String()
	}
	return strings.Join([]string{rev(g[0]), rev(g[1]), rev(g[2]), g[3], g[4]}, "-"), nil
}

// SameUUID reports whether two UUIDs name the same machine, in either byte
// order of their first three groups, case aside.
func SameUUID(a, b string) bool {
	a, b = strings.ToLower(strings.TrimSpace(a)), strings.ToLower(strings.TrimSpace(b))
	if a == b {
		return true
	}
	s, err := SwapUUID(a)
	return err == nil && s == b
}
