package netutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func loopbackSocket(t *testing.T) (*UDPSocket, netip.AddrPort) {
	t.Helper()
	s, err := ListenUDPSocket("", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(s.LocalPort()))
}

// Datagrams already queued are read in one call, each with its sender;
// a batch goes out in one call; neither allocates.
func TestBatchRoundTrip(t *testing.T) {
	a, aAddr := loopbackSocket(t)
	b, bAddr := loopbackSocket(t)
	out, in := NewBatch(8, 1500), NewBatch(8, 1500)
	for i := range 5 {
		m := &out.Msgs[i]
		m.N = copy(m.Buf, fmt.Sprintf("DHCPDISCOVER %d", i))
		m.Addr = bAddr
	}
	if failed, err := a.WriteBatch(out, 5); failed != 0 || err != nil {
		t.Fatalf("WriteBatch: %d failed, %v", failed, err)
	}
	n, err := b.ReadBatch(in)
	if err != nil || n != 5 {
		t.Fatalf("ReadBatch: %d datagrams (%v), want the 5 queued in one call", n, err)
	}
	for i := range n {
		m := in.Msgs[i]
		if want := fmt.Sprintf("DHCPDISCOVER %d", i); string(m.Buf[:m.N]) != want || m.Addr != aAddr {
			t.Errorf("datagram %d: %q from %s, want %q from %s", i, m.Buf[:m.N], m.Addr, want, aAddr)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() {
		a.WriteBatch(out, 3)
		b.ReadBatch(in)
	}); allocs != 0 {
		t.Errorf("%v allocations per batch sent and read, want 0", allocs)
	}
}

// A message that cannot go is skipped, counted and named, whether it is
// refused before the call (IPv6) or by the kernel (broadcast on a socket
// not allowed to): the rest go.
func TestWriteBatchSkipsWhatCannotGo(t *testing.T) {
	a, _ := loopbackSocket(t)
	b, bAddr := loopbackSocket(t)
	out, in := NewBatch(8, 64), NewBatch(8, 64)
	dests := []netip.AddrPort{bAddr, netip.MustParseAddrPort("[2001:db8::1]:68"), bAddr,
		netip.MustParseAddrPort("255.255.255.255:68"), bAddr}
	for i, to := range dests {
		out.Msgs[i].N = copy(out.Msgs[i].Buf, fmt.Sprint(i))
		out.Msgs[i].Addr = to
	}
	failed, err := a.WriteBatch(out, len(dests))
	if failed != 2 || err == nil || !strings.Contains(err.Error(), "2001:db8::1") {
		t.Fatalf("WriteBatch: %d failed, %v; want 2, the first naming the IPv6 address", failed, err)
	}
	n, _ := b.ReadBatch(in)
	var got []string
	for _, m := range in.Msgs[:n] {
		got = append(got, string(m.Buf[:m.N]))
	}
	if strings.Join(got, ",") != "0,2,4" {
		t.Errorf("read %q, want the three that could go (0,2,4)", got)
	}
}

// Close wakes a batch reader waiting in the kernel.
func TestBatchReaderWokenByClose(t *testing.T) {
	s, _ := loopbackSocket(t)
	done := make(chan error, 1)
	go func() {
		_, err := s.ReadBatch(NewBatch(4, 64))
		done <- err
	}()
	s.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("waiting batch reader: %v, want net.ErrClosed", err)
	}
	if failed, err := s.WriteBatch(NewBatch(1, 64), 1); failed != 1 || !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %d failed, %v", failed, err)
	}
}
