package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/assets"
)

func newAssets(cf *clientFlags, e env) *cobra.Command {
	cmd := &cobra.Command{Use: "assets", Short: "Fill and list the daemon's cache of remote boot assets (Talos from the Image Factory)"}
	var req api.PullRequest
	pull := &cobra.Command{
		Use:   "pull talos|commission [--version V] [--extensions LIST] [--machine NAME]",
		Short: "Download Talos' kernel, initramfs and command line, or build the commissioning image, into the daemon's cache",
		Long: "talos registers the schematic with the Image Factory, then downloads kernel, initramfs and kernel command line\n" +
			"into the daemon's asset cache (resumable; checked against size; sha256 recorded). Machines booting the\n" +
			"talos profile are then served from the cache over plain HTTP. Without flags it pulls what the config names.\n" +
			"commission builds the commissioning image (provisiond's binary as /init, Debian's kernel and its drivers)\n" +
			"now rather than on the first commissioning boot.",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"talos", "commission"},
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Kind = args[0]
			bar := newBar(e.stderr)
			err := cf.client(e).Pull(cmd.Context(), req, func(info map[string]string) {
				if req.Kind == "commission" {
					fmt.Fprintf(e.stdout, "commissioning image for kernel %s (modules from %s)\ninto %s\n", info["kernel"], info["modules_from"], info["path"])
					return
				}
				fmt.Fprintf(e.stdout, "Talos %s, schematic %s\nfrom %s into %s\n", info["version"], info["schematic"], info["factory"], info["path"])
			}, bar.update)
			bar.finish()
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "cached")
			return nil
		},
	}
	pull.Flags().StringVar(&req.Version, "version", "", "Talos version, e.g. v1.9.5 (default: talos.version in the daemon's config)")
	pull.Flags().StringSliceVar(&req.Extensions, "extensions", nil, "official extensions of the schematic (default: talos.extensions)")
	pull.Flags().StringSliceVar(&req.ExtraKernelArgs, "schematic-args", nil, "extra kernel arguments baked into the schematic (default: talos.extra_kernel_args)")
	pull.Flags().StringVar(&req.Machine, "machine", "", "pull what this machine's parameters ask for")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the cached entries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			es, err := cf.client(e).AssetEntries(cmd.Context())
			if err != nil {
				return err
			}
			return printList(e.stdout, cf.output, es, "ENTRY\tKIND\tVERSION\tEXTENSIONS\tSIZE\tFETCHED", func(m assets.Manifest) []string {
				var size int64
				var fetched time.Time
				for _, f := range m.Files {
					size += f.Size
					if f.Fetched.After(fetched) {
						fetched = f.Fetched
					}
				}
				return []string{m.Entry, dash(m.Meta["kind"]), dash(m.Meta["version"]), dash(m.Meta["extensions"]),
					fmt.Sprintf("%.1f MB", float64(size)/1e6), fetched.Local().Format("2006-01-02 15:04")}
			})
		},
	}
	cmd.AddCommand(pull, list)
	return cmd
}

// bar draws download progress: a bar redrawn in place on a terminal, a line
// per file (and every 10%) otherwise.
type bar struct {
	w        io.Writer
	tty      bool
	file     string
	lastPct  int64
	drawn    bool
	started  time.Time
	finished map[string]bool
}

func newBar(w io.Writer) *bar {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &bar{w: w, tty: tty, lastPct: -1, started: time.Now(), finished: map[string]bool{}}
}

func (b *bar) update(p assets.Progress) {
	if p.Step == "prepare" {
		fmt.Fprintln(b.w, "registering the schematic with the Image Factory")
		return
	}
	if p.File == "" {
		return
	}
	if p.File != b.file {
		if b.drawn && b.tty {
			fmt.Fprintln(b.w)
		}
		b.file, b.lastPct, b.drawn = p.File, -1, false
	}
	pct := int64(-1)
	if p.Total > 0 {
		pct = p.Bytes * 100 / p.Total
	}
	if b.tty {
		const width = 30
		fill := 0
		if pct >= 0 {
			fill = int(pct) * width / 100
		}
		fmt.Fprintf(b.w, "\r%-24s [%s%s] %5.1f/%5.1f MB", p.File, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), float64(p.Bytes)/1e6, float64(p.Total)/1e6)
		b.drawn = true
		if p.Done {
			fmt.Fprintln(b.w)
			b.drawn = false
		}
		return
	}
	if p.Done && !b.finished[p.File] {
		b.finished[p.File] = true
		fmt.Fprintf(b.w, "%s: %.1f MB done\n", p.File, float64(p.Bytes)/1e6)
		return
	}
	if pct >= 0 && p.Total > 1<<20 && pct/10 > b.lastPct/10 {
		b.lastPct = pct
		fmt.Fprintf(b.w, "%s: %d%% of %.1f MB\n", p.File, pct, float64(p.Total)/1e6)
	}
}

func (b *bar) finish() {
	if b.drawn && b.tty {
		fmt.Fprintln(b.w)
	}
}
