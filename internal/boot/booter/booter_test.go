package booter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/bootguard"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/internal/pxe"
	"github.com/provisiond/provisiond/internal/secrets"
	"github.com/provisiond/provisiond/profiles"
)

type recSink struct {
	mu  sync.Mutex
	evs []events.Event
}

func (r *recSink) Emit(ev events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

func (r *recSink) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.evs {
		out = append(out, ev.Type)
	}
	return out
}

type fakeExtra struct {
	err error
}

func (fakeExtra) Name() string                  { return "fake" }
func (fakeExtra) Wants(p *profile.Profile) bool { return p.Name == "needsextra" }
func (f fakeExtra) Values(context.Context, *inventory.Machine, map[string]string) (map[string]string, error) {
	return map[string]string{"v": "from-extra"}, f.err
}

func newTestBooter(t *testing.T, extra Extra) (*Booter, *inventory.Store, *secrets.Store, *recSink) {
	t.Helper()
	dir := t.TempDir()
	store, err := inventory.Open(filepath.Join(dir, "db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	pdir := t.TempDir()
	os.WriteFile(filepath.Join(pdir, "secretive.yaml"), []byte("description: uses a secret\nparams:\n  token:\n    secret: true\n    default: join-token\n"), 0o644)
	os.WriteFile(filepath.Join(pdir, "secretive.ipxe"), []byte("#!ipxe\necho token={{.Params.token}}\n"), 0o644)
	os.WriteFile(filepath.Join(pdir, "callbackonly.yaml"), []byte("description: consumed on callback\nconsumed_on: callback\n"), 0o644)
	os.WriteFile(filepath.Join(pdir, "callbackonly.ipxe"), []byte("#!ipxe\nkernel {{asset \"k\"}}\nboot\n"), 0o644)
	os.WriteFile(filepath.Join(pdir, "needsextra.yaml"), []byte("description: uses a provider\n"), 0o644)
	os.WriteFile(filepath.Join(pdir, "needsextra.ipxe"), []byte("#!ipxe\necho {{extra \"fake\" \"v\"}}\n"), 0o644)
	set, err := profile.Load(profiles.FS, pdir)
	if err != nil {
		t.Fatal(err)
	}
	box, _ := secrets.LoadOrCreateKey(filepath.Join(dir, "key"))
	ss := secrets.NewStore(store, box)
	sink := &recSink{}
	var extras []Extra
	if extra != nil {
		extras = []Extra{extra}
	}
	// The lab's neighbour table: 192.0.2.50 is testMAC, 192.0.2.66 a
	// stranger.
	guard := bootguard.New(bootguard.Config{Neighbor: func(ip netip.Addr) (string, bool) {
		switch ip {
		case machineIP:
			return testMAC, true
		case strangerIP:
			return "52:54:00:66:66:66", true
		}
		return "", false
	}})
	b := New(Options{Store: store, Profiles: set, Boot: config.Default().Boot, Secrets: ss, Extras: extras, Events: sink,
		Log: slog.New(slog.DiscardHandler), Guard: guard})
	return b, store, ss, sink
}

const testMAC = "52:54:00:00:00:06"

var (
	machineIP  = netip.MustParseAddr("192.0.2.50")
	strangerIP = netip.MustParseAddr("192.0.2.66")
)

// pxeStart is the ROM's DHCP exchange as the ProxyDHCP server reports it:
// a boot of testMAC starts.
func pxeStart(b *Booter) {
	b.Report(events.Step{Type: events.DHCPOffer, MAC: testMAC, Stage: "rom"})
}

// machineReq is a script request from the machine itself.
func machineReq(profile string) pxe.ScriptRequest {
	return pxe.ScriptRequest{MAC: testMAC, BaseURL: "http://192.0.2.2:8080", Profile: profile, Source: machineIP}
}

// script boots testMAC: its PXE DHCP, then its script from its own address.
func script(t *testing.T, b *Booter, profile string) (string, string) {
	t.Helper()
	pxeStart(b)
	rep, err := b.Script(context.Background(), machineReq(profile))
	if err != nil {
		t.Fatal(err)
	}
	// The HTTP server reports the script it served, as in the daemon.
	b.Report(events.Step{Type: events.Script, MAC: testMAC, Profile: rep.Profile, OK: true})
	return string(rep.Body), rep.Profile
}

// assetStep is a file served in full over HTTP.
func assetStep(file string) events.Step {
	return events.Step{Type: events.Asset, MAC: testMAC, File: file, OK: true}
}

func TestOneShotConsumedWhenAssetsServed(t *testing.T) {
	b, store, _, sink := newTestBooter(t, nil)
	store.PutMachine(inventory.Machine{Name: "BLD-006", MACs: []string{testMAC}, Profile: "linux", Once: &inventory.Once{Then: "local"},
		Params: map[string]string{"kernel": "vmlinuz", "initrd": "initrd.img"}})
	if _, name := script(t, b, ""); name != "linux" {
		t.Fatalf("first boot got %s", name)
	}
	// A partial download does not count; the kernel alone does not either.
	b.Report(events.Step{Type: events.Asset, MAC: testMAC, File: "vmlinuz", Attrs: map[string]string{"status": "206", "bytes": "10", "size": "100"}})
	b.Report(assetStep("vmlinuz"))
	if m, _ := store.Machine("BLD-006"); m.Profile != "linux" || m.Once == nil {
		t.Fatalf("consumed too early: %+v", m)
	}
	b.Report(assetStep("initrd.img"))
	m, _ := store.Machine("BLD-006")
	if m.Profile != "local" || m.Once != nil {
		t.Fatalf("not consumed after kernel and initrd: %+v", m)
	}
	if got := strings.Join(sink.types(), ","); got != events.BootDone+","+events.OnceConsumed {
		t.Errorf("events %s", got)
	}
	if _, name := script(t, b, ""); name != "local" {
		t.Errorf("second boot got %s", name)
	}
}

func TestOneShotConsumedOnScriptAndCallback(t *testing.T) {
	b, store, _, _ := newTestBooter(t, nil)
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "shell", Once: &inventory.Once{Then: "menu"}})
	script(t, b, "")
	if m, _ := store.Machine("m"); m.Profile != "menu" || m.Once != nil {
		t.Fatalf("shell (consumed on script): %+v", m)
	}
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "callbackonly", Once: &inventory.Once{Then: "local"}})
	script(t, b, "")
	b.Report(assetStep("k"))
	if m, _ := store.Machine("m"); m.Profile != "callbackonly" {
		t.Fatalf("callback profile consumed by assets: %+v", m)
	}
	b.Report(events.Step{Type: events.Booted, MAC: testMAC, OK: true})
	if m, _ := store.Machine("m"); m.Profile != "local" {
		t.Fatalf("callback profile not consumed by the callback: %+v", m)
	}
}

func TestPersistentProfileStays(t *testing.T) {
	b, store, _, sink := newTestBooter(t, nil)
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "linux", Params: map[string]string{"kernel": "vmlinuz"}})
	script(t, b, "")
	b.Report(assetStep("vmlinuz"))
	b.Report(events.Step{Type: events.Booted, MAC: testMAC, OK: true})
	if m, _ := store.Machine("m"); m.Profile != "linux" {
		t.Fatalf("persistent profile changed: %+v", m)
	}
	// Every finished boot is a boot.done, one-shot or not: once, on the
	// kernel (the callback after it does not count twice).
	if got := strings.Join(sink.types(), ","); got != events.BootDone {
		t.Errorf("events %s", got)
	}
	// local is done when its script went out.
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "local"})
	script(t, b, "")
	if got := strings.Join(sink.types(), ","); got != events.BootDone+","+events.BootDone {
		t.Errorf("events after local %s", got)
	}
}

func TestMenuListsBootableProfiles(t *testing.T) {
	b, store, _, _ := newTestBooter(t, nil)
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "menu"})
	body, _ := script(t, b, "")
	// linux needs a kernel parameter this machine lacks: not offered.
	// talos needs no parameter: offered (its assets are looked up only when chosen).
	if strings.Contains(body, "p-linux") || !strings.Contains(body, "item p-secretive") || !strings.Contains(body, "item p-talos") ||
		strings.Contains(body, "p-shell") || !strings.Contains(body, "item shell") {
		t.Errorf("menu:\n%s", body)
	}
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "menu", Params: map[string]string{"kernel": "vmlinuz"}})
	body, _ = script(t, b, "")
	if !strings.Contains(body, "item p-linux") || !strings.Contains(body, ":p-linux\nchain --replace http://192.0.2.2:8080/boot/52:54:00:00:00:06/script?profile=linux") {
		t.Errorf("menu with kernel:\n%s", body)
	}
	// A menu choice renders that profile for a known machine...
	if _, name := script(t, b, "linux"); name != "linux" {
		t.Errorf("menu choice rendered %s", name)
	}
	// ...but not one outside its menu (shell needs nothing, it is an
	// item of its own, not a profile entry)...
	if _, name := script(t, b, "slurm"); name != "menu" {
		t.Errorf("a profile outside the menu rendered %s, want the unknown machine's menu", name)
	}
	// ...and an unknown machine cannot pick profiles: it gets what every
	// unknown MAC gets.
	store.DeleteMachine("m")
	if rep, err := b.Script(context.Background(), machineReq("secretive")); err != nil || rep.Profile != "menu" || strings.Contains(string(rep.Body), "token=") {
		t.Errorf("an unknown machine chose a profile: %v %s\n%s", err, rep.Profile, rep.Body)
	}
}

func TestSecretsRedactedUnlessRevealed(t *testing.T) {
	b, store, ss, _ := newTestBooter(t, nil)
	m, _ := store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "secretive"})
	pxeStart(b)
	if _, err := b.Script(context.Background(), machineReq("")); err == nil || !strings.Contains(err.Error(), "provisiond secret set join-token") {
		t.Fatalf("missing secret: %v", err)
	}
	ss.SetSecret("join-token", "tok-123")
	body, _ := script(t, b, "")
	if !strings.Contains(body, "token=tok-123") {
		t.Errorf("machine's script lacks the secret:\n%s", body)
	}
	red, _, err := b.Render(context.Background(), m, testMAC, "http://x:1", false)
	if err != nil || strings.Contains(string(red), "tok-123") || !strings.Contains(string(red), "token=REDACTED") {
		t.Errorf("redacted render: %v\n%s", err, red)
	}
	shown, _, _ := b.Render(context.Background(), m, testMAC, "http://x:1", true)
	if !strings.Contains(string(shown), "tok-123") {
		t.Errorf("revealed render:\n%s", shown)
	}
	ss.SetSecret("join-token", "bad\nshell")
	pxeStart(b)
	if _, err := b.Script(context.Background(), machineReq("")); err == nil || strings.Contains(err.Error(), "bad") {
		t.Errorf("unsafe secret: %v (the error must not quote the value)", err)
	}
}

func TestExtrasAndWaiting(t *testing.T) {
	b, store, _, _ := newTestBooter(t, fakeExtra{})
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "needsextra"})
	if body, _ := script(t, b, ""); !strings.Contains(body, "echo from-extra") {
		t.Errorf("extra not rendered:\n%s", body)
	}
	b2, store2, _, _ := newTestBooter(t, fakeExtra{err: &profile.NotReadyError{What: "fetching Talos v1.9.0", RetryAfter: 15 * time.Second}})
	store2.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "needsextra"})
	body, _ := script(t, b2, "")
	if !strings.Contains(body, "fetching Talos v1.9.0") || !strings.Contains(body, "sleep 15") || !strings.Contains(body, "chain --replace http://192.0.2.2:8080/boot/52:54:00:00:00:06.ipxe") {
		t.Errorf("wait script:\n%s", body)
	}
	b3, store3, _, _ := newTestBooter(t, fakeExtra{err: errors.New("factory unreachable")})
	store3.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "needsextra"})
	if _, err := b3.Script(context.Background(), machineReq("")); err == nil {
		t.Error("a provider error was not reported")
	}
}

func strangerReq(profile string) pxe.ScriptRequest {
	r := machineReq(profile)
	r.Source = strangerIP
	return r
}

// sinkOf returns the events of type typ the booter emitted.
func (r *recSink) of(typ string) []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.Event
	for _, ev := range r.evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// A secret goes only to the machine's own boot: not to a stranger naming
// its MAC, not outside a boot, not twice; what is refused gets the unknown
// machine's answer and a step on the timeline saying why.
func TestScriptSecretsOnlyToTheMachinesBoot(t *testing.T) {
	b, store, ss, sink := newTestBooter(t, nil)
	ss.SetSecret("join-token", "tok-123")
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "secretive", Once: &inventory.Once{Then: "local"}})
	ctx := context.Background()
	unknownAnswer := func(rep pxe.ScriptReply, err error, what string) {
		t.Helper()
		if err != nil || rep.Profile != "menu" || strings.Contains(string(rep.Body), "tok-123") || rep.RecordFacts {
			t.Errorf("%s: %v %s record=%v\n%s", what, err, rep.Profile, rep.RecordFacts, rep.Body)
		}
	}
	rep, err := b.Script(ctx, machineReq(""))
	unknownAnswer(rep, err, "outside a boot")
	pxeStart(b)
	rep, err = b.Script(ctx, strangerReq(""))
	unknownAnswer(rep, err, "a stranger's request in the boot")
	if m, _ := store.Machine("m"); m.Once == nil {
		t.Fatal("a stranger's script used up the one-shot assignment")
	}
	rep, err = b.Script(ctx, machineReq(""))
	if err != nil || !strings.Contains(string(rep.Body), "token=tok-123") || !rep.RecordFacts {
		t.Fatalf("the machine's own boot: %v\n%s", err, rep.Body)
	}
	rep, err = b.Script(ctx, machineReq(""))
	unknownAnswer(rep, err, "the same script again in one boot")
	// A stranger keeps asking: its refusals are counted, and stored once
	// per kind every 10 s, so they cannot crowd the machine's timeline.
	for range 100 {
		b.Script(ctx, strangerReq(""))
	}
	refused := sink.of(events.SecretRefused)
	alarms := sink.of(events.SpoofAlarm)
	if len(refused) != 2 || refused[0].Attrs["reason"] != bootguard.ReasonNoBoot || refused[0].Attrs["what"] != "script" ||
		refused[1].Attrs["reason"] != bootguard.ReasonSource || refused[1].Attrs["client"] != strangerIP.String() {
		t.Errorf("refusal steps %+v", refused)
	}
	if len(alarms) != 1 || alarms[0].Attrs["reason"] != bootguard.ReasonAgain || alarms[0].Attrs["client"] != machineIP.String() {
		t.Errorf("alarm steps %+v", alarms)
	}
	for _, ev := range sink.evs {
		if strings.Contains(ev.Details(), "tok-123") {
			t.Errorf("a step holds the secret: %+v", ev)
		}
	}
}

// A NIC's iPXE ROM that goes straight to its script (chain_ipxe: auto)
// starts a boot with its DHCP, as the firmware's PXE does: a machine that
// reboots within the boot window gets its secrets again. Only the iPXE
// provisiond chained into continues the boot its ROM started.
func TestROMIPXEStartsABoot(t *testing.T) {
	b, store, ss, _ := newTestBooter(t, nil)
	ss.SetSecret("join-token", "tok-123")
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "secretive"})
	ctx := context.Background()
	for boot := 1; boot <= 2; boot++ {
		b.Report(events.Step{Type: events.DHCPOffer, MAC: testMAC, Stage: "ipxe"})
		rep, err := b.Script(ctx, machineReq(""))
		if err != nil || !strings.Contains(string(rep.Body), "token=tok-123") {
			t.Fatalf("boot %d from the ROM's iPXE: %v\n%s", boot, err, rep.Body)
		}
	}
	// provisiond's own iPXE, chained into, continues the boot: the
	// script with the secret went out in it already.
	b.Report(events.Step{Type: events.DHCPOffer, MAC: testMAC, Stage: "ipxe", Continues: true})
	if rep, _ := b.Script(ctx, machineReq("")); strings.Contains(string(rep.Body), "tok-123") {
		t.Errorf("a chained iPXE's DHCP started a new boot:\n%s", rep.Body)
	}
}

// The overlay needs the nonce its script carried, from the machine's
// address, once; every refusal looks like an unknown MAC.
func TestOverlayNeedsTheBootsNonce(t *testing.T) {
	b, store, ss, sink := newTestBooter(t, nil)
	ss.SetSecret("munge-key", "MUNGE-KEY-BYTES")
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "slurm", Params: map[string]string{"slurm_controller": "192.0.2.2"}})
	ctx := context.Background()
	overlay := func(r pxe.ScriptRequest) ([]byte, error) {
		body, _, err := b.Overlay(ctx, r)
		return body, err
	}
	if _, err := overlay(pxe.ScriptRequest{MAC: "52:54:00:00:00:99", Source: machineIP}); !errors.Is(err, pxe.ErrRefused) {
		t.Errorf("unknown MAC: %v", err)
	}
	body, _ := script(t, b, "")
	nonce := regexp.MustCompile(`overlay\.cpio\?profile=slurm&nonce=(\S+)`).FindStringSubmatch(body)
	if nonce == nil {
		t.Fatalf("the Slurm script has no overlay nonce:\n%s", body)
	}
	if !strings.Contains(body, "provisiond.callback=http://192.0.2.2:8080/boot/52:54:00:00:00:06/booted?nonce="+nonce[1]) {
		t.Errorf("the callback URL lacks the nonce:\n%s", body)
	}
	r := machineReq("slurm")
	for what, bad := range map[string]pxe.ScriptRequest{
		"no nonce":            r,
		"wrong nonce":         {MAC: testMAC, Source: machineIP, Nonce: "x" + nonce[1]},
		"stranger":            {MAC: testMAC, Source: strangerIP, Nonce: nonce[1]},
		"profile not in menu": {MAC: testMAC, Source: machineIP, Nonce: nonce[1], Profile: "talos"},
	} {
		if _, err := overlay(bad); !errors.Is(err, pxe.ErrRefused) {
			t.Errorf("%s: %v", what, err)
		}
	}
	r.Nonce = nonce[1]
	got, err := overlay(r)
	if err != nil || !strings.Contains(string(got), "MUNGE-KEY-BYTES") || !strings.Contains(string(got), "booted?nonce="+nonce[1]) {
		t.Fatalf("the machine's overlay: %v", err)
	}
	if _, err := overlay(r); !errors.Is(err, pxe.ErrRefused) {
		t.Errorf("second overlay in one boot: %v", err)
	}
	if a := sink.of(events.SpoofAlarm); len(a) != 1 || a[0].Attrs["what"] != "overlay" {
		t.Errorf("alarm steps %+v", a)
	}
	// The callback and the agent's facts: the same nonce, each once.
	if err := b.Callback(ctx, pxe.ScriptRequest{MAC: testMAC, Source: strangerIP, Nonce: nonce[1]}); !errors.Is(err, pxe.ErrRefused) {
		t.Errorf("stranger's callback: %v", err)
	}
	if err := b.Callback(ctx, pxe.ScriptRequest{MAC: testMAC, Source: machineIP, Nonce: nonce[1]}); err != nil {
		t.Errorf("machine's callback: %v", err)
	}
	if err := b.Callback(ctx, pxe.ScriptRequest{MAC: testMAC, Source: machineIP, Nonce: nonce[1]}); !errors.Is(err, pxe.ErrRefused) {
		t.Errorf("second callback: %v", err)
	}
	if name, err := b.BootProof(testMAC, nonce[1], machineIP); err != nil || name != "m" {
		t.Errorf("facts with the boot's nonce: %q %v", name, err)
	}
	if _, err := b.BootProof(testMAC, nonce[1], machineIP); err == nil {
		t.Error("facts twice with one nonce")
	}
	if _, err := b.BootProof("52:54:00:00:00:99", nonce[1], machineIP); err == nil {
		t.Error("facts for an unknown MAC")
	}
}

// Unknown MACs and the default profile never get secrets: a default that
// needs one is an error that says so, the same for every MAC.
func TestDefaultProfileNeverGetsSecrets(t *testing.T) {
	b, store, ss, _ := newTestBooter(t, nil)
	ss.SetSecret("join-token", "tok-123")
	bc := config.Default().Boot
	bc.DefaultProfile = "secretive"
	b.SetBoot(bc)
	pxeStart(b)
	rep, err := b.Script(context.Background(), machineReq(""))
	if err == nil || strings.Contains(string(rep.Body), "tok-123") || !strings.Contains(err.Error(), "only to machines in the inventory") {
		t.Errorf("unknown MAC on a secret default: %v\n%s", err, rep.Body)
	}
	// A known machine without a profile boots the default: no secret
	// either, in its own boot.
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}})
	pxeStart(b)
	if rep, err := b.Script(context.Background(), machineReq("")); err == nil || strings.Contains(string(rep.Body), "tok-123") {
		t.Errorf("a machine on the default profile got its secret: %v\n%s", err, rep.Body)
	}
	// Assigned that same profile, it does.
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "secretive"})
	pxeStart(b)
	if rep, err := b.Script(context.Background(), machineReq("")); err != nil || !strings.Contains(string(rep.Body), "tok-123") {
		t.Errorf("a machine assigned the profile: %v\n%s", err, rep.Body)
	}
}

// A one-shot Slurm boot is used up by its kernel and initrd, before iPXE
// fetches the overlay: the overlay its script granted is still served.
func TestOverlayAfterTheOneShotIsUsedUp(t *testing.T) {
	b, store, ss, _ := newTestBooter(t, nil)
	ss.SetSecret("munge-key", "MUNGE-KEY-BYTES")
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "slurm", Once: &inventory.Once{Then: "local"},
		Params: map[string]string{"slurm_controller": "192.0.2.2", "kernel": "vmlinuz", "base_image": "base.img"}})
	body, _ := script(t, b, "")
	nonce := regexp.MustCompile(`overlay\.cpio\?profile=slurm&nonce=(\S+)`).FindStringSubmatch(body)
	if nonce == nil {
		t.Fatalf("no overlay nonce:\n%s", body)
	}
	b.Report(assetStep("vmlinuz"))
	b.Report(assetStep("base.img"))
	if m, _ := store.Machine("m"); m.Profile != "local" {
		t.Fatalf("the one-shot was not used up by kernel and initrd: %+v", m)
	}
	got, _, err := b.Overlay(context.Background(), pxe.ScriptRequest{MAC: testMAC, Source: machineIP, Profile: "slurm", Nonce: nonce[1]})
	if err != nil || !strings.Contains(string(got), "MUNGE-KEY-BYTES") {
		t.Fatalf("the overlay after the one-shot was used up: %v", err)
	}
}

// Steps anyone can cause are stored within a budget per MAC: once per kind
// every 10 s, 30 an hour.
func TestNotesAreBudgeted(t *testing.T) {
	b, _, _, _ := newTestBooter(t, nil)
	stored := 0
	for i := range 50 {
		if b.note(testMAC, "script", fmt.Sprint("reason-", i)) {
			stored++
		}
	}
	if stored != notesPerHour {
		t.Errorf("%d of 50 kinds stored in an hour, want %d", stored, notesPerHour)
	}
	if !b.note("52:54:00:00:00:07", "script", "reason-0") || b.note("52:54:00:00:00:07", "script", "reason-0") {
		t.Error("another MAC's budget is not its own, or a kind was stored twice within 10 s")
	}
	// Strangers' refusals have a budget of their own: spending it leaves
	// room for the machine's own refusals and for alarms.
	for i := range 50 {
		b.note("52:54:00:00:00:08", fmt.Sprint("what-", i), bootguard.ReasonSource)
	}
	if !b.note("52:54:00:00:00:08", "overlay", bootguard.ReasonNonce) || !b.note("52:54:00:00:00:08", "script", bootguard.ReasonAgain) {
		t.Error("strangers' refusals used up the budget of the machine's own refusals or of alarms")
	}
}

// With an asset key, a machine's secrets and nonce go only to a boot that
// reports its SMBIOS asset tag: a host with its MAC, its address and a
// boot of its own still gets nothing without it.
func TestAssetKey(t *testing.T) {
	b, store, ss, sink := newTestBooter(t, nil)
	ss.SetSecret("join-token", "tok-123")
	ss.SetSecret("m-asset", "CZJ3210ABC\n")
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "secretive", AssetKeySecret: "m-asset"})
	ctx := context.Background()
	for _, asset := range []string{"", "CZJ3210ABD", "czj3210abc"} {
		pxeStart(b)
		r := machineReq("")
		r.Facts = map[string]string{"asset": asset}
		rep, err := b.Script(ctx, r)
		if err != nil || strings.Contains(string(rep.Body), "tok-123") || rep.Profile != "menu" {
			t.Errorf("asset tag %q: %v %s\n%s", asset, err, rep.Profile, rep.Body)
		}
	}
	if got := sink.of(events.SecretRefused); len(got) != 1 || got[0].Attrs["reason"] != bootguard.ReasonAssetKey {
		t.Errorf("refusal steps %+v", got)
	}
	pxeStart(b)
	r := machineReq("")
	r.Facts = map[string]string{"asset": "CZJ3210ABC"}
	if rep, err := b.Script(ctx, r); err != nil || !strings.Contains(string(rep.Body), "token=tok-123") {
		t.Errorf("the machine's own asset tag: %v\n%s", err, rep.Body)
	}
	for _, ev := range sink.evs {
		if strings.Contains(ev.Details(), "CZJ3210ABC") {
			t.Errorf("a step holds the asset key: %+v", ev)
		}
	}
	// A profile whose script holds no secret (Slurm: the munge key is in
	// the overlay): without the tag the script carries no nonce.
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "slurm", AssetKeySecret: "m-asset",
		Params: map[string]string{"slurm_controller": "192.0.2.2"}})
	pxeStart(b)
	r.Facts = map[string]string{"asset": "guess"}
	if rep, err := b.Script(ctx, r); err != nil || strings.Contains(string(rep.Body), "nonce=") || rep.RecordFacts {
		t.Errorf("Slurm script without the asset tag: %v\n%s", err, rep.Body)
	}
}

// A model bound to BIOS (a BL460c Gen8 has no UEFI) binds its machines as
// their own firmware setting would: a UEFI PXE request goes unanswered, so
// the firmware falls through to legacy PXE; the machine's own setting wins.
func TestModelFirmwareBindsTheDHCPDecision(t *testing.T) {
	b, store, _, _ := newTestBooter(t, nil)
	b.models = func() []audit.Model { return audit.DefaultModels() }
	b.files = map[string]string{"undionly.kpxe": "x", "snponly.efi": "x"}
	m := inventory.Machine{Name: "BLD-006", MACs: []string{testMAC}, Profile: "linux", Params: map[string]string{"kernel": "k"}}
	m.Vendor, m.Model = "HP", "ProLiant BL460c Gen8"
	store.PutMachine(m)
	uefi := boot.Request{MAC: testMAC, Class: "PXEClient:Arch:00007:UNDI:003016", Arch: boot.ArchUEFIx64, HasArch: true, BaseURL: "http://192.0.2.2:8080"}
	bios := boot.Request{MAC: testMAC, Class: "PXEClient:Arch:00000:UNDI:002001", HasArch: true, BaseURL: "http://192.0.2.2:8080"}
	if d := b.DecideDHCP(context.Background(), uefi); !d.Ignore || !strings.Contains(d.Reason, "forced to BIOS") {
		t.Errorf("a Gen8's UEFI PXE request: %+v", d)
	}
	if d := b.DecideDHCP(context.Background(), bios); d.Ignore || d.BootFile != "undionly.kpxe" {
		t.Errorf("a Gen8's BIOS PXE request: %+v", d)
	}
	m.Firmware = inventory.FirmwareUEFI
	store.PutMachine(m)
	if d := b.DecideDHCP(context.Background(), uefi); d.Ignore {
		t.Errorf("the machine's own uefi setting did not win: %+v", d)
	}
}
