package netutil

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// UDPSocket is a UDP socket read and written with blocking system calls
// (ReadBatch, WriteBatch): a reader waits in the kernel, and the kernel
// wakes that thread when a datagram arrives. A request-answer server at
// thousands of datagrams a second (ProxyDHCP) answers in far less time
// than Go's network poller takes to wake a parked goroutine, so it reads
// this way; every reader holds an OS thread while it waits. Reads and
// writes allocate nothing.
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
