package booter

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/metrics"
)

// A boot lasts from the firmware's first DHCP answer to its end by its
// profile's rule; the iPXE request in between continues it, and a request
// after the script starts a new boot. The metrics and boot.done carry the
// same figure.
func TestBootDuration(t *testing.T) {
	b, store, _, sink := newTestBooter(t, nil)
	m := metrics.New()
	b.boots = m
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "linux", Params: map[string]string{"kernel": "vmlinuz", "initrd": "initrd.img"}})
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	dhcp := func(s int, stage string) {
		b.Report(events.Step{Type: events.DHCPOffer, MAC: testMAC, Time: at(s), Stage: stage})
	}
	scriptAt := func(s int) {
		rep, err := b.Script(t.Context(), machineReq(""))
		if err != nil {
			t.Fatal(err)
		}
		b.Report(events.Step{Type: events.Script, MAC: testMAC, Time: at(s), Profile: rep.Profile, OK: true})
	}
	callback := func(s int, mac string) {
		b.Report(events.Step{Type: events.Booted, MAC: mac, Time: at(s), OK: true})
	}
	dhcp(0, "rom")
	dhcp(1, "rom") // the ROM's DHCPREQUEST after its DISCOVER
	dhcp(2, "ipxe")
	scriptAt(3)
	callback(30, testMAC)
	// A second boot by an iPXE ROM (no rom stage), never done.
	dhcp(100, "ipxe")
	scriptAt(101)
	// The same machine boots again (another profile) without calling
	// back: a new boot.
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "callbackonly"})
	dhcp(200, "ipxe")
	scriptAt(201)
	callback(260, testMAC)
	// Reset before its script: the firmware's request after iPXE's
	// begins a new boot.
	store.PutMachine(inventory.Machine{Name: "m", MACs: []string{testMAC}, Profile: "callbackonly"})
	dhcp(400, "rom")
	dhcp(402, "ipxe")
	dhcp(450, "rom")
	dhcp(452, "ipxe")
	scriptAt(453)
	callback(470, testMAC)
	// A callback without a boot seen is not a duration.
	callback(300, "52:54:00:00:00:01")

	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(w.Body)
	out := string(body)
	for _, want := range []string{
		`provisiond_boot_seconds_sum{profile="linux"} 30`,
		`provisiond_boot_seconds_count{profile="linux"} 1`,
		`provisiond_boot_seconds_sum{profile="callbackonly"} 80`,
		`provisiond_boots_done_total{on="callback",profile="callbackonly"} 2`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q", want)
		}
	}
	var secs []string
	for _, ev := range sink.evs {
		if ev.Type == events.BootDone {
			secs = append(secs, ev.Attrs["profile"]+"="+ev.Attrs["seconds"])
		}
	}
	if got := strings.Join(secs, " "); got != "linux=30.0 callbackonly=60.0 callbackonly=20.0" {
		t.Errorf("boot.done seconds: %s", got)
	}
}

// An iPXE binary delivered in full (not a size query, not a failure) makes
// the MAC's next iPXE request chained, for the chain window only.
func TestChainedAfterDelivery(t *testing.T) {
	b, _, _, _ := newTestBooter(t, nil)
	now := time.Now()
	bios := b.boot().BIOS
	b.Report(events.Step{Type: events.TFTPTransfer, MAC: testMAC, File: bios, Time: now, Attrs: map[string]string{"result": "size-query"}})
	if b.chained(testMAC, now) {
		t.Fatal("a size query counted as a delivery")
	}
	b.Report(events.Step{Type: events.TFTPTransfer, MAC: testMAC, File: "other.bin", Time: now, OK: true})
	if b.chained(testMAC, now) {
		t.Fatal("a file that is not an iPXE binary counted")
	}
	b.Report(events.Step{Type: events.TFTPTransfer, MAC: testMAC, File: bios, Time: now, OK: true})
	if !b.chained(testMAC, now.Add(time.Second)) {
		t.Fatal("delivered iPXE binary not seen")
	}
	if b.chained(testMAC, now.Add(chainWindow)) {
		t.Fatal("chained after the window")
	}
}

// A flood of MACs that never finish their boots does not grow the tracker
// past its bound.
func TestTracksBounded(t *testing.T) {
	b, _, _, _ := newTestBooter(t, nil)
	for i := range maxTracks + 500 {
		b.Report(events.Step{Type: events.DHCPOffer, MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff), Stage: "rom"})
	}
	if n := b.tracks.Len(); n > maxTracks {
		t.Fatalf("%d MACs tracked, bound %d", n, maxTracks)
	}
}
