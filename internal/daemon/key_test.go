package daemon

import (
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/secrets"
)

func newBox(t *testing.T) *secrets.Box {
	key := make([]byte, secrets.KeySize)
	rand.Read(key)
	b, err := secrets.New(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckKey: the first key binds the inventory; another key that does
// not open its secrets is a mismatch naming them (with the way out for a
// shared inventory); once every secret is set again with the new key, the
// new key is the inventory's.
func TestCheckKey(t *testing.T) {
	dir := t.TempDir()
	store, err := inventory.Open(filepath.Join(dir, DBFile), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	a, b := newBox(t), newBox(t)
	if err := checkKey(store, a, dir, true); err != nil {
		t.Fatalf("the first key: %v", err)
	}
	sealed, _ := a.Seal("munge-key", []byte("k"))
	store.PutSecret("munge-key", sealed)
	var m *keyMismatch
	if err := checkKey(store, b, dir, true); !errors.As(err, &m) || len(m.secrets) != 1 || !strings.Contains(err.Error(), "munge-key") || !strings.Contains(err.Error(), "provisiond migrate") {
		t.Fatalf("another key on a shared inventory: %v", err)
	}
	if err := checkKey(store, b, dir, false); !errors.As(err, &m) || !strings.Contains(err.Error(), "set them again") {
		t.Fatalf("another key on one instance's file: %v", err)
	}
	sealed, _ = b.Seal("munge-key", []byte("k"))
	store.PutSecret("munge-key", sealed)
	if err := checkKey(store, b, dir, true); err != nil {
		t.Fatalf("the new key once every secret was set with it: %v", err)
	}
	if err := checkKey(store, a, dir, true); !errors.As(err, &m) {
		t.Fatalf("the old key afterwards: %v", err)
	}
}
