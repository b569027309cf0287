package pxe

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// An answer that repeats the one before it to the same MAC on the same
// port, less than a second after it, is counted, not reported again; a
// different answer, the other port, or the same answer after a pause of a
// second is a step, and says how many answers went unreported before it.
func TestRepeatWindow(t *testing.T) {
	r := newRepeats()
	t0 := time.Now()
	const m = "52:54:00:00:00:42"
	rom := answer{text: "undionly.kpxe"}
	script := answer{text: "http://192.0.2.2:8080/boot/52:54:00:00:00:42.ipxe"}
	for _, c := range []struct {
		at     time.Duration
		proxy  bool
		a      answer
		repeat bool
		folded int
	}{
		{0, false, rom, false, 0},
		{300 * time.Millisecond, false, rom, true, 0},
		{600 * time.Millisecond, false, rom, true, 0},
		{700 * time.Millisecond, true, rom, false, 0},
		{800 * time.Millisecond, false, script, false, 2},
		{900 * time.Millisecond, false, answer{ignored: true, text: script.text}, false, 0},
		{1500 * time.Millisecond, false, rom, false, 0},
		{2400 * time.Millisecond, false, rom, true, 0},
		{3300 * time.Millisecond, false, rom, true, 0},  // 2.8 s after the step, 0.9 s after the last answer
		{4400 * time.Millisecond, false, rom, false, 2}, // a second after the last answer
	} {
		repeat, folded := r.seen(m, c.proxy, c.a, t0.Add(c.at))
		if repeat != c.repeat || folded != c.folded {
			t.Errorf("at %v (proxy port %v, %+v): repeat %v after %d unreported, want %v after %d", c.at, c.proxy, c.a, repeat, folded, c.repeat, c.folded)
		}
	}
}

// A MAC asking twice a second without pause gets a step a minute, which
// says how many answers it stands for.
func TestFloodIsAStepAMinute(t *testing.T) {
	r := newRepeats()
	t0 := time.Now()
	const m = "52:54:00:00:00:43"
	var steps []int
	for i := 0; i <= 250; i++ { // 125 s
		if repeat, folded := r.seen(m, false, answer{text: "undionly.kpxe"}, t0.Add(time.Duration(i)*500*time.Millisecond)); !repeat {
			steps = append(steps, folded)
		}
	}
	if want := []int{0, 119, 119}; !slices.Equal(steps, want) {
		t.Errorf("steps with their unreported answers %v, want %v (at 0, 60 and 120 s)", steps, want)
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

// A MAC offered a boot file counts as booting for two minutes after its
// last offer, whichever port it came on; a MAC only ever not answered
// never does.
func TestBootingAfterAnOffer(t *testing.T) {
	r := newRepeats()
	t0 := time.Now()
	const offered, ignored = "52:54:00:00:00:44", "52:54:00:00:00:45"
	r.seen(offered, true, answer{text: "snponly.efi"}, t0)
	r.seen(offered, true, answer{text: "snponly.efi"}, t0.Add(30*time.Second))
	r.seen(ignored, false, answer{ignored: true, text: "no binary for this architecture"}, t0)
	for _, c := range []struct {
		mac  string
		at   time.Duration
		want bool
	}{
		{offered, time.Minute, true},
		{offered, 149 * time.Second, true}, // 1 min 59 s after the last offer
		{offered, 151 * time.Second, false},
		{ignored, time.Second, false},
		{"52:54:00:00:00:46", time.Second, false},
	} {
		if got := r.booting(c.mac, t0.Add(c.at)); got != c.want {
			t.Errorf("%s at +%v: booting %v, want %v", c.mac, c.at, got, c.want)
		}
	}
}
