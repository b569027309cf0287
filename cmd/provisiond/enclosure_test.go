package main

import (
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/enclosure/oa/oatest"
)

// enclosure sync on an inventory that holds only ASGARD: a dry run lists the
// blades to create, --apply creates them with their MACs, iLO and CPUs, a
// second sync changes nothing, and show draws the bays. The OA password
// never appears in the output.
func TestEnclosureSyncAndShow(t *testing.T) {
	ts := oatest.New("ASGARD", "CZ372137H3", "Administrator", "oa-S3CRET",
		&oatest.Blade{Bay: 3, Product: "ProLiant BL460c Gen8", PartNumber: "641016-B21", Serial: "CZ3403YLMV", UUID: "641016CZ3403YLMV",
			CUUID: "30313436-3631-5A43-3334-3033594C4D56", ILOAddress: "192.0.2.103", MACs: []string{"9c:b6:54:88:fc:b0", "9c:b6:54:88:fc:b4"},
			CPUs: []string{"Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz"}, CPUMHz: 2600, MemoryMB: 65536, On: true},
		&oatest.Blade{Bay: 6, Product: "ProLiant BL460c Gen8", PartNumber: "641016-B21", Serial: "CZ3403YLMW", ILOAddress: "192.0.2.106",
			MACs: []string{"9c:b6:54:88:fd:b0"}, CPUs: []string{"Intel(R) Xeon(R) CPU E5-2603 0 @ 1.80GHz"}, CPUMHz: 1800, MemoryMB: 8192})
	srv := httptest.NewTLSServer(ts.Handler())
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	c := newCLIEnv(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "asgard.yaml"), []byte("systems:\n  - name: ASGARD\n    tag: SYS-007\n    kind: enclosure\n    vendor: HP\n    model: BladeSystem c7000\n    bays: 16\n"+
		"    bmc: {address: "+host+", port: "+port+", username: Administrator, password_secret: asgard-oa}\n"), 0o644)
	c.must("import", filepath.Join(dir, "asgard.yaml"), "--apply")
	if _, err := c.run("enclosure", "sync", "ASGARD"); err == nil || !strings.Contains(err.Error(), "provisiond secret set asgard-oa") {
		t.Fatalf("no password stored: %v", err)
	}
	if out, err := c.runStdin("oa-S3CRET", "secret", "set", "asgard-oa"); err != nil {
		t.Fatalf("secret set: %v\n%s", err, out)
	}
	out := c.must("enclosure", "sync", "ASGARD")
	for _, want := range []string{"ASGARD: BladeSystem c7000 Enclosure G2, serial CZ372137H3", "3    BLD-003  create", "2× E5-2670 0 @ 2.60GHz  64 GB",
		"BLD-006  create", "BLD-003 fills  bay, bios_version, bmc, cpus, enclosure, memory_gb, model, nics, serial, uuid, vendor, macs", "2 bays filled: would create 2, would update 0, unchanged 0 (dry run: add --apply to store)"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if got := c.must("machine", "list"); strings.Contains(got, "BLD-003") {
		t.Fatalf("a dry run stored machines:\n%s", got)
	}
	out = c.must("enclosure", "sync", "ASGARD", "--apply")
	if !strings.Contains(out, "2 bays filled: created 2, updated 0, unchanged 0") {
		t.Errorf("apply:\n%s", out)
	}
	show := c.must("machine", "show", "BLD-003")
	for _, want := range []string{"9c:b6:54:88:fc:b0", "ASGARD", "192.0.2.103"} {
		if !strings.Contains(show, want) {
			t.Errorf("BLD-003 lacks %q:\n%s", want, show)
		}
	}
	// The recorder stores steps in batches: give it a moment.
	ev := ""
	for range 50 {
		if ev = c.must("events", "BLD-003"); strings.Contains(ev, "source=oa") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(ev, "machine.changed") || !strings.Contains(ev, "source=oa") {
		t.Errorf("timeline:\n%s", ev)
	}
	if out := c.must("enclosure", "sync", "ASGARD"); !strings.Contains(out, "unchanged 2") {
		t.Errorf("second sync:\n%s", out)
	}
	draw := c.must("enclosure", "show", "ASGARD")
	for _, want := range []string{"ASGARD (HP BladeSystem c7000): 2 of 16 bays with a machine", "| 3        | 4", "| BLD-003  | empty    | empty    | BLD-006", "| -        |"} {
		if !strings.Contains(draw, want) {
			t.Errorf("show lacks %q:\n%s", want, draw)
		}
	}
	for _, o := range []string{out, show, draw} {
		if strings.Contains(o, "oa-S3CRET") {
			t.Error("the OA password appears in the output")
		}
	}
}
