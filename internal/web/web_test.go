package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/daemon/daemontest"
	"github.com/provisiond/provisiond/internal/enclosure/oa/oatest"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/inventory/inventorytest"
)

// Secret values that must never reach a page, a stream or a script shown
// without reveal.
const (
	bmcPassword = "bmc-Pass-90210"
	mungeKey    = "munge-KEY-31337-xyz"
)

// homelab starts a daemon with the example homelab imported, BLD-006 given
// a MAC, a BMC whose password is a stored secret, and the slurm profile's
// munge key stored.
func homelab(t *testing.T, adjust func(*config.Config, *daemon.Options)) (*daemontest.Daemon, *api.Client) {
	t.Helper()
	d := daemontest.Start(t, adjust)
	d.WriteAssets(t)
	c := d.ImportHomelab(t)
	ctx := context.Background()
	m, err := c.Machine(ctx, "BLD-006")
	if err != nil {
		t.Fatal(err)
	}
	m.MACs = []string{"52:54:00:00:06:01"}
	m.Params = map[string]string{"kernel": "vmlinuz", "initrd": "initrd.img", "slurm_controller": "192.0.2.1"}
	// 127.0.0.1:9 (discard): no BMC answers there, and nothing leaves the host.
	m.BMC = &inventory.BMC{Address: "127.0.0.1", Port: 9, Username: "admin", PasswordSecret: "bld-006-bmc"}
	if _, err := c.UpdateMachine(ctx, *m); err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{"bld-006-bmc": bmcPassword, "munge-key": mungeKey} {
		if err := c.SetSecret(ctx, name, value); err != nil {
			t.Fatal(err)
		}
	}
	return d, c
}

// browser is an HTTP client with a cookie jar that sends what a browser
// sends on same-origin requests.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
	// site is the Sec-Fetch-Site header sent with every request.
	site string
}

func newBrowser(t *testing.T, d *daemontest.Daemon) *browser {
	jar, _ := cookiejar.New(nil)
	c := d.HTTP()
	c.Jar, c.Timeout = jar, 10*time.Second
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: t, base: d.URL, site: "same-origin", c: c}
}

func (b *browser) do(method, path, contentType, body string) (int, string, http.Header) {
	b.t.Helper()
	req, _ := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Sec-Fetch-Site", b.site)
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), resp.Header
}

func (b *browser) get(path string) (int, string) {
	code, body, _ := b.do("GET", path, "", "")
	return code, body
}

func (b *browser) signIn(token string) int {
	code, _, _ := b.do("POST", "/ui/login", "application/x-www-form-urlencoded", url.Values{"token": {token}, "next": {"/ui/"}}.Encode())
	return code
}

func (b *browser) assign(profile string) (int, string) {
	code, body, _ := b.do("POST", "/api/v1/machines/BLD-006/assign", "application/json", `{"profile":"`+profile+`"}`)
	return code, body
}

// The pages render from the example homelab: ASGARD's 16 bays with their
// blades, a blade's page with its hardware, audit and plan tables.
func TestPagesRender(t *testing.T) {
	d, c := homelab(t, nil)
	b := newBrowser(t, d)
	code, _, h := b.do("GET", "/", "", "")
	if code != http.StatusFound || h.Get("Location") != "/ui/" {
		t.Errorf("GET /: %d to %q, want a redirect to /ui/", code, h.Get("Location"))
	}
	code, page := b.get("/ui/")
	if code != 200 {
		t.Fatalf("GET /ui/: %d\n%s", code, page)
	}
	asgard := page[strings.Index(page, `id="enclosure-ASGARD"`):]
	asgard = asgard[:strings.Index(asgard, "</section>")]
	for i := 1; i <= 16; i++ {
		name := fmt.Sprintf("BLD-%03d", i)
		if !strings.Contains(asgard, `data-machine="`+name+`"`) {
			t.Errorf("ASGARD's front lacks %s", name)
		}
	}
	if n := strings.Count(asgard, `class="bay `); n != 16 {
		t.Errorf("ASGARD's front has %d bays, want 16", n)
	}
	// A list row: name and tag, where, vendor and model, role, profile.
	oden := row(page, "ODEN")
	for _, want := range []string{`<a href="/ui/machines/ODEN">ODEN</a> <span class="sub">SYS-005</span>`, "<td>IBM System x3550 M3</td>", "<td>talos</td>"} {
		if !strings.Contains(oden, want) {
			t.Errorf("ODEN's row lacks %q:\n%s", want, oden)
		}
	}
	if tyr := row(page, "TYR"); !strings.Contains(tyr, "<td>default</td>") || !strings.Contains(tyr, "<td>—</td>") {
		t.Errorf("TYR's row (no profile, no model) does not say default and —:\n%s", tyr)
	}
	if _, err := c.Assign(context.Background(), "TYR", api.AssignRequest{Profile: "shell", Once: true}); err != nil {
		t.Fatal(err)
	}
	if _, page = b.get("/ui/"); !strings.Contains(row(page, "TYR"), `<td>shell <span class="badge">once</span></td>`) {
		t.Errorf("TYR's row after a one-shot assignment:\n%s", row(page, "TYR"))
	}
	code, page = b.get("/ui/?role=talos")
	if code != 200 || !strings.Contains(page, "2 of 21 match") || strings.Contains(page, `<tr class="state-idle" data-machine="TYR"`) {
		t.Errorf("filter by role talos: %d, page does not say 2 of 21 or lists TYR", code)
	}
	code, page = b.get("/ui/machines/BLD-006")
	for _, want := range []string{"ProLiant BL460c Gen8", "ASGARD bay 6", "52:54:00:00:06:01", "Smart Array P220i", "from secret bld-006-bmc", "0 of 16 slots",
		`id="firmware">bios <span class="sub">`, `boots legacy BIOS only"> UEFI`} {
		if !strings.Contains(page, want) {
			t.Errorf("BLD-006's page lacks %q", want)
		}
	}
	if code != 200 {
		t.Errorf("GET /ui/machines/BLD-006: %d", code)
	}
	if code, _ := b.get("/ui/machines/NOPE"); code != http.StatusNotFound {
		t.Errorf("an unknown machine's page: %d, want 404", code)
	}
	code, page = b.get("/ui/audit")
	if code != 200 || !strings.Contains(page, `id="findings"`) || !strings.Contains(page, "21 machines:") {
		t.Errorf("audit page: %d\n%s", code, page)
	}
	code, page = b.get("/ui/plan?role=slurm-compute&count=2")
	if code != 200 || !strings.Contains(page, `id="plan"`) || !strings.Contains(page, "<td>control</td><td>32+ GB</td>") {
		t.Errorf("plan page: %d\n%s", code, page)
	}
	if code, page = b.get("/ui/plan?role=nosuch&count=2"); code != http.StatusBadRequest || !strings.Contains(page, "nosuch") {
		t.Errorf("plan for an unknown role: %d, want 400 saying so", code)
	}
	code, _, h = b.do("GET", "/ui/static/dashboard.js", "", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/javascript") {
		t.Errorf("dashboard.js: %d %s", code, h.Get("Content-Type"))
	}
}

// row is the overview list's row of machine name.
func row(page, name string) string {
	i := strings.Index(page, `<tr class="state-`)
	for i >= 0 {
		end := strings.Index(page[i:], "</tr>")
		if end < 0 {
			return ""
		}
		if r := page[i : i+end]; strings.Contains(r, `data-machine="`+name+`"`) {
			return r
		}
		next := strings.Index(page[i+end:], `<tr class="state-`)
		if next < 0 {
			return ""
		}
		i += end + next
	}
	return ""
}

// No action works without the token: not without a session, not with a
// forged or another daemon's session, not from another site with a real
// session. Signed in, the same action works and lands in the timeline.
func TestActionsNeedTheToken(t *testing.T) {
	d, c := homelab(t, func(cfg *config.Config, _ *daemon.Options) { cfg.BMC.Timeout = "1s" })
	b := newBrowser(t, d)
	if code, body := b.assign("linux"); code != http.StatusUnauthorized {
		t.Errorf("assign without signing in: %d %s", code, body)
	}
	for _, path := range []string{"/api/v1/machines/BLD-006/power", "/api/v1/machines/BLD-006/bootdev"} {
		if code, body, _ := b.do("POST", path, "application/json", `{"action":"on","device":"pxe"}`); code != http.StatusUnauthorized {
			t.Errorf("POST %s without signing in: %d %s", path, code, body)
		}
	}
	if code := b.signIn("not-the-token"); code != http.StatusUnauthorized {
		t.Errorf("signing in with a wrong token: %d", code)
	}
	u, _ := url.Parse(d.URL)
	for _, forged := range []string{"garbage", "99999999999.AAAA", strings.Repeat("1", 10) + ".", time.Now().Add(-time.Minute).Format("20060102")} {
		b.c.Jar.SetCookies(u, []*http.Cookie{{Name: api.SessionCookie, Value: forged, Path: "/"}})
		if code, _ := b.assign("linux"); code != http.StatusUnauthorized {
			t.Errorf("assign with forged session %q: %d", forged, code)
		}
	}
	other := &api.Server{Token: "another-daemons-token"}
	cookie, _ := other.SignIn("another-daemons-token", time.Now(), false)
	b.c.Jar.SetCookies(u, []*http.Cookie{cookie})
	if code, _ := b.assign("linux"); code != http.StatusUnauthorized {
		t.Errorf("assign with another daemon's session: %d", code)
	}

	if code := b.signIn(d.Token(t)); code != http.StatusSeeOther {
		t.Fatalf("signing in with the token: %d", code)
	}
	for _, ck := range b.c.Jar.Cookies(u) {
		if strings.Contains(ck.Value, d.Token(t)) {
			t.Error("the session cookie carries the token itself")
		}
	}
	b.site = "cross-site"
	if code, body := b.assign("linux"); code != http.StatusForbidden {
		t.Errorf("assign from another site with a real session: %d %s", code, body)
	}
	b.site = "same-origin"
	if code, body := b.assign("linux"); code != 200 {
		t.Fatalf("assign signed in: %d %s", code, body)
	}
	m, _ := c.Machine(context.Background(), "BLD-006")
	if m.Profile != "linux" || m.Once != nil {
		t.Errorf("after assign: profile %q once %v", m.Profile, m.Once)
	}
	if code, body, _ := b.do("POST", "/api/v1/machines/BLD-006/assign", "application/json", `{"profile":"slurm","once":true}`); code != 200 || !strings.Contains(body, `"then": "local"`) {
		t.Errorf("one-shot assign: %d %s", code, body)
	}
	if code, body, _ := b.do("POST", "/api/v1/machines/BLD-006/assign", "application/json", `{"profile":"nosuch"}`); code != 400 || !strings.Contains(body, "profile nosuch does not exist") {
		t.Errorf("assign of an unknown profile: %d %s", code, body)
	}
	waitStep(t, c, "the one-shot assignment", func(ev events.Event) bool {
		return ev.Type == "machine.changed" && ev.Attrs["once"] == "true"
	})
	// The BMC at 127.0.0.1:9 does not answer: the action fails, says so,
	// and the failure is on the timeline too.
	code, body, _ := b.do("POST", "/api/v1/machines/BLD-006/power", "application/json", `{"action":"on"}`)
	if code < 500 {
		t.Errorf("power on through a BMC that does not answer: %d %s", code, body)
	}
	waitStep(t, c, "the failed power action", func(ev events.Event) bool {
		return ev.Type == "bmc.power" && ev.Attrs["result"] == "error"
	})
	if code, _, h := b.do("POST", "/ui/logout", "", ""); code != http.StatusSeeOther || !strings.Contains(h.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("sign out: %d %q", code, h.Get("Set-Cookie"))
	}
	if code, _ := b.assign("linux"); code != http.StatusUnauthorized {
		t.Errorf("assign after signing out: %d", code)
	}
}

// waitStep waits for BLD-006's newest step to be what want says (the
// timeline is written a moment after the API answers).
func waitStep(t *testing.T, c *api.Client, what string, want func(events.Event) bool) {
	t.Helper()
	var evs []events.Event
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		evs, _ = c.Events(context.Background(), "BLD-006", 1)
		if len(evs) == 1 && want(evs[0]) {
			return
		}
	}
	t.Errorf("%s is not on the timeline: newest step %+v", what, evs)
}

// Under read_access token, a browser that has not signed in is sent to the
// sign-in page, and comes back where it was going.
func TestReadPolicyAsksToSignIn(t *testing.T) {
	d, _ := homelab(t, func(cfg *config.Config, _ *daemon.Options) { cfg.HTTP.ReadAccess = "token" })
	b := newBrowser(t, d)
	code, _, h := b.do("GET", "/ui/machines/BLD-006", "", "")
	if code != http.StatusFound || h.Get("Location") != "/ui/login?next=%2Fui%2Fmachines%2FBLD-006" {
		t.Errorf("reading without a session: %d to %q", code, h.Get("Location"))
	}
	if code, _ := b.get("/ui/events"); code != http.StatusUnauthorized {
		t.Errorf("live steps without a session: %d", code)
	}
	code, _, h = b.do("POST", "/ui/login", "application/x-www-form-urlencoded", url.Values{"token": {d.Token(t)}, "next": {"/ui/machines/BLD-006"}}.Encode())
	if code != http.StatusSeeOther || h.Get("Location") != "/ui/machines/BLD-006" {
		t.Errorf("sign in: %d to %q", code, h.Get("Location"))
	}
	if code, _ := b.get("/ui/machines/BLD-006"); code != 200 {
		t.Errorf("reading signed in: %d", code)
	}
	// The way back stays on this site.
	for _, next := range []string{"https://evil.example/", "//evil.example/ui/", "/api/v1/backup"} {
		_, _, h = b.do("POST", "/ui/login", "application/x-www-form-urlencoded", url.Values{"token": {d.Token(t)}, "next": {next}}.Encode())
		if h.Get("Location") != "/ui/" {
			t.Errorf("sign in with next %q went to %q", next, h.Get("Location"))
		}
	}
}

// A machine's live stream sends each step with the state it leads to; a
// reconnect with Last-Event-ID gets what it missed.
func TestLiveTimeline(t *testing.T) {
	d, c := homelab(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The stream is opened by the machine's asset tag: live steps carry
	// its name, and still reach it.
	m, err := c.Machine(ctx, "BLD-006")
	if err != nil {
		t.Fatal(err)
	}
	m.Tag = "SYS-106"
	if _, err := c.UpdateMachine(ctx, *m); err != nil {
		t.Fatal(err)
	}
	steps := make(chan map[string]any, 16)
	req, _ := http.NewRequestWithContext(ctx, "GET", d.URL+"/ui/machines/SYS-106/events", nil)
	resp, err := d.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m map[string]any
				json.Unmarshal([]byte(data), &m)
				steps <- m
			}
		}
	}()
	if _, err := c.Assign(ctx, "BLD-006", api.AssignRequest{Profile: "linux"}); err != nil {
		t.Fatal(err)
	}
	d.Boot(t, "52:54:00:00:06:01")
	var seen []string
	var lastSeq float64
	for len(seen) == 0 || seen[len(seen)-1] != "boot.done" {
		select {
		case s := <-steps:
			seen = append(seen, s["type"].(string))
			lastSeq = s["seq"].(float64)
			if s["type"] == "http.script" && s["state"] != "booting" {
				t.Errorf("after the script the state is %v, want booting", s["state"])
			}
			if s["type"] == "boot.done" && (s["state"] != "booted" || !strings.HasPrefix(s["state_text"].(string), "booted linux")) {
				t.Errorf("after boot.done: %v %v", s["state"], s["state_text"])
			}
		case <-ctx.Done():
			t.Fatalf("the stream sent %v and then nothing", seen)
		}
	}
	if seen[0] != "machine.changed" || !slices.Contains(seen, "dhcp.offer") || !slices.Contains(seen, "http.script") || !slices.Contains(seen, "http.asset") {
		t.Errorf("steps %v", seen)
	}
	// Reconnecting after the first step replays the rest.
	req, _ = http.NewRequestWithContext(ctx, "GET", d.URL+"/ui/machines/BLD-006/events", nil)
	req.Header.Set("Last-Event-ID", "1")
	resp2, err := d.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	sc := bufio.NewScanner(resp2.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "id: ") && sc.Text() == "id: "+strconv.FormatFloat(lastSeq, 'f', -1, 64) {
			return
		}
	}
	t.Errorf("a reconnect did not replay up to seq %v", lastSeq)
}

// Secrets stay secret: no page, live stream or script preview shows the BMC
// password or the munge key, signed in or not.
func TestNoSecretsOnPages(t *testing.T) {
	d, c := homelab(t, nil)
	ctx := context.Background()
	if _, err := c.Assign(ctx, "BLD-006", api.AssignRequest{Profile: "slurm"}); err != nil {
		t.Fatal(err)
	}
	// The machine fetches its script (the base image it names is not here).
	if resp, err := http.Get(d.BootURL + "/boot/52:54:00:00:06:01/script"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the slurm script: %v %v", err, resp)
	}
	// The stream below replays what is stored: the step first.
	waitStep(t, c, "the script step", func(ev events.Event) bool { return ev.Type == events.Script })
	for _, signedIn := range []bool{false, true} {
		b := newBrowser(t, d)
		if signedIn {
			b.signIn(d.Token(t))
		}
		for _, path := range []string{"/ui/", "/ui/machines/BLD-006", "/ui/audit", "/ui/plan?role=slurm-compute&count=1", "/api/v1/machines/BLD-006/script", "/ui/login"} {
			code, page := b.get(path)
			if code != 200 {
				t.Errorf("GET %s: %d", path, code)
			}
			for _, secret := range []string{bmcPassword, mungeKey, d.Token(t)} {
				if strings.Contains(page, secret) {
					t.Errorf("GET %s (signed in %v) shows a secret", path, signedIn)
				}
			}
		}
	}
	// The live stream replays BLD-006's whole timeline.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", d.URL+"/ui/machines/BLD-006/events?after=0", nil)
	req.Header.Set("Last-Event-ID", "1")
	resp, err := d.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var stream strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != ": provisiond" {
		stream.WriteString(sc.Text() + "\n")
	}
	if !strings.Contains(stream.String(), "http.script") {
		t.Errorf("the replayed stream lacks the script step:\n%s", stream.String())
	}
	for _, secret := range []string{bmcPassword, mungeKey} {
		if strings.Contains(stream.String(), secret) {
			t.Error("the live stream shows a secret")
		}
	}
}

// Signing out ends the session in the daemon: a copy of the cookie kept
// from before (a stolen one, a backup of the browser's profile) is worth
// nothing after it.
func TestSignOutEndsTheSession(t *testing.T) {
	d, _ := homelab(t, nil)
	b := newBrowser(t, d)
	if code := b.signIn(d.Token(t)); code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", code)
	}
	u, _ := url.Parse(d.URL)
	var kept *http.Cookie
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == api.SessionCookie {
			kept = c
		}
	}
	if kept == nil {
		t.Fatal("no session cookie after signing in")
	}
	if code, _ := b.assign("linux"); code != http.StatusOK {
		t.Fatalf("assign signed in: %d", code)
	}
	if code, _, _ := b.do("POST", "/ui/logout", "application/x-www-form-urlencoded", ""); code != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", code)
	}
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: kept.Name, Value: kept.Value, Path: "/"}})
	if code, _ := b.assign("linux"); code != http.StatusUnauthorized {
		t.Errorf("assign with the cookie kept from before signing out: %d, want 401", code)
	}
}

// A blade whose enclosure's OA controls it needs no BMC of its own: its
// page offers power, PXE-and-cycle (through the OA) and the locator LED;
// a rack server without a BMC offers none of them.
func TestBladeThroughTheOA(t *testing.T) {
	d, c := homelab(t, nil)
	ts := oatest.New("ASGARD", "CZ372137H3", "Administrator", "oa-pw",
		&oatest.Blade{Bay: 3, Product: "ProLiant BL460c Gen8", Serial: "CZ3403YLMV", MACs: []string{"9c:b6:54:88:fc:b0"}, On: true})
	ts.Managers = [2]string{"127.0.0.1", ""}
	srv := httptest.NewTLSServer(ts.Handler())
	defer srv.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	doc := []byte("systems:\n  - name: ASGARD\n    kind: enclosure\n    bays: 16\n    blade_control: oa\n" +
		"    bmc: {protocol: oa, address: " + host + ", port: " + port + ", username: Administrator, password_secret: asgard-oa}\n")
	ctx := context.Background()
	if _, err := c.Import(ctx, doc, false, true); err != nil {
		t.Fatal(err)
	}
	if err := c.SetSecret(ctx, "asgard-oa", "oa-pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SyncEnclosure(ctx, "ASGARD", false); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, d)
	if b.signIn(d.Token(t)) != http.StatusSeeOther {
		t.Fatal("sign-in")
	}
	_, page := b.get("/ui/machines/BLD-003")
	for _, want := range []string{`id="assign-reboot"> PXE next and power-cycle (through the OA)`, `id="power-on">on</button>`, `id="locate-on">blink</button>`} {
		if !strings.Contains(page, want) {
			t.Errorf("BLD-003's page lacks %q", want)
		}
	}
	// The front shows what the OA said at the sync.
	_, page = b.get("/ui/")
	for _, want := range []string{"Onboard Administrator " + host + ":" + port + " (firmware 4.70): OK, 380 W of 4900 W", "OA: on 180 W"} {
		if !strings.Contains(page, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
	_, page = b.get("/ui/machines/ODEN")
	if !strings.Contains(page, `id="power-on" disabled>`) || strings.Contains(page, `id="locate"`) {
		t.Error("ODEN (no BMC, no enclosure) offers power or locate")
	}
}

// The dashboard with 1,000 machines: the overview (every machine's row,
// ASGARD's bays) and one machine's page, rendered and read whole.
func BenchmarkDashboard1k(b *testing.B) {
	d := daemontest.Start(b, nil)
	c := d.ImportHomelab(b)
	raw, err := yaml.Marshal(inventory.Document{Version: 1, Machines: inventorytest.Fleet(1000)})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Import(context.Background(), raw, false, true); err != nil {
		b.Fatal(err)
	}
	hc := d.HTTP()
	for _, page := range []string{"/ui/", "/ui/machines/fleet-00500", "/ui/machines/BLD-006"} {
		b.Run(strings.Trim(strings.ReplaceAll(page, "/", "-"), "-"), func(b *testing.B) {
			for b.Loop() {
				resp, err := hc.Get(d.URL + page)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n < 1000 {
					b.Fatalf("%s: %d, %d bytes", page, resp.StatusCode, n)
				}
			}
		})
	}
}
