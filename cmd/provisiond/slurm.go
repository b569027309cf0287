package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/spf13/cobra"

	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/slurm"
)

func newSlurm(cf *clientFlags, e env) *cobra.Command {
	cmd := &cobra.Command{Use: "slurm", Short: "Slurm helpers"}
	var all bool
	nodes := &cobra.Command{
		Use:   "nodes [MACHINE...]",
		Short: "Print slurm.conf NodeName lines (CPUs, sockets, cores, threads, RealMemory) from the inventory",
		Long: "Prints one NodeName line per machine booting the slurm profile (or per machine named, or every machine with\n" +
			"--all), named as the slurm profile names the node (node_name parameter, else hostname, else machine name).\n" +
			"RealMemory is 95 % of the installed memory, so the kernel's measure on the node is never below it (slurmd\n" +
			"drains a node whose memory is lower than configured). Machines whose CPUs are not known yet get a comment:\n" +
			"commission them (provisiond commission) or run provisiond agent report on them once.",
		RunE: func(cmd *cobra.Command, args []string) error {
			ms, err := cf.client(e).Machines(cmd.Context())
			if err != nil {
				return err
			}
			want := map[string]bool{}
			for _, a := range args {
				want[a] = true
			}
			n := 0
			for _, m := range ms {
				switch {
				case len(args) > 0:
					if !want[m.Name] && (m.Tag == "" || !want[m.Tag]) {
						continue
					}
					delete(want, m.Name)
					delete(want, m.Tag)
				case all:
					if m.Discovered {
						continue
					}
				default:
					if !slurm.IsNode(&m) {
						continue
					}
				}
				fmt.Fprintln(e.stdout, nodeLine(&m))
				n++
			}
			for a := range want {
				return fmt.Errorf("machine %s: not found", a)
			}
			if n == 0 {
				fmt.Fprintln(e.stdout, "# no machine boots the slurm profile: name machines, or use --all")
			}
			return nil
		},
	}
	nodes.Flags().BoolVar(&all, "all", false, "every machine in the inventory")
	cmd.AddCommand(nodes, newSlurmHook(cf, e, "resume"), newSlurmHook(cf, e, "suspend"), newSlurmHook(cf, e, "resume-failed"),
		newSlurmSetup(cf, e), newSlurmConfig(cf, e))
	return cmd
}

// nodeLine is the slurm.conf NodeName line for m.
func nodeLine(m *inventory.Machine) string {
	parts := []string{"NodeName=" + slurm.NodeName(m)}
	var missing []string
	if len(m.CPUs) > 0 && m.CPUs[0].Cores > 0 {
		c := m.CPUs[0]
		threads := 1
		if c.Threads > c.Cores && c.Threads%c.Cores == 0 {
			threads = c.Threads / c.Cores
		}
		parts = append(parts,
			fmt.Sprintf("CPUs=%d", len(m.CPUs)*c.Cores*threads),
			"Boards=1",
			fmt.Sprintf("SocketsPerBoard=%d", len(m.CPUs)),
			fmt.Sprintf("CoresPerSocket=%d", c.Cores),
			fmt.Sprintf("ThreadsPerCore=%d", threads))
	} else {
		missing = append(missing, "CPUs unknown")
	}
	if gb := m.TotalMemoryGB(); gb > 0 {
		parts = append(parts, fmt.Sprintf("RealMemory=%d", int(math.Floor(gb*1024*0.95))))
	} else {
		missing = append(missing, "memory unknown")
	}
	line := strings.Join(parts, " ")
	if len(missing) > 0 {
		line += " # " + m.Name + ": " + strings.Join(missing, ", ") + ": commission it (provisiond commission)"
	}
	return line
}
