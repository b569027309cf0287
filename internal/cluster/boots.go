package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/bootguard"
)

// Boots keeps the boot guard's boots in etcd (bootguard.Shared): one key
// per MAC under a lease of the nonce's lifetime, changed by compare-and-
// swap on its revision, so a boot that starts on one instance can finish
// on another and a secret-bearing response is served once whichever
// instance is asked.
type Boots struct {
	Client *clientv3.Client
	// Prefix is the deployment's key prefix (the store's).
	Prefix string
}

var _ bootguard.Shared = (*Boots)(nil)

func (s *Boots) key(mac string) string { return s.Prefix + "boots/" + mac }

func (s *Boots) get(ctx context.Context, mac string) (b bootguard.Boot, rev int64, found bool, err error) {
	resp, err := s.Client.Get(ctx, s.key(mac))
	if err != nil {
		return b, 0, false, fmt.Errorf("reading boot of %s from etcd: %w", mac, err)
	}
	if len(resp.Kvs) == 0 {
		return b, 0, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &b); err != nil {
		return b, 0, false, fmt.Errorf("decoding boot of %s from etcd: %w", mac, err)
	}
	return b, resp.Kvs[0].ModRevision, true, nil
}

// Start implements bootguard.Shared.
func (s *Boots) Start(ctx context.Context, mac string, b bootguard.Boot, same, ttl time.Duration) (bootguard.Boot, error) {
	raw, err := json.Marshal(b)
	if err != nil {
		return b, err
	}
	for {
		cur, rev, found, err := s.get(ctx, mac)
		if err != nil {
			return b, err
		}
		if found && b.Started.Sub(cur.Started) < same && b.Started.Sub(cur.Started) > -same {
			return cur, nil // the same exchange, started by another instance
		}
		secs := int64(ttl / time.Second)
		if secs < 1 {
			secs = 1
		}
		lease, err := s.Client.Grant(ctx, secs)
		if err != nil {
			return b, fmt.Errorf("a lease for the boot of %s: %w", mac, err)
		}
		resp, err := s.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.key(mac)), "=", rev)).
			Then(clientv3.OpPut(s.key(mac), string(raw), clientv3.WithLease(lease.ID))).Commit()
		if err != nil {
			return b, fmt.Errorf("writing the boot of %s: %w", mac, err)
		}
		if resp.Succeeded {
			return b, nil
		}
		s.Client.Revoke(ctx, lease.ID) // lost the race: read the winner
	}
}

// Load implements bootguard.Shared.
func (s *Boots) Load(ctx context.Context, mac string) (bootguard.Boot, bool, error) {
	b, _, found, err := s.get(ctx, mac)
	return b, found, err
}

// Change implements bootguard.Shared.
func (s *Boots) Change(ctx context.Context, mac string, fn func(*bootguard.Boot) error) (bool, error) {
	for {
		b, rev, found, err := s.get(ctx, mac)
		if err != nil || !found {
			return false, err
		}
		if err := fn(&b); err != nil {
			return true, err
		}
		raw, err := json.Marshal(b)
		if err != nil {
			return true, err
		}
		resp, err := s.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(s.key(mac)), "=", rev)).
			Then(clientv3.OpPut(s.key(mac), string(raw), clientv3.WithIgnoreLease())).Commit()
		if err != nil {
			return false, fmt.Errorf("writing the boot of %s: %w", mac, err)
		}
		if resp.Succeeded {
			return true, nil
		}
	}
}
