package osinit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/agent"
	"github.com/provisiond/provisiond/internal/commission"
)

// testSystem runs the sequence on a temporary root: its hardware is a
// copy of a machine's /sys and /proc; what fails is set by the test.
// The kernel's parts (mounts, modules, links) are the e2e test's, on
// Debian's kernel in QEMU.
type testSystem struct {
	root    string
	nicErr  error
	dhcpOK  bool
	netErr  error
	off     chan struct{}
	offOnce sync.Once
}

func (s *testSystem) Mount() error { return nil }
func (s *testSystem) LoadModules() (int, []string, error) {
	return 3, []string{"bnx2x (no such file or directory)"}, nil
}
func (s *testSystem) Host() agent.Host { return agent.Host{Root: s.root} }
func (s *testSystem) Shell() bool      { return false }
func (s *testSystem) WaitNIC(context.Context, string) (string, error) {
	if s.nicErr != nil {
		return "", s.nicErr
	}
	return "eno1", nil
}
func (s *testSystem) Configure(context.Context, string, string, string) (string, bool, error) {
	if s.dhcpOK {
		return "eno1 192.0.2.105/25 from DHCP server 192.0.2.1", true, s.netErr
	}
	return "eno1: DHCP: no answer in 30s; using iPXE's address 192.0.2.105/25", false, s.netErr
}
func (s *testSystem) PowerOff() { s.offOnce.Do(func() { close(s.off) }) }

func newTestSystem(t *testing.T) *testSystem {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/cpuinfo"), []byte("processor\t: 0\nphysical id\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU E5-2650 v2 @ 2.60GHz\ncpu cores\t: 8\n\n"), 0o644)
	os.WriteFile(filepath.Join(root, "proc/meminfo"), []byte("MemTotal:       32768000 kB\n"), 0o644)
	nic := filepath.Join(root, "sys/class/net/eno1")
	os.MkdirAll(nic, 0o755)
	os.WriteFile(filepath.Join(nic, "address"), []byte("52:54:00:e2:c0:09\n"), 0o644)
	os.MkdirAll(filepath.Join(nic, "device"), 0o755)
	return &testSystem{root: root, off: make(chan struct{})}
}

const cmdline = "console=ttyS0 provisiond.mac=52:54:00:e2:c0:09 provisiond.report=%s provisiond.ip=192.0.2.105/255.255.255.128 provisiond.deadline=30"

// run starts Run as /init would and waits for the power-off.
func run(t *testing.T, sys *testSystem, url string, within time.Duration) string {
	t.Helper()
	var out strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	go Run(context.Background(), strings.Replace(cmdline, "%s", url, 1), sys, HTTPPoster{Tries: 2, Wait: 10 * time.Millisecond}, w)
	select {
	case <-sys.off:
	case <-time.After(within):
		t.Fatalf("no power-off within %s", within)
	}
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	return out.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// The report carries every step, the failed ones with what happened,
// then the machine powers off.
func TestReportThenPowerOff(t *testing.T) {
	var got commission.Report
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/boot/52:54:00:e2:c0:09/facts" || r.URL.Query().Get("nonce") != "n1" {
			http.NotFound(w, r)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		w.Write([]byte(`{"machine":"BLD-009"}`))
	}))
	defer srv.Close()
	sys := newTestSystem(t)
	out := run(t, sys, srv.URL+"/boot/52:54:00:e2:c0:09/facts?nonce=n1", 5*time.Second)
	if got.Then != commission.ThenPowerOff || len(got.Hardware.CPUs) != 1 || got.Hardware.CPUs[0].Cores != 8 {
		t.Fatalf("report %+v", got)
	}
	steps := map[string]commission.Step{}
	for _, s := range got.Steps {
		steps[s.Name] = s
	}
	if s := steps["modules"]; s.OK || !strings.Contains(s.Detail, "bnx2x") {
		t.Errorf("modules step %+v", s)
	}
	if s := steps["dhcp"]; s.OK || !strings.Contains(s.Detail, "using iPXE's address") {
		t.Errorf("dhcp step %+v", s)
	}
	if !got.Hardware.NICs[0].Boot {
		t.Errorf("the boot NIC is not marked: %+v", got.Hardware.NICs)
	}
	if !strings.Contains(out, "report: posted") || !strings.Contains(out, "powering off") {
		t.Errorf("console:\n%s", out)
	}
}

// Bad paths end in a power-off, soon, with the reason on the console: no
// NIC for the boot MAC (no driver), a refused report, no network at all.
func TestBadPathsPowerOff(t *testing.T) {
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }))
	defer refused.Close()
	for _, c := range []struct {
		name string
		set  func(*testSystem)
		url  string
		want string
	}{
		{"no driver", func(s *testSystem) {
			s.nicErr = errors.New("no network interface with this MAC after 30s: no driver in this image for the network controller(s) PCI 0000:00:03.0 8086:100e")
		}, refused.URL + "/r", "nic: FAILED"},
		{"refused", func(*testSystem) {}, refused.URL + "/r?nonce=used", "report refused: 404"},
		{"no network", func(s *testSystem) { s.netErr = errors.New("no fallback address") }, refused.URL + "/r", "network: FAILED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sys := newTestSystem(t)
			c.set(sys)
			out := run(t, sys, c.url, 5*time.Second)
			if !strings.Contains(out, c.want) || !strings.Contains(out, "powering off") {
				t.Errorf("console lacks %q:\n%s", c.want, out)
			}
		})
	}
}

// A command line provisiond did not write is refused with a reason.
func TestParseCmdline(t *testing.T) {
	p, err := commission.ParseCmdline("provisiond.mac=52-54-00-E2-C0-09 provisiond.report=http://192.0.2.2:8080/boot/x/facts?nonce=a provisiond.hold provisiond.deadline=60")
	if err != nil || p.MAC != "52:54:00:e2:c0:09" || !p.Hold || p.Deadline != time.Minute {
		t.Fatalf("%+v %v", p, err)
	}
	for _, bad := range []string{"quiet", "provisiond.mac=x provisiond.report=http://a/", "provisiond.mac=52:54:00:e2:c0:09 provisiond.report=file:///etc/passwd"} {
		if _, err := commission.ParseCmdline(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	// A deadline that is not one is noted, and the default used.
	if p, err := commission.ParseCmdline("provisiond.mac=52:54:00:e2:c0:09 provisiond.report=http://a/ provisiond.deadline=5"); err != nil || p.Deadline != commission.DefaultDeadline || len(p.Notes) != 1 {
		t.Errorf("deadline=5: %+v %v", p, err)
	}
	if conf, err := static("192.0.2.105/255.255.255.128", "192.0.2.1"); err != nil || conf.Addresses[0].IPNet.String() != "192.0.2.105/25" || conf.Routers[0].String() != "192.0.2.1" {
		t.Errorf("static: %+v %v", conf, err)
	}
	if _, err := static("", ""); err == nil {
		t.Error("no fallback accepted")
	}
}

// shellSystem is testSystem whose shell runs once, then the image has
// none (as without busybox).
type shellSystem struct {
	*testSystem
	shells chan struct{}
}

func (s *shellSystem) Shell() bool {
	select {
	case s.shells <- struct{}{}:
		return true
	default:
		return false
	}
}

// provisiond.hold: the report says hold, the machine does not power off
// (the deadline's watchdog is stopped) and the console gets a shell.
func TestHold(t *testing.T) {
	var got commission.Report
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&got)
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	sys := &shellSystem{testSystem: newTestSystem(t), shells: make(chan struct{}, 1)}
	var out strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	go Run(context.Background(), strings.Replace(cmdline, "%s", srv.URL+"/r?nonce=n", 1)+" provisiond.hold", sys, HTTPPoster{}, w)
	for deadline := time.Now().Add(5 * time.Second); len(sys.shells) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no shell within 5 s")
		}
	}
	select {
	case <-sys.off:
		t.Fatal("a held machine powered off")
	case <-time.After(200 * time.Millisecond):
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Then != commission.ThenHold || !strings.Contains(out.String(), "holding (provisiond.hold)") {
		t.Errorf("report then=%q, console:\n%s", got.Then, out.String())
	}
}

// TestConfigureOnlyAsInit: the real network setup rewrites /etc/resolv.conf,
// so outside the image's process 1 it must refuse before touching anything.
func TestConfigureOnlyAsInit(t *testing.T) {
	before, _ := os.ReadFile("/etc/resolv.conf")
	_, _, err := Linux{}.Configure(context.Background(), "lo", "192.0.2.9/24", "")
	if err == nil || !strings.Contains(err.Error(), "process 1") {
		t.Fatalf("Configure outside process 1: %v, want a refusal", err)
	}
	if after, _ := os.ReadFile("/etc/resolv.conf"); string(after) != string(before) {
		t.Fatalf("/etc/resolv.conf changed: %q → %q", before, after)
	}
}
