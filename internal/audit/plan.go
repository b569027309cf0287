package audit

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/provisiond/provisiond/internal/inventory"
)

// Need is one thing a machine lacks for a role.
type Need struct {
	// Kind is memory, memory-unknown, boot-disk, osd-disk, scratch-disk,
	// cores or cpu-unknown.
	Kind   string  `json:"kind" yaml:"kind"`
	Amount float64 `json:"amount,omitempty" yaml:"amount,omitempty"`
	Text   string  `json:"text" yaml:"text"`
}

// Needs lists what machine m lacks for role r (nothing: it qualifies).
func Needs(m *inventory.Machine, r inventory.Role, models []Model) []Need {
	var out []Need
	mem := m.TotalMemoryGB()
	switch {
	case r.MemoryGB.Min > 0 && mem == 0:
		out = append(out, Need{Kind: "memory-unknown", Text: "memory unknown"})
	case mem < r.MemoryGB.Min:
		d := r.MemoryGB.Min - mem
		out = append(out, Need{Kind: "memory", Amount: d, Text: fmt.Sprintf("+%g GB RAM (has %g, needs %g)", d, mem, r.MemoryGB.Min)})
	}
	boot, osd, scratch := missingDisks(m.Disks, r)
	if boot > 0 {
		out = append(out, Need{Kind: "boot-disk", Amount: 1, Text: "a boot disk"})
	}
	if osd > 0 {
		out = append(out, Need{Kind: "osd-disk", Amount: float64(osd), Text: plural(osd, "OSD disk")})
	}
	if scratch > 0 {
		out = append(out, Need{Kind: "scratch-disk", Amount: float64(scratch), Text: plural(scratch, "scratch disk")})
	}
	if r.MinCores > 0 || len(r.CPUModels) > 0 {
		switch {
		case !m.CPUKnown():
			out = append(out, Need{Kind: "cpu-unknown", Text: "CPU unknown (" + cpuWants(r) + "): commission it"})
		case r.MinCores > 0 && cores(m) < r.MinCores:
			out = append(out, Need{Kind: "cores", Amount: float64(r.MinCores - cores(m)), Text: fmt.Sprintf("%d cores (has %d)", r.MinCores, cores(m))})
		}
		if m.CPUKnown() && !CPUModelFits(m, r) {
			out = append(out, Need{Kind: "cpu-model", Text: fmt.Sprintf("a CPU of %s (has %s)", strings.Join(r.CPUModels, ", "), ShortCPU(m.CPUs[0].Model))})
		}
	}
	return out
}

// cpuWants says what role r asks of the CPUs.
func cpuWants(r inventory.Role) string {
	var w []string
	if r.MinCores > 0 {
		w = append(w, fmt.Sprintf("needs %d cores", r.MinCores))
	}
	if len(r.CPUModels) > 0 {
		w = append(w, "needs "+strings.Join(r.CPUModels, " or "))
	}
	return strings.Join(w, ", ")
}

// CPUModelFits reports whether m's CPUs are of a model role r takes (any,
// when the role names none). Unknown CPUs do not fit a role that names
// models.
func CPUModelFits(m *inventory.Machine, r inventory.Role) bool {
	if len(r.CPUModels) == 0 {
		return true
	}
	if !m.CPUKnown() {
		return false
	}
	for _, c := range m.CPUs {
		ok := false
		for _, want := range r.CPUModels {
			if strings.Contains(strings.ToLower(ShortCPU(c.Model)), strings.ToLower(strings.TrimSpace(want))) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func cores(m *inventory.Machine) int {
	n := 0
	for _, c := range m.CPUs {
		n += c.Cores
	}
	return n
}

// missingDisks counts the disks role r still needs from disks: a boot disk
// (one marked boot, or any undecided one, the smallest first), then OSD
// and scratch disks (marked so, or undecided). Disks marked none, and the
// running system's disk, are never taken for data.
func missingDisks(disks []inventory.Disk, r inventory.Role) (boot, osd, scratch int) {
	var free []inventory.Disk
	hasBoot := false
	nOSD, nScratch := 0, 0
	for _, d := range disks {
		switch {
		case d.Use == inventory.DiskUseBoot || (d.Root && d.Use == ""):
			hasBoot = true
		case d.Use == inventory.DiskUseOSD:
			nOSD++
		case d.Use == inventory.DiskUseScratch:
			nScratch++
		case d.Use == "":
			free = append(free, d)
		}
	}
	sort.Slice(free, func(i, j int) bool { return free[i].SizeGB < free[j].SizeGB })
	if r.BootDisk && !hasBoot {
		if len(free) > 0 {
			free = free[1:]
		} else {
			boot = 1
		}
	}
	take := func(want, have int) int {
		for have < want && len(free) > 0 {
			free = free[:len(free)-1] // the biggest
			have++
		}
		return max(0, want-have)
	}
	osd = take(r.OSDDisks, nOSD)
	scratch = take(r.ScratchDisks, nScratch)
	return
}

// Candidate is a machine ranked for a role.
type Candidate struct {
	Machine   string   `json:"machine" yaml:"machine"`
	Qualifies bool     `json:"qualifies" yaml:"qualifies"`
	Needs     []string `json:"needs" yaml:"needs"`
	// Spares says which parts of the pool would make it qualify (or why
	// none can).
	Spares   []string `json:"spares" yaml:"spares"`
	MemoryGB float64  `json:"memory_gb" yaml:"memory_gb"`
	Disks    int      `json:"disks" yaml:"disks"`
	CPU      string   `json:"cpu" yaml:"cpu"`
	Role     string   `json:"role,omitempty" yaml:"role,omitempty"`
}

// FindRole returns the named role of roles.
func FindRole(roles []inventory.Role, name string) (inventory.Role, error) {
	var names []string
	for _, r := range roles {
		if r.Name == name {
			return r, nil
		}
		names = append(names, r.Name)
	}
	return inventory.Role{}, fmt.Errorf("role %s is not defined (roles: %s)", name, strings.Join(names, ", "))
}

// Candidates ranks the operator-entered machines for role: those that
// qualify first, then those the spare parts pool can make qualify (fewest
// parts first), then the rest; within each, by the role's rank (memory,
// disks or cores), then by name.
func Candidates(in Input, role string) ([]Candidate, error) {
	r, err := FindRole(in.Roles, role)
	if err != nil {
		return nil, err
	}
	pool := map[string]int{}
	parts := map[string]inventory.Part{}
	for _, p := range in.Parts {
		pool[p.Tag] = p.Count
		parts[p.Tag] = p
	}
	type ranked struct {
		c     Candidate
		cost  int
		key   float64
		class int
	}
	var rs []ranked
	for i := range in.Machines {
		m := &in.Machines[i]
		if m.Discovered {
			continue
		}
		needs := Needs(m, r, in.Models)
		c := Candidate{Machine: m.Name, Qualifies: len(needs) == 0, Needs: []string{}, Spares: []string{}, MemoryGB: m.TotalMemoryGB(), Disks: len(m.Disks), CPU: cpuSummary(m), Role: m.Role}
		for _, n := range needs {
			c.Needs = append(c.Needs, n.Text)
		}
		x := ranked{c: c, key: rankKey(m, r)}
		switch o, why := fit(m, r, in.Models, parts, pool); {
		case c.Qualifies:
		case o != nil:
			x.class, x.cost = 1, o.parts
			for _, a := range o.add {
				x.c.Spares = append(x.c.Spares, fmt.Sprintf("%dx %s (%s)", a.Count, a.Part, a.For))
			}
		default:
			x.class = 2
			x.c.Spares = append(x.c.Spares, "cannot: "+why)
		}
		rs = append(rs, x)
	}
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.class != b.class {
			return a.class < b.class
		}
		if a.cost != b.cost {
			return a.cost < b.cost
		}
		if a.key != b.key {
			return a.key > b.key
		}
		return a.c.Machine < b.c.Machine
	})
	out := make([]Candidate, len(rs))
	for i, x := range rs {
		out[i] = x.c
	}
	return out, nil
}

// rankKey is what a role prefers more of.
func rankKey(m *inventory.Machine, r inventory.Role) float64 {
	switch r.Rank {
	case "disks":
		var gb float64
		for _, d := range m.Disks {
			gb += d.SizeGB
		}
		return float64(len(m.Disks))*1e6 + gb
	case "cores":
		return float64(cores(m))*1e6 + m.TotalMemoryGB()
	}
	return m.TotalMemoryGB()
}

// Target asks for Count machines in a role.
type Target struct {
	Role  string `json:"role" yaml:"role"`
	Count int    `json:"count" yaml:"count"`
}

// Addition is parts going into a machine.
type Addition struct {
	Part  string `json:"part" yaml:"part"`
	Count int    `json:"count" yaml:"count"`
	// For is memory, boot, osd or scratch.
	For string `json:"for" yaml:"for"`
}

// Placement is one machine given a role by the plan.
type Placement struct {
	Role    string     `json:"role" yaml:"role"`
	Machine string     `json:"machine" yaml:"machine"`
	Before  string     `json:"before" yaml:"before"`
	Add     []Addition `json:"add" yaml:"add"`
	After   string     `json:"after" yaml:"after"`
	Notes   []string   `json:"notes,omitempty" yaml:"notes,omitempty"`
}

// PartUse says how much of a pool entry the plan uses.
type PartUse struct {
	Tag  string `json:"tag" yaml:"tag"`
	Used int    `json:"used" yaml:"used"`
	Pool int    `json:"pool" yaml:"pool"`
}

// Plan is a proposal for reaching the targets with the spare parts pool.
type Plan struct {
	Placements []Placement `json:"placements" yaml:"placements"`
	Parts      []PartUse   `json:"parts" yaml:"parts"`
	// Short says which targets cannot be met, and why.
	Short []string `json:"short,omitempty" yaml:"short,omitempty"`
}

// MakePlan proposes machines for each target, in the order given, and the
// spare parts that make them qualify. It takes the machines that need the
// fewest parts first (then the role's rank), adds DIMMs in sets of one per
// CPU so every CPU stays populated alike (pairs on a two-socket board),
// never beyond the role's memory maximum, the board's DIMM slots or disk
// bays, and never more parts than the pool holds. Machines with another
// role today are left alone.
func MakePlan(in Input, targets []Target) (*Plan, error) {
	pool := map[string]int{}
	parts := map[string]inventory.Part{}
	for _, p := range in.Parts {
		pool[p.Tag] = p.Count
		parts[p.Tag] = p
	}
	plan := &Plan{Placements: []Placement{}, Parts: []PartUse{}}
	taken := map[string]bool{}
	for _, t := range targets {
		r, err := FindRole(in.Roles, t.Role)
		if err != nil {
			return nil, err
		}
		if t.Count < 1 {
			return nil, fmt.Errorf("role %s: ask for at least one machine (%s=N)", t.Role, t.Role)
		}
		for got := 0; got < t.Count; got++ {
			var best *option
			var bestM *inventory.Machine
			var why []string
			for i := range in.Machines {
				m := &in.Machines[i]
				if m.Discovered || taken[m.Name] || (m.Role != "" && m.Role != r.Name) {
					continue
				}
				o, reason := fit(m, r, in.Models, parts, pool)
				if o == nil {
					why = append(why, m.Name+": "+reason)
					continue
				}
				if best == nil || better(o, m, best, bestM, r) {
					best, bestM = o, m
				}
			}
			if best == nil {
				msg := fmt.Sprintf("%s: found %d of %d", r.Name, got, t.Count)
				if len(why) > 0 {
					n := min(len(why), 3)
					msg += "; closest: " + strings.Join(why[:n], "; ")
				} else {
					msg += "; no machine without another role is left"
				}
				plan.Short = append(plan.Short, msg)
				break
			}
			taken[bestM.Name] = true
			for _, a := range best.add {
				pool[a.Part] -= a.Count
			}
			plan.Placements = append(plan.Placements, Placement{
				Role: r.Name, Machine: bestM.Name, Before: summary(bestM.TotalMemoryGB(), len(bestM.Disks)),
				Add: best.add, After: summary(best.memAfter, len(bestM.Disks)+best.disksAdded), Notes: best.notes,
			})
		}
	}
	for _, p := range in.Parts {
		if used := p.Count - pool[p.Tag]; used > 0 {
			plan.Parts = append(plan.Parts, PartUse{Tag: p.Tag, Used: used, Pool: p.Count})
		}
	}
	return plan, nil
}

func summary(mem float64, disks int) string {
	d := plural(disks, "disk")
	if disks == 0 {
		d = "no disks"
	}
	return fmt.Sprintf("%g GB, %s", mem, d)
}

type option struct {
	add        []Addition
	parts      int
	memAfter   float64
	disksAdded int
	notes      []string
}

func better(a *option, am *inventory.Machine, b *option, bm *inventory.Machine, r inventory.Role) bool {
	if a.parts != b.parts {
		return a.parts < b.parts
	}
	if ka, kb := rankKey(am, r), rankKey(bm, r); ka != kb {
		return ka > kb
	}
	return am.Name < bm.Name
}

// fit works out the parts m needs from the pool for role r, or why it
// cannot take the role.
func fit(m *inventory.Machine, r inventory.Role, models []Model, parts map[string]inventory.Part, pool map[string]int) (*option, string) {
	md, _ := ModelFor(models, m.Vendor, m.Model)
	o := &option{memAfter: m.TotalMemoryGB()}
	mem := m.TotalMemoryGB()
	if mem == 0 && r.MemoryGB.Min > 0 {
		return nil, "memory unknown"
	}
	if r.MinCores > 0 && m.CPUKnown() && cores(m) < r.MinCores {
		return nil, fmt.Sprintf("%d cores, needs %d", cores(m), r.MinCores)
	}
	if m.CPUKnown() && !CPUModelFits(m, r) {
		return nil, fmt.Sprintf("CPU %s, needs %s", ShortCPU(m.CPUs[0].Model), strings.Join(r.CPUModels, " or "))
	}
	if (r.MinCores > 0 || len(r.CPUModels) > 0) && !m.CPUKnown() {
		o.notes = append(o.notes, "CPU unknown ("+cpuWants(r)+"): commission it")
	}
	if d := r.MemoryGB.Min - mem; d > 0 {
		if msg := dimmRuleBroken(m, models); msg != "" {
			return nil, "needs more RAM, but " + msg + ": fix the population first"
		}
		sockets := Sockets(m, models)
		step := max(sockets, 2)
		var bestTag string
		bestK := 0
		for _, tag := range slices.Sorted(maps.Keys(parts)) {
			p := parts[tag]
			if p.Kind != inventory.PartDIMM || pool[tag] <= 0 || !dimmTypeFits(m, p) {
				continue
			}
			k := int(math.Ceil(d/p.SizeGB-1e-9)+float64(step)-1) / step * step
			if r.MemoryGB.Max > 0 && mem+float64(k)*p.SizeGB > r.MemoryGB.Max {
				continue
			}
			if k > pool[tag] {
				continue
			}
			if md.DIMMSlots > 0 && len(m.DIMMs) > 0 && len(m.DIMMs)+k > md.DIMMSlots {
				continue
			}
			if bestK == 0 || k < bestK {
				bestTag, bestK = tag, k
			}
		}
		if bestK == 0 {
			return nil, fmt.Sprintf("needs +%g GB RAM and the pool has no DIMMs that fit (in sets of %d, within %s)", d, step, memLimit(r))
		}
		o.add = append(o.add, Addition{Part: bestTag, Count: bestK, For: "memory"})
		o.parts += bestK
		o.memAfter = mem + float64(bestK)*parts[bestTag].SizeGB
		if len(m.DIMMs) == 0 {
			o.notes = append(o.notes, fmt.Sprintf("DIMM layout not recorded: check %d free slots and give each CPU the same", bestK))
		}
	}
	boot, osd, scratch := missingDisks(m.Disks, r)
	used := map[string]int{}
	for _, a := range o.add {
		used[a.Part] += a.Count
	}
	pick := func(purpose string, n int) string {
		for ; n > 0; n-- {
			tag := pickDisk(parts, pool, used, purpose == "boot")
			if tag == "" {
				return fmt.Sprintf("needs a %s disk and the pool has none left", purpose)
			}
			used[tag]++
			o.add = append(o.add, Addition{Part: tag, Count: 1, For: purpose})
			o.parts++
			o.disksAdded++
		}
		return ""
	}
	for _, need := range []struct {
		purpose string
		n       int
	}{{"boot", boot}, {"osd", osd}, {"scratch", scratch}} {
		if why := pick(need.purpose, need.n); why != "" {
			return nil, why
		}
	}
	if md.DiskBays > 0 && len(m.Disks)+o.disksAdded > md.DiskBays {
		return nil, fmt.Sprintf("needs %d more disks and has %d of %d bays in use", o.disksAdded, len(m.Disks), md.DiskBays)
	}
	o.add = mergeAdditions(o.add)
	return o, ""
}

func memLimit(r inventory.Role) string {
	if r.MemoryGB.Max > 0 {
		return fmt.Sprintf("the role's %g GB maximum", r.MemoryGB.Max)
	}
	return "the pool"
}

func dimmTypeFits(m *inventory.Machine, p inventory.Part) bool {
	gen := func(s string) string {
		s = strings.ToUpper(s)
		for _, g := range []string{"DDR2", "DDR3", "DDR4", "DDR5"} {
			if strings.Contains(s, g) {
				return g
			}
		}
		return ""
	}
	pg := gen(p.Type + " " + p.Description)
	for _, d := range m.DIMMs {
		if g := gen(d.Type); g != "" && pg != "" && g != pg {
			return false
		}
	}
	return true
}

// pickDisk chooses a disk part: for boot the smallest SSD (else the
// smallest disk), for data the biggest disk.
func pickDisk(parts map[string]inventory.Part, pool, used map[string]int, boot bool) string {
	best := ""
	for _, tag := range slices.Sorted(maps.Keys(parts)) {
		p := parts[tag]
		if p.Kind != inventory.PartDisk || pool[tag]-used[tag] <= 0 {
			continue
		}
		if best == "" {
			best = tag
			continue
		}
		b := parts[best]
		if boot {
			ps, bs := strings.EqualFold(p.Type, "ssd"), strings.EqualFold(b.Type, "ssd")
			if ps != bs {
				if ps {
					best = tag
				}
				continue
			}
			if p.SizeGB < b.SizeGB {
				best = tag
			}
		} else if p.SizeGB > b.SizeGB {
			best = tag
		}
	}
	return best
}

func mergeAdditions(in []Addition) []Addition {
	var out []Addition
	for _, a := range in {
		merged := false
		for i := range out {
			if out[i].Part == a.Part && out[i].For == a.For {
				out[i].Count += a.Count
				merged = true
			}
		}
		if !merged {
			out = append(out, a)
		}
	}
	return out
}
