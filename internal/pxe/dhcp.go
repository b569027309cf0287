// Package pxe holds provisiond's protocol servers: ProxyDHCP (UDP 67 and
// 4011), TFTP and the HTTP boot endpoints. They know packets, files and URLs;
// what a machine boots is asked of a Decider/Scripter, and every step is
// reported to an events.Sink.
package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/dhcpwire"
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

// DHCPStats counts what the ProxyDHCP server did. Repeats are answers not
// reported as steps because they repeat one reported for the same MAC and
// port within a second.
type DHCPStats struct {
	Received, Offers, Acks, IgnoredNonPXE, IgnoredOther, Malformed, SendErrors, Repeats uint64
}

// DHCPServer is a ProxyDHCP server: it gives PXE clients boot information
// and never an address.
type DHCPServer struct {
	cfg     DHCPConfig
	conns   []boundConn
	wg      sync.WaitGroup
	repeats *repeats // each MAC's last answers, and when it was last offered a boot

	received, offers, acks, ignoredNonPXE, ignoredOther, malformed, sendErrors, repeated atomic.Uint64
}

// boundConn is one socket and what answers from it say.
type boundConn struct {
	conn  *netutil.UDPSocket
	iface netutil.Interface
	port  int
	// server is the address clients reach provisiond at (siaddr, option
	// 54); base its HTTP base URL.
	server [4]byte
	base   string
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
	return &DHCPServer{cfg: cfg, repeats: newRepeats()}
}

// Listen binds UDP Port and ProxyPort on every interface. Errors say how to
// fix them (privileges, another DHCP server on the host).
func (s *DHCPServer) Listen() error {
	if len(s.cfg.Interfaces) == 0 {
		return errors.New("ProxyDHCP: no interface to serve: name one with --interface or in the config")
	}
	for _, ifc := range s.cfg.Interfaces {
		for _, port := range []int{s.cfg.Port, s.cfg.ProxyPort} {
			c, err := netutil.ListenUDPSocket(ifc.Name, port, true)
			if err != nil {
				s.Close()
				return fmt.Errorf("ProxyDHCP: %w", err)
			}
			s.conns = append(s.conns, s.bind(c, ifc, port))
		}
	}
	return nil
}

// bind describes socket c on ifc at port.
func (s *DHCPServer) bind(c *netutil.UDPSocket, ifc netutil.Interface, port int) boundConn {
	ip := ifc.IP
	if s.cfg.Advertise != nil {
		ip = s.cfg.Advertise
	}
	bc := boundConn{conn: c, iface: ifc, port: port}
	if ip4 := ip.To4(); ip4 != nil {
		bc.server = [4]byte(ip4)
	}
	bc.base = boot.BaseURL(net.IP(bc.server[:]).String(), s.cfg.HTTPPort)
	return bc
}

// Serve reads requests until ctx ends or Close is called. Each socket has a
// reader per CPU, each waiting in the kernel for the next datagram
// (netutil.UDPSocket): an answer goes out in microseconds, without a trip
// through Go's network poller.
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
		Malformed: s.malformed.Load(), SendErrors: s.sendErrors.Load(), Repeats: s.repeated.Load(),
	}
}

// readLoop answers the datagrams of one socket. It reads what is queued in
// one system call, answers each, and sends the answers in one call: under
// a flood a reader pays two calls for many datagrams, and a lone request
// is answered at once. Requests, answers and the reader's state are
// buffers of this reader, reused for every batch.
func (s *DHCPServer) readLoop(ctx context.Context, bc boundConn) {
	r := newReader()
	in, out := netutil.NewBatch(readBatch, 4096), netutil.NewBatch(readBatch, 1500)
	for {
		n, err := bc.conn.ReadBatch(in)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.cfg.Log.Warn("ProxyDHCP read failed", "interface", bc.iface.Name, "port", bc.port, "err", err)
			continue
		}
		answers := 0
		for _, m := range in.Msgs[:n] {
			o := &out.Msgs[answers]
			r.out = o.Buf[:0]
			ans, to := s.handlePacket(ctx, r, m.Buf[:m.N], bc, m.Addr)
			if len(ans) == 0 {
				continue
			}
			// An answer that outgrew the buffer keeps its bigger one.
			o.Buf, o.N, o.Addr = ans[:cap(ans)], len(ans), to
			answers++
		}
		if answers == 0 {
			continue
		}
		if failed, err := bc.conn.WriteBatch(out, answers); failed > 0 {
			s.sendErrors.Add(uint64(failed))
			s.cfg.Log.Warn("ProxyDHCP send failed", "answers", failed, "interface", bc.iface.Name, "err", err)
		}
	}
}

// readBatch is how many datagrams a reader takes in one system call.
const readBatch = 16

// handlePacket takes datagram raw from the wire to the answer (in r.out;
// empty: stay silent) and its destination. Anything that does not parse is
// counted and dropped.
func (s *DHCPServer) handlePacket(ctx context.Context, r *reader, raw []byte, bc boundConn, from netip.AddrPort) ([]byte, netip.AddrPort) {
	s.received.Add(1)
	r.out = r.out[:0]
	if err := dhcpwire.Parse(raw, &r.req); err != nil {
		s.malformed.Add(1)
		s.cfg.Observer.DHCP("unknown", "malformed")
		s.cfg.Log.Debug("dropped malformed DHCP packet", "from", from, "err", err)
		return nil, netip.AddrPort{}
	}
	return s.handle(ctx, r, bc, from)
}

// handle decides the answer to the request in r that arrived on bc from
// peer, writes it to r.out and returns it and its destination (nil: stay
// silent).
func (s *DHCPServer) handle(ctx context.Context, r *reader, bc boundConn, peer netip.AddrPort) ([]byte, netip.AddrPort) {
	req := &r.req
	mt := req.MsgType
	typ := msgTypeLabel(mt)
	if req.Op != dhcpwire.OpRequest || req.HLen != 6 {
		s.malformed.Add(1)
		s.cfg.Observer.DHCP(typ, "malformed")
		return nil, netip.AddrPort{}
	}
	proxyPort := bc.port == s.cfg.ProxyPort
	pxe := isPXEClass(req.Class)
	var mac string
	if pxe {
		mac = r.mac()
		// Learn the client's address from its REQUEST to the home
		// router, so TFTP transfers can be put on the right timeline.
		if ip := clientAddress(req); ip != nil && ip.IsGlobalUnicast() && s.cfg.Neighbors != nil {
			s.cfg.Neighbors.Learn(ip, mac)
		}
	}

	switch {
	case !proxyPort && mt == dhcpwire.TypeDiscover:
	case proxyPort && (mt == dhcpwire.TypeRequest || mt == dhcpwire.TypeInform):
	default:
		// REQUESTs on port 67 belong to the home router; everything else
		// is not ours to answer.
		if pxe {
			s.ignoredOther.Add(1)
			s.cfg.Observer.DHCP(typ, "ignored_not_ours")
		} else {
			s.ignoredNonPXE.Add(1)
			s.cfg.Observer.DHCP(typ, "ignored_non_pxe")
		}
		return nil, netip.AddrPort{}
	}
	if !pxe {
		// The LAN's other DHCP clients: not a boot, nothing to record.
		s.ignoredNonPXE.Add(1)
		s.cfg.Observer.DHCP(typ, "ignored_non_pxe")
		return nil, netip.AddrPort{}
	}

	breq := boot.Request{MAC: mac, Class: r.class(req.Class), BaseURL: bc.base, Arch: req.Arch, HasArch: req.HasArch}
	breq.IPXE, breq.IPXEFeatures = ipxeInfo(req)
	d := s.cfg.Decider.DecideDHCP(ctx, breq)
	now := time.Now()
	if d.Ignore {
		if d.Silent {
			s.ignoredNonPXE.Add(1)
			s.cfg.Observer.DHCP(typ, "ignored_non_pxe")
			return nil, netip.AddrPort{}
		}
		s.ignoredOther.Add(1)
		s.cfg.Observer.DHCP(typ, "ignored_decision")
		repeat, folded := s.repeats.seen(mac, proxyPort, answer{ignored: true, text: d.Reason}, now)
		if repeat {
			s.repeated.Add(1)
			return nil, netip.AddrPort{}
		}
		s.cfg.Log.Info("PXE client not answered", "mac", mac, "reason", d.Reason)
		attrs := map[string]string{"reason": d.Reason, "arch": archString(breq), "port": strconv.Itoa(bc.port), "interface": bc.iface.Name}
		if folded > 0 {
			attrs["repeats"] = strconv.Itoa(folded)
		}
		s.cfg.Steps.Report(events.Step{Type: events.DHCPIgnored, MAC: mac, Time: now.UTC(), Attrs: attrs})
		return nil, netip.AddrPort{}
	}

	rep := dhcpwire.Reply{MsgType: dhcpwire.TypeOffer, Server: bc.server, BootFile: d.BootFile, Class: d.Class}
	if proxyPort {
		rep.MsgType, rep.CIAddr = dhcpwire.TypeAck, req.CIAddr
	}
	if d.Stage == "rom" && d.Firmware == boot.FirmwareBIOS {
		// PXE discovery control (option 43, sub-option 6) bit 3: the boot
		// file in this offer is final, skip boot server discovery. UEFI
		// firmware is left without it: it asks again on port 4011, where
		// it gets the same answer.
		rep.Vendor = discoveryControl
	}
	r.out = dhcpwire.AppendReply(r.out, req, &rep)
	to := replyDestination(req, peer, proxyPort, s.cfg.Port)
	if proxyPort {
		s.acks.Add(1)
		s.cfg.Observer.DHCP(typ, "ack")
	} else {
		s.offers.Add(1)
		s.cfg.Observer.DHCP(typ, "offer")
	}
	repeat, folded := s.repeats.seen(mac, proxyPort, answer{text: d.BootFile}, now)
	if repeat {
		s.repeated.Add(1)
		return r.out, to
	}
	// Every offer is a step on the machine's timeline and in the metrics;
	// the log has it at debug level, so a PXE storm does not flood it.
	s.cfg.Log.Debug("PXE boot offered", "mac", mac, "file", d.BootFile, "firmware", d.Firmware, "port", bc.port, "interface", bc.iface.Name)
	attrs := map[string]string{
		"port": strconv.Itoa(bc.port), "firmware": d.Firmware, "arch": archString(breq), "interface": bc.iface.Name, "server": netip.AddrFrom4(bc.server).String(),
	}
	if breq.IPXE {
		attrs["ipxe"], attrs["ipxe_features"] = d.Chain, breq.IPXEFeatures.String()
	}
	if folded > 0 {
		// Answers given since the last step and not made steps: a
		// client asking again and again, less than a second apart.
		attrs["repeats"] = strconv.Itoa(folded)
	}
	s.cfg.Steps.Report(events.Step{Type: events.DHCPOffer, MAC: mac, Time: now.UTC(), File: d.BootFile, Stage: d.Stage, Continues: d.Continues, Attrs: attrs,
		Facts: map[string]string{"client_arch": archString(breq)}})
	return r.out, to
}

// Booting reports whether the server gave mac a boot answer (PXE or iPXE)
// within the last two minutes.
func (s *DHCPServer) Booting(mac string) bool { return s.repeats.booting(mac, time.Now()) }

// discoveryControl is option 43 with PXE sub-option 6 (discovery control)
// bit 3 set: use the boot file offered, skip boot server discovery.
const discoveryControl = "\x06\x01\x08\xff"

// isPXEClass is boot.IsPXEClass on option 60's bytes.
func isPXEClass(class []byte) bool {
	return bytes.HasPrefix(class, []byte(boot.ClassPXE)) || bytes.HasPrefix(class, []byte(boot.ClassHTTP))
}

// replyDestination implements the ProxyDHCP reply rules: relayed requests go
// back to the relay; port-4011 requests are answered unicast to their
// sender; broadcasts are answered by broadcast (the client has no address).
func replyDestination(req *dhcpwire.Request, peer netip.AddrPort, proxyPort bool, serverPort int) netip.AddrPort {
	if gi := netip.AddrFrom4(req.GIAddr); !gi.IsUnspecified() && !proxyPort {
		return netip.AddrPortFrom(gi, uint16(serverPort))
	}
	if proxyPort && peer.IsValid() && !peer.Addr().IsUnspecified() {
		return peer
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), clientPort)
}

// clientPort is the DHCP client port (68).
const clientPort = 68

func clientAddress(req *dhcpwire.Request) net.IP {
	if ip := netip.AddrFrom4(req.CIAddr); !ip.IsUnspecified() {
		return net.IP(req.CIAddr[:])
	}
	if req.MsgType == dhcpwire.TypeRequest && req.HasRequestedIP && !netip.AddrFrom4(req.RequestedIP).IsUnspecified() {
		return net.IP(req.RequestedIP[:])
	}
	return nil
}

// ipxeInfo reports whether the client is iPXE (user class "iPXE", plain or
// RFC 3004) and the features it announced (option 175; all of them when it
// sends no list).
func ipxeInfo(req *dhcpwire.Request) (isIPXE bool, feats boot.Features) {
	uc := req.UserClass
	switch {
	case string(uc) == "iPXE":
		isIPXE = true
	case len(uc) > 1 && int(uc[0]) == len(uc)-1 && string(uc[1:]) == "iPXE":
		isIPXE = true
	}
	if !isIPXE {
		return false, 0
	}
	if req.Features == nil {
		return true, boot.AllFeatures
	}
	return true, boot.ParseFeatures(req.Features)
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
func msgTypeLabel(mt byte) string {
	switch mt {
	case dhcpwire.TypeDiscover:
		return "discover"
	case dhcpwire.TypeRequest:
		return "request"
	case dhcpwire.TypeInform:
		return "inform"
	case dhcpwire.TypeRelease:
		return "release"
	case dhcpwire.TypeDecline:
		return "decline"
	case dhcpwire.TypeNone:
		return "none"
	}
	return "other"
}
