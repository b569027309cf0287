package inventory

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/provisiond/provisiond/internal/kv"
)

// placeholder values firmware puts where a real serial or name belongs.
var placeholders = map[string]bool{
	"": true, "none": true, "not specified": true, "not applicable": true, "n/a": true,
	"to be filled by o.e.m.": true, "default string": true, "system serial number": true,
	"system product name": true, "system manufacturer": true, "0123456789": true,
	"00000000-0000-0000-0000-000000000000": true, "ffffffff-ffff-ffff-ffff-ffffffffffff": true,
	"unknown": true,
}

// Usable reports whether a firmware-reported string carries information
// (not empty, not a placeholder such as "To be filled by O.E.M.").
func Usable(s string) bool {
	return !placeholders[strings.ToLower(strings.TrimSpace(s))]
}

// Observe records hardware that discovery reported (the agent on a booted
// Linux). The machine is the one named, else the one owning any of the
// reported NICs' MACs, else a new discovered machine for the boot (or
// first) NIC. What the record leaves empty is filled from the report and
// kept in the history as discovery; nothing the record holds is changed.
func (s *Store) Observe(name string, obs Observed) (*Machine, []FieldChange, error) {
	if err := obs.Hardware.validate("report"); err != nil {
		return nil, nil, err
	}
	obs.Time = obs.Time.UTC()
	if obs.Time.IsZero() {
		obs.Time = s.now().UTC()
	}
	var m *Machine
	var changes []FieldChange
	err := s.update(func(tx *kv.Tx) error {
		var err error
		m, err = s.locate(tx, name, obs.NICs)
		if err != nil {
			return err
		}
		o := obs
		m.Observed = &o
		before := m.Hardware
		FillEmpty(&m.Hardware, &obs.Hardware)
		changes = DiffAssets(&before, &m.Hardware)
		m.Updated = obs.Time
		if err := addHistory(tx, m.Name, Change{Time: obs.Time, Source: SourceDiscovery, Fields: changes}); err != nil {
			return err
		}
		return putMachine(tx, m)
	})
	if err != nil {
		return nil, nil, err
	}
	return m, changes, nil
}

func (s *Store) locate(tx *kv.Tx, name string, nics []NIC) (*Machine, error) {
	if name != "" {
		return getMachine(tx, name)
	}
	macs := tx.Bucket(bucketMACs)
	var first string
	for _, n := range nics {
		if n.MAC == "" {
			continue
		}
		if owner := macs.Get([]byte(n.MAC)); owner != nil {
			return getMachine(tx, string(owner))
		}
		if first == "" || n.Boot {
			first = n.MAC
		}
	}
	if first == "" {
		return nil, errors.New("the report names no machine and lists no NIC with a MAC address: pass --machine NAME")
	}
	return s.discover(tx, first)
}

// FillEmpty copies into rec what it leaves empty from obs (identity,
// firmware, CPUs, memory, disks, NICs); nothing rec holds changes.
func FillEmpty(rec, obs *Hardware) {
	str := func(dst *string, v string) {
		if !Usable(*dst) && Usable(v) {
			*dst = v
		}
	}
	str(&rec.Vendor, obs.Vendor)
	str(&rec.Model, obs.Model)
	str(&rec.Serial, obs.Serial)
	str(&rec.UUID, obs.UUID)
	str(&rec.BIOSVersion, obs.BIOSVersion)
	if !rec.CPUKnown() && obs.CPUKnown() {
		rec.CPUs = append([]CPU(nil), obs.CPUs...)
	}
	if len(rec.DIMMs) == 0 && len(obs.DIMMs) > 0 {
		if rec.MemoryGB == 0 || math.Abs(rec.MemoryGB-obs.TotalMemoryGB()) < 0.01 {
			rec.DIMMs = append([]DIMM(nil), obs.DIMMs...)
			rec.MemoryGB = 0
		}
	}
	if rec.TotalMemoryGB() == 0 && obs.TotalMemoryGB() > 0 {
		rec.MemoryGB = obs.TotalMemoryGB()
	}
	if len(rec.Disks) == 0 && len(obs.Disks) > 0 {
		rec.Disks = append([]Disk(nil), obs.Disks...)
	}
	if len(rec.NICs) == 0 && len(obs.NICs) > 0 {
		rec.NICs = append([]NIC(nil), obs.NICs...)
	}
}

// fillFromFacts fills the record's empty identity fields from what iPXE
// reported and returns what it filled. It runs for every event carrying
// facts, so it compares the four fields directly.
func fillFromFacts(rec *Hardware, f *Facts) []FieldChange {
	var out []FieldChange
	set := func(path string, dst *string, v string) {
		if !Usable(*dst) && Usable(v) {
			out = append(out, FieldChange{Path: path, Old: *dst, New: v})
			*dst = v
		}
	}
	set("vendor", &rec.Vendor, f.Manufacturer)
	set("model", &rec.Model, f.Product)
	set("serial", &rec.Serial, f.Serial)
	set("uuid", &rec.UUID, f.UUID)
	return out
}

// AcceptObserved makes what discovery last observed the machine's record
// (the operator resolving drift): identity, CPUs, memory, disks and NICs
// are taken from the observation; a disk keeps the use and part tag
// recorded for it (matched by serial, then device). The change is kept in
// the history as manual.
func (s *Store) AcceptObserved(name string) (*Machine, []FieldChange, error) {
	var m *Machine
	var changes []FieldChange
	err := s.update(func(tx *kv.Tx) error {
		var err error
		if m, err = getMachine(tx, name); err != nil {
			return err
		}
		if m.Observed == nil {
			return fmt.Errorf("machine %s has no observed hardware yet: commission it (provisiond commission %s) or run provisiond agent report on it first", m.Name, m.Name)
		}
		before := m.Hardware
		o := &m.Observed.Hardware
		take := func(dst *string, v string) {
			if Usable(v) {
				*dst = v
			}
		}
		take(&m.Vendor, o.Vendor)
		take(&m.Model, o.Model)
		take(&m.Serial, o.Serial)
		take(&m.UUID, o.UUID)
		take(&m.BIOSVersion, o.BIOSVersion)
		if o.CPUKnown() {
			m.CPUs = append([]CPU(nil), o.CPUs...)
		}
		if len(o.DIMMs) > 0 {
			m.DIMMs = append([]DIMM(nil), o.DIMMs...)
			m.MemoryGB = 0
		} else if o.MemoryGB > 0 {
			m.DIMMs, m.MemoryGB = nil, o.MemoryGB
		}
		if len(o.Disks) > 0 || m.Observed.Source == ObservedAgent || m.Observed.Source == ObservedCommission {
			disks := make([]Disk, len(o.Disks))
			for i, d := range o.Disks {
				for _, r := range before.Disks {
					if (d.Serial != "" && d.Serial == r.Serial) || (d.Serial == "" && d.Device != "" && d.Device == r.Device) {
						d.Use, d.Part = r.Use, r.Part
					}
				}
				disks[i] = d
			}
			m.Disks = disks
		}
		if len(o.NICs) > 0 {
			nics := make([]NIC, len(o.NICs))
			for i, n := range o.NICs {
				for _, r := range before.NICs {
					if r.MAC == n.MAC {
						n.Boot = r.Boot
					}
				}
				nics[i] = n
			}
			m.NICs = nics
		}
		changes = DiffAssets(&before, &m.Hardware)
		now := s.now().UTC()
		m.Updated = now
		if err := addHistory(tx, m.Name, Change{Time: now, Source: SourceManual, Fields: changes}); err != nil {
			return err
		}
		return putMachine(tx, m)
	})
	return m, changes, err
}
