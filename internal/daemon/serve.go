package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/config"
)

// serve starts the servers; errc reports one that stopped on its own.
func (d *instance) serve() <-chan error {
	cfg := &d.cfg
	names := make([]string, 0, len(d.ifaces))
	for _, i := range d.ifaces {
		names = append(names, i.Name+"="+i.IP.String())
	}
	d.log.Info("provisiond serving", "version", d.opts.Version, "interfaces", strings.Join(names, ","), "boot_http", d.httpLn.Addr().String(),
		"control_https", d.ctlLn.Addr().String(), "fingerprint", d.fingerprint,
		"dhcp", cfg.DHCP.Enabled, "tftp", cfg.TFTP.Enabled, "data_dir", cfg.DataDir, "ipxe_dir", cfg.IPXEDir, "default_profile", cfg.Boot.DefaultProfile)

	srvCtx, stopSrv := context.WithCancel(context.Background())
	d.stopSrv = stopSrv
	errc := make(chan error, 2)
	if d.dhcp != nil {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.dhcp.Serve(srvCtx) }()
	}
	if d.ra != nil {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.ra.Serve(srvCtx) }()
	}
	if d.tftp != nil {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.tftp.Serve(srvCtx) }()
	}
	// Slurm's power saving: resumes staggered, resumed boots followed.
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.slurm.Run(srvCtx, d.broker.Subscribe(srvCtx, "")) }()
	go func() {
		if err := d.httpSrv.Serve(d.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("HTTP server: %w", err)
		}
	}()
	go func() {
		if err := d.ctlSrv.ServeTLS(d.ctlLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("control plane server: %w", err)
		}
	}()
	if d.opts.Ready != nil {
		d.opts.Ready(Addrs{Boot: d.httpLn.Addr().String(), Control: d.ctlLn.Addr().String(), Fingerprint: d.fingerprint})
	}
	return errc
}

// wait serves until ctx ends or a server fails, reloading on request.
func (d *instance) wait(ctx context.Context, errc <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case <-d.opts.Reload:
			d.reload()
		}
	}
}

// reload reads the config and the profiles again and applies what can
// change while running; on any error the last good set stays.
func (d *instance) reload() {
	next, set, err := reload(d.live.Load(), d.opts)
	if err != nil {
		d.log.Error("reload failed; keeping the last good configuration and profiles", "err", err)
		return
	}
	if changed := d.live.Load().NeedRestart(next); len(changed) > 0 {
		d.log.Warn("reload: these settings changed but apply only after a restart", "settings", strings.Join(changed, ", "))
	}
	d.booter.SetProfiles(set)
	d.booter.SetBoot(next.Boot)
	d.booter.SetCommission(commissionRules(next.Commission))
	d.guard.SetRules(next.Boot.SecretWindowDuration(), next.Boot.TrustedPrefixes())
	if d.opts.LogLevel != nil {
		var lvl slog.Level
		if lvl.UnmarshalText([]byte(next.Log.Level)) == nil {
			d.opts.LogLevel.Set(lvl)
		}
	}
	d.live.Store(next)
	d.log.Info("configuration and profiles reloaded", "profiles", len(set.List()), "default_profile", next.Boot.DefaultProfile,
		"applied", config.Reloadable)
}

// shutdown stops accepting, gives running transfers 10 s, and writes the
// queued timeline events.
func (d *instance) shutdown() {
	d.log.Info("provisiond stopping: finishing transfers")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	close(d.closing)
	go d.ctlSrv.Shutdown(shutCtx)
	d.httpSrv.Shutdown(shutCtx)
	d.stopSrv()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-shutCtx.Done():
		d.log.Warn("transfers still running after 10s; stopping anyway")
	}
	d.stopRec()
	d.rec.Wait()
	d.log.Info("provisiond stopped")
}
