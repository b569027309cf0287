package inventory

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/provisiond/provisiond/internal/kv"

	"github.com/provisiond/provisiond/internal/events"
)

// SchemaVersion is the database layout this code writes. Older databases
// are migrated forward on Open.
//
//  1. machines, their MACs, timelines and secrets
//  2. hardware records: systems, spare parts, roles, change history and
//     the asset-tag index
const SchemaVersion = 2

var (
	bucketMeta     = []byte("meta")
	bucketMachines = []byte("machines")
	bucketMACs     = []byte("macs")
	bucketEvents   = []byte("events")
	bucketSecrets  = []byte("secrets")
	bucketSystems  = []byte("systems")
	bucketParts    = []byte("parts")
	bucketRoles    = []byte("roles")
	bucketHistory  = []byte("history")
	bucketTags     = []byte("tags")
	keySchema      = []byte("schema")
	keyCanary      = []byte("secret-key-canary")
)

// Store is the inventory, in one bbolt file (Open) or an etcd cluster
// (OpenDB). It is safe for concurrent use, by several processes on etcd.
type Store struct {
	db kv.DB
	// path is the bbolt file ("" on etcd).
	path string
	// maxEvents bounds each machine's timeline.
	maxEvents int
	now       func() time.Time

	// maxDiscovered bounds the machines discovery creates (< 0: none).
	maxDiscovered int
	discMu        sync.Mutex
	discovered    int       // discovered machines, counted at open and on creation
	discCounted   time.Time // when discovered was last recounted from the database
	discRefused   atomic.Uint64

	// gen counts write transactions other than timeline appends (which
	// change no boot settings); bootCache entries are valid while it holds.
	gen       atomic.Uint64
	bootMu    sync.RWMutex
	bootCache map[string]bootEntry

	// changes counts write transactions that changed a record other than
	// a timeline (Revision).
	changes atomic.Uint64

	// merged remembers, by machine, the facts last merged from a step
	// (factsMark), so that a step repeating them within factsFresh is
	// stored without decoding and rewriting the machine's record.
	mergedMu sync.Mutex
	merged   map[string]factsMark

	// cache answers the boot path from memory on a store other processes
	// change too (nil on bbolt).
	cache *cache
}

type bootEntry struct {
	gen   uint64
	bs    BootSettings
	found bool
}

// maxBootCache bounds the boot-settings cache; it is cleared when full.
const maxBootCache = 65536

// update runs fn in a write transaction and then invalidates the
// boot-settings cache. Every write but a timeline append goes through it.
func (s *Store) update(fn func(*kv.Tx) error) error {
	defer s.gen.Add(1)
	defer s.changes.Add(1)
	return s.commit(fn)
}

// Revision changes whenever this process writes anything but a timeline
// step: machines (facts merged from steps too), systems, parts, roles,
// secrets. ok is false on a store other processes write as well (etcd),
// whose changes it does not count.
func (s *Store) Revision() (rev uint64, ok bool) {
	return s.changes.Load(), s.cache == nil
}

// commit runs fn in a write transaction; on a store other processes change
// too, the keys it wrote go into the boot table at once, so this process
// reads its own change (the watch reports them again, which changes
// nothing).
func (s *Store) commit(fn func(*kv.Tx) error) error {
	w, ok := s.db.(kv.Watcher)
	if !ok || s.cache == nil {
		return s.db.Update(context.Background(), fn)
	}
	changes, err := w.UpdateChanges(context.Background(), fn)
	if err == nil {
		s.cache.apply(changes)
	}
	return err
}

// view runs fn in a read transaction.
func (s *Store) view(fn func(*kv.Tx) error) error { return s.db.View(context.Background(), fn) }

// Options tune a Store.
type Options struct {
	// MaxEventsPerMachine bounds each timeline (oldest dropped first).
	// Zero means 1000.
	MaxEventsPerMachine int
	// MaxDiscovered bounds the machines created for unknown MACs. Zero
	// means 1024; negative means none are created.
	MaxDiscovered int
	// Now overrides the clock (tests).
	Now func() time.Time
}

// Open opens (creating if needed) the database at path with mode 0600. It
// fails fast with a clear message when another process holds the lock.
func Open(path string, opts Options) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory for %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("database %s is locked by another process: is provisiond serve running? Stop it, or use the CLI against its API", path)
		}
		return nil, fmt.Errorf("opening database %s: %w", path, err)
	}
	// bbolt creates the file with the mode given, but an existing file keeps
	// its mode: tighten it.
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, fmt.Errorf("setting mode 0600 on %s: %w", path, err)
	}
	s, err := openDB(kv.Bolt{DB: db}, path, opts)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// OpenDB opens the inventory in db (an etcd cluster's), migrating its
// layout forward as Open does a file's.
func OpenDB(db kv.DB, opts Options) (*Store, error) { return openDB(db, "", opts) }

func openDB(db kv.DB, path string, opts Options) (*Store, error) {
	s := &Store{db: db, path: path, maxEvents: opts.MaxEventsPerMachine, now: opts.Now, maxDiscovered: opts.MaxDiscovered,
		bootCache: map[string]bootEntry{}, merged: map[string]factsMark{}}
	if s.maxEvents <= 0 {
		s.maxEvents = 1000
	}
	if s.maxDiscovered == 0 {
		s.maxDiscovered = 1024
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.migrate(); err != nil {
		return nil, err
	}
	if err := s.recountDiscovered(); err != nil {
		return nil, err
	}
	if w, ok := db.(kv.Watcher); ok {
		if err := s.startCache(w); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// recountDiscovered counts the discovered machines in the database.
func (s *Store) recountDiscovered() error {
	n := 0
	err := s.view(func(tx *kv.Tx) error {
		n = countDiscovered(tx)
		return nil
	})
	s.discMu.Lock()
	s.discovered, s.discCounted = n, time.Now()
	s.discMu.Unlock()
	return err
}

// countDiscovered counts the machines marked discovered.
func countDiscovered(tx *kv.Tx) int {
	b := tx.Bucket(bucketMachines)
	if b == nil {
		return 0
	}
	n := 0
	b.ForEach(func(_, v []byte) error {
		var m struct {
			Discovered bool `json:"discovered"`
		}
		if json.Unmarshal(v, &m) == nil && m.Discovered {
			n++
		}
		return nil
	})
	return n
}

// DiscoveryRefused is how many events from unknown MACs were not stored
// because the discovered machines reached their bound.
func (s *Store) DiscoveryRefused() uint64 { return s.discRefused.Load() }

// WriteSnapshot writes a consistent copy of the whole database to w, in one
// read transaction (writers go on meanwhile), and returns its size and the
// number of machines in it.
func (s *Store) WriteSnapshot(w io.Writer) (size int64, machines int, err error) {
	if err := s.view(func(tx *kv.Tx) error {
		var err error
		if b := tx.Bucket(bucketMachines); b != nil {
			machines, err = b.Count()
		}
		return err
	}); err != nil {
		return 0, 0, err
	}
	size, err = s.db.Snapshot(context.Background(), w)
	return size, machines, err
}

// Close closes the database.
func (s *Store) Close() error {
	if s.cache != nil && s.cache.stop != nil {
		s.cache.stop()
	}
	return s.db.Close()
}

func (s *Store) migrate() error {
	v := 0
	if err := s.view(func(tx *kv.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if raw := meta.Get(keySchema); len(raw) == 8 {
				v = int(binary.BigEndian.Uint64(raw))
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if v > SchemaVersion {
		return fmt.Errorf("database schema version %d is newer than this provisiond understands (%d): upgrade provisiond", v, SchemaVersion)
	}
	if v > 0 && v < SchemaVersion && s.path != "" {
		// Keep a copy of the database as it was before migrating it.
		bak := fmt.Sprintf("%s.schema%d.bak", s.path, v)
		if err := copyTo(s.db, bak); err != nil {
			return fmt.Errorf("copying %s to %s before migrating it: %w (is the disk full?)", s.path, bak, err)
		}
	}
	return s.update(func(tx *kv.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketMachines, bucketMACs, bucketEvents, bucketSecrets,
			bucketSystems, bucketParts, bucketRoles, bucketHistory, bucketTags} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("creating bucket %s: %w", b, err)
			}
		}
		// Version 1 -> 2: the buckets above; machine records decode
		// unchanged (the hardware fields are new and empty). Index any
		// asset tags. Later versions add steps here and never drop data.
		if v < 2 {
			err := tx.Bucket(bucketMachines).ForEach(func(k, raw []byte) error {
				var m Machine
				if err := json.Unmarshal(raw, &m); err != nil {
					return nil // kept as is; Machines() reports it
				}
				if m.Tag != "" {
					return tx.Bucket(bucketTags).Put([]byte(m.Tag), k)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, u64(SchemaVersion))
	})
}

// copyTo writes a snapshot of db to the file path.
func copyTo(db kv.DB, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := db.Snapshot(context.Background(), f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// machineRecord is the stored record of the machine named (or tagged)
// name, undecoded, and the name it is stored under.
func machineRecord(tx *kv.Tx, name string) (key, raw []byte, err error) {
	key = []byte(name)
	raw = tx.Bucket(bucketMachines).Get(key)
	if raw == nil {
		if real := tx.Bucket(bucketTags).Get(key); real != nil {
			key, raw = real, tx.Bucket(bucketMachines).Get(real)
		}
	}
	if raw == nil {
		return nil, nil, fmt.Errorf("machine %s: %w", name, ErrNotFound)
	}
	return key, raw, nil
}

func getMachine(tx *kv.Tx, name string) (*Machine, error) {
	_, raw, err := machineRecord(tx, name)
	if err != nil {
		return nil, err
	}
	var m Machine
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding stored machine %s: %w", name, err)
	}
	return &m, nil
}

// putMachine stores m as a new revision: what a client may have read and
// write back changed.
func putMachine(tx *kv.Tx, m *Machine) error {
	m.Revision++
	return putMachineSame(tx, m)
}

// putMachineSame stores m under its revision: only what the store keeps
// for itself changed (facts, last seen), which a client's write never
// replaces.
func putMachineSame(tx *kv.Tx, m *Machine) error {
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding machine %s: %w", m.Name, err)
	}
	return tx.Bucket(bucketMachines).Put([]byte(m.Name), raw)
}

// Machine returns the named machine; name may also be its asset tag.
func (s *Store) Machine(name string) (*Machine, error) {
	if s.cache != nil {
		var m *Machine
		var err error
		s.cache.read(func(t *table) { m, err = t.machine(name) })
		return m, err
	}
	var m *Machine
	err := s.view(func(tx *kv.Tx) error {
		var err error
		m, err = getMachine(tx, name)
		return err
	})
	return m, err
}

// MachineByMAC returns the machine that owns mac.
func (s *Store) MachineByMAC(mac string) (*Machine, error) {
	if s.cache != nil {
		var m *Machine
		var err error
		s.cache.read(func(t *table) { m, err = t.byMAC(mac) })
		return m, err
	}
	var m *Machine
	err := s.view(func(tx *kv.Tx) error {
		name := tx.Bucket(bucketMACs).Get([]byte(mac))
		if name == nil {
			return fmt.Errorf("MAC %s: %w", mac, ErrNotFound)
		}
		var err error
		m, err = getMachine(tx, string(name))
		return err
	})
	return m, err
}

// BootSettings is the part of a machine record a DHCP answer depends on.
type BootSettings struct {
	// Firmware forces BIOS or UEFI ("" for either).
	Firmware string
	// Vendor and Model are the machine's, for firmware its model is bound
	// to.
	Vendor, Model string
	// IPXEBinary replaces the configured iPXE binary (the machine's
	// ipxe_binary parameter; "" for the default).
	IPXEBinary string
}

// bootFields are the stored machine's fields BootSettings comes from.
type bootFields struct {
	Firmware string            `json:"firmware"`
	Params   map[string]string `json:"params"`
	Vendor   string            `json:"vendor"`
	Model    string            `json:"model"`
}

// BootSettingsByMAC returns what a DHCP answer to mac depends on, without
// decoding the whole machine record (the ProxyDHCP server asks it for every
// packet). found is false for a MAC no machine owns. Answers are cached
// until the next write other than a timeline append; discovery creating a
// machine for an unknown MAC leaves it cached as not found, which answers
// the same (a discovered machine has no boot settings).
func (s *Store) BootSettingsByMAC(mac string) (bs BootSettings, found bool, err error) {
	if s.cache != nil {
		s.cache.read(func(t *table) { bs, found = t.boot[mac] })
		return bs, found, nil
	}
	gen := s.gen.Load()
	s.bootMu.RLock()
	e, ok := s.bootCache[mac]
	s.bootMu.RUnlock()
	if ok && e.gen == gen {
		return e.bs, e.found, nil
	}
	bs, found, err = s.readBootSettings(mac)
	if err == nil {
		s.bootMu.Lock()
		if len(s.bootCache) >= maxBootCache {
			clear(s.bootCache)
		}
		s.bootCache[mac] = bootEntry{gen: gen, bs: bs, found: found}
		s.bootMu.Unlock()
	}
	return bs, found, err
}

func (s *Store) readBootSettings(mac string) (bs BootSettings, found bool, err error) {
	err = s.view(func(tx *kv.Tx) error {
		name := tx.Bucket(bucketMACs).Get([]byte(mac))
		if name == nil {
			return nil
		}
		raw := tx.Bucket(bucketMachines).Get(name)
		if raw == nil {
			return nil
		}
		found = true
		var f bootFields
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("decoding stored machine %s: %w", name, err)
		}
		bs = BootSettings{Firmware: f.Firmware, IPXEBinary: f.Params["ipxe_binary"], Vendor: f.Vendor, Model: f.Model}
		return nil
	})
	return bs, found, err
}

// Machines returns every machine, sorted by name.
func (s *Store) Machines() ([]Machine, error) {
	var out []Machine
	err := s.view(func(tx *kv.Tx) error {
		return tx.Bucket(bucketMachines).ForEach(func(k, v []byte) error {
			var m Machine
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decoding stored machine %s: %w", k, err)
			}
			out = append(out, m)
			return nil
		})
	})
	sortMachines(out)
	return out, err
}

// PutMachine creates m, or replaces the machine of the same name. A MAC that
// belongs to a discovered machine is taken over: the discovered record's
// facts and timeline move to m and the discovered record is removed. A MAC
// that belongs to another operator-entered machine is a conflict. Changes
// to the hardware record go into the machine's history as manual changes;
// what discovery observed is kept whatever m says.
func (s *Store) PutMachine(m Machine) (*Machine, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	var out Machine
	err := s.update(func(tx *kv.Tx) error {
		out = m // a transaction may run again: start from the caller's record
		if _, err := s.upsert(tx, &out, SourceManual); err != nil {
			return err
		}
		return checkPlacement(tx)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateMachine changes the stored machine name in one transaction: fn
// gets the current record and edits it in place; the result is validated
// and stored as PutMachine stores. An error from fn changes nothing and is
// returned as it is.
func (s *Store) UpdateMachine(name string, fn func(m *Machine) error) (*Machine, error) {
	return s.SyncMachine(name, SourceManual, false, fn)
}

// SyncMachine is UpdateMachine for a source other than the operator (an
// enclosure's OA): the history says who changed what; with create, a
// machine that does not exist starts empty (fn fills it in).
func (s *Store) SyncMachine(name, source string, create bool, fn func(m *Machine) error) (*Machine, error) {
	var out *Machine
	err := s.update(func(tx *kv.Tx) error {
		m, err := getMachine(tx, name)
		if errors.Is(err, ErrNotFound) && create {
			m, err = &Machine{Name: name}, nil
		}
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
		if err := m.Validate(); err != nil {
			return err
		}
		if _, err := s.upsert(tx, m, source); err != nil {
			return err
		}
		out = m
		return checkPlacement(tx)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// upsert stores the validated machine m (created or replaced), keeping the
// MAC and tag indexes and the history. It returns the hardware changes.
func (s *Store) upsert(tx *kv.Tx, m *Machine, source string) ([]FieldChange, error) {
	now := s.now().UTC()
	macs := tx.Bucket(bucketMACs)
	tags := tx.Bucket(bucketTags)
	raw := tx.Bucket(bucketMachines).Get([]byte(m.Name))
	var old *Machine
	if raw != nil {
		var err error
		if old, err = getMachine(tx, m.Name); err != nil {
			return nil, err
		}
	}
	if old == nil {
		m.Created = now
		m.Revision = 0
	} else {
		m.Created = old.Created
		m.Revision = old.Revision
		if m.Facts == nil {
			m.Facts = old.Facts
		}
		m.Observed = old.Observed
		for _, mac := range old.MACs {
			if err := macs.Delete([]byte(mac)); err != nil {
				return nil, err
			}
		}
		if old.Tag != "" {
			if err := tags.Delete([]byte(old.Tag)); err != nil {
				return nil, err
			}
		}
	}
	m.Updated = now
	if m.Tag != "" {
		if owner := tags.Get([]byte(m.Tag)); owner != nil && string(owner) != m.Name {
			return nil, fmt.Errorf("asset tag %s already belongs to machine %s: %w", m.Tag, owner, ErrConflict)
		}
		if m.Tag != m.Name && tx.Bucket(bucketMachines).Get([]byte(m.Tag)) != nil {
			return nil, fmt.Errorf("asset tag %s is the name of another machine: %w", m.Tag, ErrConflict)
		}
		if err := tags.Put([]byte(m.Tag), []byte(m.Name)); err != nil {
			return nil, err
		}
	}
	if owner := tags.Get([]byte(m.Name)); owner != nil && string(owner) != m.Name {
		return nil, fmt.Errorf("machine name %s is the asset tag of machine %s: %w", m.Name, owner, ErrConflict)
	}
	for _, mac := range m.MACs {
		owner := macs.Get([]byte(mac))
		if owner == nil || string(owner) == m.Name {
			continue
		}
		other, err := getMachine(tx, string(owner))
		if err != nil {
			return nil, err
		}
		if !other.Discovered {
			return nil, fmt.Errorf("MAC %s already belongs to machine %s: remove it there first (provisiond machine set %s --remove-mac %s): %w", mac, other.Name, other.Name, mac, ErrConflict)
		}
		if err := adopt(tx, other, m); err != nil {
			return nil, err
		}
	}
	for _, mac := range m.MACs {
		if err := macs.Put([]byte(mac), []byte(m.Name)); err != nil {
			return nil, err
		}
	}
	var before Hardware
	if old != nil {
		before = old.Hardware
	}
	changes := DiffAssets(&before, &m.Hardware)
	if err := addHistory(tx, m.Name, Change{Time: now, Source: source, Fields: changes}); err != nil {
		return nil, err
	}
	return changes, putMachine(tx, m)
}

// adopt folds discovered machine d into m: facts, timeline, other MACs.
func adopt(tx *kv.Tx, d *Machine, m *Machine) error {
	if d.Facts != nil {
		if m.Facts == nil {
			m.Facts = &Facts{}
		}
		f := *d.Facts
		f.merge(m.Facts)
		m.Facts = &f
	}
	if d.Observed != nil && (m.Observed == nil || d.Observed.Time.After(m.Observed.Time)) {
		m.Observed = d.Observed
	}
	if err := moveHistory(tx, d.Name, m.Name); err != nil {
		return err
	}
	evs := tx.Bucket(bucketEvents)
	if src := evs.Bucket([]byte(d.Name)); src != nil {
		dst, err := evs.CreateBucketIfNotExists([]byte(m.Name))
		if err != nil {
			return err
		}
		err = src.ForEach(func(k, v []byte) error {
			var ev events.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return nil // an undecodable record is dropped, not fatal
			}
			ev.Machine = m.Name
			raw, _ := json.Marshal(ev)
			return dst.Put(k, raw)
		})
		if err != nil {
			return err
		}
		if err := recount(dst); err != nil {
			return err
		}
		if err := evs.DeleteBucket([]byte(d.Name)); err != nil {
			return err
		}
	}
	for _, mac := range d.MACs {
		if err := tx.Bucket(bucketMACs).Delete([]byte(mac)); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMachines).Delete([]byte(d.Name))
}

// ConsumeOnce ends machine name's one-shot assignment of profile: the
// machine reverts to the follow-up profile, which is returned. It does
// nothing (and returns "") when the machine has no such assignment any more.
func (s *Store) ConsumeOnce(name, profile string) (string, error) {
	then := ""
	err := s.update(func(tx *kv.Tx) error {
		then = "" // a transaction may run again
		m, err := getMachine(tx, name)
		if err != nil {
			return err
		}
		if m.Once == nil || m.Profile != profile {
			return nil
		}
		then = m.Once.Then
		m.Profile = then
		m.Once = nil
		m.Updated = s.now().UTC()
		return putMachine(tx, m)
	})
	return then, err
}

// SecretInfo describes a stored secret without its value.
type SecretInfo struct {
	Name    string    `json:"name" yaml:"name"`
	Updated time.Time `json:"updated" yaml:"updated"`
}

type storedSecret struct {
	Sealed  []byte    `json:"sealed"`
	Updated time.Time `json:"updated"`
}

// ValidSecretName checks a secret's name.
func ValidSecretName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("secret name %q is invalid: use 1-63 letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

// PutSecret stores a sealed secret value under name. The store never sees
// plain text: the caller seals it.
func (s *Store) PutSecret(name string, sealed []byte) error {
	if err := ValidSecretName(name); err != nil {
		return err
	}
	raw, err := json.Marshal(storedSecret{Sealed: sealed, Updated: s.now().UTC()})
	if err != nil {
		return err
	}
	return s.update(func(tx *kv.Tx) error { return tx.Bucket(bucketSecrets).Put([]byte(name), raw) })
}

// SealedSecret returns the sealed value stored under name.
func (s *Store) SealedSecret(name string) ([]byte, error) {
	if s.cache != nil {
		var st storedSecret
		var ok bool
		s.cache.read(func(t *table) { st, ok = t.secrets[name] })
		if !ok {
			return nil, fmt.Errorf("secret %s: %w (store it with provisiond secret set %s)", name, ErrNotFound, name)
		}
		return st.Sealed, nil
	}
	var out []byte
	err := s.view(func(tx *kv.Tx) error {
		raw := tx.Bucket(bucketSecrets).Get([]byte(name))
		if raw == nil {
			return fmt.Errorf("secret %s: %w (store it with provisiond secret set %s)", name, ErrNotFound, name)
		}
		var st storedSecret
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("decoding secret %s: %w", name, err)
		}
		out = st.Sealed
		return nil
	})
	return out, err
}

// Secrets lists the stored secrets' names.
func (s *Store) Secrets() ([]SecretInfo, error) {
	out := []SecretInfo{}
	err := s.view(func(tx *kv.Tx) error {
		return tx.Bucket(bucketSecrets).ForEach(func(k, v []byte) error {
			var st storedSecret
			json.Unmarshal(v, &st)
			out = append(out, SecretInfo{Name: string(k), Updated: st.Updated})
			return nil
		})
	})
	return out, err
}

// KeyCanary implements SealedSecrets.
func (s *Store) KeyCanary(sealed []byte, replace bool) ([]byte, error) {
	var out []byte
	err := s.update(func(tx *kv.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyCanary); v != nil && !replace {
			out = bytes.Clone(v)
			return nil
		}
		out = sealed
		return meta.Put(keyCanary, sealed)
	})
	return out, err
}

// DeleteSecret removes a secret.
func (s *Store) DeleteSecret(name string) error {
	return s.update(func(tx *kv.Tx) error {
		b := tx.Bucket(bucketSecrets)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("secret %s: %w", name, ErrNotFound)
		}
		return b.Delete([]byte(name))
	})
}

// DeleteMachine removes a machine, its MACs and its timeline.
func (s *Store) DeleteMachine(name string) error {
	return s.update(func(tx *kv.Tx) error {
		m, err := getMachine(tx, name)
		if err != nil {
			return err
		}
		for _, mac := range m.MACs {
			if err := tx.Bucket(bucketMACs).Delete([]byte(mac)); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketEvents, bucketHistory} {
			if tx.Bucket(b).Bucket([]byte(m.Name)) != nil {
				if err := tx.Bucket(b).DeleteBucket([]byte(m.Name)); err != nil {
					return err
				}
			}
		}
		if m.Tag != "" {
			if err := tx.Bucket(bucketTags).Delete([]byte(m.Tag)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMachines).Delete([]byte(m.Name))
	})
}

// AppendEvents stores a batch of events in one transaction and returns them
// as stored (with Seq and Machine filled in). An event whose MAC belongs to
// no machine creates a discovered machine for that MAC; an event with
// neither a known machine nor a MAC is dropped. Facts carried by events are
// merged into the machine record.
//
// A machine record is decoded only when facts merge into it, and written
// once per batch however many of its events carry facts: under a flood of
// DHCP packets the timeline is most of what is written.
func (s *Store) AppendEvents(batch []events.Event) ([]events.Event, error) {
	var stored []events.Event
	wrote := false
	var marks map[string]factsMark // facts merged, by machine
	gen := s.gen.Load()
	defer func() {
		if wrote {
			s.changes.Add(1)
		}
	}()
	err := s.commit(func(tx *kv.Tx) error {
		stored, wrote = stored[:0], false
		evs := tx.Bucket(bucketEvents)
		macs := tx.Bucket(bucketMACs)
		// The batch's MACs and machines in a few requests, not one each
		// (etcd; bbolt reads locally).
		var byMAC, byName [][]byte
		for _, ev := range batch {
			if ev.Machine != "" {
				byName = append(byName, []byte(ev.Machine))
			} else if ev.MAC != "" {
				byMAC = append(byMAC, []byte(ev.MAC))
			}
		}
		if err := macs.Prefetch(byMAC); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMachines).Prefetch(byName); err != nil {
			return err
		}
		// Machines this batch decoded (by name), and the names to write back.
		loaded := map[string]*Machine{}
		marks = map[string]factsMark{}
		var dirty []string
		filled := map[string]bool{}
		load := func(name string) (*Machine, error) {
			if m, ok := loaded[name]; ok {
				return m, nil
			}
			m, err := getMachine(tx, name)
			if err != nil {
				return nil, err
			}
			loaded[name], loaded[m.Name] = m, m
			return m, nil
		}
		for _, ev := range batch {
			var name string
			switch {
			case ev.Machine != "":
				m, err := load(ev.Machine)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				name = m.Name
			case ev.MAC != "":
				if n := macs.Get([]byte(ev.MAC)); n != nil {
					name = string(n)
					break
				}
				m, err := s.discover(tx, ev.MAC)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				name, loaded[m.Name], wrote = m.Name, m, true
			default:
				continue
			}
			if len(ev.Facts) > 0 && s.factsKnown(name, ev) {
				ev.Facts = nil
			}
			if len(ev.Facts) > 0 {
				m, err := load(name)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if m.Facts == nil {
					m.Facts = &Facts{}
				}
				m.Facts.merge(factsFromMap(ev.Facts, ev.Time))
				ch := Change{Time: ev.Time.UTC(), Source: SourceDiscovery, Fields: fillFromFacts(&m.Hardware, m.Facts)}
				if err := addHistory(tx, m.Name, ch); err != nil {
					return err
				}
				if !slices.Contains(dirty, m.Name) {
					dirty = append(dirty, m.Name)
				}
				marks[m.Name] = factsMark{facts: factsKey(ev.Facts), at: ev.Time}
				if len(ch.Fields) > 0 {
					filled[m.Name] = true
				}
			}
			ev.Facts = nil
			ev.Machine = name
			b, err := evs.CreateBucketIfNotExists([]byte(name))
			if err != nil {
				return err
			}
			seq, err := evs.NextSequence()
			if err != nil {
				return err
			}
			ev.Seq = seq
			raw, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			if err := b.Put(u64(seq), raw); err != nil {
				return err
			}
			if err := trim(b, s.maxEvents); err != nil {
				return err
			}
			stored = append(stored, ev)
		}
		wrote = wrote || len(dirty) > 0
		for _, name := range dirty {
			// Facts alone keep the revision; hardware filled from them
			// is the record a client reads, and makes a new one.
			put := putMachineSame
			if filled[name] {
				put = putMachine
			}
			if err := put(tx, loaded[name]); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		s.markMerged(marks, gen)
	}
	return stored, err
}

// factsFresh is how long a step's facts, once merged, are not merged
// again when a step repeats them: the record's last_seen is kept to the
// minute under a machine's repeated requests (or a flood of them).
const factsFresh = time.Minute

// factsMark is what a machine's record got from steps' facts: their
// values, when, and the store's write count (gen) then.
type factsMark struct {
	facts string
	at    time.Time
	gen   uint64
}

// factsKey is a step's facts in one string, keys in order.
func factsKey(f map[string]string) string {
	keys := slices.Sorted(maps.Keys(f))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(f[k])
		b.WriteByte(0)
	}
	return b.String()
}

// factsKnown reports whether ev's facts were merged into machine name
// less than factsFresh before ev, with no write since that could have
// changed the record (gen). Never on a store other processes write.
func (s *Store) factsKnown(name string, ev events.Event) bool {
	if s.cache != nil {
		return false
	}
	s.mergedMu.Lock()
	defer s.mergedMu.Unlock()
	m, ok := s.merged[name]
	d := ev.Time.Sub(m.at)
	return ok && m.gen == s.gen.Load() && d >= 0 && d < factsFresh && m.facts == factsKey(ev.Facts)
}

// markMerged remembers the facts a committed batch merged, unless a write
// came between the batch's start (gen) and now: it may have changed the
// record the batch merged into.
func (s *Store) markMerged(marks map[string]factsMark, gen uint64) {
	if len(marks) == 0 || s.cache != nil || s.gen.Load() != gen {
		return
	}
	s.mergedMu.Lock()
	defer s.mergedMu.Unlock()
	if len(s.merged)+len(marks) > maxBootCache {
		clear(s.merged)
	}
	for name, m := range marks {
		m.gen = gen
		s.merged[name] = m
	}
}

func (s *Store) discover(tx *kv.Tx, mac string) (*Machine, error) {
	s.discMu.Lock()
	full := s.discovered >= s.maxDiscovered
	if full && time.Since(s.discCounted) > 10*time.Second {
		// Machines may have been accepted or removed since: recount, at
		// most every 10 s, so a flood of MACs does not scan each time.
		s.discMu.Unlock()
		n := countDiscovered(tx)
		s.discMu.Lock()
		s.discovered, s.discCounted = n, time.Now()
		full = n >= s.maxDiscovered
	}
	if !full {
		s.discovered++
	}
	s.discMu.Unlock()
	if full {
		s.discRefused.Add(1)
		return nil, ErrNotFound
	}
	now := s.now().UTC()
	m := &Machine{
		Name:       DiscoveredName(mac),
		MACs:       []string{mac},
		Discovered: true,
		Created:    now,
		Updated:    now,
	}
	if err := putMachine(tx, m); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketMACs).Put([]byte(mac), []byte(m.Name)); err != nil {
		return nil, err
	}
	return m, nil
}

// trim keeps a timeline bucket at max records, dropping the oldest. The
// bucket's own sequence holds its record count, so no scan is needed.
func trim(b *kv.Bucket, max int) error {
	n := b.Sequence() + 1
	if n > uint64(max) {
		var old [][]byte
		err := b.Scan(nil, false, func(k, _ []byte) (bool, error) {
			old = append(old, slices.Clone(k))
			return n-uint64(len(old)) > uint64(max), nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n -= uint64(len(old))
	}
	return b.SetSequence(n)
}

// recount sets a timeline bucket's record count from its contents.
func recount(b *kv.Bucket) error {
	n, err := b.Count()
	if err != nil {
		return err
	}
	return b.SetSequence(uint64(n))
}

func factsFromMap(m map[string]string, t time.Time) *Facts {
	return &Facts{
		Manufacturer: m["manufacturer"],
		Product:      m["product"],
		Serial:       m["serial"],
		UUID:         m["uuid"],
		Platform:     m["platform"],
		BuildArch:    m["buildarch"],
		Chip:         m["chip"],
		ClientArch:   m["client_arch"],
		IP:           m["ip"],
		LastSeen:     t.UTC(),
	}
}

// Events returns the machine's timeline, oldest first, with sequence numbers
// greater than after; with limit > 0 only the newest limit of them. name
// may also be the machine's asset tag.
func (s *Store) Events(name string, after uint64, limit int) ([]events.Event, error) {
	var out []events.Event
	err := s.view(func(tx *kv.Tx) error {
		key, _, err := machineRecord(tx, name)
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketEvents).Bucket(key)
		if b == nil {
			return nil
		}
		if limit > 0 {
			// The last limit steps: read backwards from the newest.
			err := b.Scan(nil, true, func(k, v []byte) (bool, error) {
				if binary.BigEndian.Uint64(k) <= after {
					return false, nil
				}
				var ev events.Event
				if json.Unmarshal(v, &ev) == nil {
					out = append(out, ev)
				}
				return len(out) < limit, nil
			})
			slices.Reverse(out)
			return err
		}
		return b.Scan(u64(after+1), false, func(_, v []byte) (bool, error) {
			var ev events.Event
			if json.Unmarshal(v, &ev) == nil {
				out = append(out, ev)
			}
			return true, nil
		})
	})
	return out, err
}
