package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/certs"
)

// The CLI pins the control plane's certificate: on first use it records
// what it saw; a different certificate is refused with how to re-pin;
// provisiond trust re-pins.
func TestCLIPinsTheCertificate(t *testing.T) {
	c := newCLIEnv(t)
	real, err := certs.FileFingerprint(filepath.Join(c.dataDir, certs.SelfSignedCert))
	if err != nil {
		t.Fatal(err)
	}
	// A token file away from the daemon's data directory: the CLI cannot
	// read the daemon's certificate, so it trusts on first use.
	tok, _ := os.ReadFile(c.token)
	c.token = filepath.Join(t.TempDir(), "api-token")
	os.WriteFile(c.token, tok, 0o600)
	out := c.must("machine", "list")
	if !strings.Contains(out, "trusting "+c.server+" on first use: certificate "+real) {
		t.Errorf("first use says nothing of the certificate:\n%s", out)
	}
	conf, _ := os.ReadFile(c.clientConfig)
	if !strings.Contains(string(conf), real) || !strings.Contains(string(conf), c.server) {
		t.Fatalf("client config after first use:\n%s", conf)
	}
	if st, _ := os.Stat(c.clientConfig); st.Mode().Perm() != 0o600 {
		t.Errorf("client config mode %v", st.Mode().Perm())
	}
	if out := c.must("machine", "list"); strings.Contains(out, "first use") {
		t.Errorf("second use trusted again:\n%s", out)
	}
	// The daemon's certificate is not the pinned one any more (as after a
	// new certificate): refused, with the way out.
	other := "sha256:" + strings.Repeat("ab", 32)
	os.WriteFile(c.clientConfig, []byte("servers:\n  - server: "+c.server+"\n    fingerprint: "+other+"\n"), 0o600)
	out, err = c.run("machine", "list")
	if err == nil || !strings.Contains(err.Error(), "certificate changed: pinned "+other+", the server presents "+real) ||
		!strings.Contains(err.Error(), "provisiond trust --server "+c.server) {
		t.Fatalf("changed certificate: %v\n%s", err, out)
	}
	// trust with a fingerprint that is not the server's changes nothing.
	if _, err := c.run("trust", "--fingerprint", strings.Repeat("cd", 32)); err == nil {
		t.Error("trust accepted a fingerprint the server does not have")
	}
	out = c.must("trust", "--fingerprint", strings.ToUpper(strings.TrimPrefix(real, "sha256:")))
	if !strings.Contains(out, "certificate "+real+" now trusted (was "+other+")") {
		t.Errorf("trust:\n%s", out)
	}
	c.must("machine", "list")
	// --fingerprint on any command pins for that command.
	if _, err := c.run("--fingerprint", other, "machine", "list"); err == nil {
		t.Error("--fingerprint of another certificate was not refused")
	}
}
