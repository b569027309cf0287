package kv

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Summary describes a store's content: keys per top-level bucket and one
// checksum over every bucket, key, value and sequence.
type Summary struct {
	Keys   map[string]int
	SHA256 string
}

// Sum reads db whole, in one transaction.
func Sum(ctx context.Context, db DB) (Summary, error) {
	type entry struct{ k, v []byte }
	var all []entry
	sum := Summary{Keys: map[string]int{}}
	err := db.View(ctx, func(tx *Tx) error {
		return tx.e.walk(func(p []string, k, v []byte, seq uint64) error {
			path := strings.Join(p, "/")
			if v == nil {
				all = append(all, entry{[]byte("b\x00" + path), binary.BigEndian.AppendUint64(nil, seq)})
				return nil
			}
			sum.Keys[p[0]]++
			all = append(all, entry{append([]byte("k\x00"+path+"\x00"), k...), append([]byte(nil), v...)})
			return nil
		})
	})
	if err != nil {
		return sum, err
	}
	sort.Slice(all, func(i, j int) bool { return string(all[i].k) < string(all[j].k) })
	h := sha256.New()
	for _, e := range all {
		binary.Write(h, binary.BigEndian, uint32(len(e.k)))
		h.Write(e.k)
		binary.Write(h, binary.BigEndian, uint32(len(e.v)))
		h.Write(e.v)
	}
	sum.SHA256 = hex.EncodeToString(h.Sum(nil))
	return sum, nil
}

// migrateBatch is how many keys one etcd request of a migration writes
// (etcd's default --max-txn-ops is 128).
const migrateBatch = 100

// Migrate copies everything in src into dst, which must be empty, and
// checks the copy: the same keys per bucket and the same checksum. Into
// etcd it writes in batches (nothing else uses the new prefix yet); into
// bbolt in one transaction.
func Migrate(ctx context.Context, dst, src DB) (Summary, error) {
	if n, err := count(ctx, dst); err != nil {
		return Summary{}, err
	} else if n > 0 {
		return Summary{}, fmt.Errorf("the destination already holds %d keys: migrate into an empty store (a new bbolt file, or an etcd prefix nothing uses)", n)
	}
	want, err := Sum(ctx, src)
	if err != nil {
		return Summary{}, fmt.Errorf("reading the source: %w", err)
	}
	if e, ok := dst.(*Etcd); ok {
		err = copyBatched(ctx, e, src)
	} else {
		err = Copy(ctx, dst, src)
	}
	if err != nil {
		return want, fmt.Errorf("writing the destination: %w", err)
	}
	got, err := Sum(ctx, dst)
	if err != nil {
		return want, fmt.Errorf("reading the destination back: %w", err)
	}
	if got.SHA256 != want.SHA256 || fmt.Sprint(got.Keys) != fmt.Sprint(want.Keys) {
		return want, fmt.Errorf("the copy differs from the source (keys %v, sha256 %s; source %v, %s)", got.Keys, got.SHA256, want.Keys, want.SHA256)
	}
	return want, nil
}

// count is how many keys and buckets db holds.
func count(ctx context.Context, db DB) (int, error) {
	n := 0
	err := db.View(ctx, func(tx *Tx) error {
		return tx.e.walk(func([]string, []byte, []byte, uint64) error { n++; return nil })
	})
	return n, err
}

func copyBatched(ctx context.Context, dst *Etcd, src DB) error {
	var ops []clientv3.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		c, cancel := context.WithTimeout(ctx, dst.timeout())
		defer cancel()
		_, err := dst.Client.Txn(c).Then(ops...).Commit()
		ops = ops[:0]
		if err != nil {
			return dst.unavailable(err)
		}
		return nil
	}
	return src.View(ctx, func(tx *Tx) error {
		err := tx.e.walk(func(p []string, k, v []byte, seq uint64) error {
			if v == nil {
				ops = append(ops, clientv3.OpPut(dst.marker(p), fmt.Sprint(seq)))
			} else {
				ops = append(ops, clientv3.OpPut(dst.dataKey(p, k), string(v)))
			}
			if len(ops) >= migrateBatch {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
		return flush()
	})
}
