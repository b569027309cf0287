package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// TestBootPath is the boot path on real firmware next to a home router:
// a BIOS machine (SeaBIOS + iPXE ROM), a UEFI machine (OVMF's own PXE,
// which must fetch snponly.efi over TFTP) and a UEFI HTTP boot machine
// (OVMF fetching snponly.efi over HTTP, no TFTP) boot profile linux with their
// inventory's kernel arguments; an unknown machine is recorded as
// discovered and gets the default menu; a plain DHCP client never hears
// from provisiond.
func TestBootPath(t *testing.T) {
	t.Parallel() // VMs under TCG: two tests share the two cores
	l := newLab(t)

	// Plain DHCP clients get nothing from provisiond; a PXE client gets a
	// proxy offer without an address.
	t.Run("dhcp-probe", func(t *testing.T) {
		rs := l.probe("c0")
		var plainRouter, pxeProxy int
		for _, r := range rs {
			switch {
			case r.Kind == "plain" && r.ServerID == serverIP:
				t.Errorf("provisiond answered a plain DHCP client:\n%s", describe(rs))
			case r.Kind == "plain" && r.ServerID == routerIP:
				plainRouter++
			case r.Kind == "pxe" && r.ServerID == serverIP:
				pxeProxy++
				if r.YourIP != "0.0.0.0" {
					t.Errorf("provisiond offered address %s: a ProxyDHCP must never hand out addresses", r.YourIP)
				}
				if r.File != "undionly.kpxe" || r.NextIP != serverIP || r.Class != "PXEClient" {
					t.Errorf("proxy offer to a BIOS PXE client: file %q siaddr %s class %q; want undionly.kpxe from %s, PXEClient", r.File, r.NextIP, r.Class, serverIP)
				}
			}
		}
		if plainRouter == 0 {
			t.Errorf("the router (dnsmasq) never answered the plain client; the lab is broken:\n%s", describe(rs))
		}
		if pxeProxy == 0 {
			t.Errorf("provisiond never answered the PXE client:\n%s", describe(rs))
		}
		t.Logf("probe heard %d replies: router answered the plain client %d times, provisiond answered the PXE client %d times", len(rs), plainRouter, pxeProxy)
	})

	// On the second segment the answer names the second interface's
	// address; nobody hands out addresses there.
	t.Run("second-interface", func(t *testing.T) {
		rs := l.probe("c1")
		var pxe int
		for _, r := range rs {
			switch {
			case r.Kind == "plain":
				t.Errorf("a plain client on the second segment got an answer: %+v", r)
			case r.ServerID != server2IP || r.NextIP != server2IP:
				t.Errorf("answer on the second segment names %s/%s, want %s:\n%s", r.ServerID, r.NextIP, server2IP, describe(rs))
			default:
				pxe++
			}
		}
		if pxe == 0 {
			t.Errorf("no proxy offer on the second interface:\n%s", describe(rs))
		}
		// TFTP answers on the second interface too.
		l.sh(l.client, "ip", "addr", "add", "192.0.2.140/25", "dev", "c1")
		n, err := l.tftpFetch(server2IP, "undionly.kpxe")
		st, _ := os.Stat("/usr/lib/ipxe/undionly.kpxe")
		if err != nil || st == nil || n != st.Size() {
			t.Errorf("TFTP from %s on the second segment: %d bytes, %v", server2IP, n, err)
		}
	})

	const joinToken = "e2e-join-token-SECRET42"
	machines := []bootCase{
		{name: "vm-bios", mac: "52:54:00:e2:e0:01", fw: seabios, profile: "linux", kernel: "vmlinuz", initrd: "initrd.img", callback: true,
			want: []string{"e2e.machine=vm-bios", "e2e.marker=inventory-args-vm-bios", "console=ttyS0", "provisiond.callback=http://" + serverIP}},
		{name: "vm-uefi", mac: "52:54:00:e2:e0:02", fw: ovmf, profile: "linux", kernel: "vmlinuz", initrd: "initrd.img", callback: true,
			want: []string{"e2e.machine=vm-uefi", "e2e.marker=inventory-args-vm-uefi", "console=ttyS0", "provisiond.callback=http://" + serverIP}},
		{name: "vm-talos", mac: "52:54:00:e2:e0:03", fw: seabios, profile: "talos", kernel: "kernel-amd64", initrd: "initramfs-amd64.xz",
			want: []string{"initrd=initramfs.xz talos.platform=metal console=ttyS0 panic=-1 e2e.factory-cmdline=1 " +
				"talos.config=http://" + serverIP + ":8080/boot/52:54:00:e2:e0:03/config?profile=talos&nonce=",
				" ip=192.0.2.60::192.0.2.1:255.255.255.128:vm-talos:eth0:off e2e.machine=vm-talos"}},
	}
	machines = append(machines, bootCase{name: "vm-http", mac: "52:54:00:e2:e0:05", fw: ovmfHTTP, profile: "linux", kernel: "vmlinuz", initrd: "initrd.img", callback: true,
		want: []string{"e2e.machine=vm-http", "e2e.marker=inventory-args-vm-http", "console=ttyS0", "provisiond.callback=http://" + serverIP}})
	machines = append(machines, bootCase{name: "vm-slurm", mac: "52:54:00:e2:e0:04", fw: seabios, profile: "slurm", kernel: "vmlinuz", initrd: "initrd.img", callback: true,
		want: []string{"initrd=base.img initrd=overlay.cpio console=ttyS0 panic=-1 e2e.machine=vm-slurm provisiond.callback="}})
	for _, m := range machines {
		if m.profile != "linux" {
			continue
		}
		args := []string{"machine", "add", m.name, "--mac", m.mac, "--profile", "linux", "--hostname", m.name,
			"--param", "kernel=vmlinuz", "--param", "initrd=initrd.img", "--param", "cmdline=console=ttyS0 panic=-1 quiet",
			"--kernel-args", "e2e.machine=" + m.name + " e2e.marker=inventory-args-" + m.name}
		if m.fw == seabios {
			// One-shot: boot linux once, then the local disk.
			args = append(args, "--once")
		}
		l.mustCLI(args...)
	}
	// Talos: the join token is stored once as a secret, the factory's
	// assets are pulled ahead of time with the CLI, then the machine boots.
	if out := l.cliStdin(joinToken+"\n", "secret", "set", "omni-join-token"); !strings.Contains(out, "stored secret omni-join-token") {
		t.Fatalf("secret set: %s", out)
	}
	pull := l.mustCLI("assets", "pull", "talos")
	if !strings.Contains(pull, "Talos v1.9.5, schematic ") || !strings.Contains(pull, "kernel-amd64: ") || !strings.HasSuffix(strings.TrimSpace(pull), "cached") {
		t.Fatalf("assets pull talos:\n%s", pull)
	}
	t.Logf("assets pull talos:\n%s", pull)
	l.mustCLI("machine", "add", "vm-talos", "--mac", machines[2].mac, "--profile", "talos", "--hostname", "vm-talos",
		"--address", "192.0.2.60/25", "--gateway", routerIP, "--param", "omni_api=https://omni.e2e.test:8090/", "--param", "interface=eth0",
		"--kernel-args", "e2e.machine=vm-talos")
	if red := l.mustCLI("profile", "render", "vm-talos"); strings.Contains(red, joinToken) || !strings.Contains(red, "/config?profile=talos&nonce=REDACTED") {
		t.Errorf("profile render shows the join token:\n%s", red)
	}
	// Slurm: the test OS stands in for the base image; provisiond adds the
	// node's overlay (hostname, munge key, slurmd's controller).
	mungeKey := make([]byte, 1024)
	rand.Read(mungeKey)
	keyFile := filepath.Join(l.dir, "munge.key")
	os.WriteFile(keyFile, mungeKey, 0o600)
	l.mustCLI("secret", "set", "munge-key", "--from-file", keyFile)
	l.mustCLI("machine", "add", "vm-slurm", "--mac", "52:54:00:e2:e0:04", "--profile", "slurm", "--hostname", "node-007",
		"--param", "kernel=vmlinuz", "--param", "base_image=initrd.img", "--param", "cmdline=console=ttyS0 panic=-1",
		"--param", "slurm_controller="+serverIP+":6817", "--kernel-args", "e2e.machine=vm-slurm")
	keySum := sha256.Sum256(mungeKey)
	script := l.mustCLI("profile", "render", "vm-bios")
	if !strings.Contains(script, "e2e.marker=inventory-args-vm-bios") || !strings.Contains(script, "/assets/vmlinuz") {
		t.Fatalf("profile render vm-bios does not carry the machine's arguments:\n%s", script)
	}

	const unknownMAC = "52:54:00:e2:e0:99"
	var wg sync.WaitGroup
	consoles := make([]string, len(machines))
	errs := make([]error, len(machines))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	for i, m := range machines {
		v := l.startVM(m.name, m.mac, m.fw)
		wg.Add(1)
		go func(i int, v *vm) {
			defer wg.Done()
			consoles[i], errs[i] = v.waitSerial(ctx, "PROVISIOND-TEST-DONE")
			v.stop()
		}(i, v)
	}
	// The unknown machine boots alongside; it only has to reach its script.
	unknown := l.startVM("vm-unknown", unknownMAC, seabios)
	wg.Wait()

	for i, m := range machines {
		t.Run(m.name, func(t *testing.T) {
			if errs[i] != nil {
				t.Fatalf("%v\nconsole:\n%s", errs[i], consoles[i])
			}
			cmdline := serialLine(consoles[i], "PROVISIOND-TEST-CMDLINE:")
			for _, want := range m.want {
				if !strings.Contains(cmdline, want) {
					t.Errorf("booted kernel's command line lacks %q: %q", want, cmdline)
				}
			}
			if got := serialLine(consoles[i], "PROVISIOND-TEST-CALLBACK:"); m.callback && got != "ok" {
				t.Errorf("booted OS callback: %q (address: %q)", got, serialLine(consoles[i], "PROVISIOND-TEST-ADDR:"))
			}
			t.Logf("%s booted; kernel command line: %s", m.name, cmdline)
			if m.profile == "talos" {
				// Omni's join documents came from talos.config=, fetched by
				// the booted OS from its own address; the token was never
				// on the command line.
				if strings.Contains(cmdline, joinToken) {
					t.Errorf("the join token is on the kernel command line: %q", cmdline)
				}
				for _, want := range []string{
					"PROVISIOND-TEST-TALOSCONFIG: kind: SideroLinkConfig",
					`PROVISIOND-TEST-TALOSCONFIG: apiUrl: "https://omni.e2e.test:8090/?jointoken=` + joinToken + `"`,
					`PROVISIOND-TEST-TALOSCONFIG: endpoint: "[fdae:41e4:649b:9303::1]:8090"`,
					`PROVISIOND-TEST-TALOSCONFIG: url: "tcp://[fdae:41e4:649b:9303::1]:8092"`,
				} {
					if !strings.Contains(consoles[i], want) {
						t.Errorf("the Talos config the machine fetched lacks %q:\n%s", want, grepLines(consoles[i], "PROVISIOND-TEST-TALOSCONFIG:"))
					}
				}
			}
			if m.profile == "slurm" {
				for _, want := range []string{
					"PROVISIOND-TEST-FILE: /etc/hostname: node-007",
					`PROVISIOND-TEST-FILE: /etc/default/slurmd: SLURMD_OPTIONS="--conf-server ` + serverIP + `:6817 -N node-007"`,
					"PROVISIOND-TEST-FILE: /etc/provisiond/node.env: PROVISIOND_MACHINE=vm-slurm PROVISIOND_MAC=52:54:00:e2:e0:04",
					"PROVISIOND-TEST-MUNGE: " + hex.EncodeToString(keySum[:]) + " 400",
				} {
					if !strings.Contains(consoles[i], want) {
						t.Errorf("the node's console lacks %q", want)
					}
				}
				t.Logf("overlay on the node's console:\n%s", grepLines(consoles[i], "PROVISIOND-TEST-FILE:", "PROVISIOND-TEST-MUNGE:"))
			}
			checkTimeline(t, l, m)
		})
	}

	t.Run("unknown-mac", func(t *testing.T) {
		name := "discovered-" + strings.ReplaceAll(unknownMAC, ":", "")
		deadline := time.Now().Add(4 * time.Minute)
		var evs []events.Event
		for time.Now().Before(deadline) {
			if _, err := l.machine(name); err == nil {
				evs = l.timeline(name)
				if hasScript(evs, "menu") {
					break
				}
			}
			time.Sleep(time.Second)
		}
		unknown.stop()
		if !hasScript(evs, "menu") {
			t.Fatalf("the unknown MAC never got the default profile (menu); timeline:\n%s", formatTimeline(evs))
		}
		m, err := l.machine(name)
		if err != nil {
			t.Fatal(err)
		}
		if !m.Discovered {
			t.Errorf("%s is not marked discovered", name)
		}
		if m.Facts == nil || m.Facts.Manufacturer != "QEMU" || m.Facts.Platform != "pcbios" ||
			m.Facts.UUID != vmUUID(unknownMAC) || m.Facts.Serial != "E2E-e2e099" || !strings.HasPrefix(m.Facts.Product, "Standard PC (i440FX + PIIX") {
			t.Errorf("discovered facts from iPXE are missing: %+v", m.Facts)
		}
		t.Logf("discovered %s with facts %+v", name, *m.Facts)
	})

	// The one-shot assignment was used up by the first boot: the same
	// machine's next boot gets the local disk, and the timeline has both.
	t.Run("one-shot", func(t *testing.T) {
		out := l.mustCLI("machine", "show", "vm-bios", "-o", "json")
		if !strings.Contains(out, `"profile": "local"`) || strings.Contains(out, `"once"`) {
			t.Fatalf("after the one-shot boot vm-bios is not back on local:\n%s", out)
		}
		again := l.startVM("vm-bios-2", machines[0].mac, seabios)
		defer again.stop()
		deadline := time.Now().Add(4 * time.Minute)
		var evs []events.Event
		for time.Now().Before(deadline) {
			evs = l.timeline("vm-bios")
			if hasScript(evs, "local") {
				break
			}
			time.Sleep(time.Second)
		}
		var order []string
		for _, ev := range evs {
			switch {
			case ev.Type == events.MachineChanged:
				order = append(order, "assigned:"+ev.Attrs["profile"])
			case ev.Type == events.Script:
				order = append(order, "script:"+ev.Attrs["profile"])
			case ev.Type == events.OnceConsumed:
				order = append(order, "consumed:"+ev.Attrs["profile"]+"->"+ev.Attrs["then"])
			}
		}
		if got := strings.Join(order, " "); got != "assigned:linux script:linux consumed:linux->local script:local" {
			t.Errorf("one-shot timeline: %s\n%s", got, formatTimeline(evs))
		}
	})

	t.Run("no-answer-to-plain-clients", func(t *testing.T) {
		// The booted test OSes asked for addresses with plain DHCP; the
		// daemon saw them and stayed silent.
		st := l.mustCLI("status")
		if !strings.Contains(st, `"IgnoredNonPXE"`) {
			t.Fatalf("status lacks DHCP counters:\n%s", st)
		}
		t.Logf("daemon status:\n%s", st)
	})

	t.Run("secret-never-logged", func(t *testing.T) {
		if strings.Contains(l.logBuf.String(), joinToken) {
			t.Error("the Omni join token appears in provisiond's log")
		}
		for _, args := range [][]string{{"events", "vm-talos", "-o", "json"}, {"machine", "show", "vm-talos", "-o", "json"}, {"secret", "list", "-o", "json"}, {"status"}} {
			if raw := l.mustCLI(args...); strings.Contains(raw, joinToken) {
				t.Errorf("the join token appears in provisiond %s", strings.Join(args, " "))
			}
		}
	})

	// What the boots above did, as Prometheus sees it: scraped from the
	// server's own namespace (loopback, no token needed).
	t.Run("metrics", func(t *testing.T) {
		out := l.sh(l.server, "busybox", "wget", "--no-check-certificate", "-q", "-O", "-", fmt.Sprintf("https://127.0.0.1:%d/metrics", controlPort))
		for _, series := range []string{
			`provisiond_dhcp_requests_total{decision="offer",type="discover"}`,
			`provisiond_dhcp_requests_total{decision="ack",type="request"}`,
			`provisiond_dhcp_requests_total{decision="ignored_non_pxe",type="discover"}`,
			`provisiond_tftp_transfers_total{result="ok"}`,
			`provisiond_tftp_bytes_total`,
			`provisiond_http_boot_requests_total{kind="script",status="200"}`,
			`provisiond_http_boot_requests_total{kind="asset",status="200"}`,
			`provisiond_http_boot_bytes_total{kind="asset"}`,
			`provisiond_boot_seconds_count{profile="linux"}`,
			`provisiond_boots_done_total{on="assets",profile="linux"}`,
		} {
			v := metricValue(out, series)
			if v <= 0 {
				t.Errorf("metric %s = %v, want > 0", series, v)
			}
		}
		t.Logf("boot metrics:\n%s", grepLines(out, "provisiond_dhcp_requests_total{", "provisiond_tftp_transfers_total{", "provisiond_boot_seconds_sum", "provisiond_boot_seconds_count", "provisiond_http_boot_requests_total{"))
	})

	// Reads are open on loopback and need the token from elsewhere (the
	// client namespace reaches the daemon at its LAN address), over TLS
	// with the certificate pinned on first use; boot endpoints stay open
	// to everyone over plain HTTP.
	t.Run("read-access", func(t *testing.T) {
		l.sh(l.client, "ip", "addr", "add", "192.0.2.90/25", "dev", "c0")
		defer l.sh(l.client, "ip", "addr", "del", "192.0.2.90/25", "dev", "c0")
		remote := fmt.Sprintf("https://%s:%d", serverIP, controlPort)
		remoteCLI := func(tokenFile string, args ...string) (string, error) {
			cmd := exec.Command("ip", append([]string{"netns", "exec", l.client, l.bin, "--server", remote, "--token-file", tokenFile}, args...)...)
			cmd.Env = append(os.Environ(), "PROVISIOND_CLIENT_CONFIG="+filepath.Join(l.dir, "remote-client.yaml"))
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		if out, err := exec.Command("ip", "netns", "exec", l.client, "busybox", "wget", "--no-check-certificate", "-q", "-O", "-", remote+"/metrics").CombinedOutput(); err == nil {
			t.Errorf("/metrics from another host without the token was served:\n%.200s", out)
		}
		out, err := remoteCLI("/nonexistent", "machine", "list")
		if err == nil || !strings.Contains(out, "needs the API token") || !strings.Contains(out, "trusting "+remote+" on first use: certificate sha256:") {
			t.Errorf("machine list from another host without the token: %v\n%s", err, out)
		}
		out, err = remoteCLI(filepath.Join(l.dir, "data", "api-token"), "machine", "list")
		if err != nil || !strings.Contains(out, "vm-bios") || strings.Contains(out, "first use") {
			t.Errorf("machine list from another host with the token (pinned): %v\n%s", err, out)
		}
		// The control plane is not on the boot plane's port.
		if out, err := exec.Command("ip", "netns", "exec", l.client, "busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:%d/api/v1/machines", serverIP, httpPort)).CombinedOutput(); err == nil {
			t.Errorf("the API answered on the boot plane:\n%.200s", out)
		}
		if out, err := exec.Command("ip", "netns", "exec", l.client, "busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:%d/boot/52-54-00-e2-e0-01.ipxe", serverIP, httpPort)).CombinedOutput(); err != nil || !strings.Contains(string(out), "#!ipxe") {
			t.Errorf("boot script from the LAN: %v\n%s", err, out)
		}
	})

	t.Run("sigterm", func(t *testing.T) { l.stopDaemon(t) })
}

// metricValue is the value of one series in Prometheus text output (0
// when absent).
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

func grepLines(text string, prefixes ...string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		for _, p := range prefixes {
			if strings.Contains(line, p) {
				out = append(out, strings.TrimSpace(line))
			}
		}
	}
	return strings.Join(out, "\n")
}

func hasScript(evs []events.Event, profile string) bool {
	for _, ev := range evs {
		if ev.Type == events.Script && ev.Attrs["profile"] == profile {
			return true
		}
	}
	return false
}

func formatTimeline(evs []events.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "  %s %-16s %v\n", ev.Time.Format("15:04:05.000"), ev.Type, ev.Attrs)
	}
	return b.String()
}

// bootCase is one VM of the boot test.
type bootCase struct {
	name, mac      string
	fw             firmware
	profile        string
	kernel, initrd string // file names the timeline's asset steps end with
	callback       bool   // the profile passes provisiond.callback
	want           []string
}

type step struct {
	typ  string
	desc string
	ok   func(events.Event) bool
}

// checkTimeline asserts the boot steps in order: DHCP offer, TFTP of the
// iPXE binary (UEFI firmware's own PXE; SeaBIOS's iPXE ROM is not chained),
// the advertisement of no IPv6 router to iPXE, script, kernel, initrd, and
// the callback when the profile makes one.
func checkTimeline(t *testing.T, l *lab, m bootCase) {
	t.Helper()
	var evs []events.Event
	// The recorder writes asynchronously: give the last step a moment.
	for i := 0; i < 20; i++ {
		evs = l.timeline(m.name)
		if len(evs) > 0 && (!m.callback || evs[len(evs)-1].Type == events.Booted) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	// SeaBIOS's NIC ROM is iPXE with HTTP, bzImage and the menu: on the
	// defaults (chain_ipxe: auto) it gets its script at once, with no
	// iPXE binary over TFTP. OVMF's own PXE loads snponly.efi first.
	want := []step{
		{events.DHCPOffer, "DHCP offer of the script URL to the ROM's iPXE, not chained", func(ev events.Event) bool {
			return ev.Attrs["stage"] == "ipxe" && strings.HasPrefix(ev.Attrs["ipxe"], "not chained: this iPXE has http, bzimage, menu")
		}},
	}
	switch m.fw {
	case ovmf:
		want = []step{
			{events.DHCPOffer, "DHCP offer", func(ev events.Event) bool { return true }},
			{events.TFTPTransfer, "TFTP of snponly.efi", func(ev events.Event) bool { return ev.Attrs["file"] == "snponly.efi" && ev.Attrs["result"] == "ok" }},
			{events.DHCPOffer, "DHCP offer of the script URL to iPXE", func(ev events.Event) bool { return ev.Attrs["stage"] == "ipxe" }},
		}
	case ovmfHTTP:
		// UEFI HTTP boot: the offer names snponly.efi's URL, the firmware
		// fetches it over HTTP, then iPXE asks for its script.
		want = []step{
			{events.DHCPOffer, "DHCP offer of snponly.efi's URL to HTTP boot", func(ev events.Event) bool { return ev.Attrs["stage"] == "http" }},
			{events.Asset, "snponly.efi over HTTP", func(ev events.Event) bool { return ev.Attrs["file"] == "snponly.efi" && ev.Attrs["status"] == "200" }},
			{events.DHCPOffer, "DHCP offer of the script URL to iPXE", func(ev events.Event) bool { return ev.Attrs["stage"] == "ipxe" }},
		}
	}
	want = append(want, []step{
		// The lab's router announces no IPv6: iPXE solicits a router, none
		// answers, and provisiond tells it there is none (boot.ipv6_ra),
		// so it fetches its script without waiting 15 s for IPv6.
		{events.IPv6RA, "advertisement of no IPv6 router to iPXE", func(ev events.Event) bool {
			return strings.HasPrefix(ev.Attrs["to"], "fe80::") && strings.Contains(ev.Attrs["why"], "router lifetime 0")
		}},
		{events.Script, "script (profile " + m.profile + ")", func(ev events.Event) bool { return ev.Attrs["profile"] == m.profile }},
		{events.Asset, "kernel", func(ev events.Event) bool {
			return strings.HasSuffix(ev.Attrs["file"], m.kernel) && ev.Attrs["status"] == "200"
		}},
		{events.Asset, "initrd", func(ev events.Event) bool {
			return strings.HasSuffix(ev.Attrs["file"], m.initrd) && ev.Attrs["status"] == "200"
		}},
	}...)
	if m.fw == seabios || m.fw == ovmfHTTP {
		for _, ev := range evs {
			if ev.Type == events.TFTPTransfer {
				t.Errorf("%s fetched %s over TFTP: a boot with no TFTP was expected (ROM's iPXE not chained, or UEFI HTTP boot)\n%s", m.name, ev.Attrs["file"], formatTimeline(evs))
			}
		}
	}
	if m.callback {
		want = append(want, step{events.Booted, "booted callback", func(ev events.Event) bool { return true }})
	}
	i := 0
	for _, ev := range evs {
		if i < len(want) && ev.Type == want[i].typ && want[i].ok(ev) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("%s timeline is missing %q (in order: %d of %d steps found):\n%s", m.name, want[i].desc, i, len(want), formatTimeline(evs))
		return
	}
	t.Logf("%s timeline:\n%s", m.name, formatTimeline(evs))
}
