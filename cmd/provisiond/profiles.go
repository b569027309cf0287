package main

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/profiles"
)

func printProfile(w io.Writer, p *api.ProfileInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", p.Name)
	fmt.Fprintf(tw, "Description:\t%s\n", p.Description)
	fmt.Fprintf(tw, "Source:\t%s\n", p.Source)
	fmt.Fprintf(tw, "One-shot used up on:\t%s\n", p.ConsumedOn)
	tw.Flush()
	if len(p.Params) > 0 {
		fmt.Fprintln(w, "\nParameters:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tDEFAULT\tFLAGS\tDESCRIPTION")
		names := make([]string, 0, len(p.Params))
		for k := range p.Params {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			v := p.Params[k]
			var flags []string
			if v.Required {
				flags = append(flags, "required")
			}
			if v.Secret {
				flags = append(flags, "secret")
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", k, dash(v.Default), dash(strings.Join(flags, ",")), v.Description)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nTemplate:\n%s", p.Template)
}

// checkProfiles loads DIR over the built-in profiles and renders each of
// DIR's profiles for a sample machine whose parameters are all set.
func checkProfiles(w io.Writer, dir string) error {
	set, err := profile.Load(profiles.FS, dir)
	if err != nil {
		return exitError{code: 1, err: err}
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(names) == 0 {
		return exitError{code: 1, err: fmt.Errorf("%s holds no profiles (NAME.yaml beside NAME.ipxe)", dir)}
	}
	failed := 0
	for _, yname := range names {
		name := strings.TrimSuffix(filepath.Base(yname), ".yaml")
		p, _ := set.Get(name)
		m := &inventory.Machine{Name: "sample", MACs: []string{"52:54:00:00:00:01"}, Hostname: "sample", Address: "192.0.2.50/24", Gateway: "192.0.2.1", Params: map[string]string{}}
		for k, v := range p.Params {
			if v.Default == "" {
				m.Params[k] = "sample-" + k
			}
		}
		d := boot.ScriptData(m, m.MACs[0], "http://192.0.2.2:8080", name, nil)
		d.Extra = sampleExtras()
		if _, err := p.Render(d); err != nil {
			fmt.Fprintf(w, "FAIL  %s: %v\n", filepath.Join(dir, name+".ipxe"), err)
			failed++
			continue
		}
		fmt.Fprintf(w, "ok    %s\n", filepath.Join(dir, name+".ipxe"))
	}
	if failed > 0 {
		return exitError{code: 1, err: fmt.Errorf("%d of %d profiles in %s failed", failed, len(names), dir)}
	}
	return nil
}

// sampleExtras stands in for the daemon's providers when checking offline.
func sampleExtras() map[string]map[string]string {
	return map[string]map[string]string{
		"talos": {"kernel": "talos/sample/kernel-amd64", "initramfs": "talos/sample/initramfs-amd64.xz", "cmdline": "talos.platform=metal", "schematic": "sample", "version": "v0.0.0",
			"extensions": "siderolabs/intel-ucode", "why": "sample"},
		"slurm": {"overlay": "slurm/overlay/sample.cpio.gz"},
	}
}
