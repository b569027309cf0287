package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/certs"
	"github.com/provisiond/provisiond/internal/cluster"
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
	store, client, closeStore, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	d.store = store
	d.closers = append(d.closers, closeStore)
	if client != nil {
		d.etcd = client
		if err := d.join(ctx, client); err != nil {
			return err
		}
	}
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
	// Instances sharing etcd must share the key; one instance on its own
	// file starts and says which secrets it cannot open.
	var mismatch *keyMismatch
	if err := checkKey(store, box, cfg.DataDir, cfg.Store == "etcd"); errors.As(err, &mismatch) && cfg.Store != "etcd" {
		d.log.Warn("the secret key does not open every stored secret", "err", err)
	} else if err != nil {
		return err
	}
	d.secrets = secrets.NewStore(store, box)
	return nil
}

// openStore opens the inventory: the one place that names a backend. The
// rest of the daemon holds an inventory.Backend: one bbolt file in the data
// directory, or an etcd cluster several instances share.
func openStore(ctx context.Context, cfg *config.Config) (inventory.Backend, *clientv3.Client, func(), error) {
	maxDisc := cfg.MaxDiscovered
	if maxDisc == 0 {
		maxDisc = -1 // none
	}
	opts := inventory.Options{MaxEventsPerMachine: cfg.MaxEventsPerMachine, MaxDiscovered: maxDisc}
	if cfg.Store != "etcd" {
		s, err := inventory.Open(filepath.Join(cfg.DataDir, DBFile), opts)
		if err != nil {
			return nil, nil, nil, err
		}
		return s, nil, func() { s.Close() }, nil
	}
	db, client, err := kv.DialEtcd(ctx, EtcdConfig(cfg))
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := inventory.OpenDB(db, opts)
	if err != nil {
		client.Close()
		return nil, nil, nil, fmt.Errorf("opening the inventory in etcd (prefix %s): %w", cfg.Etcd.Prefix, err)
	}
	return s, client, func() { s.Close(); client.Close() }, nil
}

// checkKey makes sure the secret key file is the one the inventory's
// secrets are sealed with (every instance of a deployment shares it). A
// key that opens every stored secret (or none is stored: a lost key whose
// secrets were all set again) becomes the deployment's.
func checkKey(store inventory.Backend, box *secrets.Box, dataDir string, shared bool) error {
	const name = "provisiond.key-canary"
	sealed, err := box.Seal(name, []byte(name))
	if err != nil {
		return err
	}
	stored, err := store.KeyCanary(sealed, false)
	if err != nil {
		return fmt.Errorf("checking the secret key against the inventory: %w", err)
	}
	if _, err := box.Open(name, stored); err == nil {
		return nil
	}
	list, err := store.Secrets()
	if err != nil {
		return err
	}
	var others []string
	for _, sec := range list {
		v, err := store.SealedSecret(sec.Name)
		if err == nil {
			_, err = box.Open(sec.Name, v)
		}
		if err != nil {
			others = append(others, sec.Name)
		}
	}
	if len(others) == 0 {
		_, err := store.KeyCanary(sealed, true)
		return err
	}
	return &keyMismatch{path: filepath.Join(dataDir, SecretKeyFile), secrets: others, shared: shared}
}

// keyMismatch is a secret key that does not open the stored secrets.
type keyMismatch struct {
	path    string
	secrets []string
	shared  bool // the inventory is several instances'
}

func (e *keyMismatch) Error() string {
	lost := "set them again (provisiond secret set)"
	if e.shared {
		lost = "migrate the inventory to a bbolt file (provisiond migrate), start one instance on it, set them again, and migrate it back"
	}
	return fmt.Sprintf("%s is not the key this inventory's secrets are sealed with (%d of them: %s): copy secret.key from another instance of this deployment (or from the backup that goes with this inventory), mode 0600; if that key is lost, so are those secrets: %s",
		e.path, len(e.secrets), strings.Join(e.secrets, ", "), lost)
}

// join registers this instance among those sharing the etcd store.
func (d *instance) join(ctx context.Context, client *clientv3.Client) error {
	name := d.cfg.Instance
	if name == "" {
		name, _ = os.Hostname()
	}
	self := cluster.Instance{Name: name, Version: d.opts.Version, Started: time.Now().UTC()}
	for _, i := range d.ifaces {
		self.Interfaces = append(self.Interfaces, i.Name)
		self.Addresses = append(self.Addresses, i.IP.String())
	}
	if d.advertise != nil {
		self.Addresses = []string{d.advertise.String()}
	}
	// The control plane as another host reaches it: the listener's
	// address unless it is a wildcard, else this instance's first
	// address, else its name.
	host, port, _ := net.SplitHostPort(d.ctlLn.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = name
		if len(self.Addresses) > 0 {
			host = self.Addresses[0]
		}
	}
	self.Control = "https://" + net.JoinHostPort(host, port)
	m, err := cluster.Join(ctx, self, cluster.Options{Client: client, Prefix: d.cfg.Etcd.Prefix, Log: d.log, Health: d.health})
	if err != nil {
		return err
	}
	d.member = m
	d.closers = append(d.closers, func() { m.Close() })
	return nil
}

// cacheState is how current the store's boot table is (ok false: the
// store keeps none).
func (d *instance) cacheState() (inventory.CacheState, bool) {
	c, ok := d.store.(interface {
		CacheState() (inventory.CacheState, bool)
	})
	if !ok {
		return inventory.CacheState{}, false
	}
	return c.CacheState()
}

// health is "ok", or why this instance may answer boots from stale data.
func (d *instance) health() string {
	if st, ok := d.cacheState(); ok && st.Error != "" {
		return fmt.Sprintf("boot table as of %s: %s", st.Built.UTC().Format(time.RFC3339), st.Error)
	}
	return "ok"
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
