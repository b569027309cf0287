package pxe

import (
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/bounded"
)

// repeatWindow is how long an identical DHCP answer counts as a repeat.
// Firmware retries are seconds apart (PXE: 4, 8, 16, 32 s), so no boot
// loses a step.
const repeatWindow = time.Second

// maxRepeatMACs bounds the MACs remembered; making room drops those older
// than repeatWindow first.
const maxRepeatMACs = 65536

// answer is what a DHCP step said: the file offered, or why the client was
// not answered.
type answer struct {
	ignored bool
	text    string
}

// lastAnswers are a MAC's last reported answers on the DHCP port (0) and
// the proxy port (1), and when.
type lastAnswers [2]struct {
	answer
	at time.Time
}

// repeats remembers each MAC's last reported answer per port, so an answer
// that repeats one reported within repeatWindow (a retransmission, a
// client flooding DISCOVERs) is counted rather than reported again: a
// flood does not become a flood of steps, timeline writes and log lines.
type repeats struct {
	mu sync.Mutex
	m  *bounded.Map[lastAnswers]
}

func newRepeats() *repeats {
	return &repeats{m: bounded.New[lastAnswers](maxRepeatMACs, repeatWindow)}
}

// seen reports whether a is what mac was last answered on that port less
// than repeatWindow before now; if not, a is remembered as reported now.
func (r *repeats) seen(mac string, proxyPort bool, a answer, now time.Time) bool {
	slot := 0
	if proxyPort {
		slot = 1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	last, _, _ := r.m.Get(mac)
	if l := last[slot]; l.answer == a && !l.at.IsZero() && now.Sub(l.at) >= 0 && now.Sub(l.at) < repeatWindow {
		return true
	}
	last[slot].answer, last[slot].at = a, now
	r.m.Put(mac, last, now, now)
	return false
}
