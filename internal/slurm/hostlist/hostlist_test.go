package hostlist

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// corpus are hostlist expressions, well-formed and not, as slurmctld and
// people write them.
var corpus = []string{
	"node-[003-005,010]", "rack[1-2]-n[01-02]", "a[9-11]", "n[1-010]", "x,y[1-2],z", "node[08-011]",
	"n[5]", "n[1-2,2]", "n[1-2]x[3]", " a , b ", "a[1-2],b[01-02]", "bld-[001-016]", "n", "n7",
	"n[010-8]", "n[]", "n[a-c]", "n[1-2]]", "n[[1-2]]", "n[0-65536]", "n[1-2", "n]", "n[-3]", "n[3-]",
}

// Each expression expands as Slurm's own scontrol show hostnames does it
// (Debian's slurm-client, with a slurm.conf of its own), and what Slurm
// refuses is refused. Three malformed inputs Slurm half-reads ("n[1-2"
// prints "n]", "n]" a name with a bracket, "n[3-]" n3) are refused here:
// slurmctld never writes them, and a typo should not power a blade.
func TestExpandAsSlurmDoes(t *testing.T) {
	scontrol, err := exec.LookPath("scontrol")
	if err != nil {
		msg := "comparing with Slurm needs scontrol: apt-get install slurm-client"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	conf := filepath.Join(t.TempDir(), "slurm.conf")
	os.WriteFile(conf, []byte("ClusterName=hostlist\nSlurmctldHost=localhost\nNodeName=n1\nPartitionName=p Nodes=n1\n"), 0o644)
	refusedHere := map[string]bool{"n[1-2": true, "n]": true, "n[3-]": true}
	for _, expr := range corpus {
		cmd := exec.Command(scontrol, "show", "hostnames", expr)
		cmd.Env = append(os.Environ(), "SLURM_CONF="+conf)
		raw, serr := cmd.CombinedOutput()
		slurm := strings.Fields(string(raw))
		slurmRefused := serr != nil || strings.Contains(string(raw), "Invalid hostlist")
		got, err := Expand(expr)
		switch {
		case slurmRefused || refusedHere[expr]:
			if err == nil {
				t.Errorf("%q: Slurm refuses it (%s), Expand gives %v", expr, strings.TrimSpace(string(raw)), got)
			}
		case err != nil:
			t.Errorf("%q: Slurm reads %v, Expand fails: %v", expr, slurm, err)
		case !slices.Equal(got, slurm):
			t.Errorf("%q: Slurm %v, Expand %v", expr, slurm, got)
		}
	}
}

func TestExpand(t *testing.T) {
	got, err := Expand("node-[003-005,010]")
	if err != nil || strings.Join(got, " ") != "node-003 node-004 node-005 node-010" {
		t.Errorf("%v %v", got, err)
	}
	if _, err := Expand("n[0-60000]x[0-9]"); err == nil {
		t.Error("600,010 hosts accepted")
	}
}

// Compress writes what Expand reads back.
func TestCompressRoundTrip(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"node-003 node-004 node-005 node-010", "node-[003-005,010]"},
		{"n9 n10 n11", "n[9-11]"},
		{"n01 n10", "n01,n10"},
		{"bld-001 x bld-002", "bld-[001-002],x"},
		{"a", "a"},
	} {
		hosts := strings.Fields(c.in)
		got := Compress(hosts)
		if got != c.want {
			t.Errorf("Compress(%s) = %s, want %s", c.in, got, c.want)
		}
		back, err := Expand(got)
		slices.Sort(back)
		slices.Sort(hosts)
		if err != nil || !slices.Equal(back, hosts) {
			t.Errorf("Expand(%s) = %v %v", got, back, err)
		}
	}
}
