package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

func newTestBooter(t *testing.T, extra Extra) (*Booter, *inventory.Store, *SecretStore, *recSink) {
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
	ss := NewSecretStore(store, box)
	sink := &recSink{}
	var extras []Extra
	if extra != nil {
		extras = []Extra{extra}
	}
	b := NewBooter(BooterOptions{Store: store, Profiles: set, Boot: config.Default().Boot, Secrets: ss, Extras: extras, Events: sink, Log: slog.New(slog.DiscardHandler)})
	return b, store, ss, sink
}

const testMAC = "52:54:00:00:00:06"

func script(t *testing.T, b *Booter, profile string) (string, string) {
	t.Helper()
	body, name, err := b.Script(context.Background(), pxe.ScriptRequest{MAC: testMAC, BaseURL: "http://192.0.2.2:8080", Profile: profile})
	if err != nil {
		t.Fatal(err)
	}
	// The HTTP server reports the script it served, as in the daemon.
	b.Observe(events.Event{Type: events.Script, MAC: testMAC, Attrs: map[string]string{"profile": name}})
	return string(body), name
}

func assetEvent(file, size string) events.Event {
	return events.Event{Type: events.Asset, MAC: testMAC, Attrs: map[string]string{"file": file, "status": "200", "bytes": size, "size": size}}
}

func TestOneShotConsumedWhenAssetsServed(t *testing.T) {
	b, store, _, sink := newTestBooter(t, nil)
	store.PutMachine(inventory.Machine{Name: "BLD-006", MACs: []string{testMAC}, Profile: "linux", Once: &inventory.Once{Then: "local"},
		Params: map[string]string{"kernel": "vmlinuz", "initrd": "initrd.img"}})
	if _, name := script(t, b, ""); name != "linux" {
		t.Fatalf("first boot got %s", name)
	}
	// A partial download does not count; the kernel alone does not either.
	b.Observe(events.Event{Type: events.Asset, MAC: testMAC, Attrs: map[string]string{"file": "vmlinuz", "status": "206", "bytes": "10", "size": "100"}})
	b.Observe(assetEvent("vmlinuz", "100"))
	if m, _ := store.Machine("BLD-006"); m.Profile != "linux" || m.Once == nil {
		t.Fatalf("consumed too early: %+v", m)
	}
	b.Observe(assetEvent("initrd.img", "50"))
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
	b.Observe(assetEvent("k", "5"))
	if m, _ := store.Machine("m"); m.Profile != "callbackonly" {
		t.Fatalf("callback profile consumed by assets: %+v", m)
	}
	b.Observe(events.Event{Type: events.Booted, MAC: testMAC})
	if m, _ := store.Machine("m"); m.Profile != "local" {
		t.Fatalf("callback profile not consumed by the callback: %+v", m)
	}
}

func TestPersistentProfileStays(t *testing.T) {
	b, store, _, sink := newTestBooter(t, nil)
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "linux", Params: map[string]string{"kernel": "vmlinuz"}})
	script(t, b, "")
	b.Observe(assetEvent("vmlinuz", "100"))
	b.Observe(events.Event{Type: events.Booted, MAC: testMAC})
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
	// ...but an unknown machine cannot pick profiles.
	store.DeleteMachine("m")
	if _, _, err := b.Script(context.Background(), pxe.ScriptRequest{MAC: testMAC, BaseURL: "http://x:1", Profile: "secretive"}); err == nil {
		t.Error("an unknown machine chose a profile")
	}
}

func TestSecretsRedactedUnlessRevealed(t *testing.T) {
	b, store, ss, _ := newTestBooter(t, nil)
	m, _ := store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "secretive"})
	if _, _, err := b.Script(context.Background(), pxe.ScriptRequest{MAC: testMAC, BaseURL: "http://x:1"}); err == nil || !strings.Contains(err.Error(), "provisiond secret set join-token") {
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
	if _, _, err := b.Script(context.Background(), pxe.ScriptRequest{MAC: testMAC, BaseURL: "http://x:1"}); err == nil || strings.Contains(err.Error(), "bad") {
		t.Errorf("unsafe secret: %v (the error must not quote the value)", err)
	}
}

func TestExtrasAndWaiting(t *testing.T) {
	b, store, _, _ := newTestBooter(t, fakeExtra{})
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "needsextra"})
	if body, _ := script(t, b, ""); !strings.Contains(body, "echo from-extra") {
		t.Errorf("extra not rendered:\n%s", body)
	}
	b2, store2, _, _ := newTestBooter(t, fakeExtra{err: &NotReadyError{What: "fetching Talos v1.9.0", RetryAfter: 15 * time.Second}})
	store2.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "needsextra"})
	body, _ := script(t, b2, "")
	if !strings.Contains(body, "fetching Talos v1.9.0") || !strings.Contains(body, "sleep 15") || !strings.Contains(body, "chain --replace http://192.0.2.2:8080/boot/52:54:00:00:00:06.ipxe") {
		t.Errorf("wait script:\n%s", body)
	}
	b3, store3, _, _ := newTestBooter(t, fakeExtra{err: errors.New("factory unreachable")})
	store3.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "needsextra"})
	if _, _, err := b3.Script(context.Background(), pxe.ScriptRequest{MAC: testMAC, BaseURL: "http://x:1"}); err == nil {
		t.Error("a provider error was not reported")
	}
}
