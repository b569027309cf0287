// Package daemon wires provisiond serve together: inventory, profiles, the
// protocol servers and the API, with a clean start and stop.
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/assets"
	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/backup"
	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/bootguard"
	"github.com/provisiond/provisiond/internal/certs"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/metrics"
	"github.com/provisiond/provisiond/internal/netutil"
	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/internal/pxe"
	"github.com/provisiond/provisiond/internal/secrets"
	"github.com/provisiond/provisiond/internal/talos"
	"github.com/provisiond/provisiond/internal/web"
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
	log := opts.Log
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	httpPort, _ := cfg.HTTPPort()
	var ifaces []netutil.Interface
	if cfg.DHCP.Enabled || cfg.TFTP.Enabled {
		var err error
		if ifaces, err = netutil.Interfaces(cfg.Interfaces); err != nil {
			return err
		}
	}
	var advertise net.IP
	if cfg.Advertise != "" {
		advertise = net.ParseIP(cfg.Advertise).To4()
	}
	baseURL := func() string {
		ip := "127.0.0.1"
		switch {
		case advertise != nil:
			ip = advertise.String()
		case len(ifaces) > 0:
			ip = ifaces[0].IP.String()
		}
		return boot.BaseURL(ip, httpPort)
	}

	broker := events.NewBroker()
	// The servers are built before the store opens (privileged ports are
	// bound first); they reach the Booter and the Recorder through late.
	late := &late{}
	mets := metrics.New()
	late.metrics = mets
	neighbors := pxe.NewNeighbors("/proc/net/arp")

	// Bind the privileged ports first, so a missing privilege is the first
	// thing the operator hears about.
	var dhcpSrv *pxe.DHCPServer
	if cfg.DHCP.Enabled {
		dhcpSrv = pxe.NewDHCPServer(pxe.DHCPConfig{
			Interfaces: ifaces, Port: cfg.DHCP.Port, ProxyPort: cfg.DHCP.ProxyPort, Advertise: advertise,
			HTTPPort: httpPort, Decider: late, Events: late, Neighbors: neighbors, Observer: mets, Log: log,
		})
		if err := dhcpSrv.Listen(); err != nil {
			return err
		}
		defer dhcpSrv.Close()
	}
	ipxeFiles := IPXEFiles(cfg.IPXEDir, cfg.Boot)
	var tftpSrv *pxe.TFTPServer
	if cfg.TFTP.Enabled {
		var err error
		tftpSrv, err = pxe.NewTFTPServer(pxe.TFTPConfig{
			Root: cfg.IPXEDir, Files: ipxeFiles, Port: cfg.TFTP.Port, Interfaces: ifaces, MaxBlockSize: cfg.TFTP.MaxBlockSize,
			Scripts: late, Neighbors: neighbors, Events: late, Log: log, MaxTransfers: cfg.TFTP.MaxTransfers, Observer: mets,
			HTTPBase: func(local net.IP) string {
				if advertise != nil || local == nil {
					return baseURL()
				}
				return boot.BaseURL(local.String(), httpPort)
			},
		})
		if err != nil {
			return err
		}
		if err := tftpSrv.Listen(); err != nil {
			return err
		}
		defer tftpSrv.Close()
		mets.Func("provisiond_tftp_active_transfers", "TFTP transfers in flight.", func() float64 { return float64(tftpSrv.Stats().Active) })
	}
	httpLn, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("HTTP: listening on %s: %w (is another provisiond or web server on that port? set http.listen)", cfg.HTTP.Listen, err)
	}
	defer httpLn.Close()
	// One address cannot hold every connection (idle keep-alives, slow
	// readers): the rest of the lab keeps booting.
	httpLn = netutil.LimitListenerPerSource(httpLn, cfg.HTTP.MaxConnections, cfg.HTTP.MaxConnectionsPerSource,
		func() { mets.Dropped("http", "max_connections_per_source") })
	ctlLn, err := net.Listen("tcp", cfg.Control.Listen)
	if err != nil {
		return fmt.Errorf("control plane: listening on %s: %w (is another provisiond on that port? set control.listen)", cfg.Control.Listen, err)
	}
	defer ctlLn.Close()
	ctlLn = netutil.LimitListenerPerSource(ctlLn, cfg.Control.MaxConnections, cfg.Control.MaxConnections/4+1,
		func() { mets.Dropped("control", "max_connections_per_source") })

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory %s: %w", cfg.DataDir, err)
	}
	maxDisc := cfg.MaxDiscovered
	if maxDisc == 0 {
		maxDisc = -1 // none
	}
	store, err := inventory.Open(filepath.Join(cfg.DataDir, DBFile), inventory.Options{MaxEventsPerMachine: cfg.MaxEventsPerMachine, MaxDiscovered: maxDisc})
	if err != nil {
		return err
	}
	defer store.Close()
	mets.Func("provisiond_discovery_refused_total", "Events of unknown MACs not stored because max_discovered was reached.",
		func() float64 { return float64(store.DiscoveryRefused()) })
	token, err := loadOrCreateToken(filepath.Join(cfg.DataDir, TokenFile))
	if err != nil {
		return err
	}
	hosts := hostNames(cfg, ifaces)
	cert, err := certs.LoadOrCreate(cfg.Control.CertFile, cfg.Control.KeyFile, cfg.DataDir, hosts)
	if err != nil {
		return err
	}
	fingerprint := certs.Fingerprint(cert.Certificate[0])
	box, err := secrets.LoadOrCreateKey(filepath.Join(cfg.DataDir, SecretKeyFile))
	if err != nil {
		return err
	}
	secretStore := NewSecretStore(store, box)
	set, err := profile.Load(opts.Builtin, cfg.ProfilesDir)
	if err != nil {
		return err
	}
	if _, ok := set.Get(cfg.Boot.DefaultProfile); !ok {
		return fmt.Errorf("boot.default_profile %s is not a known profile", cfg.Boot.DefaultProfile)
	}
	if err := os.MkdirAll(cfg.AssetDir(), 0o755); err != nil {
		return fmt.Errorf("creating assets directory %s: %w", cfg.AssetDir(), err)
	}
	cache := assets.New(cfg.AssetDir(), nil, log)
	defer cache.Close()
	talosProv := NewTalosProvider(cfg.Talos, &talos.Factory{BaseURL: cfg.Talos.FactoryURL}, cache, cfg.AssetDir())
	talosProv.Log = log
	go func() {
		// The configured Talos extension names, against the factory's
		// list (when it can be asked): a wrong name is a boot without the
		// firmware it was meant to carry.
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := talosProv.CheckConfig(ctx); err != nil {
			log.Error("talos: the configured extensions are wrong; Talos boots will fail until they are fixed", "err", err)
		}
	}()
	// live holds the configuration as last (re)loaded; its reloadable
	// parts are read from here.
	var live atomic.Pointer[config.Config]
	live.Store(&cfg)
	guard := bootguard.New(bootguard.Config{Window: cfg.Boot.SecretWindowDuration(), Trusted: cfg.Boot.TrustedPrefixes(),
		Neighbor: neighbors.Kernel, Learned: neighbors.Learned})
	mets.Func("provisiond_boot_spoof_alarms_total", "Secret-bearing boot responses asked for twice in one boot, or nonces used twice: another host may be using a machine's MAC.",
		func() float64 { return float64(guard.Alarms()) })
	booter := NewBooter(BooterOptions{Store: store, Profiles: set, Boot: cfg.Boot, IPXEDir: cfg.IPXEDir, IPXEFiles: ipxeFiles,
		Secrets: secretStore, Extras: []Extra{talosProv}, Events: late, Log: log, Guard: guard, Refusals: mets,
		Models: func() []audit.Model { return live.Load().Models }})

	recCtx, stopRec := context.WithCancel(context.Background())
	rec := NewRecorder(store, broker, 8192, log)
	mets.Func("provisiond_events_dropped_total", "Timeline events dropped because the recorder's queue was full.",
		func() float64 { return float64(rec.Dropped()) })
	mets.Func("provisiond_events_coalesced_total", "Repeated DHCP steps (same machine, answer and port within a second) counted and not stored.",
		func() float64 { return float64(rec.Coalesced()) })
	go rec.Run(recCtx)
	late.rec.Store(rec)
	late.booter.Store(booter)

	httpBoot, err := pxe.NewHTTPBoot(pxe.HTTPConfig{
		AssetsDir: cfg.AssetDir(), IPXEDir: cfg.IPXEDir, IPXEFiles: ipxeFiles, Scripts: late,
		Neighbors: neighbors, Events: late, Observer: mets, Log: log, RatePerSource: cfg.HTTP.RatePerSource,
	})
	if err != nil {
		stopRec()
		return err
	}
	// Two planes: the boot plane (plain HTTP, what firmware fetches) and
	// the control plane (TLS: API, dashboard, metrics, profiler, backup).
	mux := http.NewServeMux()
	httpBoot.Register(mux)
	ctl := http.NewServeMux()
	started := time.Now()
	dialer := opts.BMCDialer
	if dialer == nil {
		dialer = bmc.NewBmclib(bmc.Options{Timeout: cfg.BMCTimeout(), IpmitoolPath: cfg.BMC.IpmitoolPath})
	}
	bmcSvc := NewBMCService(BMCServiceOptions{Store: store, Secrets: secretStore, Dialer: dialer, Getenv: opts.Getenv,
		Events: late, Log: log, MaxConcurrent: cfg.BMC.MaxConcurrent, Observer: mets,
		Models: func() []audit.Model { return live.Load().Models }})
	apiSrv := &api.Server{
		BMC:   bmcSvc,
		Store: store, Hardware: store, AuditConfig: func() ([]inventory.Role, []audit.Model) { c := live.Load(); return c.Roles, c.Models },
		Renderer: booter, Secrets: secretStore, Broker: broker, Events: late, Token: token, ReadAccess: cfg.HTTP.ReadAccess, BaseURL: baseURL, Log: log,
		Assets: &assetsAPI{cache: cache, talos: talosProv, store: store, boot: func() map[string]string { return live.Load().Boot.DefaultParams }},
		Status: func() map[string]any {
			st := map[string]any{"version": opts.Version, "uptime": time.Since(started).Round(time.Second).String(), "fingerprint": fingerprint,
				"events_dropped": rec.Dropped(), "events_coalesced": rec.Coalesced(), "discovery_refused": store.DiscoveryRefused(), "http": httpBoot.Stats()}
			if dhcpSrv != nil {
				st["dhcp"] = dhcpSrv.Stats()
			}
			if tftpSrv != nil {
				st["tftp"] = tftpSrv.Stats()
			}
			return st
		},
	}
	apiSrv.BootProof = booter.BootProof
	apiSrv.BootInfo = func(m inventory.Machine) (api.BootInfo, error) {
		info := api.BootInfo{Machine: m.Name, Profile: m.Profile}
		info.Firmware, info.FirmwareWhy = audit.Firmware(&m, live.Load().Models)
		p, ok := booter.Profiles().Get(boot.ProfileFor(&m, live.Load().Boot.DefaultProfile))
		if ok && talosProv.Wants(p) {
			v, id, exts, why, err := talosProv.Schematic(&m, machineParams(live.Load(), &m))
			if err != nil {
				return info, err
			}
			info.Talos = &api.TalosBoot{Version: v, Schematic: id, Extensions: exts, Why: why}
		}
		return info, nil
	}
	apiSrv.Preflight = func(ctx context.Context, m inventory.Machine) (string, error) {
		p, ok := booter.Profiles().Get(m.Profile)
		if !ok || !talosProv.Wants(p) {
			return "", nil
		}
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return talosProv.CheckMachine(ctx, &m, machineParams(live.Load(), &m))
	}
	apiSrv.Backup = func(w io.Writer) error {
		_, err := backup.Write(w, store, filepath.Join(cfg.DataDir, SecretKeyFile), cfg.DataDir, opts.Version)
		return err
	}
	closing := make(chan struct{})
	apiSrv.Closing = closing
	apiSrv.Register(ctl)
	ctl.Handle("GET /metrics", apiSrv.ReadGuard(mets.Handler()))
	healthz := func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }
	mux.HandleFunc("GET /healthz", healthz)
	ctl.HandleFunc("GET /healthz", healthz)
	dash, err := web.New(apiSrv, log)
	if err != nil {
		stopRec()
		return err
	}
	dash.Register(ctl)
	// Bounds: a request's headers must arrive within 10 s (a connection
	// that sends nothing is closed then); an idle keep-alive connection is
	// closed after 30 s; bodies are bounded in size by each handler.
	// Neither ReadTimeout nor WriteTimeout is set: once it passes, net/http
	// cancels the request's context, which would end event streams and
	// long downloads. Boot endpoints bound their writes themselves.
	// net/http's own complaints (bad TLS handshakes, a client that sent
	// plain HTTP) are the network's noise: debug level.
	srvLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10, ErrorLog: srvLog}
	// The control plane answers only to this host's names (no DNS
	// rebinding), and browsers' cross-origin requests that would change
	// something are refused, so no other site can use a dashboard session
	// (CSRF). The CLI and curl send no Origin or Sec-Fetch-Site and pass.
	ctlSrv := &http.Server{Handler: api.HostGuard(hosts, http.NewCrossOriginProtection().Handler(ctl)),
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: srvLog,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}

	names := make([]string, 0, len(ifaces))
	for _, i := range ifaces {
		names = append(names, i.Name+"="+i.IP.String())
	}
	log.Info("provisiond serving", "version", opts.Version, "interfaces", strings.Join(names, ","), "boot_http", httpLn.Addr().String(),
		"control_https", ctlLn.Addr().String(), "fingerprint", fingerprint,
		"dhcp", cfg.DHCP.Enabled, "tftp", cfg.TFTP.Enabled, "data_dir", cfg.DataDir, "ipxe_dir", cfg.IPXEDir, "default_profile", cfg.Boot.DefaultProfile)

	srvCtx, stopSrv := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	if dhcpSrv != nil {
		wg.Add(1)
		go func() { defer wg.Done(); dhcpSrv.Serve(srvCtx) }()
	}
	if tftpSrv != nil {
		wg.Add(1)
		go func() { defer wg.Done(); tftpSrv.Serve(srvCtx) }()
	}
	go func() {
		if err := httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("HTTP server: %w", err)
		}
	}()
	go func() {
		if err := ctlSrv.ServeTLS(ctlLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("control plane server: %w", err)
		}
	}()
	if opts.Ready != nil {
		opts.Ready(Addrs{Boot: httpLn.Addr().String(), Control: ctlLn.Addr().String(), Fingerprint: fingerprint})
	}

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			runErr = err
			break loop
		case <-opts.Reload:
			next, set, err := reload(live.Load(), opts)
			if err != nil {
				log.Error("reload failed; keeping the last good configuration and profiles", "err", err)
				continue
			}
			if changed := live.Load().NeedRestart(next); len(changed) > 0 {
				log.Warn("reload: these settings changed but apply only after a restart", "settings", strings.Join(changed, ", "))
			}
			booter.SetProfiles(set)
			booter.SetBoot(next.Boot)
			guard.SetRules(next.Boot.SecretWindowDuration(), next.Boot.TrustedPrefixes())
			if opts.LogLevel != nil {
				var lvl slog.Level
				if lvl.UnmarshalText([]byte(next.Log.Level)) == nil {
					opts.LogLevel.Set(lvl)
				}
			}
			live.Store(next)
			log.Info("configuration and profiles reloaded", "profiles", len(set.List()), "default_profile", next.Boot.DefaultProfile,
				"applied", config.Reloadable)
		}
	}
	log.Info("provisiond stopping: finishing transfers")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	close(closing)
	go ctlSrv.Shutdown(shutCtx)
	httpSrv.Shutdown(shutCtx)
	stopSrv()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-shutCtx.Done():
		log.Warn("transfers still running after 10s; stopping anyway")
	}
	stopRec()
	rec.Wait()
	log.Info("provisiond stopped")
	return runErr
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

// late lets the protocol servers, built before the store opens, reach the
// Booter and the Recorder once they exist. Until then events are dropped
// and no request is served (the servers are not started before).
type late struct {
	booter  atomic.Pointer[Booter]
	rec     atomic.Pointer[Recorder]
	metrics *metrics.Metrics
}

// Emit implements events.Sink: the event is stored and published, and the
// Booter follows the boot (chainloads, one-shot assignments).
func (l *late) Emit(ev events.Event) {
	r := l.rec.Load()
	if r == nil {
		return
	}
	l.metrics.Emit(ev)
	r.Emit(ev)
	if b := l.booter.Load(); b != nil {
		b.Observe(ev)
	}
}

// DecideDHCP implements pxe.Decider.
func (l *late) DecideDHCP(ctx context.Context, req boot.Request) boot.DHCPDecision {
	return l.booter.Load().DecideDHCP(ctx, req)
}

// FirstStage implements pxe.Scripter.
func (l *late) FirstStage(ctx context.Context, mac, baseURL string) ([]byte, error) {
	return l.booter.Load().FirstStage(ctx, mac, baseURL)
}

// Script implements pxe.Scripter.
func (l *late) Script(ctx context.Context, req pxe.ScriptRequest) (pxe.ScriptReply, error) {
	return l.booter.Load().Script(ctx, req)
}

// Callback implements pxe.Scripter.
func (l *late) Callback(ctx context.Context, req pxe.ScriptRequest) error {
	return l.booter.Load().Callback(ctx, req)
}

// Overlay implements pxe.Scripter.
func (l *late) Overlay(ctx context.Context, req pxe.ScriptRequest) ([]byte, string, error) {
	return l.booter.Load().Overlay(ctx, req)
}

// Config implements pxe.Scripter.
func (l *late) Config(ctx context.Context, req pxe.ScriptRequest) ([]byte, string, error) {
	return l.booter.Load().Config(ctx, req)
}

// machineParams are machine m's parameters over the config's defaults.
func machineParams(cfg *config.Config, m *inventory.Machine) map[string]string {
	out := maps.Clone(cfg.Boot.DefaultParams)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, m.Params)
	return out
}

// reload reads the configuration and the profiles again and checks them as
// a start would; on any error the caller keeps what it has.
func reload(cur *config.Config, opts Options) (*config.Config, *profile.Set, error) {
	next := *cur
	if opts.LoadConfig != nil {
		var err error
		if next, err = opts.LoadConfig(); err != nil {
			return nil, nil, err
		}
		if err := next.Validate(); err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
	}
	set, err := profile.Load(opts.Builtin, next.ProfilesDir)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := set.Get(next.Boot.DefaultProfile); !ok {
		return nil, nil, fmt.Errorf("boot.default_profile %s is not a known profile", next.Boot.DefaultProfile)
	}
	return &next, set, nil
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
