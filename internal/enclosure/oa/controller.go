package oa

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/bmc-toolbox/common"

	"github.com/provisiond/provisiond/internal/bmc"
)

// Dialer reaches a blade through its enclosure's OA: the bmc.Dialer of
// protocol "oa" (the endpoint's Bay names the blade). Its sessions are
// shared: a bulk power or assign over an enclosure's blades uses one login,
// one call at a time, kept Idle after its last use; Close logs them out.
// The zero value is ready to use; it must not be copied after use.
type Dialer struct {
	// Idle is how long a session stays logged in after its last use (10 s
	// when zero).
	Idle time.Duration

	mu   sync.Mutex
	pool map[string]*shared
}

// shared is one OA login and the blades using it.
type shared struct {
	ready chan struct{} // closed when the login is done
	s     *Session
	err   error
	users int
	idle  *time.Timer
	call  sync.Mutex // one SOAP call at a time on the session
}

// Dial logs in to the enclosure's active OA, or joins the login already
// open with the same credentials.
func (d *Dialer) Dial(ctx context.Context, ep bmc.Endpoint) (bmc.Controller, error) {
	where := ep.Host
	if ep.Port != 0 {
		where += ":" + strconv.Itoa(ep.Port)
	}
	if ep.Bay < 1 {
		return nil, &bmc.Error{Machine: ep.Machine, Where: where + " (oa)", Op: "connect", Detail: "the machine has no bay: set its enclosure and bay"}
	}
	sum := sha256.Sum256([]byte(ep.Password))
	key := where + "\x00" + ep.Username + "\x00" + string(sum[:]) + "\x00" + strconv.FormatBool(ep.LegacyTLS)
	d.mu.Lock()
	if d.pool == nil {
		d.pool = map[string]*shared{}
	}
	sh := d.pool[key]
	if sh == nil {
		sh = &shared{ready: make(chan struct{})}
		d.pool[key] = sh
		d.mu.Unlock()
		c := &Client{Addresses: []string{where}, User: ep.Username, Password: ep.Password, LegacyTLS: ep.LegacyTLS}
		sh.s, sh.err = c.Login(ctx)
		close(sh.ready)
		if sh.err != nil {
			d.mu.Lock()
			delete(d.pool, key)
			d.mu.Unlock()
		}
	} else {
		d.mu.Unlock()
	}
	select {
	case <-sh.ready:
	case <-ctx.Done():
		return nil, &bmc.Error{Machine: ep.Machine, Where: where + " (oa)", Op: "connect", Detail: ctx.Err().Error()}
	}
	if sh.err != nil {
		return nil, &bmc.Error{Machine: ep.Machine, Where: where + " (oa)", Op: "connect", Detail: sh.err.Error(), Unreachable: notConnected(sh.err)}
	}
	d.mu.Lock()
	if d.pool[key] != sh {
		// Logged out meanwhile (idle, or refused): log in afresh.
		d.mu.Unlock()
		return d.Dial(ctx, ep)
	}
	sh.users++
	if sh.idle != nil {
		sh.idle.Stop()
		sh.idle = nil
	}
	d.mu.Unlock()
	return &controller{d: d, key: key, sh: sh, s: sh.s, bay: ep.Bay, machine: ep.Machine, where: fmt.Sprintf("%s (oa, bay %d)", sh.s.Address(), ep.Bay)}, nil
}

// release ends one blade's use of a session; the last one starts the
// idle timer that logs it out.
func (d *Dialer) release(key string, sh *shared, broken bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sh.users--
	if broken && d.pool[key] == sh {
		delete(d.pool, key) // the OA refused the session: next Dial logs in again
	}
	if sh.users > 0 {
		return
	}
	if d.pool[key] != sh {
		go sh.s.Close(context.Background())
		return
	}
	idle := d.Idle
	if idle <= 0 {
		idle = 10 * time.Second
	}
	sh.idle = time.AfterFunc(idle, func() {
		d.mu.Lock()
		if sh.users > 0 || d.pool[key] != sh {
			d.mu.Unlock()
			return
		}
		delete(d.pool, key)
		d.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sh.s.Close(ctx)
	})
}

// Close logs out every session (the daemon stops).
func (d *Dialer) Close(ctx context.Context) {
	d.mu.Lock()
	var open []*shared
	for key, sh := range d.pool {
		delete(d.pool, key)
		if sh.idle != nil {
			sh.idle.Stop()
		}
		open = append(open, sh)
	}
	d.mu.Unlock()
	for _, sh := range open {
		select {
		case <-sh.ready:
			if sh.err == nil {
				sh.s.Close(ctx)
			}
		default:
		}
	}
}

// controller is one blade through an OA session.
type controller struct {
	d       *Dialer
	key     string
	sh      *shared
	s       *Session
	bay     int
	machine string
	where   string
	broken  bool
}

func (c *controller) fail(op string, err error) error {
	var f *Fault
	if errors.As(err, &f) && f.Subcode == "wsse:FailedAuthentication" {
		c.broken = true // the OA ended the session: the next Dial logs in again
	}
	unreachable := notConnected(err)
	if unreachable {
		c.broken = true // the OA went away: its session with it
	}
	return &bmc.Error{Machine: c.machine, Where: c.where, Op: op, Detail: err.Error(), Unreachable: unreachable}
}

// notConnected reports whether err is a connection that was never made:
// the request did not reach the OA.
func notConnected(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// do runs one call on the shared session, alone on it.
func (c *controller) do(fn func() error) error {
	c.sh.call.Lock()
	defer c.sh.call.Unlock()
	return fn()
}

// PowerState implements bmc.Controller.
func (c *controller) PowerState(ctx context.Context) (bmc.PowerState, error) {
	var st *BladeStatus
	err := c.do(func() (err error) { st, err = c.s.BladeStatus(ctx, c.bay); return err })
	if err != nil {
		return bmc.Unknown, c.fail("power status", err)
	}
	switch st.Powered {
	case "POWER_ON", "POWER_REBOOT":
		return bmc.On, nil
	case "POWER_OFF", "POWER_STAGED_OFF":
		return bmc.Off, nil
	}
	return bmc.Unknown, nil
}

// SetPower implements bmc.Controller: on is a button press when the blade
// is off, off holds the button, soft presses it when it is on (the OS
// shuts down), cycle is the OA's cold boot, reset its reset.
func (c *controller) SetPower(ctx context.Context, a bmc.PowerAction) error {
	// The state read and the press are one step on the session: a press
	// toggles, so two "on"s must not both see the blade off.
	c.sh.call.Lock()
	defer c.sh.call.Unlock()
	var action string
	switch a {
	case bmc.PowerOnAction, bmc.PowerSoft:
		st, err := c.s.BladeStatus(ctx, c.bay)
		if err != nil {
			return c.fail("power status", err)
		}
		if (a == bmc.PowerOnAction) == st.On() {
			return nil // already there: a press would do the opposite
		}
		action = PowerPress
	case bmc.PowerOff:
		action = PowerHold
	case bmc.PowerCycle:
		action = PowerColdBoot
	case bmc.PowerReset:
		action = PowerReset
	default:
		return c.fail("power", fmt.Errorf("power action %q", a))
	}
	if err := c.s.SetPower(ctx, c.bay, action); err != nil {
		return c.fail("power "+string(a), err)
	}
	return nil
}

// SetBootDevice implements bmc.Controller: the OA sets a one-time network
// boot only (the blade's own next-boot setting, kept by its ROM); a
// persistent or other device is the iLO's to set.
func (c *controller) SetBootDevice(ctx context.Context, d bmc.BootDevice, persistent, efi bool) (*bmc.BootFlags, error) {
	if d != bmc.BootPXE || persistent {
		return nil, c.fail("boot device", errors.New("the Onboard Administrator sets a one-time PXE boot only: set other or persistent boot devices through the blade's iLO (control: bmc)"))
	}
	if err := c.do(func() error { return c.s.PXEOnce(ctx, c.bay) }); err != nil {
		return nil, c.fail("boot device", err)
	}
	return nil, nil
}

// Inventory implements bmc.Controller: an enclosure sync reads the OA's
// view of the blades instead.
func (c *controller) Inventory(context.Context) (*common.Device, error) {
	return nil, bmc.ErrUnsupported
}

// Locate implements bmc.Locator: the blade's UID LED blinks, or goes off.
func (c *controller) Locate(ctx context.Context, on bool) error {
	cmd := UIDOff
	if on {
		cmd = UIDBlink
	}
	if err := c.do(func() error { return c.s.SetUID(ctx, c.bay, cmd) }); err != nil {
		return c.fail("locate", err)
	}
	return nil
}

// Close hands the session back; the last blade to leave it starts its
// idle timer.
func (c *controller) Close(context.Context) error {
	c.d.release(c.key, c.sh, c.broken)
	return nil
}
