package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// TestBootPath is the boot path on real firmware next to a home router:
// a BIOS machine (SeaBIOS + iPXE ROM) and a UEFI machine (OVMF's own PXE,
// which must fetch ipxe.efi over TFTP) boot profile linux with their
// inventory's kernel arguments; an unknown machine is recorded as
// discovered and gets the default menu; a plain DHCP client never hears
// from provisiond.
func TestBootPath(t *testing.T) {
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

	machines := []struct {
		name, mac string
		fw        firmware
	}{
		{"vm-bios", "52:54:00:e2:e0:01", seabios},
		{"vm-uefi", "52:54:00:e2:e0:02", ovmf},
	}
	for _, m := range machines {
		args := []string{"machine", "add", m.name, "--mac", m.mac, "--profile", "linux", "--hostname", m.name,
			"--param", "kernel=vmlinuz", "--param", "initrd=initrd.img", "--param", "cmdline=console=ttyS0 panic=-1 quiet",
			"--kernel-args", "e2e.machine=" + m.name + " e2e.marker=inventory-args-" + m.name}
		if m.fw == seabios {
			// One-shot: boot linux once, then the local disk.
			args = append(args, "--once")
		}
		l.mustCLI(args...)
	}
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
			for _, want := range []string{"e2e.machine=" + m.name, "e2e.marker=inventory-args-" + m.name, "console=ttyS0", "provisiond.callback=http://" + serverIP} {
				if !strings.Contains(cmdline, want) {
					t.Errorf("booted kernel's command line lacks %q: %q", want, cmdline)
				}
			}
			if got := serialLine(consoles[i], "PROVISIOND-TEST-CALLBACK:"); got != "ok" {
				t.Errorf("booted OS callback: %q (address: %q)", got, serialLine(consoles[i], "PROVISIOND-TEST-ADDR:"))
			}
			t.Logf("%s booted; kernel command line: %s", m.name, cmdline)
			checkTimeline(t, l, m.name, m.fw)
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

	t.Run("sigterm", func(t *testing.T) { l.stopDaemon(t) })
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

// checkTimeline asserts the boot steps in order: DHCP offer, (TFTP of the
// iPXE binary when the firmware is not iPXE itself), script, kernel,
// initrd, callback.
func checkTimeline(t *testing.T, l *lab, name string, fw firmware) {
	t.Helper()
	var evs []events.Event
	// The recorder writes asynchronously: give the callback a moment.
	for i := 0; i < 20; i++ {
		evs = l.timeline(name)
		if len(evs) > 0 && evs[len(evs)-1].Type == events.Booted {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	want := []struct {
		typ  string
		desc string
		ok   func(events.Event) bool
	}{
		{events.DHCPOffer, "DHCP offer", func(ev events.Event) bool { return true }},
	}
	binary := "undionly.kpxe"
	if fw == ovmf {
		binary = "ipxe.efi"
	}
	want = append(want, struct {
		typ  string
		desc string
		ok   func(events.Event) bool
	}{events.TFTPTransfer, "TFTP of " + binary, func(ev events.Event) bool {
		return ev.Attrs["file"] == binary && ev.Attrs["result"] == "ok"
	}})
	more := []struct {
		typ  string
		desc string
		ok   func(events.Event) bool
	}{
		{events.DHCPOffer, "DHCP offer of the script URL to iPXE", func(ev events.Event) bool { return ev.Attrs["stage"] == "ipxe" }},
		{events.Script, "script (profile linux)", func(ev events.Event) bool { return ev.Attrs["profile"] == "linux" }},
		{events.Asset, "kernel", func(ev events.Event) bool { return ev.Attrs["file"] == "vmlinuz" && ev.Attrs["status"] == "200" }},
		{events.Asset, "initrd", func(ev events.Event) bool { return ev.Attrs["file"] == "initrd.img" && ev.Attrs["status"] == "200" }},
		{events.Booted, "booted callback", func(ev events.Event) bool { return true }},
	}
	want = append(want, more...)
	i := 0
	for _, ev := range evs {
		if i < len(want) && ev.Type == want[i].typ && want[i].ok(ev) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("%s timeline is missing %q (in order: %d of %d steps found):\n%s", name, want[i].desc, i, len(want), formatTimeline(evs))
		return
	}
	t.Logf("%s timeline:\n%s", name, formatTimeline(evs))
}
