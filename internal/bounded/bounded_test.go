package bounded

import (
	"fmt"
	"testing"
	"time"
)

// Full, the map drops what is past its age first, then the oldest; a key
// already there is replaced without evicting anything.
func TestEviction(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	m := New[int](3, time.Hour)
	m.Put("stale", 1, t0.Add(-2*time.Hour), t0)
	m.Put("old", 2, t0.Add(-time.Minute), t0)
	m.Put("new", 3, t0, t0)
	m.Put("new", 4, t0, t0) // replaced, nothing evicted
	if m.Len() != 3 {
		t.Fatalf("len %d", m.Len())
	}
	m.Put("next", 5, t0, t0) // the stale one goes
	if _, _, ok := m.Get("stale"); ok || m.Len() != 3 {
		t.Errorf("the stale entry was kept (len %d)", m.Len())
	}
	m.Put("last", 6, t0, t0) // nothing stale: the oldest goes
	if _, _, ok := m.Get("old"); ok {
		t.Error("the oldest entry was kept")
	}
	if v, at, ok := m.Get("new"); !ok || v != 4 || !at.Equal(t0) {
		t.Errorf("Get: %v %v %v", v, at, ok)
	}
	for i := range 100 {
		m.Put(fmt.Sprint(i), i, t0.Add(time.Duration(i)*time.Second), t0)
	}
	if m.Len() != 3 {
		t.Errorf("a flood grew the map to %d", m.Len())
	}
	m.Delete("99")
	if _, _, ok := m.Get("99"); ok {
		t.Error("Delete")
	}
}

// A full map of 65,536 (the boot tracker's size) taking a flood of new
// keys: the cost of a Put, amortised over the evictions.
func BenchmarkPutFull(b *testing.B) {
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	m := New[int](65536, time.Hour)
	for i := range 65536 {
		m.Put(fmt.Sprint("k", i), i, t0.Add(time.Duration(i)), t0)
	}
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = fmt.Sprint("n", i)
	}
	b.ResetTimer()
	for i := range b.N {
		m.Put(keys[i], i, t0.Add(time.Duration(65536+i)), t0)
	}
}
