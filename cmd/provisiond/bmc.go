package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

// bulkFlags pick many machines and pace the work on them.
type bulkFlags struct {
	sel      selFlags
	parallel int
	stagger  time.Duration
}

func (b *bulkFlags) register(cmd *cobra.Command) {
	b.sel.register(cmd)
	cmd.Flags().BoolVar(&b.sel.all, "all", false, "every machine (with a BMC)")
	cmd.Flags().IntVar(&b.parallel, "parallel", 8, "how many machines to work on at once")
	cmd.Flags().DurationVar(&b.stagger, "stagger", 0, "space power-ons this far apart (e.g. 20s) so an enclosure is not hit by every blade at once")
}

// targets resolves the machines named and the selectors. Machines picked by
// a selector without a BMC are left out when needBMC is set (named ones are
// kept: the daemon then says what is missing).
func (b *bulkFlags) targets(ctx context.Context, c *api.Client, names []string, needBMC bool) ([]inventory.Machine, int, error) {
	if len(names) == 0 && b.sel.enclosure == "" && b.sel.label == "" && !b.sel.all {
		return nil, 0, errors.New("name the machines, or select them with --enclosure, --label or --all")
	}
	if b.parallel < 1 {
		return nil, 0, errors.New("--parallel must be at least 1")
	}
	if b.stagger < 0 {
		return nil, 0, errors.New("--stagger cannot be negative")
	}
	ms, err := c.Select(ctx, api.Selector{Machines: names, Enclosure: b.sel.enclosure, Label: b.sel.label})
	if err != nil {
		return nil, 0, err
	}
	named := map[string]bool{}
	for _, n := range names {
		named[n] = true
	}
	viaOA, err := oaControlled(ctx, c, ms, needBMC)
	if err != nil {
		return nil, 0, err
	}
	var out []inventory.Machine
	skipped := 0
	for _, m := range ms {
		if needBMC && m.BMC == nil && !viaOA(&m) && !named[m.Name] && !(m.Tag != "" && named[m.Tag]) {
			skipped++
			continue
		}
		out = append(out, m)
	}
	// Enclosure and bay order: a staggered power-on walks the bays.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Enclosure != b.Enclosure {
			return a.Enclosure < b.Enclosure
		}
		if a.Bay != b.Bay {
			return a.Bay < b.Bay
		}
		return a.Name < b.Name
	})
	if len(out) == 0 {
		if skipped > 0 {
			return nil, skipped, fmt.Errorf("none of the %d machines selected has a BMC recorded", skipped)
		}
		return nil, 0, errors.New("no machine matches the selection")
	}
	return out, skipped, nil
}

// each runs fn on every machine named or selected that has a BMC, each in
// a slot of its own (staggered when asked), and reports the results.
func (b *bulkFlags) each(cmd *cobra.Command, cf *clientFlags, e env, c *api.Client, names []string, staggered bool, fn func(ctx context.Context, m inventory.Machine) outcome) error {
	ms, skipped, err := b.targets(cmd.Context(), c, names, true)
	if err != nil {
		return err
	}
	bk := newBulk(b, e.stderr, len(ms))
	res := bk.run(cmd.Context(), ms, func(ctx context.Context, i int, m inventory.Machine) outcome {
		rel, err := bk.slot(ctx, i, staggered)
		if err != nil {
			return failed(err)
		}
		defer rel()
		return fn(ctx, m)
	})
	return report(e.stdout, cf.output, res, skipped)
}

// outcome is one machine's result in a bulk run.
type outcome struct {
	Machine string  `json:"machine" yaml:"machine"`
	OK      bool    `json:"ok" yaml:"ok"`
	Result  string  `json:"result" yaml:"result"`
	Detail  string  `json:"detail,omitempty" yaml:"detail,omitempty"`
	Seconds float64 `json:"seconds" yaml:"seconds"`
}

// bulk runs one function per machine, at most parallel at once, with
// staggered starts where asked, printing progress as machines finish.
type bulk struct {
	flags *bulkFlags
	sem   chan struct{}
	t0    time.Time
	out   *syncWriter
	total int
	mu    sync.Mutex
	done  int
	// started is when each machine's work got its slot (its time in the
	// result excludes the stagger and the queue).
	started map[int]time.Time
}

// syncWriter serialises lines from many goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, format, args...)
}

func newBulk(f *bulkFlags, progress io.Writer, total int) *bulk {
	return &bulk{flags: f, sem: make(chan struct{}, f.parallel), t0: time.Now(), out: &syncWriter{w: progress}, total: total, started: map[int]time.Time{}}
}

// slot waits for machine i's turn (its staggered start when staggered) and
// a free slot; the returned function frees it.
func (b *bulk) slot(ctx context.Context, i int, staggered bool) (func(), error) {
	if staggered && b.flags.stagger > 0 {
		at := b.t0.Add(time.Duration(i) * b.flags.stagger)
		if d := time.Until(at); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	b.mu.Lock()
	if _, ok := b.started[i]; !ok {
		b.started[i] = time.Now()
	}
	b.mu.Unlock()
	return func() { <-b.sem }, nil
}

func (b *bulk) run(ctx context.Context, ms []inventory.Machine, fn func(ctx context.Context, i int, m inventory.Machine) outcome) []outcome {
	res := make([]outcome, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			o := fn(ctx, i, m)
			o.Machine = m.Name
			// Errors name their machine; the table already does.
			o.Detail = strings.TrimPrefix(o.Detail, m.Name+": ")
			b.mu.Lock()
			if t, ok := b.started[i]; ok {
				start = t
			}
			o.Seconds = time.Since(start).Seconds()
			res[i] = o
			b.done++
			n := b.done
			b.mu.Unlock()
			mark := "ok  "
			if !o.OK {
				mark = "FAIL"
			}
			line := o.Result
			if o.Detail != "" {
				line += ": " + o.Detail
			}
			b.out.printf("[%d/%d] %s %s %s (%.1fs)\n", n, b.total, mark, m.Name, line, o.Seconds)
		}()
	}
	wg.Wait()
	return res
}

// report prints the result table (or JSON/YAML) and turns failures into
// exit code 1.
func report(w io.Writer, format string, res []outcome, skipped int) error {
	if done, err := render(w, format, res); !done {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MACHINE\tRESULT\tDETAIL\tSECONDS")
		for _, o := range res {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\n", o.Machine, o.Result, dash(o.Detail), o.Seconds)
		}
		tw.Flush()
	} else if err != nil {
		return err
	}
	if skipped > 0 {
		fmt.Fprintf(w, "(%d selected machines have no BMC recorded and were left out)\n", skipped)
	}
	failed := 0
	for _, o := range res {
		if !o.OK {
			failed++
		}
	}
	if failed > 0 {
		return exitError{code: 1, err: fmt.Errorf("%d of %d machines failed", failed, len(res))}
	}
	return nil
}

func failed(err error) outcome {
	return outcome{Result: "failed", Detail: err.Error()}
}

func newPower(cf *clientFlags, e env) *cobra.Command {
	var bf bulkFlags
	cmd := &cobra.Command{
		Use:   "power [MACHINE...] status|on|off|soft|cycle|reset",
		Short: "Show or change machines' power through their BMCs",
		Long: "power asks each machine's BMC (IPMI or Redfish) for its power state, or powers it on, off (cut), soft (ACPI\n" +
			"shutdown), cycle or reset. A cycle or reset of a machine that is off powers it on. Machines are named or\n" +
			"selected (--enclosure, --label, --all); --stagger spaces power-ons. The exit code is 1 when any machine failed.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			action := strings.ToLower(args[len(args)-1])
			var act bmc.PowerAction
			if action != "status" {
				var err error
				if act, err = bmc.ParsePowerAction(action); err != nil {
					return fmt.Errorf("%v (or status); the action comes last: provisiond power BLD-006 on", err)
				}
			}
			c := cf.client(e)
			return bf.each(cmd, cf, e, c, args[:len(args)-1], act.PowersUp(), func(ctx context.Context, m inventory.Machine) outcome {
				if action == "status" {
					r, err := c.PowerStatus(ctx, m.Name)
					if err != nil {
						return failed(err)
					}
					return outcome{OK: true, Result: r.State}
				}
				r, err := c.Power(ctx, m.Name, action)
				if err != nil {
					return failed(err)
				}
				d := "was " + r.Before + ", now " + r.State
				if r.Note != "" {
					d = r.Note + ", now " + r.State
				}
				return outcome{OK: true, Result: action, Detail: d}
			})
		},
	}
	bf.register(cmd)
	return cmd
}

func newBootdev(cf *clientFlags, e env) *cobra.Command {
	var bf bulkFlags
	var persistent, efi bool
	cmd := &cobra.Command{
		Use:   "bootdev [MACHINE...] pxe|disk|bios|cdrom",
		Short: "Set machines' next boot device through their BMCs",
		Long: "bootdev sets the device each machine boots from next: once (the default: the BMC forgets it after one boot)\n" +
			"or --persistent; --efi asks for a UEFI boot (the default follows the machine's firmware: uefi means --efi).",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := bmc.ParseBootDevice(args[len(args)-1])
			if err != nil {
				return fmt.Errorf("%v; the device comes last: provisiond bootdev BLD-006 pxe", err)
			}
			c := cf.client(e)
			return bf.each(cmd, cf, e, c, args[:len(args)-1], false, func(ctx context.Context, m inventory.Machine) outcome {
				useEFI := efi || (!cmd.Flags().Changed("efi") && m.Firmware == inventory.FirmwareUEFI)
				r, err := c.BootDevice(ctx, m.Name, api.BootDeviceRequest{Device: string(dev), Persistent: persistent, EFI: useEFI})
				if err != nil {
					return failed(err)
				}
				detail := bootMode(r.Persistent, r.EFI)
				if r.ReadBack != "" {
					detail += "; BMC reports " + r.ReadBack
				}
				if r.Note != "" {
					detail += "; " + r.Note
				}
				return outcome{OK: true, Result: r.Device, Detail: detail}
			})
		},
	}
	bf.register(cmd)
	cmd.Flags().BoolVar(&persistent, "persistent", false, "keep the boot device for every boot, not just the next")
	cmd.Flags().BoolVar(&efi, "efi", false, "boot in UEFI mode (default: when the machine's firmware is uefi)")
	return cmd
}

func bootMode(persistent, efi bool) string {
	s := "next boot only"
	if persistent {
		s = "persistent"
	}
	if efi {
		s += ", UEFI"
	} else {
		s += ", legacy BIOS"
	}
	return s
}

// assignFlags are assign's options.
type assignFlags struct {
	bulk    bulkFlags
	once    bool
	then    string
	reboot  bool
	wait    bool
	timeout time.Duration
	efi     bool
}

func newAssign(cf *clientFlags, e env) *cobra.Command {
	var af assignFlags
	cmd := &cobra.Command{
		Use:   "assign [MACHINE...] PROFILE",
		Short: "Give machines a profile; with --reboot PXE-boot them into it through their BMCs, with --wait follow the boot",
		Long: "assign sets each machine's profile (persistent, or --once: one boot, then --then). With --reboot it sets the\n" +
			"next boot device to PXE through the BMC and power-cycles the machine (powers it on if it is off). With --wait it\n" +
			"follows the machine's timeline live until the profile's boot is done (by the profile's rule: script served,\n" +
			"assets served, or the booted OS's callback), or --timeout passes. One final line per machine; the exit code is 1\n" +
			"unless every machine made it.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAssign(cmd, cf, e, &af, args[:len(args)-1], args[len(args)-1])
		},
	}
	af.bulk.register(cmd)
	f := cmd.Flags()
	f.BoolVar(&af.once, "once", false, "boot the profile once, then revert to --then")
	f.StringVar(&af.then, "then", "local", "profile a one-shot assignment reverts to")
	f.BoolVar(&af.reboot, "reboot", false, "set next boot to PXE and power-cycle through the BMC (power on if off)")
	f.BoolVar(&af.wait, "wait", false, "follow each machine's boot until the profile says it is done")
	f.DurationVar(&af.timeout, "timeout", 20*time.Minute, "with --wait: how long each machine may take to boot")
	f.BoolVar(&af.efi, "efi", false, "with --reboot: PXE in UEFI mode (default: when the machine's firmware is uefi)")
	return cmd
}

func runAssign(cmd *cobra.Command, cf *clientFlags, e env, af *assignFlags, names []string, prof string) error {
	ctx := cmd.Context()
	c := cf.client(e)
	if af.timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	if cmd.Flags().Changed("then") && !af.once {
		return errors.New("--then goes with --once")
	}
	if _, err := c.Profile(ctx, prof); err != nil {
		var se *api.StatusError
		if errors.As(err, &se) && se.Code == 404 {
			return fmt.Errorf("profile %s does not exist (provisiond profile list shows the profiles)", prof)
		}
		return err
	}
	ms, skipped, err := af.bulk.targets(ctx, c, names, af.reboot)
	if err != nil {
		return err
	}
	b := newBulk(&af.bulk, e.stderr, len(ms))
	live := &syncWriter{w: e.stderr}
	res := b.run(ctx, ms, func(ctx context.Context, i int, m inventory.Machine) outcome {
		// The timeline from here on is this assignment's.
		var after uint64
		if evs, err := c.Events(ctx, m.Name, 1); err == nil && len(evs) > 0 {
			after = evs[len(evs)-1].Seq
		}
		rel, err := b.slot(ctx, i, af.reboot)
		if err != nil {
			return failed(err)
		}
		req := api.AssignRequest{Profile: prof, Once: af.once}
		if af.once {
			req.Then = af.then
		}
		var steps string
		if af.reboot {
			// Assign, PXE next, power-cycle: one operation of the daemon's.
			rr := api.ReprovisionRequest{AssignRequest: req}
			if cmd.Flags().Changed("efi") {
				rr.EFI = &af.efi
			}
			res, err := c.Reprovision(ctx, m.Name, rr)
			if err != nil {
				rel()
				return failed(err)
			}
			steps = res.Steps
		} else {
			if _, err := c.Assign(ctx, m.Name, req); err != nil {
				rel()
				return failed(fmt.Errorf("setting the profile: %w", err))
			}
			steps = "profile " + prof
			if af.once {
				steps += " once (then " + af.then + ")"
			}
		}
		rel()
		if !af.wait {
			return outcome{OK: true, Result: "assigned", Detail: steps}
		}
		live.printf("%s: %s; waiting for its boot (up to %s)\n", m.Name, steps, af.timeout)
		return waitBoot(ctx, c, live, m.Name, prof, after, af.timeout)
	})
	return report(e.stdout, cf.output, res, skipped)
}

// errBootDone ends a follow when the boot is done.
var errBootDone = errors.New("boot done")

// waitBoot follows a machine's timeline from after until a boot.done of
// the profile, a script error, or the timeout.
func waitBoot(ctx context.Context, c *api.Client, live *syncWriter, name, prof string, after uint64, timeout time.Duration) outcome {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last events.Event
	var res outcome
	err := c.FollowAfter(ctx, name, after, func(ev events.Event) error {
		last = ev
		live.printf("%s  %s\n", name, eventLine(ev, false))
		switch ev.Type {
		case events.BootDone:
			if ev.Attrs["profile"] != prof {
				return nil
			}
			res = outcome{OK: true, Result: "booted " + prof, Detail: "done on " + ev.Attrs["on"] + " after " + ev.Attrs["seconds"] + "s"}
			return errBootDone
		case events.ScriptError:
			res = failed(fmt.Errorf("the %s script failed: %s", ev.Attrs["profile"], ev.Attrs["error"]))
			return errBootDone
		}
		return nil
	})
	if errors.Is(err, errBootDone) {
		return res
	}
	if err != nil && ctx.Err() == nil {
		return failed(fmt.Errorf("following the timeline: %w", err))
	}
	detail := "no step at all (is it powered, and set to PXE-boot?)"
	if last.Type != "" {
		detail = "last step: " + last.Type + " at " + last.Time.Local().Format("15:04:05")
	}
	return outcome{Result: "timed out", Detail: fmt.Sprintf("no finished %s boot within %s; %s", prof, timeout, detail)}
}

func newBMCCmd(cf *clientFlags, e env) *cobra.Command {
	cmd := &cobra.Command{Use: "bmc", Short: "Read from machines' BMCs"}
	var bf bulkFlags
	inv := &cobra.Command{
		Use:   "inventory [MACHINE...]",
		Short: "Read the hardware a Redfish BMC reports into the machines' observed hardware",
		Long: "bmc inventory asks each machine's Redfish BMC for its CPUs, DIMMs, drives, NICs, serial and BIOS version.\n" +
			"What the record leaves empty is filled (history: discovery); differences show as drift in machine show and audit.",
		RunE: func(cmd *cobra.Command, args []string) error {
			c := cf.client(e)
			return bf.each(cmd, cf, e, c, args, false, func(ctx context.Context, m inventory.Machine) outcome {
				r, err := c.BMCInventory(ctx, m.Name)
				if err != nil {
					return failed(err)
				}
				f := r.Found
				return outcome{OK: true, Result: "read", Detail: fmt.Sprintf("%s %s, %d CPUs, %d DIMMs (%g GB), %d disks, %d NICs; %d fields filled",
					dash(f.Vendor), dash(f.Model), len(f.CPUs), len(f.DIMMs), f.TotalMemoryGB(), len(f.Disks), len(f.NICs), len(r.Filled))}
			})
		},
	}
	bf.register(inv)
	cmd.AddCommand(inv)
	return cmd
}

// oaControlled says which machines their enclosure's OA controls (they need
// no BMC of their own): inventory.ControlledBy. The systems are read only
// when a machine without a BMC asks for it.
func oaControlled(ctx context.Context, c *api.Client, ms []inventory.Machine, needBMC bool) (func(m *inventory.Machine) bool, error) {
	var systems []inventory.System
	for _, m := range ms {
		if needBMC && m.BMC == nil && m.Enclosure != "" {
			var err error
			if systems, err = c.Systems(ctx); err != nil {
				return nil, err
			}
			break
		}
	}
	return func(m *inventory.Machine) bool {
		by, _ := inventory.ControlledBy(m, systems)
		return by == inventory.ControlOA
	}, nil
}
