// Package dhcpwire reads the DHCPv4 requests a ProxyDHCP server answers and
// writes its answers, without allocating: a request's options are slices of
// the datagram, and an answer is appended to a buffer the caller reuses.
// It knows the few options a PXE answer depends on; github.com/insomniacslk/dhcp
// remains the general DHCP library (its reading is this package's oracle in
// the tests).
package dhcpwire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Message types (option 53) a ProxyDHCP server reads or writes.
const (
	TypeNone     = 0 // BOOTP: no option 53, or an unreadable one
	TypeDiscover = 1
	TypeOffer    = 2
	TypeRequest  = 3
	TypeDecline  = 4
	TypeAck      = 5
	TypeRelease  = 7
	TypeInform   = 8
)

// Option codes this package reads or writes.
const (
	OptVendorSpecific = 43
	OptRequestedIP    = 50
	OptMessageType    = 53
	OptServerID       = 54
	OptClassID        = 60
	OptClientID       = 61
	OptBootFile       = 67
	OptUserClass      = 77
	OptRelayAgent     = 82
	OptClientArch     = 93
	OptMachineID      = 97
	OptIPXEFeatures   = 175
)

// OpRequest is a BOOTREQUEST's op code; OpReply a BOOTREPLY's.
const (
	OpRequest = 1
	OpReply   = 2
)

const (
	headerLen = 236 // op through file, before the magic cookie
	minReply  = 300 // BOOTP's minimum message length (RFC 951)
	optEnd    = 255
	optPad    = 0
)

var magicCookie = [4]byte{99, 130, 83, 99}

// ErrMalformed is wrapped by every error Parse returns.
var ErrMalformed = errors.New("malformed DHCP packet")

// Request is a DHCPv4 request as read by Parse. Its option fields are
// slices of the datagram (valid until the buffer is reused); an option
// that was not sent, or was sent empty, is nil. An option sent more than
// once is the concatenation of its parts (RFC 3396), the one case in which
// Parse allocates.
type Request struct {
	Op, HType, HLen, Hops byte
	XID                   [4]byte
	Secs, Flags           uint16
	CIAddr, YIAddr        [4]byte
	SIAddr, GIAddr        [4]byte
	// CHAddr is the whole chaddr field; MAC returns its first HLen bytes.
	CHAddr [16]byte

	// MsgType is option 53 (TypeNone when absent or not one byte).
	MsgType byte
	// Class is option 60, UserClass option 77, Features iPXE's option 175,
	// MachineID option 97, ClientID option 61, RelayAgent option 82.
	Class, UserClass, Features, MachineID, ClientID, RelayAgent []byte
	// RequestedIP is option 50; HasRequestedIP says it was four bytes.
	RequestedIP    [4]byte
	HasRequestedIP bool
	// Arch is option 93's first architecture; HasArch says the option was
	// a non-empty list of 16-bit values.
	Arch    uint16
	HasArch bool
}

// MAC returns the client hardware address: chaddr's first hlen bytes (16
// at most).
func (r *Request) MAC() []byte {
	return r.CHAddr[:min(int(r.HLen), len(r.CHAddr))]
}

// Parse reads raw into r (overwriting it). It accepts what
// github.com/insomniacslk/dhcp's FromBytes accepts: the fixed header, the
// magic cookie and options up to an End option (or none at all); anything else is an error
// wrapping ErrMalformed.
func Parse(raw []byte, r *Request) error {
	*r = Request{}
	if len(raw) < headerLen+len(magicCookie) {
		return fmt.Errorf("%w: %d bytes, shorter than a DHCP header", ErrMalformed, len(raw))
	}
	r.Op, r.HType, r.HLen, r.Hops = raw[0], raw[1], raw[2], raw[3]
	copy(r.XID[:], raw[4:8])
	r.Secs = binary.BigEndian.Uint16(raw[8:10])
	r.Flags = binary.BigEndian.Uint16(raw[10:12])
	copy(r.CIAddr[:], raw[12:16])
	copy(r.YIAddr[:], raw[16:20])
	copy(r.SIAddr[:], raw[20:24])
	copy(r.GIAddr[:], raw[24:28])
	copy(r.CHAddr[:], raw[28:44])
	if [4]byte(raw[headerLen:headerLen+4]) != magicCookie {
		return fmt.Errorf("%w: no DHCP magic cookie", ErrMalformed)
	}
	var msgType, archs, reqIP []byte
	opts := raw[headerLen+4:]
	for i := 0; len(opts) > 0; { // no options at all is a BOOTP request
		if i >= len(opts) {
			return fmt.Errorf("%w: options end without an End option", ErrMalformed)
		}
		code := opts[i]
		if code == optPad {
			i++
			continue
		}
		if code == optEnd {
			break
		}
		if i+1 >= len(opts) || i+2+int(opts[i+1]) > len(opts) {
			return fmt.Errorf("%w: option %d runs past the end of the packet", ErrMalformed, code)
		}
		v := opts[i+2 : i+2+int(opts[i+1]) : i+2+int(opts[i+1])]
		i += 2 + len(v)
		switch code {
		case OptMessageType:
			msgType = join(msgType, v)
		case OptClientArch:
			archs = join(archs, v)
		case OptRequestedIP:
			reqIP = join(reqIP, v)
		case OptClassID:
			r.Class = join(r.Class, v)
		case OptUserClass:
			r.UserClass = join(r.UserClass, v)
		case OptIPXEFeatures:
			r.Features = join(r.Features, v)
		case OptMachineID:
			r.MachineID = join(r.MachineID, v)
		case OptClientID:
			r.ClientID = join(r.ClientID, v)
		case OptRelayAgent:
			r.RelayAgent = join(r.RelayAgent, v)
		}
	}
	if len(msgType) == 1 {
		r.MsgType = msgType[0]
	}
	if len(archs) >= 2 && len(archs)%2 == 0 {
		r.Arch, r.HasArch = binary.BigEndian.Uint16(archs), true
	}
	if len(reqIP) == 4 {
		r.RequestedIP, r.HasRequestedIP = [4]byte(reqIP), true
	}
	return nil
}

// join adds part v of an option to what earlier parts gave (RFC 3396
// concatenation); an empty option stays nil, as it reads as absent.
func join(prev, v []byte) []byte {
	switch {
	case len(v) == 0:
		return prev
	case prev == nil:
		return v
	}
	out := make([]byte, 0, len(prev)+len(v))
	return append(append(out, prev...), v...)
}
