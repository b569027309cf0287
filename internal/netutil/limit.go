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
	r := &releaser{release: func() { <-l.sem }}
	if tc, ok := c.(*net.TCPConn); ok {
		return &limitTCPConn{TCPConn: tc, releaser: r}, nil
	}
	return &limitConn{Conn: c, releaser: r}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// releaser frees a connection's slot once, however often it is closed.
type releaser struct {
	once    sync.Once
	release func()
}

func (r *releaser) close(err error) error {
	r.once.Do(r.release)
	return err
}

// limitTCPConn embeds *net.TCPConn so ReadFrom (sendfile) and the rest of
// its methods stay visible to net/http.
type limitTCPConn struct {
	*net.TCPConn
	*releaser
}

func (c *limitTCPConn) Close() error { return c.close(c.TCPConn.Close()) }

type limitConn struct {
	net.Conn
	*releaser
}

func (c *limitConn) Close() error { return c.close(c.Conn.Close()) }
