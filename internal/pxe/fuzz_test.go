package pxe

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/netutil"
)

// FuzzDHCP drives raw datagrams through the whole ProxyDHCP path: parsing,
// the boot decision, the reply and its encoding. The seed corpus
// (testdata/fuzz/FuzzDHCP) holds DHCP packets captured from SeaBIOS's iPXE
// ROM, OVMF's PXE and the lab's plain client. Whatever comes in, the server
// never panics, never offers an address, and answers only PXE clients.
func FuzzDHCP(f *testing.F) {
	for _, arch := range []iana.Arch{iana.INTEL_X86PC, iana.EFI_X86_64, iana.EFI_ARM64, iana.EFI_ITANIUM} {
		d, _ := dhcpv4.NewDiscovery(mac,
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(arch)))
		f.Add(d.ToBytes(), false)
		f.Add(d.ToBytes()[:len(d.ToBytes())/2], true)
	}
	s := NewDHCPServer(DHCPConfig{
		Interfaces: []netutil.Interface{ifc}, Port: 67, ProxyPort: 4011, HTTPPort: 8080,
		Decider:   pureDecider{boot.Options{BIOS: "undionly.kpxe", UEFIx64: "ipxe.efi", Chain: boot.ChainAlways}},
		Steps:     &discardSink{},
		Neighbors: NewNeighbors(""),
	})
	peer := netip.MustParseAddrPort("192.0.2.50:68")
	r := newReader()
	f.Fuzz(func(t *testing.T, raw []byte, proxyPort bool) {
		port := 67
		if proxyPort {
			port = 4011
		}
		out, to := s.handlePacket(context.Background(), r, raw, s.bind(nil, ifc, port), peer)
		if out == nil {
			return
		}
		req, err := dhcpv4.FromBytes(raw)
		if err != nil {
			t.Fatalf("answered a packet that does not parse: %v", err)
		}
		if !boot.IsPXEClass(req.ClassIdentifier()) {
			t.Fatalf("answered a client of class %q", req.ClassIdentifier())
		}
		reply, err := dhcpv4.FromBytes(out)
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if !reply.YourIPAddr.IsUnspecified() {
			t.Fatalf("offered address %s", reply.YourIPAddr)
		}
		if mt := reply.MessageType(); mt != dhcpv4.MessageTypeOffer && mt != dhcpv4.MessageTypeAck {
			t.Fatalf("reply of type %s", mt)
		}
		if !to.IsValid() {
			t.Fatal("reply without destination")
		}
	})
}

type discardSink struct{}

func (discardSink) Report(events.Step) {}

// FuzzTFTPPath checks file-name resolution: whatever a client asks for,
// the name resolved is below the root, and opening it never reads a file
// outside the root (a symbolic link leaves it).
func FuzzTFTPPath(f *testing.F) {
	for _, s := range traversalAttempts {
		f.Add(s)
	}
	for _, s := range []string{"undionly.kpxe", "/ipxe.efi", `\pxelinux.0`, "boot/52-54-00-12-34-56.ipxe", "a/b/../c", "./undionly.kpxe"} {
		f.Add(s)
	}
	root := servedRoot(f)
	s, err := NewTFTPServer(TFTPConfig{Root: root})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := CleanTFTPPath(name)
		if err != nil {
			return
		}
		if strings.Contains(p, `\`) || strings.HasPrefix(p, "/") || strings.Contains("/"+p+"/", "/../") {
			t.Fatalf("%q resolved to %q", name, p)
		}
		if fh, err := s.root.Open(p); err == nil {
			buf := make([]byte, 64)
			n, _ := fh.Read(buf)
			fh.Close()
			if strings.Contains(string(buf[:n]), outsideMarker) {
				t.Fatalf("%q read a file outside the root", name)
			}
		}
	})
}

// FuzzHTTPBoot sends arbitrary paths and queries to the boot endpoints: no
// panic, no server error other than a script error, nothing from outside
// the served directories, and scripts only for well-formed MACs.
func FuzzHTTPBoot(f *testing.F) {
	for _, s := range []string{"/boot/52-54-00-12-34-56.ipxe", "/boot/52:54:00:12:34:56/script?uuid=x&serial=y&profile=linux",
		"/boot/5254.0012.3456/overlay.cpio?profile=slurm", "/assets/vmlinuz?mac=52-54-00-12-34-56", "/ipxe/undionly.kpxe",
		"/assets/..%2f..%2fsecret", "/boot/%00/script", "/assets/sub/%2e%2e/%2e%2e/secret"} {
		f.Add("GET", s)
	}
	f.Add("POST", "/boot/52-54-00-12-34-56/booted")
	mux := bootMux(f, servedRoot(f), nil)
	f.Fuzz(func(t *testing.T, method, target string) {
		if method != "GET" && method != "POST" && method != "HEAD" {
			return
		}
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t") || !utf8.ValidString(target) {
			return
		}
		req, err := http.NewRequest(method, "http://192.0.2.2:8080"+target, nil)
		if err != nil {
			return
		}
		req.RemoteAddr = "192.0.2.50:40000"
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		body := rec.Body.String()
		if strings.Contains(body, outsideMarker) {
			t.Fatalf("%s %s served a file outside the root", method, target)
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %s: status %d: %s", method, target, rec.Code, body)
		}
		if _, rest, ok := strings.Cut(body, "script for "); ok && rec.Code == 200 {
			got, _, _ := strings.Cut(rest, " ")
			if _, err := inventory.NormalizeMAC(got); err != nil {
				t.Fatalf("%s %s: script for %q", method, target, got)
			}
		}
	})
}

// FuzzNormalizeMAC: every accepted MAC normalises to one canonical form,
// and the canonical form is accepted as itself.
func FuzzNormalizeMAC(f *testing.F) {
	for _, s := range []string{"52:54:00:12:34:56", "52-54-00-12-34-56", "5254.0012.3456", "525400123456", "52:54:00:12:34", "zz:54:00:12:34:56", "01:02:03:04:05:06:07:08"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := inventory.NormalizeMAC(s)
		if err != nil {
			return
		}
		if len(m) != 17 {
			t.Fatalf("%q normalised to %q", s, m)
		}
		again, err := inventory.NormalizeMAC(m)
		if err != nil || again != m {
			t.Fatalf("%q -> %q -> %q %v", s, m, again, err)
		}
	})
}

// outsideMarker is the content of a file just outside the served root.
const outsideMarker = "OUTSIDE-THE-ROOT"

// servedRoot makes a served root with a file, a subdirectory, and symbolic
// links leaving it (to a file and a directory next to it).
func servedRoot(tb testing.TB) string {
	tb.Helper()
	base := tb.TempDir()
	root := filepath.Join(base, "root")
	os.MkdirAll(filepath.Join(root, "sub"), 0o755)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), []byte("ipxe"), 0o644)
	os.WriteFile(filepath.Join(root, "vmlinuz"), []byte("kernel"), 0o644)
	os.WriteFile(filepath.Join(base, "secret"), []byte(outsideMarker), 0o644)
	os.MkdirAll(filepath.Join(base, "outdir"), 0o755)
	os.WriteFile(filepath.Join(base, "outdir", "secret"), []byte(outsideMarker), 0o644)
	os.Symlink(filepath.Join(base, "secret"), filepath.Join(root, "escape"))
	os.Symlink("../secret", filepath.Join(root, "sub", "rel-escape"))
	os.Symlink(filepath.Join(base, "outdir"), filepath.Join(root, "outlink"))
	return root
}
