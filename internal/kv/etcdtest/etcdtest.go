// Package etcdtest runs a real etcd server (Debian's etcd-server package,
// /usr/bin/etcd) on loopback for a test, with a data directory of its own.
package etcdtest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary is where Debian's etcd-server package puts the server.
const Binary = "/usr/bin/etcd"

// Server is one running etcd member.
type Server struct {
	// Endpoint is its client URL.
	Endpoint string
	args     []string
	dir      string
	cmd      *exec.Cmd
}

// Start runs a one-member etcd for the test (stopped at its end) and
// returns it; the test is skipped when etcd is not installed.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("needs a real etcd server at %s (Debian's etcd-server; make deps installs it)", Binary)
	}
	s := newServer(t, "http")
	t.Cleanup(s.Stop)
	s.Restart(t)
	return s
}

// newServer sets up a member's arguments, its clients served over scheme
// (extra arguments go after), without starting it.
func newServer(t testing.TB, scheme string, extra ...string) *Server {
	client, peer := freePort(t), freePort(t)
	s := &Server{Endpoint: scheme + "://" + client, dir: t.TempDir()}
	s.args = append([]string{
		"--name", "test", "--data-dir", filepath.Join(s.dir, "data"),
		"--listen-client-urls", s.Endpoint, "--advertise-client-urls", s.Endpoint,
		"--listen-peer-urls", "http://" + peer, "--initial-advertise-peer-urls", "http://" + peer,
		"--initial-cluster", "test=http://" + peer, "--max-txn-ops", "8192",
		"--logger", "zap", "--log-outputs", filepath.Join(s.dir, "etcd.log")}, extra...)
	return s
}

// Restart starts the server again on its data (after Stop) and waits
// until it answers.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.startOnly(t)
	c := s.Client(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Get(ctx, "ready")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "etcd.log"))
			t.Fatalf("etcd did not answer at %s within 20 s: %v\n%s", s.Endpoint, err, tail(log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startOnly starts the process on s's arguments.
func (s *Server) startOnly(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command(Binary, s.args...)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", Binary, err)
	}
}

// Client returns a new client of the server, closed at the test's end.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client for %s: %v", s.Endpoint, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Stop kills the server (what a crashed member looks like to clients).
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free loopback port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
