package netutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDPSocket is a UDP socket read and written with blocking system calls:
// a reader waits in the kernel, and the kernel wakes that thread when a
// datagram arrives. A request-answer server at thousands of datagrams a
// second (ProxyDHCP) answers in far less time than Go's network poller
// takes to wake a parked goroutine, so it reads this way; every reader
// holds an OS thread while it waits. Reads and writes allocate nothing.
type UDPSocket struct {
	fd     int
	closed atomic.Bool
	// mu is held for reading by every system call on fd and for writing
	// by Close, so fd is closed only when no call can still use it.
	mu sync.RWMutex
}

// ListenUDPSocket opens a UDPSocket as ListenUDP opens its socket (bound to
// interface ifname, port, broadcast when asked, ReceiveBuffer).
func ListenUDPSocket(ifname string, port int, broadcast bool) (*UDPSocket, error) {
	fd, err := socketUDP(ifname, port, broadcast)
	if err != nil {
		return nil, err
	}
	// A read's wait in the kernel ends after a second at the latest: a
	// safety net, since Close wakes waiting readers at once (shutdown).
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting a receive timeout on UDP port %d: %w", port, err)
	}
	return &UDPSocket{fd: fd}, nil
}

// ReadFrom waits for a datagram, copies it into b and returns its length
// and sender. After Close it returns net.ErrClosed.
func (s *UDPSocket) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	if len(b) == 0 {
		return 0, netip.AddrPort{}, errors.New("reading a UDP datagram: empty buffer")
	}
	for {
		s.mu.RLock()
		if s.closed.Load() {
			s.mu.RUnlock()
			return 0, netip.AddrPort{}, net.ErrClosed
		}
		var sa unix.RawSockaddrInet4
		salen := uint32(unsafe.Sizeof(sa))
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0,
			uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&salen)))
		s.mu.RUnlock()
		switch {
		case s.closed.Load():
			return 0, netip.AddrPort{}, net.ErrClosed
		case errno == unix.EAGAIN || errno == unix.EINTR:
			continue // the safety-net timeout, or a signal
		case errno != 0:
			return 0, netip.AddrPort{}, fmt.Errorf("reading a UDP datagram: %w", errno)
		}
		port := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return int(n), netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(port[0])<<8|uint16(port[1])), nil
	}
}

// WriteTo sends b to the IPv4 address to.
func (s *UDPSocket) WriteTo(b []byte, to netip.AddrPort) (int, error) {
	if !to.Addr().Unmap().Is4() {
		return 0, fmt.Errorf("sending a UDP datagram to %s: not an IPv4 address", to)
	}
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: to.Addr().Unmap().As4()}
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port[0], port[1] = byte(to.Port()>>8), byte(to.Port())
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(p), uintptr(len(b)), 0,
		uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	if errno != 0 {
		return 0, fmt.Errorf("sending a UDP datagram to %s: %w", to, errno)
	}
	return int(n), nil
}

// LocalPort is the port the socket is bound to.
func (s *UDPSocket) LocalPort() int {
	sa, err := unix.Getsockname(s.fd)
	if err != nil {
		return 0
	}
	if in4, ok := sa.(*unix.SockaddrInet4); ok {
		return in4.Port
	}
	return 0
}

// Close wakes the waiting readers (they return net.ErrClosed), waits for
// every call in progress to return, and closes the socket.
func (s *UDPSocket) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	// On Linux, shutdown wakes readers waiting on a UDP socket even when
	// it is not connected (and says ENOTCONN).
	unix.Shutdown(s.fd, unix.SHUT_RDWR)
	s.mu.Lock()
	defer s.mu.Unlock()
	return unix.Close(s.fd)
}
