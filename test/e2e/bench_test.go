package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkWholeBoot times a QEMU machine (TCG) from power-on to the test
// kernel running (its command line on the serial console), with SeaBIOS
// (the NIC's iPXE ROM), with OVMF (the firmware's own PXE) and with OVMF's
// UEFI HTTP boot (provisiond only: dnsmasq has no HTTP server), first with
// provisiond as ProxyDHCP next to the home router (iPXE binary over TFTP
// where the firmware needs one, kernel and initrd over HTTP; on its
// defaults, then with the ROM's own iPXE chained), then with dnsmasq as the usual all-in-one PXE server
// in its place (iPXE binary, script, kernel and initrd over TFTP). bench/boot.sh runs it; -benchtime=Nx boots each case N times.
// It is never part of the test suite's assertions.
func BenchmarkWholeBoot(b *testing.B) {
	l := newLab(b)
	// Many home routers announce IPv6 (router advertisements), many do
	// not: without them iPXE waits 15 s for IPv6 autoconfiguration after
	// each DHCP, whoever serves the boot. Both are timed.
	l.sh(l.router, "ip", "-6", "addr", "add", "fd00:192:0:2::1/64", "dev", "r0", "nodad")
	cmdline := "console=ttyS0 panic=-1 quiet"
	macs := map[firmware]string{seabios: "52:54:00:be:00:01", ovmf: "52:54:00:be:00:02", ovmfHTTP: "52:54:00:be:00:03"}
	fwName := map[firmware]string{seabios: "bios", ovmf: "uefi", ovmfHTTP: "uefi-http"}
	for fw, mac := range macs {
		l.mustCLI("machine", "add", "bench-"+fwName[fw], "--mac", mac, "--profile", "linux",
			"--param", "kernel=vmlinuz", "--param", "initrd=initrd.img", "--param", "cmdline="+cmdline, "--param", "callback=false")
	}
	boots := 0
	ra := true
	run := func(name string, fws ...firmware) {
		if !ra {
			name += "-nora"
		}
		for _, fw := range fws {
			b.Run(name+"/"+fwName[fw], func(b *testing.B) {
				var total time.Duration
				for range b.N {
					boots++
					start := time.Now()
					total += l.timeBoot(b, fmt.Sprintf("bb%d", boots), macs[fw], fw)
					if strings.HasPrefix(name, "provisiond") {
						// Where the time went, step by step, from power-on.
						var steps strings.Builder
						for _, ev := range l.timeline("bench-" + fwName[fw]) {
							if ev.Time.After(start) {
								fmt.Fprintf(&steps, "  +%5.1fs %-14s %s %s\n", ev.Time.Sub(start).Seconds(), ev.Type, ev.Attrs["file"], ev.Attrs["port"])
							}
						}
						b.Logf("%s boot %d, provisiond's timeline from power-on:\n%s", fwName[fw], boots, steps.String())
					}
				}
				b.ReportMetric(total.Seconds()/float64(b.N), "s/boot")
			})
		}
	}
	// Many home routers send no IPv6 router advertisements: each iPXE
	// start then waits for IPv6 autoconfiguration to time out.
	ra = false
	l.restartRouter(b, "plain", false)
	run("provisiond", seabios, ovmf, ovmfHTTP)
	ra = true
	l.restartRouter(b, "ra", true)
	// provisiond on its defaults (boot.chain_ipxe: auto): SeaBIOS's iPXE
	// ROM has what the scripts use and gets its script at once; OVMF's own
	// PXE loads snponly.efi over TFTP; OVMF with its PXE turned off boots
	// through UEFI HTTP boot (snponly.efi over HTTP, no TFTP).
	run("provisiond", seabios, ovmf, ovmfHTTP)
	// With boot.chain_ipxe: always (applied by SIGHUP), the ROM's iPXE is
	// chained into provisiond's own undionly.kpxe first: a second iPXE
	// start, as every boot was before chaining became automatic.
	conf := filepath.Join(l.dir, "provisiond.yaml")
	raw, _ := os.ReadFile(conf)
	os.WriteFile(conf, append(raw, "boot:\n  chain_ipxe: always\n"...), 0o644)
	l.daemon.Process.Signal(syscall.SIGHUP)
	time.Sleep(time.Second)
	run("provisiond-chained", seabios)
	// UEFI with ipxe.efi (iPXE's own drivers, 850 KB) instead of the
	// default snponly.efi (iPXE on the firmware's network driver, 174 KB).
	os.WriteFile(conf, append(raw, "boot:\n  uefi_x64: ipxe.efi\n"...), 0o644)
	l.daemon.Process.Signal(syscall.SIGHUP)
	time.Sleep(time.Second)
	run("provisiond-ipxe-efi", ovmf)
	os.WriteFile(conf, raw, 0o644)

	// The usual setup: dnsmasq hands out addresses and boot files and
	// serves everything over TFTP; provisiond is stopped.
	l.daemon.Process.Kill()
	l.daemon.Wait()
	l.daemon = nil
	tftp := filepath.Join(l.dir, "tftp")
	os.MkdirAll(tftp, 0o755)
	for _, f := range []string{"/usr/lib/ipxe/undionly.kpxe", "/usr/lib/ipxe/ipxe.efi", filepath.Join(l.served, "vmlinuz"), filepath.Join(l.served, "initrd.img")} {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(tftp, filepath.Base(f)), raw, 0o644)
	}
	os.WriteFile(filepath.Join(tftp, "boot.ipxe"), []byte("#!ipxe\nkernel tftp://"+routerIP+"/vmlinuz initrd=initrd.img "+cmdline+"\ninitrd tftp://"+routerIP+"/initrd.img\nboot\n"), 0o644)
	pxe := []string{"--enable-tftp", "--tftp-root=" + tftp,
		"--dhcp-match=set:ipxe,175", "--dhcp-match=set:efi64,option:client-arch,7", "--dhcp-match=set:efi64,option:client-arch,9",
		"--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe", "--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi", "--dhcp-boot=tag:ipxe,boot.ipxe"}
	l.restartRouter(b, "pxe", true, pxe...)
	run("dnsmasq", seabios, ovmf)
	ra = false
	l.restartRouter(b, "pxe-plain", false, pxe...)
	run("dnsmasq", seabios, ovmf)
}

// restartRouter replaces the lab's router with dnsmasq handing out the
// same addresses, announcing IPv6 (router advertisements) when ra is set,
// plus extra options (the PXE server's); name tells its leases and log apart. It
// offers without pinging the address first (--no-ping): a fresh router
// would otherwise hold its first offer to each machine about 3 s, and only
// the first case timed after a restart would pay it.
func (l *lab) restartRouter(b *testing.B, name string, ra bool, extra ...string) {
	l.dmasq.Process.Kill()
	l.dmasq.Wait()
	args := []string{"netns", "exec", l.router, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--user=root",
		"--port=0", "--interface=r0", "--bind-interfaces", "--dhcp-authoritative",
		"--dhcp-range=192.0.2.100,192.0.2.126,255.255.255.128,10m", "--dhcp-option=option:router," + routerIP, "--no-ping",
		"--dhcp-leasefile=" + filepath.Join(l.dir, "dnsmasq-"+name+".leases"), "--pid-file="}
	if ra {
		args = append(args, "--enable-ra", "--dhcp-range=::,constructor:r0,ra-only")
	}
	args = append(args, extra...)
	cmd := exec.Command("ip", args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting dnsmasq (%s): %v", name, err)
	}
	l.dmasq = cmd
	l.cleanup = append(l.cleanup, func() {
		if b.Failed() {
			b.Logf("dnsmasq (%s) log:\n%s", name, out.String())
		}
	})
	time.Sleep(time.Second)
}

// timeBoot starts a machine and returns how long it took until the test
// kernel printed its command line.
func (l *lab) timeBoot(b *testing.B, name, mac string, fw firmware) time.Duration {
	b.Helper()
	start := time.Now()
	v := l.startVM(name, mac, fw)
	exited := false
	defer func() {
		if !exited {
			v.stop()
			<-v.done
		}
	}()
	deadline := start.Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		raw, _ := os.ReadFile(v.serial)
		// The marker's whole line: the console may be caught mid-line.
		if i := bytes.Index(raw, []byte("PROVISIOND-TEST-CMDLINE:")); i >= 0 && bytes.IndexByte(raw[i:], '\n') > 0 {
			d := time.Since(start)
			if cl := serialLine(string(raw), "PROVISIOND-TEST-CMDLINE:"); !strings.Contains(cl, "console=ttyS0") {
				b.Fatalf("%s booted with command line %q", name, cl)
			}
			return d
		}
		select {
		case err := <-v.done:
			exited = true
			b.Fatalf("%s: QEMU exited (%v) before the kernel ran; serial console:\n%s", name, err, raw)
		case <-time.After(100 * time.Millisecond):
		}
	}
	raw, _ := os.ReadFile(v.serial)
	b.Fatalf("%s: the test kernel did not run within 5 minutes; serial console:\n%s", name, raw)
	return 0
}
