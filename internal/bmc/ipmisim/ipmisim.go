// Package ipmisim runs OpenIPMI's ipmi_sim as a real IPMI-over-LAN BMC for
// tests: one user, MD5 authentication, and a chassis-control hook whose
// power-on and power-off actions the test gives as shell snippets.
//
// ipmi_sim's own boot-option handling neither reports the "boot flags
// valid" bit nor keeps parameter 3 (valid-bit clearing), so a module built
// from module/bootflags.c replaces it: the flags expire 60 s after they are
// set, as on an iLO 4, unless the 60 s timeout was disabled, and the chassis
// hook applies that expiry when the machine actually POSTs (which
// SetPowerOnDelay can hold back, like a blade waiting in its enclosure's
// power budget).
package ipmisim

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"
)

//go:embed module/bootflags.c
var bootflagsSource []byte

// chassisHook is ipmi_sim's chassis control script for a test machine
// (Options: Dir, Running, Start, Stop).
//
//go:embed chassis.sh
var chassisText string

var chassisHook = template.Must(template.New("chassis.sh").Parse(chassisText))

// mcservHeader is the OpenIPMI header the boot-flags module is built with.
const mcservHeader = "/usr/include/OpenIPMI/mcserv.h"

// Options describe one simulated BMC.
type Options struct {
	// Dir holds its configuration, state and logs.
	Dir string
	// Addr and Port are where it listens (IPMI over LAN, UDP).
	Addr string
	Port int
	// User and Password are its administrator's credentials.
	User, Password string
	// Running, Start and Stop are shell snippets for the chassis hook:
	// Running exits 0 when the machine is on; Start powers it on (the
	// variable $boot holds the boot device the BMC was asked for, or
	// "default"); Stop powers it off. $D is Dir.
	Running, Start, Stop string
	// Wrap prefixes the ipmi_sim command (ip netns exec NS), and CheckWrap
	// the ipmitool command that checks it answers.
	Wrap, CheckWrap []string
}

// Sim is a running ipmi_sim.
type Sim struct {
	o   Options
	out *buffer
	cmd *exec.Cmd
}

type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *buffer) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// Available says why ipmi_sim cannot run here ("" when it can).
func Available() string {
	for _, c := range []string{"ipmi_sim", "ipmitool"} {
		if _, err := exec.LookPath(c); err != nil {
			return "needs " + c + ": apt-get install openipmi ipmitool"
		}
	}
	if _, err := exec.LookPath("cc"); err != nil {
		return "needs a C compiler to build ipmi_sim's boot-flags module: apt-get install gcc libc6-dev libopenipmi-dev"
	}
	if _, err := os.Stat(mcservHeader); err != nil {
		return "needs OpenIPMI's headers to build ipmi_sim's boot-flags module: apt-get install libopenipmi-dev"
	}
	return ""
}

// Start writes the configuration and hook, starts ipmi_sim, and waits until
// ipmitool reads the chassis power from it. The test's cleanup stops it.
func Start(t testing.TB, o Options) *Sim {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(o.Dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	var hook bytes.Buffer
	if err := chassisHook.Execute(&hook, o); err != nil {
		t.Fatal(err)
	}
	module := filepath.Join(o.Dir, "bootflags.so")
	src := filepath.Join(o.Dir, "bootflags.c")
	if err := os.WriteFile(src, bootflagsSource, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cc", "-shared", "-fPIC", "-O2", "-Wall", "-o", module, src).CombinedOutput(); err != nil {
		t.Fatalf("building ipmi_sim's boot-flags module: %v\n%s", err, out)
	}
	conf := fmt.Sprintf(`name "provisiondtest"
loadlib "%s" "%s"
set_working_mc 0x20
  startlan 1
    addr %s %d
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s 0x20"
  user 2 true "%s" "%s" admin 10 md5
`, module, o.Dir, o.Addr, o.Port, filepath.Join(o.Dir, "chassis.sh"), o.User, o.Password)
	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n"
	for name, body := range map[string]string{"chassis.sh": hook.String(), "lan.conf": conf, "sim.emu": emu} {
		if err := os.WriteFile(filepath.Join(o.Dir, name), []byte(body), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	args := append(append([]string{}, o.Wrap...), "ipmi_sim", "-n", "-c", filepath.Join(o.Dir, "lan.conf"),
		"-f", filepath.Join(o.Dir, "sim.emu"), "-s", filepath.Join(o.Dir, "state"))
	s := &Sim{o: o, out: &buffer{}, cmd: exec.Command(args[0], args[1:]...)}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting ipmi_sim: %v", err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		if t.Failed() {
			t.Logf("ipmi_sim output:\n%s\nchassis hook log:\n%s", s.out.String(), s.ChassisLog())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		check := append(append([]string{}, o.CheckWrap...), "ipmitool", "-I", "lanplus", "-H", o.Addr, "-p", fmt.Sprint(o.Port),
			"-U", o.User, "-E", "-C", "3", "-N", "1", "-R", "1", "chassis", "power", "status")
		cmd := exec.Command(check[0], check[1:]...)
		cmd.Env = append(os.Environ(), "IPMITOOL_PASSWORD="+o.Password)
		out, err := cmd.CombinedOutput()
		if err == nil && strings.Contains(string(out), "Chassis Power is") {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipmi_sim does not answer ipmitool: %v\n%s\n%s", err, out, s.out.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// ChassisLog is what the chassis hook logged: boot devices set, power on
// (with the boot device) and power off.
func (s *Sim) ChassisLog() string {
	raw, _ := os.ReadFile(filepath.Join(s.o.Dir, "chassis.log"))
	return string(raw)
}

// SetPowerOnDelay holds back the POST of every later power-on by d, as an
// enclosure does with a blade waiting in its power budget: the chassis
// reports power on at once, the boot device is read when the POST starts.
func (s *Sim) SetPowerOnDelay(d time.Duration) error {
	return os.WriteFile(filepath.Join(s.o.Dir, "poweron-delay"), []byte(fmt.Sprint(int(d.Seconds()))), 0o600)
}
