package kv

import (
	"bytes"
	"context"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Bolt is a DB in one bbolt file.
type Bolt struct{ DB *bolt.DB }

// View implements DB.
func (b Bolt) View(_ context.Context, fn func(*Tx) error) error {
	return b.DB.View(func(tx *bolt.Tx) error { return fn(&Tx{e: boltTx{tx}}) })
}

// Update implements DB.
func (b Bolt) Update(_ context.Context, fn func(*Tx) error) error {
	return b.DB.Update(func(tx *bolt.Tx) error { return fn(&Tx{e: boltTx{tx}}) })
}

// Snapshot implements DB: the file as one read transaction sees it.
func (b Bolt) Snapshot(_ context.Context, w io.Writer) (int64, error) {
	var n int64
	err := b.DB.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Close implements DB.
func (b Bolt) Close() error { return b.DB.Close() }

type boltTx struct{ tx *bolt.Tx }

func (t boltTx) bucket(p []string) *bolt.Bucket {
	b := t.tx.Bucket([]byte(p[0]))
	for _, n := range p[1:] {
		if b == nil {
			return nil
		}
		b = b.Bucket([]byte(n))
	}
	return b
}

// must returns bucket p, creating it and its parents.
func (t boltTx) must(p []string) (*bolt.Bucket, error) {
	b, err := t.tx.CreateBucketIfNotExists([]byte(p[0]))
	for _, n := range p[1:] {
		if err != nil {
			return nil, err
		}
		b, err = b.CreateBucketIfNotExists([]byte(n))
	}
	return b, err
}

func (t boltTx) get(p []string, k []byte) []byte {
	if b := t.bucket(p); b != nil {
		return b.Get(k)
	}
	return nil
}

func (t boltTx) put(p []string, k, v []byte) error {
	b, err := t.must(p)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

func (t boltTx) del(p []string, k []byte) error {
	if b := t.bucket(p); b != nil {
		return b.Delete(k)
	}
	return nil
}

func (t boltTx) scan(p []string, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	b := t.bucket(p)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	var k, v []byte
	switch {
	case from == nil && !reverse:
		k, v = c.First()
	case from == nil:
		k, v = c.Last()
	case !reverse:
		k, v = c.Seek(from)
	default:
		// The last key <= from.
		if k, v = c.Seek(from); k == nil {
			k, v = c.Last()
		} else if !bytes.Equal(k, from) {
			k, v = c.Prev()
		}
	}
	for ; k != nil; k, v = step(c, reverse) {
		if v == nil {
			continue // a nested bucket
		}
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

func step(c *bolt.Cursor, reverse bool) ([]byte, []byte) {
	if reverse {
		return c.Prev()
	}
	return c.Next()
}

func (t boltTx) revision() int64 { return 0 }

func (t boltTx) prefetch([]string, [][]byte) error { return nil }

func (t boltTx) exists(p []string) bool { return t.bucket(p) != nil }

func (t boltTx) failed() error { return nil }

func (t boltTx) create(p []string) error { _, err := t.must(p); return err }

func (t boltTx) deleteBucket(p []string) error {
	if len(p) == 1 {
		if t.tx.Bucket([]byte(p[0])) == nil {
			return nil
		}
		return t.tx.DeleteBucket([]byte(p[0]))
	}
	parent := t.bucket(p[:len(p)-1])
	if parent == nil || parent.Bucket([]byte(p[len(p)-1])) == nil {
		return nil
	}
	return parent.DeleteBucket([]byte(p[len(p)-1]))
}

func (t boltTx) seq(p []string) uint64 {
	if b := t.bucket(p); b != nil {
		return b.Sequence()
	}
	return 0
}

func (t boltTx) setSeq(p []string, n uint64) error {
	b, err := t.must(p)
	if err != nil {
		return err
	}
	return b.SetSequence(n)
}

func (t boltTx) walk(fn func(p []string, k, v []byte, seq uint64) error) error {
	return t.tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		return walkBolt([]string{string(name)}, b, fn)
	})
}

func walkBolt(p []string, b *bolt.Bucket, fn func(p []string, k, v []byte, seq uint64) error) error {
	if err := fn(p, nil, nil, b.Sequence()); err != nil {
		return err
	}
	return b.ForEach(func(k, v []byte) error {
		if v != nil {
			return fn(p, k, v, 0)
		}
		return walkBolt(append(append([]string(nil), p...), string(k)), b.Bucket(k), fn)
	})
}
