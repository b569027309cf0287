package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/assets"
	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/backup"
	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/bmc/protocol"
	bmcsvc "github.com/provisiond/provisiond/internal/bmc/service"
	"github.com/provisiond/provisiond/internal/boot/booter"
	"github.com/provisiond/provisiond/internal/bootguard"
	"github.com/provisiond/provisiond/internal/cluster"
	"github.com/provisiond/provisiond/internal/commission"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/enclosure"
	"github.com/provisiond/provisiond/internal/enclosure/oa"
	"github.com/provisiond/provisiond/internal/events/recorder"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/internal/pxe"
	"github.com/provisiond/provisiond/internal/slurm"
	"github.com/provisiond/provisiond/internal/talos"
	"github.com/provisiond/provisiond/internal/web"
)

// models are the configured model figures, as last reloaded.
func (d *instance) models() []audit.Model { return d.live.Load().Models }

// buildBoot builds what the boot plane serves: the profiles, the assets
// cache and its Talos provider, the boot guard, the boot tracker (Booter),
// the timeline recorder and the HTTP boot endpoints.
func (d *instance) buildBoot(ctx context.Context) error {
	cfg := &d.cfg
	set, err := profile.Load(d.opts.Builtin, cfg.ProfilesDir)
	if err != nil {
		return err
	}
	if _, ok := set.Get(cfg.Boot.DefaultProfile); !ok {
		return fmt.Errorf("boot.default_profile %s is not a known profile", cfg.Boot.DefaultProfile)
	}
	d.profiles = set
	if err := os.MkdirAll(cfg.AssetDir(), 0o755); err != nil {
		return fmt.Errorf("creating assets directory %s: %w", cfg.AssetDir(), err)
	}
	d.cache = assets.New(cfg.AssetDir(), nil, d.log)
	d.closers = append(d.closers, func() { d.cache.Close() })
	d.talos = talos.NewProvider(cfg.Talos, &talos.Factory{BaseURL: cfg.Talos.FactoryURL}, d.cache, cfg.AssetDir())
	d.talos.Log = d.log
	go d.checkTalosConfig(ctx)
	gcfg := bootguard.Config{Window: cfg.Boot.SecretWindowDuration(), Trusted: cfg.Boot.TrustedPrefixes(),
		Neighbor: d.neighbors.Kernel, Learned: d.neighbors.Learned}
	if d.etcd != nil {
		gcfg.Shared = &cluster.Boots{Client: d.etcd, Prefix: cfg.Etcd.Prefix}
	}
	d.guard = bootguard.New(gcfg)
	d.mets.Func("provisiond_boot_spoof_alarms_total", "Secret-bearing boot responses asked for twice in one boot, or nonces used twice: another host may be using a machine's MAC.",
		func() float64 { return float64(d.guard.Alarms()) })
	d.commish = commission.NewProvider(commission.Source{KernelDir: cfg.Commission.KernelDir, Binary: d.opts.Binary, Drivers: cfg.Commission.Drivers,
		FirmwareDirs: cfg.Commission.FirmwareDirs, Shell: cfg.Commission.Shell}, d.cache, d.log)
	d.booter = booter.New(booter.Options{Store: d.store, Profiles: set, Boot: cfg.Boot, IPXEDir: cfg.IPXEDir, IPXEFiles: d.ipxeFiles,
		Secrets: d.secrets, Extras: []booter.Extra{d.talos, d.commish}, Events: d.late, Boots: d.mets, Log: d.log, Guard: d.guard, Refusals: d.mets, Models: d.models,
		Facts: d.store, Commission: commissionRules(cfg.Commission), BootNICs: d.commish})

	recCtx, stopRec := context.WithCancel(context.Background())
	d.rec = recorder.New(d.store, d.broker, 8192, d.log)
	d.stopRec = stopRec
	d.closers = append(d.closers, stopRec)
	d.mets.Func("provisiond_events_dropped_total", "Timeline events dropped because the recorder's queue was full.",
		func() float64 { return float64(d.rec.Dropped()) })
	d.mets.Func("provisiond_events_coalesced_total", "Repeated DHCP steps (same MAC, answer and port within a second) counted and not stored.",
		func() float64 { return float64(d.dhcpRepeats()) })
	go d.rec.Run(recCtx)
	d.late.rec.Store(d.rec)
	d.late.booter.Store(d.booter)

	hc := pxe.HTTPConfig{
		AssetsDir: cfg.AssetDir(), IPXEDir: cfg.IPXEDir, IPXEFiles: d.ipxeFiles, Scripts: d.late,
		Neighbors: d.neighbors, Steps: d.late, Observer: d.mets, Log: d.log, RatePerSource: cfg.HTTP.RatePerSource, MaxAssetStreams: cfg.HTTP.MaxAssetStreams,
	}
	if d.tftp != nil {
		hc.Yield = d.tftp.Queued
	}
	d.httpBoot, err = pxe.NewHTTPBoot(hc)
	return err
}

// checkTalosConfig checks the configured Talos extension names against
// the factory's list (when it can be asked): a wrong name is a boot
// without the firmware it was meant to carry.
func (d *instance) checkTalosConfig(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := d.talos.CheckConfig(ctx); err != nil {
		d.log.Error("talos: the configured extensions are wrong; Talos boots will fail until they are fixed", "err", err)
	}
}

// buildControl builds the two HTTP servers: the boot plane (plain HTTP,
// what firmware fetches) and the control plane (TLS: API, dashboard,
// metrics, profiler, backup).
func (d *instance) buildControl(context.Context) error {
	cfg := &d.cfg
	d.started = time.Now()
	mux := http.NewServeMux()
	d.httpBoot.Register(mux)
	ctl := http.NewServeMux()
	dialer := d.opts.BMCDialer
	if dialer == nil {
		// One Dialer per protocol: bmclib speaks IPMI and Redfish, oa.Dialer
		// an enclosure's Onboard Administrator.
		reg := bmc.NewRegistry()
		bl := bmc.NewBmclib(bmc.Options{Timeout: cfg.BMCTimeout(), IpmitoolPath: cfg.BMC.IpmitoolPath})
		for _, p := range []string{protocol.IPMI, protocol.Redfish} {
			if err := reg.Register(p, bl); err != nil {
				return err
			}
		}
		// A blade's enclosure OA, for blades controlled through it.
		oaDialer := &oa.Dialer{}
		if err := reg.Register(protocol.OA, oaDialer); err != nil {
			return err
		}
		d.closers = append(d.closers, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			oaDialer.Close(ctx)
		})
		dialer = reg
	}
	bmcOpts := bmcsvc.Options{Store: d.store, Secrets: d.secrets, Dialer: dialer, Getenv: d.opts.Getenv,
		Steps: d.late, Log: d.log, MaxConcurrent: cfg.BMC.MaxConcurrent, Observer: d.mets, Models: d.models}
	if d.member != nil {
		bmcOpts.Lock = d.member.Lock
	}
	bmcs := bmcsvc.New(bmcOpts)
	d.slurm = slurm.New(slurm.Config{Stagger: cfg.Slurm.StaggerDuration(), SoftGrace: cfg.Slurm.SoftGraceDuration()},
		d.store, slurmPower{bmcs: bmcs, store: d.store, models: d.models}, d.late, d.mets, d.log.With("part", "slurm"))
	d.api = &api.Server{
		BMC:        bmcs,
		Enclosures: &enclosure.Syncer{Store: d.store, Password: bmcs.Password},
		Store:      d.store, Hardware: d.store, Revision: d.store.Revision, AuditConfig: func() ([]inventory.Role, []audit.Model) { c := d.live.Load(); return c.Roles, c.Models },
		Renderer: d.booter, Secrets: d.secrets, Broker: d.broker, Events: d.late, Token: d.token, ReadAccess: cfg.HTTP.ReadAccess,
		BaseURL: d.baseURL, Log: d.log, Closing: d.closing,
		Assets:    &assetsAPI{cache: d.cache, talos: d.talos, commission: d.commish, store: d.store, boot: func() map[string]string { return d.live.Load().Boot.DefaultParams }},
		Status:    d.status,
		BootProof: d.booter.BootProof,
		BootInfo:  d.bootInfo,
		Preflight: d.preflight,
		Slurm:     d.slurm,
		SlurmToken: func() string {
			tok, _ := d.secrets.Secret(api.SlurmTokenSecret)
			return tok
		},
		Backup: func(w io.Writer) error {
			_, err := backup.Write(w, d.store, filepath.Join(cfg.DataDir, SecretKeyFile), cfg.DataDir, d.opts.Version)
			return err
		},
	}
	d.api.Register(ctl)
	ctl.Handle("GET /metrics", d.api.ReadGuard(d.mets.Handler()))
	healthz := func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }
	mux.HandleFunc("GET /healthz", healthz)
	ctl.HandleFunc("GET /healthz", healthz)
	dash, err := web.New(d.api, d.log)
	if err != nil {
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
	srvLog := slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)
	d.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10, ErrorLog: srvLog}
	// The control plane answers only to this host's names (no DNS
	// rebinding), and browsers' cross-origin requests that would change
	// something are refused, so no other site can use a dashboard session
	// (CSRF). The CLI and curl send no Origin or Sec-Fetch-Site and pass.
	d.ctlSrv = &http.Server{Handler: api.HostGuard(d.hosts, http.NewCrossOriginProtection().Handler(ctl)),
		ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: srvLog,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{d.cert}, MinVersion: tls.VersionTLS12}}
	return nil
}

// commissionRules are the booter's commissioning rules from the config.
func commissionRules(c config.Commission) booter.CommissionRules {
	return booter.CommissionRules{Auto: c.Auto, ReportWithin: c.ReportWithinDuration()}
}
