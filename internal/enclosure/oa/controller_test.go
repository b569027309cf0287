package oa_test

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/enclosure/oa"
	"github.com/provisiond/provisiond/internal/enclosure/oa/oatest"
)

// A bulk action over an enclosure's blades uses one OA login: blades dialed
// together share it, it is logged out once they are done and the idle
// time has passed, and the next action logs in again. Power maps to the
// OA's actions (on: a press when off, nothing when on; cycle: cold boot).
func TestDialerSharesOneSession(t *testing.T) {
	b6 := testBlade()
	b6.Bay = 6
	ts := oatest.New("ASGARD", "CZ1", "Administrator", "s3cret", testBlade(), b6)
	host, port, _ := net.SplitHostPort(serve(t, ts))
	p, _ := strconv.Atoi(port)
	d := &oa.Dialer{Idle: 100 * time.Millisecond}
	ep := func(bay int) bmc.Endpoint {
		return bmc.Endpoint{Machine: "BLD-" + strconv.Itoa(bay), Host: host, Port: p, Protocol: "oa", Username: "Administrator", Password: "s3cret", Bay: bay}
	}
	var wg sync.WaitGroup
	for _, bay := range []int{3, 6, 3, 6} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := d.Dial(t.Context(), ep(bay))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(t.Context())
			if err := c.SetPower(t.Context(), bmc.PowerOnAction); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	calls := strings.Join(ts.Calls(), ",")
	if strings.Count(calls, "userLogIn") != 1 || strings.Count(calls, "setBladePower 3 MOMENTARY_PRESS") != 1 || strings.Count(calls, "setBladePower 6 MOMENTARY_PRESS") != 1 {
		t.Errorf("one login, one press per blade (on when on is nothing): %s", calls)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ts.Sessions() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if ts.Sessions() != 0 {
		t.Fatalf("the idle session was not logged out: %s", strings.Join(ts.Calls(), ","))
	}
	c, err := d.Dial(t.Context(), ep(3))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetPower(t.Context(), bmc.PowerCycle); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.PowerState(t.Context()); st != bmc.On {
		t.Errorf("after a cold boot: %s", st)
	}
	c.Close(t.Context())
	d.Close(t.Context())
	calls = strings.Join(ts.Calls(), ",")
	if strings.Count(calls, "userLogIn") != 2 || !strings.Contains(calls, "setBladePower 3 COLD_BOOT") || ts.Sessions() != 0 {
		t.Errorf("a new login after the idle logout, and Close logs out: %s (%d open)", calls, ts.Sessions())
	}
	// Only PXE, once: anything else is the iLO's.
	c, _ = d.Dial(t.Context(), ep(3))
	defer c.Close(t.Context())
	if _, err := c.SetBootDevice(t.Context(), bmc.BootPXE, true, false); err == nil || !strings.Contains(err.Error(), "one-time PXE boot only") {
		t.Errorf("persistent PXE: %v", err)
	}
}
