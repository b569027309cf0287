// Package daemon wires provisiond serve together: it binds the ports, opens
// the data directory, builds the boot tracker, the protocol servers, the
// API and the dashboard from the other packages, serves, reloads and shuts
// down cleanly. It decides nothing of its own: each phase is a small
// function over an instance.
package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/assets"
	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/boot/booter"
	"github.com/provisiond/provisiond/internal/bootguard"
	"github.com/provisiond/provisiond/internal/cluster"
	"github.com/provisiond/provisiond/internal/commission"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/events/recorder"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/metrics"
	"github.com/provisiond/provisiond/internal/netutil"
	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/internal/pxe"
	"github.com/provisiond/provisiond/internal/secrets"
	"github.com/provisiond/provisiond/internal/slurm"
	"github.com/provisiond/provisiond/internal/talos"
)

// Options are what main hands the daemon besides the config.
type Options struct {
	// Builtin holds the embedded profiles.
	Builtin fs.FS
	// Version is reported by the status endpoint.
	Version string
	// Log is the logger.
	Log *slog.Logger
	// Ready, when set, is called once every listener is bound.
	Ready func(Addrs)
	// Reload delivers reload requests (SIGHUP).
	Reload <-chan struct{}
	// LoadConfig reads the configuration again for a reload (the file
	// and the flags over it); nil reloads only the profiles.
	LoadConfig func() (config.Config, error)
	// LogLevel, when set, is the logger's level; a reload sets it.
	LogLevel *slog.LevelVar
	// Getenv reads the daemon's environment (BMC passwords named by
	// password_env); nil reads none.
	Getenv func(string) string
	// BMCDialer reaches BMCs (nil: bmclib with the configured timeout).
	BMCDialer bmc.Dialer
	// Binary is provisiond's own executable: the commissioning image's
	// /init ("": commissioning is not available).
	Binary string
}

// Addrs are the addresses the daemon serves on, once bound.
type Addrs struct {
	// Boot is the boot plane's plain HTTP address (scripts, assets).
	Boot string
	// Control is the control plane's TLS address (API, dashboard).
	Control string
	// Fingerprint is the control plane certificate's SHA-256.
	Fingerprint string
}

// The daemon's files in the data directory (all mode 0600).
const (
	// DBFile is the bbolt inventory.
	DBFile = "provisiond.db"
	// TokenFile holds the API token.
	TokenFile = "api-token"
	// SecretKeyFile holds the key that seals stored secrets.
	SecretKeyFile = "secret.key"
)

// Run serves until ctx ends. Errors name what failed and how to fix it.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	d := &instance{cfg: cfg, opts: opts, log: opts.Log, broker: events.NewBroker(), late: &late{}, mets: metrics.New(),
		neighbors: pxe.NewNeighbors("/proc/net/arp"), closing: make(chan struct{})}
	d.live.Store(&d.cfg)
	d.late.metrics = d.mets
	defer d.close()
	for _, phase := range []func(context.Context) error{d.plan, d.listen, d.open, d.buildBoot, d.buildControl} {
		if err := phase(ctx); err != nil {
			return err
		}
	}
	errc := d.serve()
	err := d.wait(ctx, errc)
	d.shutdown()
	return err
}

// instance is one running daemon: what its phases build, in order.
type instance struct {
	cfg     config.Config
	opts    Options
	log     *slog.Logger
	live    atomic.Pointer[config.Config] // the config as last (re)loaded
	closers []func()                      // run in reverse by close

	// plan
	ifaces    []netutil.Interface
	advertise net.IP
	httpPort  int
	ipxeFiles map[string]string
	// listen
	broker    *events.Broker
	late      *late
	mets      *metrics.Metrics
	neighbors *pxe.Neighbors
	dhcp      *pxe.DHCPServer
	ra        *pxe.RAServer
	tftp      *pxe.TFTPServer
	httpLn    net.Listener
	ctlLn     net.Listener
	// open
	store       inventory.Backend
	member      *cluster.Member  // nil on bbolt: one instance
	etcd        *clientv3.Client // the etcd store's client (nil on bbolt)
	token       string
	cert        tls.Certificate
	hosts       []string
	fingerprint string
	secrets     *secrets.Store
	// buildBoot
	profiles *profile.Set
	cache    *assets.Cache
	talos    *talos.Provider
	commish  *commission.Provider
	guard    *bootguard.Guard
	booter   *booter.Booter
	rec      *recorder.Recorder
	stopRec  context.CancelFunc
	httpBoot *pxe.HTTPBoot
	// buildControl
	api     *api.Server
	slurm   *slurm.Controller
	httpSrv *http.Server
	ctlSrv  *http.Server
	started time.Time
	closing chan struct{}
	// serve
	stopSrv context.CancelFunc
	wg      sync.WaitGroup
}

// close releases what the phases opened, last first.
func (d *instance) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// baseURL is the boot plane's URL as machines reach it: the advertised
// address, else the first served interface's.
func (d *instance) baseURL() string {
	ip := "127.0.0.1"
	switch {
	case d.advertise != nil:
		ip = d.advertise.String()
	case len(d.ifaces) > 0:
		ip = d.ifaces[0].IP.String()
	}
	return boot.BaseURL(ip, d.httpPort)
}

// plan works out the interfaces and addresses the daemon serves on.
func (d *instance) plan(context.Context) error {
	cfg := &d.cfg
	d.httpPort, _ = cfg.HTTPPort()
	if cfg.DHCP.Enabled || cfg.TFTP.Enabled {
		var err error
		if d.ifaces, err = netutil.Interfaces(cfg.Interfaces); err != nil {
			return err
		}
	}
	if cfg.Advertise != "" {
		d.advertise = net.ParseIP(cfg.Advertise).To4()
	}
	d.ipxeFiles = booter.IPXEFiles(cfg.IPXEDir, cfg.Boot)
	return nil
}

// hostNames are the names the control plane answers to and its
// self-signed certificate names: localhost, this host's name, the served
// interfaces' and the advertised addresses, and control.hosts.
func hostNames(cfg config.Config, ifaces []netutil.Interface) []string {
	out := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" {
		out = append(out, h)
	}
	for _, i := range ifaces {
		out = append(out, i.IP.String())
	}
	if cfg.Advertise != "" {
		out = append(out, cfg.Advertise)
	}
	return append(out, cfg.Control.Hosts...)
}
