package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/providers"
	"github.com/jacobweinstock/registrar"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/certs"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/daemon/daemontest"
	"github.com/provisiond/provisiond/internal/events"
)

// simFleet is a set of simulated BMCs keyed by address, reached through a
// bmclib registry holding a test driver (bmclib's way to plug in a
// provider). A machine powered on with PXE as its next boot device "boots":
// it fetches its iPXE script and the assets the script names from the
// daemon, as iPXE would.
type simFleet struct {
	t    *testing.T
	mu   sync.Mutex
	bmcs map[string]*simBMC
	// base is the daemon's boot plane URL; calls lists every power-up in
	// the order the BMCs saw them.
	base  string
	calls []string
	wg    sync.WaitGroup
}

type simBMC struct {
	machine, mac, password string
	power                  bool
	boot                   string
	hang                   bool
	calls                  []string
}

func (f *simFleet) add(host string, b *simBMC) { f.mu.Lock(); f.bmcs[host] = b; f.mu.Unlock() }

func (f *simFleet) get(host string) *simBMC {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bmcs[host]
}

// simDriver is one session with a simulated BMC.
type simDriver struct {
	f        *simFleet
	host     string
	password string
}

func (d *simDriver) Name() string { return "sim" }

func (d *simDriver) do(call string, fn func(b *simBMC)) error {
	d.f.mu.Lock()
	b := d.f.bmcs[d.host]
	if b == nil {
		d.f.mu.Unlock()
		return fmt.Errorf("no route to host %s", d.host)
	}
	b.calls = append(b.calls, call)
	hang := b.hang
	if !hang && d.password != b.password {
		d.f.mu.Unlock()
		// A careless provider echoes what it was given.
		return fmt.Errorf("authentication failed with password %q", d.password)
	}
	if !hang && fn != nil {
		fn(b)
	}
	d.f.mu.Unlock()
	if hang {
		select {} // a dead BMC: never answers, ignores its context
	}
	return nil
}

func (d *simDriver) Open(ctx context.Context) error  { return d.do("open", nil) }
func (d *simDriver) Close(ctx context.Context) error { return nil }

func (d *simDriver) PowerStateGet(ctx context.Context) (string, error) {
	st := "Off"
	err := d.do("status", func(b *simBMC) {
		if b.power {
			st = "On"
		}
	})
	return st, err
}

func (d *simDriver) PowerSet(ctx context.Context, state string) (bool, error) {
	var boot *simBMC
	err := d.do("power "+state, func(b *simBMC) {
		switch state {
		case "on", "cycle", "reset":
			b.power = true
			d.f.calls = append(d.f.calls, b.machine)
			if b.boot == "pxe" {
				b.boot = "" // the override holds for one boot
				cp := *b
				boot = &cp
			}
		case "off", "soft":
			b.power = false
		}
	})
	if boot != nil {
		d.f.wg.Add(1)
		go d.f.pxeBoot(boot)
	}
	return err == nil, err
}

func (d *simDriver) BootDeviceSet(ctx context.Context, dev string, persistent, efi bool) (bool, error) {
	err := d.do(fmt.Sprintf("bootdev %s persistent=%v efi=%v", dev, persistent, efi), func(b *simBMC) { b.boot = dev })
	return err == nil, err
}

// pxeBoot plays iPXE: fetch the machine's script, then each asset it names.
func (f *simFleet) pxeBoot(b *simBMC) {
	defer f.wg.Done()
	time.Sleep(100 * time.Millisecond)
	if err := daemontest.PlayIPXE(f.base, b.mac); err != nil {
		f.t.Error(err)
	}
}

func newSimFleet(t *testing.T, more ...func(*config.Config, *daemon.Options)) (*simFleet, *cliEnv) {
	f := &simFleet{t: t, bmcs: map[string]*simBMC{}}
	dialer := bmc.NewBmclib(bmc.Options{Timeout: time.Second, Registry: func(ep bmc.Endpoint) *registrar.Registry {
		r := registrar.NewRegistry()
		r.Register("sim", "ipmi", registrar.Features{providers.FeaturePowerState, providers.FeaturePowerSet, providers.FeatureBootDeviceSet}, nil,
			&simDriver{f: f, host: ep.Host, password: ep.Password})
		return r
	}})
	var assets string
	c := newCLIEnvWith(t, func(cfg *config.Config, o *daemon.Options) {
		o.BMCDialer = dialer
		o.Getenv = func(k string) string {
			if k == "BLD_PW" {
				return "env-Pw-1"
			}
			return ""
		}
		assets = filepath.Join(cfg.DataDir, "assets")
		for _, fn := range more {
			fn(cfg, o)
		}
	})
	f.base = c.boot
	os.MkdirAll(assets, 0o755)
	os.WriteFile(filepath.Join(assets, "vmlinuz"), []byte(strings.Repeat("k", 4096)), 0o644)
	os.WriteFile(filepath.Join(assets, "initrd.img"), []byte(strings.Repeat("i", 8192)), 0o644)
	t.Cleanup(f.wg.Wait)
	return f, c
}

func (c *cliEnv) runStdin(stdin string, args ...string) (string, error) {
	var out strings.Builder
	e := env{get: c.getenv, stdin: strings.NewReader(stdin), stdout: &out, stderr: &out}
	root := newRoot(context.Background(), e)
	root.SetArgs(append([]string{"--server", c.server, "--token-file", c.token}, args...))
	root.SetOut(&out)
	err := root.Execute()
	return out.String(), err
}

func exitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

// A bulk run reports every machine: a dead BMC costs its own timeout, a
// wrong password its own error, and neither stops the others. Passwords
// never appear in output, timelines or listings.
func TestPowerBulkPartialFailure(t *testing.T) {
	f, c := newSimFleet(t)
	pw := "Sup3r-Secret-1"
	if out, err := c.runStdin(pw, "secret", "set", "bmc-blades"); err != nil {
		t.Fatalf("secret set: %v\n%s", err, out)
	}
	f.add("192.0.2.11", &simBMC{machine: "BLD-001", password: pw})
	f.add("192.0.2.12", &simBMC{machine: "BLD-002", password: "the-real-one"})
	f.add("192.0.2.13", &simBMC{machine: "BLD-003", password: pw, hang: true})
	f.add("192.0.2.15", &simBMC{machine: "BLD-005", password: "env-Pw-1"})
	for i, m := range []string{"BLD-001", "BLD-002", "BLD-003", "BLD-004", "BLD-005"} {
		args := []string{"machine", "add", m, "--mac", fmt.Sprintf("52:54:00:00:01:%02x", i+1), "--label", "lab=bmc"}
		switch m {
		case "BLD-004": // no BMC
		case "BLD-005":
			args = append(args, "--bmc-address", "192.0.2.15", "--bmc-user", "admin", "--bmc-password-env", "BLD_PW")
		default:
			args = append(args, "--bmc-address", fmt.Sprintf("192.0.2.1%d", i+1), "--bmc-user", "admin", "--bmc-password-secret", "bmc-blades")
		}
		c.must(args...)
	}
	out, err := c.run("power", "--label", "lab=bmc", "on", "--parallel", "4")
	if exitCode(err) != 1 || err.Error() != "2 of 4 machines failed" {
		t.Fatalf("want exit code 1 and 2 of 4 failed, got %v\n%s", err, out)
	}
	for _, w := range []string{
		"BLD-001  on", "was off, now on",
		"BLD-002  failed", `BMC 192.0.2.12 (ipmi): connect: provider: sim: authentication failed with password "[redacted]"`,
		"BLD-003  failed", "no answer within 1s",
		"BLD-005  on",
		"(1 selected machines have no BMC recorded and were left out)",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "BLD-004") {
		t.Errorf("BLD-004 has no BMC and was not named:\n%s", out)
	}
	// Named explicitly, a machine without a BMC is an error that says
	// how to add one.
	out, err = c.run("power", "BLD-004", "status")
	if exitCode(err) != 1 || !strings.Contains(out, "--bmc-address") {
		t.Errorf("BLD-004: %v\n%s", err, out)
	}
	out = c.must("power", "BLD-001", "BLD-005", "status", "-o", "json")
	var res []outcome
	if err := json.Unmarshal([]byte(out[strings.Index(out, "[\n"):]), &res); err != nil || len(res) != 2 || res[0].Result != "on" || res[1].Result != "on" {
		t.Errorf("status: %v\n%s", err, out)
	}
	// The timeline has the actions, failures included, without secrets.
	var all strings.Builder
	for _, m := range []string{"BLD-001", "BLD-002", "BLD-003"} {
		// Timeline events are stored a moment after the API answers.
		evs := c.must("events", m, "-o", "json")
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(evs, `"bmc.power"`) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			evs = c.must("events", m, "-o", "json")
		}
		all.WriteString(evs)
		if !strings.Contains(evs, `"bmc.power"`) {
			t.Errorf("%s timeline lacks bmc.power:\n%s", m, evs)
		}
	}
	if !strings.Contains(all.String(), `"result": "error"`) || !strings.Contains(all.String(), `"result": "ok"`) {
		t.Errorf("timelines:\n%s", all.String())
	}
	all.WriteString(out)
	all.WriteString(c.must("machine", "show", "BLD-002", "-o", "json"))
	all.WriteString(c.must("machine", "list", "-o", "json"))
	all.WriteString(c.must("secret", "list", "-o", "json"))
	all.WriteString(c.must("export"))
	for _, secret := range []string{pw, "env-Pw-1"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("a BMC password leaked into CLI output or the API")
		}
	}
	if b := f.get("192.0.2.11"); !b.power {
		t.Error("BLD-001 was not powered on")
	}
}

// assign --reboot --wait sets the profile, PXE as next boot, power-cycles
// (or powers on), and follows the boot until the profile's rule says done.
func TestAssignRebootWait(t *testing.T) {
	f, c := newSimFleet(t)
	c.runStdin("vm-Pass-9", "secret", "set", "bmc-vm1")
	f.add("192.0.2.20", &simBMC{machine: "vm1", mac: "52:54:00:00:02:01", password: "vm-Pass-9"})
	c.must("machine", "add", "vm1", "--mac", "52:54:00:00:02:01", "--profile", "local", "--param", "kernel=vmlinuz", "--param", "initrd=initrd.img",
		"--bmc-address", "192.0.2.20", "--bmc-user", "admin", "--bmc-password-secret", "bmc-vm1", "--firmware", "uefi")

	out, err := c.run("assign", "vm1", "linux", "--reboot", "--wait", "--timeout", "1m")
	if err != nil {
		t.Fatalf("assign linux: %v\n%s", err, out)
	}
	for _, w := range []string{"vm1: profile linux, PXE next, powered on; waiting", "http.script", "boot.done", "booted linux  done on assets"} {
		if !strings.Contains(out, w) {
			t.Errorf("assign output lacks %q:\n%s", w, out)
		}
	}
	b := f.get("192.0.2.20")
	if got := strings.Join(b.calls, ","); !strings.Contains(got, "bootdev pxe persistent=false efi=true") || !strings.Contains(got, "power on") {
		t.Errorf("BMC calls: %s", got)
	}
	f.wg.Wait()

	out, err = c.run("assign", "vm1", "local", "--reboot", "--wait", "--timeout", "1m")
	if err != nil {
		t.Fatalf("assign local: %v\n%s", err, out)
	}
	if !strings.Contains(out, "PXE next, power-cycled") || !strings.Contains(out, "booted local  done on script") || !strings.Contains(out, "http.script") {
		t.Errorf("assign local:\n%s", out)
	}
	f.wg.Wait()

	// The timeline holds the BMC steps and the boot steps together.
	var evs []events.Event
	json.Unmarshal([]byte(c.must("events", "vm1", "-o", "json")), &evs)
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	tl := strings.Join(types, ",")
	for _, w := range []string{"machine.changed,bmc.bootdev,bmc.power", "http.script,http.asset", "boot.done"} {
		if !strings.Contains(tl, w) {
			t.Errorf("timeline lacks %s: %s", w, tl)
		}
	}

	// A machine that never boots: the wait ends at --timeout with a line
	// that says what was seen last, and exit code 1.
	b = f.get("192.0.2.20")
	f.mu.Lock()
	b.mac = "52:54:00:00:02:ff" // boots as a stranger: its own MAC never asks
	f.mu.Unlock()
	out, err = c.run("assign", "vm1", "linux", "--once", "--reboot", "--wait", "--timeout", "2s")
	if exitCode(err) != 1 || !strings.Contains(out, "timed out") || !strings.Contains(out, "last step: bmc.power") {
		t.Errorf("no boot: %v\n%s", err, out)
	}
	m, _ := c.run("machine", "show", "vm1", "-o", "json")
	if !strings.Contains(m, `"then": "local"`) {
		t.Errorf("one-shot not recorded:\n%s", m)
	}

	out = c.must("bootdev", "vm1", "disk", "--persistent", "--efi=false")
	if !strings.Contains(out, "persistent, legacy BIOS") {
		t.Errorf("bootdev: %s", out)
	}
	if got := f.get("192.0.2.20").calls; !strings.Contains(strings.Join(got, ","), "bootdev disk persistent=true efi=false") {
		t.Errorf("BMC calls %v", got)
	}
	if _, err := c.run("assign", "vm1", "nosuch"); err == nil {
		t.Error("unknown profile accepted")
	}
}

// --stagger powers machines on one after another, in bay order.
func TestStaggeredPowerOn(t *testing.T) {
	f, c := newSimFleet(t)
	c.runStdin("pw-Stag-1", "secret", "set", "bmc")
	enc := filepath.Join(t.TempDir(), "enc.yaml")
	os.WriteFile(enc, []byte("systems:\n  - name: ENC\n    kind: enclosure\n    bays: 16\n"), 0o644)
	c.must("import", enc, "--apply")
	for i, bay := range []int{3, 1, 2} {
		host := fmt.Sprintf("192.0.2.3%d", i)
		name := fmt.Sprintf("B%d", bay)
		f.add(host, &simBMC{machine: name, password: "pw-Stag-1"})
		c.must("machine", "add", name, "--mac", fmt.Sprintf("52:54:00:00:03:%02x", bay), "--label", "rack=r1", "--enclosure", "ENC", "--bay", fmt.Sprint(bay),
			"--bmc-address", host, "--bmc-password-secret", "bmc")
	}
	out := c.must("power", "--label", "rack=r1", "on", "--stagger", "300ms")
	f.mu.Lock()
	got := strings.Join(f.calls, ",")
	f.mu.Unlock()
	if got != "B1,B2,B3" {
		t.Errorf("power-on order %s, want bay order\n%s", got, out)
	}
}

// A BL460c Gen8 boots legacy BIOS only: an EFI boot flag would send it
// past the network boot, so --efi is refused with why, and the BMC is not
// asked.
func TestEFIRefusedOnBIOSOnlyModels(t *testing.T) {
	f, c := newSimFleet(t)
	c.runStdin("bl-Pass-1", "secret", "set", "bmc-bl1")
	f.add("192.0.2.21", &simBMC{machine: "bl1", mac: "52:54:00:00:02:11", password: "bl-Pass-1"})
	c.must("machine", "add", "bl1", "--mac", "52:54:00:00:02:11", "--bmc-address", "192.0.2.21", "--bmc-user", "admin", "--bmc-password-secret", "bmc-bl1")
	fp, err := certs.FileFingerprint(filepath.Join(c.dataDir, certs.SelfSignedCert))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(c.token)
	ac := &api.Client{Server: c.server, Token: strings.TrimSpace(string(tok)), Fingerprint: fp}
	m, _ := ac.Machine(context.Background(), "bl1")
	m.Vendor, m.Model = "HP", "ProLiant BL460c Gen8"
	if _, err := ac.UpdateMachine(context.Background(), *m); err != nil {
		t.Fatal(err)
	}
	out, err := c.run("bootdev", "bl1", "pxe", "--efi")
	if err == nil || !strings.Contains(out+err.Error(), "bl1 boots legacy BIOS only (models: BL460c Gen8 boots bios only)") {
		t.Errorf("bootdev --efi on a Gen8: %v\n%s", err, out)
	}
	if got := strings.Join(f.get("192.0.2.21").calls, ","); strings.Contains(got, "bootdev") {
		t.Errorf("the BMC was asked anyway: %s", got)
	}
	if out := c.must("bootdev", "bl1", "pxe"); !strings.Contains(out, "legacy BIOS") {
		t.Errorf("bootdev without --efi: %s", out)
	}
}
