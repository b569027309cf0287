package pxe

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// traversalAttempts are file names that try to leave the served root:
// parent elements, absolute paths, backslashes, percent-encodings (single
// and double), NUL and other control characters, and symbolic links that
// point outside (see servedRoot).
var traversalAttempts = []string{
	"../secret", "../../secret", "../../../../../../etc/passwd", "/../secret", "//../secret",
	"./../secret", "sub/../../secret", "sub/./../../secret", "sub/../sub/../../secret",
	`..\secret`, `..\..\secret`, `\..\secret`, `sub\..\..\secret`, `sub/..\..\secret`, `.\..\secret`,
	"%2e%2e/secret", "%2e%2e%2fsecret", "..%2fsecret", "..%5csecret", "%2e%2e%5csecret", "%2E%2E/secret",
	"..%252fsecret", "%252e%252e/secret", "sub/%2e%2e/%2e%2e/secret", "..%c0%afsecret", "..%ef%bc%8fsecret",
	"secret\x00", "undionly.kpxe\x00../../secret", "..\x00/secret", "%00../secret", "sub/\x00../../secret",
	"../secret\r\n", "..\t/secret",
	"escape", "/escape", "sub/rel-escape", "outlink/secret", "outlink/../secret", "./escape", `sub\rel-escape`,
	"....//secret", ".../secret", "..;/secret", "/etc/passwd", "/proc/self/environ", "~/secret",
}

// TestTraversalRefusedTFTP sends every attempt to a real TFTP server on
// loopback: none may return the file outside the root.
func TestTraversalRefusedTFTP(t *testing.T) {
	root := servedRoot(t)
	abs := filepath.Join(filepath.Dir(root), "secret")
	addr, srv := startTFTP(t, root, nil, &sinkRec{})
	attempts := append([]string{abs}, traversalAttempts...)
	for _, name := range attempts {
		got, _, err := fetch(t, addr, name, 0)
		// A NUL ends the name in the request packet: "undionly.kpxe\x00../x"
		// is a request for undionly.kpxe, which is below the root.
		legit := strings.HasPrefix(name, "undionly.kpxe\x00") && string(got) == "ipxe"
		if (err == nil && !legit) || strings.Contains(string(got), outsideMarker) {
			t.Errorf("TFTP %q was served (%d bytes)", name, len(got))
		}
	}
	// The root itself still serves.
	if got, _, err := fetch(t, addr, "undionly.kpxe", 0); err != nil || string(got) != "ipxe" {
		t.Fatalf("undionly.kpxe: %q %v", got, err)
	}
	t.Logf("TFTP: %d traversal attempts refused; %d refused by name, the rest not found below the root", len(attempts), srv.Stats().Refused)
}

// TestTraversalRefusedHTTP sends every attempt, byte for byte on a raw
// connection (so no client cleans or encodes it), to /assets/ and /ipxe/.
func TestTraversalRefusedHTTP(t *testing.T) {
	root := servedRoot(t)
	ts := httptest.NewServer(bootMux(t, root, nil))
	defer ts.Close()
	addr := strings.TrimPrefix(ts.URL, "http://")
	abs := filepath.Join(filepath.Dir(root), "secret")
	n := 0
	for _, prefix := range []string{"/assets/", "/ipxe/"} {
		for _, name := range append([]string{abs, "/" + abs}, traversalAttempts...) {
			n++
			status, body := rawGET(t, addr, prefix+name)
			if status == http.StatusOK || strings.Contains(body, outsideMarker) {
				t.Errorf("GET %q: status %d, %d bytes", prefix+name, status, len(body))
			}
		}
		if status, body := rawGET(t, addr, prefix+"undionly.kpxe"); status != 200 || body != "ipxe" {
			t.Fatalf("%sundionly.kpxe: %d %q", prefix, status, body)
		}
	}
	t.Logf("HTTP: %d traversal attempts refused", n)
}

// rawGET sends one request line as given and returns the status and body.
func rawGET(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET " + target + " HTTP/1.1\r\nHost: 192.0.2.2:8080\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String()
}
