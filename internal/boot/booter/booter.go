// Package booter is the boot tracker: it answers the protocol servers'
// questions for the machines in the inventory (the DHCP decision, the
// scripts, overlays and config documents, guarded by bootguard), follows
// each boot until its profile's rule says it is done, and uses up one-shot
// assignments.
package booter

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/bootguard"
	"github.com/provisiond/provisiond/internal/bounded"
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
	store    inventory.Machines
	profiles atomic.Pointer[profile.Set]
	bootCfg  atomic.Pointer[config.Boot]
	ipxeDir  string
	files    map[string]string // configured iPXE binaries found at start
	secrets  SecretSource
	extras   []Extra
	sink     events.Sink
	log      *slog.Logger
	guard    *bootguard.Guard
	observer RefusalObserver
	models   func() []audit.Model

	boots      BootObserver
	facts      FactsStore
	nics       BootNICChecker
	commission atomic.Pointer[CommissionRules]

	mu     sync.Mutex
	tracks *bounded.Map[*track] // MAC -> its boot (see track.go)
	steps  stepBudget
}

// RefusalObserver counts refused boot-plane requests (metrics).
type RefusalObserver interface {
	Refused(what, reason string)
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
	// parameters. An error of type *profile.NotReadyError makes the machine wait
	// and ask again.
	Values(ctx context.Context, m *inventory.Machine, params map[string]string) (map[string]string, error)
}

// Options are the Booter's collaborators.
type Options struct {
	Store    inventory.Machines
	Profiles *profile.Set
	Boot     config.Boot
	IPXEDir  string
	// IPXEFiles are the iPXE binaries found at start (IPXEFiles).
	IPXEFiles map[string]string
	Secrets   SecretSource
	Extras    []Extra
	// Events receives the timeline's events: the steps reported, and the
	// tracker's own (boot.done, assignment.consumed, refusals).
	Events events.Sink
	// Boots is told every boot that finished (metrics; nil: nobody).
	Boots BootObserver
	Log   *slog.Logger
	// Guard decides which requests get secrets and change state (nil:
	// one with the default rules and no neighbour table, which admits
	// nothing but trusted sources).
	Guard *bootguard.Guard
	// Refusals counts refused requests (nil: nobody).
	Refusals RefusalObserver
	// Models gives the configured model figures, for the boot firmware a
	// model is bound to (nil: none).
	Models func() []audit.Model
	// Facts records commissioning reports (nil: they are refused).
	Facts FactsStore
	// Commission are the commissioning rules.
	Commission CommissionRules
	// BootNICs checks the commissioning image against a boot NIC (nil:
	// no check).
	BootNICs BootNICChecker
}

// New returns a Booter.
func New(o Options) *Booter {
	if o.Events == nil {
		o.Events = events.SinkFunc(func(events.Event) {})
	}
	if o.Guard == nil {
		o.Guard = bootguard.New(bootguard.Config{})
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Boots == nil {
		o.Boots = nopBoots{}
	}
	b := &Booter{store: o.Store, ipxeDir: o.IPXEDir, files: o.IPXEFiles, secrets: o.Secrets, extras: o.Extras,
		sink: o.Events, log: o.Log, guard: o.Guard, observer: o.Refusals, models: o.Models,
		boots: o.Boots, facts: o.Facts, nics: o.BootNICs, tracks: bounded.New[*track](maxTracks, bootWindow)}
	b.profiles.Store(o.Profiles)
	b.SetCommission(o.Commission)
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
	return boot.Options{BIOS: bc.BIOS, UEFIx86: bc.UEFIx86, UEFIx64: bc.UEFIx64, UEFIARM64: bc.UEFIARM64, Chain: string(bc.ChainIPXE)}
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
		if b.models != nil {
			// A model with one boot firmware (BL460c Gen8: BIOS only)
			// binds its machines as their own setting would.
			bs.Firmware, _ = audit.FirmwareFor(bs.Firmware, bs.Vendor, bs.Model, b.models())
		}
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
//
// Secrets and the boot's nonce go only to a request the guard admits (from
// the machine's own address, in a boot provisiond saw start); a script with
// a secret goes out once per boot. Anything else that would need a secret
// gets what an unknown machine gets, and the refusal is on the timeline.
func (b *Booter) Script(ctx context.Context, req pxe.ScriptRequest) (pxe.ScriptReply, error) {
	m := b.machine(req.MAC)
	known := m != nil && !m.Discovered
	name := boot.ProfileFor(m, b.boot().DefaultProfile)
	set := b.profiles.Load()
	if req.Profile != "" && req.Profile != name {
		if !known || !b.inMenu(set, m, req.Profile) {
			rep, err := b.unknownScript(ctx, req)
			if known {
				b.refused(m.Name, req, "script", req.Profile, &bootguard.Refusal{Reason: bootguard.ReasonProfile,
					Detail: "profile " + req.Profile + " is not in this machine's boot menu"})
			} else {
				rep.RecordStep = true
			}
			return rep, err
		}
		name = req.Profile
	}
	if !known && b.commissionRules().Auto {
		return b.commissionUnknown(ctx, req)
	}
	if !known {
		// Discovery: what an unknown MAC reports is all that is known of
		// it (max_discovered bounds how many are kept).
		rep, err := b.unknownScript(ctx, req)
		rep.RecordFacts, rep.RecordStep = true, true
		return rep, err
	}
	nonce, admitErr := b.guard.Admit(req.MAC, req.Source)
	noted := false
	if admitErr == nil && m.Profile == "" {
		// The default profile is what every unknown MAC gets: never with
		// a secret, even for a machine in the inventory.
		admitErr = &bootguard.Refusal{Reason: bootguard.ReasonProfile, Detail: "the machine boots the default profile, which gets no secrets: assign it a profile"}
	}
	if admitErr == nil {
		if err := b.assetKey(m, req); err != nil {
			// Said once here, whether or not this script needs a secret:
			// without the key there is no nonce for the overlay either.
			b.refused(m.Name, req, "script", name, err)
			admitErr, noted = err, true
		}
	}
	if admitErr != nil {
		nonce = ""
	}
	mode := secretsWithheld
	if admitErr == nil {
		mode = secretsReal
	}
	r, usedSecret, err := b.render(ctx, m, req.MAC, req.BaseURL, name, mode, nonce)
	if err != nil {
		var nr *profile.NotReadyError
		switch {
		case errors.As(err, &nr):
			own := admitErr == nil
			return b.waiting(nr, req, name, own, own || b.note(req.MAC, "script", "unbound")), nil
		case errors.Is(err, errWithheld):
			if !noted {
				b.refused(m.Name, req, "script", name, admitErr)
			}
			return b.unknownScript(ctx, req)
		}
		return pxe.ScriptReply{Profile: name}, err
	}
	if admitErr != nil {
		// No secret in it: served, but it neither counts as the
		// machine's boot nor uses up a one-shot assignment, and its step
		// is kept only within the refusals' budget (anyone may ask).
		return pxe.ScriptReply{Body: r.Script, Profile: name, RecordStep: b.note(req.MAC, "script", "unbound")}, nil
	}
	if usedSecret {
		if err := b.guard.Once(req.MAC, "script:"+name); err != nil {
			b.refused(m.Name, req, "script", name, err)
			return b.unknownScript(ctx, req)
		}
	}
	// What the script hands out with the nonce, whatever happens to the
	// assignment meanwhile (a one-shot is used up by the kernel and
	// initrd, before the overlay is fetched).
	b.guard.Grant(req.MAC, "overlay:"+name, "config:"+name, "callback", "facts")
	if b.usesCommission(name) {
		// A report from the commissioning OS comes with this nonce.
		b.reported(req.MAC)
		b.checkBootNIC(m.Name, req)
	}
	b.follow(m, name, req.MAC, r.Assets, m.Once != nil && m.Profile == name)
	return pxe.ScriptReply{Body: r.Script, Profile: name, RecordFacts: true, RecordStep: true}, nil
}

// assetKey checks the asset tag iPXE reported against the machine's asset
// key, when it has one.
func (b *Booter) assetKey(m *inventory.Machine, req pxe.ScriptRequest) error {
	if m.AssetKeySecret == "" {
		return nil
	}
	if b.secrets == nil {
		return &bootguard.Refusal{Reason: bootguard.ReasonAssetKey, Detail: "no secret store for the asset key"}
	}
	want, err := b.secrets.Secret(m.AssetKeySecret)
	if err != nil {
		return &bootguard.Refusal{Reason: bootguard.ReasonAssetKey, Detail: "the asset key's secret " + m.AssetKeySecret + " cannot be read: " + err.Error()}
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(want)), []byte(req.Facts["asset"])) != 1 {
		return &bootguard.Refusal{Reason: bootguard.ReasonAssetKey, Detail: "the boot did not report the machine's asset tag (SMBIOS chassis asset tag)"}
	}
	return nil
}

// unknownScript is what a MAC that is not in the inventory gets: the
// default profile, never a secret.
func (b *Booter) unknownScript(ctx context.Context, req pxe.ScriptRequest) (pxe.ScriptReply, error) {
	name := b.boot().DefaultProfile
	r, _, err := b.render(ctx, nil, req.MAC, req.BaseURL, name, secretsWithheld, "")
	if err != nil {
		if errors.Is(err, errWithheld) {
			err = fmt.Errorf("the default profile %s needs a secret, which provisiond gives only to machines in the inventory during their own boot (add the machine: provisiond machine add)", name)
		}
		return pxe.ScriptReply{Profile: name}, err
	}
	return pxe.ScriptReply{Body: r.Script, Profile: name}, nil
}

// inMenu reports whether machine m boots a menu and that menu offers
// profile name.
func (b *Booter) inMenu(set *profile.Set, m *inventory.Machine, name string) bool {
	if own, ok := set.Get(boot.ProfileFor(m, b.boot().DefaultProfile)); !ok || !own.UsesMenu {
		return false
	}
	d := boot.ScriptData(m, "", "", name, b.boot().DefaultParams)
	for _, it := range b.menu(set, d.Params) {
		if it.Name == name {
			return true
		}
	}
	return false
}

// Overlay implements pxe.Scripter: the overlay archive of the profile the
// machine boots (or chose from its menu). Overlays hold secrets such as the
// munge key: only a machine in the inventory gets one, from its own address,
// within its boot, with the nonce its script carried, once per boot. Every
// refusal wraps pxe.ErrRefused and is answered as for an unknown MAC.
func (b *Booter) Overlay(ctx context.Context, req pxe.ScriptRequest) ([]byte, string, error) {
	p, d, name, err := b.machineFile(ctx, req, "overlay")
	if err != nil {
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

// Config implements pxe.Scripter: the config document of the profile the
// machine boots (Talos fetches it from talos.config=; Omni's join token is
// in it). Guarded as overlays are: a machine in the inventory, from its own
// address, within its boot, with its script's nonce, once per boot.
func (b *Booter) Config(ctx context.Context, req pxe.ScriptRequest) ([]byte, string, error) {
	p, d, name, err := b.machineFile(ctx, req, "config")
	if err != nil {
		return nil, name, err
	}
	body, err := p.RenderConfig(d)
	return body, name, err
}

// machineFile admits a request for one of a booting machine's own files
// (what: overlay, config) and returns the profile and the data to render
// it with, secrets resolved. The profile is the one this boot's script
// rendered, named in the URL: the guard redeems the nonce only for what
// that script granted. Refusals wrap pxe.ErrRefused.
func (b *Booter) machineFile(ctx context.Context, req pxe.ScriptRequest, what string) (*profile.Profile, profile.Data, string, error) {
	m := b.machine(req.MAC)
	if m == nil || m.Discovered {
		b.count(what, bootguard.ReasonUnknown)
		return nil, profile.Data{}, req.Profile, pxe.ErrRefused
	}
	name := cmp.Or(req.Profile, boot.ProfileFor(m, b.boot().DefaultProfile))
	nonce, err := b.guard.Admit(req.MAC, req.Source)
	if err == nil {
		err = b.guard.Redeem(req.MAC, req.Nonce, what+":"+name, req.Source)
	}
	if err != nil {
		b.refused(m.Name, req, what, name, err)
		return nil, profile.Data{}, name, pxe.ErrRefused
	}
	p, ok := b.profiles.Load().Get(name)
	if !ok {
		return nil, profile.Data{}, name, fmt.Errorf("profile %s does not exist", name)
	}
	d := b.scriptData(m, req.MAC, req.BaseURL, name, nonce)
	if b.secrets != nil {
		d.Secret = b.secrets.Secret
	}
	if err := b.addExtras(ctx, p, m, &d); err != nil {
		return nil, profile.Data{}, name, err
	}
	return p, d, name, nil
}

// Callback implements pxe.Scripter: a booted OS's report counts only with
// its boot's nonce, from its own address, once.
func (b *Booter) Callback(_ context.Context, req pxe.ScriptRequest) error {
	m := b.machine(req.MAC)
	if m == nil || m.Discovered {
		b.count("callback", bootguard.ReasonUnknown)
		return pxe.ErrRefused
	}
	if err := b.guard.Redeem(req.MAC, req.Nonce, "callback", req.Source); err != nil {
		b.refused(m.Name, req, "callback", "", err)
		return pxe.ErrRefused
	}
	return nil
}

// BootProof checks an agent's facts report made with a boot's nonce
// instead of the API token: from the machine's own address, with its
// current boot's nonce, once. It returns the machine's name.
func (b *Booter) BootProof(mac, nonce string, src netip.Addr) (string, error) {
	m := b.machine(mac)
	if m == nil || m.Discovered {
		b.count("facts", bootguard.ReasonUnknown)
		return "", pxe.ErrRefused
	}
	if err := b.guard.Redeem(mac, nonce, "facts", src); err != nil {
		b.refused(m.Name, pxe.ScriptRequest{MAC: mac, Source: src, Nonce: nonce}, "facts", "", err)
		return "", pxe.ErrRefused
	}
	return m.Name, nil
}

func (b *Booter) count(what, reason string) {
	if b.observer != nil {
		b.observer.Refused(what, reason)
	}
}

// note says whether a step of kind (what, reason) for mac may go on the
// timeline now (stepBudget).
func (b *Booter) note(mac, what, reason string) bool {
	return b.steps.take(mac, what, reason, time.Now())
}

// refused records why req got no secret or changed nothing: a metric
// always, a timeline step within the notes' budget.
func (b *Booter) refused(machine string, req pxe.ScriptRequest, what, profileName string, err error) {
	r, ok := err.(*bootguard.Refusal)
	if !ok {
		r = &bootguard.Refusal{Reason: "error", Detail: fmt.Sprint(err)}
	}
	b.count(what, r.Reason)
	typ := events.SecretRefused
	if r.Alarm {
		typ = events.SpoofAlarm
		b.log.Warn("possible spoof: a secret-bearing boot response was asked for again", "machine", machine, "mac", req.MAC, "what", what, "client", req.Source, "detail", r.Detail)
	} else {
		b.log.Info("boot request refused", "machine", machine, "mac", req.MAC, "what", what, "reason", r.Reason, "client", req.Source)
	}
	if !b.note(req.MAC, what, r.Reason) {
		return
	}
	attrs := map[string]string{"what": what, "reason": r.Reason, "detail": r.Detail, "client": req.Source.String()}
	if profileName != "" {
		attrs["profile"] = profileName
	}
	b.sink.Emit(events.Event{Type: typ, Machine: machine, MAC: req.MAC, Attrs: attrs})
}

// waiting is the answer to a boot that must wait for what its profile
// needs (nr): a boot.waiting step and the script that asks again.
func (b *Booter) waiting(nr *profile.NotReadyError, req pxe.ScriptRequest, name string, recordFacts, recordStep bool) pxe.ScriptReply {
	b.sink.Emit(events.Event{Type: events.BootWaiting, MAC: req.MAC, Attrs: map[string]string{"profile": name, "reason": nr.What,
		"retry_seconds": strconv.Itoa(int(nr.RetryAfter / time.Second))}})
	return pxe.ScriptReply{Body: waitScript(nr, req), Profile: name, RecordFacts: recordFacts, RecordStep: recordStep}
}

// waitScript tells a machine to wait while provisiond prepares its boot.
func waitScript(nr *profile.NotReadyError, req pxe.ScriptRequest) []byte {
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
	mode := secretsRedacted
	if reveal {
		mode = secretsReal
	}
	r, _, err := b.render(ctx, m, mac, baseURL, name, mode, "")
	if err != nil {
		return nil, name, err
	}
	return r.Script, name, nil
}

// secretMode says how a render treats secret parameters.
type secretMode int

const (
	// secretsRedacted renders REDACTED (previews).
	secretsRedacted secretMode = iota
	// secretsReal resolves them (an admitted boot, an operator's reveal).
	secretsReal
	// secretsWithheld fails the render with errWithheld if the output
	// needs one.
	secretsWithheld
)

// errWithheld is a render that needed a secret the request may not have.
var errWithheld = errors.New("secret withheld")

// scriptData is boot.ScriptData with the boot's nonce in the URLs the
// script hands out (overlay, callback).
func (b *Booter) scriptData(m *inventory.Machine, mac, baseURL, name, nonce string) profile.Data {
	d := boot.ScriptData(m, mac, baseURL, name, b.boot().DefaultParams)
	if nonce != "" {
		q := "nonce=" + url.QueryEscape(nonce)
		d.OverlayURL += "&" + q
		d.CallbackURL += "?" + q
		d.FactsURL += "?" + q
	}
	return d
}

// render renders profile name for machine m; it reports whether a secret
// went into the output.
func (b *Booter) render(ctx context.Context, m *inventory.Machine, mac, baseURL, name string, mode secretMode, nonce string) (*profile.Rendered, bool, error) {
	set := b.profiles.Load()
	p, ok := set.Get(name)
	if !ok {
		return nil, false, fmt.Errorf("profile %s does not exist (provisiond profile list shows the profiles)", name)
	}
	d := b.scriptData(m, mac, baseURL, name, nonce)
	used := false
	switch {
	case mode == secretsReal && b.secrets != nil:
		d.Secret = func(n string) (string, error) { used = true; return b.secrets.Secret(n) }
		d.ConfigURL = func() (string, error) {
			// The URL is a capability: it counts as a secret handed out.
			used = true
			u := d.BaseURL + profile.ConfigPath(mac, name)
			if nonce != "" {
				u += "&nonce=" + url.QueryEscape(nonce)
			}
			return u, nil
		}
	case mode == secretsWithheld:
		d.Secret = func(string) (string, error) { return "", errWithheld }
		d.ConfigURL = func() (string, error) { return "", errWithheld }
	}
	if p.UsesMenu && m != nil && !m.Discovered {
		d.Menu = b.menu(set, d.Params)
	}
	if err := b.addExtras(ctx, p, m, &d); err != nil {
		return nil, false, err
	}
	r, err := p.Render(d)
	return r, used, err
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
