// Package browser drives the dashboard in Debian's Chromium (headless,
// through the DevTools protocol with chromedp) against a real daemon that
// has the example homelab imported, with ipmi_sim as a blade's BMC.
// Screenshots of the main pages go to test/browser/screenshots/.
package browser

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/provisiond/provisiond/internal/bmc/ipmisim"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/daemon/daemontest"
	"github.com/provisiond/provisiond/internal/inventory"
)

const (
	bladeMAC    = "52:54:00:00:06:01"
	bmcUser     = "admin"
	bmcPassword = "brw-BMC-pass-4711"
)

// chromium finds Debian's Chromium.
func chromium(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("the browser test needs Chromium: apt-get install chromium")
	return ""
}

// freeUDPPort finds a UDP port on loopback for the BMC.
func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// screenshotDir is where the run leaves its screenshots for review.
func screenshotDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// problems collects what the page's console and the browser's log report
// as errors (a script exception, a refused Content-Security-Policy).
type problems struct {
	mu   sync.Mutex
	list []string
}

func (p *problems) add(s string) { p.mu.Lock(); p.list = append(p.list, s); p.mu.Unlock() }
func (p *problems) all() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.list...)
}

// TestDashboard is the operator's tour: find ASGARD's 16 bays, open a
// blade, see that nothing can be done without the token, sign in, assign a
// profile with "PXE next and power-cycle" (through ipmi_sim, a real IPMI
// BMC), and watch the timeline fill in live while the blade boots; then
// power it off, and look at the audit and the plan. No page shows a secret.
func TestDashboard(t *testing.T) {
	exe := chromium(t)
	if why := ipmisim.Available(); why != "" {
		t.Skip("the browser test " + why)
	}
	port := freeUDPPort(t)
	sim := ipmisim.Start(t, ipmisim.Options{Dir: t.TempDir(), Addr: "127.0.0.1", Port: port, User: bmcUser, Password: bmcPassword,
		Running: `[ "$(cat $D/power 2>/dev/null)" = on ]`, Start: `echo on >$D/power`, Stop: `echo off >$D/power`})

	d := daemontest.Start(t, func(cfg *config.Config, _ *daemon.Options) { cfg.BMC.Timeout = "10s" })
	d.WriteAssets(t)
	token := d.Token(t)
	c := d.ImportHomelab(t)
	ctx := context.Background()
	if err := c.SetSecret(ctx, "bld-006-bmc", bmcPassword); err != nil {
		t.Fatal(err)
	}
	blade, err := c.Machine(ctx, "BLD-006")
	if err != nil {
		t.Fatal(err)
	}
	blade.MACs = []string{bladeMAC}
	blade.Params = map[string]string{"kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": "console=ttyS0"}
	blade.BMC = &inventory.BMC{Address: "127.0.0.1", Port: port, Protocol: inventory.BMCIPMI, Username: bmcUser, PasswordSecret: "bld-006-bmc", CipherSuite: 3}
	if _, err := c.UpdateMachine(ctx, *blade); err != nil {
		t.Fatal(err)
	}

	shots := screenshotDir(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		// The dashboard is served over HTTPS with the daemon's self-signed
		// certificate: the browser trusts exactly that key.
		chromedp.Flag("ignore-certificate-errors-spki-list", d.SPKIHash(t)),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	var seen problems
	bctx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithListener(func(ev any) {
		switch e := ev.(type) {
		case *cdpruntime.EventExceptionThrown:
			seen.add(fmt.Sprintf("script exception: %s at %s:%d", e.ExceptionDetails.Text, e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber))
		case *cdpruntime.EventConsoleAPICalled:
			if e.Type == cdpruntime.ConsoleAPICalledTypeError {
				seen.add(fmt.Sprintf("console error: %v", e.Args))
			}
		case *cdplog.EventEntryAdded:
			// A BMC action that fails answers 502: the page shows it. Any
			// other error entry (a blocked script or style) is a problem.
			if e.Entry.Level == cdplog.EntryLevelError && !strings.Contains(e.Entry.Text, "status of 401") {
				seen.add("browser log: " + e.Entry.Text + " " + e.Entry.URL)
			}
		}
	}))
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 3*time.Minute)
	defer cancelTimeout()

	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	screenshot := func(name string) {
		t.Helper()
		png := get(t, bctx, "screenshot "+name, chromedp.FullScreenshot(100))
		path := filepath.Join(shots, name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	noSecrets := func(page string) {
		t.Helper()
		html := get(t, bctx, "reading "+page, chromedp.OuterHTML(chromedp.CSS("html")))
		for _, s := range []string{bmcPassword, token} {
			if strings.Contains(html, s) {
				t.Errorf("%s shows a secret", page)
			}
		}
	}

	// The enclosure: ASGARD's 16 bays, each with its blade.
	run("opening the dashboard", chromedp.Navigate(d.URL+"/"), chromedp.WaitVisible(chromedp.CSS(`#enclosure-ASGARD`)))
	if proto := get(t, bctx, "reading the scheme", chromedp.Evaluate[string](`location.protocol`)); proto != "https:" {
		t.Fatalf("the dashboard is served over %s, want https:", proto)
	}
	bays := get(t, bctx, "counting the bays", chromedp.Evaluate[int](`document.querySelectorAll('#enclosure-ASGARD a.bay[data-machine^="BLD-"]').length`))
	if bays != 16 {
		t.Fatalf("ASGARD shows %d blades, want 16", bays)
	}
	title := get(t, bctx, "reading the enclosure's title", chromedp.Text(chromedp.CSS(`#enclosure-ASGARD h2`)))
	if !strings.Contains(title, "16 bays") || !strings.Contains(title, "BladeSystem c7000") {
		t.Errorf("ASGARD's title: %q", title)
	}
	noSecrets("the machines page")
	screenshot("machines")

	// A blade's page, not signed in: the actions are locked, and the API
	// refuses them even when the page's script is bypassed.
	run("opening BLD-006",
		chromedp.Click(chromedp.CSS(`a.bay[data-machine="BLD-006"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#machine[data-machine="BLD-006"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#actions-locked`)))
	disabled := get(t, bctx, "looking at the buttons", chromedp.Evaluate[bool](`document.querySelector('#assign-submit').disabled && document.querySelector('#power-on').disabled`))
	status := get(t, bctx, "trying to act without the token", chromedp.Evaluate[int](`fetch('/api/v1/machines/BLD-006/assign', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{"profile":"linux"}'}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if !disabled {
		t.Error("the action buttons are enabled without signing in")
	}
	if status != 401 {
		t.Errorf("assign from the page without the token: HTTP %d, want 401", status)
	}
	if m, _ := c.Machine(ctx, "BLD-006"); m.Profile != "" {
		t.Errorf("BLD-006 got profile %q without the token", m.Profile)
	}

	// Sign in with the token; the browser comes back to the blade.
	run("signing in",
		chromedp.Click(chromedp.CSS(`#actions-locked a`)),
		chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), token),
		chromedp.Click(chromedp.CSS(`#sign-in-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#machine[data-machine="BLD-006"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.signed-in`)))

	// Assign linux, PXE next and power-cycle: the blade is off, so the BMC
	// powers it on into PXE.
	run("assigning linux with a reboot",
		chromedp.SetValue(chromedp.CSS(`#assign-profile`), "linux"),
		chromedp.Click(chromedp.CSS(`#assign-reboot`)),
		chromedp.Click(chromedp.CSS(`#assign-submit`)))
	get(t, bctx, "waiting for the result", chromedp.Poll[bool](`document.querySelector('#result').className === 'bad' || document.querySelector('#result').textContent.includes('powered on')`, chromedp.WithPollingTimeout(30*time.Second)))
	result := get(t, bctx, "reading the result", chromedp.Text(chromedp.CSS(`#result`)))
	if !strings.Contains(result, "assigned linux (persistent)") || !strings.Contains(result, "next boot PXE") || !strings.Contains(result, "powered on") {
		t.Fatalf("the assign result says %q", result)
	}
	if log := sim.ChassisLog(); !strings.Contains(log, "boot device pxe") || !strings.Contains(log, "power on: boot pxe") {
		t.Fatalf("the BMC did not get PXE and power-on:\n%s", log)
	}

	// The blade boots (iPXE fetches its script and the kernel and initrd):
	// the open page's timeline fills in live, without a reload.
	get(t, bctx, "marking the page", chromedp.Evaluate[int](`window.provisiondTestMark = 1`))
	if err := daemontest.PlayIPXE(d.BootURL, bladeMAC); err != nil {
		t.Fatalf("the simulated boot: %v", err)
	}
	run("watching the boot", chromedp.WaitVisible(chromedp.CSS(`#timeline tr[data-type="boot.done"]`)))
	state := get(t, bctx, "reading the state", chromedp.Text(chromedp.CSS(`#state`)))
	mark := get(t, bctx, "looking for the mark", chromedp.Evaluate[int](`window.provisiondTestMark || 0`))
	if mark != 1 {
		t.Error("the page reloaded: the timeline should update in place")
	}
	if !strings.HasPrefix(state, "booted linux") {
		t.Errorf("the state after the boot: %q", state)
	}
	steps := get(t, bctx, "reading the timeline", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#timeline tr[data-type]')).map(r => r.dataset.type).reverse()`))
	want := []string{"machine.changed", "bmc.bootdev", "bmc.power", "http.script", "http.asset", "http.asset", "boot.done"}
	if got := strings.Join(steps, " "); !strings.Contains(got, strings.Join(want, " ")) {
		t.Errorf("timeline steps:\n got %s\nwant them to contain %s", got, strings.Join(want, " "))
	}
	noSecrets("BLD-006's page")
	screenshot("machine-BLD-006")

	// Power off from the page: the result shows, and the step lands in the
	// timeline.
	run("powering off", chromedp.Click(chromedp.CSS(`#power-off`)))
	get(t, bctx, "waiting for the result", chromedp.Poll[bool](`document.querySelector('#result').className === 'bad' || document.querySelector('#result').textContent.startsWith('power off:')`, chromedp.WithPollingTimeout(30*time.Second)))
	result = get(t, bctx, "reading the result", chromedp.Text(chromedp.CSS(`#result`)))
	run("waiting for the step", chromedp.WaitVisible(chromedp.CSS(`#timeline tr[data-type="bmc.power"]:first-child`)))
	state = get(t, bctx, "reading the state", chromedp.Text(chromedp.CSS(`#state`)))
	if !strings.Contains(result, "on → off") || !strings.HasPrefix(state, "powered off") {
		t.Errorf("power off: result %q, state %q", result, state)
	}
	if !strings.Contains(sim.ChassisLog(), "power off") {
		t.Errorf("the BMC did not power off:\n%s", sim.ChassisLog())
	}

	// The machines page shows the blade's state.
	run("back to the machines", chromedp.Navigate(d.URL+"/ui/"), chromedp.WaitVisible(chromedp.CSS(`#enclosure-ASGARD`)))
	bay := get(t, bctx, "reading BLD-006's bay", chromedp.AttributeValue(chromedp.CSS(`a.bay[data-machine="BLD-006"]`), "class")).Value
	if !strings.Contains(bay, "state-off") {
		t.Errorf("BLD-006's bay: class %q, want state-off", bay)
	}

	// Audit and plan, as tables.
	run("the audit", chromedp.Navigate(d.URL+"/ui/audit"), chromedp.WaitVisible(chromedp.CSS(`#audit-machines`)))
	findings := get(t, bctx, "counting the findings", chromedp.Evaluate[int](`document.querySelectorAll('#findings tbody tr').length`))
	if findings == 0 {
		t.Error("the audit shows no findings for the example homelab")
	}
	noSecrets("the audit")
	screenshot("audit")
	run("a plan",
		chromedp.Navigate(d.URL+"/ui/plan"),
		chromedp.WaitVisible(chromedp.CSS(`#plan-form`)),
		chromedp.SetValue(chromedp.CSS(`#plan-role-0`), "slurm-compute"),
		chromedp.SetValue(chromedp.CSS(`#plan-count-0`), "4"),
		chromedp.Click(chromedp.CSS(`#plan-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`#plan`)))
	placements := get(t, bctx, "counting the placements", chromedp.Evaluate[int](`document.querySelectorAll('#plan tbody tr').length`))
	if placements != 4 {
		t.Errorf("the plan places %d machines, want 4", placements)
	}
	screenshot("plan")

	// On a phone.
	run("a phone's screen", chromedp.EmulateViewport(390, 844), chromedp.Navigate(d.URL+"/ui/"), chromedp.WaitVisible(chromedp.CSS(`#enclosure-ASGARD`)))
	const tooWide = `document.documentElement.scrollWidth > window.innerWidth + 1`
	overflow := get(t, bctx, "checking the width", chromedp.Evaluate[bool](tooWide))
	if overflow {
		t.Error("the machines page is wider than a phone's screen")
	}
	screenshot("phone-machines")
	run("a blade on a phone", chromedp.Navigate(d.URL+"/ui/machines/BLD-006"), chromedp.WaitVisible(chromedp.CSS(`#timeline`)))
	overflow = get(t, bctx, "checking the width", chromedp.Evaluate[bool](tooWide))
	if overflow {
		t.Error("the machine page is wider than a phone's screen")
	}
	screenshot("phone-machine-BLD-006")

	for _, p := range seen.all() {
		t.Errorf("the browser reported: %s", p)
	}
}

// get runs one action that returns a value, and fails the test when it
// cannot.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}
