package dhcpwire

import "encoding/binary"

// Reply is what a ProxyDHCP answer says beyond what it copies from the
// request.
type Reply struct {
	// MsgType is TypeOffer or TypeAck.
	MsgType byte
	// CIAddr is the client's address as it gave it (port 4011 answers).
	CIAddr [4]byte
	// Server is the boot server's address: siaddr and option 54.
	Server [4]byte
	// BootFile goes in the file field, or in option 67 when it is longer
	// than the field's 127 characters.
	BootFile string
	// Class is option 60 ("PXEClient" or "HTTPClient").
	Class string
	// Vendor is option 43 (PXE boot server discovery control), when set.
	Vendor string
}

// AppendReply appends to dst the answer to req that rep describes, and
// returns the extended buffer. It copies from the request what a reply
// carries back: the transaction ID, flags, hardware type and address, the
// relay's address and options 61, 82 (last, RFC 3046) and 97. Options go
// in code order, the message is padded to BOOTP's 300 bytes, and with a
// dst of enough capacity (576 bytes serve every answer without relay
// options) nothing is allocated.
func AppendReply(dst []byte, req *Request, rep *Reply) []byte {
	start := len(dst)
	var hdr [headerLen]byte
	hdr[0], hdr[1], hdr[2] = OpReply, req.HType, req.HLen
	copy(hdr[4:8], req.XID[:])
	binary.BigEndian.PutUint16(hdr[10:12], req.Flags)
	copy(hdr[12:16], rep.CIAddr[:])
	copy(hdr[20:24], rep.Server[:])
	copy(hdr[24:28], req.GIAddr[:])
	copy(hdr[28:44], req.MAC())
	if len(rep.BootFile) <= 127 {
		copy(hdr[108:235], rep.BootFile)
	}
	dst = append(dst, hdr[:]...)
	dst = append(dst, magicCookie[:]...)
	dst = appendOption(dst, OptVendorSpecific, rep.Vendor)
	dst = append(dst, OptMessageType, 1, rep.MsgType)
	dst = append(dst, OptServerID, 4)
	dst = append(dst, rep.Server[:]...)
	dst = appendOption(dst, OptClassID, rep.Class)
	dst = appendOption(dst, OptClientID, req.ClientID)
	if len(rep.BootFile) > 127 {
		dst = appendOption(dst, OptBootFile, rep.BootFile)
	}
	dst = appendOption(dst, OptMachineID, req.MachineID)
	dst = appendOption(dst, OptRelayAgent, req.RelayAgent)
	dst = append(dst, optEnd)
	for len(dst)-start < minReply {
		dst = append(dst, optPad)
	}
	return dst
}

// appendOption appends option code with value v, split into parts of 255
// bytes (RFC 3396); an empty v is left out.
func appendOption[V []byte | string](dst []byte, code byte, v V) []byte {
	for len(v) > 0 {
		n := min(len(v), 255)
		dst = append(dst, code, byte(n))
		dst = append(dst, v[:n]...)
		v = v[n:]
	}
	return dst
}
