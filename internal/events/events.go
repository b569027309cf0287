// Package events defines the steps of a machine's boot timeline and a small
// in-memory broker that lets clients follow them live.
package events

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Event types. The protocol servers and the API emit these; the inventory
// stores them per machine.
const (
	// DHCPOffer: provisiond answered a PXE client (attrs: port, file, arch, ipxe).
	DHCPOffer = "dhcp.offer"
	// DHCPIgnored: a PXE client got no answer (attrs: reason, arch).
	DHCPIgnored = "dhcp.ignored"
	// IPv6RA: iPXE's router solicitation, which no router answered, got
	// provisiond's advertisement of no router (attrs: interface, to, why).
	IPv6RA = "ipv6.ra"
	// TFTPTransfer: a file went out over TFTP (attrs: file, bytes, blksize, duration, ok, error).
	TFTPTransfer = "tftp.transfer"
	// Script: an iPXE script was served (attrs: profile, stage).
	Script = "http.script"
	// ScriptError: the machine's script could not be rendered (attrs: profile, error).
	ScriptError = "http.script_error"
	// Asset: a boot asset was served over HTTP (attrs: file, bytes, duration, status).
	Asset = "http.asset"
	// Booted: the booted OS called back.
	Booted = "boot.callback"
	// MachineChanged: an operator changed the machine record (attrs: change).
	MachineChanged = "machine.changed"
	// FactsReported: the agent or the commissioning OS reported the
	// machine's hardware (attrs: host or source=commission, filled,
	// drift, cpus, memory_gb, dimms, disks, nics, then: poweroff|hold,
	// matches: a record the facts match, for machine adopt).
	FactsReported = "facts.reported"
	// CommissionStep: a step of the commissioning OS did not do all it
	// should (attrs: step, detail, seconds); the report follows.
	CommissionStep = "commission.step"
	// CommissionFailed: a commissioning machine did not report within
	// commission.report_within of getting its image (attrs: reason,
	// within).
	CommissionFailed = "commission.failed"
	// BootDone: a boot finished by its profile's rule (attrs: profile, on
	// script|assets|callback, seconds since the boot's first DHCP answer).
	BootDone = "boot.done"
	// OnceConsumed: a one-shot assignment was used up (attrs: profile, then, on).
	OnceConsumed = "assignment.consumed"
	// BootWaiting is a boot told to wait and ask again: what it needs is
	// not ready (a download in progress or failed); reason says which.
	BootWaiting = "boot.waiting"
	// SecretRefused: a boot-plane request got no secret, nonce or state
	// change (attrs: what, reason, detail, client); at most one per MAC
	// every few seconds is stored, all are counted.
	SecretRefused = "boot.secret_refused"
	// SpoofAlarm: a secret-bearing response was asked for a second time
	// in one boot, or a nonce was used twice: another host may be using
	// the machine's MAC (attrs as SecretRefused).
	SpoofAlarm = "boot.spoof_alarm"
	// BMCPower: a power action through the BMC (attrs: action, before,
	// state, note, result, error, seconds).
	BMCPower = "bmc.power"
	// BMCBootDevice: the next boot device was set through the BMC (attrs:
	// device, persistent, efi, readback: the flags the BMC reports after
	// the call, note: a 60 s timeout the BMC kept, result, error, seconds).
	BMCBootDevice = "bmc.bootdev"
	// BMCInventory: the BMC's hardware inventory was read (attrs: filled,
	// result, error).
	BMCInventory = "bmc.inventory"
	// BMCLocate: the machine's locator LED was set blinking or off
	// through its enclosure's OA (attrs: state, result, error).
	BMCLocate = "bmc.locate"
	// SlurmResume: slurmctld's power saving asked for the node (attrs:
	// node, by, why, result: queued, then ok or error with error,
	// state, seconds once the power-on was tried).
	SlurmResume = "slurm.resume"
	// SlurmResumed: a resumed node's boot reached its booted callback
	// (attrs: node, seconds since the resume, status).
	SlurmResumed = "slurm.resumed"
	// SlurmSuspend: slurmctld let the node go (attrs: node, by, why, how:
	// soft or hard, seconds, result, error).
	SlurmSuspend = "slurm.suspend"
	// SlurmResumeFailed: slurmctld gave up on the node's resume
	// (ResumeTimeout) and marked it down (attrs: node, why, power_off,
	// seconds, result error).
	SlurmResumeFailed = "slurm.resume_failed"
)

// Event is one step in a machine's boot timeline.
type Event struct {
	// Seq is a global, increasing sequence number assigned by the store.
	Seq uint64 `json:"seq" yaml:"seq"`
	// Time is when the step happened.
	Time time.Time `json:"time" yaml:"time"`
	// Machine is the machine's name; the store fills it in from MAC.
	Machine string `json:"machine,omitempty" yaml:"machine,omitempty"`
	// MAC is the NIC the step concerns, when known.
	MAC string `json:"mac,omitempty" yaml:"mac,omitempty"`
	// Type is one of the constants above.
	Type string `json:"type" yaml:"type"`
	// Attrs are step details (file, bytes, port, ...).
	Attrs map[string]string `json:"attrs,omitempty" yaml:"attrs,omitempty"`
	// Facts, when set, are hardware facts the step revealed; the store
	// merges them into the machine record and does not keep them here.
	Facts map[string]string `json:"-" yaml:"-"`
}

// Details renders the step's attributes for people: key=value pairs in
// key order, values with blanks quoted.
func (ev Event) Details() string {
	keys := make([]string, 0, len(ev.Attrs))
	for k := range ev.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		v := ev.Attrs[k]
		if strings.ContainsAny(v, " \t") {
			v = strconv.Quote(v)
		}
		b.WriteString(k + "=" + v)
	}
	return b.String()
}

// Sink receives events for the timeline (the recorder, the metrics): the
// steps the servers report, rendered (Step.Event), and the API's and the
// boot tracker's own. Emit must not block for long: implementations queue.
type Sink interface {
	Emit(ev Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

// Emit calls f.
func (f SinkFunc) Emit(ev Event) { f(ev) }

// Broker fans stored events out to live followers. The zero value is not
// usable: call NewBroker.
type Broker struct {
	mu   sync.Mutex
	subs map[chan Event]string
}

// NewBroker returns an empty broker.
func NewBroker() *Broker {
	return &Broker{subs: map[chan Event]string{}}
}

// Publish hands ev to every follower whose filter matches. A follower that
// does not keep up loses events rather than stalling the daemon.
func (b *Broker) Publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch, machine := range b.subs {
		if machine != "" && machine != ev.Machine {
			continue
		}
		select {
		case ch <- ev:
		default:
		}
	}
}

// Subscribe returns a channel of events for machine ("" for all) that is
// closed when ctx ends.
func (b *Broker) Subscribe(ctx context.Context, machine string) <-chan Event {
	ch := make(chan Event, 256)
	b.mu.Lock()
	b.subs[ch] = machine
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
		close(ch)
	}()
	return ch
}

// Relay hands a follower the events from sub that are newer than after,
// in order, and calls ping whenever interval passes in between (a stream's
// keepalive), until sub closes, ctx ends, closing closes, or send or ping
// fails (the client went away).
func Relay(ctx context.Context, sub <-chan Event, after uint64, closing <-chan struct{}, interval time.Duration, send func(Event) error, ping func() error) {
	keepalive := time.NewTicker(interval)
	defer keepalive.Stop()
	last := after
	for {
		select {
		case ev, ok := <-sub:
			if !ok {
				return
			}
			if ev.Seq <= last {
				continue
			}
			last = ev.Seq
			if send(ev) != nil {
				return
			}
		case <-keepalive.C:
			if ping() != nil {
				return
			}
		case <-ctx.Done():
			return
		case <-closing:
			return
		}
	}
}
