package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/slurm"
)

// slurmTokenFile is where slurm setup writes the Slurm token by default,
// and where the hooks read it.
const slurmTokenFile = "provisiond.token"

func newSlurmHook(cf *clientFlags, e env, action string) *cobra.Command {
	var powerOff bool
	what := map[string]string{
		"resume":        "slurmctld's ResumeProgram: PXE next and power on each node's machine (one already on is left as it is), staggered, in the background",
		"suspend":       "slurmctld's SuspendProgram: each node's machine is shut down through its BMC (soft, then hard after slurm.soft_grace)",
		"resume-failed": "slurmctld's ResumeFailProgram: the failed resume goes on each node's timeline (--power-off: and the machine is powered off)",
	}[action]
	cmd := &cobra.Command{
		Use:   action + " HOSTLIST",
		Short: what,
		Long: what + ".\n\nHOSTLIST is Slurm's hostlist expression (node-[003-005,010]), as slurmctld passes it. Nodes are the machines\n" +
			"booting the slurm profile, by the name that profile gives them (node_name parameter, else hostname, else\n" +
			"machine name); any other node is refused by name and nothing is done to it. The command returns at once.\n" +
			"It needs the Slurm token (provisiond slurm setup) or the API token. Exit code 1 when a node was refused.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			req := slurm.Request{Nodes: args[0], PowerOff: powerOff, Jobs: resumeJobs(action, e)}
			res, err := cf.client(e).SlurmAction(ctx, action, req)
			if err != nil {
				return err
			}
			for _, t := range res.Accepted {
				fmt.Fprintf(e.stdout, "%s\t%s\t%s\n", t.Node, t.Machine, map[string]string{"resume": "resuming", "suspend": "suspending", "resume-failed": "recorded"}[action])
			}
			for _, r := range res.Refused {
				fmt.Fprintf(e.stderr, "provisiond: %s refused: %s\n", r.Node, r.Reason)
			}
			if len(res.Refused) > 0 {
				return exitError{code: 1, err: fmt.Errorf("%d of the nodes refused", len(res.Refused))}
			}
			return nil
		},
	}
	if action == "resume-failed" {
		cmd.Flags().BoolVar(&powerOff, "power-off", false, "power the failed nodes' machines off")
	}
	return cmd
}

// resumeJobs reads the jobs a resume is for, with the nodes each needs
// resumed, from the file slurmctld names in SLURM_RESUME_FILE (nil when
// there is none or it cannot be read: the resume goes on without them).
func resumeJobs(action string, e env) []slurm.Job {
	path := e.get("SLURM_RESUME_FILE")
	if action != "resume" || path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var doc struct {
		Jobs []struct {
			JobID       int    `json:"job_id"`
			NodesResume string `json:"nodes_resume"` // Slurm 23.02 and later
			Nodes       string `json:"nodes"`        // Slurm 22.05
			NodesAlloc  string `json:"nodes_alloc"`
		} `json:"jobs"`
	}
	if json.Unmarshal(raw, &doc) != nil {
		return nil
	}
	var jobs []slurm.Job
	for _, j := range doc.Jobs {
		jobs = append(jobs, slurm.Job{ID: j.JobID, Nodes: cmp.Or(j.NodesResume, j.Nodes, j.NodesAlloc)})
	}
	return jobs
}

func newSlurmSetup(cf *clientFlags, e env) *cobra.Command {
	var dir, owner string
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Make the Slurm token and write slurmctld's power saving programs (run as root on the slurmctld host)",
		Long: "setup makes a new token scoped to Slurm's power saving (resume, suspend and resume-failed of Slurm machines;\n" +
			"nothing else: no reads, no other changes; the old one stops working) and writes, in --dir:\n" +
			"  provisiond.token            the token, mode 0600, owned by --owner (slurmctld's SlurmUser)\n" +
			"  provisiond-resume           ResumeProgram\n" +
			"  provisiond-suspend          SuspendProgram\n" +
			"  provisiond-resume-fail      ResumeFailProgram (powers failed nodes off)\n" +
			"The programs call this binary with this command's --server and the control plane's pinned certificate.\n" +
			"provisiond slurm config prints the slurm.conf lines that name them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			uid, gid := -1, -1
			if owner != "" {
				u, err := user.Lookup(owner)
				if err != nil {
					return fmt.Errorf("--owner %s: %w (the user slurmctld runs as: SlurmUser in slurm.conf)", owner, err)
				}
				uid, _ = strconv.Atoi(u.Uid)
				gid, _ = strconv.Atoi(u.Gid)
			}
			c := cf.client(e)
			seen := ""
			if first := c.FirstUse; first != nil {
				c.FirstUse = func(fp string) { seen = fp; first(fp) }
			}
			tok, err := c.NewSlurmToken(cmd.Context())
			if err != nil {
				return err
			}
			fp := c.Fingerprint
			if fp == "" {
				fp = seen
			}
			if fp == "" {
				return errors.New("the control plane's certificate is not pinned (--insecure?): the programs need --fingerprint; the token was made, run setup again with it")
			}
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding this binary: %w", err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			tokPath := filepath.Join(dir, slurmTokenFile)
			if err := writeFileAs(tokPath, []byte(tok+"\n"), 0o600, uid, gid); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s (the Slurm token, 0600%s)\n", tokPath, map[bool]string{true: ", owner " + owner, false: ""}[owner != ""])
			for _, h := range []struct{ file, args, program string }{
				{"provisiond-resume", "slurm resume", "ResumeProgram"},
				{"provisiond-suspend", "slurm suspend", "SuspendProgram"},
				{"provisiond-resume-fail", "slurm resume-failed --power-off", "ResumeFailProgram"},
			} {
				script := fmt.Sprintf("#!/bin/sh\n# slurmctld's %s, written by provisiond slurm setup.\nexec %s --server %s --fingerprint %s --token-file %s %s \"$@\"\n",
					h.program, shellQuote(bin), shellQuote(cf.server), fp, shellQuote(tokPath), h.args)
				p := filepath.Join(dir, h.file)
				if err := writeFileAs(p, []byte(script), 0o755, -1, -1); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "wrote %s (%s)\n", p, h.program)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "/etc/slurm", "directory for the token and the programs")
	cmd.Flags().StringVar(&owner, "owner", "slurm", "user that owns the token file (slurmctld's SlurmUser; empty: the current user)")
	return cmd
}

// writeFileAs writes a file through a temporary one, with mode and owner
// (uid/gid -1: unchanged), and renames it into place.
func writeFileAs(path string, data []byte, mode os.FileMode, uid, gid int) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	if uid >= 0 {
		if err := os.Chown(tmp, uid, gid); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("giving %s to uid %d: %w", path, uid, err)
		}
	}
	return os.Rename(tmp, path)
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._:-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func newSlurmConfig(cf *clientFlags, e env) *cobra.Command {
	var dir, exclude string
	var suspendTime time.Duration
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print slurm.conf's power saving lines and NodeName lines (State=CLOUD) for the Slurm machines",
		Long: "config prints, ready to paste into slurm.conf: SuspendProgram, ResumeProgram and ResumeFailProgram (the programs\n" +
			"slurm setup wrote in --dir), ResumeTimeout from the machines' measured resumes (power-on to slurmd's callback,\n" +
			"the slowest times 1.5 plus a minute; 900 s before any resume was measured: old servers POST for minutes),\n" +
			"SuspendTime, SuspendTimeout, SuspendExcNodes (--exclude), SlurmctldParameters (configless, cloud nodes take the\n" +
			"address they register from), PrivateData=cloud (sinfo shows powered-down nodes), and a NodeName line per Slurm\n" +
			"machine with State=CLOUD, so slurmctld starts with them powered down and resumes them for jobs.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c := cf.client(e)
			ms, err := c.Machines(ctx)
			if err != nil {
				return err
			}
			var nodes []inventory.Machine
			for _, m := range ms {
				if slurm.IsNode(&m) {
					nodes = append(nodes, m)
				}
			}
			if len(nodes) == 0 {
				return errors.New("no machine boots the slurm profile: give machines the slurm profile first (provisiond machine set NAME --profile slurm)")
			}
			var measured []float64
			for _, m := range nodes {
				evs, err := c.Events(ctx, m.Name, 0)
				if err != nil {
					return err
				}
				for _, ev := range evs {
					if ev.Type == events.SlurmResumed {
						if s, err := strconv.ParseFloat(ev.Attrs["seconds"], 64); err == nil {
							measured = append(measured, s)
						}
					}
				}
			}
			timeout, why := 900, "no resume measured yet: old servers POST for minutes"
			if len(measured) > 0 {
				slowest := slices.Max(measured)
				timeout = int(math.Ceil(slowest*1.5)) + 60
				why = fmt.Sprintf("slowest of %d measured resumes %.0f s, times 1.5, plus 60 s", len(measured), slowest)
			}
			w := e.stdout
			fmt.Fprintln(w, "# Slurm power saving through provisiond (provisiond slurm config)")
			fmt.Fprintf(w, "SuspendProgram=%s\n", filepath.Join(dir, "provisiond-suspend"))
			fmt.Fprintf(w, "ResumeProgram=%s\n", filepath.Join(dir, "provisiond-resume"))
			fmt.Fprintf(w, "ResumeFailProgram=%s\n", filepath.Join(dir, "provisiond-resume-fail"))
			fmt.Fprintf(w, "ResumeTimeout=%d # %s\n", timeout, why)
			fmt.Fprintf(w, "SuspendTime=%d\n", int(suspendTime.Seconds()))
			fmt.Fprintln(w, "SuspendTimeout=150 # provisiond's slurm.soft_grace (2m) and the power cut")
			if exclude != "" {
				fmt.Fprintf(w, "SuspendExcNodes=%s\n", exclude)
			}
			fmt.Fprintln(w, "SlurmctldParameters=enable_configless,cloud_reg_addrs,idle_on_node_suspend")
			fmt.Fprintln(w, "PrivateData=cloud # sinfo lists the nodes that are powered down too")
			for i := range nodes {
				fmt.Fprintln(w, cloudLine(nodeLine(&nodes[i])))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "/etc/slurm", "directory where slurm setup wrote the programs")
	cmd.Flags().DurationVar(&suspendTime, "suspend-time", 10*time.Minute, "idle time after which Slurm powers a node down (SuspendTime)")
	cmd.Flags().StringVar(&exclude, "exclude", "", "nodes never powered down (SuspendExcNodes, a hostlist)")
	return cmd
}

// cloudLine adds State=CLOUD to a NodeName line, before its comment.
func cloudLine(line string) string {
	body, comment, ok := strings.Cut(line, " # ")
	if ok {
		return body + " State=CLOUD # " + comment
	}
	return line + " State=CLOUD"
}
