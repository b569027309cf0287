package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc/ipmisim"
	"github.com/provisiond/provisiond/internal/events"
)

// The BMC lives on the lab's first segment, in a namespace of its own.
const (
	bmcIP      = "192.0.2.10"
	bmcUser    = "admin"
	bmcPass    = "e2e-IPMI-pass-77"
	ipmiVMMAC  = "52:54:00:e2:e1:01"
	ipmiVMName = "vm1"
)

// ipmiBMC is OpenIPMI's ipmi_sim acting as vm1's BMC: IPMI over LAN on
// 192.0.2.10:623, with a chassis-control hook that starts QEMU on power-on
// (PXE-booting when the boot device was set to PXE, otherwise with no
// network boot at all) and stops it on power-off.
type ipmiBMC struct {
	dir string
	ns  string
	sim *ipmisim.Sim
}

// startIPMISim writes ipmi_sim's configuration and hook and starts it, as
// vm1's BMC.
func (l *lab) startIPMISim(t *testing.T) *ipmiBMC {
	t.Helper()
	return l.startBMCFor(t, ipmiVMName, ipmiVMMAC, bmcIP, "512")
}

// startBMCFor starts an ipmi_sim at ip (in a namespace of its own on the
// lab's bridge) as the BMC of machine name: a SeaBIOS QEMU machine with
// mac and mem MiB that its power-on starts.
func (l *lab) startBMCFor(t *testing.T, name, mac, ip, mem string) *ipmiBMC {
	t.Helper()
	b := &ipmiBMC{dir: filepath.Join(l.dir, "bmc-"+name), ns: l.prefix + "-bmc-" + name}
	l.sh("", "ip", "netns", "add", b.ns)
	l.cleanup = append(l.cleanup, func() { exec.Command("ip", "netns", "del", b.ns).Run() })
	l.sh(b.ns, "ip", "link", "set", "lo", "up")
	veth := "b-" + name
	if len(veth) > 15 {
		veth = veth[:15]
	}
	l.sh(l.lan, "ip", "link", "add", veth, "type", "veth", "peer", "name", "m0", "netns", b.ns)
	l.sh(l.lan, "ip", "link", "set", veth, "master", "br0", "up")
	l.sh(b.ns, "ip", "addr", "add", ip+"/25", "dev", "m0")
	l.sh(b.ns, "ip", "link", "set", "m0", "up")

	tap := l.tap(name)

	serial := filepath.Join(l.dir, name+".serial")
	qemu := l.machineScript(mac, serial, tap, mem)
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "qemu.sh"), []byte(qemu), 0o700); err != nil {
		t.Fatal(err)
	}
	// Power on starts QEMU (PXE-booting when the boot device was set to
	// PXE); power off stops it.
	b.sim = ipmisim.Start(t, ipmisim.Options{Dir: b.dir, Addr: ip, Port: 623, User: bmcUser, Password: bmcPass,
		Running: `[ -f $D/vm.pid ] && kill -0 "$(cat $D/vm.pid)" 2>/dev/null`,
		Start:   `setsid sh $D/qemu.sh "$boot" </dev/null >>$D/qemu.log 2>&1 & echo $! >$D/vm.pid`,
		Stop: `pid=$(cat $D/vm.pid); kill "$pid"
		for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -9 "$pid" 2>/dev/null; rm -f $D/vm.pid`,
		Wrap: []string{"ip", "netns", "exec", b.ns}, CheckWrap: []string{"ip", "netns", "exec", l.server}})
	l.cleanup = append(l.cleanup, func() {
		if raw, err := os.ReadFile(filepath.Join(b.dir, "vm.pid")); err == nil {
			exec.Command("kill", "-9", strings.TrimSpace(string(raw))).Run()
		}
		if t.Failed() {
			ql, _ := os.ReadFile(filepath.Join(b.dir, "qemu.log"))
			s, _ := os.ReadFile(serial)
			t.Logf("%s: QEMU log:\n%s\nserial console (last lines):\n%s", name, ql, tail(string(s), 80))
		}
	})
	return b
}

func (b *ipmiBMC) chassisLog() string {
	return b.sim.ChassisLog()
}

func (b *ipmiBMC) vmRunning() bool {
	raw, err := os.ReadFile(filepath.Join(b.dir, "vm.pid"))
	if err != nil {
		return false
	}
	return exec.Command("kill", "-0", strings.TrimSpace(string(raw))).Run() == nil
}

// TestIPMIAssign switches a machine's role through a real IPMI BMC:
// assign vm1 linux --reboot --wait powers it on over IPMI, it PXE-boots
// the profile and the command reports success; assign vm1 local --reboot
// --wait power-cycles it back to local boot. The timeline shows the BMC
// steps and the boot steps together.
func TestIPMIAssign(t *testing.T) {
	t.Parallel() // VMs under TCG: two tests share the two cores
	requireLab(t)
	if why := ipmisim.Available(); why != "" {
		t.Skip("the IPMI end-to-end test " + why)
	}
	l := newLab(t)
	b := l.startIPMISim(t)
	serial := filepath.Join(l.dir, ipmiVMName+".serial")

	l.cliStdin(bmcPass, "secret", "set", "bmc-vm1")
	l.mustCLI("machine", "add", ipmiVMName, "--mac", ipmiVMMAC, "--profile", "local",
		"--param", "kernel=vmlinuz", "--param", "initrd=initrd.img", "--param", "cmdline=console=ttyS0 panic=-1 quiet",
		"--kernel-args", "e2e.machine="+ipmiVMName+" e2e.stay=1", // on until the BMC cycles it
		"--bmc-address", bmcIP, "--bmc-user", bmcUser, "--bmc-password-secret", "bmc-vm1", "--bmc-cipher-suite", "3")

	if out := l.mustCLI("power", ipmiVMName, "status"); !regexp.MustCompile(`vm1\s+off`).MatchString(out) {
		t.Fatalf("power status before: %s", out)
	}

	// Linux, persistent, through a power-on (the machine is off).
	out, err := l.cli("assign", ipmiVMName, "linux", "--reboot", "--wait", "--timeout", "6m")
	t.Logf("provisiond assign vm1 linux --reboot --wait:\n%s", out)
	if err != nil {
		t.Fatalf("assign linux failed: %v", err)
	}
	if !strings.Contains(out, "vm1: profile linux, PXE next, powered on") || !strings.Contains(out, "booted linux") {
		t.Errorf("assign linux output:\n%s", out)
	}
	if log := b.chassisLog(); !strings.Contains(log, "boot device pxe") || !strings.Contains(log, "power on: boot pxe") {
		t.Errorf("the BMC did not see PXE then power-on:\n%s", log)
	}
	v := &vm{name: ipmiVMName, serial: serial, done: make(chan error)}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	console, err := v.waitSerial(ctx, "PROVISIOND-TEST-DONE")
	cancel()
	if err != nil {
		t.Fatalf("the test OS did not finish booting: %v", err)
	}
	if cl := serialLine(console, "PROVISIOND-TEST-CMDLINE:"); !strings.Contains(cl, "e2e.machine=vm1") || !strings.Contains(cl, "console=ttyS0") {
		t.Errorf("kernel command line: %q", cl)
	}
	if cb := serialLine(console, "PROVISIOND-TEST-CALLBACK:"); cb != "ok" {
		t.Errorf("callback: %q", cb)
	}

	// Back to local boot, through a power cycle (the machine is on).
	out, err = l.cli("assign", ipmiVMName, "local", "--reboot", "--wait", "--timeout", "4m")
	t.Logf("provisiond assign vm1 local --reboot --wait:\n%s", out)
	if err != nil {
		t.Fatalf("assign local failed: %v", err)
	}
	if !strings.Contains(out, "PXE next, power-cycled") || !strings.Contains(out, "booted local") {
		t.Errorf("assign local output:\n%s", out)
	}
	if log := b.chassisLog(); strings.Count(log, "power on: boot pxe") != 2 || !strings.Contains(log, "power off") {
		t.Errorf("the BMC did not cycle the machine into PXE again:\n%s", log)
	}

	// The timeline: BMC steps and boot steps, in order, for both switches.
	evs := l.timeline(ipmiVMName)
	var steps []string
	for _, ev := range evs {
		switch ev.Type {
		case events.MachineChanged:
			steps = append(steps, "assign:"+ev.Attrs["profile"])
		case "bmc.bootdev":
			steps = append(steps, "bootdev:"+ev.Attrs["device"]+":"+ev.Attrs["result"])
		case "bmc.power":
			steps = append(steps, "power:"+ev.Attrs["action"]+":"+ev.Attrs["before"]+"->"+ev.Attrs["state"])
		case events.DHCPOffer:
			if len(steps) == 0 || steps[len(steps)-1] != "dhcp" {
				steps = append(steps, "dhcp")
			}
		case events.Script:
			steps = append(steps, "script:"+ev.Attrs["profile"])
		case events.BootDone:
			steps = append(steps, "done:"+ev.Attrs["profile"]+":"+ev.Attrs["on"])
		case events.Booted:
			steps = append(steps, "callback")
		}
	}
	got := strings.Join(steps, " ")
	// Right after a cycle the BMC may still report the machine off: the
	// state after is not pinned.
	for _, want := range []string{
		`assign:linux bootdev:pxe:ok power:cycle:off->on dhcp script:linux done:linux:assets`,
		`callback`,
		`assign:local bootdev:pxe:ok power:cycle:on->\w+ dhcp script:local done:local:script`,
	} {
		if !regexp.MustCompile(want).MatchString(got) {
			t.Errorf("timeline lacks %q:\n%s\n%s", want, got, formatTimeline(evs))
		}
	}

	// Without PXE as boot device a power-on does not boot from the network.
	before := len(l.timeline(ipmiVMName))
	l.mustCLI("power", ipmiVMName, "off")
	if b.vmRunning() {
		t.Error("QEMU still runs after power off")
	}
	if out := l.mustCLI("power", ipmiVMName, "on"); !strings.Contains(out, "was off, now on") {
		t.Errorf("power on: %s", out)
	}
	time.Sleep(20 * time.Second)
	for _, ev := range l.timeline(ipmiVMName)[before:] {
		if ev.Type == events.DHCPOffer || ev.Type == events.Script {
			t.Errorf("the machine network-booted without PXE as boot device: %s", formatTimeline([]events.Event{ev}))
		}
	}
	if !strings.Contains(b.chassisLog(), "power on: boot default") {
		t.Errorf("chassis log:\n%s", b.chassisLog())
	}
	l.mustCLI("power", ipmiVMName, "off")

	// A blade waiting in its enclosure's power budget: the POST starts 65 s
	// after the power-on, past the 60 s after which a BMC clears boot flags
	// whose timeout was left on. provisiond disabled it before setting PXE,
	// so the machine still boots from the network, and the timeline shows
	// what the BMC read back.
	if err := b.sim.SetPowerOnDelay(65 * time.Second); err != nil {
		t.Fatal(err)
	}
	before = len(l.timeline(ipmiVMName))
	out, err = l.cli("assign", ipmiVMName, "linux", "--reboot", "--wait", "--timeout", "6m")
	t.Logf("provisiond assign vm1 linux --reboot --wait (POST 65 s after power-on):\n%s", out)
	if err != nil || !strings.Contains(out, "booted linux") {
		t.Errorf("a late POST did not PXE-boot (%v):\n%s\nchassis log:\n%s", err, out, b.chassisLog())
	}
	if log := b.chassisLog(); !regexp.MustCompile(`(?s)60 s timeout disabled.*boot device pxe\n.*POST in 65s.*power on: boot pxe`).MatchString(log) || strings.Contains(log, "expired") {
		t.Errorf("chassis log:\n%s", log)
	}
	var readback string
	for _, ev := range l.timeline(ipmiVMName)[before:] {
		if ev.Type == events.BMCBootDevice {
			readback = ev.Attrs["readback"]
		}
	}
	if readback != "valid pxe once bios, 60 s timeout off" {
		t.Errorf("the timeline's boot-device step reads back %q", readback)
	}
	l.mustCLI("power", ipmiVMName, "off")

	// The BMC password never reached the log, the timeline or listings.
	all := l.logBuf.String() + l.mustCLI("events", ipmiVMName, "-o", "json") + l.mustCLI("machine", "show", ipmiVMName, "-o", "json") + l.mustCLI("secret", "list")
	if strings.Contains(all, bmcPass) {
		t.Error("the BMC password appears in provisiond's log or API output")
	}
}
