package daemon

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/assets"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/talos"
	"github.com/provisiond/provisiond/internal/talos/talostest"
)

func TestTalosThroughTheFactory(t *testing.T) {
	kernel := strings.Repeat("K", 300_000)
	factory := talostest.New(map[string][]byte{
		"kernel-amd64":        []byte(kernel),
		"initramfs-amd64.xz":  []byte(strings.Repeat("I", 500_000)),
		"cmdline-metal-amd64": []byte("talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on\n"),
	})
	fsrv := httptest.NewServer(factory)
	defer fsrv.Close()
	var proxyPort int
	d := startDaemon(t, func(c *config.Config) {
		c.Talos.FactoryURL = fsrv.URL
		c.Talos.Version = "v1.9.5"
		proxyPort = c.DHCP.ProxyPort
	})
	base, data := d.boot, d.data
	tok, _ := os.ReadFile(filepath.Join(data, TokenFile))
	c := d.client(strings.TrimSpace(string(tok)))
	ctx := context.Background()
	if err := c.SetSecret(ctx, "omni-join-token", "omni-tok-0123456789"); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateMachine(ctx, inventory.Machine{Name: "BLD-006", MACs: []string{"52:54:00:00:00:06"}, Profile: "talos", Hostname: "bld-006",
		Address: "192.0.2.56/24", Gateway: "192.0.2.1", KernelArgs: "talos.dashboard.disabled=1",
		Params: map[string]string{"omni_api": "https://omni.example.com:8090/", "interface": "enp3s0"}})
	if err != nil {
		t.Fatal(err)
	}

	// Not cached yet: the machine is told to wait, and the download starts.
	_, body := get(t, base+"/boot/52:54:00:00:00:06/script", nil)
	if !strings.Contains(body, "downloading Talos v1.9.5") || !strings.Contains(body, "chain --replace "+base+"/boot/52:54:00:00:00:06.ipxe") {
		t.Fatalf("uncached Talos:\n%s", body)
	}
	// The CLI's pull joins (or finds) that download and reports progress.
	var info map[string]string
	var reports []assets.Progress
	err = c.Pull(ctx, api.PullRequest{Kind: "talos"}, func(m map[string]string) { info = m }, func(p assets.Progress) { reports = append(reports, p) })
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	want := talos.New([]string{"siderolabs/bnx2-bnx2x", "siderolabs/intel-ucode"}, nil)
	id, _ := want.ID()
	if info["schematic"] != id || !factory.Registered(id) {
		t.Errorf("schematic %s (registered %v), want %s", info["schematic"], factory.Registered(id), id)
	}
	// Pulling again is a no-op served from the cache.
	c.Pull(ctx, api.PullRequest{Kind: "talos"}, func(map[string]string) {}, func(assets.Progress) {})
	if n := factory.Hits("kernel-amd64"); n != 1 {
		t.Errorf("the factory served the kernel %d times, want once", n)
	}

	// Outside a boot the script with the join token is not served: the
	// machine gets what an unknown MAC gets.
	if _, body = get(t, base+"/boot/52:54:00:00:00:06/script", nil); strings.Contains(body, "omni-tok") || !strings.Contains(body, "menu provisiond") {
		t.Fatalf("Talos script outside a boot:\n%s", body)
	}
	romDHCP(t, proxyPort, "52:54:00:00:00:06")
	_, body = get(t, base+"/boot/52:54:00:00:00:06/script", nil)
	entry := "talos/v1.9.5/" + id + "/amd64"
	// By default Omni's join settings are a config document the machine
	// fetches once from talos.config=: the token is not on the kernel
	// command line.
	configURL := base + "/boot/52:54:00:00:00:06/config?profile=talos&nonce="
	wantLine := "kernel " + base + "/assets/" + entry + "/kernel-amd64?mac=52%3A54%3A00%3A00%3A00%3A06 initrd=initramfs.xz " +
		"talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on " +
		"talos.config=" + configURL
	if !strings.Contains(body, wantLine) || !strings.Contains(body, "initrd --name initramfs.xz "+base+"/assets/"+entry+"/initramfs-amd64.xz") ||
		strings.Contains(body, "omni-tok") || strings.Contains(body, "siderolink.api") {
		t.Fatalf("Talos script:\n%s\nwant line:\n%s", body, wantLine)
	}
	nonce := regexp.MustCompile(`nonce=([A-Za-z0-9_-]+) ip=192.0.2.56::192.0.2.1:255.255.255.0:bld-006:enp3s0:off talos.dashboard.disabled=1 \|\| goto failed`).FindStringSubmatch(body)
	if nonce == nil {
		t.Fatalf("no nonce in the talos.config URL, or the line ends otherwise:\n%s", body)
	}
	resp, doc := get(t, configURL+nonce[1], nil)
	wantDoc := `apiVersion: v1alpha1
kind: SideroLinkConfig
apiUrl: "https://omni.example.com:8090/?jointoken=omni-tok-0123456789"
---
apiVersion: v1alpha1
kind: EventSinkConfig
endpoint: "[fdae:41e4:649b:9303::1]:8090"
---
apiVersion: v1alpha1
kind: KmsgLogConfig
name: omni-kmsg
url: "tcp://[fdae:41e4:649b:9303::1]:8092"
`
	if resp.StatusCode != 200 || doc != wantDoc || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("config document: %d %q\n%s\nwant:\n%s", resp.StatusCode, resp.Header.Get("Cache-Control"), doc, wantDoc)
	}
	// Once per boot: the nonce does not open it twice.
	if resp, again := get(t, configURL+nonce[1], nil); resp.StatusCode != 404 || strings.Contains(again, "omni-tok") {
		t.Fatalf("the config document went out twice in one boot: %d\n%s", resp.StatusCode, again)
	}
	// Once per boot: asked again in the same boot, the script is refused
	// (another host may be using the MAC) and the alarm is on the timeline.
	if _, again := get(t, base+"/boot/52:54:00:00:00:06/script", nil); strings.Contains(again, "talos.config") {
		t.Fatalf("a second config URL went out in one boot:\n%s", again)
	}
	var alarm *events.Event
	for deadline := time.Now().Add(5 * time.Second); alarm == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		evs, _ := c.Events(ctx, "BLD-006", 100)
		for i := range evs {
			if evs[i].Type == events.SpoofAlarm {
				alarm = &evs[i]
			}
		}
	}
	if alarm == nil || alarm.Attrs["what"] == "" || strings.Contains(fmt.Sprint(alarm.Attrs), "omni-tok") {
		t.Errorf("no spoof alarm on the timeline: %+v", alarm)
	}
	red, err := d.client("").Script(ctx, "BLD-006", "", false)
	if err != nil || strings.Contains(string(red), "omni-tok") || !strings.Contains(string(red), "/boot/52:54:00:00:00:06/config?profile=talos&nonce=REDACTED ip=") {
		t.Fatalf("redacted render: %v\n%s", err, red)
	}

	// As Omni's own images do it, on the kernel command line, with the
	// gRPC tunnel as Omni spells it.
	m, err := c.Machine(ctx, "BLD-006")
	if err != nil {
		t.Fatal(err)
	}
	m.Params["omni_join"], m.Params["omni_grpc_tunnel"] = "cmdline", "true"
	if _, err := c.UpdateMachine(ctx, *m); err != nil {
		t.Fatal(err)
	}
	romDHCP(t, proxyPort, "52:54:00:00:00:06")
	_, body = get(t, base+"/boot/52:54:00:00:00:06/script", nil)
	wantLine = "kernel " + base + "/assets/" + entry + "/kernel-amd64?mac=52%3A54%3A00%3A00%3A00%3A06 initrd=initramfs.xz " +
		"talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on " +
		"siderolink.api=https://omni.example.com:8090/?jointoken=omni-tok-0123456789&grpc_tunnel=true " +
		"talos.events.sink=[fdae:41e4:649b:9303::1]:8090 talos.logging.kernel=tcp://[fdae:41e4:649b:9303::1]:8092 " +
		"ip=192.0.2.56::192.0.2.1:255.255.255.0:bld-006:enp3s0:off talos.dashboard.disabled=1 || goto failed\n"
	if !strings.Contains(body, wantLine) || strings.Contains(body, "talos.config") {
		t.Fatalf("Talos script (cmdline):\n%s\nwant line:\n%s", body, wantLine)
	}
	// The API and the CLI show the token redacted unless asked with the token.
	red, err = d.client("").Script(ctx, "BLD-006", "", false)
	if err != nil || strings.Contains(string(red), "omni-tok") || !strings.Contains(string(red), "jointoken=REDACTED&grpc_tunnel=true") {
		t.Fatalf("redacted render: %v\n%s", err, red)
	}
	if _, err := d.client("").Script(ctx, "BLD-006", "", true); err == nil {
		t.Error("secrets shown without the token")
	}
	if m, err = c.Machine(ctx, "BLD-006"); err != nil {
		t.Fatal(err)
	}
	m.Params["omni_join"] = "kernel"
	if _, err := c.UpdateMachine(ctx, *m); err == nil {
		t.Error("omni_join=kernel accepted")
	} else if !strings.Contains(err.Error(), "not one of config, cmdline") {
		t.Errorf("omni_join=kernel: %v", err)
	}
	// Cached assets are served; downloads in progress never are.
	resp, got := get(t, base+"/assets/"+entry+"/kernel-amd64", nil)
	if resp.StatusCode != 200 || got != kernel {
		t.Errorf("cached kernel: %d, %d bytes", resp.StatusCode, len(got))
	}
	os.MkdirAll(filepath.Join(data, "assets", ".partial"), 0o755)
	os.WriteFile(filepath.Join(data, "assets", ".partial", "half"), []byte("half"), 0o644)
	if resp, _ := get(t, base+"/assets/.partial/half", nil); resp.StatusCode == 200 {
		t.Error("a partial download was served")
	}
	es, _ := c.AssetEntries(ctx)
	if len(es) != 1 || es[0].Meta["version"] != "v1.9.5" || len(es[0].Files["kernel-amd64"].SHA256) != 64 {
		t.Errorf("entries %+v", es)
	}
}

func TestTalosFactoryDown(t *testing.T) {
	d := startDaemon(t, func(c *config.Config) {
		c.Talos.FactoryURL = "http://127.0.0.1:1"
		c.Talos.Version = "v1.9.5"
	})
	base, data := d.boot, d.data
	tok, _ := os.ReadFile(filepath.Join(data, TokenFile))
	c := d.client(strings.TrimSpace(string(tok)))
	err := c.Pull(context.Background(), api.PullRequest{Kind: "talos"}, func(map[string]string) {}, func(assets.Progress) {})
	if err == nil || !strings.Contains(err.Error(), "cannot be reached") {
		t.Fatalf("pull from an unreachable factory: %v", err)
	}
	c.CreateMachine(context.Background(), inventory.Machine{Name: "m", MACs: []string{"52:54:00:00:00:07"}, Profile: "talos"})
	_, body := get(t, base+"/boot/52:54:00:00:00:07/script", nil)
	if !strings.Contains(body, "the last Talos download failed") || !strings.Contains(body, "cannot be reached") {
		t.Errorf("machine's script after a failed download:\n%s", body)
	}
	// The machine's timeline says why it waits.
	var waiting *events.Event
	for deadline := time.Now().Add(5 * time.Second); waiting == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		evs, _ := c.Events(context.Background(), "m", 100)
		for i := range evs {
			if evs[i].Type == events.BootWaiting {
				waiting = &evs[i]
			}
		}
	}
	if waiting == nil || waiting.Attrs["profile"] != "talos" || !strings.Contains(waiting.Attrs["reason"], "cannot be reached") {
		t.Errorf("timeline lacks boot.waiting naming the unreachable factory: %+v", waiting)
	}
	if err := c.Pull(context.Background(), api.PullRequest{Kind: "talos", Version: "latest"}, func(map[string]string) {}, func(assets.Progress) {}); err == nil || !strings.Contains(err.Error(), "not of the form") {
		t.Errorf("bad version: %v", err)
	}
}

// A machine's schematic follows its NICs: ODEN's BCM5709 (bnx2) needs the
// bnx2-bnx2x firmware extension, a blade's FlexFabric 554FLB (be2net)
// none; the script says which schematic and why. Checked on the example
// homelab against the fake factory.
func TestTalosSchematicFollowsTheNICs(t *testing.T) {
	factory := talostest.New(map[string][]byte{
		"kernel-amd64": []byte("K"), "initramfs-amd64.xz": []byte("I"), "cmdline-metal-amd64": []byte("talos.platform=metal\n"),
	})
	fsrv := httptest.NewServer(factory)
	defer fsrv.Close()
	d := startDaemon(t, func(c *config.Config) { c.Talos.FactoryURL, c.Talos.Version = fsrv.URL, "v1.9.5" })
	tok, _ := os.ReadFile(filepath.Join(d.data, TokenFile))
	c := d.client(strings.TrimSpace(string(tok)))
	ctx := context.Background()
	doc, err := os.ReadFile("../../examples/homelab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Import(ctx, doc, false, true); err != nil {
		t.Fatal(err)
	}
	blade, _ := c.Machine(ctx, "BLD-003")
	blade.Profile = "talos"
	blade.MACs = []string{"52:54:00:00:03:01"}
	blade.NICs = []inventory.NIC{{MAC: "52:54:00:00:03:01", Chip: "554FLB", Driver: "be2net", Boot: true}}
	// iLO 4's virtual serial port is the blade's second UART.
	blade.Params = map[string]string{"serial_console": "ttyS1,115200"}
	if _, err := c.UpdateMachine(ctx, *blade); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		machine string
		exts    []string
		why     string
	}{
		{"ODEN", []string{"siderolabs/bnx2-bnx2x", "siderolabs/intel-ucode"}, "siderolabs/bnx2-bnx2x for NIC bnx2"},
		{"BLD-003", []string{"siderolabs/intel-ucode"}, "NIC be2net needs no firmware"},
	} {
		id, _ := talos.New(tc.exts, nil).ID()
		var info map[string]string
		if err := c.Pull(ctx, api.PullRequest{Kind: "talos", Machine: tc.machine}, func(m map[string]string) { info = m }, func(assets.Progress) {}); err != nil {
			t.Fatalf("pull for %s: %v", tc.machine, err)
		}
		if info["schematic"] != id || !factory.Registered(id) {
			t.Errorf("%s: schematic %s, want %s (%v)", tc.machine, info["schematic"], id, tc.exts)
		}
		script, err := c.Script(ctx, tc.machine, "", false)
		if err != nil {
			t.Fatalf("render %s: %v", tc.machine, err)
		}
		want := "(schematic " + id + ": " + strings.Join(tc.exts, " ") + ", " + tc.why + ")"
		if !strings.Contains(string(script), want) || !strings.Contains(string(script), "/assets/talos/v1.9.5/"+id+"/") {
			t.Errorf("%s's script does not say %q:\n%s", tc.machine, want, script)
		}
		// machine show says the same, and the firmware the model binds.
		bi, err := c.BootInfo(ctx, tc.machine)
		if err != nil || bi.Talos == nil || bi.Talos.Schematic != id || strings.Join(bi.Talos.Extensions, " ") != strings.Join(tc.exts, " ") || bi.Talos.Why != tc.why {
			t.Errorf("%s boot info %+v %+v, %v", tc.machine, bi, bi.Talos, err)
		}
		if bi.State != events.StateIdle || bi.StateText == "" {
			t.Errorf("%s's state %q (%q), want idle", tc.machine, bi.State, bi.StateText)
		}
		if tc.machine == "BLD-003" && (bi.Firmware != "bios" || bi.FirmwareWhy == "") {
			t.Errorf("BLD-003 boots %q (%s), want bios and why", bi.Firmware, bi.FirmwareWhy)
		}
		if tc.machine == "BLD-003" && !strings.Contains(string(script), "talos.platform=metal console=ttyS1,115200") {
			t.Errorf("BLD-003's serial console is not after the factory's command line:\n%s", script)
		}
		t.Logf("%s: %s", tc.machine, strings.SplitN(string(script), "\n", 3)[1])
	}
}

// Extension names are checked against the factory's list before the
// schematic is registered: a wrong one fails the pull with the nearest
// names; a factory that cannot list them (a mirror without the endpoint)
// leaves them unchecked and the pull goes on.
func TestTalosExtensionNamesChecked(t *testing.T) {
	factory := talostest.New(map[string][]byte{
		"kernel-amd64": []byte("K"), "initramfs-amd64.xz": []byte("I"), "cmdline-metal-amd64": []byte("talos.platform=metal\n"),
	})
	listing := true
	fsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !listing && strings.HasSuffix(r.URL.Path, "/extensions/official") {
			http.NotFound(w, r)
			return
		}
		factory.ServeHTTP(w, r)
	}))
	defer fsrv.Close()
	d := startDaemon(t, func(c *config.Config) { c.Talos.FactoryURL, c.Talos.Version = fsrv.URL, "v1.9.5" })
	tok, _ := os.ReadFile(filepath.Join(d.data, TokenFile))
	c := d.client(strings.TrimSpace(string(tok)))
	ctx := context.Background()
	err := c.Pull(ctx, api.PullRequest{Kind: "talos", Extensions: []string{"siderolabs/bnx-bnx2x", "siderolabs/intel-ucode"}}, func(map[string]string) {}, func(assets.Progress) {})
	if err == nil || !strings.Contains(err.Error(), "has no official extension siderolabs/bnx-bnx2x (did you mean siderolabs/bnx2-bnx2x?)") {
		t.Fatalf("pull with a wrong name: %v", err)
	}
	if id, _ := talos.New([]string{"siderolabs/bnx-bnx2x", "siderolabs/intel-ucode"}, nil).ID(); factory.Registered(id) {
		t.Error("the schematic with the wrong name was registered")
	}
	// Assigning Talos checks the names the machine's schematic would have.
	if _, err := c.CreateMachine(ctx, inventory.Machine{Name: "ODEN", MACs: []string{"52:54:00:00:00:0a"},
		Params: map[string]string{"talos_extensions": "siderolabs/intel-ucode,siderolabs/iscsi-tool"}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Assign(ctx, "ODEN", api.AssignRequest{Profile: "talos"})
	if err == nil || !strings.Contains(err.Error(), "has no official extension siderolabs/iscsi-tool (did you mean siderolabs/iscsi-tools?)") {
		t.Fatalf("assign with a wrong name: %v", err)
	}
	if m, _ := c.Machine(ctx, "ODEN"); m.Profile != "" {
		t.Errorf("the refused assignment was stored: profile %q", m.Profile)
	}
	// Offline (a version whose list is not cached), the assignment goes
	// through and the client hears that the names could not be checked.
	listing = false
	if _, err := c.CreateMachine(ctx, inventory.Machine{Name: "TOR", MACs: []string{"52:54:00:00:00:0b"},
		Params: map[string]string{"talos_version": "v1.9.4"}}); err != nil {
		t.Fatal(err)
	}
	var warned []string
	c.Warn = func(w string) { warned = append(warned, w) }
	if _, err := c.Assign(ctx, "TOR", api.AssignRequest{Profile: "talos"}); err != nil {
		t.Fatalf("assign while the factory cannot list extensions: %v", err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "not checked: the official extensions could not be listed") {
		t.Errorf("warnings: %q", warned)
	}
	if err := c.Pull(ctx, api.PullRequest{Kind: "talos", Extensions: []string{"siderolabs/iscsi-tools"}}, func(map[string]string) {}, func(assets.Progress) {}); err != nil {
		t.Errorf("pull from a factory that cannot list extensions: %v", err)
	}
}
