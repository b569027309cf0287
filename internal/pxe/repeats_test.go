package pxe

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// An answer that repeats the one given to the same MAC on the same port
// within a second is counted, not reported again; a different answer, the
// other port, or the same answer a second later is a step.
func TestRepeatWindow(t *testing.T) {
	r := newRepeats()
	t0 := time.Now()
	const m = "52:54:00:00:00:42"
	script := answer{text: "http://192.0.2.2:8080/boot/52:54:00:00:00:42.ipxe"}
	for _, c := range []struct {
		at    time.Duration
		proxy bool
		a     answer
		seen  bool
	}{
		{0, false, answer{text: "undionly.kpxe"}, false},
		{300 * time.Millisecond, false, answer{text: "undionly.kpxe"}, true},
		{600 * time.Millisecond, false, answer{text: "undionly.kpxe"}, true},
		{700 * time.Millisecond, true, answer{text: "undionly.kpxe"}, false},
		{800 * time.Millisecond, false, script, false},
		{900 * time.Millisecond, false, answer{ignored: true, text: "http://192.0.2.2:8080/boot/52:54:00:00:00:42.ipxe"}, false},
		{1500 * time.Millisecond, false, answer{text: "undionly.kpxe"}, false},
		{2600 * time.Millisecond, false, answer{text: "undionly.kpxe"}, false}, // a second after the last step
	} {
		if got := r.seen(m, c.proxy, c.a, t0.Add(c.at)); got != c.seen {
			t.Errorf("at %v (proxy port %v, %+v): repeat %v, want %v", c.at, c.proxy, c.a, got, c.seen)
		}
	}
}

// A client repeating its DISCOVER gets every answer, but its timeline one
// step; the server counts the rest as repeats.
func TestRepeatedDiscoverIsOneStep(t *testing.T) {
	sink := &sinkRec{}
	s := newTestServer(sink)
	for range 3 {
		if r, _ := s.exchange(context.Background(), pxeDiscover(t, iana.INTEL_X86PC), ifc, 67, nil); r == nil {
			t.Fatal("a repeated DISCOVER got no offer")
		}
	}
	other, _ := net.ParseMAC("52:54:00:12:34:57")
	d := pxeDiscover(t, iana.INTEL_X86PC)
	d.ClientHWAddr = other
	s.exchange(context.Background(), d, ifc, 67, nil)
	if st := s.Stats(); len(sink.evs) != 2 || st.Offers != 4 || st.Repeats != 2 {
		t.Errorf("%d steps, %d offers, %d repeats; want 2 steps (one per MAC), 4 offers, 2 repeats", len(sink.evs), st.Offers, st.Repeats)
	}
}

// A repeated DISCOVER from a PXE ROM, from the datagram to the bytes of
// its offer, allocates nothing: a flood costs no garbage collection. An
// iPXE's answer names its own script, one string per answer.
func TestRepeatedDiscoverAllocations(t *testing.T) {
	s := newTestServer(&sinkRec{})
	for _, c := range []struct {
		name string
		raw  []byte
		max  float64
	}{
		{"PXE ROM", pxeDiscover(t, iana.INTEL_X86PC).ToBytes(), 0},
		{"iPXE", pxeDiscover(t, iana.INTEL_X86PC, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))).ToBytes(), 1},
	} {
		bc, r := s.bind(nil, ifc, 67), newReader()
		if n := testing.AllocsPerRun(200, func() {
			if out, _ := s.handlePacket(context.Background(), r, c.raw, bc, netip.AddrPort{}); len(out) == 0 {
				t.Fatal("no offer")
			}
		}); n > c.max {
			t.Errorf("%s: %v allocations per repeated DISCOVER, want at most %v", c.name, n, c.max)
		}
	}
}
