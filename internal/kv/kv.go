// Package kv is the inventory's storage engine: ordered keys in nested
// buckets, read and changed in transactions, over one bbolt file or an etcd
// cluster. The bucket API follows bbolt's so that the store's logic is
// written once; an etcd transaction is optimistic (it reads one revision
// and commits only if no other writer committed since, else it runs again),
// so fn passed to Update must do nothing outside the transaction that
// cannot run twice.
package kv

import (
	"context"
	"errors"
	"io"
)

// DB is a transactional store.
type DB interface {
	// View runs fn in a read transaction: one consistent snapshot.
	View(ctx context.Context, fn func(*Tx) error) error
	// Update runs fn in a write transaction, committed whole or not at
	// all; fn may run more than once (etcd, on a conflicting writer).
	Update(ctx context.Context, fn func(*Tx) error) error
	// Snapshot writes a consistent copy of everything as a bbolt file.
	Snapshot(ctx context.Context, w io.Writer) (int64, error)
	// Close releases the store.
	Close() error
}

// ErrUnavailable wraps failures to reach the store (etcd down or without
// quorum): reads and changes both fail with it.
var ErrUnavailable = errors.New("store unavailable")

// engine is one transaction of one store, addressed by bucket path.
type engine interface {
	get(p []string, k []byte) []byte
	put(p []string, k, v []byte) error
	del(p []string, k []byte) error
	// scan calls fn on the keys of bucket p in order from from (nil: the
	// first, or the last in reverse), until fn says stop.
	scan(p []string, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error
	exists(p []string) bool
	// failed is the error a read of this transaction met (nil: none):
	// after it, exists answers false for every bucket.
	failed() error
	create(p []string) error
	deleteBucket(p []string) error
	seq(p []string) uint64
	setSeq(p []string, n uint64) error
	// walk calls fn on every bucket's keys (v != nil) and sequence
	// (v == nil), parents first.
	walk(fn func(p []string, k, v []byte, seq uint64) error) error
	// revision is the store's revision the transaction reads (0 where
	// there is none).
	revision() int64
	// prefetch reads keys of bucket p ahead, in as few requests as it
	// can (nothing to do where reads are local).
	prefetch(p []string, keys [][]byte) error
}

// Tx is one transaction.
type Tx struct{ e engine }

// Revision is the store's revision this transaction reads: on etcd it
// orders two reads (the later one has the larger revision); 0 on bbolt.
func (tx *Tx) Revision() int64 { return tx.e.revision() }

// Bucket returns the top-level bucket name, or nil if it does not exist.
func (tx *Tx) Bucket(name []byte) *Bucket {
	p := []string{string(name)}
	if !tx.e.exists(p) && tx.e.failed() == nil {
		return nil
	}
	// After a failed read the bucket may well exist: its reads answer
	// the error, and so does the transaction.
	return &Bucket{e: tx.e, p: p}
}

// CreateBucketIfNotExists returns the top-level bucket name, creating it.
func (tx *Tx) CreateBucketIfNotExists(name []byte) (*Bucket, error) {
	p := []string{string(name)}
	if err := tx.e.create(p); err != nil {
		return nil, err
	}
	return &Bucket{e: tx.e, p: p}, nil
}

// Bucket is a set of ordered keys and nested buckets within a transaction.
type Bucket struct {
	e engine
	p []string
}

func (b *Bucket) child(name []byte) []string {
	return append(append([]string(nil), b.p...), string(name))
}

// Get returns key's value, nil if absent. The slice is valid during the
// transaction only.
func (b *Bucket) Get(key []byte) []byte { return b.e.get(b.p, key) }

// Prefetch reads keys ahead of the Gets that follow, in as few requests
// to the store as it can: on etcd a hundred keys per round trip instead of
// one; nothing on bbolt, whose reads are local.
func (b *Bucket) Prefetch(keys [][]byte) error { return b.e.prefetch(b.p, keys) }

// Put sets key to value.
func (b *Bucket) Put(key, value []byte) error { return b.e.put(b.p, key, value) }

// Delete removes key (absent is no error).
func (b *Bucket) Delete(key []byte) error { return b.e.del(b.p, key) }

// ForEach calls fn on every key in order; an error stops it.
func (b *Bucket) ForEach(fn func(k, v []byte) error) error {
	return b.e.scan(b.p, nil, false, func(k, v []byte) (bool, error) { return true, fn(k, v) })
}

// Scan calls fn on the keys from from onwards (backwards from from with
// reverse; nil from starts at the first or the last key) until fn returns
// false or an error.
func (b *Bucket) Scan(from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	return b.e.scan(b.p, from, reverse, fn)
}

// Count is the number of keys (nested buckets not counted).
func (b *Bucket) Count() (int, error) {
	n := 0
	err := b.e.scan(b.p, nil, false, func(_, _ []byte) (bool, error) { n++; return true, nil })
	return n, err
}

// Bucket returns the nested bucket name, or nil if it does not exist.
func (b *Bucket) Bucket(name []byte) *Bucket {
	p := b.child(name)
	if !b.e.exists(p) && b.e.failed() == nil {
		return nil
	}
	return &Bucket{e: b.e, p: p}
}

// CreateBucketIfNotExists returns the nested bucket name, creating it.
func (b *Bucket) CreateBucketIfNotExists(name []byte) (*Bucket, error) {
	p := b.child(name)
	if err := b.e.create(p); err != nil {
		return nil, err
	}
	return &Bucket{e: b.e, p: p}, nil
}

// DeleteBucket removes the nested bucket name and all it holds.
func (b *Bucket) DeleteBucket(name []byte) error { return b.e.deleteBucket(b.child(name)) }

// Sequence is the bucket's own counter.
func (b *Bucket) Sequence() uint64 { return b.e.seq(b.p) }

// SetSequence sets the bucket's counter.
func (b *Bucket) SetSequence(n uint64) error { return b.e.setSeq(b.p, n) }

// NextSequence increments the bucket's counter and returns it.
func (b *Bucket) NextSequence() (uint64, error) {
	n := b.e.seq(b.p) + 1
	return n, b.e.setSeq(b.p, n)
}
