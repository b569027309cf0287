package daemon_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/daemon/daemontest"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/kv/etcdtest"
	"github.com/provisiond/provisiond/internal/pxe/pxetest"
	"github.com/provisiond/provisiond/profiles"
)

// onEtcd runs a daemon named name on the etcd server's inventory, with
// dataDir as its data directory.
func onEtcd(t *testing.T, srv *etcdtest.Server, name, dataDir string) *daemontest.Daemon {
	return daemontest.Start(t, func(c *config.Config, _ *daemon.Options) {
		c.Store, c.Etcd.Endpoints, c.Instance, c.DataDir = "etcd", []string{srv.Endpoint}, name, dataDir
	})
}

// TestTwoInstancesOnEtcd: two daemons share one inventory in etcd: what
// is added through one boots from the other, status lists both, and an
// instance whose secret key is not the deployment's refuses to start.
func TestTwoInstancesOnEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	a := onEtcd(t, srv, "pxe-a", t.TempDir())
	dirB := t.TempDir()
	key, err := os.ReadFile(filepath.Join(a.Config.DataDir, daemon.SecretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, daemon.SecretKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := onEtcd(t, srv, "pxe-b", dirB)

	st, err := b.Client(t).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(st["instances"]); !strings.Contains(got, "pxe-a") || !strings.Contains(got, "pxe-b") {
		t.Errorf("status instances: %s", got)
	}
	if store, _ := st["store"].(map[string]any); store["backend"] != "etcd" {
		t.Errorf("status store: %v", st["store"])
	}

	if err := a.Client(t).SetSecret(ctx, "root-pw", "s3cret"); err != nil {
		t.Fatal(err)
	}
	m := inventory.Machine{Name: "BLD-007", MACs: []string{"52:54:00:00:00:07"}, Profile: "local"}
	if _, err := a.Client(t).CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := b.Client(t).Machine(ctx, "BLD-007")
		if err == nil && got.Profile == "local" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B does not see the machine A added: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := daemontest.PlayIPXE(b.BootURL, "52:54:00:00:00:07"); err != nil {
		t.Fatalf("B's boot plane for the machine A added: %v", err)
	}

	// A third instance with a key of its own must not start: it could not
	// open the secrets the others sealed.
	cfg := config.Default()
	pxetest.Loopback(t, &cfg)
	cfg.DataDir, cfg.Store, cfg.Etcd.Endpoints, cfg.Instance = t.TempDir(), "etcd", []string{srv.Endpoint}, "pxe-c"
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = daemon.Run(rctx, cfg, daemon.Options{Builtin: profiles.FS, Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "is not the key this inventory's secrets are sealed with") {
		t.Errorf("an instance with another secret key: %v, want a refusal", err)
	}
}
