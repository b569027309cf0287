package pxe

import (
	"net"
	"testing"
)

// A solicitation names its sender by its source link-layer address
// option; without one, by the MAC in its EUI-64 link-local address.
func TestSolicitorMAC(t *testing.T) {
	eui := net.ParseIP("fe80::5054:ff:fee2:e001")
	for _, c := range []struct {
		name string
		rs   []byte
		src  net.IP
		want string
	}{
		{"option", []byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x52, 0x54, 0, 0xe2, 0xe0, 0x07}, eui, "52:54:00:e2:e0:07"},
		{"EUI-64", []byte{133, 0, 0, 0, 0, 0, 0, 0}, eui, "52:54:00:e2:e0:01"},
		{"other option first", []byte{133, 0, 0, 0, 0, 0, 0, 0, 5, 1, 0, 0, 0, 0, 5, 220, 1, 1, 0x52, 0x54, 0, 0xe2, 0xe0, 0x08}, eui, "52:54:00:e2:e0:08"},
		{"zero-length option", []byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}, net.ParseIP("fe80::1"), ""},
		{"random address", []byte{133, 0, 0, 0, 0, 0, 0, 0}, net.ParseIP("fe80::1c2d:3e4f:5a6b:7c8d"), ""},
	} {
		if got := solicitorMAC(c.rs, c.src); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
