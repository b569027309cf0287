package main

import (
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
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

// A blade of an enclosure with blade_control: oa is set to PXE and powered
// through the OA, boot before power; the timeline says via=oa; locate
// blinks its UID LED. A machine set to control: bmc is not sent to the OA,
// and when the OA does not answer the machine's own BMC is tried.
func TestBladeControlThroughOA(t *testing.T) {
	type power struct {
		bay     int
		on, pxe bool
	}
	powered := make(chan power, 10)
	ts := oatest.New("ASGARD", "CZ372137H3", "Administrator", "oa-S3CRET",
		&oatest.Blade{Bay: 3, Product: "ProLiant BL460c Gen8", Serial: "CZ3403YLMV", MACs: []string{"9c:b6:54:88:fc:b0"}})
	ts.OnPower = func(bay int, on, pxe bool) { powered <- power{bay, on, pxe} }
	srv := httptest.NewTLSServer(ts.Handler())
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	c := newCLIEnvWith(t, func(cfg *config.Config, _ *daemon.Options) { cfg.BMC.Timeout = "2s" })
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "asgard.yaml"), []byte("systems:\n  - name: ASGARD\n    kind: enclosure\n    bays: 16\n    blade_control: oa\n"+
		"    bmc: {protocol: oa, address: "+host+", port: "+port+", username: Administrator, password_secret: asgard-oa}\n"), 0o644)
	c.must("import", filepath.Join(dir, "asgard.yaml"), "--apply")
	c.runStdin("oa-S3CRET", "secret", "set", "asgard-oa")
	c.must("machine", "add", "BLD-003", "--mac", "9c:b6:54:88:fc:b0", "--enclosure", "ASGARD", "--bay", "3", "--profile", "local", "--param", "kernel=vmlinuz")

	if out := c.must("assign", "BLD-003", "linux", "--reboot"); !strings.Contains(out, "PXE next") {
		t.Errorf("assign --reboot:\n%s", out)
	}
	select {
	case p := <-powered:
		if p.bay != 3 || !p.on || !p.pxe {
			t.Errorf("power through the OA: %+v, want bay 3 on with PXE", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the OA did not power the blade")
	}
	calls := strings.Join(ts.Calls(), ",")
	if i, j := strings.Index(calls, "setBladeOneTimeBoot 3 PXE"), strings.Index(calls, "setBladePower 3 MOMENTARY_PRESS"); i < 0 || j < i {
		t.Errorf("want one-time PXE, then power on: %s", calls)
	}
	if c.must("locate", "BLD-003") != "BLD-003: locator LED blink (through the OA)\n" {
		t.Error("locate")
	}
	if b, _ := ts.Blade(3); b.UID != "BLINK" {
		t.Errorf("UID %s", b.UID)
	}
	c.must("locate", "BLD-003", "--off")
	ev := ""
	for range 50 {
		if ev = c.must("events", "BLD-003"); strings.Contains(ev, "state=off") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{"bmc.bootdev", "bmc.power", "via=oa", "bmc.locate", "state=blink"} {
		if !strings.Contains(ev, want) {
			t.Errorf("timeline lacks %s:\n%s", want, ev)
		}
	}
	// One login served them all (the session stays open a few seconds
	// for the next call).
	if n := strings.Count(strings.Join(ts.Calls(), ","), "userLogIn"); n != 1 {
		t.Errorf("%d OA logins: %v", n, ts.Calls())
	}

	// control: bmc: the OA is not asked (and with no BMC recorded, the
	// error says so).
	c.must("machine", "set", "BLD-003", "--control", "bmc")
	before := len(ts.Calls())
	if _, err := c.run("power", "BLD-003", "status"); err == nil {
		t.Error("power status with no BMC and control: bmc")
	}
	if len(ts.Calls()) != before {
		t.Errorf("control: bmc went to the OA: %v", ts.Calls()[before:])
	}

	// The OA gone: the machine's own BMC is tried (nothing answers on
	// port 9 either), and the timeline says why.
	c.must("machine", "set", "BLD-003", "--control", "", "--bmc-address", "127.0.0.1", "--bmc-port", "9", "--bmc-user", "admin", "--bmc-password-secret", "asgard-oa")
	srv.Close()
	out, err := c.run("power", "BLD-003", "on")
	if err == nil || strings.Contains(out, "(oa") || !strings.Contains(out, "127.0.0.1:9 (ipmi)") {
		t.Errorf("OA gone: %v\n%s", err, out)
	}
	for range 50 {
		if ev = c.must("events", "BLD-003"); strings.Contains(ev, "the OA did not answer") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(ev, `via="bmc (the OA did not answer`) {
		t.Errorf("the fallback is not on the timeline:\n%s", ev)
	}
}
