package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/initramfs"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/internal/pxe"
)

// Booter answers the protocol servers' questions from the inventory and the
// profiles: it implements pxe.Decider and pxe.Scripter. It also follows
// each boot to tell when a one-shot assignment is used up.
type Booter struct {
	store    *inventory.Store
	profiles atomic.Pointer[profile.Set]
	bootCfg  atomic.Pointer[config.Boot]
	ipxeDir  string
	files    map[string]string // configured iPXE binaries found at start
	secrets  SecretSource
	extras   []Extra
	sink     events.Sink
	log      *slog.Logger

	mu      sync.Mutex
	offered map[string]time.Time // MAC -> when it last fetched an iPXE binary
	pending map[string]*pendingBoot
}

// SecretSource resolves secret names to values.
type SecretSource interface {
	Secret(name string) (string, error)
}

// Extra provides values a profile template reads with {{extra "name" "key"}}
// (Talos' kernel command line and cached asset paths, for example).
type Extra interface {
	// Name is the provider's name in templates.
	Name() string
	// Wants reports whether the profile uses this provider.
	Wants(p *profile.Profile) bool
	// Values returns the provider's values for a machine and its resolved
	// parameters. An error of type *NotReadyError makes the machine wait
	// and ask again.
	Values(ctx context.Context, m *inventory.Machine, params map[string]string) (map[string]string, error)
}

// NotReadyError says a machine's boot needs something provisiond is still
// preparing (a download); the machine is told to wait and retry.
type NotReadyError struct {
	What       string
	RetryAfter time.Duration
}

func (e *NotReadyError) Error() string { return e.What }

// pendingBoot follows a boot until it is done.
type pendingBoot struct {
	machine, profile, on string
	// once is set when the boot uses up a one-shot assignment.
	once bool
	want map[string]bool
	at   time.Time
}

// BooterOptions are the Booter's collaborators.
type BooterOptions struct {
	Store    *inventory.Store
	Profiles *profile.Set
	Boot     config.Boot
	IPXEDir  string
	// IPXEFiles are the iPXE binaries found at start (IPXEFiles).
	IPXEFiles map[string]string
	Secrets   SecretSource
	Extras    []Extra
	Events    events.Sink
	Log       *slog.Logger
}

// NewBooter returns a Booter.
func NewBooter(o BooterOptions) *Booter {
	if o.Events == nil {
		o.Events = events.SinkFunc(func(events.Event) {})
	}
	b := &Booter{store: o.Store, ipxeDir: o.IPXEDir, files: o.IPXEFiles, secrets: o.Secrets, extras: o.Extras,
		sink: o.Events, log: o.Log, offered: map[string]time.Time{}, pending: map[string]*pendingBoot{}}
	b.profiles.Store(o.Profiles)
	b.SetBoot(o.Boot)
	return b
}

// SetProfiles swaps in a new profile set (reload).
func (b *Booter) SetProfiles(set *profile.Set) { b.profiles.Store(set) }

// SetBoot replaces the boot settings (a reloaded config).
func (b *Booter) SetBoot(bc config.Boot) { b.bootCfg.Store(&bc) }

// boot returns the current boot settings.
func (b *Booter) boot() *config.Boot { return b.bootCfg.Load() }

// Profiles returns the current profile set.
func (b *Booter) Profiles() *profile.Set { return b.profiles.Load() }

func (b *Booter) options() boot.Options {
	bc := b.boot()
	return boot.Options{BIOS: bc.BIOS, UEFIx86: bc.UEFIx86, UEFIx64: bc.UEFIx64, UEFIARM64: bc.UEFIARM64, ChainIPXE: bc.ChainIPXE}
}

// chainWindow is how long after delivering an iPXE binary to a MAC
// provisiond takes that MAC's iPXE requests to come from that binary.
const chainWindow = 2 * time.Minute

// chained reports whether mac was sent an iPXE binary within the window.
func (b *Booter) chained(mac string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.offered[mac]
	return ok && now.Sub(t) < chainWindow
}

// IPXEFiles resolves the configured iPXE binaries that exist in the iPXE
// directory to their real paths (Debian links ipxe.efi to /boot/ipxe.efi).
func IPXEFiles(dir string, bc config.Boot) map[string]string {
	out := map[string]string{}
	for _, name := range []string{bc.BIOS, bc.UEFIx86, bc.UEFIx64, bc.UEFIARM64, "ipxe.efi", "snponly.efi", "undionly.kpxe", "undionly.kkpxe", "ipxe.pxe"} {
		if name == "" || filepath.Base(name) != name {
			continue
		}
		real, err := filepath.EvalSymlinks(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		if st, err := os.Stat(real); err == nil && st.Mode().IsRegular() {
			out[name] = real
		}
	}
	return out
}

func (b *Booter) machine(mac string) *inventory.Machine {
	m, err := b.store.MachineByMAC(mac)
	if err != nil {
		if !errors.Is(err, inventory.ErrNotFound) {
			b.log.Error("inventory lookup failed", "mac", mac, "err", err)
		}
		return nil
	}
	return m
}

// DecideDHCP implements pxe.Decider.
func (b *Booter) DecideDHCP(_ context.Context, req boot.Request) boot.DHCPDecision {
	if !boot.IsPXEClass(req.Class) {
		return boot.DHCPDecision{Ignore: true, Silent: true, Reason: "not a PXE client"}
	}
	// The answer depends on two fields of the machine record: decode only
	// those (every PXE packet asks).
	var m *inventory.BootSettings
	bs, found, err := b.store.BootSettingsByMAC(req.MAC)
	switch {
	case err != nil:
		b.log.Error("inventory lookup failed", "mac", req.MAC, "err", err)
	case found:
		m = &bs
	}
	req.ChainedRecently = b.chained(req.MAC, time.Now())
	d := boot.DecideDHCP(req, m, b.options())
	if !d.Ignore && d.Binary != "" {
		// A binary missing at start may have been installed since.
		if _, ok := b.files[d.Binary]; !ok {
			if _, err := os.Stat(filepath.Join(b.ipxeDir, d.Binary)); err != nil {
				return boot.DHCPDecision{Ignore: true, Firmware: d.Firmware, Reason: fmt.Sprintf("iPXE binary %s for %s clients is missing from %s", d.Binary, d.Firmware, b.ipxeDir)}
			}
		}
	}
	return d
}

// isIPXEBinary reports whether file is one of the iPXE binaries provisiond
// hands out.
func (b *Booter) isIPXEBinary(file string) bool {
	switch strings.TrimLeft(file, "/") {
	case b.boot().BIOS, b.boot().UEFIx86, b.boot().UEFIx64, b.boot().UEFIARM64:
		return true
	}
	return false
}

// FirstStage implements pxe.Scripter.
func (b *Booter) FirstStage(_ context.Context, mac, baseURL string) ([]byte, error) {
	return boot.FirstStage(mac, baseURL), nil
}

// Script implements pxe.Scripter: it renders the profile the machine owning
// req.MAC boots now (the default profile for unknown MACs), or the profile
// a boot menu chose for a machine in the inventory.
func (b *Booter) Script(ctx context.Context, req pxe.ScriptRequest) ([]byte, string, error) {
	m := b.machine(req.MAC)
	name := boot.ProfileFor(m, b.boot().DefaultProfile)
	if req.Profile != "" && req.Profile != name {
		if m == nil || m.Discovered {
			return nil, req.Profile, fmt.Errorf("only machines in the inventory may choose a profile from the menu")
		}
		name = req.Profile
	}
	r, err := b.render(ctx, m, req.MAC, req.BaseURL, name, true)
	if err != nil {
		var nr *NotReadyError
		if errors.As(err, &nr) {
			b.sink.Emit(events.Event{Type: events.BootWaiting, MAC: req.MAC, Attrs: map[string]string{"profile": name, "reason": nr.What,
				"retry_seconds": strconv.Itoa(int(nr.RetryAfter / time.Second))}})
			return waitScript(nr, req), name, nil
		}
		return nil, name, err
	}
	if m != nil {
		b.follow(m, name, req.MAC, r.Assets, m.Once != nil && m.Profile == name)
	}
	return r.Script, name, nil
}

// Overlay implements pxe.Scripter: the overlay archive of the profile the
// machine boots (or chose from its menu). Only machines in the inventory
// get one: overlays hold secrets such as the munge key.
func (b *Booter) Overlay(ctx context.Context, req pxe.ScriptRequest) ([]byte, string, error) {
	m := b.machine(req.MAC)
	if m == nil || m.Discovered {
		return nil, req.Profile, fmt.Errorf("no overlay for %s: it is not in the inventory", req.MAC)
	}
	name := boot.ProfileFor(m, b.boot().DefaultProfile)
	if req.Profile != "" {
		name = req.Profile
	}
	p, ok := b.profiles.Load().Get(name)
	if !ok {
		return nil, name, fmt.Errorf("profile %s does not exist", name)
	}
	d := boot.ScriptData(m, req.MAC, req.BaseURL, name, b.boot().DefaultParams)
	if b.secrets != nil {
		d.Secret = b.secrets.Secret
	}
	if err := b.addExtras(ctx, p, m, &d); err != nil {
		return nil, name, err
	}
	files, err := p.RenderOverlay(d)
	if err != nil {
		return nil, name, err
	}
	var in []initramfs.File
	for _, f := range files {
		in = append(in, initramfs.File{Path: f.Path, Mode: f.Mode, Data: f.Data})
	}
	var buf bytes.Buffer
	if err := initramfs.Write(&buf, in); err != nil {
		return nil, name, err
	}
	return buf.Bytes(), name, nil
}

// waitScript tells a machine to wait while provisiond prepares its boot.
func waitScript(nr *NotReadyError, req pxe.ScriptRequest) []byte {
	secs := int(nr.RetryAfter / time.Second)
	if secs < 5 {
		secs = 5
	}
	msg := strings.Map(func(r rune) rune {
		if r < 0x20 || r == '$' || r == 0x7f {
			return ' '
		}
		return r
	}, nr.What)
	return fmt.Appendf(nil, "#!ipxe\necho provisiond: %s\necho provisiond: asking again in %d seconds\nsleep %d\nchain --replace %s/%s || exit 1\n",
		msg, secs, secs, req.BaseURL, boot.ScriptPath(req.MAC))
}

// Render renders the profile machine m (nil: unknown) gets when booting
// from mac, reached at baseURL; secrets are real only when reveal is set.
func (b *Booter) Render(ctx context.Context, m *inventory.Machine, mac, baseURL string, reveal bool) ([]byte, string, error) {
	name := boot.ProfileFor(m, b.boot().DefaultProfile)
	r, err := b.render(ctx, m, mac, baseURL, name, reveal)
	if err != nil {
		return nil, name, err
	}
	return r.Script, name, nil
}

func (b *Booter) render(ctx context.Context, m *inventory.Machine, mac, baseURL, name string, reveal bool) (*profile.Rendered, error) {
	set := b.profiles.Load()
	p, ok := set.Get(name)
	if !ok {
		return nil, fmt.Errorf("profile %s does not exist (provisiond profile list shows the profiles)", name)
	}
	d := boot.ScriptData(m, mac, baseURL, name, b.boot().DefaultParams)
	if reveal && b.secrets != nil {
		d.Secret = b.secrets.Secret
	}
	if p.UsesMenu && m != nil && !m.Discovered {
		d.Menu = b.menu(set, d.Params)
	}
	if err := b.addExtras(ctx, p, m, &d); err != nil {
		return nil, err
	}
	return p.Render(d)
}

func (b *Booter) addExtras(ctx context.Context, p *profile.Profile, m *inventory.Machine, d *profile.Data) error {
	for _, x := range b.extras {
		if !x.Wants(p) {
			continue
		}
		params := map[string]string{}
		for k, v := range p.Params {
			params[k] = v.Default
		}
		for k, v := range d.Params {
			params[k] = v
		}
		for k, spec := range p.Params {
			if spec.Secret {
				delete(params, k) // providers never see secrets
			}
		}
		vals, err := x.Values(ctx, m, params)
		if err != nil {
			return err
		}
		if d.Extra == nil {
			d.Extra = map[string]map[string]string{}
		}
		d.Extra[x.Name()] = vals
	}
	return nil
}

// menu lists the profiles a machine can boot now: every menu profile whose
// required parameters params (the machine's, over the config's) give.
func (b *Booter) menu(set *profile.Set, params map[string]string) []profile.MenuItem {
	var out []profile.MenuItem
	for _, p := range set.List() {
		if !p.Menu || p.Name == "local" || len(p.Missing(params)) > 0 {
			continue
		}
		out = append(out, profile.MenuItem{Name: p.Name, Description: p.Description})
	}
	return out
}

// follow starts watching a boot of a machine in the inventory: by the
// profile's rule it is done now (script), when its assets were served in
// full, or on the booted callback. A done boot is a boot.done event in the
// timeline, and uses up a one-shot assignment (once).
func (b *Booter) follow(m *inventory.Machine, name, mac string, assets []string, once bool) {
	p, _ := b.profiles.Load().Get(name)
	on := p.ConsumedOn
	if on == profile.ConsumedOnAssets && len(assets) == 0 {
		on = profile.ConsumedOnScript
	}
	// A boot done on its script is done once the script went out (the
	// server's http.script or TFTP transfer event), so the timeline reads
	// in order.
	pb := &pendingBoot{machine: m.Name, profile: name, on: on, once: once, want: map[string]bool{}, at: time.Now()}
	for _, a := range assets {
		pb.want[a] = true
	}
	b.mu.Lock()
	if _, again := b.pending[mac]; !again && len(b.pending) >= maxPending {
		// A flood of boots that never finish must not grow without
		// bound: forget the oldest.
		var oldest string
		for k, v := range b.pending {
			if oldest == "" || v.at.Before(b.pending[oldest].at) {
				oldest = k
			}
		}
		delete(b.pending, oldest)
	}
	b.pending[mac] = pb
	b.mu.Unlock()
}

// maxPending bounds the boots followed at once.
const maxPending = 4096

// done records a finished boot and ends a one-shot assignment.
func (b *Booter) done(pb *pendingBoot, mac, on string) {
	b.sink.Emit(events.Event{Type: events.BootDone, Machine: pb.machine, MAC: mac, Attrs: map[string]string{
		"profile": pb.profile, "on": on, "seconds": strconv.FormatFloat(time.Since(pb.at).Seconds(), 'f', 1, 64)}})
	if pb.once {
		b.consume(pb.machine, pb.profile, mac, on)
	}
}

func (b *Booter) consume(machine, name, mac, on string) {
	then, err := b.store.ConsumeOnce(machine, name)
	if err != nil {
		b.log.Error("ending a one-shot assignment failed", "machine", machine, "profile", name, "err", err)
		return
	}
	if then == "" {
		return
	}
	b.log.Info("one-shot assignment consumed", "machine", machine, "profile", name, "then", then)
	b.sink.Emit(events.Event{Type: events.OnceConsumed, Machine: machine, MAC: mac, Attrs: map[string]string{"profile": name, "then": then, "on": on}})
}

// Observe follows the boot steps the servers report: a delivered iPXE
// binary means the next iPXE request from that MAC is ours (no second
// chainload), and assets or a callback may use up a one-shot assignment.
func (b *Booter) Observe(ev events.Event) {
	if ev.MAC == "" {
		return
	}
	full := ev.Type == events.Asset && ev.Attrs["status"] == "200" && ev.Attrs["bytes"] == ev.Attrs["size"]
	if b.isIPXEBinary(ev.Attrs["file"]) && ((ev.Type == events.TFTPTransfer && ev.Attrs["result"] == "ok") || full) {
		b.mu.Lock()
		if len(b.offered) > 65536 {
			for k, t := range b.offered {
				if time.Since(t) >= chainWindow {
					delete(b.offered, k)
				}
			}
		}
		b.offered[ev.MAC] = time.Now()
		b.mu.Unlock()
	}
	switch ev.Type {
	case events.Asset, events.Booted, events.Script, events.TFTPTransfer:
	default:
		return
	}
	b.mu.Lock()
	pb := b.pending[ev.MAC]
	done := false
	if pb != nil {
		switch {
		case pb.on == profile.ConsumedOnScript:
			done = (ev.Type == events.Script && ev.Attrs["profile"] == pb.profile) || (ev.Type == events.TFTPTransfer && ev.Attrs["result"] == "ok")
		case ev.Type == events.Booted:
			done = true
		case pb.on == profile.ConsumedOnAssets && full:
			delete(pb.want, ev.Attrs["file"])
			done = len(pb.want) == 0
		}
		if done {
			delete(b.pending, ev.MAC)
		}
	}
	b.mu.Unlock()
	if done {
		on := pb.on
		if ev.Type == events.Booted {
			on = profile.ConsumedOnCallback
		}
		b.done(pb, ev.MAC, on)
	}
}
