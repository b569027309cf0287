package e2e

import (
	"context"
	"fmt"
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
	ns := fmt.Sprintf("pd%d-np", os.Getpid()%100000)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	for _, args := range [][]string{
		{"ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"},
		{"ip", "addr", "add", "192.0.2.9/24", "dev", "d0"},
		{"ip", "link", "set", "d0", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", bin, "serve", "--config", "/dev/null", "--interface", "d0",
		"--data-dir", filepath.Join(dir, "data"), "--http-listen", "127.0.0.1:18080")
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
