package cluster_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bootguard"
	"github.com/provisiond/provisiond/internal/cluster"
	"github.com/provisiond/provisiond/internal/kv/etcdtest"
)

const mac = "52:54:00:00:00:08"

var src = netip.MustParseAddr("192.0.2.58")

// guardOn is one instance's guard on the shared boots.
func guardOn(t *testing.T, srv *etcdtest.Server) *bootguard.Guard {
	return bootguard.New(bootguard.Config{
		Shared:   &cluster.Boots{Client: srv.Client(t), Prefix: "/g/"},
		Neighbor: func(ip netip.Addr) (string, bool) { return mac, ip == src },
	})
}

// TestBootFinishesOnAnotherInstance: both instances see the boot's DHCP;
// its script is served by one, its callback goes to the other; each
// secret-bearing response and nonce use happens once across both.
func TestBootFinishesOnAnotherInstance(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := guardOn(t, srv), guardOn(t, srv)
	a.Start(mac, "dhcp")
	b.Start(mac, "dhcp") // the same exchange, answered by both
	var na, nb string
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		if na, err = a.Admit(mac, src); err != nil {
			t.Fatal(err)
		}
		if nb, err = b.Admit(mac, src); err != nil {
			t.Fatal(err)
		}
		if na == nb {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the instances disagree on the boot's nonce: %s vs %s", na, nb)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.Once(mac, "script:linux"); err != nil {
		t.Fatal(err)
	}
	a.Grant(mac, "callback")
	var r *bootguard.Refusal
	if err := b.Once(mac, "script:linux"); !errors.As(err, &r) || r.Reason != bootguard.ReasonAgain {
		t.Errorf("the script served again by the other instance: %v, want refused (again)", err)
	}
	if err := b.Redeem(mac, na, "callback", src); err != nil {
		t.Errorf("the callback on the other instance: %v", err)
	}
	if err := a.Redeem(mac, na, "callback", src); !errors.As(err, &r) || !r.Alarm {
		t.Errorf("the callback's nonce used again on the first: %v, want an alarm", err)
	}
	if a.Alarms()+b.Alarms() != 2 {
		t.Errorf("alarms: %d + %d, want 2", a.Alarms(), b.Alarms())
	}
	// A new boot (a reboot, later than the same exchange) replaces it.
	later := bootguard.New(bootguard.Config{
		Shared:   &cluster.Boots{Client: srv.Client(t), Prefix: "/g/"},
		Neighbor: func(ip netip.Addr) (string, bool) { return mac, ip == src },
		Now:      func() time.Time { return time.Now().Add(time.Minute) },
	})
	later.Start(mac, "bmc")
	deadline = time.Now().Add(5 * time.Second)
	for {
		n, err := a.Admit(mac, src)
		if err == nil && n != na {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a reboot's new nonce did not reach the other instance: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
