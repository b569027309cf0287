package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv6"

	"github.com/provisiond/provisiond/internal/bounded"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/netutil"
)

// iPXE configures IPv6 alongside IPv4 and goes on only when both are done:
// on a network without an IPv6 router it sends router solicitations for
// about 15 s, at every iPXE start, before it fetches anything. The RA
// server ends that wait: when a machine that provisiond is booting
// solicits and no router has answered within RAConfig.Wait, it answers
// that machine alone (unicast) with a router advertisement that
// configures nothing: router lifetime 0 (not a default router), no
// prefix, no managed or other-configuration flag. iPXE takes the first
// advertisement it solicited, finishes IPv6 with no address and boots
// over IPv4 at once. On a network where any router advertises (heard
// within RAConfig.Quiet) it never answers.

// RAConfig configures the RA server.
type RAConfig struct {
	// Interfaces to serve.
	Interfaces []netutil.Interface
	// Booting reports whether provisiond is booting the machine with this
	// MAC (it answered its PXE or iPXE request moments ago).
	Booting func(mac string) bool
	// Wait is how long a router has to answer a solicitation before the
	// RA server does (1 s: routers answer within half a second).
	Wait time.Duration
	// Quiet is how long after hearing a router's advertisement the RA
	// server keeps silent on that interface (an hour).
	Quiet time.Duration
	// Steps receives an ipv6.ra step per answer.
	Steps events.Reporter
	// Log is the logger.
	Log *slog.Logger
}

// RAStats counts what the RA server did.
type RAStats struct {
	// Solicitations from machines being booted, Answered, and
	// RouterHeard: solicitations left to a router heard on the link.
	Solicitations, Answered, RouterHeard uint64
}

// RAServer answers the router solicitations of machines being booted on
// networks without an IPv6 router.
type RAServer struct {
	cfg  RAConfig
	conn *ipv6.PacketConn
	raw  net.PacketConn
	ifs  map[int]netutil.Interface // by interface index

	mu         sync.Mutex
	routerSeen map[int]time.Time // by interface index: a router's last advertisement
	pending    *bounded.Map[struct{}]
	wg         sync.WaitGroup

	solicitations, answered, routerHeard atomic.Uint64
}

// NewRAServer returns an RA server; call Listen, then Serve.
func NewRAServer(cfg RAConfig) *RAServer {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Steps == nil {
		cfg.Steps = events.ReporterFunc(func(events.Step) {})
	}
	if cfg.Wait <= 0 {
		cfg.Wait = time.Second
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = time.Hour
	}
	return &RAServer{cfg: cfg, ifs: map[int]netutil.Interface{}, routerSeen: map[int]time.Time{},
		pending: bounded.New[struct{}](4096, time.Minute)}
}

// Listen opens the ICMPv6 socket (CAP_NET_RAW) and joins the all-routers
// group on every interface.
func (s *RAServer) Listen() error {
	c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("IPv6 router advertisements: opening an ICMPv6 socket: %w (it needs CAP_NET_RAW: run as root, add the capability, or set boot.ipv6_ra: false)", err)
	}
	p := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	if err := p.SetICMPFilter(&f); err != nil {
		c.Close()
		return fmt.Errorf("IPv6 router advertisements: filtering ICMPv6: %w", err)
	}
	if err := p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface, true); err != nil {
		c.Close()
		return fmt.Errorf("IPv6 router advertisements: %w", err)
	}
	for _, ifc := range s.cfg.Interfaces {
		ni, err := net.InterfaceByName(ifc.Name)
		if err != nil {
			c.Close()
			return fmt.Errorf("IPv6 router advertisements: interface %s: %w", ifc.Name, err)
		}
		// ff02::2, all routers: where solicitations go.
		if err := p.JoinGroup(ni, &net.IPAddr{IP: net.ParseIP("ff02::2")}); err != nil {
			c.Close()
			return fmt.Errorf("IPv6 router advertisements: joining ff02::2 on %s: %w (is IPv6 off on it?)", ifc.Name, err)
		}
		s.ifs[ni.Index] = ifc
	}
	s.raw, s.conn = c, p
	return nil
}

// Serve answers solicitations until ctx ends.
func (s *RAServer) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		s.raw.Close()
	}()
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := s.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				s.wg.Wait()
				return nil
			}
			s.cfg.Log.Warn("IPv6 router advertisements: read failed", "err", err)
			continue
		}
		from, _ := src.(*net.IPAddr)
		if cm == nil || from == nil || n < 8 {
			continue
		}
		// Neighbour discovery from off the link is forged (RFC 4861: hop
		// limit 255); so is anything from an interface not served.
		ifc, served := s.ifs[cm.IfIndex]
		if !served || cm.HopLimit != 255 {
			continue
		}
		switch ipv6.ICMPType(buf[0]) {
		case ipv6.ICMPTypeRouterAdvertisement:
			s.mu.Lock()
			s.routerSeen[cm.IfIndex] = time.Now()
			s.mu.Unlock()
		case ipv6.ICMPTypeRouterSolicitation:
			mac := solicitorMAC(buf[:n], from.IP)
			if mac == "" || !from.IP.IsLinkLocalUnicast() || !s.cfg.Booting(mac) {
				continue
			}
			s.solicit(ctx, ifc, cm.IfIndex, mac, from.IP)
		}
	}
}

// solicit answers mac's solicitation after the wait, unless a router
// advertises meanwhile or an answer to mac is already on its way (iPXE
// repeats its solicitation until it has an answer; a solicitation after
// the answer is a new iPXE start, and is answered again).
func (s *RAServer) solicit(ctx context.Context, ifc netutil.Interface, idx int, mac string, to net.IP) {
	now := time.Now()
	s.mu.Lock()
	if _, at, ok := s.pending.Get(mac); ok && now.Sub(at) < s.cfg.Wait {
		s.mu.Unlock()
		return
	}
	s.pending.Put(mac, struct{}{}, now, now)
	s.mu.Unlock()
	s.solicitations.Add(1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.cfg.Wait):
		}
		s.mu.Lock()
		heard, ok := s.routerSeen[idx]
		s.mu.Unlock()
		if ok && time.Since(heard) < s.cfg.Quiet {
			s.routerHeard.Add(1)
			return
		}
		// Type 134, code 0, checksum (the kernel's), hop limit 0, no
		// flags, router lifetime 0, reachable time 0, retransmit timer 0.
		ra := []byte{134, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		cm := &ipv6.ControlMessage{HopLimit: 255, IfIndex: idx}
		if _, err := s.conn.WriteTo(ra, cm, &net.IPAddr{IP: to, Zone: ifc.Name}); err != nil {
			s.cfg.Log.Warn("IPv6 router advertisements: send failed", "mac", mac, "interface", ifc.Name, "err", err)
			return
		}
		s.answered.Add(1)
		s.cfg.Steps.Report(events.Step{Type: events.IPv6RA, MAC: mac, Attrs: map[string]string{
			"interface": ifc.Name, "to": to.String(),
			"why": fmt.Sprintf("no IPv6 router answered within %s: told iPXE there is none (router lifetime 0, no prefix), so it boots over IPv4 without waiting", s.cfg.Wait),
		}})
	}()
}

// Stats returns the counters.
func (s *RAServer) Stats() RAStats {
	return RAStats{Solicitations: s.solicitations.Load(), Answered: s.answered.Load(), RouterHeard: s.routerHeard.Load()}
}

// solicitorMAC is the MAC of a router solicitation's sender: its source
// link-layer address option, else the MAC in its EUI-64 link-local
// address ("" if neither gives one).
func solicitorMAC(rs []byte, src net.IP) string {
	for opts := rs[8:]; len(opts) >= 8; {
		l := int(opts[1]) * 8
		if l == 0 || l > len(opts) {
			break
		}
		if opts[0] == 1 && l >= 8 {
			return net.HardwareAddr(opts[2:8]).String()
		}
		opts = opts[l:]
	}
	ip := src.To16()
	if ip == nil || ip[11] != 0xff || ip[12] != 0xfe {
		return ""
	}
	return net.HardwareAddr{ip[8] ^ 2, ip[9], ip[10], ip[13], ip[14], ip[15]}.String()
}
