package oa

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/bmc-toolbox/common"

	"github.com/provisiond/provisiond/internal/bmc"
)

// Dialer reaches a blade through its enclosure's OA: the bmc.Dialer of
// protocol "oa" (the endpoint's Bay names the blade).
type Dialer struct{}

// Dial logs in to the enclosure's active OA.
func (Dialer) Dial(ctx context.Context, ep bmc.Endpoint) (bmc.Controller, error) {
	where := ep.Host
	if ep.Port != 0 {
		where += ":" + strconv.Itoa(ep.Port)
	}
	if ep.Bay < 1 {
		return nil, &bmc.Error{Machine: ep.Machine, Where: where + " (oa)", Op: "connect", Detail: "the machine has no bay: set its enclosure and bay"}
	}
	c := &Client{Addresses: []string{where}, User: ep.Username, Password: ep.Password, LegacyTLS: ep.LegacyTLS}
	s, err := c.Login(ctx)
	if err != nil {
		return nil, &bmc.Error{Machine: ep.Machine, Where: where + " (oa)", Op: "connect", Detail: err.Error()}
	}
	return &controller{s: s, bay: ep.Bay, machine: ep.Machine, where: fmt.Sprintf("%s (oa, bay %d)", s.Address(), ep.Bay)}, nil
}

// controller is one blade through an OA session.
type controller struct {
	s       *Session
	bay     int
	machine string
	where   string
}

func (c *controller) fail(op string, err error) error {
	return &bmc.Error{Machine: c.machine, Where: c.where, Op: op, Detail: err.Error()}
}

// PowerState implements bmc.Controller.
func (c *controller) PowerState(ctx context.Context) (bmc.PowerState, error) {
	st, err := c.s.BladeStatus(ctx, c.bay)
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
	var action string
	switch a {
	case bmc.PowerOnAction, bmc.PowerSoft:
		st, err := c.PowerState(ctx)
		if err != nil {
			return err
		}
		if (a == bmc.PowerOnAction) == (st == bmc.On) {
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
	if err := c.s.PXEOnce(ctx, c.bay); err != nil {
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
	if err := c.s.SetUID(ctx, c.bay, cmd); err != nil {
		return c.fail("locate", err)
	}
	return nil
}

// Close logs out.
func (c *controller) Close(ctx context.Context) error { return c.s.Close(ctx) }
