package kv

import (
	"context"
	"errors"
)

// Copy writes everything in src into dst (buckets, keys and sequences) in
// one read of src and one change of dst: a backup of either store, or a
// migration between them. What dst already holds under the same keys is
// replaced; nothing else in dst is removed.
func Copy(ctx context.Context, dst, src DB) error {
	return src.View(ctx, func(stx *Tx) error {
		return dst.Update(ctx, func(dtx *Tx) error {
			return stx.e.walk(func(p []string, k, v []byte, seq uint64) error {
				if v == nil {
					return errors.Join(dtx.e.create(p), dtx.e.setSeq(p, seq))
				}
				return dtx.e.put(p, k, v)
			})
		})
	})
}
