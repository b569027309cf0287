package pxe

import (
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/bounded"
)

// repeatWindow is how close together identical DHCP answers to a MAC
// must come to be one exchange. Firmware retries are seconds apart (PXE:
// 4, 8, 16, 32 s), so every retry of a boot is a step.
const repeatWindow = time.Second

// floodStep is how often a MAC that never pauses for repeatWindow (a
// client flooding DISCOVERs, a load generator) still gets a step: its
// timeline and last_seen stay current, and the step says how many
// answers it stands for.
const floodStep = time.Minute

// maxRepeatMACs bounds the MACs remembered; making room drops those not
// answered within bootingWindow first.
const maxRepeatMACs = 65536

// bootingWindow is how long after its last boot answer a MAC counts as
// booting (DHCPServer.Booting): from the firmware's PXE to iPXE's start
// takes seconds.
const bootingWindow = 2 * time.Minute

// answer is what a DHCP step said: the file offered, or why the client was
// not answered.
type answer struct {
	ignored bool
	text    string
}

// lastAnswers are a MAC's last answers on the DHCP port (0) and the proxy
// port (1): when the answer was last a step, when it was last given, and
// how many answers since that step were not steps; and when the MAC was
// last offered a boot file on either.
type lastAnswers struct {
	ports [2]struct {
		answer
		reported, given time.Time
		folded          int
	}
	offered time.Time
}

// repeats remembers each MAC's last answer per port, so an answer that
// repeats the one before it within repeatWindow (a retransmission, a
// client flooding DISCOVERs) is counted rather than reported again: a
// flood does not become a flood of steps, timeline writes and log lines,
// nor push a machine's history out of its bounded timeline.
type repeats struct {
	mu sync.Mutex
	m  *bounded.Map[lastAnswers]
}

func newRepeats() *repeats {
	return &repeats{m: bounded.New[lastAnswers](maxRepeatMACs, bootingWindow)}
}

// seen reports whether answer a to mac on that port repeats the one before
// it: the same answer, given less than repeatWindow before now, in a run
// that was last a step less than floodStep before now. A run of answers
// each less than a second after the one before is one step a minute
// however long it lasts. When a is not a repeat it is remembered as a step
// made now, and folded is how many answers to mac on that port since its
// last step were not steps. An answer that is not an ignore marks mac as
// offered a boot now (booting).
func (r *repeats) seen(mac string, proxyPort bool, a answer, now time.Time) (repeat bool, folded int) {
	slot := 0
	if proxyPort {
		slot = 1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	last, _, _ := r.m.Get(mac)
	if !a.ignored {
		last.offered = now
	}
	l := &last.ports[slot]
	if l.answer == a && !l.given.IsZero() && within(now, l.given, repeatWindow) && within(now, l.reported, floodStep) {
		l.given = now
		l.folded++
		r.m.Put(mac, last, now, now)
		return true, 0
	}
	folded = l.folded
	l.answer, l.reported, l.given, l.folded = a, now, now, 0
	r.m.Put(mac, last, now, now)
	return false, folded
}

// booting reports whether mac was offered a boot less than bootingWindow
// before now.
func (r *repeats) booting(mac string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	last, _, ok := r.m.Get(mac)
	return ok && within(now, last.offered, bootingWindow)
}

// within reports whether now is at or after t and less than d after it.
func within(now, t time.Time, d time.Duration) bool {
	return now.Sub(t) >= 0 && now.Sub(t) < d
}
