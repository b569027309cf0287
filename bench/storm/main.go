// Command storm plays many PXE machines booting at once against a
// provisiond, the way a rack (or an enclosure after a power cut) does: each
// one asks the ProxyDHCP for a boot file as a PXE ROM, fetches the iPXE
// binary over TFTP, asks again as iPXE, follows the HTTP scripts it is
// given (chain, kernel, initrd), downloads every file they name, and
// reports "booted" to the callback URL as the booted OS would.
//
// It is a benchmark client (bench/storm.sh runs it in a network namespace),
// not a test: it prints completions, failures and the time each machine
// took (p50, p90, p99, max).
//
//	storm -server 192.0.2.1 -clients 1000 -mac-base 52:54:01:00:00:00
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"
	"golang.org/x/sys/unix"
)

func main() {
	server := flag.String("server", "192.0.2.1", "provisiond's address (its ProxyDHCP answers broadcasts; TFTP and HTTP are asked where the answers say)")
	clients := flag.Int("clients", 1000, "machines booting at once")
	macBase := flag.String("mac-base", "52:54:01:00:00:00", "MAC of the first machine; the others count up from it")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up on a machine after this long")
	blksize := flag.Int("blksize", 1468, "TFTP block size asked for")
	iface := flag.String("interface", "", "interface the DHCP broadcasts go out of (needed when there is no route to 255.255.255.255)")
	flag.Parse()

	base, err := net.ParseMAC(*macBase)
	if err != nil || len(base) != 6 {
		fmt.Fprintf(os.Stderr, "storm: -mac-base %q is not a MAC address\n", *macBase)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	d, err := newDHCP(*iface)
	if err != nil {
		fmt.Fprintf(os.Stderr, "storm: %v (run it as root in the client namespace; nothing else may hold UDP port 68)\n", err)
		os.Exit(1)
	}
	defer d.conn.Close()
	go d.read()

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	// The booted OS calls back on a connection of its own (a new OS, a
	// new TCP connection), never on one of the iPXE phase's.
	osClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	s := &storm{dhcp: d, http: hc, os: osClient, server: net.ParseIP(*server), blksize: *blksize}
	results := make([]result, *clients)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mac := slices.Clone(base)
			n := uint32(mac[3])<<16 | uint32(mac[4])<<8 | uint32(mac[5]) + uint32(i)
			mac[3], mac[4], mac[5] = byte(n>>16), byte(n>>8), byte(n)
			t0 := time.Now()
			err := s.boot(ctx, mac)
			results[i] = result{mac: mac.String(), d: time.Since(t0), err: err}
		}()
	}
	wg.Wait()
	wall := time.Since(start)

	var ok []time.Duration
	failures := map[string]int{}
	for _, r := range results {
		if r.err != nil {
			failures[r.err.Error()]++
			continue
		}
		ok = append(ok, r.d)
	}
	slices.Sort(ok)
	fmt.Printf("clients %d completed %d failed %d wall %.2fs\n", *clients, len(ok), *clients-len(ok), wall.Seconds())
	if len(ok) > 0 {
		fmt.Printf("per machine: p50 %.2fs p90 %.2fs p99 %.2fs max %.2fs\n",
			pct(ok, 50).Seconds(), pct(ok, 90).Seconds(), pct(ok, 99).Seconds(), ok[len(ok)-1].Seconds())
	}
	fmt.Printf("bytes: tftp %d http %d; dhcp retransmissions %d\n", s.tftpBytes.Load(), s.httpBytes.Load(), s.retries.Load())
	for msg, n := range failures {
		fmt.Printf("failure x%d: %s\n", n, msg)
	}
	if len(ok) != *clients {
		os.Exit(1)
	}
}

type result struct {
	mac string
	d   time.Duration
	err error
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return sorted[i-1]
}

type storm struct {
	dhcp      *dhcpClient
	http      *http.Client
	os        *http.Client // the booted OS's
	server    net.IP
	blksize   int
	tftpBytes atomic.Int64
	httpBytes atomic.Int64
	retries   atomic.Int64
}

// boot runs one machine's boot from the PXE ROM to the booted callback.
func (s *storm) boot(ctx context.Context, mac net.HardwareAddr) error {
	// The PXE ROM: a proxy offer naming the iPXE binary.
	offer, err := s.ask(ctx, mac, false)
	if err != nil {
		return fmt.Errorf("rom dhcp: %w", err)
	}
	file := offer.BootFileName
	if file == "" {
		file = string(offer.GetOneOption(dhcpv4.OptionBootfileName))
	}
	tftpServer := offer.ServerIPAddr
	if tftpServer == nil || tftpServer.IsUnspecified() {
		tftpServer = s.server
	}
	if err := s.tftp(tftpServer, file); err != nil {
		return fmt.Errorf("tftp %s: %w", file, err)
	}
	// iPXE: an offer naming the HTTP script.
	offer, err = s.ask(ctx, mac, true)
	if err != nil {
		return fmt.Errorf("ipxe dhcp: %w", err)
	}
	script := offer.BootFileName
	if o := offer.GetOneOption(dhcpv4.OptionBootfileName); len(o) > 0 {
		script = string(o)
	}
	if !strings.HasPrefix(script, "http://") {
		return fmt.Errorf("ipxe dhcp: boot file %q is not an HTTP script", script)
	}
	vars := map[string]string{"mac": mac.String(), "platform": "pcbios", "buildarch": "i386",
		"manufacturer": "QEMU", "product": "Standard PC (i440FX + PIIX, 1996)", "serial": "STORM-" + strings.ReplaceAll(mac.String()[9:], ":", "")}
	callback, err := s.run(ctx, script, vars, 0)
	if err != nil {
		return err
	}
	if callback == "" {
		return errors.New("the scripts named no provisiond.callback URL")
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, callback, strings.NewReader("status=storm"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.os.Do(req)
	if err != nil {
		return fmt.Errorf("callback: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback: %s", resp.Status)
	}
	return nil
}

var (
	varRE      = regexp.MustCompile(`\$\{([a-z0-9/_]+)(:[a-z]+)?\}`)
	callbackRE = regexp.MustCompile(`provisiond\.callback=(\S+)`)
)

// run fetches an iPXE script and does what it says: chain runs another
// script, kernel/initrd/imgfetch/module download a file. It returns the
// callback URL found on a kernel line.
func (s *storm) run(ctx context.Context, url string, vars map[string]string, depth int) (string, error) {
	if depth > 4 {
		return "", errors.New("scripts chain more than 4 deep")
	}
	body, err := s.get(ctx, url, true)
	if err != nil {
		return "", fmt.Errorf("script: %w", err)
	}
	if !strings.HasPrefix(string(body), "#!ipxe") {
		return "", fmt.Errorf("script %s is not an iPXE script: %.60q", url, body)
	}
	callback := ""
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ":") {
			continue
		}
		line = varRE.ReplaceAllStringFunc(line, func(m string) string { return vars[varRE.FindStringSubmatch(m)[1]] })
		if cut, _, ok := strings.Cut(line, "||"); ok {
			line = strings.TrimSpace(cut)
		}
		f := strings.Fields(line)
		switch f[0] {
		case "chain", "kernel", "initrd", "imgfetch", "module":
		case "boot":
			return callback, nil
		case "exit", "sleep", "shell":
			return "", fmt.Errorf("script %s ended in %q: the machine did not boot", url, line)
		default:
			continue
		}
		target := ""
		for _, a := range f[1:] {
			if strings.HasPrefix(a, "http://") {
				target = a
				break
			}
		}
		if target == "" {
			return "", fmt.Errorf("%q names no HTTP URL", line)
		}
		if f[0] == "chain" {
			return s.run(ctx, target, vars, depth+1)
		}
		if m := callbackRE.FindStringSubmatch(line); m != nil {
			callback = m[1]
		}
		if _, err := s.get(ctx, target, false); err != nil {
			return "", fmt.Errorf("%s: %w", f[0], err)
		}
	}
	return callback, nil
}

// get downloads url; the body is returned only when keep is set.
func (s *storm) get(ctx context.Context, url string, keep bool) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if keep {
		b, err := io.ReadAll(resp.Body)
		s.httpBytes.Add(int64(len(b)))
		return b, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	s.httpBytes.Add(n)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("GET %s: %d of %d bytes", url, n, resp.ContentLength)
	}
	return nil, err
}

// tftp fetches file from server:69 as the PXE ROM would.
func (s *storm) tftp(server net.IP, file string) error {
	c, err := tftp.NewClient(net.JoinHostPort(server.String(), "69"))
	if err != nil {
		return err
	}
	c.SetBlockSize(s.blksize)
	c.SetTimeout(2 * time.Second)
	c.SetRetries(5)
	wt, err := c.Receive(file, "octet")
	if err != nil {
		return err
	}
	n, err := wt.WriteTo(io.Discard)
	s.tftpBytes.Add(n)
	return err
}

// ask sends a DISCOVER as a PXE ROM (or, with ipxe, as iPXE) and waits for
// a proxy offer, retransmitting after 1, 2 and 4 s (PXE ROMs wait longer).
func (s *storm) ask(ctx context.Context, mac net.HardwareAddr, ipxe bool) (*dhcpv4.DHCPv4, error) {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, uuidFor(mac)...)),
	}
	if ipxe {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE")))
	}
	disc, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		return nil, err
	}
	ch := s.dhcp.expect(disc.TransactionID)
	defer s.dhcp.forget(disc.TransactionID)
	raw := disc.ToBytes()
	for attempt, wait := 0, time.Second; attempt < 4; attempt, wait = attempt+1, wait*2 {
		if attempt > 0 {
			s.retries.Add(1)
		}
		if _, err := s.dhcp.conn.WriteToUDP(raw, &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}); err != nil {
			return nil, err
		}
		select {
		case offer := <-ch:
			return offer, nil
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, errors.New("no proxy offer after 4 DISCOVERs")
}

func uuidFor(mac net.HardwareAddr) []byte {
	u := make([]byte, 16)
	copy(u, "storm-uuid")
	copy(u[10:], mac)
	return u
}

// dhcpClient is one UDP socket on port 68 shared by every machine; offers
// are handed to the machine waiting for their transaction ID.
type dhcpClient struct {
	conn *net.UDPConn
	mu   sync.Mutex
	wait map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
}

func newDHCP(iface string) (*dhcpClient, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: dhcpv4.ClientPort})
	if err != nil {
		return nil, fmt.Errorf("listening on UDP port 68: %w", err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	if err := setBroadcast(rc, iface); err != nil {
		return nil, err
	}
	return &dhcpClient{conn: conn, wait: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}}, nil
}

func (d *dhcpClient) expect(xid dhcpv4.TransactionID) chan *dhcpv4.DHCPv4 {
	ch := make(chan *dhcpv4.DHCPv4, 4)
	d.mu.Lock()
	d.wait[xid] = ch
	d.mu.Unlock()
	return ch
}

func (d *dhcpClient) forget(xid dhcpv4.TransactionID) {
	d.mu.Lock()
	delete(d.wait, xid)
	d.mu.Unlock()
}

func (d *dhcpClient) read() {
	buf := make([]byte, 2048)
	for {
		n, _, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || p.OpCode != dhcpv4.OpcodeBootReply || p.MessageType() != dhcpv4.MessageTypeOffer {
			continue
		}
		d.mu.Lock()
		ch := d.wait[p.TransactionID]
		d.mu.Unlock()
		if ch != nil {
			select {
			case ch <- p:
			default:
			}
		}
	}
}

func setBroadcast(rc syscall.RawConn, iface string) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
		// Every simulated machine's offers arrive on this one socket
		// (real machines each have their own NIC): room for all of them.
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
		}
		if serr == nil && iface != "" {
			serr = unix.BindToDevice(int(fd), iface)
		}
	}); err != nil {
		return err
	}
	return serr
}
