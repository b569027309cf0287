// Package ipmisim runs OpenIPMI's ipmi_sim as a real IPMI-over-LAN BMC for
// tests: one user, MD5 authentication, and a chassis-control hook whose
// power-on and power-off actions the test gives as shell snippets.
package ipmisim

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

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
	return ""
}

// Start writes the configuration and hook, starts ipmi_sim, and waits until
// ipmitool reads the chassis power from it. The test's cleanup stops it.
func Start(t testing.TB, o Options) *Sim {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(o.Dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	// ipmi_sim calls the hook as: HOOK DEVICE get|set PARM [VALUE]...
	// power 1/0 runs Start/Stop; boot records the next boot device, which
	// the next power-on uses once (as a BMC's boot override does).
	hook := fmt.Sprintf(`#!/bin/sh
D=%s
log() { echo "$(date +%%T) $*" >>$D/chassis.log; }
running() { %s; }
start() {
	boot=$(cat $D/boot 2>/dev/null || echo default)
	echo default >$D/boot
	log "power on: boot $boot"
	%s
}
stop() {
	if running; then
		%s
		log "power off"
	fi
}
shift
op=$1; shift
case $op in
get)
	for p in "$@"; do
		case $p in
		power) if running; then echo power:1; else echo power:0; fi ;;
		boot) echo "boot:$(cat $D/boot 2>/dev/null || echo default)" ;;
		*) echo "Invalid parameter: $p"; exit 1 ;;
		esac
	done ;;
set)
	while [ $# -ge 2 ]; do
		case $1 in
		power) if [ "$2" = 1 ]; then running || start; else stop; fi ;;
		reset) stop; start ;;
		boot) echo "$2" >$D/boot; log "boot device $2" ;;
		identify|shutdown) ;;
		*) echo "Invalid parameter: $1"; exit 1 ;;
		esac
		shift 2
	done ;;
*) echo "Unknown operation: $op"; exit 1 ;;
esac
`, o.Dir, o.Running, o.Start, o.Stop)
	conf := fmt.Sprintf(`name "provisiondtest"
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
`, o.Addr, o.Port, filepath.Join(o.Dir, "chassis.sh"), o.User, o.Password)
	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n"
	for name, body := range map[string]string{"chassis.sh": hook, "lan.conf": conf, "sim.emu": emu} {
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
