// Package osinit is provisiond running as a commissioning machine's /init:
// it mounts the kernel's filesystems, loads the image's modules, brings up
// the NIC the machine booted from (DHCP, else the address iPXE had),
// gathers the hardware, posts it to provisiond's boot plane with the
// boot's nonce, and powers the machine off (or holds it up with a shell on
// the console). Every step is bounded: whatever fails, the machine powers
// off before its deadline; what failed is on the console and, once the
// network is up, in the report.
package osinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/agent"
	"github.com/provisiond/provisiond/internal/commission"
)

// System is what a run does to the machine. Linux is the real one; the
// package's tests run the sequence on a temporary root.
type System interface {
	// Mount mounts the kernel's filesystems (proc, sys, dev, run, tmp).
	Mount() error
	// LoadModules loads the image's modules in order and says how it
	// went.
	LoadModules() (loaded int, failed []string, err error)
	// WaitNIC waits for the interface with mac and returns its name;
	// on failure the error says which NICs lack a driver.
	WaitNIC(ctx context.Context, mac string) (string, error)
	// Configure brings the interface up with DHCP, else with fallback
	// (ADDR/MASK) and gateway; it says what it did.
	Configure(ctx context.Context, ifname string, fallback, gateway string) (detail string, dhcpOK bool, err error)
	// Host is where the hardware is read.
	Host() agent.Host
	// PowerOff ends the run.
	PowerOff()
	// Shell runs an interactive shell on the console until it exits
	// (false when the image has none).
	Shell() bool
}

// Run is the whole commissioning run. It never returns while the machine
// is up: it ends in sys.PowerOff (a hold ends when its shell is left for
// good, which it is not).
func Run(ctx context.Context, cmdline string, sys System, post Poster, console io.Writer) {
	say := func(format string, args ...any) {
		fmt.Fprintf(console, "provisiond-commission: "+format+"\n", args...)
	}
	p, perr := commission.ParseCmdline(cmdline)
	deadline := p.Deadline
	if deadline == 0 {
		deadline = commission.DefaultDeadline
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	// The watchdog: past the deadline the machine powers off, whatever
	// step hangs. A hold disarms it once the report is in.
	watchdog := time.AfterFunc(deadline, func() {
		say("deadline of %s reached: powering off", deadline)
		sys.PowerOff()
	})
	rep, ok := steps(ctx, p, perr, sys, say)
	if ok {
		rep.Then = commission.ThenPowerOff
		if p.Hold {
			rep.Then = commission.ThenHold
		}
		if err := post.Post(ctx, p.ReportURL, rep); err != nil {
			say("report: %v", err)
			rep.Then = commission.ThenPowerOff
		} else {
			say("report: posted (%d CPUs, %g GB RAM in %d DIMMs, %d disks, %d NICs)", len(rep.Hardware.CPUs), rep.Hardware.TotalMemoryGB(),
				len(rep.Hardware.DIMMs), len(rep.Hardware.Disks), len(rep.Hardware.NICs))
		}
	}
	if ok && rep.Then == commission.ThenHold {
		watchdog.Stop()
		say("holding (provisiond.hold): the machine stays up; power it off when done")
		for sys.Shell() {
			say("the shell exited: starting another")
		}
		say("no shell in this image (the daemon's host had no static busybox): holding without one")
		select {}
	}
	say("powering off")
	sys.PowerOff()
	select {}
}

// network brings up the boot NIC: false when there is no network to
// report over.
func network(ctx context.Context, p commission.Params, sys System, step func(string, time.Time, error, string)) bool {
	t := time.Now()
	ifname, err := sys.WaitNIC(ctx, p.MAC)
	step("nic", t, err, p.MAC)
	if err != nil {
		return false
	}
	t = time.Now()
	detail, dhcpOK, err := sys.Configure(ctx, ifname, p.Fallback, p.Gateway)
	if err != nil {
		step("network", t, err, detail)
		return false
	}
	var dhcpErr error
	if !dhcpOK {
		dhcpErr = errSaid
	}
	step("dhcp", t, dhcpErr, detail)
	return true
}

// errSaid fails a step whose detail says why.
var errSaid = errors.New("failed")

// steps runs everything before the report. ok false means there is no
// network to report over: the console has said why.
func steps(ctx context.Context, p commission.Params, perr error, sys System, say func(string, ...any)) (*commission.Report, bool) {
	rep := &commission.Report{}
	step := func(name string, start time.Time, err error, detail string) {
		s := commission.Step{Name: name, OK: err == nil, Detail: detail, Seconds: time.Since(start).Round(10 * time.Millisecond).Seconds()}
		if err != nil && !errors.Is(err, errSaid) { // errSaid: the detail says it
			s.Detail = err.Error()
			if detail != "" {
				s.Detail = detail + ": " + err.Error()
			}
		}
		rep.Steps = append(rep.Steps, s)
		state := "ok"
		if !s.OK {
			state = "FAILED"
		}
		say("%s: %s %s (%.1fs)", name, state, s.Detail, s.Seconds)
	}
	t := time.Now()
	step("mount", t, sys.Mount(), "proc, sys, dev, run, tmp")
	if perr != nil {
		say("%v", perr)
		return rep, false
	}
	if len(p.Notes) > 0 {
		step("cmdline", time.Now(), errors.New(strings.Join(p.Notes, "; ")), "")
	}
	t = time.Now()
	n, failed, err := sys.LoadModules()
	detail := fmt.Sprintf("%d loaded", n)
	if err == nil && len(failed) > 0 {
		err = fmt.Errorf("%d failed: %v", len(failed), failed)
	}
	step("modules", t, err, detail)
	if !network(ctx, p, sys, step) {
		return rep, false
	}
	t = time.Now()
	hw, notes := sys.Host().Gather()
	for i := range hw.NICs {
		hw.NICs[i].Boot = hw.NICs[i].MAC == p.MAC
	}
	var gerr error
	if len(notes) > 0 {
		gerr = fmt.Errorf("%v", notes)
	}
	step("gather", t, gerr, fmt.Sprintf("%d CPUs, %d DIMMs, %d disks, %d NICs", len(hw.CPUs), len(hw.DIMMs), len(hw.Disks), len(hw.NICs)))
	rep.Hardware = hw
	return rep, true
}
