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

// A DHCP step repeated within a second (a retransmission, or a client
// flooding DISCOVERs) is counted, not stored again; a different answer, a
// different port or the same step a second later is stored.
func TestRecorderCoalescesRepeatedDHCPSteps(t *testing.T) {
	st, err := inventory.Open(filepath.Join(t.TempDir(), "provisiond.db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const mac = "52:54:00:00:00:42"
	if _, err := st.PutMachine(inventory.Machine{Name: "BLD-042", MACs: []string{mac}}); err != nil {
		t.Fatal(err)
	}
	rec := New(st, events.NewBroker(), 64, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	go rec.Run(ctx)
	t0 := time.Now().UTC()
	offer := func(at time.Duration, port, file string) events.Event {
		return events.Event{Type: events.DHCPOffer, MAC: mac, Time: t0.Add(at), Attrs: map[string]string{"port": port, "file": file}}
	}
	for _, ev := range []events.Event{
		offer(0, "67", "undionly.kpxe"),
		offer(300*time.Millisecond, "67", "undionly.kpxe"), // repeat
		offer(600*time.Millisecond, "67", "undionly.kpxe"), // repeat
		offer(700*time.Millisecond, "4011", "undionly.kpxe"),
		offer(800*time.Millisecond, "67", "http://192.0.2.2:8080/boot/52:54:00:00:00:42.ipxe"),
		offer(1500*time.Millisecond, "67", "undionly.kpxe"), // a second after the last one stored
		{Type: events.TFTPTransfer, MAC: mac, Time: t0.Add(1600 * time.Millisecond), Attrs: map[string]string{"file": "undionly.kpxe"}},
		{Type: events.TFTPTransfer, MAC: mac, Time: t0.Add(1700 * time.Millisecond), Attrs: map[string]string{"file": "undionly.kpxe"}},
	} {
		rec.Emit(ev)
	}
	cancel()
	rec.Wait()
	evs, err := st.Events("BLD-042", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 6 || rec.Coalesced() != 2 {
		t.Errorf("stored %d steps, coalesced %d; want 6 stored (4 offers, 2 TFTP transfers), 2 coalesced", len(evs), rec.Coalesced())
	}
}
