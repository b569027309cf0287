package events

import (
	"fmt"
	"strings"
	"time"
)

// Machine states, derived from a machine's timeline: the API returns them,
// the dashboard shows and filters by them.
const (
	StateIdle    = "idle"    // nothing on the timeline says what it is doing
	StateOn      = "on"      // powered on through the BMC, no boot step since
	StateOff     = "off"     // powered off through the BMC
	StateBooting = "booting" // boot steps are coming in
	StateStalled = "stalled" // booting, but no new step for a while
	StateBooted  = "booted"  // the last boot finished by its profile's rule
	StateFailed  = "failed"  // the last step was an error
)

// StallAfter is how long a boot may go without a new step before it is
// stalled (a machine stuck in PXE, a kernel that never asks for its initrd).
const StallAfter = 10 * time.Minute

// States lists the states in the order the dashboard shows them.
func States() []string {
	return []string{StateBooting, StateStalled, StateFailed, StateBooted, StateOn, StateOff, StateIdle}
}

// Status is what a machine's timeline says about it now.
type Status struct {
	State string
	// Power is on, off or "" (not known): from BMC power actions, and
	// "on" from any boot step.
	Power string
	// Since is when State began; Step is the step that set it.
	Since time.Time
	Step  Event
	// Last is the newest step of any kind; Seq its sequence number.
	Last Event
	// Slurm is the newest step of Slurm's power saving (zero: none).
	Slurm Event
}

// DeriveStatus folds a machine's timeline (oldest first) into its status.
func DeriveStatus(evs []Event) Status {
	st := Status{State: StateIdle}
	for _, ev := range evs {
		st.Apply(ev)
	}
	return st
}

// Apply moves the status on by one step.
func (st *Status) Apply(ev Event) {
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
	failed := ev.Failed()
	switch ev.Type {
	case SlurmResume, SlurmResumed, SlurmSuspend, SlurmResumeFailed:
		st.Slurm = ev
	}
	switch ev.Type {
	case BMCPower:
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
	case BMCBootDevice, BMCInventory, BMCLocate:
		if failed {
			set(StateFailed)
		}
	case DHCPOffer, TFTPTransfer, Script, Asset, BootWaiting:
		st.Power = "on"
		if st.State != StateBooting {
			st.Since = ev.Time
		}
		st.State, st.Step = StateBooting, ev
	case Booted, BootDone:
		st.Power = "on"
		set(StateBooted)
	case ScriptError, CommissionFailed, SlurmResumeFailed:
		set(StateFailed)
	case FactsReported:
		// The commissioning OS powers off after its report, unless held.
		if ev.Attrs["source"] == "commission" && ev.Attrs["then"] == "poweroff" {
			st.Power = "off"
			set(StateOff)
		}
	}
}

// At returns the state as of now: a boot without a new step for
// stallAfter is stalled.
func (st *Status) At(now time.Time, stallAfter time.Duration) string {
	if st.State == StateBooting && now.Sub(st.Step.Time) > stallAfter {
		return StateStalled
	}
	return st.State
}

// Text says the state in a few words for people.
func (st *Status) Text(now time.Time, stallAfter time.Duration) string {
	switch st.At(now, stallAfter) {
	case StateBooting:
		return fmt.Sprintf("booting: %s %s", st.Step.Type, ago(now, st.Step.Time))
	case StateStalled:
		return fmt.Sprintf("stalled at %s for %s", st.Step.Type, Span(now.Sub(st.Step.Time)))
	case StateBooted:
		if p := st.Step.Attrs["profile"]; p != "" {
			return fmt.Sprintf("booted %s %s", p, ago(now, st.Step.Time)) + st.bySlurm()
		}
		return "booted " + ago(now, st.Step.Time)
	case StateFailed:
		msg := st.Step.Attrs["error"]
		if msg == "" {
			msg = st.Step.Attrs["reason"]
		}
		if len(msg) > 80 {
			msg = msg[:77] + "..."
		}
		if strings.HasSuffix(st.Step.Type, ".failed") || strings.HasSuffix(st.Step.Type, "_failed") {
			return fmt.Sprintf("%s %s: %s", st.Step.Type, ago(now, st.Step.Time), msg)
		}
		return fmt.Sprintf("%s failed %s: %s", st.Step.Type, ago(now, st.Step.Time), msg)
	case StateOn:
		return "powered on " + ago(now, st.Since) + st.bySlurm()
	case StateOff:
		if st.Step.Type == FactsReported {
			return "commissioned, powered off " + ago(now, st.Since)
		}
		return "powered off " + ago(now, st.Since) + st.bySlurm()
	}
	if st.Last.Type == "" {
		return "no steps yet"
	}
	return "idle"
}

// bySlurm says why Slurm's power saving turned the machine on or off, when
// its last request came shortly before the power step that set the state.
func (st *Status) bySlurm() string {
	if st.Slurm.Type == "" || st.Step.Time.Sub(st.Slurm.Time) > 5*time.Minute || st.Slurm.Time.Sub(st.Step.Time) > 5*time.Minute {
		return ""
	}
	why := st.Slurm.Attrs["why"]
	if why == "" {
		return ""
	}
	return " by Slurm (" + why + ")"
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
	return Span(d) + " ago"
}

// Span writes a duration as people read it: 12 s, 4 min, 3 h 5 min, 2 d.
func Span(d time.Duration) string {
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

// Failed reports whether the step is a failure (result=error, or a
// script that could not be rendered).
func (ev Event) Failed() bool { return ev.Attrs["result"] == "error" || ev.Type == ScriptError }
