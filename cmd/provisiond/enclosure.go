package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/enclosure"
	"github.com/provisiond/provisiond/internal/inventory"
)

func newEnclosure(cf *clientFlags, e env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "enclosure",
		Short: "Blade enclosures: sync one from its Onboard Administrator, draw its bays",
	}
	cmd.AddCommand(newEnclosureSync(cf, e), newEnclosureShow(cf, e))
	return cmd
}

func newEnclosureSync(cf *clientFlags, e env) *cobra.Command {
	var apply bool
	cmd := &cobra.Command{
		Use:   "sync ENCLOSURE",
		Short: "Read the enclosure's Onboard Administrator and show what would change in the inventory; --apply stores it",
		Long: "Sync asks the OA named in the enclosure's record (bmc: address, username, password_secret) for its bays\n" +
			"(/xmldata) and each blade's CPUs and memory (SOAP), matches every blade to a machine record (its bay, a MAC,\n" +
			"its serial or SMBIOS UUID), creates the missing ones (named by the enclosure's blade_names, default\n" +
			"BLD-{bay:03}), and fills what the records leave empty: bay, MACs, iLO as BMC, model, serial, UUID, CPUs,\n" +
			"memory. Where a record and the OA disagree the record is kept and the difference shown as drift.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := cf.client(e).SyncEnclosure(cmd.Context(), args[0], apply)
			if err != nil {
				return err
			}
			if done, err := render(e.stdout, cf.output, rep); done {
				return err
			}
			printSync(e.stdout, rep)
			return nil
		},
	}
	cmd.Flags().BoolVar(&apply, "apply", false, "store the changes (default: dry run)")
	return cmd
}

// printSync prints a sync report: the enclosure, one line per bay, then
// what each bay fills and where it drifts.
func printSync(w io.Writer, rep *enclosure.Report) {
	fmt.Fprintf(w, "%s: %s, serial %s, OA %s (firmware %s), %d W of %d W\n", rep.Enclosure, dash(rep.Model), dash(rep.Serial), rep.OA, dash(rep.Firmware), rep.PowerConsumed, rep.PowerCapacity)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BAY\tMACHINE\tACTION\tMODEL\tSERIAL\tPOWER\tILO\tCPUS\tMEMORY")
	counts := map[string]int{}
	for _, b := range rep.Bays {
		counts[b.Action]++
		mem := "-"
		if b.MemoryGB > 0 {
			mem = fmt.Sprintf("%g GB", b.MemoryGB)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Bay, b.Machine, b.Action, dash(b.Product), dash(b.Serial), power(b), dash(b.ILO), cpus(b.CPUs), mem)
	}
	tw.Flush()
	for _, b := range rep.Bays {
		if len(b.Filled) > 0 {
			fmt.Fprintf(w, "  %s fills  %s\n", b.Machine, strings.Join(fieldNames(b.Filled), ", "))
		}
		for _, d := range b.Drift {
			fmt.Fprintf(w, "  %s drift  %s: record %s, OA %s\n", b.Machine, d.Path, dash(d.Old), dash(d.New))
		}
	}
	for _, warn := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	created, updated := "would create", "would update"
	if rep.Applied {
		created, updated = "created", "updated"
	}
	fmt.Fprintf(w, "%d bays filled: %s %d, %s %d, unchanged %d", len(rep.Bays), created, counts["create"], updated, counts["update"], counts["unchanged"])
	if !rep.Applied && counts["create"]+counts["update"] > 0 {
		fmt.Fprint(w, " (dry run: add --apply to store)")
	}
	fmt.Fprintln(w)
}

// fieldNames are the top-level fields of changes, once each, in order
// (cpus[1].model and cpus[2].socket are "cpus"); -o yaml has them all.
func fieldNames(fs []inventory.FieldChange) []string {
	var out []string
	for _, f := range fs {
		n := f.Path
		if i := strings.IndexAny(n, ".["); i > 0 {
			n = n[:i]
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func power(b enclosure.Bay) string {
	if b.Power == "" {
		return "-"
	}
	if b.Watts > 0 {
		return fmt.Sprintf("%s %d W", strings.ToLower(b.Power), b.Watts)
	}
	return strings.ToLower(b.Power)
}

// cpus summarises a blade's sockets: "2× E5-2670 0 @ 2.60GHz".
func cpus(models []string) string {
	if len(models) == 0 {
		return "-"
	}
	m := strings.NewReplacer("Intel(R) Xeon(R) CPU ", "", "(R)", "", "(TM)", "").Replace(models[0])
	return fmt.Sprintf("%d× %s", len(models), strings.TrimSpace(m))
}

func newEnclosureShow(cf *clientFlags, e env) *cobra.Command {
	return &cobra.Command{
		Use:   "show ENCLOSURE",
		Short: "Draw the enclosure's bays as the inventory holds them (front view: bays 1-8 above 9-16)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := cf.client(e)
			systems, err := c.Systems(cmd.Context())
			if err != nil {
				return err
			}
			var sys *inventory.System
			for i := range systems {
				if strings.EqualFold(systems[i].Name, args[0]) || strings.EqualFold(systems[i].Tag, args[0]) {
					sys = &systems[i]
				}
			}
			if sys == nil || sys.Kind != inventory.KindEnclosure {
				return fmt.Errorf("no enclosure %s in the inventory (provisiond systems lists them)", args[0])
			}
			ms, err := c.Select(cmd.Context(), api.Selector{Enclosure: sys.Name})
			if err != nil {
				return err
			}
			if done, err := render(e.stdout, cf.output, ms); done {
				return err
			}
			drawBays(e.stdout, sys, ms)
			return nil
		},
	}
}

// drawBays draws an enclosure's device bays in rows of eight, each cell the
// bay number, the machine and its profile (- when it has none).
func drawBays(w io.Writer, sys *inventory.System, ms []inventory.Machine) {
	byBay := map[int]*inventory.Machine{}
	for i := range ms {
		byBay[ms[i].Bay] = &ms[i]
	}
	bays := sys.Bays
	if bays <= 0 {
		bays = 16
	}
	fmt.Fprintf(w, "%s (%s): %d of %d bays with a machine\n", sys.Name, dash(strings.TrimSpace(sys.Vendor+" "+sys.Model)), len(byBay), bays)
	const cell = 10
	line := func(n int) string { return strings.Repeat("+"+strings.Repeat("-", cell), n) + "+\n" }
	n := 0
	for row := 0; row*8 < bays; row++ {
		n = min(8, bays-row*8)
		fmt.Fprint(w, line(n))
		for _, part := range []func(bay int, m *inventory.Machine) string{
			func(bay int, m *inventory.Machine) string { return fmt.Sprintf("%d", bay) },
			func(bay int, m *inventory.Machine) string {
				if m == nil {
					return "empty"
				}
				return m.Name
			},
			func(bay int, m *inventory.Machine) string {
				if m == nil {
					return ""
				}
				return dash(m.Profile)
			},
		} {
			for i := range n {
				bay := row*8 + i + 1
				s := part(bay, byBay[bay])
				if len(s) > cell-1 {
					s = s[:cell-1]
				}
				fmt.Fprintf(w, "| %-*s", cell-1, s)
			}
			fmt.Fprint(w, "|\n")
		}
	}
	fmt.Fprint(w, line(n))
}

func newLocate(cf *clientFlags, e env) *cobra.Command {
	var off bool
	cmd := &cobra.Command{
		Use:   "locate MACHINE… [--off]",
		Short: "Blink a blade's locator (UID) LED through its enclosure's Onboard Administrator, or turn it off",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := cf.client(e)
			failed := 0
			for _, name := range args {
				res, err := c.Locate(cmd.Context(), name, !off)
				if err != nil {
					failed++
					fmt.Fprintf(e.stderr, "provisiond: %s: %v\n", name, err)
					continue
				}
				fmt.Fprintf(e.stdout, "%s: locator LED %s (through the %s)\n", res.Machine, res.State, strings.ToUpper(res.Via))
			}
			if failed > 0 {
				return exitError{code: 1, err: fmt.Errorf("%d of %d machines failed", failed, len(args))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&off, "off", false, "turn the LED off")
	return cmd
}
