package kv_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/provisiond/provisiond/internal/kv"
	"github.com/provisiond/provisiond/internal/kv/etcdtest"
)

// engines returns a constructor of handles on one store per engine: two
// handles of one store are two writers (two instances, for etcd).
func engines(t *testing.T) map[string]func() kv.DB {
	return map[string]func() kv.DB{
		"bbolt": func() kv.DB {
			db, err := bolt.Open(filepath.Join(t.TempDir(), "kv.db"), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			b := kv.Bolt{DB: db}
			return b
		},
		"etcd": func() kv.DB {
			srv := etcdtest.Start(t)
			return &kv.Etcd{Client: srv.Client(t), Prefix: "/test/"}
		},
	}
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func TestBuckets(t *testing.T) {
	ctx := context.Background()
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			db := open()
			err := db.Update(ctx, func(tx *kv.Tx) error {
				if tx.Bucket([]byte("m")) != nil {
					t.Error("bucket m exists before it was created")
				}
				m, err := tx.CreateBucketIfNotExists([]byte("m"))
				if err != nil {
					return err
				}
				for _, k := range []string{"b", "a", "c"} {
					m.Put([]byte(k), []byte("v"+k))
				}
				ev, _ := tx.CreateBucketIfNotExists([]byte("events"))
				n1, _ := ev.CreateBucketIfNotExists([]byte("n1"))
				for i := uint64(1); i <= 5; i++ {
					// 47 is '/': binary keys must not be taken for paths.
					n1.Put(u64(i*47), []byte(strconv.Itoa(int(i))))
				}
				if seq, _ := ev.NextSequence(); seq != 1 {
					t.Errorf("first NextSequence = %d", seq)
				}
				// A transaction reads its own writes, in order.
				var keys []string
				m.ForEach(func(k, v []byte) error { keys = append(keys, string(k)); return nil })
				if fmt.Sprint(keys) != "[a b c]" {
					t.Errorf("own writes scanned as %v", keys)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(ctx, func(tx *kv.Tx) error {
				m := tx.Bucket([]byte("m"))
				m.Delete([]byte("b"))
				m.Put([]byte("ab"), []byte("new"))
				var got []string
				m.Scan([]byte("ab"), false, func(k, v []byte) (bool, error) { got = append(got, string(k)+"="+string(v)); return true, nil })
				if fmt.Sprint(got) != "[ab=new c=vc]" {
					t.Errorf("scan from ab over stored and own writes: %v", got)
				}
				got = nil
				m.Scan([]byte("b"), true, func(k, v []byte) (bool, error) { got = append(got, string(k)); return true, nil })
				if fmt.Sprint(got) != "[ab a]" {
					t.Errorf("reverse scan from b (deleted): %v", got)
				}
				n1 := tx.Bucket([]byte("events")).Bucket([]byte("n1"))
				got = nil
				n1.Scan(nil, true, func(k, v []byte) (bool, error) {
					got = append(got, string(v))
					return len(got) < 2, nil
				})
				if fmt.Sprint(got) != "[5 4]" {
					t.Errorf("newest two of a nested bucket: %v", got)
				}
				if n, _ := n1.Count(); n != 5 {
					t.Errorf("count = %d", n)
				}
				if v := n1.Get(u64(47)); string(v) != "1" {
					t.Errorf("binary key with '/': %q", v)
				}
				return tx.Bucket([]byte("events")).DeleteBucket([]byte("n1"))
			})
			if err != nil {
				t.Fatal(err)
			}
			db.View(ctx, func(tx *kv.Tx) error {
				if tx.Bucket([]byte("events")).Bucket([]byte("n1")) != nil {
					t.Error("deleted bucket still there")
				}
				if seq := tx.Bucket([]byte("events")).Sequence(); seq != 1 {
					t.Errorf("sequence after commit = %d", seq)
				}
				if v := tx.Bucket([]byte("m")).Get([]byte("b")); v != nil {
					t.Errorf("deleted key reads %q", v)
				}
				return nil
			})
		})
	}
}

// TestFailedChangeLeavesNothing: an error from fn commits nothing.
func TestFailedChangeLeavesNothing(t *testing.T) {
	ctx := context.Background()
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			db := open()
			boom := errors.New("boom")
			err := db.Update(ctx, func(tx *kv.Tx) error {
				b, _ := tx.CreateBucketIfNotExists([]byte("m"))
				b.Put([]byte("k"), []byte("v"))
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("Update = %v, want fn's error", err)
			}
			db.View(ctx, func(tx *kv.Tx) error {
				if tx.Bucket([]byte("m")) != nil {
					t.Error("a failed change left its bucket")
				}
				return nil
			})
		})
	}
}

// TestConcurrentWritersLoseNothing: two writers (two clients, for etcd:
// two instances) increment one counter and append to one bucket at once.
func TestConcurrentWritersLoseNothing(t *testing.T) {
	ctx := context.Background()
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			a := open()
			b := a
			if e, ok := a.(*kv.Etcd); ok {
				b = &kv.Etcd{Client: etcdClientLike(t, e), Prefix: e.Prefix}
			}
			const each = 40
			var wg sync.WaitGroup
			for w, db := range []kv.DB{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						err := db.Update(ctx, func(tx *kv.Tx) error {
							c, _ := tx.CreateBucketIfNotExists([]byte("c"))
							n, _ := strconv.Atoi(string(c.Get([]byte("n"))))
							c.Put([]byte("n"), []byte(strconv.Itoa(n+1)))
							l, _ := tx.CreateBucketIfNotExists([]byte("log"))
							seq, _ := l.NextSequence()
							return l.Put(u64(seq), []byte(fmt.Sprintf("%d-%d", w, i)))
						})
						if err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			a.View(ctx, func(tx *kv.Tx) error {
				if n := tx.Bucket([]byte("c")).Get([]byte("n")); string(n) != strconv.Itoa(2*each) {
					t.Errorf("counter = %s after %d increments", n, 2*each)
				}
				if n, _ := tx.Bucket([]byte("log")).Count(); n != 2*each {
					t.Errorf("log has %d entries, want %d", n, 2*each)
				}
				return nil
			})
		})
	}
}

// TestSnapshotIsABoltFile: either engine's snapshot opens as bbolt with
// the same buckets, keys and sequences.
func TestSnapshotIsABoltFile(t *testing.T) {
	ctx := context.Background()
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			db := open()
			db.Update(ctx, func(tx *kv.Tx) error {
				ev, _ := tx.CreateBucketIfNotExists([]byte("events"))
				ev.SetSequence(41)
				n, _ := ev.CreateBucketIfNotExists([]byte("n1"))
				n.SetSequence(2)
				n.Put(u64(40), []byte("x"))
				n.Put(u64(41), []byte("y"))
				e, _ := tx.CreateBucketIfNotExists([]byte("empty"))
				_ = e
				return nil
			})
			var buf bytes.Buffer
			if _, err := db.Snapshot(ctx, &buf); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "snap.db")
			writeFile(t, path, buf.Bytes())
			snap, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatalf("snapshot is not a bbolt file: %v", err)
			}
			defer snap.Close()
			snap.View(func(tx *bolt.Tx) error {
				ev := tx.Bucket([]byte("events"))
				if ev == nil || ev.Sequence() != 41 || ev.Bucket([]byte("n1")) == nil {
					t.Fatalf("events bucket in snapshot: %v", ev)
				}
				n := ev.Bucket([]byte("n1"))
				if n.Sequence() != 2 || string(n.Get(u64(41))) != "y" {
					t.Errorf("n1 in snapshot: seq %d, 41=%q", n.Sequence(), n.Get(u64(41)))
				}
				if tx.Bucket([]byte("empty")) == nil {
					t.Error("empty bucket missing from snapshot")
				}
				return nil
			})
		})
	}
}

// A read that fails inside a transaction (etcd unreachable, the daemon
// stopping) does not make an existing bucket look missing: callers take the
// buckets made at open for granted, and a nil one was a panic (the boot
// table's rebuild crashed a test run this way). The bucket's reads answer
// the error, and so does the transaction.
func TestFailedReadIsNoMissingBucket(t *testing.T) {
	srv := etcdtest.Start(t)
	db := &kv.Etcd{Client: srv.Client(t), Prefix: "/test/"}
	if err := db.Update(context.Background(), func(tx *kv.Tx) error {
		m, err := tx.CreateBucketIfNotExists([]byte("m"))
		if err != nil {
			return err
		}
		return m.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err := db.View(ctx, func(tx *kv.Tx) error {
		cancel() // every read from here on fails
		b := tx.Bucket([]byte("m"))
		if b == nil {
			t.Fatal("after a failed read, an existing bucket looks missing")
		}
		return b.ForEach(func(k, v []byte) error { return nil })
	})
	if err == nil {
		t.Fatal("View = nil after a failed read, want its error")
	}
}
