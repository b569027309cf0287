package events

import (
	"testing"
	"time"
)

// A timeline folds into what the dashboard says of the machine: power from
// the BMC and from boot steps, booting until its profile's rule says done,
// stalled when the steps stop, failed on an error.
func TestDeriveStatus(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	ev := func(sec int, typ string, attrs ...string) Event {
		e := Event{Seq: uint64(sec + 1), Time: t0.Add(time.Duration(sec) * time.Second), Type: typ, Attrs: map[string]string{}}
		for i := 0; i+1 < len(attrs); i += 2 {
			e.Attrs[attrs[i]] = attrs[i+1]
		}
		return e
	}
	stall := 10 * time.Minute
	cases := []struct {
		name      string
		evs       []Event
		at        time.Duration
		state     string
		power     string
		textStart string
	}{
		{"nothing", nil, 0, StateIdle, "", "no steps yet"},
		{"record change only", []Event{ev(0, MachineChanged)}, time.Minute, StateIdle, "", "idle"},
		{"powered on", []Event{ev(0, BMCBootDevice, "result", "ok"), ev(1, BMCPower, "action", "cycle", "before", "off", "state", "on", "result", "ok")}, time.Minute, StateOn, "on", "powered on"},
		{"booting", []Event{ev(0, DHCPOffer), ev(2, Script, "profile", "talos")}, 30 * time.Second, StateBooting, "on", "booting: http.script"},
		{"stalled", []Event{ev(0, DHCPOffer)}, 11 * time.Minute, StateStalled, "on", "stalled at dhcp.offer for 11 min"},
		{"booted", []Event{ev(0, DHCPOffer), ev(2, Script), ev(5, BootDone, "profile", "talos")}, time.Hour, StateBooted, "on", "booted talos"},
		{"off after booted", []Event{ev(5, BootDone, "profile", "talos"), ev(9, BMCPower, "action", "off", "before", "on", "state", "off", "result", "ok")}, time.Hour, StateOff, "off", "powered off"},
		{"power on when on changes nothing", []Event{ev(5, BootDone, "profile", "x"), ev(9, BMCPower, "action", "on", "before", "on", "state", "on", "result", "ok")}, time.Minute, StateBooted, "on", "booted x"},
		{"BMC error", []Event{ev(0, BMCPower, "action", "on", "result", "error", "error", "timeout")}, time.Minute, StateFailed, "", "bmc.power failed"},
		{"script error", []Event{ev(0, DHCPOffer), ev(1, ScriptError, "error", "no kernel")}, time.Minute, StateFailed, "on", "http.script_error failed"},
		{"commissioned", []Event{ev(5, BootDone, "profile", "commission"), ev(30, FactsReported, "source", "commission", "then", "poweroff")}, time.Minute, StateOff, "off", "commissioned, powered off"},
		{"commissioned, held", []Event{ev(5, BootDone, "profile", "commission"), ev(30, FactsReported, "source", "commission", "then", "hold")}, time.Minute, StateBooted, "on", "booted commission"},
		{"commissioning failed", []Event{ev(5, BootDone, "profile", "commission"), ev(65, CommissionFailed, "reason", "no report within 1m0s")}, 2 * time.Minute, StateFailed, "on", "commission.failed 55 s ago: no report"},
		{"old steps replayed are skipped", []Event{ev(5, BootDone), ev(1, DHCPOffer)}, time.Minute, StateBooted, "on", "booted"},
	}
	for _, c := range cases {
		st := DeriveStatus(c.evs)
		now := t0.Add(c.at)
		if got := st.At(now, stall); got != c.state {
			t.Errorf("%s: state %s, want %s", c.name, got, c.state)
		}
		if st.Power != c.power {
			t.Errorf("%s: power %q, want %q", c.name, st.Power, c.power)
		}
		if got := st.Text(now, stall); len(got) < len(c.textStart) || got[:len(c.textStart)] != c.textStart {
			t.Errorf("%s: text %q, want it to start %q", c.name, got, c.textStart)
		}
	}
}

// A machine Slurm powered on or off says so, and why; a resume Slurm gave
// up on is a failure.
func TestStatusBySlurm(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
	ev := func(sec int, typ string, attrs ...string) Event {
		e := Event{Seq: uint64(sec + 1), Time: t0.Add(time.Duration(sec) * time.Second), Type: typ, Attrs: map[string]string{}}
		for i := 0; i+1 < len(attrs); i += 2 {
			e.Attrs[attrs[i]] = attrs[i+1]
		}
		return e
	}
	evs := []Event{
		ev(0, SlurmResume, "why", "power saving: Slurm wants the node for job 12", "result", "queued"),
		ev(2, BMCPower, "action", "cycle", "before", "off", "state", "on", "result", "ok"),
		ev(3, SlurmResume, "why", "power saving: Slurm wants the node for job 12", "result", "ok"),
	}
	st := DeriveStatus(evs)
	if got := st.Text(t0.Add(time.Minute), StallAfter); got != "powered on 58 s ago by Slurm (power saving: Slurm wants the node for job 12)" {
		t.Errorf("after a resume: %q", got)
	}
	evs = append(evs, ev(600, BMCPower, "action", "off", "before", "on", "state", "off", "result", "ok"),
		ev(601, SlurmSuspend, "why", "power saving: idle for SuspendTime (SuspendProgram)", "how", "hard", "result", "ok"))
	st = DeriveStatus(evs)
	if got := st.Text(t0.Add(11*time.Minute), StallAfter); got != "powered off 1 min ago by Slurm (power saving: idle for SuspendTime (SuspendProgram))" {
		t.Errorf("after a suspend: %q", got)
	}
	// A power-on long after Slurm's last request is not Slurm's.
	st.Apply(ev(2000, BMCPower, "action", "on", "before", "off", "state", "on", "result", "ok"))
	if got := st.Text(t0.Add(2001*time.Second), StallAfter); got != "powered on 1 s ago" {
		t.Errorf("an operator's power-on: %q", got)
	}
	st.Apply(ev(3000, SlurmResumeFailed, "result", "error", "error", "Slurm marked the node down: it did not register in time"))
	if got := st.At(t0.Add(3001*time.Second), StallAfter); got != StateFailed {
		t.Errorf("after a failed resume: %s", got)
	}
	if got := st.Text(t0.Add(3001*time.Second), StallAfter); got != "slurm.resume_failed 1 s ago: Slurm marked the node down: it did not register in time" {
		t.Errorf("failed resume text: %q", got)
	}
}
