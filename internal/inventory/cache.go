package inventory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/kv"
)

// On a store other processes change too (etcd), what the boot path reads
// (machines by name, tag and MAC, their boot settings, sealed secrets) is
// answered from memory: a table read whole at open and whenever etcd's watch
// (re)starts, and kept current from then on by the keys the watch reports
// and by this process's own changes as they commit (Store.commit). The DHCP path never
// waits on the network, and while etcd is unreachable boots of known
// machines go on from the table.

// cachedBuckets are what the table holds.
var cachedBuckets = []string{string(bucketMachines), string(bucketMACs), string(bucketTags), string(bucketSecrets)}

// table is the cached buckets. Every key carries the revision of what it
// holds (rev for all read at a rebuild, revs for keys changed since), so a
// change older than what the table holds is never applied over it.
type table struct {
	// machines are the stored records (decoded per read: callers own
	// what they get).
	machines map[string][]byte
	boot     map[string]BootSettings
	macs     map[string]string
	tags     map[string]string
	secrets  map[string]storedSecret
	built    time.Time
	rev      int64
	revs     map[string]int64
}

func newTable() *table {
	return &table{machines: map[string][]byte{}, boot: map[string]BootSettings{}, macs: map[string]string{},
		tags: map[string]string{}, secrets: map[string]storedSecret{}, revs: map[string]int64{}, built: time.Now()}
}

// CacheState says how current an instance's boot table is.
type CacheState struct {
	// Built is when the table was last read whole from the store.
	Built time.Time `json:"built"`
	// Machines is how many machines it holds.
	Machines int `json:"machines"`
	// Error is why the last read failed ("" when it did not).
	Error string `json:"error,omitempty"`
}

// cache is the table and what keeps it current.
type cache struct {
	mu      sync.RWMutex
	t       *table
	lastErr atomic.Pointer[string]
	kick    chan struct{}
	stop    context.CancelFunc
}

// read runs fn on the table.
func (c *cache) read(fn func(t *table)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	fn(c.t)
}

// startCache fills the table and follows w's changes until Close.
func (s *Store) startCache(w kv.Watcher) error {
	c := &cache{kick: make(chan struct{}, 1), t: newTable()}
	s.cache = c
	if err := s.rebuild(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go w.Watch(ctx, cachedBuckets, func(changes []kv.Change) {
		if changes == nil {
			c.resync()
			return
		}
		c.apply(changes)
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

// resync asks for the table to be read whole again.
func (c *cache) resync() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// rebuild reads the cached buckets whole in one transaction; keys changed
// after that read (reported meanwhile) keep what they were changed to.
func (s *Store) rebuild() error {
	t := newTable()
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
	if err != nil {
		msg := err.Error()
		s.cache.lastErr.Store(&msg)
		return fmt.Errorf("reading the boot table: %w", err)
	}
	s.cache.lastErr.Store(nil)
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.t; old != nil {
		if old.rev > t.rev {
			return nil // a later read already stands
		}
		for k, rev := range old.revs {
			if rev > t.rev {
				bucket, key, _ := strings.Cut(k, "/")
				t.set(bucket, key, old.value(bucket, key), rev)
			}
		}
	}
	for mac := range t.macs {
		t.bootFor(mac)
	}
	c.t = t
	return nil
}

// apply puts changes into the table (those older than what it holds are
// dropped).
func (c *cache) apply(changes []kv.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	var macs []string
	for _, ch := range changes {
		if !slices.Contains(cachedBuckets, ch.Bucket) {
			continue
		}
		k := ch.Bucket + "/" + ch.Key
		held, ok := t.revs[k]
		if !ok {
			held = t.rev
		}
		if ch.Rev <= held {
			continue
		}
		switch ch.Bucket {
		case string(bucketMACs):
			macs = append(macs, ch.Key)
		case string(bucketMachines):
			macs = append(macs, machineMACs(t.machines[ch.Key])...)
			macs = append(macs, machineMACs(ch.Value)...)
		}
		t.set(ch.Bucket, ch.Key, ch.Value, ch.Rev)
	}
	for _, mac := range macs {
		t.bootFor(mac)
	}
}

// value is what the table holds for key of bucket, as stored (nil: none).
func (t *table) value(bucket, key string) []byte {
	switch bucket {
	case string(bucketMachines):
		return t.machines[key]
	case string(bucketMACs):
		if v, ok := t.macs[key]; ok {
			return []byte(v)
		}
	case string(bucketTags):
		if v, ok := t.tags[key]; ok {
			return []byte(v)
		}
	case string(bucketSecrets):
		if st, ok := t.secrets[key]; ok {
			raw, _ := json.Marshal(st)
			return raw
		}
	}
	return nil
}

// set stores v (nil: deleted) for key of bucket at revision rev.
func (t *table) set(bucket, key string, v []byte, rev int64) {
	t.revs[bucket+"/"+key] = rev
	switch bucket {
	case string(bucketMachines):
		if v == nil {
			delete(t.machines, key)
		} else {
			t.machines[key] = bytes.Clone(v)
		}
	case string(bucketMACs), string(bucketTags):
		m := t.macs
		if bucket == string(bucketTags) {
			m = t.tags
		}
		if v == nil {
			delete(m, key)
		} else {
			m[key] = string(v)
		}
	case string(bucketSecrets):
		var st storedSecret
		if v == nil || json.Unmarshal(v, &st) != nil {
			delete(t.secrets, key)
		} else {
			t.secrets[key] = st
		}
	}
}

// bootFor works out mac's boot settings from its machine.
func (t *table) bootFor(mac string) {
	var f bootFields
	raw, ok := t.machines[t.macs[mac]]
	if !ok || json.Unmarshal(raw, &f) != nil {
		delete(t.boot, mac)
		return
	}
	t.boot[mac] = BootSettings{Firmware: f.Firmware, IPXEBinary: f.Params["ipxe_binary"], Vendor: f.Vendor, Model: f.Model}
}

// machineMACs are the MACs a stored machine record lists.
func machineMACs(raw []byte) []string {
	if raw == nil {
		return nil
	}
	var m struct {
		MACs []string `json:"macs"`
	}
	json.Unmarshal(raw, &m)
	return m.MACs
}

// CacheState reports the boot table's state; ok is false on a store that
// keeps none (one bbolt file reads its own pages).
func (s *Store) CacheState() (st CacheState, ok bool) {
	if s.cache == nil {
		return CacheState{}, false
	}
	s.cache.read(func(t *table) { st = CacheState{Built: t.built, Machines: len(t.machines)} })
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
