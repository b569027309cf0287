package pxe

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// sourceLimiter holds a token bucket per client address, so one host
// cannot take the boot endpoints for itself. It forgets addresses idle for
// a minute; with maxSources addresses busy at once, newcomers share one
// bucket.
type sourceLimiter struct {
	limit rate.Limit
	burst int

	mu       sync.Mutex
	bySource map[netip.Addr]*sourceBucket
	overflow *rate.Limiter
}

type sourceBucket struct {
	l    *rate.Limiter
	seen time.Time
}

// maxSources bounds the addresses followed one by one.
const maxSources = 4096

func newSourceLimiter(perSecond float64, burst int) *sourceLimiter {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = 1
	}
	return &sourceLimiter{limit: rate.Limit(perSecond), burst: burst, bySource: map[netip.Addr]*sourceBucket{},
		overflow: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// allow takes a token for src; false means src is over its rate. A nil
// limiter allows everything.
func (s *sourceLimiter) allow(src netip.Addr, now time.Time) bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	b, ok := s.bySource[src]
	if !ok {
		if len(s.bySource) >= maxSources {
			for k, v := range s.bySource {
				if now.Sub(v.seen) > time.Minute {
					delete(s.bySource, k)
				}
			}
		}
		if len(s.bySource) >= maxSources {
			s.mu.Unlock()
			return s.overflow.AllowN(now, 1)
		}
		b = &sourceBucket{l: rate.NewLimiter(s.limit, s.burst)}
		s.bySource[src] = b
	}
	b.seen = now
	s.mu.Unlock()
	return b.l.AllowN(now, 1)
}
