package booter

import (
	"strconv"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
)

// The boot tracker. The protocol servers and the BMC service report typed
// steps (events.Step) to Report; one record per MAC, in one bounded map,
// says what that MAC's boot has done: when it began, whether it got its
// script, when it last fetched an iPXE binary in full, and the boot
// followed to done. From it the tracker decides the chainload, starts the
// boot guard's windows, ends boots by their profile's rule (boot.done),
// uses up one-shot assignments and tells the metrics how long boots took.

// BootObserver is told every boot that finished: its profile, the rule
// that ended it (script, assets, callback) and how long it took from its
// first DHCP answer.
type BootObserver interface {
	BootDone(profile, on string, took time.Duration)
}

type nopBoots struct{}

func (nopBoots) BootDone(string, string, time.Duration) {}

// track is what the tracker knows of one MAC's boot.
type track struct {
	// start is when the boot began: the firmware's first DHCP answer, or
	// iPXE's when it is not a continuation (see began).
	start time.Time
	// ipxe: iPXE has asked in this boot; a firmware request after it is
	// a new boot (the machine was reset before its script).
	ipxe bool
	// scripted: the boot got its script; any DHCP request after it is a
	// new boot (an iPXE ROM booting again).
	scripted bool
	// chained is when the MAC last fetched an iPXE binary in full.
	chained time.Time
	// follow is the boot followed until its profile's rule says it is
	// done (nil: none).
	follow *pendingBoot
	// report is a commissioning boot waiting for its report (nil: none).
	report *reportWait
}

// pendingBoot follows a boot until it is done.
type pendingBoot struct {
	machine, profile, on string
	// once is set when the boot uses up a one-shot assignment.
	once bool
	want map[string]bool
}

const (
	// maxTracks bounds the MACs tracked at once: a flood of MACs that
	// never finish their boots cannot grow the map past it.
	maxTracks = 65536
	// bootWindow is how long a boot may take from its first DHCP answer
	// to its end; a track untouched that long goes first when room is
	// needed.
	bootWindow = time.Hour
	// chainWindow is how long after delivering an iPXE binary to a MAC
	// provisiond takes that MAC's iPXE requests to come from that binary.
	chainWindow = 2 * time.Minute
)

// Report implements events.Reporter: the tracker acts on a step (storing
// it is the recorder's job; the daemon hands it to both).
func (b *Booter) Report(s events.Step) {
	if s.Time.IsZero() {
		s.Time = time.Now()
	}
	b.startGuard(s)
	if s.MAC == "" {
		return
	}
	b.mu.Lock()
	tr, _, _ := b.tracks.Get(s.MAC)
	if tr == nil {
		tr = &track{}
	}
	var done *pendingBoot
	on := ""
	switch s.Type {
	case events.DHCPOffer:
		if began(tr, s) {
			tr.start, tr.ipxe, tr.scripted = s.Time, false, false
		}
		tr.ipxe = tr.ipxe || s.Stage == "ipxe"
	case events.Script:
		if tr.start.IsZero() || s.Time.Sub(tr.start) > bootWindow {
			tr.start = s.Time // a boot whose DHCP went elsewhere
		}
		tr.scripted = true
	}
	if s.OK && b.isIPXEBinary(s.File) && (s.Type == events.TFTPTransfer || s.Type == events.Asset) {
		tr.chained = s.Time
	}
	if tr.follow != nil {
		if on = doneBy(tr.follow, s); on != "" {
			done, tr.follow = tr.follow, nil
		}
	}
	b.tracks.Put(s.MAC, tr, s.Time, time.Now())
	start := tr.start
	b.mu.Unlock()
	if done != nil {
		b.done(done, s.MAC, on, s.Time.Sub(start))
	}
}

// began reports whether a DHCP answer begins a new boot: none is under
// way, it already got its script, or it is too old; or the firmware asks
// after iPXE did. The firmware's repeated requests (DISCOVER and REQUEST,
// port 4011) and iPXE's continue the boot.
func began(tr *track, s events.Step) bool {
	return tr.start.IsZero() || tr.scripted || s.Time.Sub(tr.start) > bootWindow || (s.Stage != "ipxe" && tr.ipxe)
}

// doneBy says by which rule step s ends the followed boot pb ("" if it
// does not): its script went out, its assets were all served in full, or
// the booted OS called back.
func doneBy(pb *pendingBoot, s events.Step) string {
	switch {
	case pb.on == profile.ConsumedOnScript:
		if (s.Type == events.Script && s.Profile == pb.profile) || (s.Type == events.TFTPTransfer && s.OK) {
			return pb.on
		}
	case s.Type == events.Booted:
		return profile.ConsumedOnCallback
	case pb.on == profile.ConsumedOnAssets && s.Type == events.Asset && s.OK:
		delete(pb.want, s.File)
		if len(pb.want) == 0 {
			return pb.on
		}
	}
	return ""
}

// chained reports whether mac was sent an iPXE binary within the window.
func (b *Booter) chained(mac string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	tr, _, ok := b.tracks.Get(mac)
	return ok && !tr.chained.IsZero() && now.Sub(tr.chained) < chainWindow
}

// follow starts watching a boot of a machine in the inventory: by the
// profile's rule it is done when its script went out, when its assets were
// served in full, or on the booted callback. A done boot is a boot.done
// event in the timeline, and uses up a one-shot assignment (once).
func (b *Booter) follow(m *inventory.Machine, name, mac string, assets []string, once bool) {
	p, _ := b.profiles.Load().Get(name)
	on := p.ConsumedOn
	if on == profile.ConsumedOnAssets && len(assets) == 0 {
		on = profile.ConsumedOnScript
	}
	// A boot done on its script is done once the script went out (the
	// server's http.script or TFTP transfer step), so the timeline reads
	// in order.
	pb := &pendingBoot{machine: m.Name, profile: name, on: on, once: once, want: map[string]bool{}}
	for _, a := range assets {
		pb.want[a] = true
	}
	now := time.Now()
	b.mu.Lock()
	tr, _, _ := b.tracks.Get(mac)
	if tr == nil {
		tr = &track{}
	}
	tr.follow = pb
	b.tracks.Put(mac, tr, now, now)
	b.mu.Unlock()
}

// done records a finished boot and ends a one-shot assignment.
func (b *Booter) done(pb *pendingBoot, mac, on string, took time.Duration) {
	b.sink.Emit(events.Event{Type: events.BootDone, Machine: pb.machine, MAC: mac, Attrs: map[string]string{
		"profile": pb.profile, "on": on, "seconds": strconv.FormatFloat(took.Seconds(), 'f', 1, 64)}})
	b.boots.BootDone(pb.profile, on, took)
	if b.usesCommission(pb.profile) {
		b.awaitReport(pb.machine, mac)
	}
	if pb.once {
		b.consume(pb.machine, pb.profile, mac, on)
	}
}

func (b *Booter) consume(machine, name, mac, on string) {
	then, err := b.store.ConsumeOnce(machine, name)
	if err != nil {
		b.log.Error("ending a one-shot assignment failed", "machine", machine, "profile", name, "err", err)
		return
	}
	if then == "" {
		return
	}
	b.log.Info("one-shot assignment consumed", "machine", machine, "profile", name, "then", then)
	b.sink.Emit(events.Event{Type: events.OnceConsumed, Machine: machine, MAC: mac, Attrs: map[string]string{"profile": name, "then": then, "on": on}})
}

// startGuard tells the boot guard which boots of machines in the inventory
// start: the firmware's PXE DHCP or a NIC's iPXE ROM's (the DHCP of the
// iPXE provisiond chained into continues a boot the ROM started), or a BMC
// call that powers a machine on or points it at the network.
func (b *Booter) startGuard(s events.Step) {
	switch s.Type {
	case events.DHCPOffer:
		if _, found, err := b.store.BootSettingsByMAC(s.MAC); err != nil || (!found && !b.commissionRules().Auto) {
			// Unknown MACs have boots only when they are commissioned.
			return
		}
		if s.Continues {
			b.guard.StartIfIdle(s.MAC, "dhcp")
		} else {
			b.guard.Start(s.MAC, "dhcp")
		}
	case events.BMCPower, events.BMCBootDevice:
		if !s.OK || s.Machine == "" {
			return
		}
		if s.Type == events.BMCPower && s.Action != "on" && s.Action != "cycle" && s.Action != "reset" {
			return
		}
		m, err := b.store.Machine(s.Machine)
		if err != nil {
			return
		}
		for _, mac := range m.MACs {
			b.guard.Start(mac, "bmc")
		}
	}
}
