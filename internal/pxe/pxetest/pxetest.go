// Package pxetest plays a PXE ROM's DHCP exchange against a provisiond
// whose ProxyDHCP serves loopback, so in-process tests start a boot the way
// a machine does (the boot guard opens the machine's boot window).
package pxetest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/config"
)

// Loopback sets cfg up for a daemon in a test: both planes on free
// loopback ports, the ProxyDHCP on loopback on free ports (so a test starts
// a machine's boot as its PXE ROM would, with Request), no TFTP, and a BIOS
// iPXE binary to offer. Loopback stands in for the machines' link, so its
// requests are trusted to name their MAC (boot.trusted_sources).
func Loopback(t testing.TB, cfg *config.Config) {
	t.Helper()
	cfg.IPXEDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(cfg.IPXEDir, cfg.Boot.BIOS), []byte("not iPXE"), 0o644); err != nil {
		t.Fatal(err)
	}
	ports, err := FreeUDPPorts(2)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DHCP.Enabled, cfg.TFTP.Enabled = true, false
	cfg.Interfaces = []string{"lo"}
	cfg.DHCP.Port, cfg.DHCP.ProxyPort = ports[0], ports[1]
	cfg.Boot.TrustedSources = []string{"127.0.0.0/8"}
	cfg.HTTP.Listen, cfg.HTTP.Port = "127.0.0.1:0", 8080
	cfg.Control.Listen = "127.0.0.1:0"
}

// FreeUDPPorts returns n UDP ports on 127.0.0.1 that were free a moment
// ago (for a ProxyDHCP's port 67 and 4011 stand-ins).
func FreeUDPPorts(n int) ([]int, error) {
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var out []int
	for range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		out = append(out, c.LocalAddr().(*net.UDPAddr).Port)
	}
	return out, nil
}

// Request sends what a BIOS PXE ROM sends to a boot server's port 4011
// (a DHCPREQUEST with PXEClient, from its leased address) for mac to
// 127.0.0.1:proxyPort, and waits for the answer. By then provisiond has
// seen the boot start.
func Request(proxyPort int, mac string) error {
	return RequestTo(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: proxyPort}, mac, net.IPv4(127, 0, 0, 1))
}

// RequestTo sends that request for mac, from leased address ciaddr, to a
// boot server at server (its port 4011), and waits for the answer.
func RequestTo(server *net.UDPAddr, mac string, ciaddr net.IP) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return err
	}
	req, err := dhcpv4.New(
		dhcpv4.WithHwAddr(hw),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(ciaddr),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	)
	if err != nil {
		return err
	}
	c, err := net.DialUDP("udp4", nil, server)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for try := 0; try < 5; try++ {
		if _, err := c.Write(req.ToBytes()); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		if reply, err := dhcpv4.FromBytes(buf[:n]); err == nil && reply.TransactionID == req.TransactionID {
			return nil
		}
	}
	return fmt.Errorf("no ProxyDHCP answer on %s for %s", server, mac)
}
