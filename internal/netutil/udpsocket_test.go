package netutil

import (
	"errors"
	"net"
	"net/netip"
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

// A datagram goes out to the address given and comes in with its sender's
// address and port, without an allocation either way.
func TestUDPSocketRoundTrip(t *testing.T) {
	a, aAddr := loopbackSocket(t)
	b, bAddr := loopbackSocket(t)
	msg, buf := []byte("DHCPDISCOVER"), make([]byte, 1500)
	if _, err := a.WriteTo(msg, bAddr); err != nil {
		t.Fatal(err)
	}
	n, from, err := b.ReadFrom(buf)
	if err != nil || string(buf[:n]) != string(msg) || from != aAddr {
		t.Fatalf("read %q from %s (%v), want %q from %s", buf[:n], from, err, msg, aAddr)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		a.WriteTo(msg, bAddr)
		b.ReadFrom(buf)
	}); allocs != 0 {
		t.Errorf("%v allocations per datagram sent and read, want 0", allocs)
	}
	if _, err := a.WriteTo(msg, netip.MustParseAddrPort("[::1]:67")); err == nil {
		t.Error("sent to an IPv6 address on an IPv4 socket")
	}
}

// Close wakes a reader waiting in the kernel; it returns net.ErrClosed, as
// does every call after.
func TestUDPSocketCloseWakesReader(t *testing.T) {
	s, addr := loopbackSocket(t)
	done := make(chan error, 1)
	go func() {
		_, _, err := s.ReadFrom(make([]byte, 1500))
		done <- err
	}()
	s.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("waiting reader: %v, want net.ErrClosed", err)
	}
	if _, _, err := s.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
	if _, err := s.WriteTo([]byte("x"), addr); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
}
