package e2e

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc/ipmisim"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

// commissionKernel is Debian's linux-image-amd64 unpacked (make test's
// kernel-tree): the kernel the commissioning image boots.
func commissionKernel(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "test", "e2e", ".cache", "kernel")
	if vm, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*")); len(vm) == 0 {
		msg := "the commissioning test needs Debian's linux-image-amd64 unpacked in " + dir + " (make kernel-tree)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// smbiosBlade is what QEMU adds to its SMBIOS tables to make the machine
// a c7000 blade in ASGARD's bay 5: two type-17 structures (DSP0134 3.x,
// 0x28 bytes), 1 GiB each in the two sockets' first slots (instead of
// QEMU's own one DIMM), and HP's type 204 (System/Rack Locator: strings
// for rack, enclosure, model, bay and enclosure serial at 0x04-0x07 and
// 0x0A, the enclosure's bays and those filled at 0x08-0x09).
func smbiosBlade() []byte {
	var out []byte
	for i, loc := range []string{"PROC 1 DIMM 1", "PROC 2 DIMM 1"} {
		f := make([]byte, 0x28)
		f[0], f[1] = 17, 0x28
		binary.LittleEndian.PutUint16(f[2:], uint16(0x1100+i))
		binary.LittleEndian.PutUint16(f[4:], 0x1000)   // QEMU's memory array
		binary.LittleEndian.PutUint16(f[6:], 0xFFFE)   // no error information
		binary.LittleEndian.PutUint16(f[8:], 72)       // total width (ECC)
		binary.LittleEndian.PutUint16(f[0x0A:], 64)    // data width
		binary.LittleEndian.PutUint16(f[0x0C:], 1024)  // MB
		f[0x0E] = 0x09                                 // DIMM
		f[0x10], f[0x11] = 1, 2                        // locator, bank
		f[0x12] = 0x18                                 // DDR3
		binary.LittleEndian.PutUint16(f[0x13:], 1<<13) // registered
		binary.LittleEndian.PutUint16(f[0x15:], 1333)
		f[0x17], f[0x18], f[0x1A] = 3, 4, 5 // maker, serial, part number
		f[0x1B] = 2                         // ranks
		binary.LittleEndian.PutUint16(f[0x20:], 1333)
		out = append(out, f...)
		for _, s := range []string{loc, fmt.Sprintf("BANK %d", i), "HP", fmt.Sprintf("E2E0D1M%d", i+1), "664690-001"} {
			out = append(out, s...)
			out = append(out, 0)
		}
		out = append(out, 0)
	}
	loc := make([]byte, 0x0B)
	loc[0], loc[1] = 204, 0x0B
	binary.LittleEndian.PutUint16(loc[2:], 0xCC00)
	loc[0x04], loc[0x05], loc[0x06], loc[0x07], loc[0x0A] = 1, 2, 3, 4, 5
	loc[0x08], loc[0x09] = 16, 3
	for _, s := range []string{"HOMELAB", "ASGARD", "BladeSystem c7000 Enclosure G2", "5", "CZ372137H3"} {
		loc = append(loc, s...)
		loc = append(loc, 0)
	}
	return append(append(out, loc...), 0)
}

// commissionVM is what a commissioning test machine is made of.
type commissionVM struct {
	// nic is QEMU's NIC model (virtio-net-pci; e1000 has no module in
	// the image).
	nic string
	// full: two sockets, 2 GiB in two DIMMs, a virtio and a SATA disk;
	// else one CPU, 512 MiB, no disk.
	full bool
}

// startCommissionVM boots a machine from its NIC (SeaBIOS with the iPXE
// ROM), with an RNG as libvirt gives its guests. QEMU exits when the
// machine powers off.
func (l *lab) startCommissionVM(name, mac string, c commissionVM) *vm {
	l.t.Helper()
	tap := l.tap(name)
	serial := filepath.Join(l.dir, name+".serial")
	args := []string{"netns", "exec", l.lan, "qemu-system-x86_64", "-accel", "tcg", "-machine", "pc", "-uuid", vmUUID(mac),
		"-smbios", "type=1,manufacturer=HP,product=ProLiant BL460c Gen8,serial=E2E-" + strings.ReplaceAll(mac[9:], ":", ""),
		"-display", "none", "-monitor", "none", "-no-reboot", "-serial", "file:" + serial,
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no",
		"-device", c.nic + ",netdev=n0,mac=" + mac + ",bootindex=1", "-device", "virtio-rng-pci"}
	if !c.full {
		args = append(args, "-m", "512", "-smp", "1")
	} else {
		dimms := filepath.Join(l.dir, name+"-dimms.bin")
		if err := os.WriteFile(dimms, smbiosBlade(), 0o644); err != nil {
			l.t.Fatal(err)
		}
		var disks []string
		for _, d := range []struct {
			file string
			size int64
		}{{name + "-vda.img", 8 << 30}, {name + "-sda.img", 16 << 30}} {
			p := filepath.Join(l.dir, d.file)
			if err := os.WriteFile(p, nil, 0o644); err != nil || os.Truncate(p, d.size) != nil {
				l.t.Fatalf("disk image %s: %v", p, err)
			}
			disks = append(disks, p)
		}
		args = append(args, "-m", "2G", "-smp", "2,sockets=2,cores=1,threads=1", "-smbios", "file="+dimms,
			"-drive", "if=none,id=d0,format=raw,file="+disks[0], "-device", "virtio-blk-pci,drive=d0,serial=E2E-VDA",
			"-device", "ich9-ahci,id=ahci0",
			"-drive", "if=none,id=d1,format=raw,file="+disks[1], "-device", "ide-hd,drive=d1,bus=ahci0.0,serial=E2E-SDA,model=E2E SATA DISK")
	}
	return l.runQEMU(name, serial, args)
}

// The lab's commissioning machines.
const (
	commissionMAC = "52:54:00:e2:c0:05"
	noDriverMAC   = "52:54:00:e2:c0:06"
	noDHCPMAC     = "52:54:00:e2:c0:07"
)

// TestCommission is the acceptance of commissioning, on real firmware and
// Debian's kernel. A machine provisiond does not know PXE-boots (with
// commission.auto) into the image built from provisiond's own binary,
// reports two sockets, both DIMMs, both disks and its NIC with its
// driver, and powers off (QEMU exits); machine adopt makes it BLD-005,
// keeping its history. Beside it, the bad paths: a NIC with no module in
// the image, and a DHCP server that never answers the OS (dnsmasq
// answers only PXE for that MAC). At the same time a machine known by
// MAC, with ipmi_sim as its BMC, is commissioned by provisiond commission
// --wait; then once more with its report refused (a BMC action began a new
// boot meanwhile, so the nonce is stale).
func TestCommission(t *testing.T) {
	t.Parallel() // VMs under TCG: two tests share the two cores
	requireLab(t)
	kernel := commissionKernel(t)
	if why := ipmisim.Available(); why != "" {
		t.Skip("the commissioning test's machine with a BMC " + why)
	}
	l := newLabWith(t, "commission:\n  kernel_dir: "+kernel+"\n  auto: true\n  report_within: 1m\n",
		[]string{"--dhcp-vendorclass=set:pxe,PXEClient", "--dhcp-host=" + noDHCPMAC + ",set:nodhcp", "--dhcp-ignore=tag:nodhcp,tag:!pxe"})

	out := l.mustCLI("assets", "pull", "commission")
	t.Logf("provisiond assets pull commission:\n%s", out)
	list := l.mustCLI("assets", "list")
	t.Logf("provisiond assets list:\n%s", list)
	if !strings.Contains(list, "commission/") {
		t.Fatalf("the commissioning image is not in assets list:\n%s", list)
	}

	// BLD-005 is in the inventory by its bay only (no MAC yet), as the
	// homelab's blades were typed in; the report matches it by the bay
	// its firmware names (HP's type 204) and says so, but only machine
	// adopt gives it the MAC.
	inv := filepath.Join(l.dir, "asgard.yaml")
	os.WriteFile(inv, []byte("systems:\n  - name: ASGARD\n    kind: enclosure\n    bays: 16\nmachines:\n  - name: BLD-005\n    enclosure: ASGARD\n    bay: 5\n    profile: local\n"), 0o644)
	l.mustCLI("import", inv, "--apply")

	vms := []*vm{
		l.startCommissionVM("bld5", commissionMAC, commissionVM{nic: "virtio-net-pci", full: true}),
		l.startCommissionVM("nodrv", noDriverMAC, commissionVM{nic: "e1000"}),
		l.startCommissionVM("nodhcp", noDHCPMAC, commissionVM{nic: "virtio-net-pci"}),
	}
	// Meanwhile a machine known by MAC, through its IPMI BMC:
	// commission --wait (checked below).
	b := l.startIPMISim(t)
	l.cliStdin(bmcPass, "secret", "set", "bmc-vm1")
	l.mustCLI("machine", "add", ipmiVMName, "--mac", ipmiVMMAC, "--profile", "local",
		"--bmc-address", bmcIP, "--bmc-user", bmcUser, "--bmc-password-secret", "bmc-vm1", "--bmc-cipher-suite", "3")
	type result struct {
		out string
		err error
	}
	known := make(chan result, 1)
	go func() {
		out, err := l.cli("commission", ipmiVMName, "--wait", "--timeout", "8m")
		known <- result{out, err}
	}()
	for _, v := range vms {
		select {
		case err := <-v.done:
			t.Logf("%s: QEMU exited (%v): the machine powered off", v.name, err)
		case <-time.After(8 * time.Minute):
			t.Fatalf("%s did not power off within 8 minutes", v.name)
		}
	}
	consoles := map[string]string{}
	for _, v := range vms {
		raw, _ := os.ReadFile(v.serial)
		consoles[v.name] = string(raw)
		t.Logf("%s console:\n%s", v.name, grepLines(string(raw), "provisiond-commission:", "Power down"))
	}
	for _, want := range []string{"provisiond-commission: modules: ok", "provisiond-commission: dhcp: ok", "provisiond-commission: report: posted", "provisiond-commission: powering off"} {
		if !strings.Contains(consoles["bld5"], want) {
			t.Errorf("bld5's console lacks %q", want)
		}
	}

	disc := inventory.DiscoveredName(commissionMAC)
	var reported *events.Event
	evs := l.timeline(disc)
	for i, ev := range evs {
		t.Logf("%s %s %s", ev.Time.Format("15:04:05.000"), ev.Type, ev.Details())
		if ev.Type == events.FactsReported && ev.Attrs["source"] == "commission" {
			reported = &evs[i]
		}
	}
	if reported == nil || reported.Attrs["then"] != "poweroff" || reported.Attrs["cpus"] != "2" || reported.Attrs["dimms"] != "2" || reported.Attrs["matches"] != "BLD-005 by bay" {
		t.Fatalf("no commissioning report on %s's timeline: %+v", disc, reported)
	}
	out = l.mustCLI("machine", "adopt", disc, "BLD-005")
	t.Logf("provisiond machine adopt %s BLD-005:\n%s", disc, out)
	m, err := l.machine("BLD-005")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("provisiond machine show BLD-005:\n%s", l.mustCLI("machine", "show", "BLD-005"))
	checkCommissioned(t, m)
	if m.Bay != 5 || m.Enclosure != "ASGARD" || len(m.MACs) != 1 || m.MACs[0] != commissionMAC {
		t.Errorf("adoption lost the record or its MAC: %+v", m)
	}
	if _, err := l.machine(disc); err == nil {
		t.Errorf("%s is still there after its adoption", disc)
	}
	kept := false
	for _, ev := range l.timeline("BLD-005") {
		kept = kept || (ev.Type == events.FactsReported && ev.Attrs["source"] == "commission")
	}
	if !kept {
		t.Error("BLD-005's timeline lacks the discovered machine's history")
	}

	// No module for its NIC: the console names the controller; the
	// timeline says the machine did not report, report_within after its
	// image went out.
	if c := consoles["nodrv"]; !strings.Contains(c, "nic: FAILED") || !strings.Contains(c, "no driver in this image for the network controller(s) PCI") || !strings.Contains(c, "8086:100e") {
		t.Errorf("nodrv's console does not say what failed")
	}
	nicStep := waitEvent(t, l, inventory.DiscoveredName(noDriverMAC), time.Minute, func(ev events.Event) bool {
		return ev.Type == events.CommissionStep && ev.Attrs["step"] == "nic"
	})
	t.Logf("nodrv: %s %s", nicStep.Type, nicStep.Details())
	if !strings.Contains(nicStep.Attrs["detail"], "PCI 8086:100e") {
		t.Errorf("nodrv's step does not name its NIC: %+v", nicStep)
	}
	failedStep := waitEvent(t, l, inventory.DiscoveredName(noDriverMAC), 2*time.Minute, func(ev events.Event) bool { return ev.Type == events.CommissionFailed })
	t.Logf("nodrv: %s %s", failedStep.Type, failedStep.Details())
	// DHCP never answers the OS: it reports over iPXE's address, and the
	// timeline says so.
	dhcpStep := waitEvent(t, l, inventory.DiscoveredName(noDHCPMAC), time.Minute, func(ev events.Event) bool {
		return ev.Type == events.CommissionStep && ev.Attrs["step"] == "dhcp"
	})
	t.Logf("nodhcp: %s %s", dhcpStep.Type, dhcpStep.Details())
	if !strings.Contains(dhcpStep.Attrs["detail"], "using iPXE's address") || !strings.Contains(consoles["nodhcp"], "report: posted") {
		t.Errorf("nodhcp: %+v", dhcpStep)
	}

	// The machine known by MAC, commissioned through its IPMI BMC.
	r := <-known
	out, err = r.out, r.err
	t.Logf("provisiond commission vm1 --wait:\n%s", out)
	if err != nil || !regexp.MustCompile(`vm1\s+reported, off\s+1x QEMU`).MatchString(out) {
		t.Fatalf("commission --wait: %v", err)
	}
	if b.vmRunning() {
		t.Error("vm1 is still running after it reported and the BMC said off")
	}
	m, err = l.machine(ipmiVMName)
	if err != nil {
		t.Fatal(err)
	}
	if m.Observed == nil || m.Observed.Source != "commission" || len(m.CPUs) != 1 || len(m.NICs) == 0 || m.Profile != "local" || m.Once != nil {
		t.Errorf("vm1 after commissioning: %+v", m)
	}

	// Again, and once its image went out a BMC action begins a new boot:
	// the report carries the old boot's nonce and is refused; the
	// timeline says why, commission --wait fails, the machine powers off.
	res := make(chan string, 1)
	go func() {
		out, _ := l.cli("commission", ipmiVMName, "--wait", "--timeout", "8m")
		res <- out
	}()
	waitEvent(t, l, ipmiVMName, 6*time.Minute, func(ev events.Event) bool {
		return ev.Type == events.BootDone && ev.Attrs["profile"] == "commission" && ev.Time.After(m.Observed.Time)
	})
	l.mustCLI("bootdev", ipmiVMName, "pxe")
	select {
	case out = <-res:
	case <-time.After(6 * time.Minute):
		t.Fatal("commission --wait did not end after the refused report")
	}
	t.Logf("provisiond commission vm1 --wait (report refused):\n%s", out)
	if !regexp.MustCompile(`vm1\s+report refused\s+nonce: `).MatchString(out) {
		t.Errorf("commission --wait does not say the report was refused")
	}
	refusal := waitEvent(t, l, ipmiVMName, time.Minute, func(ev events.Event) bool {
		return ev.Type == events.SecretRefused && ev.Attrs["what"] == "facts"
	})
	t.Logf("vm1: %s %s", refusal.Type, refusal.Details())
	for deadline := time.Now().Add(time.Minute); b.vmRunning() && time.Now().Before(deadline); {
		time.Sleep(time.Second)
	}
	if b.vmRunning() {
		t.Error("vm1 did not power off after its report was refused")
	}
}

// waitEvent polls a machine's timeline for an event.
func waitEvent(t *testing.T, l *lab, name string, within time.Duration, match func(events.Event) bool) events.Event {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if out, err := l.cli("events", name, "-n", "500", "-o", "json"); err == nil {
			var evs []events.Event
			if json.Unmarshal([]byte(out), &evs) == nil {
				for _, ev := range evs {
					if match(ev) {
						return ev
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the awaited step is not on the timeline after %s", name, within)
		}
		time.Sleep(2 * time.Second)
	}
}

// checkCommissioned checks what the acceptance asks the inventory to show.
func checkCommissioned(t *testing.T, m *inventory.Machine) {
	t.Helper()
	if len(m.CPUs) != 2 || m.CPUs[0].Model == "" || m.CPUs[1].Socket != 2 {
		t.Errorf("CPUs: %+v", m.CPUs)
	}
	if len(m.DIMMs) != 2 || m.DIMMs[0].Slot != "PROC 1 DIMM 1" || m.DIMMs[1].Slot != "PROC 2 DIMM 1" || m.DIMMs[0].SizeGB != 1 || m.DIMMs[1].SizeGB != 1 ||
		m.DIMMs[0].PartNumber != "664690-001" || m.DIMMs[0].Type == "" {
		t.Errorf("DIMMs: %+v", m.DIMMs)
	}
	buses := map[string]inventory.Disk{}
	for _, d := range m.Disks {
		buses[d.Bus] = d
	}
	if v, s := buses["virtio"], buses["SATA"]; len(m.Disks) != 2 || v.Serial != "E2E-VDA" || v.SizeGB != 8.6 || s.Model != "E2E SATA DISK" || s.SizeGB != 17.2 {
		t.Errorf("disks: %+v", m.Disks)
	}
	boot := false
	for _, n := range m.NICs {
		if n.MAC == commissionMAC && n.Boot && n.Driver == "virtio_net" {
			boot = true
		}
	}
	if !boot {
		t.Errorf("NICs: %+v", m.NICs)
	}
	if m.Serial != "E2E-e2c005" || !inventory.SameUUID(m.UUID, vmUUID(commissionMAC)) || m.Model != "ProLiant BL460c Gen8" {
		t.Errorf("identity: %s %s %s", m.Model, m.Serial, m.UUID)
	}
}
