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
	return LimitListenerPerSource(l, n, 0, nil)
}

// LimitListenerPerSource is LimitListener that also holds at most
// perSource connections from one client address (0: no such bound): one
// more is closed as soon as it is accepted, and refused is called, so one
// host holding idle connections cannot take every slot.
func LimitListenerPerSource(l net.Listener, n, perSource int, refused func()) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{}),
		perSource: perSource, refused: refused, bySource: map[string]int{}}
}

type limitListener struct {
	net.Listener
	sem       chan struct{}
	closeOnce sync.Once
	done      chan struct{}

	perSource int
	refused   func()
	mu        sync.Mutex
	bySource  map[string]int
}

// source is the connection's client address without the port.
func source(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// take counts a connection from src; false means src is at its bound.
func (l *limitListener) take(src string) bool {
	if l.perSource <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bySource[src] >= l.perSource {
		return false
	}
	l.bySource[src]++
	return true
}

func (l *limitListener) give(src string) {
	if l.perSource <= 0 {
		return
	}
	l.mu.Lock()
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
	l.mu.Unlock()
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	var c net.Conn
	var src string
	for {
		var err error
		c, err = l.Listener.Accept()
		if err != nil {
			<-l.sem
			return nil, err
		}
		src = source(c)
		if l.take(src) {
			break
		}
		// Counted before the close: whoever sees the close sees the count.
		if l.refused != nil {
			l.refused()
		}
		c.Close()
	}
	r := &releaser{release: func() { l.give(src); <-l.sem }}
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
