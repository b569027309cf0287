package audit

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/inventory"
)

func homelab(t testing.TB) Input {
	t.Helper()
	data, err := os.ReadFile("../../examples/homelab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := inventory.ParseDocument(data)
	if err != nil {
		t.Fatal(err)
	}
	return Input{Machines: doc.Machines, Systems: doc.Systems, Parts: doc.Parts, Roles: MergeRoles(DefaultRoles(), doc.Roles), Models: DefaultModels()}
}

func blade(name string, mut func(m *inventory.Machine)) inventory.Machine {
	m := inventory.Machine{Name: name, Hardware: inventory.Hardware{
		Vendor: "HP", Model: "ProLiant BL460c Gen8",
		CPUs:  []inventory.CPU{{Socket: 1, Model: "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", Cores: 8, Threads: 16}, {Socket: 2, Model: "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", Cores: 8, Threads: 16}},
		DIMMs: []inventory.DIMM{{Slot: "PROC 1 DIMM 1", SizeGB: 8}, {Slot: "PROC 2 DIMM 1", SizeGB: 8}},
		Disks: []inventory.Disk{{Device: "sda", SizeGB: 300}, {Device: "sdb", SizeGB: 300}},
		NICs:  []inventory.NIC{{MAC: "52:54:00:00:00:" + name[len(name)-2:]}},
		BMC:   &inventory.BMC{Address: "192.0.2.200", Protocol: "ipmi"},
	}}
	if mut != nil {
		mut(&m)
	}
	return m
}

// findings runs the audit over ms and returns "rule/severity: message" for
// machine name.
func findings(ms []inventory.Machine, name string) []string {
	rep := Audit(Input{Machines: ms, Roles: DefaultRoles(), Models: DefaultModels()})
	var out []string
	for _, f := range rep.Findings {
		if f.Machine == name && f.Rule != "roles" {
			out = append(out, fmt.Sprintf("%s/%s: %s", f.Rule, f.Severity, f.Message))
		}
	}
	return out
}

func has(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestCleanMachineHasNoWarnings(t *testing.T) {
	if got := findings([]inventory.Machine{blade("b-01", nil)}, "b-01"); len(got) != 0 {
		t.Errorf("a complete, symmetric blade has findings: %v", got)
	}
}

func TestDIMMRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(m *inventory.Machine)
		want string // "" = no dimms warning
	}{
		{"odd", func(m *inventory.Machine) {
			m.DIMMs = append(m.DIMMs, inventory.DIMM{Slot: "PROC 1 DIMM 4", SizeGB: 8})
		}, "dimms/warning: odd number of DIMMs (3)"},
		{"asymmetric", func(m *inventory.Machine) {
			m.DIMMs = []inventory.DIMM{{Slot: "PROC 1 DIMM 1", SizeGB: 8}, {Slot: "PROC 1 DIMM 4", SizeGB: 8}, {Slot: "PROC 2 DIMM 1", SizeGB: 4}, {Slot: "PROC 2 DIMM 4", SizeGB: 4}}
		}, "CPU 2 has DIMMs [4 4] GB but CPU 1 has [8 8] GB"},
		{"mixed-unlocated", func(m *inventory.Machine) {
			m.DIMMs = []inventory.DIMM{{SizeGB: 8}, {SizeGB: 4}}
		}, "mixed DIMM sizes (1× 4 GB, 1× 8 GB) and the slots do not say"},
		{"mixed-symmetric", func(m *inventory.Machine) {
			m.DIMMs = []inventory.DIMM{{Slot: "PROC 1 DIMM 1", SizeGB: 8}, {Slot: "PROC 1 DIMM 4", SizeGB: 4}, {Slot: "PROC 2 DIMM 1", SizeGB: 8}, {Slot: "PROC 2 DIMM 4", SizeGB: 4}}
		}, ""},
		{"total-14", func(m *inventory.Machine) { m.DIMMs = nil; m.MemoryGB = 14 }, "14 GB cannot be a symmetric population over 2 CPUs"},
		{"total-8", func(m *inventory.Machine) { m.DIMMs = nil; m.MemoryGB = 8 }, ""},
		{"unknown", func(m *inventory.Machine) { m.DIMMs = nil }, "memory unknown"},
	} {
		got := findings([]inventory.Machine{blade("b-01", tc.mut)}, "b-01")
		var warn []string
		for _, f := range got {
			if strings.HasPrefix(f, "dimms/warning") {
				warn = append(warn, f)
			}
		}
		if tc.want == "" && len(warn) > 0 || tc.want != "" && !has(warn, tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, got, tc.want)
		}
	}
}

func TestOtherRules(t *testing.T) {
	ms := []inventory.Machine{
		blade("b-01", func(m *inventory.Machine) { m.CPUs = nil }),
		blade("b-02", func(m *inventory.Machine) { m.Disks = nil; m.BMC = nil }),
		blade("b-03", func(m *inventory.Machine) { m.Disks[0].Use = "osd"; m.Disks[0].Root = true }),
		blade("b-04", func(m *inventory.Machine) {
			m.Disks[1].Use = "osd"
			m.Observed = &inventory.Observed{Source: "agent", Hardware: inventory.Hardware{Disks: []inventory.Disk{{Device: "sdb", SizeGB: 300, Root: true}, {Device: "sda", SizeGB: 300}}}}
		}),
		blade("b-05", func(m *inventory.Machine) { m.MACs = []string{"52:54:00:00:00:06"} }),
		blade("b-06", nil),
		blade("b-07", func(m *inventory.Machine) {
			m.Serial = "CZ1"
			m.Facts = &inventory.Facts{Serial: "CZ2"}
			m.Observed = &inventory.Observed{Source: "agent", Hardware: inventory.Hardware{
				CPUs:  []inventory.CPU{{Model: "Intel(R) Xeon(R) CPU E5-2603 0 @ 1.80GHz"}, {Model: "Intel(R) Xeon(R) CPU E5-2603 0 @ 1.80GHz"}},
				DIMMs: []inventory.DIMM{{SizeGB: 8}, {SizeGB: 8}, {SizeGB: 8}, {SizeGB: 8}},
				Disks: []inventory.Disk{{SizeGB: 300.1}},
				NICs:  []inventory.NIC{{MAC: "52:54:00:00:00:07"}, {MAC: "52:54:00:00:01:07", Name: "eno2"}},
			}}
		}),
	}
	for _, tc := range []struct{ machine, want string }{
		{"b-01", "cpu/warning: CPU model unknown"},
		{"b-02", "disks/info: no disks"},
		{"b-02", "bmc/warning: no BMC"},
		{"b-03", "boot-disk/error: disk sda holds the running system but is marked for Ceph"},
		{"b-04", "boot-disk/error: disk sdb is the boot disk the agent saw"},
		{"b-05", "mac/error: MAC 52:54:00:00:00:06 is also recorded on b-06"},
		{"b-06", "mac/error: MAC 52:54:00:00:00:06 is also recorded on b-05"},
		{"b-07", `drift/warning: serial: recorded "CZ1", iPXE reports "CZ2"`},
		{"b-07", "drift/warning: CPUs: recorded 2x Xeon E5-2670, agent reports 2x Xeon E5-2603"},
		{"b-07", "drift/warning: memory: recorded 16 GB, agent reports 32 GB"},
		{"b-07", "drift/warning: disks: recorded 300 GB + 300 GB, agent reports 300 GB"},
		{"b-07", "drift/warning: NIC 52:54:00:00:01:07 (eno2) is not in the record"},
	} {
		if got := findings(ms, tc.machine); !has(got, tc.want) {
			t.Errorf("%s: %v, want %q", tc.machine, got, tc.want)
		}
	}
	// Severity threshold.
	rep := Audit(Input{Machines: ms, Roles: DefaultRoles(), Models: DefaultModels()})
	if w, _ := rep.Worst(); w != Error {
		t.Errorf("worst %v", w)
	}
	if w, _ := Audit(Input{Machines: ms[5:6]}).Worst(); w != Info {
		t.Errorf("worst of a clean machine %v", w)
	}
}

func TestRolesAndCandidates(t *testing.T) {
	in := homelab(t)
	rep := Audit(in)
	q := map[string][]string{}
	for _, m := range rep.Machines {
		q[m.Name] = m.Qualifies
	}
	if fmt.Sprint(q["BLD-003"]) != "[control openstack-compute slurm-compute talos-worker]" {
		t.Errorf("BLD-003 (32 GB, 2 disks) qualifies for %v", q["BLD-003"])
	}
	if fmt.Sprint(q["BLD-013"]) != "[slurm-compute]" {
		t.Errorf("BLD-013 (32 GB, no disks) qualifies for %v", q["BLD-013"])
	}
	if len(q["BLD-004"]) != 0 {
		t.Errorf("BLD-004 (8 GB) qualifies for %v", q["BLD-004"])
	}
	c, err := Candidates(in, "talos-worker")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, x := range c[:3] {
		order = append(order, x.Machine+":"+strings.Join(x.Spares, "+"))
	}
	if got := strings.Join(order, " "); got != "BLD-003: BLD-013:1x HDD-004 (boot)+1x HDD-002 (osd) BLD-008:2x RAM-007 (memory)" {
		t.Errorf("best talos-worker candidates: %s", got)
	}
	for _, x := range c {
		if x.Machine == "BLD-002" && !strings.Contains(strings.Join(x.Spares, ""), "cannot: needs more RAM, but 14 GB") {
			t.Errorf("BLD-002 (broken DIMM population) gets RAM: %+v", x)
		}
	}
	if _, err := Candidates(in, "nope"); err == nil || !strings.Contains(err.Error(), "talos-worker") {
		t.Errorf("unknown role: %v", err)
	}
}

func TestPlanHomelab(t *testing.T) {
	in := homelab(t)
	p, err := MakePlan(in, []Target{{"talos-worker", 3}, {"control", 2}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pl := range p.Placements {
		s := pl.Role + ":" + pl.Machine
		for _, a := range pl.Add {
			s += fmt.Sprintf("+%dx%s", a.Count, a.Part)
		}
		got = append(got, s)
	}
	want := "talos-worker:BLD-003 talos-worker:BLD-013+1xHDD-004+1xHDD-002 talos-worker:BLD-008+2xRAM-007 control:BLD-005+4xRAM-007 control:BLD-006+4xRAM-007"
	if strings.Join(got, " ") != want {
		t.Errorf("plan:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if len(p.Short) != 0 {
		t.Errorf("short: %v", p.Short)
	}
	if fmt.Sprint(p.Parts) != "[{RAM-007 10 14} {HDD-004 1 2} {HDD-002 1 6}]" {
		t.Errorf("parts used: %v", p.Parts)
	}
	// ODEN (role talos) and the Proxmox machines are never taken.
	for _, pl := range p.Placements {
		if !strings.HasPrefix(pl.Machine, "BLD-") {
			t.Errorf("plan moved %s", pl.Machine)
		}
	}
}

func TestPlanNeverExceedsPool(t *testing.T) {
	in := homelab(t)
	// Six talos workers: BLD-003 as is, then the pool's 14 DIMMs and 2
	// SSDs go as far as they go.
	p, err := MakePlan(in, []Target{{"talos-worker", 8}})
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]int{}
	for _, pl := range p.Placements {
		for _, a := range pl.Add {
			used[a.Part] += a.Count
		}
		if pl.Role != "talos-worker" {
			t.Errorf("placement %+v", pl)
		}
	}
	for _, part := range in.Parts {
		if used[part.Tag] > part.Count {
			t.Errorf("plan uses %d of %s, the pool has %d", used[part.Tag], part.Tag, part.Count)
		}
	}
	if len(p.Short) != 1 || !strings.Contains(p.Short[0], "talos-worker: found") {
		t.Fatalf("short: %v", p.Short)
	}
	if len(p.Placements) >= 8 {
		t.Errorf("%d placements from a pool that cannot make 8", len(p.Placements))
	}
	// An empty pool: only machines that already qualify.
	in.Parts = nil
	p, _ = MakePlan(in, []Target{{"talos-worker", 2}})
	if len(p.Placements) != 1 || p.Placements[0].Machine != "BLD-003" || len(p.Short) != 1 {
		t.Errorf("empty pool: %+v", p)
	}
	if !strings.Contains(p.Short[0], "found 1 of 2") || !strings.Contains(p.Short[0], "pool has no DIMMs") {
		t.Errorf("short says %q", p.Short[0])
	}
	if _, err := MakePlan(in, []Target{{"talos-worker", 0}}); err == nil {
		t.Error("a zero target was accepted")
	}
}

func TestPlanRespectsDIMMSlotsAndMax(t *testing.T) {
	parts := []inventory.Part{{Tag: "RAM-007", Kind: "dimm", SizeGB: 8, Count: 100, Type: "DDR3 RDIMM"}, {Tag: "RAM-D4", Kind: "dimm", SizeGB: 32, Count: 100, Type: "DDR4 RDIMM"}}
	full := blade("b-01", func(m *inventory.Machine) {
		m.DIMMs = nil
		for i := 1; i <= 16; i++ {
			m.DIMMs = append(m.DIMMs, inventory.DIMM{Slot: fmt.Sprintf("PROC %d DIMM %d", (i-1)/8+1, (i-1)%8+1), SizeGB: 1, Type: "DDR3"})
		}
	})
	in := Input{Machines: []inventory.Machine{full}, Parts: parts, Roles: DefaultRoles(), Models: DefaultModels()}
	p, _ := MakePlan(in, []Target{{"talos-worker", 1}})
	if len(p.Placements) != 0 {
		t.Errorf("a board with all 16 slots full got DIMMs: %+v", p.Placements)
	}
	small := blade("b-02", func(m *inventory.Machine) {
		m.DIMMs = []inventory.DIMM{{Slot: "PROC 1 DIMM 1", SizeGB: 4, Type: "DDR3"}, {Slot: "PROC 2 DIMM 1", SizeGB: 4, Type: "DDR3"}}
	})
	in.Machines = []inventory.Machine{small}
	p, _ = MakePlan(in, []Target{{"talos-worker", 1}})
	// 8 GB -> 32: 3 RAM-007 rounded to a set per CPU = 4, never DDR4.
	if len(p.Placements) != 1 || fmt.Sprint(p.Placements[0].Add) != "[{RAM-007 4 memory}]" || p.Placements[0].After != "40 GB, 2 disks" {
		t.Errorf("plan: %+v", p.Placements)
	}
}

func TestPower(t *testing.T) {
	in := homelab(t)
	rep, err := Power(in, []string{"BLD-003", "BLD-006", "BLD-008", "ODEN"})
	if err != nil {
		t.Fatal(err)
	}
	// 3 blades x 100-150 + C7000 200-400 + ODEN 100-150.
	if rep.MinW != 600 || rep.MaxW != 1000 || len(rep.Enclosures) != 1 || rep.Enclosures[0].Blades != 3 {
		t.Errorf("power: %+v", rep)
	}
	if !has(rep.Notes, "ASGARD runs 3 blade(s): its fixed 200-400 W only pays off at 8 or more") {
		t.Errorf("notes: %v", rep.Notes)
	}
	if _, err := Power(in, []string{"NOPE"}); err == nil {
		t.Error("unknown machine accepted")
	}
	rep, _ = Power(in, []string{"TYR"})
	if !has(rep.Notes, "no power figure") {
		t.Errorf("unknown model: %+v", rep)
	}
}

// BenchmarkAudit10k audits 10,000 machines (target: well under a second).
func BenchmarkAudit10k(b *testing.B) {
	in := homelab(b)
	var ms []inventory.Machine
	for i := 0; i < 10000; i++ {
		m := blade(fmt.Sprintf("m-%05d", i), nil)
		m.NICs = []inventory.NIC{{MAC: fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&255, i>>8&255, i&255)}}
		if i%7 == 0 {
			m.DIMMs = m.DIMMs[:1]
		}
		ms = append(ms, m)
	}
	in.Machines = ms
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Audit(in)
	}
}

// An SMBIOS UUID that iPXE or the agent prints in the other byte order of
// its first three groups is the recorded UUID, not drift; another UUID is.
func TestDriftUUIDByteOrder(t *testing.T) {
	m := &inventory.Machine{Hardware: inventory.Hardware{UUID: "30313436-3631-5a43-3334-3033594c4d56"},
		Facts: &inventory.Facts{UUID: "36343130-3136-435A-3334-3033594C4D56"}}
	if d := Drift(m); len(d) != 0 {
		t.Errorf("the swapped UUID is drift: %v", d)
	}
	m.Facts.UUID = "36343130-3136-435a-3334-3033594c4d57"
	if d := Drift(m); len(d) != 1 || !strings.Contains(d[0], "uuid") {
		t.Errorf("another UUID: %v", d)
	}
}

// A commissioned blade's CPUs set its power figure: on the model's line
// from its lightest CPU's TDP to its heaviest's; a CPU not in the table
// leaves the model's range.
func TestPowerByCPUTDP(t *testing.T) {
	for _, c := range []struct {
		model      string
		min, max   float64
		tdp        float64
		wantTDPsum bool
	}{
		{"Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", 131.8, 131.8, 230, true}, // 115 W: 100 + 35/55 of 50
		{"Intel(R) Xeon(R) CPU E5-2603 0 @ 1.80GHz", 100, 100, 160, true},
		{"Intel(R) Xeon(R) CPU E5-2690 0 @ 2.90GHz", 150, 150, 270, true},
		{"Intel(R) Xeon(R) CPU E5-2650 v2 @ 2.60GHz", 113.6, 113.6, 190, true},
		{"QEMU Virtual CPU version 2.5+", 100, 150, 0, false},
	} {
		m := blade("BLD-003", func(m *inventory.Machine) {
			for i := range m.CPUs {
				m.CPUs[i].Model = c.model
			}
		})
		rep, err := Power(Input{Machines: []inventory.Machine{m}, Models: DefaultModels()}, []string{"BLD-003"})
		if err != nil {
			t.Fatal(err)
		}
		l := rep.Machines[0]
		if math.Abs(l.MinW-c.min) > 0.1 || math.Abs(l.MaxW-c.max) > 0.1 || l.CPUTDPW != c.tdp {
			t.Errorf("%s: %.1f-%.1f W, TDP %g; want %g-%g, %g", c.model, l.MinW, l.MaxW, l.CPUTDPW, c.min, c.max, c.tdp)
		}
	}
}

// A role that names CPU models takes only machines with them; a machine
// whose CPUs are unknown is told to be commissioned.
func TestRoleCPUModels(t *testing.T) {
	r := inventory.Role{Name: "fat", MemoryGB: inventory.Range{Min: 8}, CPUModels: []string{"E5-2670", "e5-2680"}}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	ok := blade("BLD-003", nil)
	slow := blade("BLD-004", func(m *inventory.Machine) { m.CPUs[1].Model = "Intel(R) Xeon(R) CPU E5-2603 0 @ 1.80GHz" })
	unknown := blade("BLD-005", func(m *inventory.Machine) { m.CPUs = nil })
	in := Input{Machines: []inventory.Machine{ok, slow, unknown}, Roles: []inventory.Role{r}, Models: DefaultModels()}
	q := map[string][]string{}
	for _, m := range Audit(in).Machines {
		q[m.Name] = m.Qualifies
	}
	if fmt.Sprint(q) != "map[BLD-003:[fat] BLD-004:[] BLD-005:[]]" {
		t.Errorf("qualifies: %v", q)
	}
	c, err := Candidates(in, "fat")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(c), "E5-2603") || !strings.Contains(fmt.Sprint(c), "commission it") {
		t.Errorf("candidates: %+v", c)
	}
	if err := (&inventory.Role{Name: "x", CPUModels: []string{" "}}).Validate(); err == nil {
		t.Error("an empty CPU model accepted")
	}
}
