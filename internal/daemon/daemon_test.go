package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/certs"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/pxe/pxetest"
	"github.com/provisiond/provisiond/profiles"
)

// testDaemon is a daemon run by startDaemon.
type testDaemon struct {
	boot, control, fingerprint, data string
	stop                             func() error
}

// client is an API client of the daemon's control plane with token,
// pinning its certificate.
func (d testDaemon) client(token string) *api.Client {
	return &api.Client{Server: d.control, Token: token, Fingerprint: d.fingerprint}
}

// startDaemon runs the daemon with its two planes on loopback ports,
// ProxyDHCP on loopback and no TFTP.
func startDaemon(t *testing.T, mods ...func(*config.Config)) testDaemon {
	t.Helper()
	data := t.TempDir()
	var base string
	assets := filepath.Join(data, "assets")
	os.MkdirAll(filepath.Join(assets, "debian"), 0o755)
	kernel := make([]byte, 100_000)
	for i := range kernel {
		kernel[i] = byte(i)
	}
	os.WriteFile(filepath.Join(assets, "debian", "vmlinuz"), kernel, 0o644)
	os.WriteFile(filepath.Join(t.TempDir(), "outside"), []byte("secret"), 0o644)
	cfg := config.Default()
	cfg.DataDir = data
	pxetest.Loopback(t, &cfg)
	for _, m := range mods {
		m(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, cfg, Options{Builtin: profiles.FS, Version: "test", Log: slog.New(slog.DiscardHandler),
			Ready: func(a Addrs) { ready <- a }})
	}()
	var addrs Addrs
	select {
	case addrs = <-ready:
		base = "http://" + addrs.Boot
	case err := <-errc:
		t.Fatalf("daemon did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not start within 10s")
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(15 * time.Second):
			return fmt.Errorf("daemon did not stop within 15s")
		}
	}
	t.Cleanup(func() { stop() })
	return testDaemon{boot: base, control: "https://" + addrs.Control, fingerprint: addrs.Fingerprint, data: data, stop: stop}
}

// romLast is when romDHCP last played a ROM, by daemon and MAC.
var (
	romMu   sync.Mutex
	romLast = map[string]time.Time{}
)

// callbackRE finds the callback URL and its nonce in a script.
var callbackRE = regexp.MustCompile(`provisiond\.callback=(\S+\?nonce=(\S+))`)

// romDHCP plays mac's PXE ROM against the daemon's ProxyDHCP on
// loopback: the machine's boot starts. A real machine's next boot comes
// seconds after its last at the soonest; ProxyDHCP takes the same answer
// within a second for a retransmission (not a step), so a boot played
// again waits that second out.
func romDHCP(t *testing.T, proxyPort int, mac string) {
	t.Helper()
	key := fmt.Sprint(proxyPort, mac)
	romMu.Lock()
	if last, ok := romLast[key]; ok && time.Since(last) < 1100*time.Millisecond {
		time.Sleep(1100*time.Millisecond - time.Since(last))
	}
	romLast[key] = time.Now()
	romMu.Unlock()
	if err := pxetest.Request(proxyPort, mac); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestDaemonHTTPAndAPI(t *testing.T) {
	var proxyPort int
	d := startDaemon(t, func(c *config.Config) { proxyPort = c.DHCP.ProxyPort })
	base, data, stop := d.boot, d.data, d.stop
	ctx := context.Background()
	tokenRaw, err := os.ReadFile(filepath.Join(data, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(data, TokenFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", st.Mode().Perm())
	}
	anon := d.client("")
	c := d.client(strings.TrimSpace(string(tokenRaw)))

	m := inventory.Machine{Name: "BLD-006", MACs: []string{"52:54:00:00:00:06"}, Profile: "linux", KernelArgs: "e2e=1",
		Params: map[string]string{"kernel": "debian/vmlinuz"}}
	if _, err := anon.CreateMachine(ctx, m); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("create without token: %v", err)
	}
	if _, err := (d.client("wrong")).CreateMachine(ctx, m); err == nil {
		t.Fatal("create with a wrong token succeeded")
	}
	if _, err := c.CreateMachine(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateMachine(ctx, m); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second create: %v", err)
	}
	bad := m
	bad.Name, bad.MACs, bad.Profile = "BLD-007", []string{"52:54:00:00:00:07"}, "nonexistent"
	if _, err := c.CreateMachine(ctx, bad); err == nil || !strings.Contains(err.Error(), "profile nonexistent does not exist") {
		t.Fatalf("unknown profile: %v", err)
	}
	if ms, err := anon.Machines(ctx); err != nil || len(ms) != 1 {
		t.Fatalf("list: %v %v", ms, err)
	}

	// Rendering through the API matches what the machine gets.
	script, err := c.Script(ctx, "BLD-006", "", false)
	if err != nil || !strings.Contains(string(script), "/assets/debian/vmlinuz?mac=52%3A54%3A00%3A00%3A00%3A06") || !strings.Contains(string(script), "e2e=1") {
		t.Fatalf("render: %v\n%s", err, script)
	}

	// The boot path over HTTP.
	resp, body := get(t, base+"/boot/52-54-00-00-00-06.ipxe", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "chain --autofree "+base+"/boot/52:54:00:00:00:06/script?manufacturer=${manufacturer:uristring}") {
		t.Fatalf("first stage: %d\n%s", resp.StatusCode, body)
	}
	// Outside a boot the script is served, but what it reports is not
	// recorded and it carries no nonce.
	resp, body = get(t, base+"/boot/52:54:00:00:00:06/script?manufacturer=Forged&platform=efi", nil)
	if resp.StatusCode != 200 || strings.Contains(body, "nonce=") {
		t.Fatalf("script outside a boot: %d\n%s", resp.StatusCode, body)
	}
	// In the machine's boot (its PXE DHCP first) the callback URL carries
	// the boot's nonce.
	romDHCP(t, proxyPort, "52:54:00:00:00:06")
	resp, body = get(t, base+"/boot/52:54:00:00:00:06/script?manufacturer=HP&product=ProLiant%20BL460c%20Gen8&uuid=1234&platform=pcbios", nil)
	callback := callbackRE.FindStringSubmatch(body)
	if callback == nil {
		t.Fatalf("script without a callback nonce:\n%s", body)
	}
	// The API renders with the advertised port; the machine with the one
	// it reached (here a random test port): otherwise they are the same.
	if resp.StatusCode != 200 || strings.Replace(body, "?nonce="+callback[2], "", 1) != strings.ReplaceAll(string(script), "http://127.0.0.1:8080", base) {
		t.Fatalf("script: %d\n%s\nwant\n%s", resp.StatusCode, body, script)
	}
	resp, body = get(t, base+"/boot/52:54:00:00:00:99/script?platform=efi", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "menu provisiond: discovered-525400000099") {
		t.Fatalf("unknown MAC script: %d\n%s", resp.StatusCode, body)
	}
	resp, _ = get(t, base+"/boot/not-a-mac/script", nil)
	if resp.StatusCode != 400 {
		t.Errorf("bad MAC: %d", resp.StatusCode)
	}

	// Assets: full, ranged, traversal.
	resp, body = get(t, base+"/assets/debian/vmlinuz?mac=52:54:00:00:00:06", nil)
	if resp.StatusCode != 200 || len(body) != 100_000 || resp.ContentLength != 100_000 {
		t.Fatalf("asset: %d len %d content-length %d", resp.StatusCode, len(body), resp.ContentLength)
	}
	resp, body = get(t, base+"/assets/debian/vmlinuz?mac=52:54:00:00:00:06", map[string]string{"Range": "bytes=1000-1009"})
	if resp.StatusCode != 206 || resp.ContentLength != 10 || body[0] != byte(1000%256) {
		t.Fatalf("range: %d len %d", resp.StatusCode, resp.ContentLength)
	}
	for _, p := range []string{"/assets/../provisiond.db", "/assets/%2e%2e/provisiond.db", "/assets/..%2fprovisiond.db", "/assets/debian%5c..%5c..%5cprovisiond.db", "/assets//etc/passwd", "/assets/debian/vmlinuz%00"} {
		req, _ := http.NewRequest(http.MethodGet, base+"/x", nil)
		req.URL.RawPath, req.URL.Path = "", ""
		req.URL.Opaque = p
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("%s served %d bytes", p, len(b))
		}
	}

	// Callback: without the nonce it changes nothing; with it, once.
	post := func(u string) int {
		resp, err := http.Post(u, "application/x-www-form-urlencoded", strings.NewReader("status=up"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(base + "/boot/52:54:00:00:00:06/booted"); code != http.StatusNotFound {
		t.Errorf("callback without the nonce: %d, want 404", code)
	}
	if code := post(callback[1]); code != 200 {
		t.Fatalf("callback: %d", code)
	}
	if code := post(callback[1]); code != http.StatusNotFound {
		t.Errorf("callback with a used nonce: %d, want 404", code)
	}

	// The timeline holds script, asset (x2) and callback, with the facts.
	var evs []events.Event
	for i := 0; i < 50; i++ {
		evs, _ = c.Events(ctx, "BLD-006", 0)
		if len(evs) >= 10 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	lastSeq := evs[len(evs)-1].Seq
	sort.Strings(types)
	// Two scripts (outside and in the boot), the boot's DHCP, the refused
	// callback without a nonce and the alarm for the reused one.
	if strings.Join(types, ",") != "boot.callback,boot.done,boot.secret_refused,boot.spoof_alarm,dhcp.offer,http.asset,http.asset,http.script,http.script,machine.changed" {
		t.Errorf("timeline %v", types)
	}
	got, _ := c.Machine(ctx, "BLD-006")
	if got.Facts == nil || got.Facts.Product != "ProLiant BL460c Gen8" || got.Facts.Platform != "pcbios" {
		t.Errorf("facts %+v", got.Facts)
	}
	if d, err := c.Machine(ctx, "discovered-525400000099"); err != nil || !d.Discovered || d.Facts.Platform != "efi" {
		t.Errorf("discovered machine: %+v %v", d, err)
	}

	// Follow streams stored events then live ones.
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
	defer fcancel()
	seen := make(chan events.Event, 10)
	go c.Follow(fctx, "BLD-006", 100, func(ev events.Event) error { seen <- ev; return nil })
	for i := 0; i < 5; i++ {
		<-seen
	}
	romDHCP(t, proxyPort, "52:54:00:00:00:06")
	_, body = get(t, base+"/boot/52:54:00:00:00:06/script", nil)
	if callback = callbackRE.FindStringSubmatch(body); callback == nil {
		t.Fatalf("second boot's script without a callback nonce:\n%s", body)
	}
	post(callback[1])
	for live := false; !live; {
		select {
		case ev := <-seen:
			live = ev.Type == events.Booted && ev.Seq > lastSeq
		case <-fctx.Done():
			t.Fatal("no live callback event while following")
		}
	}

	// A clean stop closes the database: it opens again at once.
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	s, err := inventory.Open(filepath.Join(data, DBFile), inventory.Options{})
	if err != nil {
		t.Fatalf("database after stop: %v", err)
	}
	defer s.Close()
	if _, err := s.Machine("BLD-006"); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(evs)
	if strings.Contains(string(raw), string(tokenRaw)) {
		t.Error("the API token appears in the timeline")
	}
}

// Hardware facts change what audit and plan believe: they need the API
// token, or the proof of the machine's own boot (its nonce, once).
func TestFactsNeedTokenOrBootProof(t *testing.T) {
	var proxyPort int
	d := startDaemon(t, func(c *config.Config) { proxyPort = c.DHCP.ProxyPort })
	base, data := d.boot, d.data
	tok, _ := os.ReadFile(filepath.Join(data, TokenFile))
	ctx := context.Background()
	c := d.client(strings.TrimSpace(string(tok)))
	anon := d.client("")
	mac := "52:54:00:00:00:06"
	if _, err := c.CreateMachine(ctx, inventory.Machine{Name: "BLD-006", MACs: []string{mac}, Profile: "linux",
		Params: map[string]string{"kernel": "debian/vmlinuz"}}); err != nil {
		t.Fatal(err)
	}
	forged := api.FactsReport{Machine: "BLD-006", Host: "intruder", Hardware: inventory.Hardware{Vendor: "Forged", Model: "Forged", Serial: "FORGED"}}
	if _, err := anon.ReportFacts(ctx, forged); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("facts without token or proof: %v", err)
	}
	romDHCP(t, proxyPort, mac)
	_, body := get(t, base+"/boot/"+mac+"/script", nil)
	cb := callbackRE.FindStringSubmatch(body)
	if cb == nil {
		t.Fatalf("no nonce in the script:\n%s", body)
	}
	forged.BootMAC, forged.BootNonce = mac, "not-the-nonce"
	if _, err := anon.ReportFacts(ctx, forged); err == nil {
		t.Error("facts with a wrong nonce were taken")
	}
	rep := api.FactsReport{Host: "bld-006", Hardware: inventory.Hardware{Vendor: "HP", Model: "ProLiant BL460c Gen8"}, BootMAC: mac, BootNonce: cb[2]}
	res, err := anon.ReportFacts(ctx, rep)
	if err != nil || res.Machine != "BLD-006" {
		t.Fatalf("facts with the boot's nonce: %+v %v", res, err)
	}
	if _, err := anon.ReportFacts(ctx, rep); err == nil {
		t.Error("the nonce was taken twice for facts")
	}
	if _, err := c.ReportFacts(ctx, api.FactsReport{Machine: "BLD-006", Host: "operator", Hardware: inventory.Hardware{Vendor: "HP"}}); err != nil {
		t.Errorf("facts with the token: %v", err)
	}
	m, _ := c.Machine(ctx, "BLD-006")
	if m.Observed == nil || m.Observed.Vendor == "Forged" || m.Observed.Serial == "FORGED" {
		t.Errorf("observed %+v", m.Observed)
	}
}

// The boot plane serves only what firmware fetches; the API, dashboard and
// metrics are on the control plane, over TLS with the daemon's own
// certificate, to this host's names only, and "local" reads only for
// clients that came straight from loopback.
func TestTwoPlanes(t *testing.T) {
	d := startDaemon(t)
	for _, p := range []string{"/api/v1/machines", "/api/v1/status", "/metrics", "/ui/", "/debug/pprof/"} {
		if resp, _ := get(t, d.boot+p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("boot plane %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, _ := get(t, d.boot+"/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("boot plane /healthz: %d", resp.StatusCode)
	}
	// Plain HTTP to the control plane gets nowhere.
	if resp, err := http.Get(strings.Replace(d.control, "https://", "http://", 1) + "/api/v1/machines"); err == nil && resp.StatusCode == 200 {
		t.Error("the control plane answered plain HTTP")
	}
	if _, err := d.client("").Machines(context.Background()); err != nil {
		t.Fatalf("pinned client: %v", err)
	}
	// Another certificate's pin is refused, and the error says how to re-pin.
	wrong := d.client("")
	wrong.Fingerprint = "sha256:" + strings.Repeat("0", 64)
	if _, err := wrong.Machines(context.Background()); err == nil || !strings.Contains(err.Error(), "provisiond trust --server") {
		t.Errorf("wrong pin: %v", err)
	}
	if st, err := os.Stat(filepath.Join(d.data, "tls.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("tls.key: %v %v", st, err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: certs.ClientConfig(d.fingerprint, nil)}}
	do := func(host string, hdr map[string]string) int {
		req, _ := http.NewRequest(http.MethodGet, d.control+"/api/v1/machines", nil)
		req.Host = host
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	u, _ := url.Parse(d.control)
	if code := do(u.Host, nil); code != 200 {
		t.Errorf("Host %s: %d", u.Host, code)
	}
	if code := do("localhost:"+u.Port(), nil); code != 200 {
		t.Errorf("Host localhost: %d", code)
	}
	// A name the attacker's DNS points at this host (rebinding).
	if code := do("evil.example.com:"+u.Port(), nil); code != http.StatusMisdirectedRequest {
		t.Errorf("Host evil.example.com: %d, want 421", code)
	}
	// A reverse proxy on this host forwards everyone from loopback.
	if code := do(u.Host, map[string]string{"X-Forwarded-For": "192.0.2.99"}); code != http.StatusUnauthorized {
		t.Errorf("forwarded read under read_access local: %d, want 401", code)
	}
}
