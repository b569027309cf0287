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

// maxRepeatMACs bounds the MACs remembered; making room drops those older
// than repeatWindow first.
const maxRepeatMACs = 65536

// answer is what a DHCP step said: the file offered, or why the client was
// not answered.
type answer struct {
	ignored bool
	text    string
}

// lastAnswers are a MAC's last answers on the DHCP port (0) and the proxy
// port (1): when the answer was last a step, when it was last given, and
// how many answers since that step were not steps.
type lastAnswers [2]struct {
	answer
	reported, given time.Time
	folded          int
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
	return &repeats{m: bounded.New[lastAnswers](maxRepeatMACs, repeatWindow)}
}

// seen reports whether answer a to mac on that port repeats the one before
// it: the same answer, given less than repeatWindow before now, in a run
// that was last a step less than floodStep before now. A run of answers
// each less than a second after the one before is one step a minute
// however long it lasts. When a is not a repeat it is remembered as a step
// made now, and folded is how many answers to mac on that port since its
// last step were not steps.
func (r *repeats) seen(mac string, proxyPort bool, a answer, now time.Time) (repeat bool, folded int) {
	slot := 0
	if proxyPort {
		slot = 1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	last, _, _ := r.m.Get(mac)
	l := &last[slot]
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

// within reports whether now is at or after t and less than d after it.
func within(now, t time.Time, d time.Duration) bool {
	return now.Sub(t) >= 0 && now.Sub(t) < d
}
