// Package pxe holds provisiond's protocol servers: ProxyDHCP (UDP 67 and
// 4011), TFTP and the HTTP boot endpoints. They know packets, files and URLs;
// what a machine boots is asked of a Decider/Scripter, and every step is
// reported to an events.Sink.
package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/netutil"
)

// Decider answers "what does this PXE client boot?".
type Decider interface {
	DecideDHCP(ctx context.Context, req boot.Request) boot.DHCPDecision
}

// DHCPConfig configures the ProxyDHCP server.
type DHCPConfig struct {
	// Interfaces to serve; each gets its own sockets on Port and ProxyPort.
	Interfaces []netutil.Interface
	// Port is the DHCP server port (67).
	Port int
	// ProxyPort is the PXE boot server port (4011).
	ProxyPort int
	// Advertise, when set, replaces the interface address in answers.
	Advertise net.IP
	// HTTPPort is put in HTTP boot URLs.
	HTTPPort int
	// Decider makes the boot decision.
	Decider Decider
	// Steps receives the timeline steps (offers, clients not answered).
	Steps events.Reporter
	// Neighbors learns which IP each MAC uses (for TFTP attribution).
	Neighbors *Neighbors
	// Observer is told every packet's type and decision (nil: nobody).
	Observer Observer
	// Log is the logger.
	Log *slog.Logger
}

// DHCPStats counts what the ProxyDHCP server did.
type DHCPStats struct {
	Received, Offers, Acks, IgnoredNonPXE, IgnoredOther, Malformed, SendErrors uint64
}

// DHCPServer is a ProxyDHCP server: it gives PXE clients boot information
// and never an address.
type DHCPServer struct {
	cfg   DHCPConfig
	conns []boundConn
	wg    sync.WaitGroup

	received, offers, acks, ignoredNonPXE, ignoredOther, malformed, sendErrors atomic.Uint64
}

type boundConn struct {
	conn  *net.UDPConn
	iface netutil.Interface
	port  int
}

// NewDHCPServer returns a server; call Listen, then Serve.
func NewDHCPServer(cfg DHCPConfig) *DHCPServer {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Steps == nil {
		cfg.Steps = events.ReporterFunc(func(events.Step) {})
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	return &DHCPServer{cfg: cfg}
}

// Listen binds UDP Port and ProxyPort on every interface. Errors say how to
// fix them (privileges, another DHCP server on the host).
func (s *DHCPServer) Listen() error {
	if len(s.cfg.Interfaces) == 0 {
		return errors.New("ProxyDHCP: no interface to serve: name one with --interface or in the config")
	}
	for _, ifc := range s.cfg.Interfaces {
		for _, port := range []int{s.cfg.Port, s.cfg.ProxyPort} {
			c, err := netutil.ListenUDP(ifc.Name, port, true)
			if err != nil {
				s.Close()
				return fmt.Errorf("ProxyDHCP: %w", err)
			}
			s.conns = append(s.conns, boundConn{conn: c, iface: ifc, port: port})
		}
	}
	return nil
}

// Serve reads requests until ctx ends or Close is called. Each socket has a
// reader per CPU: packets are read one at a time but answered in parallel.
func (s *DHCPServer) Serve(ctx context.Context) error {
	for _, bc := range s.conns {
		for range runtime.GOMAXPROCS(0) {
			s.wg.Add(1)
			go func(bc boundConn) {
				defer s.wg.Done()
				s.readLoop(ctx, bc)
			}(bc)
		}
	}
	<-ctx.Done()
	s.Close()
	s.wg.Wait()
	return nil
}

// Close closes every socket.
func (s *DHCPServer) Close() {
	for _, bc := range s.conns {
		bc.conn.Close()
	}
}

// Stats returns the counters.
func (s *DHCPServer) Stats() DHCPStats {
	return DHCPStats{
		Received: s.received.Load(), Offers: s.offers.Load(), Acks: s.acks.Load(),
		IgnoredNonPXE: s.ignoredNonPXE.Load(), IgnoredOther: s.ignoredOther.Load(),
		Malformed: s.malformed.Load(), SendErrors: s.sendErrors.Load(),
	}
}

func (s *DHCPServer) readLoop(ctx context.Context, bc boundConn) {
	buf := make([]byte, 4096)
	for {
		n, from, err := bc.conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.cfg.Log.Warn("ProxyDHCP read failed", "interface", bc.iface.Name, "port", bc.port, "err", err)
			continue
		}
		reply, to := s.handlePacket(ctx, buf[:n], bc.iface, bc.port, from)
		if reply == nil {
			continue
		}
		if _, err := bc.conn.WriteToUDP(reply, to); err != nil {
			s.sendErrors.Add(1)
			s.cfg.Log.Warn("ProxyDHCP send failed", "to", to, "interface", bc.iface.Name, "err", err)
		}
	}
}

// handlePacket takes one datagram from the wire to the bytes of the answer
// (nil: stay silent). Anything that does not parse is counted and dropped.
func (s *DHCPServer) handlePacket(ctx context.Context, raw []byte, ifc netutil.Interface, port int, from *net.UDPAddr) ([]byte, *net.UDPAddr) {
	s.received.Add(1)
	pkt, err := dhcpv4.FromBytes(raw)
	if err != nil {
		s.malformed.Add(1)
		s.cfg.Observer.DHCP("unknown", "malformed")
		s.cfg.Log.Debug("dropped malformed DHCP packet", "from", from, "err", err)
		return nil, nil
	}
	reply, to := s.Handle(ctx, pkt, ifc, port, from)
	if reply == nil {
		return nil, nil
	}
	return reply.ToBytes(), to
}

// serverIP is the address this interface's clients reach provisiond at.
func (s *DHCPServer) serverIP(ifc netutil.Interface) net.IP {
	if s.cfg.Advertise != nil {
		return s.cfg.Advertise
	}
	return ifc.IP
}

// Handle decides the answer to one request that arrived on ifc at port from
// peer. It returns the reply and its destination, or nil to stay silent.
func (s *DHCPServer) Handle(ctx context.Context, req *dhcpv4.DHCPv4, ifc netutil.Interface, port int, peer *net.UDPAddr) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	mt := req.MessageType()
	typ := msgTypeLabel(mt)
	if req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) != 6 {
		s.malformed.Add(1)
		s.cfg.Observer.DHCP(typ, "malformed")
		return nil, nil
	}
	mac := req.ClientHWAddr.String()
	proxyPort := port == s.cfg.ProxyPort
	class := req.ClassIdentifier()

	// Learn the client's address from its REQUEST to the home router, so
	// TFTP transfers can be put on the right timeline.
	if ip := clientAddress(req); ip != nil && ip.IsGlobalUnicast() && s.cfg.Neighbors != nil && boot.IsPXEClass(class) {
		s.cfg.Neighbors.Learn(ip, mac)
	}

	switch {
	case !proxyPort && mt == dhcpv4.MessageTypeDiscover:
	case proxyPort && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
	default:
		// REQUESTs on port 67 belong to the home router; everything else
		// is not ours to answer.
		if boot.IsPXEClass(class) {
			s.ignoredOther.Add(1)
			s.cfg.Observer.DHCP(typ, "ignored_not_ours")
		} else {
			s.ignoredNonPXE.Add(1)
			s.cfg.Observer.DHCP(typ, "ignored_non_pxe")
		}
		return nil, nil
	}

	serverIP := s.serverIP(ifc)
	breq := boot.Request{
		MAC:      mac,
		Class:    class,
		ServerIP: serverIP.String(),
		HTTPPort: s.cfg.HTTPPort,
	}
	if archs := req.ClientArch(); len(archs) > 0 {
		breq.Arch, breq.HasArch = uint16(archs[0]), true
	}
	breq.IPXE, breq.IPXEFeatures = ipxeInfo(req)
	d := s.cfg.Decider.DecideDHCP(ctx, breq)
	if d.Ignore {
		if d.Silent {
			s.ignoredNonPXE.Add(1)
			s.cfg.Observer.DHCP(typ, "ignored_non_pxe")
			return nil, nil
		}
		s.ignoredOther.Add(1)
		s.cfg.Observer.DHCP(typ, "ignored_decision")
		s.cfg.Log.Info("PXE client not answered", "mac", mac, "reason", d.Reason)
		s.cfg.Steps.Report(events.Step{Type: events.DHCPIgnored, MAC: mac, Attrs: map[string]string{
			"reason": d.Reason, "arch": archString(breq), "port": strconv.Itoa(port), "interface": ifc.Name,
		}})
		return nil, nil
	}

	reply := replyTo(req)
	if proxyPort {
		reply.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
		reply.ClientIPAddr = req.ClientIPAddr
	} else {
		reply.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
	}
	reply.YourIPAddr = net.IPv4zero
	reply.ServerIPAddr = serverIP
	reply.BootFileName = d.BootFile
	reply.UpdateOption(dhcpv4.OptServerIdentifier(serverIP))
	reply.UpdateOption(dhcpv4.OptClassIdentifier(d.Class))
	if uuid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); uuid != nil {
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
	}
	if len(d.BootFile) > 127 {
		reply.BootFileName = ""
		reply.UpdateOption(dhcpv4.OptBootFileName(d.BootFile))
	}
	if d.Stage == "rom" && d.Firmware == boot.FirmwareBIOS {
		// PXE discovery control (option 43, sub-option 6) bit 3: the boot
		// file in this offer is final, skip boot server discovery. UEFI
		// firmware is left without it: it asks again on port 4011, where
		// it gets the same answer.
		reply.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
	}

	to := replyDestination(req, peer, proxyPort, s.cfg.Port)
	if proxyPort {
		s.acks.Add(1)
		s.cfg.Observer.DHCP(typ, "ack")
	} else {
		s.offers.Add(1)
		s.cfg.Observer.DHCP(typ, "offer")
	}
	// Every offer is a step on the machine's timeline and in the metrics;
	// the log has it at debug level, so a PXE storm does not flood it.
	s.cfg.Log.Debug("PXE boot offered", "mac", mac, "file", d.BootFile, "firmware", d.Firmware, "port", port, "interface", ifc.Name)
	attrs := map[string]string{
		"port": strconv.Itoa(port), "firmware": d.Firmware, "arch": archString(breq), "interface": ifc.Name, "server": serverIP.String(),
	}
	if breq.IPXE {
		attrs["ipxe"], attrs["ipxe_features"] = d.Chain, breq.IPXEFeatures.String()
	}
	s.cfg.Steps.Report(events.Step{Type: events.DHCPOffer, MAC: mac, File: d.BootFile, Stage: d.Stage, Continues: d.Continues, Attrs: attrs,
		Facts: map[string]string{"client_arch": archString(breq)}})
	return reply, to
}

// replyTo starts a reply to req as dhcpv4.NewReplyFromRequest does, without
// drawing a random transaction ID from the kernel only to overwrite it.
func replyTo(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	reply := &dhcpv4.DHCPv4{
		OpCode: dhcpv4.OpcodeBootRequest, HWType: iana.HWTypeEthernet, ClientHWAddr: make(net.HardwareAddr, 6),
		ClientIPAddr: net.IPv4zero, YourIPAddr: net.IPv4zero, ServerIPAddr: net.IPv4zero, GatewayIPAddr: net.IPv4zero,
		Options: dhcpv4.Options{},
	}
	for _, mod := range []dhcpv4.Modifier{
		dhcpv4.WithReply(req),
		dhcpv4.WithGatewayIP(req.GatewayIPAddr),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionRelayAgentInformation),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientIdentifier),
	} {
		mod(reply)
	}
	return reply
}

// replyDestination implements the ProxyDHCP reply rules: relayed requests go
// back to the relay; port-4011 requests are answered unicast to their
// sender; broadcasts are answered by broadcast (the client has no address).
func replyDestination(req *dhcpv4.DHCPv4, peer *net.UDPAddr, proxyPort bool, serverPort int) *net.UDPAddr {
	if gi := req.GatewayIPAddr; gi != nil && !gi.IsUnspecified() && !proxyPort {
		return &net.UDPAddr{IP: gi, Port: serverPort}
	}
	if proxyPort && peer != nil && peer.IP != nil && !peer.IP.IsUnspecified() {
		return peer
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

func clientAddress(req *dhcpv4.DHCPv4) net.IP {
	if ip := req.ClientIPAddr; ip != nil && !ip.IsUnspecified() {
		return ip
	}
	if req.MessageType() == dhcpv4.MessageTypeRequest {
		if ip := req.RequestedIPAddress(); ip != nil && !ip.IsUnspecified() {
			return ip
		}
	}
	return nil
}

// ipxeInfo reports whether the client is iPXE (user class "iPXE", plain or
// RFC 3004) and the features it announced (option 175; all of them when it
// sends no list).
func ipxeInfo(req *dhcpv4.DHCPv4) (isIPXE bool, feats boot.Features) {
	uc := req.GetOneOption(dhcpv4.OptionUserClassInformation)
	switch {
	case string(uc) == "iPXE":
		isIPXE = true
	case len(uc) > 1 && int(uc[0]) == len(uc)-1 && string(uc[1:]) == "iPXE":
		isIPXE = true
	}
	if !isIPXE {
		return false, 0
	}
	opt := req.GetOneOption(dhcpv4.GenericOptionCode(175))
	if opt == nil {
		return true, boot.AllFeatures
	}
	return true, boot.ParseFeatures(opt)
}

func archString(r boot.Request) string {
	if !r.HasArch {
		return "none"
	}
	return strconv.Itoa(int(r.Arch))
}

// msgTypeLabel names a message type for metrics: the known DHCP types in
// lower case, "none" for BOOTP (no option 53), "other" for the rest (so a
// flood of odd types cannot grow the label set).
func msgTypeLabel(mt dhcpv4.MessageType) string {
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		return "discover"
	case dhcpv4.MessageTypeRequest:
		return "request"
	case dhcpv4.MessageTypeInform:
		return "inform"
	case dhcpv4.MessageTypeRelease:
		return "release"
	case dhcpv4.MessageTypeDecline:
		return "decline"
	case dhcpv4.MessageTypeNone:
		return "none"
	}
	return "other"
}
