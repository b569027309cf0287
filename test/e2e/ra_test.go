package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/net/ipv6"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/netutil"
)

// raResult is what the RA helper heard after its solicitation.
type raResult struct {
	Got      bool   `json:"got"`
	From     string `json:"from"`
	To       string `json:"to"`
	HopLimit int    `json:"hop_limit"`
	Lifetime int    `json:"lifetime"`
	Flags    int    `json:"flags"`
	Options  int    `json:"options"`
}

// TestIPv6RouterAdvertisement plays iPXE's start from the client namespace
// on a lab whose router announces no IPv6: a machine provisiond is booting
// (it answered its PXE DISCOVER) solicits a router and gets, unicast, an
// advertisement of no router (lifetime 0, no flags, no option); a MAC
// provisiond is not booting gets none; once a router has advertised on the
// link, a booting machine gets none either.
func TestIPv6RouterAdvertisement(t *testing.T) {
	l := newLab(t)
	// The client and the server need their link-local addresses, past
	// duplicate address detection.
	for _, h := range [][2]string{{l.client, "c0"}, {l.server, "s0"}} {
		for i := 0; i < 100; i++ {
			out := l.sh(h[0], "ip", "-6", "addr", "show", "dev", h[1], "scope", "link")
			if strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	booting := l.solicit("52:54:00:e2:e0:b1", true, false)
	if !booting.Got || booting.HopLimit != 255 || booting.Lifetime != 0 || booting.Flags != 0 || booting.Options != 0 ||
		!strings.HasPrefix(booting.From, "fe80::") || strings.HasPrefix(booting.To, "ff02") {
		t.Fatalf("a booting machine's solicitation: %+v; want a unicast advertisement from a link-local address, hop limit 255, lifetime 0, no flags, no options", booting)
	}
	// The recorder writes asynchronously: give the step a moment.
	var evs []events.Event
	found := false
	for i := 0; i < 20 && !found; i++ {
		if i > 0 {
			time.Sleep(250 * time.Millisecond)
		}
		evs = l.timeline("discovered-525400e2e0b1")
		for _, ev := range evs {
			found = found || ev.Type == events.IPv6RA && strings.HasPrefix(ev.Attrs["to"], "fe80::")
		}
	}
	if !found {
		t.Errorf("no %s step on the booting machine's timeline:\n%s", events.IPv6RA, formatTimeline(evs))
	}
	if r := l.solicit("52:54:00:e2:e0:b2", false, false); r.Got {
		t.Errorf("a MAC provisiond is not booting got an advertisement: %+v", r)
	}
	if r := l.solicit("52:54:00:e2:e0:b3", true, true); r.Got {
		t.Errorf("a booting machine got provisiond's advertisement on a link where a router advertised: %+v", r)
	}
	metrics := l.sh(l.server, "busybox", "wget", "--no-check-certificate", "-q", "-O", "-", fmt.Sprintf("https://127.0.0.1:%d/metrics", controlPort))
	if v := metricValue(metrics, "provisiond_ipv6_ra_sent_total"); v != 1 {
		t.Errorf("provisiond_ipv6_ra_sent_total %v, want 1", v)
	}
	t.Logf("booting machine's solicitation answered: %+v", booting)
}

// solicit runs the RA helper in the client namespace: a PXE DISCOVER for
// mac first when discover is set, a router's advertisement first when
// router is set, then a router solicitation naming mac.
func (l *lab) solicit(mac string, discover, router bool) raResult {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.client, os.Args[0], "-test.run", "^TestRAHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("PROVISIOND_E2E_RA=c0,%s,%v,%v", mac, discover, router))
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("RA helper: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if j, ok := strings.CutPrefix(line, "RA-RESULT "); ok {
			var r raResult
			if err := json.Unmarshal([]byte(j), &r); err != nil {
				l.t.Fatal(err)
			}
			return r
		}
	}
	l.t.Fatalf("RA helper said nothing:\n%s", out)
	return raResult{}
}

// TestRAHelper is not a test: the lab runs it in the client namespace to
// play an iPXE starting IPv6 (see solicit).
func TestRAHelper(t *testing.T) {
	arg := os.Getenv("PROVISIOND_E2E_RA")
	if arg == "" {
		t.Skip("helper process for the lab tests")
	}
	f := strings.Split(arg, ",")
	ifname, mac := f[0], f[1]
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	if f[2] == "true" {
		discoverAs(t, ifname, hw)
	}
	c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := ipv6.NewPacketConn(c)
	p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst, true)
	var filter ipv6.ICMPFilter
	filter.SetAll(true)
	filter.Accept(ipv6.ICMPTypeRouterAdvertisement)
	p.SetICMPFilter(&filter)
	cm := &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifc.Index}
	if f[3] == "true" {
		// A router on the link: an advertisement to all nodes (lifetime
		// 0, so the lab's hosts take no default route from it).
		ra := []byte{134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		if _, err := p.WriteTo(ra, cm, &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: ifname}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Router solicitation with the source link-layer address option.
	rs := append([]byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 1}, hw...)
	if _, err := p.WriteTo(rs, cm, &net.IPAddr{IP: net.ParseIP("ff02::2"), Zone: ifname}); err != nil {
		t.Fatal(err)
	}
	// provisiond waits a second for a router; give it three.
	buf := make([]byte, 1500)
	res := raResult{}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		p.SetReadDeadline(deadline)
		n, rcm, src, err := p.ReadFrom(buf)
		if err != nil {
			break
		}
		if n < 16 || buf[0] != 134 || rcm == nil {
			continue
		}
		if f[3] == "true" && src.(*net.IPAddr).IP.Equal(linkLocal(t, ifc)) {
			continue // its own router advertisement, looped back
		}
		res = raResult{Got: true, From: src.String(), To: rcm.Dst.String(), HopLimit: rcm.HopLimit,
			Flags: int(buf[5]), Lifetime: int(binary.BigEndian.Uint16(buf[6:8])), Options: (n - 16) / 8}
		break
	}
	raw, _ := json.Marshal(res)
	fmt.Printf("RA-RESULT %s\n", raw)
}

// discoverAs sends a BIOS PXE DISCOVER for hw from ifname and waits for
// provisiond's offer.
func discoverAs(t *testing.T, ifname string, hw net.HardwareAddr) {
	conn, err := netutil.ListenUDP(ifname, dhcpv4.ClientPort, true)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	d, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	if _, err := conn.WriteToUDP(d.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no offer to the PXE DISCOVER for %s: %v", hw, err)
		}
		if r, err := dhcpv4.FromBytes(buf[:n]); err == nil && r.TransactionID == d.TransactionID && r.BootFileName != "" {
			return
		}
	}
}

// linkLocal is ifc's IPv6 link-local address.
func linkLocal(t *testing.T, ifc *net.Interface) net.IP {
	addrs, err := ifc.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.IsLinkLocalUnicast() && n.IP.To4() == nil {
			return n.IP
		}
	}
	return nil
}
