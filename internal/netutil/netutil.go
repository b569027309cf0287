// Package netutil finds the interfaces provisiond serves and opens the UDP
// sockets its servers listen on, with errors that say how to fix them.
package netutil

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Interface is a network interface with the IPv4 address provisiond answers from.
type Interface struct {
	Name string
	IP   net.IP
	Net  *net.IPNet
}

// Interfaces resolves names to interfaces with an IPv4 address. With no
// names it returns every interface that is up, not loopback, and has one.
func Interfaces(names []string) ([]Interface, error) {
	if len(names) == 0 {
		all, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("listing network interfaces: %w", err)
		}
		var out []Interface
		for _, ifc := range all {
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
				continue
			}
			if i, err := fromNet(ifc); err == nil {
				out = append(out, i)
			}
		}
		if len(out) == 0 {
			return nil, errors.New("no network interface is up with an IPv4 address: name one with --interface")
		}
		return out, nil
	}
	var out []Interface
	for _, n := range names {
		ifc, err := net.InterfaceByName(n)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w (see ip -br link for the names on this host)", n, err)
		}
		i, err := fromNet(*ifc)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}

func fromNet(ifc net.Interface) (Interface, error) {
	addrs, err := ifc.Addrs()
	if err != nil {
		return Interface{}, fmt.Errorf("interface %s: reading addresses: %w", ifc.Name, err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return Interface{Name: ifc.Name, IP: ipn.IP.To4(), Net: ipn}, nil
		}
	}
	return Interface{}, fmt.Errorf("interface %s has no IPv4 address: give it one, or set advertise and serve another interface", ifc.Name)
}

// ReceiveBuffer is the receive buffer ListenUDP asks for: room for about
// 4,000 DHCP requests queued at once (the kernel charges each ~1 KiB), so a
// rack or a test storm of machines powered on together is queued, not
// dropped. The kernel only charges what is queued.
const ReceiveBuffer = 4 << 20

// ListenUDP opens a UDP socket on port bound to interface ifname (all
// interfaces when empty), with broadcast allowed when asked and a receive
// buffer of ReceiveBuffer (past net.core.rmem_max when run as root, else up
// to it). Permission and address-in-use errors say what to do.
func ListenUDP(ifname string, port int, broadcast bool) (*net.UDPConn, error) {
	fd, err := socketUDP(ifname, port, broadcast)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("udp:%s:%d", ifname, port))
	defer f.Close()
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("wrapping UDP socket: %w", err)
	}
	return c.(*net.UDPConn), nil
}

// socketUDP opens and binds the socket ListenUDP describes and returns its
// file descriptor.
func socketUDP(ifname string, port int, broadcast bool) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("creating UDP socket: %w", err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		where := fmt.Sprintf("UDP port %d", port)
		if ifname != "" {
			where += " on " + ifname
		}
		switch {
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return -1, fmt.Errorf("%s %s: %w: run provisiond as root, or give the binary the capability as root: setcap cap_net_bind_service+ep $(command -v provisiond) (or use deploy/provisiond.service)", what, where, err)
		case errors.Is(err, syscall.EADDRINUSE):
			return -1, fmt.Errorf("%s %s: %w: another server (a DHCP or TFTP server such as dnsmasq?) holds the port on this host: stop it or serve another interface", what, where, err)
		}
		return -1, fmt.Errorf("%s %s: %w", what, where, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setting SO_REUSEADDR for", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, ReceiveBuffer); err != nil {
		// Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, ReceiveBuffer)
	}
	if broadcast {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
			return fail("allowing broadcast on", err)
		}
	}
	if ifname != "" {
		if err := unix.BindToDevice(fd, ifname); err != nil {
			return fail("binding to device for", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
		return fail("binding", err)
	}
	return fd, nil
}

// SourceAddr is an HTTP request's client address, IPv4-mapped addresses
// unmapped (invalid when the server's RemoteAddr does not parse).
func SourceAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
