package recorder

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

// storeWith opens a store (closed when the test ends) holding machine
// name with mac.
func storeWith(t *testing.T, name, mac string) *inventory.Store {
	t.Helper()
	st, err := inventory.Open(filepath.Join(t.TempDir(), "provisiond.db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.PutMachine(inventory.Machine{Name: name, MACs: []string{mac}}); err != nil {
		t.Fatal(err)
	}
	return st
}

// The recorder stores what it is given, in order, and publishes each
// event as stored (with its machine) to the machine's followers.
func TestRecorderStoresAndPublishes(t *testing.T) {
	const mac = "52:54:00:00:00:42"
	st := storeWith(t, "BLD-042", mac)
	broker := events.NewBroker()
	rec := New(st, broker, 64, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	follow := broker.Subscribe(ctx, "BLD-042")
	runCtx, stop := context.WithCancel(context.Background())
	go rec.Run(runCtx)
	t0 := time.Now().UTC()
	files := []string{"undionly.kpxe", "undionly.kpxe", "http://192.0.2.2:8080/boot/52:54:00:00:00:42.ipxe"}
	for i, f := range files {
		rec.Emit(events.Event{Type: events.DHCPOffer, MAC: mac, Time: t0.Add(time.Duration(i) * time.Millisecond), Attrs: map[string]string{"port": "67", "file": f}})
	}
	for i, f := range files {
		select {
		case ev := <-follow:
			if ev.Machine != "BLD-042" || ev.Attrs["file"] != f {
				t.Errorf("published %d: %s %q, want BLD-042 %q", i, ev.Machine, ev.Attrs["file"], f)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d events published", i, len(files))
		}
	}
	stop()
	rec.Wait()
	evs, err := st.Events("BLD-042", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(files) || rec.Dropped() != 0 {
		t.Errorf("stored %d events, dropped %d; want %d stored", len(evs), rec.Dropped(), len(files))
	}
}

// countingStore counts the recorder's writes to the real store.
type countingStore struct {
	*inventory.Store
	writes int
}

func (c *countingStore) AppendEvents(batch []events.Event) ([]events.Event, error) {
	c.writes++
	return c.Store.AppendEvents(batch)
}

// Steps that keep coming (a busy network) are written at most once per
// batchWindow, every one of them.
func TestRecorderBatchesAStream(t *testing.T) {
	const mac = "52:54:00:00:00:43"
	st := storeWith(t, "BLD-043", mac)
	cs := &countingStore{Store: st}
	broker := events.NewBroker()
	rec := New(cs, broker, 1024, slog.New(slog.DiscardHandler))
	runCtx, stop := context.WithCancel(context.Background())
	start := time.Now()
	go rec.Run(runCtx)
	const n = 300
	for range n {
		rec.Emit(events.Event{Type: events.DHCPOffer, MAC: mac})
		time.Sleep(time.Millisecond)
	}
	stop()
	rec.Wait()
	took := time.Since(start)
	if evs, err := st.Events("BLD-043", 0, 0); err != nil || len(evs) != n {
		t.Fatalf("%d of %d steps stored (%v)", len(evs), n, err)
	}
	// One per window, the first at once, and a few as it stops.
	if most := int(took/batchWindow) + 4; cs.writes > most {
		t.Errorf("%d writes for %d steps over %v, want at most %d (one per %v)", cs.writes, n, took, most, batchWindow)
	}
	t.Logf("%d steps over %v in %d writes", n, took.Round(time.Millisecond), cs.writes)
}
