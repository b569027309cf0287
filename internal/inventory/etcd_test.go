package inventory_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/inventory/inventorytest"
	"github.com/provisiond/provisiond/internal/kv"
	"github.com/provisiond/provisiond/internal/kv/etcdtest"
)

// The etcd store keeps the store contract, against a real etcd server
// (Debian's etcd-server: the one an operator on Debian runs).
func TestEtcdConformance(t *testing.T) {
	srv := etcdtest.Start(t)
	client := srv.Client(t)
	var n atomic.Int64
	inventorytest.Conformance(t, func(t *testing.T, opts inventory.Options) inventory.Backend {
		prefix := fmt.Sprintf("/conformance/%d/", n.Add(1))
		s, err := inventory.OpenDB(&kv.Etcd{Client: client, Prefix: prefix}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
