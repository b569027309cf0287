package kv

import (
	"context"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watcher is a DB that other processes change too (etcd): its changes can
// be followed.
type Watcher interface {
	// Watch calls fn with the keys of the named top-level buckets that
	// each committed change, by any process, set or deleted, and with nil
	// each time the watch (re)starts, since anything may have changed
	// while it was down: read everything again then. It returns when ctx
	// ends.
	Watch(ctx context.Context, buckets []string, fn func([]Change))
	// UpdateChanges is Update that also returns the keys of top-level
	// buckets the change set or deleted, at the revision it committed at
	// (what the watch reports for them too). Whole buckets deleted are not
	// listed.
	UpdateChanges(ctx context.Context, fn func(*Tx) error) ([]Change, error)
}

// Change is one key a committed change set (Value) or deleted (nil).
type Change struct {
	Bucket string
	Key    string
	Value  []byte
	// Rev is the revision of the change: of two changes to one key the
	// later has the larger.
	Rev int64
}

// Watch implements Watcher. A watch that fails (etcd down, a member
// without a leader, history compacted) starts again a second later.
func (e *Etcd) Watch(ctx context.Context, buckets []string, fn func([]Change)) {
	pre := e.Prefix + "d/"
	match := func(key string) (bucket, k string, ok bool) {
		for _, b := range buckets {
			if rest, found := strings.CutPrefix(key, pre+b+"//"); found {
				return b, rest, true
			}
		}
		return "", "", false
	}
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range e.Client.Watch(wctx, pre, clientv3.WithPrefix(), clientv3.WithCreatedNotify()) {
			if resp.Err() != nil {
				break
			}
			if resp.Created {
				fn(nil)
				continue
			}
			var changes []Change
			for _, ev := range resp.Events {
				b, k, ok := match(string(ev.Kv.Key))
				if !ok {
					continue
				}
				c := Change{Bucket: b, Key: k, Rev: ev.Kv.ModRevision}
				if ev.Type == clientv3.EventTypePut {
					c.Value = ev.Kv.Value
				}
				changes = append(changes, c)
			}
			if len(changes) > 0 {
				fn(changes)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
