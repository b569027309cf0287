// Package audit judges the hardware inventory: which machine can take which
// role and what it lacks, DIMM populations that break the symmetry rule,
// unknown CPUs, missing disks and BMCs, duplicate MACs, drift between the
// record and what discovery saw. It also plans the use of spare parts and
// estimates power. It is pure: records in, findings out.
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

// Severity orders findings.
type Severity int

// Severities, lowest first.
const (
	Info Severity = iota
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Error:
		return "error"
	}
	return "info"
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// ParseSeverity reads info, warning or error.
func ParseSeverity(s string) (Severity, error) {
	switch strings.ToLower(s) {
	case "info":
		return Info, nil
	case "warning", "warn":
		return Warning, nil
	case "error":
		return Error, nil
	}
	return Info, fmt.Errorf("severity %q is not info, warning or error", s)
}

// Finding is one thing the audit found about a machine.
type Finding struct {
	Machine  string   `json:"machine" yaml:"machine"`
	Severity Severity `json:"severity" yaml:"severity"`
	// Rule names the check: roles, dimms, cpu, disks, boot-disk, mac,
	// bmc, drift.
	Rule    string `json:"rule" yaml:"rule"`
	Message string `json:"message" yaml:"message"`
}

// Model holds figures for one hardware model, matched by a substring of
// "vendor model" (case-insensitive).
type Model struct {
	Match string `json:"match" yaml:"match"`
	// Sockets is the number of CPU sockets (when the CPUs are not recorded).
	Sockets int `json:"sockets,omitempty" yaml:"sockets,omitempty"`
	// DIMMSlots and DiskBays bound what the planner adds.
	DIMMSlots int `json:"dimm_slots,omitempty" yaml:"dimm_slots,omitempty"`
	DiskBays  int `json:"disk_bays,omitempty" yaml:"disk_bays,omitempty"`
	// DIMMSizesGB are the module sizes the board takes.
	DIMMSizesGB []float64 `json:"dimm_sizes_gb,omitempty" yaml:"dimm_sizes_gb,omitempty"`
	// PowerW is the power drawn running (for an enclosure: with no blades).
	PowerW inventory.Range `json:"power_w,omitzero" yaml:"power_w,omitempty"`
	// CPUTDPW is the per-CPU TDP range PowerW spans: its lightest CPU
	// runs at PowerW.Min, its heaviest at PowerW.Max. With every CPU's
	// TDP known, the estimate is read off that line.
	CPUTDPW inventory.Range `json:"cpu_tdp_w,omitzero" yaml:"cpu_tdp_w,omitempty"`
	// Firmware is the only boot firmware the model network-boots with
	// (bios or uefi; empty: either). A BL460c Gen8 has no UEFI: its
	// machines get no answer to a UEFI PXE request and no EFI boot flag.
	Firmware string `json:"firmware,omitempty" yaml:"firmware,omitempty"`
}

// Input is everything the audit looks at.
type Input struct {
	Machines []inventory.Machine
	Systems  []inventory.System
	Parts    []inventory.Part
	Roles    []inventory.Role
	Models   []Model
}

// MachineReport is the audit of one machine.
type MachineReport struct {
	Name      string   `json:"name" yaml:"name"`
	Enclosure string   `json:"enclosure,omitempty" yaml:"enclosure,omitempty"`
	Bay       int      `json:"bay,omitempty" yaml:"bay,omitempty"`
	Role      string   `json:"role,omitempty" yaml:"role,omitempty"`
	MemoryGB  float64  `json:"memory_gb" yaml:"memory_gb"`
	Disks     int      `json:"disks" yaml:"disks"`
	CPU       string   `json:"cpu" yaml:"cpu"`
	Qualifies []string `json:"qualifies" yaml:"qualifies"`
	// Lacks says, per role it does not qualify for, what is missing.
	Lacks    map[string][]string `json:"lacks,omitempty" yaml:"lacks,omitempty"`
	Findings []Finding           `json:"findings" yaml:"findings"`
}

// Report is a whole audit.
type Report struct {
	Machines []MachineReport `json:"machines" yaml:"machines"`
	Findings []Finding       `json:"findings" yaml:"findings"`
}

// Worst returns the highest severity among the findings (Info when none).
func (r *Report) Worst() (Severity, bool) {
	if len(r.Findings) == 0 {
		return Info, false
	}
	w := Info
	for _, f := range r.Findings {
		if f.Severity > w {
			w = f.Severity
		}
	}
	return w, true
}

// ruleOrder is the order findings of one severity are listed in: what
// stops a boot first, then what is wrong in the hardware.
var ruleOrder = map[string]int{"mac": 0, "boot-disk": 1, "drift": 2, "dimms": 3, "disks": 4, "cpu": 5, "bmc": 6}

// Sorted returns the findings at least as severe as min, worst first and,
// within a severity, in the order an operator fixes them (MACs, boot
// disks, drift, DIMMs, disks, CPUs, BMCs).
func (r *Report) Sorted(min Severity) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity >= min {
			out = append(out, f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Severity != out[j].Severity {
			return out[i].Severity > out[j].Severity
		}
		return ruleOrder[out[i].Rule] < ruleOrder[out[j].Rule]
	})
	return out
}

// Counts returns how many findings there are of each severity.
func (r *Report) Counts() map[Severity]int {
	n := map[Severity]int{}
	for _, f := range r.Findings {
		n[f.Severity]++
	}
	return n
}

// ModelFor returns the figures for a machine or system's vendor and model.
func ModelFor(models []Model, vendor, model string) (Model, bool) {
	s := strings.ToLower(vendor + " " + model)
	for _, m := range models {
		if m.Match != "" && strings.Contains(s, strings.ToLower(m.Match)) {
			return m, true
		}
	}
	return Model{}, false
}

// Firmware is the boot firmware machine m is bound to: its own record's,
// else its model's (""; either), and which of the two said so.
func Firmware(m *inventory.Machine, models []Model) (fw, why string) {
	return FirmwareFor(m.Firmware, m.Vendor, m.Model, models)
}

// FirmwareFor is Firmware on a machine's parts (the DHCP path has only
// those): its own setting, else its model's.
func FirmwareFor(own, vendor, model string, models []Model) (fw, why string) {
	if own != "" {
		return own, "the machine's firmware setting"
	}
	if mod, ok := ModelFor(models, vendor, model); ok && mod.Firmware != "" {
		return mod.Firmware, "models: " + mod.Match + " boots " + mod.Firmware + " only"
	}
	return "", ""
}

// Sockets returns the number of CPU sockets of m: recorded CPUs, else the
// model's figure, else 0 (unknown).
func Sockets(m *inventory.Machine, models []Model) int {
	if len(m.CPUs) > 0 {
		return len(m.CPUs)
	}
	if md, ok := ModelFor(models, m.Vendor, m.Model); ok {
		return md.Sockets
	}
	return 0
}

// Audit runs every rule over the machines of in (discovered machines
// included: they are real hardware too).
func Audit(in Input) *Report {
	rep := &Report{Machines: []MachineReport{}, Findings: []Finding{}}
	dups := duplicateMACs(in.Machines)
	for i := range in.Machines {
		m := &in.Machines[i]
		mr := MachineReport{
			Name: m.Name, Enclosure: m.Enclosure, Bay: m.Bay, Role: m.Role,
			MemoryGB: m.TotalMemoryGB(), Disks: len(m.Disks), CPU: cpuSummary(m),
			Qualifies: []string{}, Findings: []Finding{},
		}
		add := func(sev Severity, rule, format string, args ...any) {
			mr.Findings = append(mr.Findings, Finding{Machine: m.Name, Severity: sev, Rule: rule, Message: fmt.Sprintf(format, args...)})
		}
		for _, r := range in.Roles {
			needs := Needs(m, r, in.Models)
			if len(needs) == 0 {
				mr.Qualifies = append(mr.Qualifies, r.Name)
				continue
			}
			if mr.Lacks == nil {
				mr.Lacks = map[string][]string{}
			}
			for _, n := range needs {
				mr.Lacks[r.Name] = append(mr.Lacks[r.Name], n.Text)
			}
		}
		if len(in.Roles) > 0 {
			if len(mr.Qualifies) > 0 {
				add(Info, "roles", "qualifies for %s", strings.Join(mr.Qualifies, ", "))
			} else {
				add(Info, "roles", "qualifies for no role")
			}
		}
		checkDIMMs(m, in.Models, add)
		if !m.CPUKnown() {
			add(Warning, "cpu", "CPU model unknown: commission it (provisiond commission), or run provisiond agent report on it")
		}
		if len(m.Disks) == 0 {
			add(Info, "disks", "no disks recorded: only stateless roles fit")
		}
		checkBootDisk(m, add)
		for _, mac := range dups[m.Name] {
			add(Error, "mac", "%s", mac)
		}
		if m.BMC == nil && !m.Discovered {
			add(Warning, "bmc", "no BMC recorded: power and boot device cannot be switched remotely (record bmc: address, protocol, username, password_secret)")
		}
		for _, d := range Drift(m) {
			add(Warning, "drift", "%s", d)
		}
		rep.Findings = append(rep.Findings, mr.Findings...)
		rep.Machines = append(rep.Machines, mr)
	}
	return rep
}

func cpuSummary(m *inventory.Machine) string {
	if !m.CPUKnown() {
		return "unknown"
	}
	count := map[string]int{}
	var order []string
	for _, c := range m.CPUs {
		name := ShortCPU(c.Model)
		if count[name] == 0 {
			order = append(order, name)
		}
		count[name]++
	}
	var parts []string
	for _, n := range order {
		parts = append(parts, fmt.Sprintf("%dx %s", count[n], n))
	}
	return strings.Join(parts, ", ")
}

// ShortCPU trims a CPU's marketing name to its model: "Intel(R) Xeon(R)
// CPU E5-2670 0 @ 2.60GHz" becomes "Xeon E5-2670".
func ShortCPU(s string) string {
	s = strings.NewReplacer("(R)", "", "(r)", "", "(TM)", "", "(tm)", "").Replace(s)
	s = strings.NewReplacer(" CPU ", " ", "Intel ", "").Replace(s)
	if i := strings.Index(s, "@"); i >= 0 {
		s = s[:i]
	}
	f := strings.Fields(s)
	// Drop a lone "0" (Sandy Bridge EP's stepping marker).
	out := f[:0]
	for _, w := range f {
		if w != "0" {
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

// checkDIMMs applies the DIMM rule: populate each CPU's channels
// symmetrically, in pairs or quads, never an odd count.
func checkDIMMs(m *inventory.Machine, models []Model, add func(Severity, string, string, ...any)) {
	sockets := Sockets(m, models)
	if len(m.DIMMs) == 0 {
		total := m.TotalMemoryGB()
		if total == 0 {
			add(Warning, "dimms", "memory unknown: record memory_gb or run the agent")
			return
		}
		md, _ := ModelFor(models, m.Vendor, m.Model)
		if sockets > 0 && !symmetricTotal(total, sockets, md.DIMMSizesGB) {
			add(Warning, "dimms", "%g GB cannot be a symmetric population over %d CPUs (pairs or quads of equal DIMMs per CPU): mixed DIMMs or an odd count", total, sockets)
			return
		}
		add(Info, "dimms", "DIMM layout not recorded: the agent reads it from SMBIOS")
		return
	}
	n := len(m.DIMMs)
	if n%2 == 1 {
		add(Warning, "dimms", "odd number of DIMMs (%d): populate in pairs or quads", n)
	}
	sizes := map[float64]int{}
	per := map[int][]float64{}
	located := true
	for _, d := range m.DIMMs {
		sizes[d.SizeGB]++
		s := inventory.DIMMSocket(d.Slot)
		if s == 0 {
			located = false
		}
		per[s] = append(per[s], d.SizeGB)
	}
	if sockets > 1 && n%sockets != 0 {
		add(Warning, "dimms", "%d DIMMs cannot be spread evenly over %d CPUs", n, sockets)
	}
	if located && sockets > 1 {
		var ref string
		for s := 1; s <= sockets; s++ {
			sort.Float64s(per[s])
			got := fmt.Sprint(per[s])
			if s == 1 {
				ref = got
			} else if got != ref {
				add(Warning, "dimms", "CPU %d has DIMMs %s GB but CPU 1 has %s GB: populate every CPU alike", s, got, ref)
			}
		}
	}
	if len(sizes) > 1 {
		var list []string
		for _, k := range slices.Sorted(maps.Keys(sizes)) {
			list = append(list, fmt.Sprintf("%d× %g GB", sizes[k], k))
		}
		if located {
			add(Info, "dimms", "mixed DIMM sizes (%s)", strings.Join(list, ", "))
		} else {
			add(Warning, "dimms", "mixed DIMM sizes (%s) and the slots do not say which CPU each is on: check every CPU has the same", strings.Join(list, ", "))
		}
	}
}

// dimmRuleBroken says how m's DIMM population breaks the rule, or "".
func dimmRuleBroken(m *inventory.Machine, models []Model) string {
	var msg string
	checkDIMMs(m, models, func(sev Severity, _ string, format string, args ...any) {
		if sev >= Warning && msg == "" {
			msg = fmt.Sprintf(format, args...)
		}
	})
	return msg
}

// symmetricTotal reports whether total GB can be an even number of equal
// DIMMs on each of sockets CPUs, using module sizes the board takes.
func symmetricTotal(total float64, sockets int, sizes []float64) bool {
	if len(sizes) == 0 {
		sizes = []float64{1, 2, 4, 8, 16, 32, 64, 128}
	}
	per := total / float64(sockets)
	for _, s := range sizes {
		c := per / s
		if c >= 1 && math.Abs(c-math.Round(c)) < 1e-9 {
			n := int(math.Round(c))
			if n == 1 || n%2 == 0 {
				// One DIMM per CPU is symmetric too (pairs across CPUs).
				if n == 1 && sockets == 1 {
					continue
				}
				return true
			}
		}
	}
	return false
}

func checkBootDisk(m *inventory.Machine, add func(Severity, string, string, ...any)) {
	for _, d := range m.Disks {
		if d.Use == inventory.DiskUseOSD && d.Root {
			add(Error, "boot-disk", "disk %s holds the running system but is marked for Ceph (use: osd): Ceph would wipe it", diskName(d))
		}
	}
	if m.Observed == nil {
		return
	}
	for _, o := range m.Observed.Disks {
		if !o.Root {
			continue
		}
		for _, d := range m.Disks {
			if d.Use == inventory.DiskUseOSD && !d.Root && sameDisk(d, o) {
				add(Error, "boot-disk", "disk %s is the boot disk the agent saw (root filesystem) but is marked for Ceph (use: osd): Ceph would wipe it", diskName(d))
			}
		}
	}
	boots := 0
	for _, d := range m.Disks {
		if d.Use == inventory.DiskUseBoot {
			boots++
		}
	}
	if boots > 1 {
		add(Warning, "boot-disk", "%d disks are marked as boot disk: mark one", boots)
	}
}

func sameDisk(a, b inventory.Disk) bool {
	if a.Serial != "" && b.Serial != "" {
		return a.Serial == b.Serial
	}
	return a.Device != "" && a.Device == b.Device
}

func diskName(d inventory.Disk) string {
	switch {
	case d.Device != "":
		return d.Device
	case d.Part != "":
		return d.Part
	case d.Serial != "":
		return d.Serial
	}
	return fmt.Sprintf("(%g GB %s)", d.SizeGB, d.Bus)
}

// duplicateMACs finds MACs recorded on more than one machine (boot MACs
// and NICs), or twice on one.
func duplicateMACs(ms []inventory.Machine) map[string][]string {
	owners := map[string][]string{}
	for _, m := range ms {
		seen := map[string]bool{}
		for _, mac := range m.MACs {
			seen[mac] = true
			owners[mac] = append(owners[mac], m.Name)
		}
		nicSeen := map[string]bool{}
		for _, n := range m.NICs {
			if n.MAC == "" {
				continue
			}
			if nicSeen[n.MAC] {
				owners[n.MAC] = append(owners[n.MAC], m.Name)
			}
			nicSeen[n.MAC] = true
			if !seen[n.MAC] {
				seen[n.MAC] = true
				owners[n.MAC] = append(owners[n.MAC], m.Name)
			}
		}
	}
	out := map[string][]string{}
	for _, mac := range slices.Sorted(maps.Keys(owners)) {
		names := owners[mac]
		if len(names) < 2 {
			continue
		}
		uniq := map[string]bool{}
		for _, n := range names {
			uniq[n] = true
		}
		for n := range uniq {
			if len(uniq) == 1 {
				out[n] = append(out[n], fmt.Sprintf("MAC %s is listed twice on this machine", mac))
				continue
			}
			var others []string
			for o := range uniq {
				if o != n {
					others = append(others, o)
				}
			}
			sort.Strings(others)
			out[n] = append(out[n], fmt.Sprintf("MAC %s is also recorded on %s: a copy-paste error or a moved NIC", mac, strings.Join(others, ", ")))
		}
	}
	return out
}

// Drift lists the differences between a machine's record and what
// discovery last saw (the agent's report and the iPXE facts).
func Drift(m *inventory.Machine) []string {
	var out []string
	cmp := func(what, rec, obs, src string) {
		if inventory.Usable(rec) && inventory.Usable(obs) && !strings.EqualFold(strings.TrimSpace(rec), strings.TrimSpace(obs)) {
			out = append(out, fmt.Sprintf("%s: recorded %q, %s reports %q", what, rec, src, obs))
		}
	}
	// An SMBIOS UUID in the other byte order is the same UUID.
	cmpUUID := func(rec, obs, src string) {
		if !inventory.SameUUID(rec, obs) {
			cmp("uuid", rec, obs, src)
		}
	}
	if f := m.Facts; f != nil {
		cmp("vendor", m.Vendor, f.Manufacturer, "iPXE")
		cmp("model", m.Model, f.Product, "iPXE")
		cmp("serial", m.Serial, f.Serial, "iPXE")
		cmpUUID(m.UUID, f.UUID, "iPXE")
	}
	o := m.Observed
	if o == nil {
		return out
	}
	src := o.Source
	cmp("vendor", m.Vendor, o.Vendor, src)
	cmp("model", m.Model, o.Model, src)
	cmp("serial", m.Serial, o.Serial, src)
	cmpUUID(m.UUID, o.UUID, src)
	if m.CPUKnown() && o.CPUKnown() {
		rc, oc := cpuSummary(m), cpuSummary(&inventory.Machine{Hardware: o.Hardware})
		if rc != oc {
			out = append(out, fmt.Sprintf("CPUs: recorded %s, %s reports %s", rc, src, oc))
		}
	}
	// Without DIMMs the agent reports the kernel's MemTotal, a few per cent
	// below what is installed.
	tol := 0.5
	if len(o.DIMMs) == 0 {
		tol = math.Max(tol, 0.1*m.TotalMemoryGB())
	}
	if r, g := m.TotalMemoryGB(), o.TotalMemoryGB(); r > 0 && g > 0 && math.Abs(r-g) > tol {
		out = append(out, fmt.Sprintf("memory: recorded %g GB, %s reports %g GB", r, src, g))
	} else if len(m.DIMMs) > 0 && len(o.DIMMs) > 0 && len(m.DIMMs) != len(o.DIMMs) {
		out = append(out, fmt.Sprintf("DIMMs: recorded %d, %s reports %d", len(m.DIMMs), src, len(o.DIMMs)))
	}
	if src == "agent" || len(o.Disks) > 0 {
		if rs, os := diskSizes(m.Disks), diskSizes(o.Disks); len(m.Disks) > 0 && !sameSizes(rs, os) {
			out = append(out, fmt.Sprintf("disks: recorded %s, %s reports %s", sizeList(rs), src, sizeList(os)))
		}
	}
	if len(m.NICs) > 0 && len(o.NICs) > 0 {
		rec := map[string]bool{}
		for _, n := range m.NICs {
			if n.MAC != "" {
				rec[n.MAC] = true
			}
		}
		for _, n := range o.NICs {
			if n.MAC != "" && len(rec) > 0 && !rec[n.MAC] {
				out = append(out, fmt.Sprintf("NIC %s (%s) is not in the record", n.MAC, n.Name))
			}
		}
	}
	return out
}

func diskSizes(ds []inventory.Disk) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.SizeGB
	}
	sort.Float64s(out)
	return out
}

// sameSizes compares disk sizes allowing 5% (labels round: a "146 GB"
// disk reports 146.8 GB, a "1 TB" one 1000.2 GB).
func sameSizes(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 0.05*math.Max(a[i], b[i]) {
			return false
		}
	}
	return true
}

func sizeList(s []float64) string {
	if len(s) == 0 {
		return "none"
	}
	var p []string
	for _, x := range s {
		p = append(p, fmt.Sprintf("%g GB", math.Round(x)))
	}
	return strings.Join(p, " + ")
}
