package web

import (
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// A timeline folds into what the dashboard says of the machine: power from
// the BMC and from boot steps, booting until its profile's rule says done,
// stalled when the steps stop, failed on an error.
func TestDeriveStatus(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	ev := func(sec int, typ string, attrs ...string) events.Event {
		e := events.Event{Seq: uint64(sec + 1), Time: t0.Add(time.Duration(sec) * time.Second), Type: typ, Attrs: map[string]string{}}
		for i := 0; i+1 < len(attrs); i += 2 {
			e.Attrs[attrs[i]] = attrs[i+1]
		}
		return e
	}
	stall := 10 * time.Minute
	cases := []struct {
		name      string
		evs       []events.Event
		at        time.Duration
		state     string
		power     string
		textStart string
	}{
		{"nothing", nil, 0, StateIdle, "", "no steps yet"},
		{"record change only", []events.Event{ev(0, events.MachineChanged)}, time.Minute, StateIdle, "", "idle"},
		{"powered on", []events.Event{ev(0, events.BMCBootDevice, "result", "ok"), ev(1, events.BMCPower, "action", "cycle", "before", "off", "state", "on", "result", "ok")}, time.Minute, StateOn, "on", "powered on"},
		{"booting", []events.Event{ev(0, events.DHCPOffer), ev(2, events.Script, "profile", "talos")}, 30 * time.Second, StateBooting, "on", "booting: http.script"},
		{"stalled", []events.Event{ev(0, events.DHCPOffer)}, 11 * time.Minute, StateStalled, "on", "stalled at dhcp.offer for 11 min"},
		{"booted", []events.Event{ev(0, events.DHCPOffer), ev(2, events.Script), ev(5, events.BootDone, "profile", "talos")}, time.Hour, StateBooted, "on", "booted talos"},
		{"off after booted", []events.Event{ev(5, events.BootDone, "profile", "talos"), ev(9, events.BMCPower, "action", "off", "before", "on", "state", "off", "result", "ok")}, time.Hour, StateOff, "off", "powered off"},
		{"power on when on changes nothing", []events.Event{ev(5, events.BootDone, "profile", "x"), ev(9, events.BMCPower, "action", "on", "before", "on", "state", "on", "result", "ok")}, time.Minute, StateBooted, "on", "booted x"},
		{"BMC error", []events.Event{ev(0, events.BMCPower, "action", "on", "result", "error", "error", "timeout")}, time.Minute, StateFailed, "", "bmc.power failed"},
		{"script error", []events.Event{ev(0, events.DHCPOffer), ev(1, events.ScriptError, "error", "no kernel")}, time.Minute, StateFailed, "on", "http.script_error failed"},
		{"old steps replayed are skipped", []events.Event{ev(5, events.BootDone), ev(1, events.DHCPOffer)}, time.Minute, StateBooted, "on", "booted"},
	}
	for _, c := range cases {
		st := deriveStatus(c.evs)
		now := t0.Add(c.at)
		if got := st.at(now, stall); got != c.state {
			t.Errorf("%s: state %s, want %s", c.name, got, c.state)
		}
		if st.Power != c.power {
			t.Errorf("%s: power %q, want %q", c.name, st.Power, c.power)
		}
		if got := st.text(now, stall); len(got) < len(c.textStart) || got[:len(c.textStart)] != c.textStart {
			t.Errorf("%s: text %q, want it to start %q", c.name, got, c.textStart)
		}
	}
}

// The way back after signing in stays on the dashboard.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/machines/BLD-006": "/ui/machines/BLD-006",
		"":                     "/ui/",
		"https://evil.example": "/ui/",
		"//evil.example/ui/":   "/ui/",
		"/ui/\\evil":           "/ui/",
		"/api/v1/backup":       "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDurations(t *testing.T) {
	for d, want := range map[time.Duration]string{
		42 * time.Millisecond:         "+0.042 s",
		12300 * time.Millisecond:      "+12.3 s",
		4*time.Minute + 5*time.Second: "+4 min 5 s",
		3*time.Hour + 5*time.Minute:   "+3 h 5 min",
		-time.Second:                  "",
	} {
		if got := delta(d); got != want {
			t.Errorf("delta(%v) = %q, want %q", d, got, want)
		}
	}
}
