// Package service runs BMC actions for the machines in the inventory (power,
// boot device, hardware inventory) as the API, the dashboard and the CLI
// ask for them: it resolves each machine's BMC and password, bounds and
// serialises the calls, applies the machine's firmware rules and puts every
// action on the machine's timeline. Reaching one BMC is package bmc's job.
package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/bmc/protocol"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

// Service runs BMC actions for machines in the inventory: it resolves
// the machine's BMC and password, bounds how many calls run at once,
// serialises calls to one machine, and records every action in the
// machine's timeline. It implements api.BMC.
type Service struct {
	store   Machines
	secrets Secrets
	dialer  bmc.Dialer
	getenv  func(string) string
	steps   events.Reporter
	log     *slog.Logger
	obs     Observer
	models  func() []audit.Model
	sem     chan struct{}
	lease   func(ctx context.Context, machine string) (func(), error)

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// Options are the Service's collaborators.
type Options struct {
	Store   Machines
	Secrets Secrets
	Dialer  bmc.Dialer
	// Getenv reads the daemon's environment (for password_env).
	Getenv func(string) string
	// Steps receives a step per power, boot device and inventory call
	// (the boot tracker: a machine powered on starts a boot).
	Steps events.Reporter
	Log   *slog.Logger
	// MaxConcurrent bounds the BMC calls in flight.
	MaxConcurrent int
	// Observer is told how every BMC session ended (nil: nobody).
	Observer Observer
	// Models gives the configured model figures, for the boot firmware a
	// model is bound to (nil: none).
	Models func() []audit.Model
	// Lock takes a machine's lease among the instances sharing the
	// inventory, so one acts on a machine at a time (nil: this process
	// is the only one).
	Lock func(ctx context.Context, machine string) (unlock func(), err error)
}

// Machines is the inventory as the service reads and updates it.
type Machines interface {
	Machine(name string) (*inventory.Machine, error)
	// Systems are the enclosures (a blade controlled through its OA).
	Systems() ([]inventory.System, error)
	// Observe records hardware a BMC reported as the machine's observed
	// hardware; it returns the fields it filled.
	Observe(name string, obs inventory.Observed) (*inventory.Machine, []inventory.FieldChange, error)
}

// Secrets resolves secret names (a BMC password's) to values.
type Secrets interface {
	Secret(name string) (string, error)
}

// Observer is told how each BMC session ended: the operation
// (power_status, power, bootdev, inventory, locate), its result (ok, error,
// timeout) and how long it took, for metrics.
type Observer interface {
	BMC(op, result string, d time.Duration)
}

// New returns a Service.
func New(o Options) *Service {
	if o.MaxConcurrent < 1 {
		o.MaxConcurrent = 16
	}
	if o.Getenv == nil {
		o.Getenv = func(string) string { return "" }
	}
	return &Service{store: o.Store, secrets: o.Secrets, dialer: o.Dialer, getenv: o.Getenv, steps: o.Steps, log: o.Log, obs: o.Observer, models: o.Models, lease: o.Lock,
		sem: make(chan struct{}, o.MaxConcurrent), locks: map[string]*sync.Mutex{}}
}

// endpoints resolves what to reach for op on the machine, in the order to
// try: for power and boot devices its enclosure's OA when the machine (or
// its enclosure) says control: oa, then its own BMC (the fallback); for an
// inventory read its BMC only; for the locator LED the OA only.
func (s *Service) endpoints(m *inventory.Machine, op string) ([]bmc.Endpoint, error) {
	var systems []inventory.System
	if m.Enclosure != "" && op != "inventory" {
		var err error
		if systems, err = s.store.Systems(); err != nil {
			return nil, err
		}
	}
	var oa *inventory.System
	switch op {
	case "inventory":
	case "locate":
		if oa = inventory.ManagedBy(m, systems); oa == nil {
			return nil, fmt.Errorf("machine %s is not in a bay of an enclosure with an Onboard Administrator (enclosure, bay, and the enclosure's bmc with protocol: oa): %w", m.Name, api.ErrBadRequest)
		}
	default:
		if by, sys := inventory.ControlledBy(m, systems); by == inventory.ControlOA {
			if inventory.ManagedBy(m, systems) == nil {
				return nil, fmt.Errorf("machine %s is controlled through its enclosure's OA, but enclosure %s records no Onboard Administrator (bmc with protocol: oa): %w", m.Name, sys.Name, api.ErrBadRequest)
			}
			oa = sys
		}
	}
	var eps []bmc.Endpoint
	if oa != nil {
		pw, err := s.Password("enclosure "+oa.Name, oa.BMC)
		if err != nil {
			return nil, err
		}
		eps = append(eps, bmc.Endpoint{Machine: m.Name, Host: oa.BMC.Address, Port: oa.BMC.Port, Protocol: protocol.OA,
			Username: oa.BMC.Username, Password: pw, Bay: m.Bay, LegacyTLS: oa.OALegacyTLS})
		if op == "locate" || m.BMC == nil || m.BMC.Address == "" {
			return eps, nil // nothing to fall back to
		}
	}
	ep, err := s.endpoint(m)
	if err != nil {
		if len(eps) > 0 {
			return eps, nil // the BMC is only the fallback: the OA may do
		}
		return nil, err
	}
	return append(eps, ep), nil
}

// endpoint resolves how to reach the machine's BMC, password included.
func (s *Service) endpoint(m *inventory.Machine) (bmc.Endpoint, error) {
	if m.BMC == nil || m.BMC.Address == "" {
		return bmc.Endpoint{}, fmt.Errorf("machine %s has no BMC recorded: add it with provisiond machine set %s --bmc-address HOST --bmc-user USER --bmc-password-secret NAME (or import it): %w", m.Name, m.Name, api.ErrBadRequest)
	}
	b := m.BMC
	ep := bmc.Endpoint{Machine: m.Name, Host: b.Address, Port: b.Port, Protocol: b.Protocol, CipherSuite: b.CipherSuite, Username: b.Username}
	pw, err := s.Password("machine "+m.Name, b)
	ep.Password = pw
	return ep, err
}

// Password resolves the password of a management processor (a machine's
// BMC, an enclosure's OA) from where its record says it is: a stored
// secret, a file on the daemon's host or the daemon's environment. owner
// names the record in errors ("machine BLD-006", "enclosure ASGARD").
func (s *Service) Password(owner string, b *inventory.BMC) (string, error) {
	switch {
	case b == nil:
		return "", fmt.Errorf("%s has no management processor recorded: %w", owner, api.ErrBadRequest)
	case b.PasswordSecret != "":
		pw, err := s.secrets.Secret(b.PasswordSecret)
		if errors.Is(err, inventory.ErrNotFound) {
			return "", fmt.Errorf("%s: the password secret %s is not stored: store it with provisiond secret set %s: %w", owner, b.PasswordSecret, b.PasswordSecret, api.ErrBadRequest)
		}
		if err != nil {
			return "", fmt.Errorf("%s: reading the password secret %s: %w", owner, b.PasswordSecret, err)
		}
		return pw, nil
	case b.PasswordFile != "":
		raw, err := os.ReadFile(b.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("%s: reading the password file: %v (it must be readable by the daemon): %w", owner, err, api.ErrBadRequest)
		}
		return strings.TrimRight(string(raw), "\r\n"), nil
	case b.PasswordEnv != "":
		pw := s.getenv(b.PasswordEnv)
		if pw == "" {
			return "", fmt.Errorf("%s: the daemon's environment has no %s for the password (set it where provisiond serve starts): %w", owner, b.PasswordEnv, api.ErrBadRequest)
		}
		return pw, nil
	}
	return "", nil
}

// lock serialises BMC work on one machine (a power cycle must not
// interleave with another run's boot-device call).
func (s *Service) lock(name string) func() {
	s.mu.Lock()
	l := s.locks[name]
	if l == nil {
		l = &sync.Mutex{}
		s.locks[name] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// with opens a session with what controls the machine (its enclosure's OA
// first when it is controlled through it, else or then its BMC), runs fn
// (operation op) and closes it. It returns the machine's name as stored
// ("" when there is no such machine: nothing goes to a timeline then) and
// how it was reached when not simply through its BMC ("oa", or "bmc" with
// why the OA was passed over).
func (s *Service) with(ctx context.Context, name, op string, fn func(ctx context.Context, m *inventory.Machine, c bmc.Controller) error) (string, string, error) {
	m, err := s.store.Machine(name)
	if err != nil {
		return "", "", err
	}
	eps, err := s.endpoints(m, op)
	if err != nil {
		return m.Name, "", err
	}
	unlock := s.lock(m.Name)
	defer unlock()
	if s.lease != nil {
		release, err := s.lease(ctx, m.Name)
		if err != nil {
			return m.Name, "", err
		}
		defer release()
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return m.Name, "", fmt.Errorf("machine %s: waiting for a free BMC slot: %w", m.Name, ctx.Err())
	}
	defer func() { <-s.sem }()
	start := time.Now()
	via := ""
	for i, ep := range eps {
		c, dialErr := s.dialer.Dial(ctx, ep)
		err = dialErr
		if err == nil {
			err = fn(ctx, m, c)
			c.Close(ctx)
		}
		if err == nil && ep.Protocol == protocol.OA {
			via = protocol.OA
		}
		// The OA could not act (no login, or no connection: nothing
		// reached it): the blade's own BMC can.
		fallback := ep.Protocol == protocol.OA && i+1 < len(eps) && (dialErr != nil || bmc.IsUnreachable(err))
		if !fallback {
			break
		}
		s.log.Warn("the enclosure's OA could not act: using the machine's BMC", "machine", m.Name, "err", err)
		via = "bmc (the OA did not answer: " + err.Error() + ")"
	}
	if s.obs != nil {
		result := "ok"
		switch {
		case bmc.IsTimeout(err):
			result = "timeout"
		case err != nil:
			result = "error"
		}
		s.obs.BMC(op, result, time.Since(start))
	}
	return m.Name, via, err
}

func (s *Service) emit(st events.Step, err error, start time.Time) {
	st.Attrs["seconds"] = strconv.FormatFloat(time.Since(start).Seconds(), 'f', 1, 64)
	st.Attrs["result"] = "ok"
	st.OK = err == nil
	if err != nil {
		st.Attrs["result"] = "error"
		st.Attrs["error"] = err.Error()
		s.log.Warn("BMC call failed", "machine", st.Machine, "type", st.Type, "err", err)
	} else {
		s.log.Info("BMC call", "machine", st.Machine, "type", st.Type, "action", st.Action, "attrs", st.Attrs)
	}
	if s.steps != nil {
		s.steps.Report(st)
	}
}

// Power implements api.BMC. A cycle or reset of a machine that is off
// powers it on (IPMI BMCs refuse to cycle a machine that is off).
func (s *Service) Power(ctx context.Context, name, action string) (*api.PowerResult, error) {
	start := time.Now()
	res := &api.PowerResult{Machine: name, Action: action}
	var act bmc.PowerAction
	if action != "status" {
		var err error
		if act, err = bmc.ParsePowerAction(action); err != nil {
			return nil, fmt.Errorf("%v: %w", err, api.ErrBadRequest)
		}
	}
	op := "power"
	if action == "status" {
		op = "power_status"
	}
	stored, via, err := s.with(ctx, name, op, func(ctx context.Context, m *inventory.Machine, c bmc.Controller) error {
		st, err := c.PowerState(ctx)
		if err != nil {
			return err
		}
		if action == "status" {
			res.State = string(st)
			return nil
		}
		res.Before = string(st)
		do := act
		if (act == bmc.PowerCycle || act == bmc.PowerReset) && st == bmc.Off {
			do = bmc.PowerOnAction
			res.Note = "was off: powered on"
		}
		if err := c.SetPower(ctx, do); err != nil {
			return err
		}
		res.State = string(bmc.Unknown)
		if after, err := c.PowerState(ctx); err == nil {
			res.State = string(after)
		}
		return nil
	})
	res.Machine = cmp.Or(stored, name)
	res.Seconds = time.Since(start).Seconds()
	if action != "status" && stored != "" {
		attrs := map[string]string{"before": res.Before, "state": res.State}
		if res.Note != "" {
			attrs["note"] = res.Note
		}
		if via != "" {
			attrs["via"] = via
		}
		s.emit(events.Step{Type: events.BMCPower, Machine: stored, Action: action, Attrs: attrs}, err, start)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// BootDevice implements api.BMC.
func (s *Service) BootDevice(ctx context.Context, name string, req api.BootDeviceRequest) (*api.BootDeviceResult, error) {
	start := time.Now()
	dev, err := bmc.ParseBootDevice(req.Device)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, api.ErrBadRequest)
	}
	res := &api.BootDeviceResult{Machine: name, Device: string(dev), Persistent: req.Persistent, EFI: req.EFI}
	stored, via, err := s.with(ctx, name, "bootdev", func(ctx context.Context, m *inventory.Machine, c bmc.Controller) error {
		if req.EFI {
			var models []audit.Model
			if s.models != nil {
				models = s.models()
			}
			if fw, why := audit.Firmware(m, models); fw == inventory.FirmwareBIOS {
				return fmt.Errorf("%s boots legacy BIOS only (%s): the EFI boot flag would send it past the network boot; leave --efi off: %w",
					m.Name, why, api.ErrBadRequest)
			}
		}
		flags, err := c.SetBootDevice(ctx, dev, req.Persistent, req.EFI)
		if flags != nil {
			res.ReadBack = flags.String()
			res.Note = flags.TimeoutNote
		}
		return err
	})
	res.Machine = cmp.Or(stored, name)
	res.Seconds = time.Since(start).Seconds()
	if stored != "" {
		attrs := map[string]string{"device": string(dev), "persistent": strconv.FormatBool(req.Persistent), "efi": strconv.FormatBool(req.EFI)}
		if res.ReadBack != "" {
			attrs["readback"] = res.ReadBack
		}
		if res.Note != "" {
			attrs["note"] = res.Note
		}
		if via != "" {
			attrs["via"] = via
		}
		s.emit(events.Step{Type: events.BMCBootDevice, Machine: stored, Attrs: attrs}, err, start)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Inventory implements api.BMC: the BMC's hardware becomes the machine's
// observed hardware (source redfish); it fills what the record leaves
// empty, and differences show as drift, as an agent report does.
func (s *Service) Inventory(ctx context.Context, name string) (*api.InventoryResult, error) {
	start := time.Now()
	res := &api.InventoryResult{Machine: name, Source: inventory.ObservedRedfish}
	stored, _, err := s.with(ctx, name, "inventory", func(ctx context.Context, m *inventory.Machine, c bmc.Controller) error {
		dev, err := c.Inventory(ctx)
		if err != nil {
			return err
		}
		res.Found = HardwareFromDevice(dev)
		_, changes, err := s.store.Observe(m.Name, inventory.Observed{Hardware: res.Found, Source: inventory.ObservedRedfish, Host: m.BMC.Address})
		if err != nil {
			return fmt.Errorf("machine %s: storing the BMC's inventory: %w", m.Name, err)
		}
		res.Filled = changes
		return nil
	})
	res.Machine = cmp.Or(stored, name)
	res.Seconds = time.Since(start).Seconds()
	if stored != "" {
		s.emit(events.Step{Type: events.BMCInventory, Machine: stored, Attrs: map[string]string{"filled": strconv.Itoa(len(res.Filled))}}, err, start)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Locate implements api.BMC: the blade's locator LED blinks (on) or goes
// off, through its enclosure's OA (whatever controls its power: the LED is
// the OA's); the step goes on its timeline.
func (s *Service) Locate(ctx context.Context, name string, on bool) (*api.LocateResult, error) {
	start := time.Now()
	state := "off"
	if on {
		state = "blink"
	}
	stored, _, err := s.with(ctx, name, "locate", func(ctx context.Context, m *inventory.Machine, c bmc.Controller) error {
		l, ok := c.(bmc.Locator)
		if !ok {
			return fmt.Errorf("machine %s: locate: %w", m.Name, bmc.ErrUnsupported)
		}
		return l.Locate(ctx, on)
	})
	if stored != "" {
		s.emit(events.Step{Type: events.BMCLocate, Machine: stored, Attrs: map[string]string{"state": state, "via": protocol.OA}}, err, start)
	}
	if err != nil {
		return nil, err
	}
	return &api.LocateResult{Machine: stored, State: state, Via: protocol.OA, Seconds: time.Since(start).Seconds()}, nil
}
