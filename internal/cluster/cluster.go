// Package cluster is how provisiond instances sharing one etcd coordinate,
// with etcd's own primitives: each instance registers under a lease of its
// session (gone when the instance dies), and acting on a machine's BMC
// takes that machine's lease (an etcd mutex), so one instance acts on a
// machine at a time and a dead instance's lease expires.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Instance is one registered provisiond.
type Instance struct {
	Name    string    `json:"name"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Addresses are where it serves boots (its interfaces' IPv4
	// addresses) and Control its control plane's URL.
	Interfaces []string `json:"interfaces"`
	Addresses  []string `json:"addresses"`
	Control    string   `json:"control"`
	// Health is "ok" or what is wrong (its boot table's rebuild error).
	Health string `json:"health"`
	// Updated is when it last wrote this record; Self marks the instance
	// that answered.
	Updated time.Time `json:"updated"`
	Self    bool      `json:"self,omitempty"`
	// Lease is its session's etcd lease (hex, as etcdctl shows it).
	Lease string `json:"lease"`
}

// Options configure a Member.
type Options struct {
	Client *clientv3.Client
	// Prefix is the deployment's key prefix (the store's).
	Prefix string
	// TTL is how long a dead instance's registration and leases outlive
	// it (10 s when zero).
	TTL time.Duration
	// Health reports this instance's health ("ok" or what is wrong); it is
	// republished every TTL/2.
	Health func() string
	Log    *slog.Logger
}

// Member is this instance's membership.
type Member struct {
	o    Options
	self Instance

	mu      sync.Mutex
	session *concurrency.Session

	stop context.CancelFunc
	done chan struct{}
}

// Join registers self and keeps it registered (a new session when etcd
// was away longer than the TTL) until Close.
func Join(ctx context.Context, self Instance, o Options) (*Member, error) {
	if o.TTL <= 0 {
		o.TTL = 10 * time.Second
	}
	if o.Health == nil {
		o.Health = func() string { return "ok" }
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	m := &Member{o: o, self: self, done: make(chan struct{})}
	if err := m.register(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	m.stop = cancel
	go m.keep(rctx)
	return m, nil
}

func (m *Member) key(name string) string { return m.o.Prefix + "instances/" + name }

// register opens a session (if it has none alive) and writes the record.
func (m *Member) register(ctx context.Context) error {
	m.mu.Lock()
	s := m.session
	m.mu.Unlock()
	if s == nil || isDone(s) {
		var err error
		s, err = concurrency.NewSession(m.o.Client, concurrency.WithTTL(int(m.o.TTL/time.Second)), concurrency.WithContext(context.Background()))
		if err != nil {
			return fmt.Errorf("registering instance %s in etcd: %w", m.self.Name, err)
		}
		m.mu.Lock()
		m.session = s
		m.mu.Unlock()
	}
	rec := m.self
	rec.Health, rec.Updated, rec.Lease = m.o.Health(), time.Now().UTC(), fmt.Sprintf("%x", int64(s.Lease()))
	raw, _ := json.Marshal(rec)
	ctx, cancel := context.WithTimeout(ctx, m.o.TTL)
	defer cancel()
	if _, err := m.o.Client.Put(ctx, m.key(rec.Name), string(raw), clientv3.WithLease(s.Lease())); err != nil {
		return fmt.Errorf("registering instance %s in etcd: %w", m.self.Name, err)
	}
	return nil
}

func isDone(s *concurrency.Session) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// keep republishes the record every TTL/2, with a new session once the
// old one expired (etcd away longer than the TTL).
func (m *Member) keep(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(m.o.TTL / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.register(ctx); err != nil && ctx.Err() == nil {
			m.o.Log.Warn("keeping this instance registered", "err", err)
		}
	}
}

// Instances lists the registered instances, by name.
func (m *Member) Instances(ctx context.Context) ([]Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, m.o.TTL)
	defer cancel()
	resp, err := m.o.Client.Get(ctx, m.o.Prefix+"instances/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("listing instances in etcd: %w", err)
	}
	var out []Instance
	for _, kv := range resp.Kvs {
		var in Instance
		if json.Unmarshal(kv.Value, &in) != nil {
			continue
		}
		in.Self = in.Name == m.self.Name
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// maxLockWait bounds how long Lock waits for a machine's lease.
const maxLockWait = time.Minute

// Lock takes machine's lease for an action, waiting while another
// instance holds it (until ctx ends: the error names the holder). unlock
// gives it back; a dead instance's lease expires with its session.
func (m *Member) Lock(ctx context.Context, machine string) (unlock func(), err error) {
	m.mu.Lock()
	s := m.session
	m.mu.Unlock()
	if s == nil || isDone(s) {
		return nil, fmt.Errorf("machine %s: this instance has no etcd session (etcd unreachable?): no BMC action until it has", machine)
	}
	pfx := m.o.Prefix + "locks/machines/" + machine
	mu := concurrency.NewMutex(s, pfx)
	// Another instance's action takes seconds; etcd away would hold the
	// caller for good.
	ctx, cancel := context.WithTimeout(ctx, maxLockWait)
	defer cancel()
	if err := mu.Lock(ctx); err != nil {
		return nil, fmt.Errorf("machine %s: another instance is acting on it (%s): %w", machine, m.holder(pfx), err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), m.o.TTL)
		defer cancel()
		mu.Unlock(ctx) // on failure the lease expires with the session
	}, nil
}

// holder names the instance holding the mutex at pfx.
func (m *Member) holder(pfx string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := m.o.Client.Get(ctx, pfx+"/", clientv3.WithFirstCreate()...)
	if err != nil || len(resp.Kvs) == 0 {
		return "holder unknown"
	}
	lease := fmt.Sprintf("%x", resp.Kvs[0].Lease)
	ins, _ := m.Instances(ctx)
	for _, in := range ins {
		if in.Lease == lease {
			return "instance " + in.Name
		}
	}
	return "lease " + lease
}

// Close deregisters: the record and leases go at once.
func (m *Member) Close() error {
	m.stop()
	<-m.done
	m.mu.Lock()
	s := m.session
	m.mu.Unlock()
	if s != nil {
		return s.Close()
	}
	return nil
}
