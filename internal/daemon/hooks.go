package daemon

import (
	"context"
	"path/filepath"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/inventory"
)

// status is GET /api/v1/status: version, uptime, the control plane's
// fingerprint and the counters.
func (d *instance) status() map[string]any {
	st := map[string]any{"version": d.opts.Version, "uptime": time.Since(d.started).Round(time.Second).String(), "fingerprint": d.fingerprint,
		"events_dropped": d.rec.Dropped(), "events_coalesced": d.dhcpRepeats(), "discovery_refused": d.store.DiscoveryRefused(), "http": d.httpBoot.Stats()}
	if d.dhcp != nil {
		st["dhcp"] = d.dhcp.Stats()
	}
	if d.tftp != nil {
		st["tftp"] = d.tftp.Stats()
	}
	st["store"] = d.storeStatus()
	if d.member != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if ins, err := d.member.Instances(ctx); err != nil {
			st["instances_error"] = err.Error()
		} else {
			st["instances"] = ins
		}
	}
	return st
}

// storeStatus says where the inventory is and, on etcd, how current this
// instance's boot table is.
func (d *instance) storeStatus() map[string]any {
	if d.cfg.Store != "etcd" {
		return map[string]any{"backend": "bbolt", "path": filepath.Join(d.cfg.DataDir, DBFile)}
	}
	out := map[string]any{"backend": "etcd", "endpoints": d.cfg.Etcd.Endpoints, "prefix": d.cfg.Etcd.Prefix}
	if cs, ok := d.cacheState(); ok {
		out["boot_table"] = cs
	}
	return out
}

// bootInfo says how machine m boots with its profile now: the firmware it
// is bound to and, for Talos, its schematic.
func (d *instance) bootInfo(m inventory.Machine) (api.BootInfo, error) {
	cfg := d.live.Load()
	info := api.BootInfo{Machine: m.Name, Profile: m.Profile}
	info.Firmware, info.FirmwareWhy = audit.Firmware(&m, cfg.Models)
	p, ok := d.booter.Profiles().Get(boot.ProfileFor(&m, cfg.Boot.DefaultProfile))
	if ok && d.talos.Wants(p) {
		v, id, exts, why, err := d.talos.Schematic(&m, machineParams(cfg.Boot.DefaultParams, &m))
		if err != nil {
			return info, err
		}
		info.Talos = &api.TalosBoot{Version: v, Schematic: id, Extensions: exts, Why: why}
	}
	return info, nil
}

// preflight checks a machine about to boot a newly assigned profile: for
// Talos, the extension names of its schematic.
func (d *instance) preflight(ctx context.Context, m inventory.Machine) (string, error) {
	p, ok := d.booter.Profiles().Get(m.Profile)
	if !ok || !d.talos.Wants(p) {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return d.talos.CheckMachine(ctx, &m, machineParams(d.live.Load().Boot.DefaultParams, &m))
}

// dhcpRepeats is how many DHCP answers the ProxyDHCP server counted as
// repeats rather than steps (0 when it is off).
func (d *instance) dhcpRepeats() uint64 {
	if d.dhcp == nil {
		return 0
	}
	return d.dhcp.Stats().Repeats
}
