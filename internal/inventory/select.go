package inventory

import (
	"fmt"
	"strings"
)

// Selector picks machines, as every selecting command, the API and the
// dashboard do: by name (or asset tag), in an enclosure, with a label
// (KEY=VALUE; role=R also matches the machine's role). Its parts narrow
// each other; an empty Selector picks every machine.
type Selector struct {
	Machines  []string
	Enclosure string
	Label     string
}

// Empty reports whether s picks every machine.
func (s Selector) Empty() bool { return len(s.Machines) == 0 && s.Enclosure == "" && s.Label == "" }

// Matches reports whether m is in the enclosure and has the label asked
// for (names are Select's).
func (s Selector) Matches(m *Machine) bool {
	return s.match(func(f string) string {
		if f == "enclosure" {
			return m.Enclosure
		}
		return m.Role
	}, func(k string) string { return m.Labels[k] })
}

// match is the selector's rule over a machine's enclosure and role
// (field) and its labels (label), wherever they are read from.
func (s Selector) match(field, label func(string) string) bool {
	if s.Enclosure != "" && field("enclosure") != s.Enclosure {
		return false
	}
	if s.Label != "" {
		k, v, _ := strings.Cut(s.Label, "=")
		if label(k) != v && !(k == "role" && field("role") == v) {
			return false
		}
	}
	return true
}

// Select keeps the machines of ms that s picks, in their order. A name
// that matches no machine is an ErrNotFound error naming it.
func (s Selector) Select(ms []Machine) ([]Machine, error) {
	if s.Empty() {
		return ms, nil
	}
	want := map[string]bool{}
	for _, n := range s.Machines {
		want[n] = true
	}
	found := map[string]bool{}
	var out []Machine
	for i := range ms {
		m := &ms[i]
		if len(s.Machines) > 0 {
			if !want[m.Name] && (m.Tag == "" || !want[m.Tag]) {
				continue
			}
			found[m.Name] = true
			if m.Tag != "" {
				found[m.Tag] = true
			}
		}
		if s.Matches(m) {
			out = append(out, *m)
		}
	}
	for _, n := range s.Machines {
		if !found[n] {
			return nil, fmt.Errorf("machine %s: %w", n, ErrNotFound)
		}
	}
	return out, nil
}
