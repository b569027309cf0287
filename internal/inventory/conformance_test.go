package inventory_test

import (
	"path/filepath"
	"testing"

	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/inventory/inventorytest"
)

// The bbolt store keeps the store contract.
func TestBboltConformance(t *testing.T) {
	inventorytest.Conformance(t, func(t *testing.T, opts inventory.Options) inventory.Backend {
		s, err := inventory.Open(filepath.Join(t.TempDir(), "provisiond.db"), opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
