package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/bmc/protocol"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// machineFlags are the editable fields of a machine.
type machineFlags struct {
	macs, addMACs, removeMACs []string
	profile, hostname         string
	kernelArgs                string
	address, gateway          string
	firmware                  string
	params                    []string
	unsetParams               []string
	once                      bool
	then                      string
	// Hardware record fields.
	tag, role, enclosure    string
	control                 string
	bay                     int
	labels, unsetLabels     []string
	bmcAddress, bmcProtocol string
	bmcUser, bmcSecret      string
	bmcFile, bmcEnv         string
	bmcPort, bmcCipher      int
	noBMC                   bool
	assetKey                string
}

func (mf *machineFlags) register(cmd *cobra.Command, set bool) {
	f := cmd.Flags()
	if set {
		f.StringSliceVar(&mf.addMACs, "add-mac", nil, "add a MAC address")
		f.StringSliceVar(&mf.removeMACs, "remove-mac", nil, "remove a MAC address")
		f.StringSliceVar(&mf.unsetParams, "unset-param", nil, "remove a profile parameter")
	} else {
		f.StringSliceVar(&mf.macs, "mac", nil, "MAC address (repeat for several NICs)")
	}
	f.StringVarP(&mf.profile, "profile", "p", "", "profile to boot (empty: the daemon's default)")
	f.BoolVar(&mf.once, "once", false, "boot --profile once, then revert to --then (one-shot assignment)")
	f.StringVar(&mf.then, "then", "local", "profile a one-shot assignment reverts to")
	f.StringVar(&mf.hostname, "hostname", "", "hostname")
	f.StringVar(&mf.kernelArgs, "kernel-args", "", "extra kernel arguments")
	f.StringVar(&mf.address, "address", "", "static IPv4 address with prefix, e.g. 192.0.2.50/24")
	f.StringVar(&mf.gateway, "gateway", "", "IPv4 gateway for the static address")
	f.StringVar(&mf.firmware, "firmware", "", "force the boot firmware: bios or uefi (\"auto\" follows the client)")
	f.StringVar(&mf.assetKey, "asset-key-secret", "", "name of the stored secret holding the machine's SMBIOS chassis asset tag: its secrets then go only to a boot that reports it (\"\" removes it)")
	f.StringArrayVar(&mf.params, "param", nil, "profile parameter KEY=VALUE (repeat)")
	f.StringVar(&mf.tag, "tag", "", "asset tag (BLD-006)")
	f.StringVar(&mf.role, "role", "", "role the machine serves (talos-worker, slurm-compute, ...)")
	f.StringVar(&mf.enclosure, "enclosure", "", "enclosure the machine sits in (a system from the inventory)")
	f.IntVar(&mf.bay, "bay", 0, "bay in the enclosure")
	f.StringVar(&mf.control, "control", "", "what powers it and sets its next boot: bmc (its own), oa (its enclosure's Onboard Administrator, falling back to the BMC), \"\" (the enclosure's blade_control)")
	f.StringArrayVar(&mf.labels, "label", nil, "label KEY=VALUE (repeat)")
	f.StringVar(&mf.bmcAddress, "bmc-address", "", "BMC address (IP or host name)")
	f.IntVar(&mf.bmcPort, "bmc-port", 0, "BMC port (default 623 for IPMI, 443 for Redfish)")
	f.StringVar(&mf.bmcProtocol, "bmc-protocol", "", "BMC protocol: "+protocol.Names()+" (default "+protocol.IPMI+")")
	f.IntVar(&mf.bmcCipher, "bmc-cipher-suite", 0, "IPMI cipher suite (default: try 3, then 17)")
	f.StringVar(&mf.bmcUser, "bmc-user", "", "BMC user name")
	f.StringVar(&mf.bmcSecret, "bmc-password-secret", "", "name of the stored secret holding the BMC password (provisiond secret set NAME)")
	f.StringVar(&mf.bmcFile, "bmc-password-file", "", "file on the daemon's host holding the BMC password instead")
	f.StringVar(&mf.bmcEnv, "bmc-password-env", "", "environment variable of the daemon holding the BMC password instead")
	if set {
		f.StringSliceVar(&mf.unsetLabels, "unset-label", nil, "remove a label")
		f.BoolVar(&mf.noBMC, "no-bmc", false, "forget the machine's BMC")
	}
}

// setPairs stores --flag KEY=VALUE arguments in *m, making it if needed.
func setPairs(m *map[string]string, flag string, kvs []string) error {
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--%s %q: write it as KEY=VALUE", flag, kv)
		}
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[k] = v
	}
	return nil
}

// applyHardware copies the hardware-record flags the user gave onto m.
func (mf *machineFlags) applyHardware(cmd *cobra.Command, m *inventory.Machine) error {
	f := cmd.Flags()
	if f.Changed("tag") {
		m.Tag = mf.tag
	}
	if f.Changed("role") {
		m.Role = mf.role
	}
	if f.Changed("enclosure") {
		m.Enclosure = mf.enclosure
	}
	if f.Changed("bay") {
		m.Bay = mf.bay
	}
	if f.Changed("control") {
		m.Control = mf.control
	}
	if err := setPairs(&m.Labels, "label", mf.labels); err != nil {
		return err
	}
	for _, k := range mf.unsetLabels {
		delete(m.Labels, k)
	}
	if mf.noBMC {
		m.BMC = nil
	}
	bmcFlags := []string{"bmc-address", "bmc-port", "bmc-protocol", "bmc-cipher-suite", "bmc-user", "bmc-password-secret", "bmc-password-file", "bmc-password-env"}
	for _, n := range bmcFlags {
		if !f.Changed(n) {
			continue
		}
		if mf.noBMC {
			return fmt.Errorf("--%s and --no-bmc contradict each other", n)
		}
		if m.BMC == nil {
			m.BMC = &inventory.BMC{}
		}
		break
	}
	if m.BMC == nil {
		return nil
	}
	b := m.BMC
	if f.Changed("bmc-address") {
		b.Address = mf.bmcAddress
	}
	if f.Changed("bmc-port") {
		b.Port = mf.bmcPort
	}
	if f.Changed("bmc-protocol") {
		b.Protocol = mf.bmcProtocol
	}
	if f.Changed("bmc-cipher-suite") {
		b.CipherSuite = mf.bmcCipher
	}
	if f.Changed("bmc-user") {
		b.Username = mf.bmcUser
	}
	// One way to the password: naming one replaces the others.
	switch {
	case f.Changed("bmc-password-secret"):
		b.PasswordSecret, b.PasswordFile, b.PasswordEnv = mf.bmcSecret, "", ""
	case f.Changed("bmc-password-file"):
		b.PasswordSecret, b.PasswordFile, b.PasswordEnv = "", mf.bmcFile, ""
	case f.Changed("bmc-password-env"):
		b.PasswordSecret, b.PasswordFile, b.PasswordEnv = "", "", mf.bmcEnv
	}
	return nil
}

// apply copies the flags the user gave onto m.
func (mf *machineFlags) apply(cmd *cobra.Command, m *inventory.Machine) error {
	f := cmd.Flags()
	if f.Changed("mac") {
		m.MACs = append([]string{}, mf.macs...)
	}
	m.MACs = append(m.MACs, mf.addMACs...)
	for _, r := range mf.removeMACs {
		n, err := inventory.NormalizeMAC(r)
		if err != nil {
			return err
		}
		var keep []string
		for _, have := range m.MACs {
			if have != n {
				keep = append(keep, have)
			}
		}
		if len(keep) == len(m.MACs) {
			return fmt.Errorf("machine %s has no MAC %s", m.Name, n)
		}
		m.MACs = keep
	}
	if f.Changed("profile") {
		m.Profile = mf.profile
		m.Once = nil
	}
	if mf.once {
		if m.Profile == "" {
			return fmt.Errorf("--once needs a profile: --profile NAME --once")
		}
		m.Once = &inventory.Once{Then: mf.then, Since: time.Now().UTC()}
	} else if f.Changed("then") {
		return fmt.Errorf("--then goes with --once")
	}
	if f.Changed("hostname") {
		m.Hostname = mf.hostname
	}
	if f.Changed("kernel-args") {
		m.KernelArgs = mf.kernelArgs
	}
	if f.Changed("address") {
		m.Address = mf.address
	}
	if f.Changed("gateway") {
		m.Gateway = mf.gateway
	}
	if f.Changed("asset-key-secret") {
		m.AssetKeySecret = mf.assetKey
	}
	if f.Changed("firmware") {
		m.Firmware = mf.firmware
		if m.Firmware == "auto" {
			m.Firmware = ""
		}
	}
	if err := setPairs(&m.Params, "param", mf.params); err != nil {
		return err
	}
	for _, k := range mf.unsetParams {
		delete(m.Params, k)
	}
	return mf.applyHardware(cmd, m)
}

func newMachine(cf *clientFlags, e env) *cobra.Command {
	cmd := &cobra.Command{Use: "machine", Aliases: []string{"machines", "m"}, Short: "Add, list, show, change and remove machines"}
	cmd.AddCommand(newMachineAdd(cf, e), newMachineList(cf, e), newMachineShow(cf, e), newMachineSet(cf, e), newMachineRm(cf, e),
		newHistory(cf, e), newAccept(cf, e), newAdopt(cf, e))
	return cmd
}

// newMachineAdd is machine add.
func newMachineAdd(cf *clientFlags, e env) *cobra.Command {
	var addF machineFlags
	add := &cobra.Command{
		Use:   "add NAME --mac MAC [flags]",
		Short: "Add a machine (a discovered record with the same MAC is taken over with its timeline)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m := inventory.Machine{Name: args[0]}
			if err := addF.apply(cmd, &m); err != nil {
				return err
			}
			if len(m.MACs) == 0 {
				return fmt.Errorf("machine %s has no MAC address: give at least one with --mac (machines known only by their hardware come in with provisiond import)", m.Name)
			}
			if err := m.Validate(); err != nil {
				return err
			}
			saved, err := cf.client(e).CreateMachine(cmd.Context(), m)
			if err != nil {
				return err
			}
			return printMachine(e.stdout, cf.output, saved)
		},
	}
	addF.register(add, false)
	return add
}

// newMachineList is machine list.
func newMachineList(cf *clientFlags, e env) *cobra.Command {
	list := &cobra.Command{
		Use:   "list",
		Short: "List machines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := cf.client(e).Machines(cmd.Context())
			if err != nil {
				return err
			}
			return printList(e.stdout, cf.output, ms, "NAME\tMACS\tPROFILE\tHOSTNAME\tADDRESS\tFIRMWARE\tLAST SEEN", func(m inventory.Machine) []string {
				prof := m.Profile
				if prof == "" {
					prof = "(default)"
				}
				if m.Once != nil {
					prof += " (once)"
				}
				seen := "-"
				if m.Facts != nil && !m.Facts.LastSeen.IsZero() {
					seen = m.Facts.LastSeen.Local().Format("2006-01-02 15:04:05")
				}
				return []string{m.Name, strings.Join(m.MACs, ","), prof, dash(m.Hostname), dash(m.Address), dash(m.Firmware), seen}
			})
		},
	}
	return list
}

// newMachineShow is machine show: the record, how it boots, the last steps.
func newMachineShow(cf *clientFlags, e env) *cobra.Command {
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a machine with its facts and recent timeline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := cf.client(e)
			m, err := c.Machine(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if cf.output != "table" {
				return printMachine(e.stdout, cf.output, m)
			}
			if err := printMachine(e.stdout, cf.output, m); err != nil {
				return err
			}
			if info, err := c.BootInfo(cmd.Context(), m.Name); err != nil {
				fmt.Fprintf(e.stdout, "\nBoots:          (not known: %v)\n", err)
			} else {
				printBootInfo(e.stdout, info)
			}
			evs, err := c.Events(cmd.Context(), m.Name, 10)
			if err != nil {
				return err
			}
			if len(evs) > 0 {
				fmt.Fprintln(e.stdout, "\nRecent timeline:")
				printEvents(e.stdout, evs, false)
			}
			return nil
		},
	}
	return show
}

// newMachineSet is machine set: the flags given change the record as it is now.
func newMachineSet(cf *clientFlags, e env) *cobra.Command {
	var setF machineFlags
	set := &cobra.Command{
		Use:   "set NAME [flags]",
		Short: "Change a machine (only the flags given change)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := cf.client(e)
			// The flags are changes to the record as it is now: a write
			// refused because a boot or another client changed the record
			// since it was read is applied again to the new one.
			var saved *inventory.Machine
			for try := 1; ; try++ {
				m, err := c.Machine(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if err := setF.apply(cmd, m); err != nil {
					return err
				}
				saved, err = c.UpdateMachine(cmd.Context(), *m)
				var se *api.StatusError
				if errors.As(err, &se) && se.Code == http.StatusConflict && try < 5 && strings.Contains(se.Msg, "changed since it was read") {
					continue
				}
				if err != nil {
					return err
				}
				if setF.once {
					// A one-shot assignment is the server's to keep: it
					// is set where boots use it up.
					if saved, err = c.Assign(cmd.Context(), m.Name, api.AssignRequest{Profile: m.Profile, Once: true, Then: m.Once.Then}); err != nil {
						return err
					}
				}
				break
			}
			return printMachine(e.stdout, cf.output, saved)
		},
	}
	setF.register(set, true)
	return set
}

// newMachineRm is machine rm.
func newMachineRm(cf *clientFlags, e env) *cobra.Command {
	rm := &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove", "delete"},
		Short:   "Remove machines with their timelines",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := cf.client(e)
			for _, n := range args {
				if err := c.DeleteMachine(cmd.Context(), n); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "removed %s\n", n)
			}
			return nil
		},
	}
	return rm
}

// printList prints items as JSON/YAML when asked, else as a table with the
// given tab-separated header and one row per item.
func printList[T any](w io.Writer, format string, items []T, header string, row func(T) []string) error {
	if done, err := render(w, format, items); done {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		fmt.Fprintln(tw, strings.Join(row(it), "\t"))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printMachine(w io.Writer, format string, m *inventory.Machine) error {
	if done, err := render(w, format, m); done {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	prof := m.Profile
	if prof == "" {
		prof = "(default)"
	}
	fmt.Fprintf(tw, "Name:\t%s\n", m.Name)
	if m.Discovered {
		fmt.Fprintf(tw, "Discovered:\tyes (add it with provisiond machine add NAME --mac %s)\n", strings.Join(m.MACs, " --mac "))
	}
	fmt.Fprintf(tw, "MACs:\t%s\n", strings.Join(m.MACs, ", "))
	if m.Once != nil {
		prof += fmt.Sprintf(" (once, then %s)", m.Once.Then)
	}
	fmt.Fprintf(tw, "Profile:\t%s\n", prof)
	fmt.Fprintf(tw, "Hostname:\t%s\n", dash(m.Hostname))
	fmt.Fprintf(tw, "Address:\t%s\n", dash(m.Address))
	fmt.Fprintf(tw, "Gateway:\t%s\n", dash(m.Gateway))
	fmt.Fprintf(tw, "Firmware:\t%s\n", cmp.Or(m.Firmware, "auto"))
	fmt.Fprintf(tw, "Kernel args:\t%s\n", dash(m.KernelArgs))
	if m.AssetKeySecret != "" {
		fmt.Fprintf(tw, "Asset key:\tsecret %s (its secrets only to a boot that reports that asset tag)\n", m.AssetKeySecret)
	}
	keys := make([]string, 0, len(m.Params))
	for k := range m.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "Param %s:\t%s\n", k, m.Params[k])
	}
	if f := m.Facts; f != nil {
		fmt.Fprintf(tw, "Facts:\t%s\n", strings.Join(nonEmpty(
			pair("manufacturer", f.Manufacturer), pair("product", f.Product), pair("serial", f.Serial), pair("uuid", f.UUID),
			pair("platform", f.Platform), pair("arch", f.BuildArch), pair("nic", f.Chip), pair("ip", f.IP)), ", "))
		if !f.LastSeen.IsZero() {
			fmt.Fprintf(tw, "Last seen:\t%s\n", f.LastSeen.Local().Format(time.RFC3339))
		}
	}
	printHardware(tw, m)
	return tw.Flush()
}

// printBootInfo says how the machine boots with its profile now.
func printBootInfo(w io.Writer, info *api.BootInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fw := "as its firmware reports (BIOS or UEFI)"
	if info.Firmware != "" {
		fw = info.Firmware + " (" + info.FirmwareWhy + ")"
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "State:\t%s\n", info.StateText)
	fmt.Fprintf(tw, "Boots:\t%s\n", fw)
	if t := info.Talos; t != nil {
		fmt.Fprintf(tw, "Talos:\t%s, schematic %s\n", t.Version, t.Schematic)
		fmt.Fprintf(tw, "  extensions:\t%s\n", strings.Join(t.Extensions, " "))
		fmt.Fprintf(tw, "  why:\t%s\n", t.Why)
	}
	tw.Flush()
}

func pair(k, v string) string {
	if v == "" {
		return ""
	}
	return k + "=" + v
}

func nonEmpty(vs ...string) []string {
	var out []string
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// eventLine renders one timeline step for people.
func eventLine(ev events.Event, withMachine bool) string {
	who := ""
	if withMachine {
		who = ev.Machine + "  "
	}
	return fmt.Sprintf("%s  %s%-18s %s", ev.Time.Local().Format("2006-01-02 15:04:05.000"), who, ev.Type, ev.Details())
}

func printEvents(w io.Writer, evs []events.Event, withMachine bool) {
	for _, ev := range evs {
		fmt.Fprintln(w, eventLine(ev, withMachine))
	}
}

func newEvents(cf *clientFlags, e env) *cobra.Command {
	var follow bool
	var limit int
	cmd := &cobra.Command{
		Use:   "events [MACHINE]",
		Short: "Show a machine's boot timeline (or, with --follow and no machine, every machine's steps live)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := cf.client(e)
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			if !follow {
				if name == "" {
					return fmt.Errorf("name a machine, or use --follow to watch every machine")
				}
				evs, err := c.Events(cmd.Context(), name, limit)
				if err != nil {
					return err
				}
				if done, err := render(e.stdout, cf.output, evs); done {
					return err
				}
				printEvents(e.stdout, evs, false)
				return nil
			}
			return c.Follow(cmd.Context(), name, limit, func(ev events.Event) error {
				var err error
				switch cf.output {
				case "json":
					err = json.NewEncoder(e.stdout).Encode(ev)
				case "yaml":
					_, err = render(e.stdout, "yaml", []events.Event{ev})
				default:
					_, err = fmt.Fprintln(e.stdout, eventLine(ev, name == ""))
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing steps as they happen")
	cmd.Flags().IntVarP(&limit, "limit", "n", 50, "how many past steps to show")
	return cmd
}

func newProfile(cf *clientFlags, e env) *cobra.Command {
	cmd := &cobra.Command{Use: "profile", Aliases: []string{"profiles"}, Short: "List profiles and render a machine's script"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the daemon's profiles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ps, err := cf.client(e).Profiles(cmd.Context())
			if err != nil {
				return err
			}
			return printList(e.stdout, cf.output, ps, "NAME\tSOURCE\tPARAMETERS\tDESCRIPTION", func(p api.ProfileInfo) []string {
				return []string{p.Name, p.Source, dash(paramList(p)), p.Description}
			})
		},
	}
	var mac string
	var reveal bool
	renderCmd := &cobra.Command{
		Use:   "render MACHINE",
		Short: "Print the exact iPXE script MACHINE would get if it booted now (secrets redacted)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := cf.client(e).Script(cmd.Context(), args[0], mac, reveal)
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(body)
			return err
		},
	}
	renderCmd.Flags().StringVar(&mac, "mac", "", "render for this NIC (default: the machine's first MAC)")
	renderCmd.Flags().BoolVar(&reveal, "show-secrets", false, "show secret values instead of REDACTED (needs the API token)")
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a profile: description, parameters, when a one-shot boot is used up, and its template",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := cf.client(e).Profile(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if done, err := render(e.stdout, cf.output, p); done {
				return err
			}
			printProfile(e.stdout, p)
			return nil
		},
	}
	check := &cobra.Command{
		Use:   "check DIR",
		Short: "Check a profiles directory before deploying it (offline: no daemon needed)",
		Long: "Load the built-in profiles and DIR's as the daemon would, and render each of DIR's profiles for a\n" +
			"sample machine. Errors name the file and line. Exit status 1 when any profile fails.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return checkProfiles(e.stdout, args[0])
		},
	}
	cmd.AddCommand(list, show, renderCmd, check)
	return cmd
}

func paramList(p api.ProfileInfo) string {
	var out []string
	for k, v := range p.Params {
		if v.Required {
			k += "*"
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func newStatus(cf *clientFlags, e env) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's version, uptime and counters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := cf.client(e).Status(cmd.Context())
			if err != nil {
				return err
			}
			if cf.output == "yaml" {
				_, err := render(e.stdout, "yaml", st)
				return err
			}
			return writeJSON(e.stdout, st)
		},
	}
}
