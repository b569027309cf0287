package pxe

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// Neighbors maps client IPs to MACs so that TFTP and HTTP requests, which
// carry no MAC, land on the right machine's timeline. It learns from DHCP and
// falls back to the kernel's ARP table.
type Neighbors struct {
	mu      sync.Mutex
	byIP    map[string]neighbor
	arpPath string
	ttl     time.Duration
	max     int
}

type neighbor struct {
	mac  string
	seen time.Time
}

// NewNeighbors returns an empty table that also consults arpPath
// (/proc/net/arp; empty to disable).
func NewNeighbors(arpPath string) *Neighbors {
	return &Neighbors{byIP: map[string]neighbor{}, arpPath: arpPath, ttl: time.Hour, max: 65536}
}

// Learn records that ip is used by mac.
func (n *Neighbors) Learn(ip net.IP, mac string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.byIP) >= n.max {
		cutoff := time.Now().Add(-n.ttl)
		for k, v := range n.byIP {
			if v.seen.Before(cutoff) {
				delete(n.byIP, k)
			}
		}
		if len(n.byIP) >= n.max {
			return
		}
	}
	n.byIP[ip.String()] = neighbor{mac: mac, seen: time.Now()}
}

// Learned returns the MAC that used ip in a DHCP exchange provisiond saw,
// and when (the boot guard's fallback when the kernel has no entry).
func (n *Neighbors) Learned(ip netip.Addr) (string, time.Time, bool) {
	n.mu.Lock()
	v, ok := n.byIP[ip.Unmap().String()]
	n.mu.Unlock()
	if !ok || time.Since(v.seen) >= n.ttl {
		return "", time.Time{}, false
	}
	return v.mac, v.seen, true
}

// Kernel looks ip up in the kernel's neighbour table only: the MAC the
// kernel itself resolved for that address (what a TCP peer on the link
// really is).
func (n *Neighbors) Kernel(ip netip.Addr) (string, bool) {
	if n.arpPath == "" || !ip.Unmap().Is4() {
		return "", false
	}
	f, err := os.Open(n.arpPath)
	if err != nil {
		return "", false
	}
	defer f.Close()
	mac := arpLookup(f, ip.Unmap().String())
	return mac, mac != ""
}

// MAC returns the MAC using ip, or "".
func (n *Neighbors) MAC(ip net.IP) string {
	if ip == nil {
		return ""
	}
	n.mu.Lock()
	v, ok := n.byIP[ip.String()]
	n.mu.Unlock()
	if ok && time.Since(v.seen) < n.ttl {
		return v.mac
	}
	if n.arpPath == "" {
		return ""
	}
	f, err := os.Open(n.arpPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	return arpLookup(f, ip.String())
}

// arpLookup finds ip in /proc/net/arp format:
// IP address  HW type  Flags  HW address  Mask  Device
func arpLookup(r io.Reader, ip string) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 4 && f[0] == ip && f[3] != "00:00:00:00:00:00" {
			if hw, err := net.ParseMAC(f[3]); err == nil {
				return hw.String()
			}
		}
	}
	return ""
}
