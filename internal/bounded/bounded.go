// Package bounded keeps per-key state in memory (per MAC: a boot being
// followed, its nonce, when it last fetched iPXE) with one eviction rule, so
// a flood of MACs that never finish their boots cannot grow it without
// bound: at most Max entries; making room drops every entry older than
// MaxAge, and if that is not enough, the oldest eighth. It is not safe for
// concurrent use: its owner holds the lock.
package bounded

import (
	"slices"
	"time"
)

// Map is a bounded map from string keys to values with a time each.
type Map[V any] struct {
	max    int
	maxAge time.Duration
	m      map[string]entry[V]
}

type entry[V any] struct {
	v  V
	at time.Time
}

// New returns a Map of at most max entries whose entries older than maxAge
// go first when room is needed.
func New[V any](max int, maxAge time.Duration) *Map[V] {
	if max < 1 {
		max = 1
	}
	return &Map[V]{max: max, maxAge: maxAge, m: map[string]entry[V]{}}
}

// Put stores v for key with time at, making room first when key is new
// and the map is full (now is the eviction's clock).
func (b *Map[V]) Put(key string, v V, at, now time.Time) {
	if _, ok := b.m[key]; !ok && len(b.m) >= b.max {
		b.evict(now)
	}
	b.m[key] = entry[V]{v: v, at: at}
}

// Get returns the value of key and its time.
func (b *Map[V]) Get(key string) (v V, at time.Time, ok bool) {
	e, ok := b.m[key]
	return e.v, e.at, ok
}

// Delete forgets key.
func (b *Map[V]) Delete(key string) { delete(b.m, key) }

// Len is the number of entries.
func (b *Map[V]) Len() int { return len(b.m) }

// evict drops the entries older than maxAge, then, if the map is still
// full, its oldest eighth (at least one entry): one scan and one sort per
// max/8 new keys, where dropping one at a time scanned the whole map for
// every new key of a flood.
func (b *Map[V]) evict(now time.Time) {
	for k, e := range b.m {
		if now.Sub(e.at) >= b.maxAge {
			delete(b.m, k)
		}
	}
	if len(b.m) < b.max {
		return
	}
	type aged struct {
		key string
		at  time.Time
	}
	all := make([]aged, 0, len(b.m))
	for k, e := range b.m {
		all = append(all, aged{k, e.at})
	}
	slices.SortFunc(all, func(x, y aged) int { return x.at.Compare(y.at) })
	n := max(1, b.max/8, len(b.m)-b.max+1)
	for _, a := range all[:min(n, len(all))] {
		delete(b.m, a.key)
	}
}
