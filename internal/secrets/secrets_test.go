package secrets

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	b, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	sealed, err := b.Seal("omni-join-token", []byte("s3cr3t-token"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("s3cr3t-token")) {
		t.Fatal("sealed value holds the plain text")
	}
	// The same key file opens it again.
	b2, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := b2.Open("omni-join-token", sealed); err != nil || string(v) != "s3cr3t-token" {
		t.Fatalf("open: %q %v", v, err)
	}
	if _, err := b2.Open("other-name", sealed); err == nil {
		t.Error("a sealed value opened under another name")
	}
	other, _ := LoadOrCreateKey(filepath.Join(t.TempDir(), "k"))
	if _, err := other.Open("omni-join-token", sealed); err == nil {
		t.Error("another key opened the value")
	}
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Error("a damaged key file was accepted")
	}
}
