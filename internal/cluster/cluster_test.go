package cluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/provisiond/provisiond/internal/cluster"
	"github.com/provisiond/provisiond/internal/kv/etcdtest"
)

func join(t *testing.T, srv *etcdtest.Server, name string) *cluster.Member {
	return joinWith(t, srv.Client(t), name)
}

func joinWith(t *testing.T, c *clientv3.Client, name string) *cluster.Member {
	m, err := cluster.Join(context.Background(), cluster.Instance{Name: name, Addresses: []string{"192.0.2.10"}},
		cluster.Options{Client: c, Prefix: "/c/", TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestInstancesAndLeases: instances see each other; one acts on a machine
// at a time; a crashed instance's registration and lease expire.
func TestInstancesAndLeases(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := join(t, srv, "pxe-a"), join(t, srv, "pxe-b")
	defer b.Close()
	ins, err := b.Instances(context.Background())
	if err != nil || len(ins) != 2 || ins[0].Name != "pxe-a" || ins[0].Self || !ins[1].Self || ins[1].Health != "ok" {
		t.Fatalf("instances: %+v, %v", ins, err)
	}
	unlock, err := a.Lock(context.Background(), "BLD-001")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = b.Lock(ctx, "BLD-001")
	cancel()
	if err == nil || !strings.Contains(err.Error(), "instance pxe-a") {
		t.Fatalf("B's lock while A holds it: %v, want a refusal naming pxe-a", err)
	}
	if u, err := b.Lock(context.Background(), "BLD-002"); err != nil {
		t.Fatalf("another machine's lease: %v", err)
	} else {
		u()
	}
	unlock()
	if u, err := b.Lock(context.Background(), "BLD-001"); err != nil {
		t.Fatalf("after A gave it back: %v", err)
	} else {
		u()
	}

	// A crashes holding a lease (its client goes away, nothing revoked).
	cclient := srv.Client(t)
	c := joinWith(t, cclient, "pxe-c")
	if _, err := c.Lock(context.Background(), "BLD-003"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	cclient.Close() // the crash: no more keep-alives, nothing revoked
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	u, err := b.Lock(ctx, "BLD-003")
	if err != nil {
		t.Fatalf("a crashed instance's lease did not expire: %v", err)
	}
	u()
	t.Logf("a crashed instance's lease expired after %s", time.Since(start).Round(100*time.Millisecond))
	ins, _ = b.Instances(context.Background())
	if len(ins) != 1 || ins[0].Name != "pxe-b" {
		t.Errorf("instances after pxe-a left and pxe-c crashed: %+v", ins)
	}
}
