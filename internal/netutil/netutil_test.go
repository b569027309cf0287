package netutil

import (
	"net"
	"os"
	"testing"
	"time"
)

// Machines powered on together send their DHCP requests in one burst. The
// socket queues a burst of 2,000 requests unread, where the kernel's
// default buffer (208 KiB) held a few hundred and dropped the rest.
func TestListenUDPQueuesABurst(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the buffer is raised past net.core.rmem_max with CAP_NET_ADMIN")
	}
	c, err := ListenUDP("", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	out, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	const burst = 2000
	req := make([]byte, 400) // a PXE DISCOVER's size
	for range burst {
		if _, err := out.WriteToUDP(req, to); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	buf := make([]byte, 1500)
	for {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			break
		}
		got++
	}
	if got != burst {
		t.Fatalf("%d of a burst of %d requests queued", got, burst)
	}
}
