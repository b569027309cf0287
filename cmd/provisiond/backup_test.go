package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/secrets"
)

// Backup from a running daemon, restore into a stopped one: machines,
// timelines and sealed secrets come back and the secrets still open.
func TestBackupRestore(t *testing.T) {
	c := newCLIEnv(t)
	c.must("machine", "add", "BLD-001", "--mac", "52:54:00:12:34:01", "--profile", "linux")
	c.must("machine", "add", "BLD-002", "--mac", "52:54:00:12:34:02", "--label", "rack=a")
	c.runStdin("hunter2-munge\n", "secret", "set", "munge-key")
	file := filepath.Join(t.TempDir(), "pd.tar.gz")
	out := c.must("backup", file)
	if !strings.Contains(out, "backup written to "+file) || !strings.Contains(out, "2 machines") || !strings.Contains(out, "secret key included: true") {
		t.Fatalf("backup said:\n%s", out)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file mode %v, want 0600", st.Mode().Perm())
	}
	// Without the token there is no backup.
	if out, err := c.run("--token-file", "/nonexistent", "backup", filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(err.Error(), "API token") {
		t.Fatalf("backup without the token: %v\n%s", err, out)
	}
	// The running daemon's data directory is in use.
	if out, err := c.run("restore", file, "--data-dir", c.dataDir); err == nil || !strings.Contains(err.Error(), "stop provisiond serve first") {
		t.Fatalf("restore into a running daemon's data directory: %v\n%s", err, out)
	}
	// A fresh data directory, and one with a database to be replaced.
	dir := t.TempDir()
	s, err := inventory.Open(filepath.Join(dir, daemon.DBFile), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.PutMachine(inventory.Machine{Name: "OLD-1"})
	s.Close()
	out = c.must("restore", file, "--data-dir", dir, "--config", "/dev/null")
	if !strings.Contains(out, "restored into "+dir+": 2 machines") || !strings.Contains(out, "kept the previous file as") {
		t.Fatalf("restore said:\n%s", out)
	}
	s, err = inventory.Open(filepath.Join(dir, daemon.DBFile), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, _ := s.Machines()
	if len(ms) != 2 || ms[0].Name != "BLD-001" || ms[1].Labels["rack"] != "a" {
		t.Fatalf("restored machines: %+v", ms)
	}
	if evs, _ := s.Events("BLD-001", 0, 100); len(evs) == 0 {
		t.Fatal("restored machine has no timeline")
	}
	box, err := secrets.LoadOrCreateKey(filepath.Join(dir, daemon.SecretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := secrets.NewStore(s, box).Secret("munge-key"); err != nil || v != "hunter2-munge" {
		t.Fatalf("restored secret: %q %v", v, err)
	}
	// A damaged archive changes nothing.
	raw, _ := os.ReadFile(file)
	bad := filepath.Join(t.TempDir(), "bad.tar.gz")
	os.WriteFile(bad, raw[:len(raw)/2], 0o600)
	if out, err := c.run("restore", bad, "--data-dir", t.TempDir(), "--config", "/dev/null"); err == nil {
		t.Fatalf("a truncated archive restored:\n%s", out)
	}
}
