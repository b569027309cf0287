package bmc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/providers/ipmitool"
	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"
	"github.com/bmc-toolbox/common"
	"github.com/go-logr/logr"
	"github.com/jacobweinstock/registrar"

	"github.com/provisiond/provisiond/internal/bmc/protocol"
)

// DefaultTimeout bounds one BMC call when Options.Timeout is zero. An IPMI
// BMC answers in well under a second; an old iLO's Redfish can take ten.
const DefaultTimeout = 30 * time.Second

// Options configure Bmclib.
type Options struct {
	// Timeout bounds each call (connect, power, boot device, inventory).
	Timeout time.Duration
	// IpmitoolPath is the ipmitool binary ("" finds it on PATH).
	IpmitoolPath string
	// HTTPClient is used for Redfish (nil: bmclib's, which accepts the
	// self-signed certificates BMCs ship with).
	HTTPClient *http.Client
	// Registry, when set, returns the provider registry for an endpoint
	// instead of bmclib's built-in providers (tests register drivers of
	// their own here).
	Registry func(Endpoint) *registrar.Registry
	// Logger receives bmclib's own logging (nil: none).
	Logger *logr.Logger
}

// Bmclib is a Dialer that reaches BMCs with bmclib: the ipmitool provider
// for IPMI over LAN (lanplus), the gofish provider for Redfish.
type Bmclib struct {
	opts Options
}

// NewBmclib returns a Dialer using bmclib.
func NewBmclib(opts Options) *Bmclib {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &Bmclib{opts: opts}
}

// Timeout is the per-call timeout in force.
func (b *Bmclib) Timeout() time.Duration { return b.opts.Timeout }

// Dial opens a session with the BMC (for IPMI: checks it answers).
func (b *Bmclib) Dial(ctx context.Context, ep Endpoint) (Controller, error) {
	if ep.Host == "" {
		return nil, &Error{Machine: ep.Machine, Where: "BMC", Op: "connect", Detail: "no BMC address recorded: set one with provisiond machine set " + ep.Machine + " --bmc-address HOST"}
	}
	opts := []bmclib.Option{bmclib.WithPerProviderTimeout(b.opts.Timeout)}
	if b.opts.Logger != nil {
		opts = append(opts, bmclib.WithLogger(*b.opts.Logger))
	}
	var provider string
	switch ep.Protocol {
	case "", IPMI:
		provider = ipmitool.ProviderName
		if ep.Port != 0 {
			opts = append(opts, bmclib.WithIpmitoolPort(strconv.Itoa(ep.Port)))
		}
		if ep.CipherSuite != 0 {
			opts = append(opts, bmclib.WithIpmitoolCipherSuite(strconv.Itoa(ep.CipherSuite)))
		}
		if b.opts.IpmitoolPath != "" {
			opts = append(opts, bmclib.WithIpmitoolPath(b.opts.IpmitoolPath))
		}
	case Redfish:
		provider = redfish.ProviderName
		if ep.Port != 0 {
			opts = append(opts, bmclib.WithRedfishPort(strconv.Itoa(ep.Port)))
		}
		if b.opts.HTTPClient != nil {
			opts = append(opts, bmclib.WithHTTPClient(b.opts.HTTPClient))
		}
	default:
		return nil, &Error{Machine: ep.Machine, Where: ep.where(), Op: "connect", Detail: fmt.Sprintf("protocol %q is not %s", ep.Protocol, protocol.Names())}
	}
	if b.opts.Registry != nil {
		opts = append(opts, bmclib.WithRegistry(b.opts.Registry(ep)))
	}
	cl := bmclib.NewClient(ep.Host, ep.Username, ep.Password, opts...)
	if b.opts.Registry == nil {
		cl.Registry.Drivers = cl.Registry.For(provider)
		if len(cl.Registry.Drivers) == 0 {
			detail := "bmclib has no " + provider + " provider here"
			if provider == ipmitool.ProviderName {
				detail = "ipmitool is not installed (apt-get install ipmitool)"
			}
			return nil, &Error{Machine: ep.Machine, Where: ep.where(), Op: "connect", Detail: detail}
		}
	}
	c := &controller{cl: cl, ep: ep, timeout: b.opts.Timeout, builtin: b.opts.Registry == nil, ipmitoolPath: b.opts.IpmitoolPath}
	if err := c.call(ctx, "connect", func(ctx context.Context) error { return cl.Open(ctx) }); err != nil {
		return nil, err
	}
	return c, nil
}

// controller is a Controller over a bmclib client.
type controller struct {
	cl      *bmclib.Client
	ep      Endpoint
	timeout time.Duration
	// builtin is set when bmclib's own providers are in use (not a test
	// registry): then only Redfish offers an inventory, and IPMI boot
	// flags are read back with ipmitool.
	builtin bool
	// ipmitoolPath is the ipmitool binary ("" finds it on PATH).
	ipmitoolPath string
}

// call runs fn under the per-call timeout. A provider that ignores its
// context cannot hold the caller: call returns when the time is up and
// leaves fn to finish on its own.
func (c *controller) call(ctx context.Context, op string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &Error{Machine: c.ep.Machine, Where: c.ep.where(), Op: op, Timeout: c.timeout}
	}
	if ctx.Err() != nil {
		return &Error{Machine: c.ep.Machine, Where: c.ep.where(), Op: op, Detail: "cancelled"}
	}
	return newError(c.ep, op, err)
}

func (c *controller) PowerState(ctx context.Context) (PowerState, error) {
	var raw string
	err := c.call(ctx, "power status", func(ctx context.Context) error {
		var err error
		raw, err = c.cl.GetPowerState(ctx)
		return err
	})
	if err != nil {
		return Unknown, err
	}
	return NormalizePowerState(raw), nil
}

func (c *controller) SetPower(ctx context.Context, a PowerAction) error {
	return c.call(ctx, "power "+string(a), func(ctx context.Context) error {
		ok, err := c.cl.SetPowerState(ctx, string(a))
		if err == nil && !ok {
			err = errors.New("the BMC refused the request")
		}
		return err
	})
}

func (c *controller) SetBootDevice(ctx context.Context, d BootDevice, persistent, efi bool) (*BootFlags, error) {
	if c.builtin && (c.ep.Protocol == "" || c.ep.Protocol == IPMI) {
		return c.setIPMIBootDevice(ctx, d, persistent, efi)
	}
	return nil, c.call(ctx, "boot device "+string(d), func(ctx context.Context) error {
		ok, err := c.cl.SetBootDevice(ctx, string(d), persistent, efi)
		if err == nil && !ok {
			err = errors.New("the BMC refused the request")
		}
		return err
	})
}

func (c *controller) Inventory(ctx context.Context) (*common.Device, error) {
	if p, _ := protocol.Lookup(c.ep.Protocol); !p.Inventory && c.builtin {
		return nil, &Error{Machine: c.ep.Machine, Where: c.ep.where(), Op: "inventory", Detail: ErrUnsupported.Error() + ": only Redfish BMCs report hardware; run provisiond agent report on the machine instead"}
	}
	var dev *common.Device
	err := c.call(ctx, "inventory", func(ctx context.Context) error {
		var err error
		dev, err = c.cl.Inventory(ctx)
		return err
	})
	if err == nil && dev == nil {
		err = &Error{Machine: c.ep.Machine, Where: c.ep.where(), Op: "inventory", Detail: "the BMC returned no inventory"}
	}
	return dev, err
}

func (c *controller) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	return c.cl.Close(ctx)
}
