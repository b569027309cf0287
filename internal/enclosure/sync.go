// Package enclosure brings what an enclosure's Onboard Administrator knows
// into the inventory: a sync reads the OA's bay map (and, over SOAP, each
// blade's CPUs and memory), matches blades to machine records, creates the
// missing ones, fills what the records leave empty and reports the rest as
// drift; nothing the operator entered is overwritten.
package enclosure

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/bmc/protocol"
	"github.com/provisiond/provisiond/internal/enclosure/oa"
	"github.com/provisiond/provisiond/internal/inventory"
)

// Store is what a sync needs of the inventory.
type Store interface {
	Systems() ([]inventory.System, error)
	Machines() ([]inventory.Machine, error)
	SyncMachine(name, source string, create bool, fn func(m *inventory.Machine) error) (*inventory.Machine, error)
}

// Credentials resolves the password of a management processor (the BMC
// service's rule: a stored secret, a file or an environment variable).
type Credentials func(owner string, b *inventory.BMC) (string, error)

// Syncer syncs enclosures.
type Syncer struct {
	Store    Store
	Password Credentials
	// Client builds the OA client of an enclosure (nil: HTTPS to the
	// address in its record, the OA's own TLS settings).
	Client func(sys *inventory.System, password string) *oa.Client
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	mu   sync.Mutex
	last map[string]*Report // enclosure -> what its OA said last
}

// Last is what enclosure name's OA reported at its last sync (nil: none
// since the daemon started): power and health for the dashboard.
func (s *Syncer) Last(name string) *Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[strings.ToLower(name)]
}

func (s *Syncer) remember(rep *Report) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[string]*Report{}
	}
	s.last[strings.ToLower(rep.Enclosure)] = rep
}

// Report is what a sync found and, applied, did.
type Report struct {
	Enclosure string `json:"enclosure"`
	// Time is when the OA was read.
	Time time.Time `json:"time"`
	// OA is the address that answered; Firmware its version.
	OA       string `json:"oa"`
	Firmware string `json:"firmware,omitempty"`
	Model    string `json:"model,omitempty"`
	Serial   string `json:"serial,omitempty"`
	Status   string `json:"status,omitempty"`
	// PowerConsumed and PowerCapacity are in watts.
	PowerConsumed int   `json:"power_consumed,omitempty"`
	PowerCapacity int   `json:"power_capacity,omitempty"`
	Applied       bool  `json:"applied"`
	Bays          []Bay `json:"bays"`
	// Warnings are blades the sync could not read fully (their SOAP
	// details), said once each.
	Warnings []string `json:"warnings,omitempty"`
}

// Bay is one filled bay in a sync.
type Bay struct {
	Bay     int    `json:"bay"`
	Machine string `json:"machine"`
	// Action is create, update or unchanged.
	Action  string   `json:"action"`
	Product string   `json:"product,omitempty"`
	Serial  string   `json:"serial,omitempty"`
	Power   string   `json:"power,omitempty"`
	Watts   int      `json:"watts,omitempty"`
	Status  string   `json:"status,omitempty"`
	UID     string   `json:"uid,omitempty"`
	ILO     string   `json:"ilo,omitempty"`
	MACs    []string `json:"macs,omitempty"`
	CPUs    []string `json:"cpus,omitempty"`
	// MemoryGB is what the OA reports installed.
	MemoryGB float64 `json:"memory_gb,omitempty"`
	// Filled are the fields the sync fills (or would fill).
	Filled []inventory.FieldChange `json:"filled,omitempty"`
	// Drift are the fields where the record and the OA disagree: the
	// record keeps its value (Old), the OA says New.
	Drift []inventory.FieldChange `json:"drift,omitempty"`
}

// DefaultBladeNames is the pattern of the machines a sync creates.
const DefaultBladeNames = "BLD-{bay:03}"

// Sync reads enclosure name's OA and compares it with the inventory; with
// apply it writes the result, one transaction per machine.
func (s *Syncer) Sync(ctx context.Context, name string, apply bool) (*Report, error) {
	sys, err := s.system(name)
	if err != nil {
		return nil, err
	}
	pw, err := s.Password(sys.Name, sys.BMC)
	if err != nil {
		return nil, err
	}
	c := s.client(sys, pw)
	view, addr, err := c.XMLData(ctx)
	if err != nil {
		return nil, fmt.Errorf("enclosure %s: %w", sys.Name, err)
	}
	rep := &Report{Enclosure: sys.Name, Time: s.now().UTC(), OA: addr, Model: view.Product, Serial: view.Serial, Status: view.Status,
		PowerConsumed: view.PowerConsumed, PowerCapacity: view.PowerCapacity, Applied: apply, Bays: []Bay{}}
	for _, m := range view.Managers {
		if m.Role == "ACTIVE" {
			rep.Firmware = m.Firmware
		}
	}
	infos, warnings, err := details(ctx, c, view)
	if err != nil {
		return nil, fmt.Errorf("enclosure %s: %w", sys.Name, err)
	}
	rep.Warnings = warnings
	machines, err := s.Store.Machines()
	if err != nil {
		return nil, err
	}
	now := s.now()
	taken := map[string]bool{}
	for _, m := range machines {
		taken[m.Name] = true
	}
	for _, b := range view.Blades {
		bay, err := s.syncBay(sys, b, infos[b.Bay], machines, taken, apply, now)
		if err != nil {
			return rep, err
		}
		rep.Bays = append(rep.Bays, bay)
	}
	s.remember(rep)
	return rep, nil
}

// details asks the OA over SOAP for each blade's CPUs and memory, in one
// session. A blade the OA cannot describe is a warning, not a failure;
// a login that fails is.
func details(ctx context.Context, c *oa.Client, view *oa.Enclosure) (map[int]*oa.BladeInfo, []string, error) {
	out := map[int]*oa.BladeInfo{}
	if len(view.Blades) == 0 {
		return out, nil, nil
	}
	sess, err := c.Login(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer sess.Close(context.WithoutCancel(ctx))
	var warnings []string
	for _, b := range view.Blades {
		info, err := sess.BladeInfo(ctx, b.Bay)
		if err != nil {
			warnings = append(warnings, err.Error())
			continue
		}
		out[b.Bay] = info
	}
	return out, warnings, nil
}

func (s *Syncer) system(name string) (*inventory.System, error) {
	systems, err := s.Store.Systems()
	if err != nil {
		return nil, err
	}
	for i := range systems {
		sys := &systems[i]
		if !strings.EqualFold(sys.Name, name) && !strings.EqualFold(sys.Tag, name) {
			continue
		}
		if sys.Kind != inventory.KindEnclosure {
			return nil, fmt.Errorf("%s is a %s, not an enclosure", sys.Name, sys.Kind)
		}
		if sys.BMC == nil || sys.BMC.Address == "" {
			return nil, fmt.Errorf("enclosure %s has no Onboard Administrator recorded: add bmc: {address: OA-ADDRESS, username: USER, password_secret: NAME} to its record (provisiond import)", sys.Name)
		}
		if sys.BMC.Protocol != "" && sys.BMC.Protocol != protocol.OA {
			return nil, fmt.Errorf("enclosure %s: its bmc speaks %s; a sync needs its Onboard Administrator (protocol: oa)", sys.Name, sys.BMC.Protocol)
		}
		return sys, nil
	}
	return nil, fmt.Errorf("no enclosure %s in the inventory: add it under systems (kind: enclosure) with provisiond import: %w", name, inventory.ErrNotFound)
}

func (s *Syncer) client(sys *inventory.System, pw string) *oa.Client {
	if s.Client != nil {
		return s.Client(sys, pw)
	}
	addr := sys.BMC.Address
	if sys.BMC.Port != 0 {
		addr += ":" + strconv.Itoa(sys.BMC.Port)
	}
	return &oa.Client{Addresses: []string{addr}, User: sys.BMC.Username, Password: pw, LegacyTLS: sys.OALegacyTLS}
}

func (s *Syncer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// syncBay plans (and with apply, writes) one blade's machine record.
func (s *Syncer) syncBay(sys *inventory.System, b oa.Blade, info *oa.BladeInfo, machines []inventory.Machine, taken map[string]bool, apply bool, now time.Time) (Bay, error) {
	bay := Bay{Bay: b.Bay, Product: b.Product, Serial: b.Serial, Power: b.Power, Watts: b.Watts, Status: b.Status, UID: b.UID, ILO: b.ILOAddress}
	for _, n := range b.NICs {
		bay.MACs = append(bay.MACs, n.MAC)
	}
	obs := observed(sys.Name, b, info)
	for _, c := range obs.CPUs {
		bay.CPUs = append(bay.CPUs, c.Model)
	}
	bay.MemoryGB = obs.MemoryGB
	rec := match(sys.Name, b, machines)
	create := rec == nil
	if create {
		name, err := bladeName(cmp.Or(sys.BladeNames, DefaultBladeNames), sys.Name, b.Bay)
		if err != nil {
			return bay, err
		}
		if taken[name] {
			return bay, fmt.Errorf("bay %d: a new machine would be named %s, which another machine already has: rename it, or set the enclosure's blade_names pattern", b.Bay, name)
		}
		taken[name] = true
		rec = &inventory.Machine{Name: name}
	}
	bay.Machine = rec.Name
	plan := *rec
	plan.MACs = slices.Clone(rec.MACs)
	bay.Filled, bay.Drift = merge(&plan, sys.Name, b, obs)
	switch {
	case create:
		bay.Action = "create"
	case len(bay.Filled) > 0:
		bay.Action = "update"
	default:
		bay.Action = "unchanged"
	}
	if !apply || bay.Action == "unchanged" {
		return bay, nil
	}
	saved, err := s.Store.SyncMachine(rec.Name, inventory.SourceOA, create, func(m *inventory.Machine) error {
		bay.Filled, bay.Drift = merge(m, sys.Name, b, obs)
		m.Updated = now
		return nil
	})
	if err != nil {
		return bay, fmt.Errorf("bay %d: %s: %w", b.Bay, rec.Name, err)
	}
	bay.Machine = saved.Name
	return bay, nil
}

// match finds a blade's machine record: the one in its bay, else the one
// with one of its MACs, else its serial, else its SMBIOS UUID (either
// byte order).
func match(encl string, b oa.Blade, machines []inventory.Machine) *inventory.Machine {
	for _, by := range []func(m *inventory.Machine) bool{
		func(m *inventory.Machine) bool { return strings.EqualFold(m.Enclosure, encl) && m.Bay == b.Bay },
		func(m *inventory.Machine) bool {
			for _, n := range b.NICs {
				if slices.Contains(m.MACs, n.MAC) {
					return true
				}
			}
			return false
		},
		func(m *inventory.Machine) bool { return b.Serial != "" && strings.EqualFold(m.Serial, b.Serial) },
		func(m *inventory.Machine) bool {
			return m.UUID != "" && b.SMBIOSUUID != "" && inventory.SameUUID(m.UUID, b.SMBIOSUUID)
		},
	} {
		for i := range machines {
			if by(&machines[i]) {
				return &machines[i]
			}
		}
	}
	return nil
}

// observed is the hardware record the OA describes.
func observed(encl string, b oa.Blade, info *oa.BladeInfo) inventory.Hardware {
	h := inventory.Hardware{Enclosure: encl, Bay: b.Bay, Vendor: "HP", Model: b.Product, Serial: b.Serial, BIOSVersion: b.ROM}
	if u := b.UUIDs(); len(u) > 0 {
		h.UUID = u[0]
	}
	for _, n := range b.NICs {
		h.NICs = append(h.NICs, inventory.NIC{MAC: n.MAC, Chip: n.Device})
	}
	if len(h.NICs) > 0 {
		h.NICs[0].Boot = true
	}
	if info != nil {
		for i, c := range info.CPUs {
			h.CPUs = append(h.CPUs, inventory.CPU{Socket: i + 1, Model: strings.TrimSpace(c.Type)})
		}
		if info.MemoryMB > 0 {
			h.MemoryGB = math.Round(float64(info.MemoryMB)/1024*100) / 100
		}
	}
	return h
}

// merge fills m's empty fields from the OA's view and says what it filled
// and where the two disagree.
func merge(m *inventory.Machine, encl string, b oa.Blade, obs inventory.Hardware) (filled, drift []inventory.FieldChange) {
	before := m.Hardware
	beforeMACs := slices.Clone(m.MACs)
	if m.Enclosure == "" && m.Bay == 0 {
		m.Enclosure, m.Bay = encl, b.Bay
	}
	if m.BMC == nil && b.ILOAddress != "" {
		// iLO 4 speaks IPMI over LAN with cipher suite 3; its Redfish is
		// partial. Credentials are the operator's to add.
		m.BMC = &inventory.BMC{Address: b.ILOAddress, Protocol: protocol.IPMI, CipherSuite: 3}
	}
	if len(m.MACs) == 0 {
		for _, n := range obs.NICs {
			m.MACs = append(m.MACs, n.MAC)
		}
	}
	inventory.FillEmpty(&m.Hardware, &obs)
	filled = inventory.DiffAssets(&before, &m.Hardware)
	if !slices.Equal(beforeMACs, m.MACs) {
		filled = append(filled, inventory.FieldChange{Path: "macs", Old: strings.Join(beforeMACs, ","), New: strings.Join(m.MACs, ",")})
	}
	return filled, driftOf(m, encl, b, obs)
}

// driftOf lists where the record m and the OA's view disagree.
func driftOf(m *inventory.Machine, encl string, b oa.Blade, obs inventory.Hardware) (drift []inventory.FieldChange) {
	differs := func(path, rec, oa string) {
		if inventory.Usable(rec) && inventory.Usable(oa) && !strings.EqualFold(strings.TrimSpace(rec), oa) {
			drift = append(drift, inventory.FieldChange{Path: path, Old: rec, New: oa})
		}
	}
	differs("model", m.Model, obs.Model)
	differs("serial", m.Serial, obs.Serial)
	if m.UUID != "" && obs.UUID != "" && !inventory.SameUUID(m.UUID, obs.UUID) {
		drift = append(drift, inventory.FieldChange{Path: "uuid", Old: m.UUID, New: obs.UUID})
	}
	if !strings.EqualFold(m.Enclosure, encl) || m.Bay != b.Bay {
		drift = append(drift, inventory.FieldChange{Path: "enclosure", Old: fmt.Sprintf("%s bay %d", m.Enclosure, m.Bay), New: fmt.Sprintf("%s bay %d", encl, b.Bay)})
	}
	if m.BMC != nil && b.ILOAddress != "" {
		differs("bmc.address", m.BMC.Address, b.ILOAddress)
	}
	var missing []string
	for _, n := range obs.NICs {
		if !slices.Contains(m.MACs, n.MAC) {
			missing = append(missing, n.MAC)
		}
	}
	if len(missing) > 0 {
		drift = append(drift, inventory.FieldChange{Path: "macs", Old: strings.Join(m.MACs, ","), New: strings.Join(missing, ",")})
	}
	if len(obs.CPUs) > 0 && m.CPUKnown() && len(m.CPUs) != len(obs.CPUs) {
		drift = append(drift, inventory.FieldChange{Path: "cpus", Old: strconv.Itoa(len(m.CPUs)), New: strconv.Itoa(len(obs.CPUs))})
	}
	if obs.MemoryGB > 0 && m.TotalMemoryGB() > 0 && math.Abs(m.TotalMemoryGB()-obs.MemoryGB) >= 0.5 {
		drift = append(drift, inventory.FieldChange{Path: "memory_gb", Old: strconv.FormatFloat(m.TotalMemoryGB(), 'f', -1, 64), New: strconv.FormatFloat(obs.MemoryGB, 'f', -1, 64)})
	}
	return drift
}

// bladeName renders a blade-name pattern: {bay}, {bay:03} (zero-padded
// to the width given) and {enclosure}.
func bladeName(pattern, encl string, bay int) (string, error) {
	var b strings.Builder
	rest := pattern
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("blade_names %q: a { without }", pattern)
		}
		field := rest[i+1 : i+j]
		rest = rest[i+j+1:]
		switch {
		case field == "enclosure":
			b.WriteString(encl)
		case field == "bay":
			b.WriteString(strconv.Itoa(bay))
		case strings.HasPrefix(field, "bay:"):
			w, err := strconv.Atoi(strings.TrimPrefix(field, "bay:"))
			if err != nil || w < 1 || w > 9 {
				return "", fmt.Errorf("blade_names %q: {%s} is not {bay:0N} with N from 1 to 9", pattern, field)
			}
			fmt.Fprintf(&b, "%0*d", w, bay)
		default:
			return "", fmt.Errorf("blade_names %q: unknown field {%s} (use {bay}, {bay:03} or {enclosure})", pattern, field)
		}
	}
	if b.Len() == 0 {
		return "", errors.New("blade_names renders an empty name")
	}
	return b.String(), nil
}
