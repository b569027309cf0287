package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/provisiond/provisiond/internal/certs"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/kv"
	"github.com/provisiond/provisiond/internal/secrets"
)

// open opens the data directory: the inventory, the API token, the control
// plane's certificate and the key that seals the secrets.
func (d *instance) open(ctx context.Context) error {
	cfg := &d.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory %s: %w", cfg.DataDir, err)
	}
	store, closeStore, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	d.store = store
	d.closers = append(d.closers, closeStore)
	d.mets.Func("provisiond_discovery_refused_total", "Events of unknown MACs not stored because max_discovered was reached.",
		func() float64 { return float64(store.DiscoveryRefused()) })
	if d.token, err = loadOrCreateToken(filepath.Join(cfg.DataDir, TokenFile)); err != nil {
		return err
	}
	d.hosts = hostNames(d.cfg, d.ifaces)
	if d.cert, err = certs.LoadOrCreate(cfg.Control.CertFile, cfg.Control.KeyFile, cfg.DataDir, d.hosts); err != nil {
		return err
	}
	d.fingerprint = certs.Fingerprint(d.cert.Certificate[0])
	box, err := secrets.LoadOrCreateKey(filepath.Join(cfg.DataDir, SecretKeyFile))
	if err != nil {
		return err
	}
	d.secrets = secrets.NewStore(store, box)
	return nil
}

// openStore opens the inventory: the one place that names a backend. The
// rest of the daemon holds an inventory.Backend: one bbolt file in the data
// directory, or an etcd cluster several instances share.
func openStore(ctx context.Context, cfg *config.Config) (inventory.Backend, func(), error) {
	maxDisc := cfg.MaxDiscovered
	if maxDisc == 0 {
		maxDisc = -1 // none
	}
	opts := inventory.Options{MaxEventsPerMachine: cfg.MaxEventsPerMachine, MaxDiscovered: maxDisc}
	if cfg.Store != "etcd" {
		s, err := inventory.Open(filepath.Join(cfg.DataDir, DBFile), opts)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	db, client, err := kv.DialEtcd(ctx, EtcdConfig(cfg))
	if err != nil {
		return nil, nil, err
	}
	s, err := inventory.OpenDB(db, opts)
	if err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("opening the inventory in etcd (prefix %s): %w", cfg.Etcd.Prefix, err)
	}
	return s, func() { s.Close(); client.Close() }, nil
}

// EtcdConfig is the config's etcd section as the kv package takes it.
func EtcdConfig(cfg *config.Config) kv.EtcdConfig {
	e := cfg.Etcd
	return kv.EtcdConfig{Endpoints: e.Endpoints, Prefix: e.Prefix, CAFile: e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile, Timeout: e.TimeoutDuration()}
}

// loadOrCreateToken reads the API token, creating it (mode 0600) on first start.
func loadOrCreateToken(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		if t := strings.TrimSpace(string(raw)); t != "" {
			return t, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading API token %s: %w", path, err)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	t := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing API token %s: %w", path, err)
	}
	return t, nil
}
