package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/kv"
)

// On a store other processes change too (etcd), what the boot path reads
// (machines by name, tag and MAC, their boot settings, sealed secrets) is
// answered from memory: a table filled at open and rebuilt after every
// change, this process's at once and others' as etcd's watch reports them.
// The DHCP path never waits on the network, and while etcd is unreachable
// boots of known machines go on from the last table.

// cachedBuckets are what the table holds.
var cachedBuckets = []string{string(bucketMachines), string(bucketMACs), string(bucketTags), string(bucketSecrets)}

// table is one consistent read of the cached buckets.
type table struct {
	// machines are the stored records (decoded per read: callers own
	// what they get).
	machines map[string][]byte
	boot     map[string]BootSettings
	macs     map[string]string
	tags     map[string]string
	secrets  map[string]storedSecret
	built    time.Time
	// rev is the store's revision it was read at.
	rev int64
}

// CacheState says how current an instance's boot table is.
type CacheState struct {
	// Built is when the table was last read whole from the store.
	Built time.Time `json:"built"`
	// Machines is how many machines it holds.
	Machines int `json:"machines"`
	// Error is why the last rebuild failed ("" when it did not).
	Error string `json:"error,omitempty"`
}

// cache is the table and what keeps it current.
type cache struct {
	t       atomic.Pointer[table]
	lastErr atomic.Pointer[string]
	kick    chan struct{}
	stop    context.CancelFunc
}

// startCache fills the table and follows w's changes until Close.
func (s *Store) startCache(w kv.Watcher) error {
	c := &cache{kick: make(chan struct{}, 1)}
	s.cache = c
	if err := s.rebuild(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go w.Watch(ctx, cachedBuckets, func() {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.kick:
			}
			for s.rebuild() != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return nil
}

// rebuild reads the cached buckets whole in one transaction.
func (s *Store) rebuild() error {
	t := &table{machines: map[string][]byte{}, boot: map[string]BootSettings{}, macs: map[string]string{}, tags: map[string]string{},
		secrets: map[string]storedSecret{}, built: time.Now()}
	err := s.view(func(tx *kv.Tx) error {
		t.rev = tx.Revision()
		err := tx.Bucket(bucketMachines).ForEach(func(k, v []byte) error {
			t.machines[string(k)] = bytes.Clone(v)
			return nil
		})
		if err != nil {
			return err
		}
		for _, idx := range []struct {
			b   []byte
			out map[string]string
		}{{bucketMACs, t.macs}, {bucketTags, t.tags}} {
			if err := tx.Bucket(idx.b).ForEach(func(k, v []byte) error { idx.out[string(k)] = string(v); return nil }); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketSecrets).ForEach(func(k, v []byte) error {
			var st storedSecret
			if json.Unmarshal(v, &st) == nil {
				t.secrets[string(k)] = st
			}
			return nil
		})
	})
	for mac, name := range t.macs {
		var f bootFields
		if raw, ok := t.machines[name]; ok && json.Unmarshal(raw, &f) == nil {
			t.boot[mac] = BootSettings{Firmware: f.Firmware, IPXEBinary: f.Params["ipxe_binary"], Vendor: f.Vendor, Model: f.Model}
		}
	}
	if err != nil {
		msg := err.Error()
		s.cache.lastErr.Store(&msg)
		return fmt.Errorf("reading the boot table: %w", err)
	}
	s.cache.lastErr.Store(nil)
	// Two rebuilds may race (this process's change, the watch): the table
	// read at the later revision stays.
	for {
		cur := s.cache.t.Load()
		if cur != nil && cur.rev > t.rev {
			return nil
		}
		if s.cache.t.CompareAndSwap(cur, t) {
			return nil
		}
	}
}

// CacheState reports the boot table's state; ok is false on a store that
// keeps none (one bbolt file reads its own pages).
func (s *Store) CacheState() (st CacheState, ok bool) {
	if s.cache == nil {
		return CacheState{}, false
	}
	t := s.cache.t.Load()
	st = CacheState{Built: t.built, Machines: len(t.machines)}
	if e := s.cache.lastErr.Load(); e != nil {
		st.Error = *e
	}
	return st, true
}

// machine looks name up (a machine's name or asset tag) in the table.
func (t *table) machine(name string) (*Machine, error) {
	raw, ok := t.machines[name]
	if !ok {
		if real, tagged := t.tags[name]; tagged {
			raw, ok = t.machines[real]
		}
	}
	if !ok {
		return nil, fmt.Errorf("machine %s: %w", name, ErrNotFound)
	}
	var m Machine
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding stored machine %s: %w", name, err)
	}
	return &m, nil
}

func (t *table) byMAC(mac string) (*Machine, error) {
	name, ok := t.macs[mac]
	if !ok {
		return nil, fmt.Errorf("MAC %s: %w", mac, ErrNotFound)
	}
	return t.machine(name)
}
