// Package inventory keeps provisiond's machines and their boot timelines in a
// bbolt database. It knows nothing about DHCP, TFTP or HTTP: the protocol
// servers reach it through the daemon.
package inventory

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/kv"
)

// Firmware values a machine can be forced to. The empty string means "use
// what the client's PXE request says".
const (
	FirmwareAuto = ""
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// Machine is one physical (or virtual) machine that may PXE-boot.
type Machine struct {
	// Name is the operator's name or asset tag (BLD-006, oden). Unique.
	Name string `json:"name" yaml:"name"`
	// MACs are the machine's NIC addresses, normalised to lower-case
	// colon form. Each MAC belongs to at most one machine.
	MACs []string `json:"macs" yaml:"macs,omitempty"`
	// Profile names the boot profile the machine gets. Empty means the
	// daemon's default profile.
	Profile string `json:"profile,omitempty" yaml:"profile,omitempty"`
	// Once, when set, makes Profile a one-shot assignment: after one boot
	// of it is consumed, the machine reverts to Once.Then.
	Once *Once `json:"once,omitempty" yaml:"once,omitempty"`
	// Hostname is handed to the profile (and to the kernel where the
	// profile uses it).
	Hostname string `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	// KernelArgs are extra kernel arguments appended by kernel-booting
	// profiles.
	KernelArgs string `json:"kernel_args,omitempty" yaml:"kernel_args,omitempty"`
	// Address is a static IPv4 address in CIDR form (192.0.2.50/24) that
	// profiles can put on the kernel command line.
	Address string `json:"address,omitempty" yaml:"address,omitempty"`
	// Gateway goes with Address.
	Gateway string `json:"gateway,omitempty" yaml:"gateway,omitempty"`
	// Firmware forces the boot file choice to BIOS or UEFI whatever the
	// PXE client claims ("" = follow the client).
	Firmware string `json:"firmware,omitempty" yaml:"firmware,omitempty"`
	// Params are free-form profile parameters (kernel URL, initrd, ...).
	Params map[string]string `json:"params,omitempty" yaml:"params,omitempty"`
	// AssetKeySecret names the stored secret that holds the machine's
	// SMBIOS chassis asset tag, which iPXE reports and only root or a
	// person at the console can set (Warewulf's asset key). When set, the
	// machine's secrets go only to a boot that reports it.
	AssetKeySecret string `json:"asset_key_secret,omitempty" yaml:"asset_key_secret,omitempty"`
	// Discovered is true for machines provisiond recorded on its own
	// because an unknown MAC PXE-booted.
	Discovered bool `json:"discovered,omitempty" yaml:"discovered,omitempty"`
	// Hardware is the operator's hardware record: location, CPUs, DIMMs,
	// disks, NICs, BMC, role and labels. Changes to it are kept in the
	// machine's history.
	Hardware `yaml:",inline"`
	// Facts is what the machine told about itself while booting.
	Facts *Facts `json:"facts,omitempty" yaml:"facts,omitempty"`
	// Observed is the hardware the agent last reported (provisiond agent
	// report). It fills what the record leaves empty and never overwrites
	// it: differences are drift. The store maintains it.
	Observed *Observed `json:"observed,omitempty" yaml:"observed,omitempty"`
	// Created and Updated are maintained by the store.
	Created time.Time `json:"created" yaml:"created,omitempty"`
	Updated time.Time `json:"updated" yaml:"updated,omitempty"`
	// Revision counts the record's writes (the store's, a boot's, an
	// operator's). A client that writes back a record it read sends it:
	// if the record changed meanwhile the write is refused, not lost.
	Revision uint64 `json:"revision" yaml:"-"`
}

// Observed is hardware as discovery saw it.
type Observed struct {
	Hardware `yaml:",inline"`
	// Source says who reported it (agent, ipxe, redfish).
	Source string `json:"source" yaml:"source"`
	// Time is when it was reported.
	Time time.Time `json:"time" yaml:"time"`
	// Host is the reporting host's name.
	Host string `json:"host,omitempty" yaml:"host,omitempty"`
}

// Once describes a one-shot assignment.
type Once struct {
	// Then is the profile the machine reverts to (default local).
	Then string `json:"then" yaml:"then"`
	// Since is when the assignment was made.
	Since time.Time `json:"since" yaml:"since"`
	// Params are parameters for this one boot only, over the machine's
	// own (commission --hold: hold=true).
	Params map[string]string `json:"params,omitempty" yaml:"params,omitempty"`
}

// Facts is what a booting machine reported about itself (from iPXE's
// settings or the PXE request).
type Facts struct {
	Manufacturer string    `json:"manufacturer,omitempty" yaml:"manufacturer,omitempty"`
	Product      string    `json:"product,omitempty" yaml:"product,omitempty"`
	Serial       string    `json:"serial,omitempty" yaml:"serial,omitempty"`
	UUID         string    `json:"uuid,omitempty" yaml:"uuid,omitempty"`
	Platform     string    `json:"platform,omitempty" yaml:"platform,omitempty"`
	BuildArch    string    `json:"buildarch,omitempty" yaml:"buildarch,omitempty"`
	Chip         string    `json:"chip,omitempty" yaml:"chip,omitempty"`
	ClientArch   string    `json:"client_arch,omitempty" yaml:"client_arch,omitempty"`
	IP           string    `json:"ip,omitempty" yaml:"ip,omitempty"`
	LastSeen     time.Time `json:"last_seen,omitzero" yaml:"last_seen,omitempty"`
}

// merge copies the non-empty fields of o into f.
func (f *Facts) merge(o *Facts) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&f.Manufacturer, o.Manufacturer)
	set(&f.Product, o.Product)
	set(&f.Serial, o.Serial)
	set(&f.UUID, o.UUID)
	set(&f.Platform, o.Platform)
	set(&f.BuildArch, o.BuildArch)
	set(&f.Chip, o.Chip)
	set(&f.ClientArch, o.ClientArch)
	set(&f.IP, o.IP)
	if o.LastSeen.After(f.LastSeen) {
		f.LastSeen = o.LastSeen
	}
}

// ErrNotFound is returned when a machine does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a change would break uniqueness (a name or
// MAC already in use).
var ErrConflict = errors.New("conflict")

// ErrUnavailable wraps a store that cannot be reached (etcd down or
// without quorum): the change was not made; try again when it is back.
var ErrUnavailable = kv.ErrUnavailable

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// NormalizeMAC parses a MAC address in any common notation (colons,
// dashes, dots or none) and returns it in lower-case colon form.
func NormalizeMAC(s string) (string, error) {
	in := strings.TrimSpace(s)
	if len(in) == 12 && !strings.ContainsAny(in, ":-.") {
		var b strings.Builder
		for i := 0; i < 12; i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(in[i : i+2])
		}
		in = b.String()
	}
	hw, err := net.ParseMAC(in)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%q is not a 6-byte MAC address (write it as 52:54:00:12:34:56)", s)
	}
	return hw.String(), nil
}

// Validate checks a machine record as entered by an operator and
// normalises its MACs in place. A machine without MACs is valid: it is in
// the inventory but cannot PXE-boot until one is added.
func (m *Machine) Validate() error {
	if !nameRE.MatchString(m.Name) {
		return fmt.Errorf("machine name %q is invalid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", m.Name)
	}
	seen := map[string]bool{}
	for i, s := range m.MACs {
		mac, err := NormalizeMAC(s)
		if err != nil {
			return fmt.Errorf("machine %s: %w", m.Name, err)
		}
		if seen[mac] {
			return fmt.Errorf("machine %s lists MAC %s twice", m.Name, mac)
		}
		seen[mac] = true
		m.MACs[i] = mac
	}
	if m.Once != nil {
		if m.Profile == "" {
			return fmt.Errorf("machine %s: a one-shot assignment needs a profile (--profile NAME --once)", m.Name)
		}
		if m.Once.Then == "" {
			m.Once.Then = "local"
		}
	}
	switch m.Firmware {
	case FirmwareAuto, FirmwareBIOS, FirmwareUEFI:
	default:
		return fmt.Errorf("machine %s: firmware %q is not one of bios, uefi or empty (follow the client)", m.Name, m.Firmware)
	}
	if m.Address != "" {
		p, err := netip.ParsePrefix(m.Address)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("machine %s: address %q is not an IPv4 address with prefix length (e.g. 192.0.2.50/24)", m.Name, m.Address)
		}
	}
	if m.Gateway != "" {
		a, err := netip.ParseAddr(m.Gateway)
		if err != nil || !a.Is4() {
			return fmt.Errorf("machine %s: gateway %q is not an IPv4 address", m.Name, m.Gateway)
		}
	}
	for k := range m.Params {
		if k == "" || strings.ContainsAny(k, " \t\r\n=") {
			return fmt.Errorf("machine %s: parameter name %q is invalid (no spaces or '=')", m.Name, k)
		}
	}
	if m.Tag != "" && !nameRE.MatchString(m.Tag) {
		return fmt.Errorf("machine %s: tag %q is invalid: use letters, digits, '.', '_' or '-'", m.Name, m.Tag)
	}
	return m.Hardware.validate("machine " + m.Name)
}

// Netmask returns the dotted netmask of the machine's static address, or ""
// when it has none.
func (m *Machine) Netmask() string {
	p, err := netip.ParsePrefix(m.Address)
	if err != nil {
		return ""
	}
	mask := net.CIDRMask(p.Bits(), 32)
	return net.IP(mask).String()
}

// IP returns the machine's static address without prefix length, or "".
func (m *Machine) IP() string {
	p, err := netip.ParsePrefix(m.Address)
	if err != nil {
		return ""
	}
	return p.Addr().String()
}

// DiscoveredName is the name given to a machine recorded from an unknown MAC.
func DiscoveredName(mac string) string {
	return "discovered-" + strings.ReplaceAll(mac, ":", "")
}

func sortMachines(ms []Machine) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
}
