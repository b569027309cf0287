package netutil

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitListener(raw, 2)
	defer l.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	<-accepted
	if _, ok := first.(io.ReaderFrom); !ok {
		t.Errorf("accepted TCP connection %T hides ReadFrom: net/http would not use sendfile", first)
	}
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted while two were open (limit 2)")
	case <-time.After(200 * time.Millisecond):
	}
	first.Close()
	first.Close() // a second Close must not free a second slot
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the third connection was not accepted after one closed")
	}
	l.Close()
	if _, ok := <-accepted; ok {
		t.Error("Accept went on after Close")
	}
}

// One address holding its share of connections cannot take the rest: its
// next connection is closed at once and counted, another address still
// gets in.
func TestLimitListenerPerSource(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	l := LimitListenerPerSource(raw, 10, 2, func() { refused.Add(1) })
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func(from string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial("127.0.0.1")
	dial("127.0.0.1")
	<-accepted
	<-accepted
	third := dial("127.0.0.1")
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("third connection from one address: read %v, want EOF (closed by the listener)", err)
	}
	if refused.Load() != 1 {
		t.Errorf("refused %d, want 1", refused.Load())
	}
	dial("127.0.0.2")
	select {
	case c := <-accepted:
		if src := source(c); src != "127.0.0.2" {
			t.Errorf("accepted a connection from %s, want 127.0.0.2", src)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a connection from another address was not accepted")
	}
}
