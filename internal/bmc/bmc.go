// Package bmc controls machines through their management controllers: power
// state and control, the next boot device and, where the BMC offers it, a
// hardware inventory. Controller is the small interface provisiond needs;
// Bmclib implements it with bmclib (IPMI over LAN through ipmitool, Redfish
// through gofish), and another protocol (the C7000 Onboard Administrator)
// can plug in behind it. The package knows nothing of the inventory.
package bmc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bmc-toolbox/common"

	"github.com/provisiond/provisiond/internal/bmc/protocol"
)

// Protocols a BMC can be reached with (package protocol lists them).
const (
	IPMI    = protocol.IPMI
	Redfish = protocol.Redfish
)

// PowerState is a machine's power state, the same whatever the protocol
// (ipmitool says "Chassis Power is on", Redfish "On").
type PowerState string

// Normalised power states.
const (
	On          PowerState = "on"
	Off         PowerState = "off"
	PoweringOn  PowerState = "powering-on"
	PoweringOff PowerState = "powering-off"
	Unknown     PowerState = "unknown"
)

// NormalizePowerState maps what a provider reports to a PowerState.
func NormalizePowerState(raw string) PowerState {
	s := strings.ToLower(strings.TrimSpace(raw))
	switch {
	case strings.Contains(s, "power is on"), s == "on":
		return On
	case strings.Contains(s, "power is off"), s == "off":
		return Off
	case s == "poweringon":
		return PoweringOn
	case s == "poweringoff":
		return PoweringOff
	}
	return Unknown
}

// PowerAction is a power control request.
type PowerAction string

// Power actions. Soft asks the OS to shut down (ACPI); Off cuts power.
const (
	PowerOnAction PowerAction = "on"
	PowerOff      PowerAction = "off"
	PowerSoft     PowerAction = "soft"
	PowerCycle    PowerAction = "cycle"
	PowerReset    PowerAction = "reset"
)

// ParsePowerAction checks a power action given by a user.
func ParsePowerAction(s string) (PowerAction, error) {
	switch a := PowerAction(strings.ToLower(s)); a {
	case PowerOnAction, PowerOff, PowerSoft, PowerCycle, PowerReset:
		return a, nil
	}
	return "", fmt.Errorf("power action %q is not one of on, off, soft, cycle, reset", s)
}

// PowersUp reports whether the action leaves the machine running (and so
// draws inrush current: staggered in bulk runs).
func (a PowerAction) PowersUp() bool {
	return a == PowerOnAction || a == PowerCycle || a == PowerReset
}

// BootDevice is a next-boot target.
type BootDevice string

// Boot devices.
const (
	BootPXE   BootDevice = "pxe"
	BootDisk  BootDevice = "disk"
	BootBIOS  BootDevice = "bios"
	BootCDROM BootDevice = "cdrom"
)

// ParseBootDevice checks a boot device given by a user.
func ParseBootDevice(s string) (BootDevice, error) {
	switch d := BootDevice(strings.ToLower(s)); d {
	case BootPXE, BootDisk, BootBIOS, BootCDROM:
		return d, nil
	}
	return "", fmt.Errorf("boot device %q is not one of pxe, disk, bios, cdrom", s)
}

// ErrUnsupported says the BMC does not offer what was asked (an inventory
// over IPMI).
var ErrUnsupported = errors.New("not offered by this BMC's protocol")

// Controller is what provisiond needs of one machine's BMC. Every call
// honours ctx; implementations bound each call by their own timeout too.
type Controller interface {
	// PowerState reports the machine's power state.
	PowerState(ctx context.Context) (PowerState, error)
	// SetPower powers the machine on, off, cycles or resets it.
	SetPower(ctx context.Context, a PowerAction) error
	// SetBootDevice sets the next boot device, for the next boot only or
	// persistently, in UEFI mode when efi is set. Where the protocol can
	// read them back (IPMI) it returns the flags the BMC now holds, and
	// fails when they are not what was set; otherwise the flags are nil.
	SetBootDevice(ctx context.Context, d BootDevice, persistent, efi bool) (*BootFlags, error)
	// Inventory reads the hardware the BMC knows of, or ErrUnsupported.
	Inventory(ctx context.Context) (*common.Device, error)
	// Close ends the session.
	Close(ctx context.Context) error
}

// Locator is a Controller that can light the machine's locator (UID) LED:
// an enclosure's OA for its blades.
type Locator interface {
	// Locate makes the LED blink (on) or turns it off.
	Locate(ctx context.Context, on bool) error
}

// Endpoint says how to reach one BMC. Password is the resolved secret: it
// never appears in an error or a log line.
type Endpoint struct {
	// Machine names the machine, for errors.
	Machine  string
	Host     string
	Port     int
	Protocol string
	// CipherSuite is the IPMI cipher suite (0: try 3, then 17).
	CipherSuite int
	Username    string
	Password    string
	// Bay is the blade's bay, when the endpoint is its enclosure's OA.
	Bay int
	// LegacyTLS lets an OA endpoint speak TLS 1.0 (old OA firmware).
	LegacyTLS bool
}

func (ep Endpoint) where() string {
	proto := ep.Protocol
	if proto == "" {
		proto = IPMI
	}
	host := ep.Host
	if ep.Port != 0 {
		host = fmt.Sprintf("%s:%d", ep.Host, ep.Port)
	}
	return fmt.Sprintf("BMC %s (%s)", host, proto)
}

// Dialer opens a session with a BMC.
type Dialer interface {
	Dial(ctx context.Context, ep Endpoint) (Controller, error)
}

// Registry is a Dialer that dials each endpoint with the Dialer registered
// for its protocol: adding a protocol is an entry in package protocol and
// one Register call where the daemon is wired.
type Registry struct {
	dialers map[string]Dialer
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{dialers: map[string]Dialer{}} }

// Register makes d the Dialer for protocol name, which package protocol
// must know.
func (r *Registry) Register(name string, d Dialer) error {
	p, err := protocol.Lookup(name)
	if err != nil {
		return err
	}
	r.dialers[p.Name] = d
	return nil
}

// Dial implements Dialer.
func (r *Registry) Dial(ctx context.Context, ep Endpoint) (Controller, error) {
	p, err := protocol.Lookup(ep.Protocol)
	if err != nil {
		return nil, &Error{Machine: ep.Machine, Where: ep.where(), Op: "connect", Detail: err.Error()}
	}
	d, ok := r.dialers[p.Name]
	if !ok {
		return nil, &Error{Machine: ep.Machine, Where: ep.where(), Op: "connect", Detail: "provisiond has no " + p.Name + " support built in"}
	}
	return d.Dial(ctx, ep)
}

// Error is a failed BMC call. Its text names the machine, the BMC and the
// operation, and says what to check.
type Error struct {
	Machine string
	// Where is "BMC host:port (protocol)".
	Where string
	// Op is the operation (connect, power status, power on, boot device pxe).
	Op string
	// Timeout is set when the BMC did not answer in time.
	Timeout time.Duration
	// Detail is the provider's message, with the password removed.
	Detail string
	// Unreachable is set when the request never reached the controller
	// (no connection): another way to the machine may be tried.
	Unreachable bool
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Machine != "" {
		b.WriteString(e.Machine + ": ")
	}
	b.WriteString(e.Where + ": " + e.Op + ": ")
	if e.Timeout > 0 {
		fmt.Fprintf(&b, "no answer within %s (is the BMC powered and reachable from provisiond, on the address and port recorded?)", e.Timeout)
		return b.String()
	}
	b.WriteString(e.Detail)
	return b.String()
}

// IsUnreachable reports whether err is a BMC call that never reached its
// controller.
func IsUnreachable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Unreachable
}

// IsTimeout reports whether err is a BMC call that timed out.
func IsTimeout(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Timeout > 0
}

// newError builds an Error from a provider's error, flattening bmclib's
// multi-errors and removing the password wherever a provider echoed it.
func newError(ep Endpoint, op string, err error) *Error {
	msg := flatten(err)
	if ep.Password != "" {
		msg = strings.ReplaceAll(msg, ep.Password, "[redacted]")
	}
	switch {
	case strings.Contains(msg, "Unable to establish IPMI v2 / RMCP+ session"):
		msg += " (wrong user, password or cipher suite?)"
	case strings.Contains(msg, "401"):
		msg += " (wrong user or password?)"
	}
	return &Error{Machine: ep.Machine, Where: ep.where(), Op: op, Detail: msg}
}

// flatten turns bmclib's nested multierrors into one line.
func flatten(err error) string {
	type wrapped interface{ WrappedErrors() []error }
	var parts []string
	var walk func(error)
	walk = func(err error) {
		if w, ok := err.(wrapped); ok {
			for _, e := range w.WrappedErrors() {
				walk(e)
			}
			return
		}
		s := strings.Join(strings.Fields(err.Error()), " ")
		generic := strings.HasPrefix(s, "failed to ") || (strings.HasPrefix(s, "no ") && strings.HasSuffix(s, " implementations found"))
		if s != "" && !generic {
			parts = append(parts, s)
		}
	}
	walk(err)
	if len(parts) == 0 {
		return strings.Join(strings.Fields(err.Error()), " ")
	}
	return strings.Join(parts, "; ")
}
