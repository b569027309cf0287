package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/agent"
	"github.com/provisiond/provisiond/internal/inventory"
)

func TestImportAuditPlan(t *testing.T) {
	c := newCLIEnv(t)
	file := "../../examples/homelab.yaml"
	out := c.must("import", file)
	if !strings.Contains(out, "+ machine BLD-016") || !strings.Contains(out, "33 would change, 0 unchanged (dry run: add --apply to store)") {
		t.Errorf("dry run:\n%s", out)
	}
	if got := c.must("machine", "list"); strings.Contains(got, "BLD-") {
		t.Errorf("dry run stored machines:\n%s", got)
	}
	if out := c.must("import", file, "--apply"); !strings.Contains(out, "33 changed, 0 unchanged") {
		t.Errorf("apply:\n%s", out)
	}
	if out := c.must("import", file); !strings.Contains(out, "0 would change, 33 unchanged") {
		t.Errorf("re-import:\n%s", out)
	}
	// Export, import the export: nothing changes; CSV too.
	y := c.must("export")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "inv.yaml"), []byte(y), 0o644)
	if out := c.must("import", filepath.Join(dir, "inv.yaml")); !strings.Contains(out, "0 would change") {
		t.Errorf("import of export:\n%s", out)
	}
	if y2 := c.must("export"); y2 != y {
		t.Error("export changed after re-import")
	}
	csv := c.must("export", "--format", "csv")
	os.WriteFile(filepath.Join(dir, "m.csv"), []byte(csv), 0o644)
	if out := c.must("import", filepath.Join(dir, "m.csv")); !strings.Contains(out, "0 would change, 21 unchanged") {
		t.Errorf("CSV import of export:\n%s", out)
	}
	// A broken file: the line, and nothing stored.
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("machines:\n  - name: BLD-001\n    memory_gb: 64\n  - name: X\n    disks: [{size_gb: 1, use: ceph}]\n"), 0o644)
	if _, err := c.run("import", filepath.Join(dir, "bad.yaml"), "--apply"); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("bad file: %v", err)
	}
	if out := c.must("machine", "show", "BLD-001"); !regexp.MustCompile(`Memory:\s+4 GB\n`).MatchString(out) {
		t.Errorf("a rejected import changed BLD-001:\n%s", out)
	}

	out = c.must("audit")
	for _, w := range []string{"BLD-003  ASGARD/3   32 GB", "control, openstack-compute, slurm-compute, talos-worker",
		"warning   BLD-002  dimms", "14 GB cannot be a symmetric population", "21 machines:"} {
		if !strings.Contains(out, w) {
			t.Errorf("audit lacks %q:\n%s", w, out)
		}
	}
	_, err := c.run("audit", "--fail-on", "warning")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Errorf("audit --fail-on warning: %v", err)
	}
	if _, err := c.run("audit", "--fail-on", "error"); err != nil {
		t.Errorf("audit --fail-on error: %v", err)
	}
	out = c.must("audit", "--role", "talos-worker")
	if lines := strings.Split(out, "\n"); len(lines) < 3 || !strings.HasPrefix(lines[1], "BLD-003") || !strings.HasPrefix(lines[2], "BLD-013") {
		t.Errorf("candidates:\n%s", out)
	}
	out = c.must("plan", "--role", "talos-worker=3", "--role", "control=2")
	for _, w := range []string{"talos-worker  BLD-013", "1x HDD-004 (boot), 1x HDD-002 (osd)", "control       BLD-006", "4x RAM-007 (memory)", "spare parts used: HDD-002 1 of 6, HDD-004 1 of 2, RAM-007 10 of 14"} {
		if !strings.Contains(out, w) {
			t.Errorf("plan lacks %q:\n%s", w, out)
		}
	}
	if out, err := c.run("plan", "--role", "talos-worker=9"); err == nil || !strings.Contains(out, "NOT ENOUGH: talos-worker: found") {
		t.Errorf("plan beyond the pool: %v\n%s", err, out)
	}
	out = c.must("audit", "power", "--enclosure", "ASGARD")
	if !strings.Contains(out, "ASGARD (enclosure, 16 running)") || !strings.Contains(out, "total") || !strings.Contains(out, "1800-2800") {
		t.Errorf("power:\n%s", out)
	}
	if out := c.must("systems"); !strings.Contains(out, "ASGARD   SYS-007  enclosure") {
		t.Errorf("systems:\n%s", out)
	}
	if out := c.must("parts"); !strings.Contains(out, "RAM-007   dimm        14") {
		t.Errorf("parts:\n%s", out)
	}
	if out := c.must("roles"); !strings.Contains(out, "talos-worker       32-64 GB") {
		t.Errorf("roles:\n%s", out)
	}
	if out := c.must("machine", "history", "BLD-007"); !strings.Contains(out, "import  disks[0].part") || !strings.Contains(out, "HDD-013") {
		t.Errorf("history:\n%s", out)
	}
}

func TestAgentReportFromThisHost(t *testing.T) {
	c := newCLIEnv(t)
	c.must("import", "../../examples/homelab.yaml", "--apply")
	hw, _ := agent.Host{}.Gather()
	if len(hw.CPUs) == 0 || hw.TotalMemoryGB() == 0 {
		t.Fatalf("the agent found no CPUs or memory on this host: %+v", hw)
	}
	out := c.must("agent", "report", "--machine", "BLD-004")
	if !strings.Contains(out, "reported BLD-004") || !strings.Contains(out, "recorded cpus[1].model") {
		t.Errorf("report:\n%s", out)
	}
	js := c.must("-o", "json", "machine", "show", "BLD-004")
	var m inventory.Machine
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if m.Observed == nil || m.Observed.Host != host || len(m.Observed.CPUs) != len(hw.CPUs) || m.CPUs[0].Model != hw.CPUs[0].Model {
		t.Errorf("observed: %+v, record CPUs %+v", m.Observed, m.CPUs)
	}
	// The record's 8 GB stays; this host's memory is drift unless equal.
	if m.MemoryGB != 8 {
		t.Errorf("memory overwritten: %v", m.MemoryGB)
	}
	if hw.TotalMemoryGB() > 9 && !strings.Contains(c.must("machine", "show", "BLD-004"), "Drift:") {
		t.Error("no drift shown")
	}
	if out := c.must("machine", "history", "BLD-004"); !strings.Contains(out, "discovery") {
		t.Errorf("history:\n%s", out)
	}
	c.must("machine", "accept", "BLD-004")
	if out := c.must("machine", "show", "BLD-004"); strings.Contains(out, "Drift: memory") {
		t.Errorf("drift after accept:\n%s", out)
	}
	// Without --machine the host's MACs find (or discover) its machine.
	hasMAC := false
	for _, n := range hw.NICs {
		hasMAC = hasMAC || n.MAC != ""
	}
	if hasMAC {
		out := c.must("agent", "report")
		if !strings.Contains(out, "reported discovered-") {
			t.Errorf("report by MAC:\n%s", out)
		}
	}
	// slurm nodes from the record the agent filled.
	out = c.must("slurm", "nodes", "BLD-004", "BLD-003")
	if !strings.Contains(out, "NodeName=BLD-004 CPUs=") || !strings.Contains(out, "NodeName=BLD-003 RealMemory=31129 # BLD-003: CPUs unknown") {
		t.Errorf("slurm nodes:\n%s", out)
	}
}

func TestSlurmNodeLine(t *testing.T) {
	m := inventory.Machine{Name: "BLD-008", Hostname: "bld-008", Hardware: inventory.Hardware{
		CPUs:  []inventory.CPU{{Socket: 1, Model: "E5-2670", Cores: 8, Threads: 16}, {Socket: 2, Model: "E5-2670", Cores: 8, Threads: 16}},
		DIMMs: []inventory.DIMM{{SizeGB: 16}, {SizeGB: 16}},
	}}
	if got := nodeLine(&m); got != "NodeName=bld-008 CPUs=32 Boards=1 SocketsPerBoard=2 CoresPerSocket=8 ThreadsPerCore=2 RealMemory=31129" {
		t.Errorf("got %s", got)
	}
}
