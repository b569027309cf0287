package web

import (
	"fmt"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// Machine states the dashboard shows and filters by, derived from the
// machine's timeline.
const (
	StateIdle    = "idle"    // nothing on the timeline says what it is doing
	StateOn      = "on"      // powered on through the BMC, no boot step since
	StateOff     = "off"     // powered off through the BMC
	StateBooting = "booting" // boot steps are coming in
	StateStalled = "stalled" // booting, but no new step for a while
	StateBooted  = "booted"  // the last boot finished by its profile's rule
	StateFailed  = "failed"  // the last step was an error
)

// States lists the states in the order the dashboard shows them.
var States = []string{StateBooting, StateStalled, StateFailed, StateBooted, StateOn, StateOff, StateIdle}

// status is what a machine's timeline says about it now.
type status struct {
	State string
	// Power is on, off or "" (not known): from BMC power actions, and
	// "on" from any boot step.
	Power string
	// Since is when State began; Step is the step that set it.
	Since time.Time
	Step  events.Event
	// Last is the newest step of any kind; Seq its sequence number.
	Last events.Event
}

// deriveStatus folds a machine's timeline (oldest first) into its status.
func deriveStatus(evs []events.Event) status {
	st := status{State: StateIdle}
	for _, ev := range evs {
		st.apply(ev)
	}
	return st
}

// apply moves the status on by one step.
func (st *status) apply(ev events.Event) {
	if ev.Seq != 0 && ev.Seq <= st.Last.Seq {
		return
	}
	st.Last = ev
	set := func(state string) {
		if st.State != state {
			st.Since = ev.Time
		}
		st.State, st.Step = state, ev
	}
	failed := ev.Attrs["result"] == "error"
	switch ev.Type {
	case events.BMCPower:
		switch {
		case failed:
			set(StateFailed)
		case ev.Attrs["state"] == "off":
			st.Power = "off"
			set(StateOff)
		case ev.Attrs["state"] == "on":
			st.Power = "on"
			if ev.Attrs["before"] != "on" || ev.Attrs["action"] == "cycle" || ev.Attrs["action"] == "reset" {
				set(StateOn)
			}
		}
	case events.BMCBootDevice, events.BMCInventory:
		if failed {
			set(StateFailed)
		}
	case events.DHCPOffer, events.TFTPTransfer, events.Script, events.Asset, events.BootWaiting:
		st.Power = "on"
		if st.State != StateBooting {
			st.Since = ev.Time
		}
		st.State, st.Step = StateBooting, ev
	case events.Booted, events.BootDone:
		st.Power = "on"
		set(StateBooted)
	case events.ScriptError:
		set(StateFailed)
	}
}

// at returns the state as of now: a boot without a new step for
// stallAfter is stalled.
func (st *status) at(now time.Time, stallAfter time.Duration) string {
	if st.State == StateBooting && now.Sub(st.Step.Time) > stallAfter {
		return StateStalled
	}
	return st.State
}

// text says the state in a few words for people.
func (st *status) text(now time.Time, stallAfter time.Duration) string {
	switch st.at(now, stallAfter) {
	case StateBooting:
		return fmt.Sprintf("booting: %s %s", st.Step.Type, ago(now, st.Step.Time))
	case StateStalled:
		return fmt.Sprintf("stalled at %s for %s", st.Step.Type, span(now.Sub(st.Step.Time)))
	case StateBooted:
		if p := st.Step.Attrs["profile"]; p != "" {
			return fmt.Sprintf("booted %s %s", p, ago(now, st.Step.Time))
		}
		return "booted " + ago(now, st.Step.Time)
	case StateFailed:
		msg := st.Step.Attrs["error"]
		if len(msg) > 80 {
			msg = msg[:77] + "..."
		}
		return fmt.Sprintf("%s failed %s: %s", st.Step.Type, ago(now, st.Step.Time), msg)
	case StateOn:
		return "powered on " + ago(now, st.Since)
	case StateOff:
		return "powered off " + ago(now, st.Since)
	}
	if st.Last.Type == "" {
		return "no steps yet"
	}
	return "idle"
}

// ago says how long before now t was ("12 s ago").
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	return span(d) + " ago"
}

// span writes a duration as people read it: 12 s, 4 min, 3 h 5 min, 2 d.
func span(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d d", int(d.Hours()/24))
}

// delta writes the time between two steps: +0.042 s, +12.3 s, +4 min 5 s.
func delta(d time.Duration) string {
	switch {
	case d < 0:
		return ""
	case d < time.Second:
		return fmt.Sprintf("+%.3f s", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("+%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("+%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	}
	return "+" + span(d)
}
