package audit

import (
	"fmt"
	"sort"

	"github.com/provisiond/provisiond/internal/inventory"
)

// PowerLine is the estimate for one machine or enclosure.
type PowerLine struct {
	Name  string  `json:"name" yaml:"name"`
	Model string  `json:"model" yaml:"model"`
	MinW  float64 `json:"min_w" yaml:"min_w"`
	MaxW  float64 `json:"max_w" yaml:"max_w"`
	// Known is false when no figure matched the model (counted as 0).
	Known bool `json:"known" yaml:"known"`
	// Blades is, for an enclosure, how many of the machines run in it.
	Blades int `json:"blades,omitempty" yaml:"blades,omitempty"`
	// CPUTDPW is the machine's CPUs' TDP, summed, when every one is
	// known (the estimate then comes from it: Model.CPUTDPW).
	CPUTDPW float64 `json:"cpu_tdp_w,omitempty" yaml:"cpu_tdp_w,omitempty"`
}

// PowerReport estimates the power of a set of running machines.
type PowerReport struct {
	Machines   []PowerLine `json:"machines" yaml:"machines"`
	Enclosures []PowerLine `json:"enclosures" yaml:"enclosures"`
	MinW       float64     `json:"min_w" yaml:"min_w"`
	MaxW       float64     `json:"max_w" yaml:"max_w"`
	Notes      []string    `json:"notes,omitempty" yaml:"notes,omitempty"`
}

// Power estimates the power drawn when the named machines run: each
// machine's model figure, plus once the fixed overhead of every enclosure
// that has at least one of them running.
func Power(in Input, names []string) (*PowerReport, error) {
	byName := map[string]*inventory.Machine{}
	for i := range in.Machines {
		m := &in.Machines[i]
		byName[m.Name] = m
		if m.Tag != "" {
			byName[m.Tag] = m
		}
	}
	systems := map[string]*inventory.System{}
	for i := range in.Systems {
		s := &in.Systems[i]
		systems[s.Name] = s
		if s.Tag != "" {
			systems[s.Tag] = s
		}
	}
	rep := &PowerReport{Machines: []PowerLine{}, Enclosures: []PowerLine{}}
	blades := map[string]int{}
	seen := map[string]bool{}
	for _, n := range names {
		m, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("machine %s is not in the inventory", n)
		}
		if seen[m.Name] {
			continue
		}
		seen[m.Name] = true
		line := PowerLine{Name: m.Name, Model: m.Model}
		if md, ok := ModelFor(in.Models, m.Vendor, m.Model); ok && md.PowerW.Max > 0 {
			line.MinW, line.MaxW, line.Known = md.PowerW.Min, md.PowerW.Max, true
			byTDP(&line, m, md)
		} else {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: no power figure for model %q: add one under models in the config", m.Name, m.Model))
		}
		rep.Machines = append(rep.Machines, line)
		rep.MinW += line.MinW
		rep.MaxW += line.MaxW
		if m.Enclosure != "" {
			name := m.Enclosure
			if s, ok := systems[name]; ok {
				name = s.Name
			}
			blades[name]++
		}
	}
	encl := make([]string, 0, len(blades))
	for e := range blades {
		encl = append(encl, e)
	}
	sort.Strings(encl)
	for _, e := range encl {
		line := PowerLine{Name: e, Blades: blades[e]}
		if s, ok := systems[e]; ok {
			line.Model = s.Model
			if md, ok := ModelFor(in.Models, s.Vendor, s.Model); ok && md.PowerW.Max > 0 {
				line.MinW, line.MaxW, line.Known = md.PowerW.Min, md.PowerW.Max, true
			}
		}
		if !line.Known {
			rep.Notes = append(rep.Notes, fmt.Sprintf("enclosure %s: no power figure for model %q: add one under models in the config", e, line.Model))
		}
		if blades[e] < 8 && line.Known {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s runs %d blade(s): its fixed %g-%g W only pays off at 8 or more", e, blades[e], line.MinW, line.MaxW))
		}
		rep.Enclosures = append(rep.Enclosures, line)
		rep.MinW += line.MinW
		rep.MaxW += line.MaxW
	}
	return rep, nil
}

// byTDP narrows a machine's estimate when every CPU's TDP is known and its
// model says which TDPs its power range spans: the figure on that line at
// the CPUs' mean TDP (clamped to the range).
func byTDP(line *PowerLine, m *inventory.Machine, md Model) {
	if len(m.CPUs) == 0 {
		return
	}
	var sum float64
	for _, c := range m.CPUs {
		w, ok := CPUTDP(c.Model)
		if !ok {
			return
		}
		sum += w
	}
	line.CPUTDPW = sum
	span := md.CPUTDPW.Max - md.CPUTDPW.Min
	if span <= 0 {
		return
	}
	f := min(max((sum/float64(len(m.CPUs))-md.CPUTDPW.Min)/span, 0), 1)
	w := md.PowerW.Min + f*(md.PowerW.Max-md.PowerW.Min)
	line.MinW, line.MaxW = w, w
}
