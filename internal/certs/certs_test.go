package certs

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The self-signed pair is made once, 0600, for the names given, and kept:
// its fingerprint is stable across starts, so clients' pins hold.
func TestSelfSignedIsMadeOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	c1, err := LoadOrCreate("", "", dir, []string{"oden", "192.0.2.2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{SelfSignedCert, SelfSignedKey} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, st, err)
		}
	}
	leaf, _ := x509.ParseCertificate(c1.Certificate[0])
	if err := leaf.VerifyHostname("oden"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("192.0.2.2"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	c2, err := LoadOrCreate("", "", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := FileFingerprint(filepath.Join(dir, SelfSignedCert))
	if Fingerprint(c1.Certificate[0]) != Fingerprint(c2.Certificate[0]) || fp != Fingerprint(c1.Certificate[0]) {
		t.Error("the certificate changed between starts")
	}
	// A damaged pair is an error that says what to do, never silently
	// replaced (clients would have to trust it again).
	os.WriteFile(filepath.Join(dir, SelfSignedKey), []byte("garbage"), 0o600)
	if _, err := LoadOrCreate("", "", dir, nil); err == nil || !strings.Contains(err.Error(), "remove") {
		t.Errorf("damaged key: %v", err)
	}
	if _, err := LoadOrCreate(filepath.Join(dir, "missing.crt"), filepath.Join(dir, "missing.key"), dir, nil); err == nil || !strings.Contains(err.Error(), "control.cert_file") {
		t.Errorf("missing operator certificate: %v", err)
	}
}

func TestFingerprints(t *testing.T) {
	want := "sha256:" + strings.Repeat("ab", 32)
	for _, in := range []string{want, strings.Repeat("AB", 32), strings.TrimSuffix(strings.Repeat("AB:", 32), ":"), " SHA256:" + strings.Repeat("ab", 32) + "\n"} {
		if got, err := NormalizeFingerprint(in); err != nil || got != want {
			t.Errorf("NormalizeFingerprint(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "sha256:abcd", strings.Repeat("zz", 32)} {
		if _, err := NormalizeFingerprint(bad); err == nil {
			t.Errorf("NormalizeFingerprint(%q) accepted", bad)
		}
	}
	der := []byte("not really a certificate")
	seen := ""
	if err := ClientConfig("", func(fp string) { seen = fp }).VerifyPeerCertificate([][]byte{der}, nil); err != nil || seen != Fingerprint(der) {
		t.Errorf("first use: %v, saw %q", err, seen)
	}
	if err := ClientConfig(Fingerprint(der), nil).VerifyPeerCertificate([][]byte{der}, nil); err != nil {
		t.Errorf("pinned, same: %v", err)
	}
	var mm *MismatchError
	if err := ClientConfig(want, nil).VerifyPeerCertificate([][]byte{der}, nil); !errors.As(err, &mm) || mm.Pinned != want || mm.Got != Fingerprint(der) {
		t.Errorf("pinned, other: %v", err)
	}
}
