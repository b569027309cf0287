package dhcpwire

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// captured returns the DHCP requests the ProxyDHCP fuzz corpus holds:
// packets captured from SeaBIOS's iPXE ROM, OVMF's PXE and iPXE itself.
func captured(t testing.TB) [][]byte {
	files, err := filepath.Glob("../pxe/testdata/fuzz/FuzzDHCP/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captured packets in ../pxe/testdata/fuzz/FuzzDHCP: %v", err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		if len(lines) < 2 || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a go test fuzz v1 file", f)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, []byte(s))
	}
	return out
}

func pxeRequest(t testing.TB, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	mods = append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(net.HardwareAddr{0x52, 0x54, 0x00, 0xe2, 0xe0, 0x01}),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, bytes.Repeat([]byte{7}, 16)...))),
	}, mods...)
	p, err := dhcpv4.New(mods...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// agree fails t unless Parse reads raw as insomniacslk/dhcp does: both
// refuse it, or both read the same fields.
func agree(t *testing.T, raw []byte) {
	t.Helper()
	var r Request
	err := Parse(raw, &r)
	want, werr := dhcpv4.FromBytes(raw)
	if (err != nil) != (werr != nil) {
		t.Fatalf("Parse: %v; insomniacslk/dhcp: %v", err, werr)
	}
	if err != nil {
		return
	}
	opt := func(code dhcpv4.OptionCode) []byte { return want.Options.Get(code) }
	check := func(what string, got, exp []byte) {
		if !bytes.Equal(got, exp) || (got == nil) != (exp == nil) {
			t.Errorf("%s: %x, insomniacslk/dhcp %x", what, got, exp)
		}
	}
	if r.Op != byte(want.OpCode) || r.HType != byte(want.HWType) || r.XID != want.TransactionID || r.Flags != want.Flags || r.Hops != want.HopCount || r.Secs != want.NumSeconds {
		t.Errorf("header %+v, insomniacslk/dhcp %+v", r, want)
	}
	check("chaddr", r.MAC(), want.ClientHWAddr)
	check("ciaddr", r.CIAddr[:], want.ClientIPAddr.To4())
	check("giaddr", r.GIAddr[:], want.GatewayIPAddr.To4())
	if r.MsgType != byte(want.MessageType()) {
		t.Errorf("message type %d, insomniacslk/dhcp %d", r.MsgType, want.MessageType())
	}
	archs := want.ClientArch()
	if r.HasArch != (len(archs) > 0) || (r.HasArch && r.Arch != uint16(archs[0])) {
		t.Errorf("arch %d (%v), insomniacslk/dhcp %v", r.Arch, r.HasArch, archs)
	}
	ip := want.RequestedIPAddress()
	if r.HasRequestedIP != (ip != nil) || (ip != nil && !net.IP(r.RequestedIP[:]).Equal(ip)) {
		t.Errorf("requested IP %v (%v), insomniacslk/dhcp %v", r.RequestedIP, r.HasRequestedIP, ip)
	}
	check("class", r.Class, opt(dhcpv4.OptionClassIdentifier))
	check("user class", r.UserClass, opt(dhcpv4.OptionUserClassInformation))
	check("features", r.Features, opt(dhcpv4.GenericOptionCode(175)))
	check("machine ID", r.MachineID, opt(dhcpv4.OptionClientMachineIdentifier))
	check("client ID", r.ClientID, opt(dhcpv4.OptionClientIdentifier))
	check("relay agent", r.RelayAgent, opt(dhcpv4.OptionRelayAgentInformation))
}

func TestParseReadsCapturedFirmware(t *testing.T) {
	for _, raw := range captured(t) {
		agree(t, raw)
		var r Request
		if err := Parse(raw, &r); err != nil {
			t.Fatalf("a captured firmware packet did not parse: %v", err)
		}
	}
}

func TestParseAgreesOnEdges(t *testing.T) {
	base := pxeRequest(t,
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE"))),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(175), []byte{19, 1, 1, 24, 1, 1})),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 70))),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, []byte{1, 3, 'e', 't', '0'})),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientIdentifier, []byte{1, 0x52, 0x54, 0, 0xe2, 0xe0, 1})),
	).ToBytes()
	end := bytes.LastIndexByte(base, optEnd)
	cases := map[string][]byte{
		"whole":           base,
		"short":           base[:100],
		"no cookie":       append(append([]byte{}, base[:headerLen]...), 1, 2, 3, 4, optEnd),
		"no end":          base[:end],
		"cut in option":   base[:headerLen+4+3],
		"class repeated":  withOptions(base, OptClassID, 3, 'a', 'b', 'c', OptClassID, 2, 'd', 'e'),
		"empty class":     withOptions(base[:headerLen+4], OptClassID, 0),
		"odd arch":        withOptions(base[:headerLen+4], OptClientArch, 3, 0, 7, 1),
		"empty arch":      withOptions(base[:headerLen+4], OptClientArch, 0),
		"two archs":       withOptions(base[:headerLen+4], OptClientArch, 4, 0, 7, 0, 0),
		"type 2 bytes":    withOptions(base[:headerLen+4], OptMessageType, 2, 1, 1),
		"short IP":        withOptions(base[:headerLen+4], OptRequestedIP, 3, 192, 0, 2),
		"long hlen":       append([]byte{1, 1, 40}, base[3:]...),
		"pads":            withOptions(base[:headerLen+4], optPad, optPad, OptMessageType, 1, 3),
		"length past end": append(append([]byte{}, base[:headerLen+4]...), OptClassID, 200, 'x'),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) { agree(t, raw) })
	}
}

// withOptions returns the header and cookie of p followed by opts and End.
func withOptions(p []byte, opts ...byte) []byte {
	out := append([]byte{}, p...)
	if len(out) > headerLen+4 {
		out = out[:len(out)-1] // drop the End (and what follows is padding)
		out = bytes.TrimRight(out, "\x00")
	}
	return append(append(out, opts...), optEnd)
}

// FuzzParse checks Parse against insomniacslk/dhcp on any datagram.
func FuzzParse(f *testing.F) {
	for _, raw := range captured(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { agree(t, raw) })
}

// The reply is byte for byte what insomniacslk/dhcp writes for the same
// answer (the encoding provisiond used before this package).
func TestAppendReplyAsInsomniacslk(t *testing.T) {
	long := "http://192.0.2.2:8080/" + strings.Repeat("x", 140)
	relay := bytes.Repeat([]byte{1, 2, 'a', 'b'}, 80) // 320 bytes: two parts
	for _, c := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		rep  Reply
	}{
		{"bios offer", pxeRequest(t), Reply{MsgType: TypeOffer, Server: [4]byte{192, 0, 2, 2}, BootFile: "undionly.kpxe", Class: "PXEClient", Vendor: "\x06\x01\x08\xff"}},
		{"ack", pxeRequest(t, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 70))),
			Reply{MsgType: TypeAck, CIAddr: [4]byte{192, 0, 2, 70}, Server: [4]byte{192, 0, 2, 2}, BootFile: "snponly.efi", Class: "PXEClient"}},
		{"long file", pxeRequest(t), Reply{MsgType: TypeOffer, Server: [4]byte{192, 0, 2, 2}, BootFile: long, Class: "HTTPClient"}},
		{"relayed", pxeRequest(t, dhcpv4.WithGatewayIP(net.IPv4(198, 51, 100, 1)),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionRelayAgentInformation, relay)),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientIdentifier, []byte{1, 2, 3}))),
			Reply{MsgType: TypeOffer, Server: [4]byte{192, 0, 2, 2}, BootFile: "undionly.kpxe", Class: "PXEClient"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r Request
			if err := Parse(c.req.ToBytes(), &r); err != nil {
				t.Fatal(err)
			}
			got := AppendReply(nil, &r, &c.rep)
			if want := oracleReply(c.req, &c.rep); !bytes.Equal(got, want) {
				t.Errorf("reply\n%x\ninsomniacslk/dhcp writes\n%x", got, want)
			}
		})
	}
}

// oracleReply builds rep's answer to req with insomniacslk/dhcp.
func oracleReply(req *dhcpv4.DHCPv4, rep *Reply) []byte {
	p := &dhcpv4.DHCPv4{OpCode: dhcpv4.OpcodeBootReply, HWType: req.HWType, TransactionID: req.TransactionID, Flags: req.Flags,
		ClientHWAddr: req.ClientHWAddr, ClientIPAddr: net.IP(rep.CIAddr[:]), YourIPAddr: net.IPv4zero, ServerIPAddr: net.IP(rep.Server[:]),
		GatewayIPAddr: req.GatewayIPAddr, BootFileName: rep.BootFile, Options: dhcpv4.Options{}}
	p.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageType(rep.MsgType)))
	p.UpdateOption(dhcpv4.OptServerIdentifier(net.IP(rep.Server[:])))
	p.UpdateOption(dhcpv4.OptClassIdentifier(rep.Class))
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionRelayAgentInformation, dhcpv4.OptionClientIdentifier, dhcpv4.OptionClientMachineIdentifier} {
		if v := req.Options.Get(code); v != nil {
			p.UpdateOption(dhcpv4.OptGeneric(code, v))
		}
	}
	if len(rep.BootFile) > 127 {
		p.BootFileName = ""
		p.UpdateOption(dhcpv4.OptBootFileName(rep.BootFile))
	}
	if rep.Vendor != "" {
		p.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte(rep.Vendor)))
	}
	return p.ToBytes()
}

// Reading a captured request and writing its offer allocates nothing.
func TestNoAllocations(t *testing.T) {
	raw := captured(t)[0]
	buf := make([]byte, 0, 576)
	var r Request
	rep := Reply{MsgType: TypeOffer, Server: [4]byte{192, 0, 2, 2}, BootFile: "undionly.kpxe", Class: "PXEClient", Vendor: "\x06\x01\x08\xff"}
	if n := testing.AllocsPerRun(100, func() {
		if err := Parse(raw, &r); err != nil {
			t.Fatal(err)
		}
		buf = AppendReply(buf[:0], &r, &rep)
	}); n != 0 {
		t.Errorf("%v allocations per request and reply, want 0", n)
	}
}

func BenchmarkParseAndReply(b *testing.B) {
	raw := captured(b)[0]
	buf := make([]byte, 0, 576)
	var r Request
	rep := Reply{MsgType: TypeOffer, Server: [4]byte{192, 0, 2, 2}, BootFile: "undionly.kpxe", Class: "PXEClient"}
	b.ReportAllocs()
	for b.Loop() {
		if err := Parse(raw, &r); err != nil {
			b.Fatal(err)
		}
		buf = AppendReply(buf[:0], &r, &rep)
	}
}
