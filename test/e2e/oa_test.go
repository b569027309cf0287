package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/enclosure/oa/oatest"
	"github.com/provisiond/provisiond/internal/events"
)

// ASGARD's Onboard Administrator lives on the lab's first segment, in a
// namespace of its own; the blade in bay 3 is a QEMU machine.
const (
	oaIP    = "192.0.2.11"
	oaUser  = "Administrator"
	oaPass  = "e2e-OA-pass-31"
	oaVMMAC = "52:54:00:e2:e3:03"
	oaEnv   = "PROVISIOND_E2E_OA"
)

// TestOAHelper is the test OA, run by TestOAAssign inside the OA's
// namespace: HTTPS on oaIP:443, and the blade's power is a QEMU machine
// (qemu.sh in the directory it is given: "pxe" when the OA was told to PXE
// boot once, "disk" otherwise). What it does goes to oa.log there.
func TestOAHelper(t *testing.T) {
	dir := os.Getenv(oaEnv)
	if dir == "" {
		t.Skip("run by TestOAAssign")
	}
	logf, err := os.OpenFile(filepath.Join(dir, "oa.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	say := func(format string, a ...any) {
		fmt.Fprintf(logf, time.Now().Format("15:04:05")+" "+format+"\n", a...)
	}
	ts := oatest.New("ASGARD", "CZ372137H3", oaUser, oaPass, &oatest.Blade{Bay: 3, Product: "ProLiant BL460c Gen8", PartNumber: "641016-B21",
		Serial: "CZ3403YLMV", UUID: "641016CZ3403YLMV", CUUID: vmUUID(oaVMMAC), MACs: []string{oaVMMAC},
		CPUs: []string{"QEMU Virtual CPU version 2.5+"}, CPUMHz: 2000, MemoryMB: 512})
	ts.Managers = [2]string{oaIP, ""}
	var mu sync.Mutex
	var vm *exec.Cmd
	ts.OnPower = func(bay int, on, pxe bool) {
		mu.Lock()
		defer mu.Unlock()
		if vm != nil {
			vm.Process.Kill()
			vm.Wait()
			vm = nil
			say("bay %d: power off", bay)
		}
		if !on {
			return
		}
		boot := "disk"
		if pxe {
			boot = "pxe"
		}
		vm = exec.Command("sh", filepath.Join(dir, "qemu.sh"), boot)
		vm.Stdout, vm.Stderr = logf, logf
		if err := vm.Start(); err != nil {
			say("bay %d: starting QEMU: %v", bay, err)
			vm = nil
			return
		}
		say("bay %d: power on: boot %s", bay, boot)
	}
	if _, err := ts.ServeTLS(oaIP + ":443"); err != nil {
		t.Fatal(err)
	}
	fmt.Println("serving")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	mu.Lock()
	if vm != nil {
		vm.Process.Kill()
		vm.Wait()
	}
	mu.Unlock()
}

// startOA starts the test OA in its namespace with the blade's QEMU script,
// and returns the directory holding its log.
func (l *lab) startOA(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(l.dir, "oa")
	ns := l.prefix + "-oa"
	os.MkdirAll(dir, 0o700)
	l.sh("", "ip", "netns", "add", ns)
	l.cleanup = append(l.cleanup, func() { exec.Command("ip", "netns", "del", ns).Run() })
	l.sh(ns, "ip", "link", "set", "lo", "up")
	l.sh(l.lan, "ip", "link", "add", "b-o0", "type", "veth", "peer", "name", "o0", "netns", ns)
	l.sh(l.lan, "ip", "link", "set", "b-o0", "master", "br0", "up")
	l.sh(ns, "ip", "addr", "add", oaIP+"/25", "dev", "o0")
	l.sh(ns, "ip", "link", "set", "o0", "up")
	tap := l.tap("bld003")
	serial := filepath.Join(l.dir, "bld003.serial")
	qemu := l.machineScript(oaVMMAC, serial, tap, "512")
	if err := os.WriteFile(filepath.Join(dir, "qemu.sh"), []byte(qemu), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestOAHelper$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), oaEnv+"="+dir)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l.cleanup = append(l.cleanup, func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		if t.Failed() {
			lg, _ := os.ReadFile(filepath.Join(dir, "oa.log"))
			s, _ := os.ReadFile(serial)
			t.Logf("test OA output:\n%s\noa.log:\n%s\nBLD-003 serial console:\n%s", out.String(), lg, s)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "serving") {
		if time.Now().After(deadline) {
			t.Fatalf("the test OA did not start:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return dir
}

// TestOAAssign: ASGARD's OA as the source and the controller. enclosure
// sync on an inventory holding only the enclosure creates BLD-003 with its
// MAC; assign --reboot --wait through the OA sets PXE once, then powers the
// blade, which boots the profile with its kernel arguments; locate and the
// power steps are on the timeline; power off through the OA stops it.
func TestOAAssign(t *testing.T) {
	t.Parallel() // VMs under TCG: two tests share the two cores
	requireLab(t)
	l := newLab(t)
	dir := l.startOA(t)
	serial := filepath.Join(l.dir, "bld003.serial")

	l.cliStdin(oaPass, "secret", "set", "asgard-oa")
	encl := filepath.Join(l.dir, "asgard.yaml")
	os.WriteFile(encl, []byte("systems:\n  - name: ASGARD\n    kind: enclosure\n    bays: 16\n    blade_control: oa\n"+
		"    bmc: {protocol: oa, address: "+oaIP+", username: "+oaUser+", password_secret: asgard-oa}\n"), 0o644)
	l.mustCLI("import", encl, "--apply")
	out := l.mustCLI("enclosure", "sync", "ASGARD", "--apply")
	t.Logf("provisiond enclosure sync ASGARD --apply:\n%s", out)
	if !regexp.MustCompile(`3\s+BLD-003\s+create`).MatchString(out) {
		t.Fatalf("sync did not create BLD-003:\n%s", out)
	}
	m, err := l.machine("BLD-003")
	if err != nil || len(m.MACs) != 1 || m.MACs[0] != oaVMMAC || m.Enclosure != "ASGARD" || m.Bay != 3 {
		t.Fatalf("BLD-003 after the sync: %+v, %v", m, err)
	}
	l.mustCLI("machine", "set", "BLD-003", "--param", "kernel=vmlinuz", "--param", "initrd=initrd.img",
		"--param", "cmdline=console=ttyS0 panic=-1 quiet", "--kernel-args", "e2e.machine=BLD-003")

	out, err = l.cli("assign", "BLD-003", "linux", "--reboot", "--wait", "--timeout", "6m")
	t.Logf("provisiond assign BLD-003 linux --reboot --wait:\n%s", out)
	if err != nil || !strings.Contains(out, "booted linux") {
		t.Fatalf("assign through the OA (%v):\n%s", err, out)
	}
	v := &vm{name: "BLD-003", serial: serial, done: make(chan error)}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	console, err := v.waitSerial(ctx, "PROVISIOND-TEST-DONE")
	cancel()
	if err != nil {
		t.Fatalf("the test OS did not finish booting: %v", err)
	}
	if cl := serialLine(console, "PROVISIOND-TEST-CMDLINE:"); !strings.Contains(cl, "e2e.machine=BLD-003") {
		t.Errorf("kernel command line: %q", cl)
	}
	if lg, _ := os.ReadFile(filepath.Join(dir, "oa.log")); !strings.Contains(string(lg), "bay 3: power on: boot pxe") {
		t.Errorf("the OA did not power the blade on into PXE:\n%s", lg)
	}

	if out := l.mustCLI("locate", "BLD-003"); !strings.Contains(out, "locator LED blink (through the OA)") {
		t.Errorf("locate: %s", out)
	}
	l.mustCLI("power", "BLD-003", "off")
	if lg, _ := os.ReadFile(filepath.Join(dir, "oa.log")); !strings.Contains(string(lg), "bay 3: power off") {
		t.Errorf("power off through the OA did not stop the blade:\n%s", lg)
	}
	var steps []string
	for _, ev := range l.timeline("BLD-003") {
		switch ev.Type {
		case events.BMCBootDevice, events.BMCPower, events.BMCLocate:
			steps = append(steps, ev.Type+":"+ev.Attrs["via"]+":"+ev.Attrs["result"])
		case events.BootDone:
			steps = append(steps, "done:"+ev.Attrs["profile"])
		}
	}
	got := strings.Join(steps, " ")
	if want := "bmc.bootdev:oa:ok bmc.power:oa:ok done:linux bmc.locate:oa:ok bmc.power:oa:ok"; got != want {
		t.Errorf("timeline\n %s\nwant\n %s", got, want)
	}
}
