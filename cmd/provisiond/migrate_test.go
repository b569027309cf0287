package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/daemon/daemontest"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/kv/etcdtest"
)

// TestMigrateAndRestoreOnEtcd: a bbolt daemon's backup restores into an
// etcd prefix (and its key into the data directory), a daemon on etcd then
// boots from it with its secrets; migrate copies etcd into a new bbolt
// file and that into another prefix, each verified; a prefix in use is
// refused.
func TestMigrateAndRestoreOnEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newCLIEnv(t)
	c.must("machine", "add", "BLD-001", "--mac", "52:54:00:12:34:01", "--profile", "local")
	c.must("machine", "add", "BLD-002", "--mac", "52:54:00:12:34:02", "--label", "rack=a")
	c.runStdin("hunter2-munge\n", "secret", "set", "munge-key")
	file := filepath.Join(t.TempDir(), "pd.tar.gz")
	c.must("backup", file)

	dataDir := t.TempDir()
	conf := filepath.Join(t.TempDir(), "provisiond.yaml")
	yaml := fmt.Sprintf("data_dir: %s\nstore: etcd\netcd:\n  endpoints: [%s]\n  prefix: /restored/\n", dataDir, srv.Endpoint)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out := c.must("restore", file, "-c", conf)
	for _, w := range []string{"restored into etcd prefix /restored/: 2 machines", "machines       2 keys", "source and copy match", "secret key written to " + dataDir} {
		if !strings.Contains(out, w) {
			t.Errorf("restore into etcd said (no %q):\n%s", w, out)
		}
	}
	d := daemontest.Start(t, func(cfg *config.Config, _ *daemon.Options) {
		cfg.DataDir, cfg.Store, cfg.Etcd.Endpoints, cfg.Etcd.Prefix = dataDir, "etcd", []string{srv.Endpoint}, "/restored/"
	})
	if m, err := d.Client(t).Machine(context.Background(), "BLD-002"); err != nil || m.Labels["rack"] != "a" {
		t.Fatalf("the restored machine on etcd: %+v, %v", m, err)
	}
	if err := daemontest.PlayIPXE(d.BootURL, "52:54:00:12:34:01"); err != nil {
		t.Fatalf("a restored machine's boot from etcd: %v", err)
	}
	if out, err := c.run("restore", file, "-c", conf); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("a restore into a prefix in use: %v\n%s", err, out)
	}

	host := strings.TrimPrefix(srv.Endpoint, "http://")
	bolt := filepath.Join(t.TempDir(), "copy.db")
	out = c.must("migrate", "--from", "etcd://"+host+"/restored/", "--to", "bbolt:"+bolt)
	if !strings.Contains(out, "migrated etcd://"+host+"/restored/ to bbolt:"+bolt) || !strings.Contains(out, "source and copy match") {
		t.Errorf("migrate etcd to bbolt said:\n%s", out)
	}
	out = c.must("migrate", "--from", "bbolt:"+bolt, "--to", "etcd://"+host+"/again/")
	if !strings.Contains(out, "source and copy match") {
		t.Errorf("migrate bbolt to etcd said:\n%s", out)
	}
	if out, err := c.run("migrate", "--from", "bbolt:"+bolt, "--to", "etcd://"+host+"/again/"); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("migrate into a prefix in use: %v\n%s", err, out)
	}
	s, err := inventory.Open(bolt, inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ms, _ := s.Machines(); len(ms) != 2 {
		t.Errorf("machines in the migrated bbolt file: %d", len(ms))
	}
	if evs, _ := s.Events("BLD-001", 0, 0); len(evs) == 0 {
		t.Error("the migrated machine has no timeline")
	}
}
