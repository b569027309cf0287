package commission

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/inventory"
)

// Report is what a commissioning machine posts to provisiond's boot plane
// (POST /boot/MAC/facts?nonce=N): its hardware, how each step went, and
// what it does next.
type Report struct {
	// Hardware is what the machine found (as provisiond agent report).
	Hardware inventory.Hardware `json:"hardware"`
	// Steps are the steps before the report, in order.
	Steps []Step `json:"steps"`
	// Then is what the machine does after the report: poweroff or hold.
	Then string `json:"then"`
}

// Step is one step of the commissioning OS.
type Step struct {
	// Name is the step: mount, modules, nic, dhcp, gather.
	Name string `json:"name"`
	// OK says whether the step did all it should.
	OK bool `json:"ok"`
	// Detail says what happened (what failed and what was done instead).
	Detail string `json:"detail,omitempty"`
	// Seconds is how long the step took.
	Seconds float64 `json:"seconds"`
}

// Then values.
const (
	ThenPowerOff = "poweroff"
	ThenHold     = "hold"
)

// Params are what the commissioning OS reads from its kernel command line.
type Params struct {
	// MAC is the NIC the machine booted from (provisiond.mac=).
	MAC string
	// ReportURL is where the report goes, with the boot's nonce
	// (provisiond.report=).
	ReportURL string
	// Fallback is the address iPXE had, used when DHCP does not answer
	// (provisiond.ip=ADDR/BITS), and its gateway (provisiond.gw=).
	Fallback string
	Gateway  string
	// Hold keeps the machine up after the report (provisiond.hold).
	Hold bool
	// Deadline bounds the whole run: past it the machine powers off
	// whatever it is doing (provisiond.deadline=SECONDS).
	Deadline time.Duration
	// Notes are settings that were not understood and what was used
	// instead (the run goes on; the report carries them).
	Notes []string
}

// DefaultDeadline is how long a commissioning run may take before the
// machine powers itself off.
const DefaultDeadline = 5 * time.Minute

// ParseCmdline reads Params from a kernel command line.
func ParseCmdline(cmdline string) (Params, error) {
	p := Params{Deadline: DefaultDeadline}
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "provisiond.mac":
			mac, err := inventory.NormalizeMAC(v)
			if err != nil {
				return p, fmt.Errorf("provisiond.mac=%s: %w", v, err)
			}
			p.MAC = mac
		case "provisiond.report":
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return p, fmt.Errorf("provisiond.report=%s: not an http(s) URL", v)
			}
			p.ReportURL = v
		case "provisiond.ip":
			p.Fallback = v
		case "provisiond.gw":
			p.Gateway = v
		case "provisiond.hold":
			p.Hold = v == "" || v == "1" || v == "true"
		case "provisiond.deadline":
			s, err := strconv.Atoi(v)
			if err != nil || s < 30 {
				p.Notes = append(p.Notes, fmt.Sprintf("provisiond.deadline=%s is not seconds (at least 30): %s used", v, DefaultDeadline))
				continue
			}
			p.Deadline = time.Duration(s) * time.Second
		}
	}
	if p.MAC == "" || p.ReportURL == "" {
		return p, fmt.Errorf("the kernel command line lacks provisiond.mac= or provisiond.report=: this image is booted by provisiond's commission profile")
	}
	return p, nil
}
