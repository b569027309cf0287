package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNonRootGetsAFix starts the daemon as an unprivileged user without
// capabilities: it must fail at once and say how to fix it.
func TestNonRootGetsAFix(t *testing.T) {
	requireLab(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux) to drop privileges")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := buildBinary(t, dir)
	ns := vethNamespace(t, "np")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", bin, "serve", "--config", "/dev/null", "--interface", "d0",
		"--data-dir", filepath.Join(dir, "data"), "--http-listen", "127.0.0.1:18080", "--control-listen", "127.0.0.1:18443")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("provisiond started without privileges:\n%s", out)
	}
	msg := string(out)
	for _, want := range []string{"port 67", "permission denied", "run provisiond as root", "setcap cap_net_bind_service"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	t.Logf("unprivileged start says: %s", strings.TrimSpace(msg))
}

// stopDaemon sends SIGTERM and expects a clean, prompt exit.
func (l *lab) stopDaemon(t *testing.T) {
	t.Helper()
	if err := l.daemon.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.daemon.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("provisiond exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("provisiond did not stop within 20s of SIGTERM")
	}
	l.daemon = nil
	log := l.logBuf.String()
	if i := strings.LastIndex(log, "provisiond stopping"); i >= 0 {
		t.Logf("shutdown log:\n%s", log[i:])
	}
	if strings.Contains(log, "still running after") {
		t.Errorf("shutdown waited for transfers that were not running")
	}
	if !strings.Contains(log, "provisiond stopped") {
		t.Errorf("no clean-stop log line:\n%s", l.logBuf.String())
	}
}

// TestServiceCapabilities starts the daemon as the systemd unit in deploy/
// does: an unprivileged user holding only the unit's AmbientCapabilities
// (read from the unit file). It must bind DHCP 67 and 4011 and TFTP 69 on
// its interface, serve, and stop cleanly on SIGTERM.
func TestServiceCapabilities(t *testing.T) {
	requireLab(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv (util-linux) to drop privileges")
	}
	unit, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "provisiond.service"))
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "AmbientCapabilities="); ok {
			for _, c := range strings.Fields(v) {
				caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		}
	}
	if len(caps) == 0 {
		t.Fatal("deploy/provisiond.service names no AmbientCapabilities")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	bin := buildBinary(t, dir)
	data := filepath.Join(dir, "data")
	os.MkdirAll(data, 0o700)
	os.Chown(data, 65534, 65534)
	ns := vethNamespace(t, "cap")
	set := strings.Join(caps, ",")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,"+set, "--ambient-caps=-all,"+set, "--bounding-set=-all,"+set, "--no-new-privs",
		bin, "serve", "--config", "/dev/null", "--interface", "d0", "--data-dir", data, "--http-listen", "127.0.0.1:18081")
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), "provisiond serving") {
		select {
		case err := <-done:
			t.Fatalf("provisiond with capabilities %s did not start: %v\n%s", set, err, log.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("provisiond did not start within 20s:\n%s", log.String())
		}
	}
	// With CAP_NET_RAW it answers iPXE's IPv6 router solicitations.
	if strings.Contains(log.String(), "not answering iPXE's IPv6 router solicitations") {
		t.Errorf("with the unit's capabilities the ICMPv6 socket was refused:\n%s", log.String())
	}
	// The sockets are its own: ports 67, 4011 and 69 are bound in the
	// namespace by a process of uid 65534.
	out, _ := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/udp").CombinedOutput()
	for _, port := range []string{":0043 ", ":0FAB ", ":0045 "} {
		if !strings.Contains(string(out), port) {
			t.Errorf("no UDP socket on port %s:\n%s", port, out)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, log.String())
		}
	case <-time.After(15 * time.Second):
		t.Error("no exit within 15s of SIGTERM")
	}
	t.Logf("serving as uid 65534 with only %s: DHCP 67/4011 and TFTP 69 bound", set)
}

// vethNamespace makes a namespace (removed when the test ends) holding a
// veth pair, d0 at 192.0.2.9/24 and d1, both up, and loopback up.
func vethNamespace(t *testing.T, suffix string) string {
	t.Helper()
	ns := labPrefix(t) + "-" + suffix
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{
		{"ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"},
		{"ip", "addr", "add", "192.0.2.9/24", "dev", "d0"},
		{"ip", "link", "set", "d0", "up"}, {"ip", "link", "set", "d1", "up"}, {"ip", "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	return ns
}
