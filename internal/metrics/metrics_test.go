package metrics

import (
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

// Boots finished are observed by profile; every event is counted by type;
// values read at scrape time appear as registered. (How long a boot took
// is the boot tracker's: internal/boot/booter.)
func TestBootsAndEvents(t *testing.T) {
	m := New()
	m.Func("provisiond_tftp_active_transfers", "TFTP transfers in flight.", func() float64 { return 3 })
	m.Func("provisiond_events_dropped_total", "Events dropped.", func() float64 { return 7 })
	m.BootDone("linux", "callback", 30*time.Second)
	m.BootDone("talos", "assets", time.Minute)
	for range 3 {
		m.Emit(events.Event{Type: events.Booted})
	}
	out := scrape(t, m)
	for _, want := range []string{
		`provisiond_boot_seconds_sum{profile="linux"} 30`,
		`provisiond_boot_seconds_count{profile="linux"} 1`,
		`provisiond_boot_seconds_sum{profile="talos"} 60`,
		`provisiond_boots_done_total{on="assets",profile="talos"} 1`,
		`provisiond_tftp_active_transfers 3`,
		`provisiond_events_dropped_total 7`,
		`provisiond_events_total{type="boot.callback"} 3`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q", want)
		}
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
