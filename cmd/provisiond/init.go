package main

import (
	"context"
	"os"

	"github.com/provisiond/provisiond/internal/commission/osinit"
)

// commissionInit runs provisiond as the commissioning image's /init (it
// is process 1): mount, load the image's modules, network, gather, report,
// power off. It never returns.
func commissionInit() {
	sys := osinit.Linux{ShellPath: "/bin/busybox"}
	// /dev first, for the console; a failure is the run's first step.
	_ = sys.Mount()
	con := osinit.Console()
	cmdline, _ := os.ReadFile("/proc/cmdline")
	osinit.Run(context.Background(), string(cmdline), sys, osinit.HTTPPoster{}, con)
}
