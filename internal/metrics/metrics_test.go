package metrics

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(w.Body)
	return string(b)
}

// A boot lasts from the firmware's first DHCP request to the callback; the
// iPXE request in between continues it, and a request after the script
// starts a new boot.
func TestBootDuration(t *testing.T) {
	m := New()
	m.Func("provisiond_tftp_active_transfers", "TFTP transfers in flight.", func() float64 { return 3 })
	m.Func("provisiond_events_dropped_total", "Events dropped.", func() float64 { return 7 })
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	mac := "52:54:00:12:34:56"
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, ev := range []events.Event{
		{Type: events.DHCPOffer, MAC: mac, Time: at(0), Attrs: map[string]string{"stage": "rom"}},
		{Type: events.DHCPOffer, MAC: mac, Time: at(2), Attrs: map[string]string{"stage": "ipxe"}},
		{Type: events.Script, MAC: mac, Time: at(3), Attrs: map[string]string{"profile": "linux"}},
		{Type: events.Booted, MAC: mac, Time: at(30)},
		// A second boot by an iPXE ROM (no rom stage).
		{Type: events.DHCPOffer, MAC: mac, Time: at(100), Attrs: map[string]string{"stage": "ipxe"}},
		{Type: events.Script, MAC: mac, Time: at(101), Attrs: map[string]string{"profile": "linux"}},
		// The same machine boots again without calling back: a new boot.
		{Type: events.DHCPOffer, MAC: mac, Time: at(200), Attrs: map[string]string{"stage": "ipxe"}},
		{Type: events.Script, MAC: mac, Time: at(201), Attrs: map[string]string{"profile": "talos"}},
		{Type: events.Booted, MAC: mac, Time: at(260)},
		// A callback without a boot seen is not a duration.
		{Type: events.Booted, MAC: "52:54:00:00:00:01", Time: at(300)},
	} {
		m.Emit(ev)
	}
	out := scrape(t, m)
	for _, want := range []string{
		`provisiond_boot_seconds_sum{profile="linux"} 30`,
		`provisiond_boot_seconds_count{profile="linux"} 1`,
		`provisiond_boot_seconds_sum{profile="talos"} 60`,
		`provisiond_tftp_active_transfers 3`,
		`provisiond_events_dropped_total 7`,
		`provisiond_events_total{type="boot.callback"} 3`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q", want)
		}
	}
}

// A flood of MACs that never call back does not grow the followed boots
// past maxBoots.
func TestBootsBounded(t *testing.T) {
	m := New()
	for i := range maxBoots + 500 {
		m.Emit(events.Event{Type: events.DHCPOffer, MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), Attrs: map[string]string{"stage": "rom"}})
	}
	if n := m.boots.Len(); n > maxBoots {
		t.Fatalf("%d boots followed, bound %d", n, maxBoots)
	}
}

func TestServerMetrics(t *testing.T) {
	m := New()
	m.DHCP("discover", "offer")
	m.DHCP("discover", "ignored_non_pxe")
	m.TFTP("ok", 1000, time.Second)
	m.TFTP("busy", 0, 0)
	m.Dropped("tftp", "max_transfers")
	m.HTTP("asset", 200, 5000, time.Second)
	m.BMC("power", "timeout", 30*time.Second)
	out := scrape(t, m)
	for _, want := range []string{
		`provisiond_dhcp_requests_total{decision="offer",type="discover"} 1`,
		`provisiond_tftp_bytes_total 1000`,
		`provisiond_tftp_transfers_total{result="busy"} 1`,
		`provisiond_dropped_total{reason="max_transfers",server="tftp"} 1`,
		`provisiond_http_boot_bytes_total{kind="asset"} 5000`,
		`provisiond_bmc_calls_total{op="power",result="timeout"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q", want)
		}
	}
}
