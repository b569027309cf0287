package netutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Message is one datagram of a Batch: Buf holds it (the first N bytes),
// Addr is where it came from or goes to.
type Message struct {
	Buf  []byte
	N    int
	Addr netip.AddrPort
}

// mmsghdr is the kernel's struct mmsghdr: a msghdr and the length the
// call read or sent.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// Batch is a reader's reusable state for ReadBatch and WriteBatch: Msgs
// and what the system calls need for them. One goroutine uses a Batch at
// a time; nothing in it is allocated again.
type Batch struct {
	// Msgs are the datagrams: ReadBatch fills them from the start, and
	// WriteBatch sends the first n.
	Msgs  []Message
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	addrs []unix.RawSockaddrInet4
}

// NewBatch returns a batch of n messages with buffers of size bytes.
func NewBatch(n, size int) *Batch {
	b := &Batch{Msgs: make([]Message, n), hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n),
		addrs: make([]unix.RawSockaddrInet4, n)}
	for i := range b.Msgs {
		b.Msgs[i].Buf = make([]byte, size)
	}
	return b
}

// prepare points header i at message i's first n bytes and address slot.
func (b *Batch) prepare(i, n int) {
	m := &b.Msgs[i]
	iov := &b.iovs[i]
	iov.Base = &m.Buf[0]
	iov.SetLen(n)
	h := &b.hdrs[i]
	h.hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.addrs[i])), Namelen: uint32(unsafe.Sizeof(b.addrs[i])), Iov: iov}
	h.hdr.SetIovlen(1)
	h.len = 0
}

// ReadBatch waits for a datagram, then takes it and up to len(b.Msgs)-1
// more already queued, in one system call (recvmmsg): under a flood a
// reader pays one call for many datagrams, and a lone datagram is read as
// soon as it comes. It returns how many messages it filled. After Close it
// returns net.ErrClosed.
func (s *UDPSocket) ReadBatch(b *Batch) (int, error) {
	for i := range b.Msgs {
		b.prepare(i, len(b.Msgs[i].Buf))
	}
	for {
		s.mu.RLock()
		if s.closed.Load() {
			s.mu.RUnlock()
			return 0, net.ErrClosed
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)),
			unix.MSG_WAITFORONE, 0, 0)
		s.mu.RUnlock()
		switch {
		case s.closed.Load():
			return 0, net.ErrClosed
		case errno == unix.EAGAIN || errno == unix.EINTR:
			continue // the safety-net timeout, or a signal
		case errno != 0:
			return 0, fmt.Errorf("reading UDP datagrams: %w", errno)
		}
		for i := range int(n) {
			b.Msgs[i].N, b.Msgs[i].Addr = int(b.hdrs[i].len), addrPortOf(&b.addrs[i])
		}
		return int(n), nil
	}
}

// WriteBatch sends the first n messages (Buf[:N] to Addr, IPv4 only) in
// as few system calls as it can (sendmmsg). A message that cannot go (not
// IPv4, or refused by the kernel) is skipped and the others still go: it
// returns how many failed and the first failure.
func (s *UDPSocket) WriteBatch(b *Batch, n int) (failed int, err error) {
	fail := func(i int, e error) {
		failed++
		if err == nil {
			err = fmt.Errorf("sending a UDP datagram to %s: %w", b.Msgs[i].Addr, e)
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return n, net.ErrClosed
	}
	for start := 0; start < n; {
		// A run of messages that can go, prepared side by side.
		end := start
		for ; end < n; end++ {
			m := &b.Msgs[end]
			if !m.Addr.Addr().Unmap().Is4() || m.N <= 0 || m.N > len(m.Buf) {
				break
			}
			b.prepare(end, m.N)
			b.addrs[end] = sockaddrOf(m.Addr)
		}
		for start < end {
			k, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.hdrs[start])), uintptr(end-start), 0, 0, 0)
			switch {
			case errno == unix.EINTR:
				continue
			case errno != 0:
				// The kernel refused message start (the ones before it
				// went in an earlier call): skip it.
				fail(start, errno)
				start++
			case k == 0:
				fail(start, errors.New("not taken"))
				start++
			default:
				start += int(k)
			}
		}
		if end < n {
			m := &b.Msgs[end]
			if m.Addr.Addr().Unmap().Is4() {
				fail(end, fmt.Errorf("%d bytes do not fit a %d-byte buffer", m.N, len(m.Buf)))
			} else {
				fail(end, errors.New("not an IPv4 address"))
			}
			start = end + 1
		}
	}
	return failed, err
}

// sockaddrOf is IPv4 address and port ap as the kernel takes it (the port
// in network byte order).
func sockaddrOf(ap netip.AddrPort) unix.RawSockaddrInet4 {
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ap.Addr().Unmap().As4()}
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port())
	return sa
}

// addrPortOf is sockaddrOf's inverse.
func addrPortOf(sa *unix.RawSockaddrInet4) netip.AddrPort {
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(port[0])<<8|uint16(port[1]))
}
