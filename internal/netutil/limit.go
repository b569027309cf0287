package netutil

import (
	"net"
	"sync"
)

// LimitListener returns a listener that holds at most n accepted
// connections open at once; further connections wait in the kernel's accept
// queue until one closes. Unlike golang.org/x/net/netutil's, a TCP
// connection it returns still offers *net.TCPConn's ReadFrom, so net/http
// sends files with sendfile(2) rather than copying them through user space.
func LimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem       chan struct{}
	closeOnce sync.Once
	done      chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	release := func() { <-l.sem }
	if tc, ok := c.(*net.TCPConn); ok {
		return &limitTCPConn{TCPConn: tc, release: release}, nil
	}
	return &limitConn{Conn: c, release: release}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitTCPConn embeds *net.TCPConn so ReadFrom (sendfile) and the rest of
// its methods stay visible to net/http.
type limitTCPConn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *limitTCPConn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(c.release)
	return err
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
