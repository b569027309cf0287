package pxe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/netutil"
)

type pureDecider struct{ opts boot.Options }

func (p pureDecider) DecideDHCP(_ context.Context, r boot.Request) boot.DHCPDecision {
	return boot.DecideDHCP(r, nil, p.opts)
}

type sinkRec struct {
	mu  sync.Mutex
	evs []events.Event
}

func (s *sinkRec) Report(st events.Step) {
	ev := st.Event()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, ev)
}

var (
	ifc    = netutil.Interface{Name: "lan0", IP: net.IPv4(192, 0, 2, 2).To4()}
	mac, _ = net.ParseMAC("52:54:00:12:34:56")
)

func newTestServer(sink *sinkRec) *DHCPServer {
	return NewDHCPServer(DHCPConfig{
		Interfaces: []netutil.Interface{ifc}, Port: 67, ProxyPort: 4011, HTTPPort: 8080,
		Decider:   pureDecider{boot.Options{BIOS: "undionly.kpxe", UEFIx64: "ipxe.efi", Chain: boot.ChainNever}},
		Steps:     sink,
		Neighbors: NewNeighbors(""),
	})
}

// exchange answers req as the server answers it from the wire: req is
// encoded and read, the answer written and decoded (nil: no answer).
func (s *DHCPServer) exchange(ctx context.Context, req *dhcpv4.DHCPv4, ifc netutil.Interface, port int, peer *net.UDPAddr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	var from netip.AddrPort
	if peer != nil {
		from = peer.AddrPort()
	}
	out, to := s.handlePacket(ctx, newReader(), req.ToBytes(), s.bind(nil, ifc, port), from)
	if len(out) == 0 {
		return nil, nil
	}
	reply, err := dhcpv4.FromBytes(out)
	if err != nil {
		panic(fmt.Sprintf("the server wrote an answer that does not parse: %v", err))
	}
	return reply, net.UDPAddrFromAddrPort(to)
}

func pxeDiscover(t testing.TB, arch iana.Arch, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	all := append([]dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}),
	}, mods...)
	d, err := dhcpv4.NewDiscovery(mac, all...)
	if err != nil {
		t.Fatal(err)
	}
	// Round-trip through the wire format, as the server sees it.
	d, err = dhcpv4.FromBytes(d.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestProxyOfferBIOS(t *testing.T) {
	sink := &sinkRec{}
	s := newTestServer(sink)
	req := pxeDiscover(t, iana.INTEL_X86PC)
	reply, to := s.exchange(context.Background(), req, ifc, 67, &net.UDPAddr{IP: net.IPv4zero, Port: 68})
	if reply == nil {
		t.Fatal("no reply to a BIOS PXE client")
	}
	if !reply.YourIPAddr.Equal(net.IPv4zero) {
		t.Errorf("yiaddr %s: a ProxyDHCP must not offer an address", reply.YourIPAddr)
	}
	if reply.MessageType() != dhcpv4.MessageTypeOffer || reply.TransactionID != req.TransactionID {
		t.Errorf("type %s xid %s", reply.MessageType(), reply.TransactionID)
	}
	if !reply.ServerIPAddr.Equal(ifc.IP) || !reply.ServerIdentifier().Equal(ifc.IP) {
		t.Errorf("siaddr %s server-id %s, want %s", reply.ServerIPAddr, reply.ServerIdentifier(), ifc.IP)
	}
	if reply.BootFileName != "undionly.kpxe" || reply.ClassIdentifier() != "PXEClient" {
		t.Errorf("file %q class %q", reply.BootFileName, reply.ClassIdentifier())
	}
	if got := reply.GetOneOption(dhcpv4.OptionVendorSpecificInformation); string(got) != string([]byte{6, 1, 8, 255}) {
		t.Errorf("option 43 %v: want PXE discovery control 8 (boot the file, no discovery)", got)
	}
	if got := reply.GetOneOption(dhcpv4.OptionClientMachineIdentifier); len(got) != 17 {
		t.Errorf("option 97 not echoed: %v", got)
	}
	if !to.IP.Equal(net.IPv4bcast) || to.Port != 68 {
		t.Errorf("reply to %s, want broadcast to port 68", to)
	}
	if len(sink.evs) != 1 || sink.evs[0].Type != events.DHCPOffer || sink.evs[0].Attrs["port"] != "67" || sink.evs[0].MAC != mac.String() {
		t.Errorf("events %+v", sink.evs)
	}
}

func TestProxyOfferUEFIAndPort4011(t *testing.T) {
	s := newTestServer(&sinkRec{})
	disc := pxeDiscover(t, iana.EFI_X86_64)
	offer, _ := s.exchange(context.Background(), disc, ifc, 67, nil)
	if offer == nil || offer.BootFileName != "ipxe.efi" {
		t.Fatalf("UEFI offer: %v", offer)
	}
	if offer.GetOneOption(dhcpv4.OptionVendorSpecificInformation) != nil {
		t.Error("UEFI offer carries option 43; EDK2 must see a plain ProxyDHCP offer and ask on port 4011")
	}
	// The follow-up on 4011 is unicast from the client's new address.
	req, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(mac),
		dhcpv4.WithClientIP(net.IPv4(192, 0, 2, 142)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
	req.OpCode = dhcpv4.OpcodeBootRequest
	peer := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 142), Port: 68}
	ack, to := s.exchange(context.Background(), req, ifc, 4011, peer)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "ipxe.efi" {
		t.Fatalf("4011 answer: %v", ack)
	}
	if !ack.YourIPAddr.Equal(net.IPv4zero) {
		t.Errorf("4011 ACK with yiaddr %s", ack.YourIPAddr)
	}
	if to.String() != peer.String() {
		t.Errorf("4011 reply to %s, want unicast to %s", to, peer)
	}
	// A DISCOVER on 4011 or a REQUEST on 67 is not ours to answer.
	if r, _ := s.exchange(context.Background(), disc, ifc, 4011, peer); r != nil {
		t.Error("answered a DISCOVER on port 4011")
	}
	if r, _ := s.exchange(context.Background(), req, ifc, 67, peer); r != nil {
		t.Error("answered a REQUEST on port 67 (that belongs to the home router)")
	}
}

func TestProxyIPXEGetsScriptURL(t *testing.T) {
	rec := &sinkRec{}
	s := newTestServer(rec)
	d := pxeDiscover(t, iana.INTEL_X86PC, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
		dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{19, 1, 1, 16, 1, 2}))
	r, _ := s.exchange(context.Background(), d, ifc, 67, nil)
	if r == nil || r.BootFileName != "http://192.0.2.2:8080/boot/52:54:00:12:34:56.ipxe" {
		t.Fatalf("iPXE answer: %v", r)
	}
	// The step says what the iPXE announced and why it was not chained.
	if ev := rec.evs[len(rec.evs)-1]; ev.Attrs["ipxe_features"] != "pxe-ext, http" || ev.Attrs["ipxe"] != "not chained: chain_ipxe is never" {
		t.Errorf("offer step %v", ev.Attrs)
	}
	// RFC 3004 encoding of the same user class.
	d = pxeDiscover(t, iana.INTEL_X86PC, dhcpv4.WithOption(dhcpv4.OptRFC3004UserClass([]string{"iPXE"})))
	if r, _ := s.exchange(context.Background(), d, ifc, 67, nil); r == nil || r.BootFileName == "undionly.kpxe" {
		t.Fatalf("RFC 3004 iPXE user class not recognised: %v", r)
	}
	// iPXE that lists features without HTTP (175.19) gets the TFTP script.
	d = pxeDiscover(t, iana.INTEL_X86PC, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
		dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{16, 1, 2}))
	if r, _ := s.exchange(context.Background(), d, ifc, 67, nil); r == nil || r.BootFileName == "" {
		t.Fatalf("iPXE without HTTP: %v", r)
	}
}

func TestProxyRelay(t *testing.T) {
	s := newTestServer(&sinkRec{})
	relay := net.IPv4(198, 51, 100, 1)
	d := pxeDiscover(t, iana.INTEL_X86PC, dhcpv4.WithRelay(relay))
	r, to := s.exchange(context.Background(), d, ifc, 67, &net.UDPAddr{IP: relay, Port: 67})
	if r == nil {
		t.Fatal("relayed PXE request not answered")
	}
	if !to.IP.Equal(relay) || to.Port != 67 {
		t.Errorf("relayed reply to %s, want %s:67", to, relay)
	}
	if !r.GatewayIPAddr.Equal(relay) {
		t.Errorf("giaddr %s not kept", r.GatewayIPAddr)
	}
}

func TestProxyIgnoresPlainClients(t *testing.T) {
	sink := &sinkRec{}
	s := newTestServer(sink)
	for _, class := range []string{"", "MSFT 5.0", "udhcp 1.35.0"} {
		mods := []dhcpv4.Modifier{}
		if class != "" {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(class)))
		}
		d, _ := dhcpv4.NewDiscovery(mac, mods...)
		if r, _ := s.exchange(context.Background(), d, ifc, 67, nil); r != nil {
			t.Errorf("answered a plain client with class %q", class)
		}
	}
	if len(sink.evs) != 0 {
		t.Errorf("plain clients made events: %+v", sink.evs)
	}
	if st := s.Stats(); st.IgnoredNonPXE != 3 || st.Offers != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestProxyAdvertiseOverride(t *testing.T) {
	s := newTestServer(&sinkRec{})
	s.cfg.Advertise = net.IPv4(203, 0, 113, 5).To4()
	r, _ := s.exchange(context.Background(), pxeDiscover(t, iana.INTEL_X86PC), ifc, 67, nil)
	if !r.ServerIPAddr.Equal(s.cfg.Advertise) || !r.ServerIdentifier().Equal(s.cfg.Advertise) {
		t.Errorf("siaddr %s, want the advertised %s", r.ServerIPAddr, s.cfg.Advertise)
	}
}

func TestProxyMultipleInterfaces(t *testing.T) {
	s := newTestServer(&sinkRec{})
	other := netutil.Interface{Name: "lan1", IP: net.IPv4(198, 51, 100, 2).To4()}
	r, _ := s.exchange(context.Background(), pxeDiscover(t, iana.INTEL_X86PC), other, 67, nil)
	if !r.ServerIPAddr.Equal(other.IP) || !r.ServerIdentifier().Equal(other.IP) {
		t.Errorf("answer on lan1 names %s, want lan1's address %s", r.ServerIPAddr, other.IP)
	}
}

func TestMalformedPacketsAreCounted(t *testing.T) {
	s := newTestServer(&sinkRec{})
	d := pxeDiscover(t, iana.INTEL_X86PC)
	d.OpCode = dhcpv4.OpcodeBootReply
	if r, _ := s.exchange(context.Background(), d, ifc, 67, nil); r != nil {
		t.Error("answered a BOOTREPLY")
	}
	d = pxeDiscover(t, iana.INTEL_X86PC)
	d.ClientHWAddr = net.HardwareAddr{1, 2, 3}
	if r, _ := s.exchange(context.Background(), d, ifc, 67, nil); r != nil {
		t.Error("answered a packet with a 3-byte hardware address")
	}
	if s.Stats().Malformed != 2 {
		t.Errorf("malformed count %d", s.Stats().Malformed)
	}
}

// One PXE DISCOVER from the wire to the bytes of the proxy offer: parse,
// decide, build, encode, and the timeline step (to a sink that drops it).
func BenchmarkDHCPPacket(b *testing.B) {
	s := NewDHCPServer(DHCPConfig{
		Interfaces: []netutil.Interface{ifc}, Port: 67, ProxyPort: 4011, HTTPPort: 8080,
		Decider:   pureDecider{boot.Options{BIOS: "undionly.kpxe", UEFIx64: "snponly.efi", Chain: boot.ChainAuto}},
		Neighbors: NewNeighbors(""),
	})
	raw := pxeDiscover(b, iana.INTEL_X86PC).ToBytes()
	bc, r := s.bind(nil, ifc, 67), newReader()
	b.ReportAllocs()
	for b.Loop() {
		if out, _ := s.handlePacket(context.Background(), r, raw, bc, netip.AddrPort{}); len(out) == 0 {
			b.Fatal("no offer")
		}
	}
}

// serveProxyPort serves s's proxy port on a loopback socket until the test
// ends, and returns its address.
func serveProxyPort(tb testing.TB, s *DHCPServer) netip.AddrPort {
	tb.Helper()
	conn, err := netutil.ListenUDPSocket("", 0, false)
	if err != nil {
		tb.Fatal(err)
	}
	s.conns = []boundConn{s.bind(conn, ifc, 4011)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(conn.LocalPort()))
}

// A burst of PXE requests to the proxy port, read and answered by the
// readers waiting in the kernel: every one gets its answer, unicast to its
// sender.
func TestProxyAnswersABurst(t *testing.T) {
	s := newTestServer(&sinkRec{})
	server := net.UDPAddrFromAddrPort(serveProxyPort(t, s))

	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.SetReadBuffer(netutil.ReceiveBuffer)
	const burst = 200
	for i := range burst {
		hw := net.HardwareAddr{0x52, 0x54, 0x00, 0x33, byte(i >> 8), byte(i)}
		req, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
		if err != nil {
			t.Fatal(err)
		}
		req.ClientIPAddr = net.IPv4(192, 0, 2, 100)
		if _, err := client.WriteToUDP(req.ToBytes(), server); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	buf := make([]byte, 1500)
	for len(seen) < burst {
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := client.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("%d of %d answered: %v", len(seen), burst, err)
		}
		ack, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "ipxe.efi" {
			t.Fatalf("answer %v: %v", ack, err)
		}
		seen[ack.ClientHWAddr.String()] = true
	}
	if st := s.Stats(); st.Received != burst || st.Acks != burst {
		t.Errorf("stats %+v", st)
	}
}

// Bursts of 64 PXE requests to the proxy port, over loopback, each
// answered: the cost per answer when requests queue up, as they do when
// a rack powers on. The server's readers take what is queued in one
// system call and send the answers in one (readBatch).
func BenchmarkDHCPBurst(b *testing.B) {
	server := serveProxyPort(b, newTestServer(&sinkRec{}))
	client, err := netutil.ListenUDPSocket("", 0, false)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	const burst = 64
	out, in := netutil.NewBatch(burst, 1500), netutil.NewBatch(burst, 1500)
	for i := range burst {
		hw := net.HardwareAddr{0x52, 0x54, 0x00, 0x44, 0, byte(i)}
		req, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
		if err != nil {
			b.Fatal(err)
		}
		req.ClientIPAddr = net.IPv4(192, 0, 2, 100)
		out.Msgs[i].N, out.Msgs[i].Addr = copy(out.Msgs[i].Buf, req.ToBytes()), server
	}
	b.ReportAllocs()
	for b.Loop() {
		if failed, err := client.WriteBatch(out, burst); failed > 0 {
			b.Fatal(err)
		}
		for got := 0; got < burst; {
			n, err := client.ReadBatch(in)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/answer")
}
