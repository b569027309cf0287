package inventory_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/inventory/inventorytest"
	"github.com/provisiond/provisiond/internal/kv"
	"github.com/provisiond/provisiond/internal/kv/etcdtest"
)

// backends opens a store of each kind holding 100 machines: bbolt in a
// file, etcd on a real one-member etcd on loopback (bench/store.sh).
func backends(b *testing.B) map[string]*inventory.Store {
	b.Helper()
	srv := etcdtest.Start(b)
	out := map[string]*inventory.Store{}
	bolt, err := inventory.Open(filepath.Join(b.TempDir(), "provisiond.db"), inventory.Options{})
	if err != nil {
		b.Fatal(err)
	}
	out["bbolt"] = bolt
	etcd, err := inventory.OpenDB(&kv.Etcd{Client: srv.Client(b), Prefix: "/bench/"}, inventory.Options{})
	if err != nil {
		b.Fatal(err)
	}
	out["etcd"] = etcd
	for _, s := range out {
		b.Cleanup(func() { s.Close() })
		if _, err := s.Import(&inventory.Document{Version: 1, Machines: inventorytest.Fleet(100)}, true); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

// BenchmarkStore compares the stores on an API write (a new machine), a
// boot step (one timeline event) and the DHCP path's lookup.
func BenchmarkStore(b *testing.B) {
	stores := backends(b)
	mac := inventorytest.Fleet(1)[0].MACs[0]
	for _, name := range []string{"bbolt", "etcd"} {
		s := stores[name]
		b.Run("PutMachine/"+name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				m := inventory.Machine{Name: fmt.Sprintf("NEW-%s-%d", name, i), MACs: []string{fmt.Sprintf("52:54:03:%02x:%02x:%02x", i>>16&255, i>>8&255, i&255)}, Profile: "local"}
				if _, err := s.PutMachine(m); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("AppendEvent/"+name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.AppendEvents([]events.Event{{Type: events.Script, MAC: mac, Time: time.Now()}}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("BootSettingsByMAC/"+name, func(b *testing.B) {
			for b.Loop() {
				if _, found, err := s.BootSettingsByMAC(mac); err != nil || !found {
					b.Fatal(found, err)
				}
			}
		})
	}
}
