package booter

import (
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/bootguard"
)

// Refusals and scripts served outside a boot are steps anyone can cause
// on a machine's timeline. Each kind is stored at most once per noteEvery
// per MAC, and at most notesPerHour per MAC and class, so a flood cannot
// push a machine's real history out of its timeline. The classes keep
// strangers' noise (a source that is not the machine) from using up the
// budget of refusals from the machine's own address, or of spoof alarms.
// Every refusal is counted in the metrics all the same.
const (
	noteEvery    = 10 * time.Second
	notesPerHour = 30
	// maxNoted bounds the kinds and MACs followed; past it, steps are
	// counted, not stored.
	maxNoted = 4096
)

// stepBudget decides which of those steps are stored. The zero value is
// ready to use.
type stepBudget struct {
	mu     sync.Mutex
	last   map[string]time.Time   // MAC, kind -> when such a step was last stored
	hourly map[string]*noteBudget // MAC, class -> its steps this hour
}

// noteBudget counts one MAC's stored steps of a class in the current hour.
type noteBudget struct {
	since time.Time
	n     int
}

// take says whether a step of kind (what, reason) for mac may be stored
// at now, and takes it from the budget.
func (s *stepBudget) take(mac, what, reason string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last, s.hourly = map[string]time.Time{}, map[string]*noteBudget{}
	}
	key := mac + " " + what + " " + reason
	if t, ok := s.last[key]; ok && now.Sub(t) < noteEvery {
		return false
	}
	class := "machine"
	switch reason {
	case bootguard.ReasonSource, "unbound":
		class = "stranger"
	case bootguard.ReasonAgain:
		class = "alarm"
	}
	hr := s.hourly[mac+" "+class]
	if hr == nil || now.Sub(hr.since) >= time.Hour {
		if hr == nil && !s.room(len(s.hourly), now) {
			return false
		}
		hr = &noteBudget{since: now}
		s.hourly[mac+" "+class] = hr
	}
	if hr.n >= notesPerHour || !s.room(len(s.last), now) {
		return false
	}
	hr.n++
	s.last[key] = now
	return true
}

// room says whether a map of n entries may grow, forgetting spent limits
// first when it is full. Called with mu held.
func (s *stepBudget) room(n int, now time.Time) bool {
	if n < maxNoted {
		return true
	}
	for k, t := range s.last {
		if now.Sub(t) >= noteEvery {
			delete(s.last, k)
		}
	}
	for k, h := range s.hourly {
		if now.Sub(h.since) >= time.Hour {
			delete(s.hourly, k)
		}
	}
	return len(s.last) < maxNoted && len(s.hourly) < maxNoted
}
