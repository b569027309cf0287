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
	// Watch calls changed after every committed change, by any process,
	// to a key of the named top-level buckets, and each time the watch
	// (re)starts, since anything may have changed while it was down. It
	// returns when ctx ends.
	Watch(ctx context.Context, buckets []string, changed func())
}

// Watch implements Watcher. A watch that fails (etcd down, a member
// without a leader, history compacted) starts again a second later.
func (e *Etcd) Watch(ctx context.Context, buckets []string, changed func()) {
	pre := e.Prefix + "d/"
	match := func(key string) bool {
		for _, b := range buckets {
			if strings.HasPrefix(key, pre+b+"//") {
				return true
			}
		}
		return false
	}
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range e.Client.Watch(wctx, pre, clientv3.WithPrefix(), clientv3.WithCreatedNotify()) {
			if resp.Err() != nil {
				break
			}
			if resp.Created {
				changed()
				continue
			}
			for _, ev := range resp.Events {
				if match(string(ev.Kv.Key)) {
					changed()
					break
				}
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
