package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"

	"github.com/provisiond/provisiond/internal/netutil"
	"github.com/provisiond/provisiond/internal/talos/talostest"
)

// probeReply is one answer the probe saw.
type probeReply struct {
	Kind     string `json:"kind"`
	Type     string `json:"type"`
	ServerID string `json:"server_id"`
	YourIP   string `json:"yiaddr"`
	NextIP   string `json:"siaddr"`
	File     string `json:"file"`
	Class    string `json:"class"`
}

// TestProbeHelper is not a test: the lab re-executes the test binary with
// PROVISIOND_E2E_PROBE set, inside the client namespace, to play DHCP
// clients on a real broadcast domain. It sends one plain DHCPDISCOVER and
// one PXE DHCPDISCOVER and prints every reply it hears, one JSON per line.
func TestProbeHelper(t *testing.T) {
	ifname := os.Getenv("PROVISIOND_E2E_PROBE")
	if ifname == "" {
		t.Skip("helper process for the lab tests")
	}
	conn, err := netutil.ListenUDP(ifname, dhcpv4.ClientPort, true)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	plainMAC, _ := net.ParseMAC("52:54:00:e2:e0:a1")
	pxeMAC, _ := net.ParseMAC("52:54:00:e2:e0:a2")
	_ = ifc
	plain, _ := dhcpv4.NewDiscovery(plainMAC, dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptHostName("plain-client")),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("udhcp 1.35.0")))
	pxe, _ := dhcpv4.NewDiscovery(pxeMAC, dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, make([]byte, 16)...)))
	kinds := map[dhcpv4.TransactionID]string{plain.TransactionID: "plain", pxe.TransactionID: "pxe"}
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	for i := 0; i < 3; i++ {
		for _, p := range []*dhcpv4.DHCPv4{plain, pxe} {
			if _, err := conn.WriteToUDP(p.ToBytes(), bcast); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	deadline := time.Now().Add(4 * time.Second)
	buf := make([]byte, 2048)
	enc := json.NewEncoder(os.Stdout)
	for time.Now().Before(deadline) {
		conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			break
		}
		r, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || r.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		kind, ok := kinds[r.TransactionID]
		if !ok {
			continue
		}
		enc.Encode(probeReply{Kind: kind, Type: r.MessageType().String(), ServerID: r.ServerIdentifier().String(),
			YourIP: r.YourIPAddr.String(), NextIP: r.ServerIPAddr.String(), File: r.BootFileName, Class: r.ClassIdentifier()})
	}
}

// TestTFTPHelper is not a test: the lab runs it inside the client
// namespace to fetch a file over TFTP from PROVISIOND_E2E_TFTP (server:file)
// and print its size.
func TestTFTPHelper(t *testing.T) {
	target := os.Getenv("PROVISIOND_E2E_TFTP")
	if target == "" {
		t.Skip("helper process for the lab tests")
	}
	server, file, _ := strings.Cut(target, ":")
	c, err := tftp.NewClient(server + ":69")
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	c.SetBlockSize(1468)
	wt, err := c.Receive(file, "octet")
	if err != nil {
		t.Fatal(err)
	}
	n, err := wt.WriteTo(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("TFTP-BYTES %d\n", n)
}

// TestFactoryHelper is not a test: the lab runs it inside the server
// namespace as the Talos Image Factory (PROVISIOND_E2E_FACTORY=addr;assetdir).
// Its kernel and initramfs are the test OS; its command line sends the
// console to the serial port.
func TestFactoryHelper(t *testing.T) {
	spec := os.Getenv("PROVISIOND_E2E_FACTORY")
	if spec == "" {
		t.Skip("helper process for the lab tests")
	}
	addr, dir, _ := strings.Cut(spec, ";")
	kernel, err := os.ReadFile(filepath.Join(dir, "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := os.ReadFile(filepath.Join(dir, "initrd.img"))
	if err != nil {
		t.Fatal(err)
	}
	f := talostest.New(map[string][]byte{
		"kernel-amd64":        kernel,
		"initramfs-amd64.xz":  initrd,
		"cmdline-metal-amd64": []byte("talos.platform=metal console=ttyS0 panic=-1 e2e.factory-cmdline=1\n"),
	})
	t.Fatal(http.ListenAndServe(addr, f))
}

// tftpFetch fetches file from server over TFTP from the client namespace
// and returns the byte count.
func (l *lab) tftpFetch(server, file string) (int64, error) {
	cmd := exec.Command("ip", "netns", "exec", l.client, os.Args[0], "-test.run", "^TestTFTPHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PROVISIOND_E2E_TFTP="+server+":"+file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	var n int64
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "TFTP-BYTES ") {
			fmt.Sscan(strings.TrimPrefix(line, "TFTP-BYTES "), &n)
		}
	}
	return n, nil
}

// probe runs the helper in the client namespace on interface ifname.
func (l *lab) probe(ifname string) []probeReply {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.client, os.Args[0], "-test.run", "^TestProbeHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PROVISIOND_E2E_PROBE="+ifname)
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("DHCP probe: %v\n%s", err, out)
	}
	var rs []probeReply
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r probeReply
		if json.Unmarshal([]byte(line), &r) == nil {
			rs = append(rs, r)
		}
	}
	return rs
}

func describe(rs []probeReply) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %+v\n", r)
	}
	return b.String()
}
