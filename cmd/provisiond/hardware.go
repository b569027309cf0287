package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/provisiond/provisiond/internal/agent"
	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/bmc/protocol"
	"github.com/provisiond/provisiond/internal/inventory"
)

func newImport(cf *clientFlags, e env) *cobra.Command {
	var apply bool
	var format string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import systems, machines, spare parts and roles from YAML (or machines from CSV); a dry run unless --apply",
		Long: "Import reads an inventory file (as provisiond export writes it; see examples/homelab.yaml) and shows what would\n" +
			"change. With --apply it stores it, all or nothing. A field the file gives replaces the stored one; a field it leaves\n" +
			"out is kept; nothing is deleted. FILE - reads standard input. CSV files (machines only) are recognised by the .csv\n" +
			"extension or --format csv.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(os.Stdin)
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("reading %s: %w", args[0], err)
			}
			csv := format == "csv" || (format == "" && strings.HasSuffix(strings.ToLower(args[0]), ".csv"))
			res, err := cf.client(e).Import(cmd.Context(), data, csv, apply)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if done, err := render(e.stdout, cf.output, res); done {
				return err
			}
			w := e.stdout
			for _, c := range res.Changes {
				sign := "+"
				if c.Action == "update" {
					sign = "~"
				}
				fmt.Fprintf(w, "%s %s %s\n", sign, c.Kind, c.Name)
				if c.Action == "update" {
					for _, f := range c.Fields {
						fmt.Fprintf(w, "    %s: %s -> %s\n", f.Path, dash(f.Old), dash(f.New))
					}
				}
			}
			verb := "would change"
			if apply {
				verb = "changed"
			}
			fmt.Fprintf(w, "%d %s, %d unchanged", len(res.Changes), verb, res.Unchanged)
			if !apply && len(res.Changes) > 0 {
				fmt.Fprintf(w, " (dry run: add --apply to store)")
			}
			fmt.Fprintln(w)
			return nil
		},
	}
	cmd.Flags().BoolVar(&apply, "apply", false, "store the changes (default: dry run)")
	cmd.Flags().StringVar(&format, "format", "", "yaml or csv (default: from the file name)")
	return cmd
}

func newExport(cf *clientFlags, e env) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the inventory as YAML (systems, machines, parts, roles) or the machines as CSV",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "yaml" && format != "csv" {
				return fmt.Errorf("--format %q: use yaml or csv", format)
			}
			out, err := cf.client(e).Export(cmd.Context(), format)
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "yaml", "yaml or csv (machines only)")
	return cmd
}

type selFlags struct {
	enclosure, label string
	all              bool
}

func (s *selFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.enclosure, "enclosure", "", "only machines in this enclosure")
	cmd.Flags().StringVar(&s.label, "label", "", "only machines with this label (key=value; role=X also matches the role)")
}

func newAudit(cf *clientFlags, e env) *cobra.Command {
	var sel selFlags
	var role, failOn string
	cmd := &cobra.Command{
		Use:   "audit [MACHINE...]",
		Short: "Check the hardware: roles each machine qualifies for, DIMM symmetry, unknown CPUs, disks, BMCs, MACs, drift",
		Long: "Audit judges every machine (or those named or selected) against the role requirements and the hardware rules.\n" +
			"With --role it ranks the candidates for that role instead, best first, with what each still needs and which\n" +
			"spare parts would get it there. The exit code is 1 when a finding is at or over --fail-on.",
		RunE: func(cmd *cobra.Command, args []string) error {
			c := cf.client(e)
			s := api.Selector{Machines: args, Enclosure: sel.enclosure, Label: sel.label}
			if role != "" {
				cands, err := c.Candidates(cmd.Context(), s, role)
				if err != nil {
					return err
				}
				return printList(e.stdout, cf.output, cands, "MACHINE\tMEMORY\tDISKS\tCPU\tROLE NOW\tQUALIFIES\tNEEDS\tFROM SPARES", func(x audit.Candidate) []string {
					q := "no"
					if x.Qualifies {
						q = "yes"
					}
					return []string{x.Machine, gb(x.MemoryGB), fmt.Sprint(x.Disks), x.CPU, dash(x.Role), q, dash(strings.Join(x.Needs, ", ")), dash(strings.Join(x.Spares, ", "))}
				})
			}
			var threshold audit.Severity
			if failOn != "" {
				var err error
				if threshold, err = audit.ParseSeverity(failOn); err != nil {
					return fmt.Errorf("--fail-on: %w", err)
				}
			}
			rep, err := c.Audit(cmd.Context(), s)
			if err != nil {
				return err
			}
			if done, err := render(e.stdout, cf.output, rep); done && err != nil {
				return err
			} else if !done {
				printAudit(e.stdout, rep)
			}
			if worst, any := rep.Worst(); failOn != "" && any && worst >= threshold {
				return exitError{code: 1, err: fmt.Errorf("audit: findings at %s or worse", threshold)}
			}
			return nil
		},
	}
	sel.register(cmd)
	cmd.Flags().StringVar(&role, "role", "", "rank the candidates for this role")
	cmd.Flags().StringVar(&failOn, "fail-on", "", "exit 1 when a finding is at this severity or worse: info, warning or error")
	cmd.AddCommand(newAuditPower(cf, e))
	return cmd
}

func gb(v float64) string {
	if v == 0 {
		return "?"
	}
	return fmt.Sprintf("%g GB", v)
}

func printAudit(w io.Writer, rep *audit.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tBAY\tMEMORY\tDISKS\tCPU\tROLE NOW\tQUALIFIES FOR")
	for _, m := range rep.Machines {
		bay := "-"
		if m.Enclosure != "" {
			bay = fmt.Sprintf("%s/%d", m.Enclosure, m.Bay)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", m.Name, bay, gb(m.MemoryGB), m.Disks, m.CPU, dash(m.Role), dash(strings.Join(m.Qualifies, ", ")))
	}
	tw.Flush()
	counts := rep.Counts()
	lines := rep.Sorted(audit.Warning)
	if len(lines) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEVERITY\tMACHINE\tRULE\tFINDING")
		for _, f := range lines {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Severity, f.Machine, f.Rule, f.Message)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\n%d machines: %d errors, %d warnings, %d notes (-o yaml shows the notes and what each role lacks)\n",
		len(rep.Machines), counts[audit.Error], counts[audit.Warning], counts[audit.Info])
}

func newAuditPower(cf *clientFlags, e env) *cobra.Command {
	var sel selFlags
	cmd := &cobra.Command{
		Use:   "power [MACHINE...]",
		Short: "Estimate the power drawn when the named (or selected) machines run, enclosure overhead included",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && sel.enclosure == "" && sel.label == "" && !sel.all {
				return errors.New("name the machines that would run, or select them with --enclosure, --label or --all")
			}
			rep, err := cf.client(e).PowerBudget(cmd.Context(), api.Selector{Machines: args, Enclosure: sel.enclosure, Label: sel.label})
			if err != nil {
				return err
			}
			if done, err := render(e.stdout, cf.output, rep); done {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WHAT\tMODEL\tWATTS")
			watts := func(l audit.PowerLine) string {
				switch {
				case !l.Known:
					return "?"
				case l.CPUTDPW > 0 && l.MinW == l.MaxW:
					return fmt.Sprintf("%.0f (CPUs %g W TDP)", l.MinW, l.CPUTDPW)
				}
				return fmt.Sprintf("%g-%g", l.MinW, l.MaxW)
			}
			for _, l := range rep.Enclosures {
				fmt.Fprintf(tw, "%s (enclosure, %d running)\t%s\t%s\n", l.Name, l.Blades, dash(l.Model), watts(l))
			}
			for _, l := range rep.Machines {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", l.Name, dash(l.Model), watts(l))
			}
			fmt.Fprintf(tw, "total\t\t%.0f-%.0f\n", rep.MinW, rep.MaxW)
			tw.Flush()
			for _, n := range rep.Notes {
				fmt.Fprintln(e.stdout, "note: "+n)
			}
			return nil
		},
	}
	sel.register(cmd)
	cmd.Flags().BoolVar(&sel.all, "all", false, "every machine")
	return cmd
}

func newPlan(cf *clientFlags, e env) *cobra.Command {
	var roles []string
	cmd := &cobra.Command{
		Use:   "plan --role ROLE=COUNT...",
		Short: "Propose which machines take which role and which spare parts go where to get there",
		Long: "Plan takes the roles in the order given and, for each, the machines that need the fewest spare parts\n" +
			"(machines with another role today are left alone). DIMMs go in sets of one per CPU so every CPU stays\n" +
			"populated alike; never beyond the role's memory maximum, the board's slots and bays, or what the pool holds.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(roles) == 0 {
				return errors.New("name what you want: --role talos-worker=3 --role control=2")
			}
			p, err := cf.client(e).Plan(cmd.Context(), roles)
			if err != nil {
				return err
			}
			if done, err := render(e.stdout, cf.output, p); done {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tMACHINE\tNOW\tADD\tAFTER")
			for _, pl := range p.Placements {
				var add []string
				for _, a := range pl.Add {
					add = append(add, fmt.Sprintf("%dx %s (%s)", a.Count, a.Part, a.For))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", pl.Role, pl.Machine, pl.Before, dash(strings.Join(add, ", ")), pl.After)
			}
			tw.Flush()
			var used []string
			for _, u := range p.Parts {
				used = append(used, fmt.Sprintf("%s %d of %d", u.Tag, u.Used, u.Pool))
			}
			if len(used) > 0 {
				fmt.Fprintf(e.stdout, "\nspare parts used: %s\n", strings.Join(used, ", "))
			} else {
				fmt.Fprintf(e.stdout, "\nno spare parts needed\n")
			}
			for _, pl := range p.Placements {
				for _, n := range pl.Notes {
					fmt.Fprintf(e.stdout, "note: %s: %s\n", pl.Machine, n)
				}
			}
			for _, s := range p.Short {
				fmt.Fprintf(e.stdout, "NOT ENOUGH: %s\n", s)
			}
			if len(p.Short) > 0 {
				return exitError{code: 1, err: errors.New("plan: some roles cannot be filled")}
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&roles, "role", nil, "ROLE=COUNT, repeatable, in order of priority")
	return cmd
}

func newAgent(cf *clientFlags, e env) *cobra.Command {
	cmd := &cobra.Command{Use: "agent", Short: "Run on a booted Linux host: report its hardware to provisiond"}
	var machine string
	var dry bool
	report := &cobra.Command{
		Use:   "report",
		Short: "Gather CPUs, memory and DIMMs (SMBIOS), disks and NICs from /sys and /proc and post them as the machine's facts",
		Long: "The report lands on the machine named by --machine, else on the machine owning one of this host's MACs,\n" +
			"else on a new discovered machine. It fills what the record leaves empty; differences from the record are\n" +
			"shown as drift and never overwrite it. Run it as root: serials, UUIDs and DIMMs need it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			hw, notes := agent.Host{}.Gather()
			host, _ := os.Hostname()
			rep := api.FactsReport{Machine: machine, Host: host, Hardware: hw}
			c := cf.client(e)
			if c.Token == "" {
				// No token: a host provisiond booted proves it with its
				// boot's nonce, from the callback URL on its command line.
				if raw, err := os.ReadFile("/proc/cmdline"); err == nil {
					rep.BootMAC, rep.BootNonce = bootProof(string(raw))
				}
			}
			for _, n := range notes {
				fmt.Fprintln(e.stderr, "agent: "+n)
			}
			if dry {
				if done, err := render(e.stdout, cf.output, rep); done {
					return err
				}
				return writeJSON(e.stdout, rep)
			}
			res, err := c.ReportFacts(cmd.Context(), rep)
			if err != nil {
				return err
			}
			if done, err := render(e.stdout, cf.output, res); done {
				return err
			}
			m := &inventory.Machine{Hardware: hw}
			fmt.Fprintf(e.stdout, "reported %s: %s\n", machineLabel(res), strings.Join(nonEmpty(strings.TrimSpace(hw.Vendor+" "+hw.Model), cpuLine(m),
				fmt.Sprintf("%s RAM (%d DIMMs)", gb(hw.TotalMemoryGB()), len(hw.DIMMs)), fmt.Sprintf("%d disks", len(hw.Disks)), fmt.Sprintf("%d NICs", len(hw.NICs))), ", "))
			for _, f := range res.Filled {
				fmt.Fprintf(e.stdout, "  recorded %s: %s\n", f.Path, f.New)
			}
			for _, d := range res.Drift {
				fmt.Fprintf(e.stdout, "  drift: %s\n", d)
			}
			return nil
		},
	}
	report.Flags().StringVar(&machine, "machine", "", "the machine this host is (default: found by MAC)")
	report.Flags().BoolVar(&dry, "dry-run", false, "print the report instead of posting it")
	cmd.AddCommand(report)
	return cmd
}

func machineLabel(r *api.FactsResult) string {
	if r.Discovered {
		return r.Machine + " (discovered: no machine owns this host's MACs)"
	}
	return r.Machine
}

func cpuLine(m *inventory.Machine) string {
	if len(m.CPUs) == 0 {
		return "CPU unknown"
	}
	t := 0
	for _, c := range m.CPUs {
		t += c.Threads
	}
	if t == 0 {
		// Thread counts unknown (an enclosure's OA reports models only).
		return fmt.Sprintf("%dx %s", len(m.CPUs), audit.ShortCPU(m.CPUs[0].Model))
	}
	return fmt.Sprintf("%dx %s (%d threads)", len(m.CPUs), audit.ShortCPU(m.CPUs[0].Model), t)
}

func newHistory(cf *clientFlags, e env) *cobra.Command {
	return &cobra.Command{
		Use:   "history MACHINE",
		Short: "Show every change to a machine's hardware record, with time and source (manual, import, discovery)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := cf.client(e).History(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if done, err := render(e.stdout, cf.output, h); done {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tSOURCE\tFIELD\tOLD\tNEW")
			for _, c := range h {
				for _, f := range c.Fields {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Time.Local().Format(time.DateTime), c.Source, f.Path, dash(f.Old), dash(f.New))
				}
			}
			return tw.Flush()
		},
	}
}

func newAccept(cf *clientFlags, e env) *cobra.Command {
	return &cobra.Command{
		Use:   "accept MACHINE",
		Short: "Make the hardware the agent last observed the machine's record (resolves drift; disk uses are kept)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch, err := cf.client(e).Accept(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if done, err := render(e.stdout, cf.output, ch); done {
				return err
			}
			for _, f := range ch {
				fmt.Fprintf(e.stdout, "%s: %s -> %s\n", f.Path, dash(f.Old), dash(f.New))
			}
			fmt.Fprintf(e.stdout, "%d fields changed\n", len(ch))
			return nil
		},
	}
}

func newSystems(cf *clientFlags, e env) *cobra.Command {
	return &cobra.Command{
		Use:   "systems",
		Short: "List enclosures, disk shelves and other systems that are not machines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := cf.client(e).Systems(cmd.Context())
			if err != nil {
				return err
			}
			return printList(e.stdout, cf.output, v, "NAME\tTAG\tKIND\tMODEL\tBAYS\tDISKS\tROLE", func(s inventory.System) []string {
				bays := "-"
				if s.Bays > 0 {
					bays = fmt.Sprint(s.Bays)
				}
				return []string{s.Name, dash(s.Tag), s.Kind, dash(strings.TrimSpace(s.Vendor + " " + s.Model)), bays, fmt.Sprint(len(s.Disks)), dash(s.Role)}
			})
		},
	}
}

func newParts(cf *clientFlags, e env) *cobra.Command {
	return &cobra.Command{
		Use:   "parts",
		Short: "List the spare-parts pool",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := cf.client(e).Parts(cmd.Context())
			if err != nil {
				return err
			}
			return printList(e.stdout, cf.output, v, "TAG\tKIND\tCOUNT\tDESCRIPTION\tLOCATION", func(p inventory.Part) []string {
				return []string{p.Tag, p.Kind, fmt.Sprint(p.Count), dash(p.Description), dash(p.Location)}
			})
		},
	}
}

func newRoles(cf *clientFlags, e env) *cobra.Command {
	return &cobra.Command{
		Use:   "roles",
		Short: "List the role requirements audit and plan use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := cf.client(e).Roles(cmd.Context())
			if err != nil {
				return err
			}
			return printList(e.stdout, cf.output, v, "ROLE\tMEMORY\tBOOT DISK\tOSD\tSCRATCH\tCPU\tRANK\tDESCRIPTION", func(r inventory.Role) []string {
				mem := fmt.Sprintf("%g+ GB", r.MemoryGB.Min)
				if r.MemoryGB.Max > 0 {
					mem = fmt.Sprintf("%g-%g GB", r.MemoryGB.Min, r.MemoryGB.Max)
				}
				boot := "no"
				if r.BootDisk {
					boot = "yes"
				}
				var cpu []string
				if r.MinCores > 0 {
					cpu = append(cpu, fmt.Sprintf("%d+ cores", r.MinCores))
				}
				if len(r.CPUModels) > 0 {
					cpu = append(cpu, strings.Join(r.CPUModels, "|"))
				}
				return []string{r.Name, mem, boot, fmt.Sprint(r.OSDDisks), fmt.Sprint(r.ScratchDisks), dash(strings.Join(cpu, " ")), dash(r.Rank), r.Description}
			})
		},
	}
}

// printHardware adds the hardware record (and drift) to machine show.
func printHardware(w io.Writer, m *inventory.Machine) {
	a := &m.Hardware
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%s:\t%s\n", k, v)
		}
	}
	line("Tag", a.Tag)
	if a.Enclosure != "" {
		line("Location", fmt.Sprintf("%s bay %d", a.Enclosure, a.Bay))
	} else if a.Rack != "" {
		line("Location", fmt.Sprintf("rack %s unit %d", a.Rack, a.Unit))
	}
	line("Hardware", strings.TrimSpace(strings.Join(nonEmpty(a.Vendor, a.Model, pair("serial", a.Serial), pair("uuid", a.UUID), pair("bios", a.BIOSVersion)), " ")))
	line("Role", a.Role)
	if len(a.Labels) > 0 {
		var l []string
		for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
			l = append(l, k+"="+a.Labels[k])
		}
		line("Labels", strings.Join(l, ", "))
	}
	if len(a.CPUs) > 0 {
		line("CPUs", cpuLine(m))
	}
	if mem := a.TotalMemoryGB(); mem > 0 {
		var d []string
		for _, x := range a.DIMMs {
			d = append(d, strings.Join(nonEmpty(x.Slot, fmt.Sprintf("%g GB", x.SizeGB), x.PartNumber, x.Part), " "))
		}
		v := fmt.Sprintf("%g GB", mem)
		if len(d) > 0 {
			v += " (" + strings.Join(d, ", ") + ")"
		}
		line("Memory", v)
	}
	for i, d := range a.Disks {
		line(fmt.Sprintf("Disk %d", i+1), strings.Join(nonEmpty(d.Device, fmt.Sprintf("%g GB", d.SizeGB), d.Bus, d.Type, d.Model, d.Part, pair("use", d.Use)), " "))
	}
	for _, n := range a.NICs {
		boot := ""
		if n.Boot {
			boot = "boot"
		}
		line("NIC", strings.Join(nonEmpty(n.Name, n.MAC, n.Chip, n.Driver, boot), " "))
	}
	if b := a.BMC; b != nil {
		addr := b.Address
		if b.Port != 0 {
			addr = fmt.Sprintf("%s:%d", b.Address, b.Port)
		}
		cipher := ""
		if b.CipherSuite != 0 {
			cipher = fmt.Sprint(b.CipherSuite)
		}
		line("BMC", strings.Join(nonEmpty(cmp.Or(b.Protocol, protocol.IPMI), addr, pair("user", b.Username), pair("cipher-suite", cipher),
			pair("password-secret", b.PasswordSecret), pair("password-file", b.PasswordFile), pair("password-env", b.PasswordEnv)), " "))
	}
	if a.Control != "" {
		line("Control", a.Control)
	}
	for _, c := range a.Components {
		line("Component", strings.Join(nonEmpty(c.Kind, c.Model, c.Part, c.Mode), " "))
	}
	line("Notes", a.Notes)
	if o := m.Observed; o != nil {
		line("Observed", fmt.Sprintf("%s from %s at %s", o.Source, dash(o.Host), o.Time.Local().Format(time.RFC3339)))
		for _, d := range audit.Drift(m) {
			line("Drift", d)
		}
	}
}

// bootProof finds provisiond.callback=URL on a kernel command line and
// returns the MAC and nonce in it ("" when absent).
func bootProof(cmdline string) (mac, nonce string) {
	for _, f := range strings.Fields(cmdline) {
		v, ok := strings.CutPrefix(f, "provisiond.callback=")
		if !ok {
			continue
		}
		u, err := url.Parse(v)
		if err != nil {
			return "", ""
		}
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if len(parts) == 3 && parts[0] == "boot" && parts[2] == "booted" {
			return parts[1], u.Query().Get("nonce")
		}
	}
	return "", ""
}
