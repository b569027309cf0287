package inventory

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/provisiond/provisiond/internal/kv"
)

// ObservedCommission: the commissioning OS provisiond booted reported it.
const ObservedCommission = "commission"

// Match finds the machine in the inventory (not a discovered one, not
// except) that hw is, by what firmware reports and cannot be changed from
// the network: SMBIOS UUID (either byte order), then serial, then
// enclosure and bay. by says which ("" when nothing matches). A match is a
// suggestion for machine adopt: a MAC gets a machine's profile and secrets
// only by the operator's word.
func Match(machines []Machine, hw *Hardware, except string) (name, by string) {
	rules := []struct {
		by string
		ok func(m *Machine) bool
	}{
		{"uuid", func(m *Machine) bool { return Usable(hw.UUID) && Usable(m.UUID) && SameUUID(m.UUID, hw.UUID) }},
		{"serial", func(m *Machine) bool {
			return Usable(hw.Serial) && Usable(m.Serial) && strings.EqualFold(strings.TrimSpace(m.Serial), strings.TrimSpace(hw.Serial))
		}},
		{"bay", func(m *Machine) bool {
			return hw.Enclosure != "" && hw.Bay > 0 && m.Enclosure == hw.Enclosure && m.Bay == hw.Bay
		}},
	}
	for _, r := range rules {
		for i := range machines {
			m := &machines[i]
			if m.Discovered || m.Name == except {
				continue
			}
			if r.ok(m) {
				return m.Name, r.by
			}
		}
	}
	return "", ""
}

// Adopt merges the discovered machine discovered into the machine name,
// in one transaction: its MACs, timeline, history, iPXE facts and
// observed hardware move over; what name's record leaves empty is filled
// from the observation (the rest shows as drift). A name not in the
// inventory yet becomes the discovered machine under its new name.
func (s *Store) Adopt(discovered, name string) (*Machine, []FieldChange, error) {
	var out *Machine
	var changes []FieldChange
	err := s.update(func(tx *kv.Tx) error {
		d, err := getMachine(tx, discovered)
		if err != nil {
			return err
		}
		if !d.Discovered {
			return fmt.Errorf("%s is not a discovered machine (provisiond machine list --discovered shows them): %w", discovered, ErrConflict)
		}
		m, err := getMachine(tx, name)
		switch {
		case errors.Is(err, ErrNotFound):
			m = &Machine{Name: name}
		case err != nil:
			return err
		case m.Discovered:
			return fmt.Errorf("%s is a discovered machine too: adopt into a machine of the inventory, or a new name: %w", name, ErrConflict)
		}
		for _, mac := range d.MACs {
			if !slices.Contains(m.MACs, mac) {
				m.MACs = append(m.MACs, mac)
			}
		}
		if d.Observed != nil {
			FillEmpty(&m.Hardware, &d.Observed.Hardware)
		}
		if err := m.Validate(); err != nil {
			return err
		}
		// m now owns d's MACs: storing it folds d in (adopt).
		if changes, err = s.upsert(tx, m, SourceManual); err != nil {
			return err
		}
		out = m
		return checkPlacement(tx)
	})
	if err != nil {
		return nil, nil, err
	}
	return out, changes, nil
}
