package inventory_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// twoInstances opens two stores on one etcd prefix, each with its own
// client: what two provisiond instances are.
func twoInstances(t *testing.T, srv *etcdtest.Server) (a, b *inventory.Store) {
	open := func() *inventory.Store {
		s, err := inventory.OpenDB(&kv.Etcd{Client: srv.Client(t), Prefix: "/two/", Timeout: time.Second}, inventory.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return open(), open()
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEtcdTwoInstances: what one instance writes the other boots from
// (from memory, kept current by etcd's watch); concurrent changes from both
// are all kept; a one-shot is consumed once.
func TestEtcdTwoInstances(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := twoInstances(t, srv)
	m := inventory.Machine{Name: "BLD-003", MACs: []string{"52:54:00:00:00:03"}, Profile: "linux", Firmware: "uefi",
		Params: map[string]string{"n": "0"}}
	if _, err := a.PutMachine(m); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := a.BootSettingsByMAC("52:54:00:00:00:03"); !found {
		t.Error("the writing instance does not read its own write at once")
	}
	eventually(t, "B sees the machine A added", func() bool {
		bs, found, _ := b.BootSettingsByMAC("52:54:00:00:00:03")
		return found && bs.Firmware == "uefi"
	})
	var wg sync.WaitGroup
	for _, s := range []*inventory.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 15 {
				_, err := s.UpdateMachine("BLD-003", func(m *inventory.Machine) error {
					n, _ := strconv.Atoi(m.Params["n"])
					m.Params["n"] = strconv.Itoa(n + 1)
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	eventually(t, "both instances read n=30", func() bool {
		ma, _ := a.Machine("BLD-003")
		mb, _ := b.Machine("BLD-003")
		return ma.Params["n"] == "30" && mb.Params["n"] == "30"
	})
	if _, err := a.UpdateMachine("BLD-003", func(m *inventory.Machine) error {
		m.Once = &inventory.Once{Then: "local"}
		m.Profile = "shell"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	thens := make(chan string, 2)
	for _, s := range []*inventory.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			then, err := s.ConsumeOnce("BLD-003", "shell")
			if err != nil {
				t.Error(err)
			}
			thens <- then
		}()
	}
	wg.Wait()
	close(thens)
	consumed := 0
	for then := range thens {
		if then != "" {
			consumed++
		}
	}
	if consumed != 1 {
		t.Errorf("a one-shot consumed by %d instances, want exactly 1", consumed)
	}
}

// TestEtcdDown: with etcd stopped an instance still answers boots of known
// machines from memory and refuses changes with a clear error; when etcd
// is back it follows changes again.
func TestEtcdDown(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := twoInstances(t, srv)
	if err := a.PutSecret("munge-key", []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutMachine(inventory.Machine{Name: "BLD-004", MACs: []string{"52:54:00:00:00:04"}, Profile: "linux"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B sees BLD-004", func() bool { _, found, _ := b.BootSettingsByMAC("52:54:00:00:00:04"); return found })
	eventually(t, "B sees the secret", func() bool { _, err := b.SealedSecret("munge-key"); return err == nil })

	srv.Stop()
	if _, found, err := b.BootSettingsByMAC("52:54:00:00:00:04"); !found || err != nil {
		t.Errorf("boot settings with etcd down: %v, %v", found, err)
	}
	if m, err := b.MachineByMAC("52:54:00:00:00:04"); err != nil || m.Name != "BLD-004" {
		t.Errorf("machine with etcd down: %v", err)
	}
	if v, err := b.SealedSecret("munge-key"); err != nil || string(v) != "sealed" {
		t.Errorf("secret with etcd down: %q, %v", v, err)
	}
	start := time.Now()
	_, err := b.PutMachine(inventory.Machine{Name: "BLD-005", MACs: []string{"52:54:00:00:00:05"}})
	if !errors.Is(err, kv.ErrUnavailable) || !strings.Contains(err.Error(), "changes are refused") {
		t.Errorf("a change with etcd down: %v, want a clear refusal", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	if st, _ := b.CacheState(); st.Machines != 1 {
		t.Errorf("cache state with etcd down: %+v", st)
	}

	srv.Restart(t)
	eventually(t, "A can write again", func() bool {
		_, err := a.PutMachine(inventory.Machine{Name: "BLD-005", MACs: []string{"52:54:00:00:00:05"}, Profile: "linux"})
		return err == nil
	})
	eventually(t, "B follows changes again", func() bool { _, found, _ := b.BootSettingsByMAC("52:54:00:00:00:05"); return found })
}
