package events

import (
	"maps"
	"time"
)

// Step is a boot step as a protocol server or the BMC service reports it:
// the typed facts the boot tracker acts on, and the details the timeline
// keeps. Event renders it for the timeline.
type Step struct {
	// Type is one of the event types.
	Type string
	// MAC is the NIC the step concerns (boot steps); Machine the machine
	// (BMC steps, which know no NIC).
	MAC, Machine string
	// Time is when the step happened (zero: when it is reported).
	Time time.Time
	// Stage is who asked for a DHCP answer: "rom" (the firmware's PXE),
	// "http" (UEFI HTTP boot) or "ipxe".
	Stage string
	// Continues marks a DHCP answer to provisiond's own iPXE, chained
	// moments ago: it continues a boot rather than starting one.
	Continues bool
	// File is the file a transfer or an offer names.
	File string
	// Profile is the profile a script, file or callback belongs to.
	Profile string
	// Action is a BMC step's action (on, off, cycle, reset, ...).
	Action string
	// OK says the step succeeded: a TFTP transfer or an HTTP file that
	// went out whole, a BMC call that did what it was asked.
	OK bool
	// Attrs are the details only the timeline reads (bytes, port, ...);
	// Event adds file, profile, stage and action to them.
	Attrs map[string]string
	// Facts are hardware facts the step revealed (see Event.Facts).
	Facts map[string]string
}

// Event renders the step for the timeline: its details, with the typed
// fields under their names.
func (s Step) Event() Event {
	attrs := make(map[string]string, len(s.Attrs)+4)
	maps.Copy(attrs, s.Attrs)
	for k, v := range map[string]string{"file": s.File, "profile": s.Profile, "stage": s.Stage, "action": s.Action} {
		if v != "" {
			attrs[k] = v
		}
	}
	return Event{Time: s.Time, Machine: s.Machine, MAC: s.MAC, Type: s.Type, Attrs: attrs, Facts: s.Facts}
}

// Reporter receives the typed steps of boots: the boot tracker, behind the
// protocol servers and the BMC service. Report must not block for long.
type Reporter interface {
	Report(s Step)
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(Step)

// Report calls f.
func (f ReporterFunc) Report(s Step) { f(s) }
