package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

// commissionProfile is the built-in profile commission assigns.
const commissionProfile = "commission"

type commissionFlags struct {
	bulk    bulkFlags
	hold    bool
	wait    bool
	timeout time.Duration
}

func newCommission(cf *clientFlags, e env) *cobra.Command {
	var f commissionFlags
	cmd := &cobra.Command{
		Use:   "commission [MACHINE...]",
		Short: "Boot machines into provisiond's commissioning image to learn their hardware, then power them off",
		Long: "commission gives each machine the commission profile for one boot (then back to its own profile), sets PXE\n" +
			"next and power-cycles it through its BMC or its enclosure's OA (--stagger spaces the power-ons). The image,\n" +
			"provisiond's own binary on Debian's kernel, reports CPUs, DIMMs, disks and NICs and powers the machine off\n" +
			"(--hold: it stays up with a shell on its console). With --wait each machine is followed live until it reported\n" +
			"and is off, and the table says what was learned. The exit code is 1 unless every machine made it.",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCommission(cmd, cf, e, &f, args)
		},
	}
	f.bulk.register(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&f.hold, "hold", false, "keep each machine up after its report, with a shell on its console")
	fl.BoolVar(&f.wait, "wait", false, "follow each machine until it reported and powered off")
	fl.DurationVar(&f.timeout, "timeout", 15*time.Minute, "with --wait: how long each machine may take")
	return cmd
}

func runCommission(cmd *cobra.Command, cf *clientFlags, e env, f *commissionFlags, names []string) error {
	ctx := cmd.Context()
	c := cf.client(e)
	if f.timeout <= 0 {
		return errors.New("--timeout must be positive")
	}
	ms, skipped, err := f.bulk.targets(ctx, c, names, true)
	if err != nil {
		return err
	}
	b := newBulk(&f.bulk, e.stderr, len(ms))
	live := &syncWriter{w: e.stderr}
	res := b.run(ctx, ms, func(ctx context.Context, i int, m inventory.Machine) outcome {
		var after uint64
		if evs, err := c.Events(ctx, m.Name, 1); err == nil && len(evs) > 0 {
			after = evs[len(evs)-1].Seq
		}
		rel, err := b.slot(ctx, i, true)
		if err != nil {
			return failed(err)
		}
		req := api.ReprovisionRequest{AssignRequest: api.AssignRequest{Profile: commissionProfile, Once: true, Then: thenProfile(&m)}}
		if f.hold {
			req.Params = map[string]string{"hold": "true"}
		}
		r, err := c.Reprovision(ctx, m.Name, req)
		rel()
		if err != nil {
			return failed(err)
		}
		if !f.wait {
			return outcome{OK: true, Result: "commissioning", Detail: r.Steps}
		}
		live.printf("%s: %s; waiting for its report (up to %s)\n", m.Name, r.Steps, f.timeout)
		return waitCommission(ctx, c, live, m.Name, after, f.timeout)
	})
	return report(e.stdout, cf.output, res, skipped)
}

// thenProfile is what a machine boots after commissioning: its own
// profile (a one-shot's follow-up while one is pending), else local.
func thenProfile(m *inventory.Machine) string {
	switch {
	case m.Once != nil && m.Once.Then != "":
		return m.Once.Then
	case m.Profile != "" && m.Profile != commissionProfile:
		return m.Profile
	}
	return "local"
}

// waitCommission follows a machine's timeline from after until it
// reported (then until its BMC says it is off, unless it holds), a
// failure, or the timeout.
func waitCommission(ctx context.Context, c *api.Client, live *syncWriter, name string, after uint64, timeout time.Duration) outcome {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rep *events.Event
	var res outcome
	err := c.FollowAfter(ctx, name, after, func(ev events.Event) error {
		live.printf("%s  %s\n", name, eventLine(ev, false))
		switch ev.Type {
		case events.FactsReported:
			if ev.Attrs["source"] == inventory.ObservedCommission {
				rep = &ev
				return errBootDone
			}
		case events.CommissionFailed:
			res = outcome{Result: "failed", Detail: ev.Attrs["reason"]}
			return errBootDone
		case events.SecretRefused, events.SpoofAlarm:
			if ev.Attrs["what"] == "facts" {
				res = outcome{Result: "report refused", Detail: ev.Attrs["reason"] + ": " + ev.Attrs["detail"] + " (the machine powers itself off)"}
				return errBootDone
			}
		case events.ScriptError:
			res = failed(fmt.Errorf("the commission script failed: %s", ev.Attrs["error"]))
			return errBootDone
		}
		return nil
	})
	switch {
	case errors.Is(err, errBootDone) && rep == nil:
		return res
	case err != nil && !errors.Is(err, errBootDone) && ctx.Err() == nil:
		return failed(fmt.Errorf("following the timeline: %w", err))
	case rep == nil:
		return outcome{Result: "timed out", Detail: fmt.Sprintf("no report within %s (is it powered, and set to PXE-boot?)", timeout)}
	}
	learned := "reported"
	if m, err := c.Machine(ctx, name); err == nil && m.Observed != nil {
		learned = learnedLine(&m.Observed.Hardware)
	}
	if rep.Attrs["then"] == "hold" {
		return outcome{OK: true, Result: "reported, holding", Detail: learned}
	}
	for {
		p, err := c.PowerStatus(ctx, name)
		if err == nil && p.State == "off" {
			return outcome{OK: true, Result: "reported, off", Detail: learned}
		}
		select {
		case <-ctx.Done():
			return outcome{Result: "reported, still on", Detail: learned + fmt.Sprintf("; the BMC did not say off within %s", timeout)}
		case <-time.After(3 * time.Second):
		}
	}
}

// learnedLine says what commissioning found, for the result table.
func learnedLine(h *inventory.Hardware) string {
	m := &inventory.Machine{Hardware: *h}
	parts := []string{cpuLine(m)}
	var dimms []string
	for _, d := range h.DIMMs {
		dimms = append(dimms, fmt.Sprintf("%g", d.SizeGB))
	}
	mem := gb(h.TotalMemoryGB())
	if len(dimms) > 0 {
		mem += fmt.Sprintf(" in %d DIMMs (%s GB)", len(dimms), strings.Join(dimms, "+"))
	}
	parts = append(parts, mem)
	var disks []string
	for _, d := range h.Disks {
		disks = append(disks, strings.Join(nonEmpty(d.Device, fmt.Sprintf("%g GB", d.SizeGB), d.Bus), " "))
	}
	if len(disks) == 0 {
		parts = append(parts, "no disks")
	} else {
		parts = append(parts, fmt.Sprintf("%d disks (%s)", len(h.Disks), strings.Join(disks, ", ")))
	}
	for _, n := range h.NICs {
		if n.Boot {
			parts = append(parts, "boot NIC "+strings.Join(nonEmpty(n.Name, n.Driver), " "))
		}
	}
	return strings.Join(parts, ", ")
}

// filledSummary names the fields filled, a list once with its count
// (cpus (2)), in order of first appearance.
func filledSummary(fs []inventory.FieldChange) string {
	var order []string
	items := map[string]map[string]bool{}
	for _, f := range fs {
		top, rest := f.Path, ""
		if i := strings.IndexAny(f.Path, "[."); i > 0 {
			top, rest = f.Path[:i], f.Path[i:]
		}
		if _, ok := items[top]; !ok {
			order = append(order, top)
			items[top] = map[string]bool{}
		}
		if strings.HasPrefix(rest, "[") {
			items[top][rest[:strings.Index(rest, "]")+1]] = true
		}
	}
	out := make([]string, len(order))
	for i, top := range order {
		out[i] = top
		if n := len(items[top]); n > 0 {
			out[i] = fmt.Sprintf("%s (%d)", top, n)
		}
	}
	return strings.Join(out, ", ")
}

func newAdopt(cf *clientFlags, e env) *cobra.Command {
	return &cobra.Command{
		Use:   "adopt DISCOVERED NAME",
		Short: "Make a discovered machine part of a machine of the inventory (or a new one), keeping both histories",
		Long: "adopt moves a discovered machine's MACs, timeline, history, iPXE facts and observed hardware (a commissioning\n" +
			"report) to NAME. What NAME's record leaves empty is filled from the observation; differences show as drift\n" +
			"(provisiond machine accept NAME takes them). A NAME not in the inventory yet becomes the machine. A MAC gets a\n" +
			"machine's profile and secrets only this way: a report that matches a record by UUID or serial only says so.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := cf.client(e).Adopt(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if done, err := render(e.stdout, cf.output, r); done {
				return err
			}
			fmt.Fprintf(e.stdout, "adopted %s as %s (MACs %s)\n", args[0], r.Machine.Name, strings.Join(r.Machine.MACs, ", "))
			if len(r.Filled) > 0 {
				fmt.Fprintf(e.stdout, "  recorded %s\n", filledSummary(r.Filled))
			}
			if r.Machine.Observed != nil {
				fmt.Fprintf(e.stdout, "  %s\n", learnedLine(&r.Machine.Hardware))
			}
			for _, d := range r.Drift {
				fmt.Fprintf(e.stdout, "  drift: %s\n", d)
			}
			return nil
		},
	}
}
