package pxe

import (
	"net"

	"github.com/provisiond/provisiond/internal/dhcpwire"
)

// reader is one ProxyDHCP reader's state, reused for every packet it
// answers: the request as read, the answer being written, and the
// strings it has made of requests before.
type reader struct {
	req     dhcpwire.Request
	out     []byte
	classes map[string]string
	macs    map[[6]byte]string
}

// maxInterned bounds each of a reader's string tables; a full table
// starts over.
const maxInterned = 4096

func newReader() *reader {
	return &reader{out: make([]byte, 0, 1500),
		classes: map[string]string{}, macs: map[[6]byte]string{}}
}

// class returns option 60 as a string: the same string for the same
// bytes, made once (a LAN's firmware sends a handful of vendor classes).
func (r *reader) class(b []byte) string {
	if s, ok := r.classes[string(b)]; ok {
		return s
	}
	if len(r.classes) >= maxInterned {
		clear(r.classes)
	}
	s := string(b)
	r.classes[s] = s
	return s
}

// mac returns the request's 6-byte hardware address as a string, made once
// per MAC (a booting machine asks again and again).
func (r *reader) mac() string {
	key := [6]byte(r.req.MAC())
	if s, ok := r.macs[key]; ok {
		return s
	}
	if len(r.macs) >= maxInterned {
		clear(r.macs)
	}
	s := net.HardwareAddr(key[:]).String()
	r.macs[key] = s
	return s
}
