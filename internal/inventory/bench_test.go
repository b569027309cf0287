package inventory_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/inventory/inventorytest"
)

// benchStore is a database holding the 10,000 machines of
// inventorytest.Fleet, imported in one transaction.
func benchStore(b *testing.B) *inventory.Store {
	b.Helper()
	s, err := inventory.Open(filepath.Join(b.TempDir(), "provisiond.db"), inventory.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if _, err := s.Import(&inventory.Document{Version: 1, Machines: inventorytest.Fleet(10000)}, true); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkMachines10k lists 10,000 machines from the database (what
// provisiond machine list and audit read).
func BenchmarkMachines10k(b *testing.B) {
	s := benchStore(b)
	b.ResetTimer()
	for b.Loop() {
		ms, err := s.Machines()
		if err != nil || len(ms) != 10000 {
			b.Fatalf("%d machines, %v", len(ms), err)
		}
	}
}

// BenchmarkMachineByMAC10k looks one machine up by MAC among 10,000 (what
// every iPXE script request does).
func BenchmarkMachineByMAC10k(b *testing.B) {
	s := benchStore(b)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.MachineByMAC(fmt.Sprintf("52:54:02:00:%02x:%02x", i>>8&0x1f, i&255)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBootSettings10k is the ProxyDHCP server's per-packet lookup
// among 10,000 machines (cached between writes).
func BenchmarkBootSettings10k(b *testing.B) {
	s := benchStore(b)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		if _, found, err := s.BootSettingsByMAC(fmt.Sprintf("52:54:02:00:%02x:%02x", i>>8&0x1f, i&255)); err != nil || !found {
			b.Fatal(found, err)
		}
	}
}
