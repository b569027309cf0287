// Package e2e holds provisiond's end-to-end tests: a lab of network
// namespaces on one bridge (192.0.2.0/24) with dnsmasq as the home router,
// provisiond as ProxyDHCP, and QEMU machines booting real firmware (SeaBIOS
// with its iPXE ROM, OVMF with its own PXE). They need root, iproute2,
// dnsmasq, qemu-system-x86, ovmf, ipxe and busybox-static, and skip with a
// message saying what is missing.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

// Lab addresses, all inside namespaces the test creates.
// The lab has two segments: 192.0.2.0/25 (br0: router, server s0, VMs,
// client c0) and 192.0.2.128/25 (br1: server s1, client c1, no router).
const (
	routerIP    = "192.0.2.1"
	serverIP    = "192.0.2.2"
	server2IP   = "192.0.2.130"
	httpPort    = 8080
	controlPort = 8443
)

// lab is one set of namespaces: lan (the bridge and the VMs' taps), router
// (dnsmasq), server (provisiond) and client (probes).
type lab struct {
	t       testing.TB
	prefix  string
	dir     string
	bin     string
	assets  string
	served  string
	lan     string
	router  string
	server  string
	client  string
	daemon  *exec.Cmd
	dmasq   *exec.Cmd
	logBuf  *lockedBuffer
	cleanup []func()
	// conf is added to the daemon's config file; dnsmasqArgs to the home
	// router's command line.
	conf        string
	dnsmasqArgs []string
	// extraNS are namespaces a test added (host), removed with the lab's.
	extraNS []string
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// requireLab skips unless everything the lab needs is here.
func requireLab(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("end-to-end tests need Linux network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end tests need root (network namespaces, ports 67/69): run them as root, as CI does")
	}
	for _, c := range []string{"ip", "dnsmasq", "qemu-system-x86_64", "apt-get", "cpio"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("end-to-end tests need %s: apt-get install iproute2 dnsmasq-base qemu-system-x86 ovmf ipxe busybox-static cpio", c)
		}
	}
	for _, f := range []string{"/usr/lib/ipxe/undionly.kpxe", "/usr/lib/ipxe/snponly.efi", "/usr/lib/ipxe/ipxe.efi", ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("end-to-end tests need %s: apt-get install ipxe ovmf", f)
		}
	}
	probe := labPrefix(t) + "-probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot create network namespaces here: %v: %s", err, out)
	}
	exec.Command("ip", "netns", "del", probe).Run()
}

// labPrefix names a test's namespaces after the process and the test, so
// tests running in parallel never share one.
func labPrefix(t testing.TB) string {
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	return fmt.Sprintf("pd%d%04x", os.Getpid()%100000, h.Sum32()&0xffff)
}

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

func repoRoot(t testing.TB) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// buildAssets makes (or reuses) the test kernel and initramfs.
func buildAssets(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("PROVISIOND_E2E_ASSETS")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "test", "e2e", ".cache")
	}
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "test", "e2e", "assets.sh"), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot build the test kernel and initramfs (test/e2e/assets.sh): %v\n%s", err, out)
	}
	return dir
}

func buildBinary(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "provisiond")
	// Static, as make build makes it: it is also the commissioning
	// image's /init.
	cmd := exec.Command("go", "build", "-ldflags", "-s -w", "-o", bin, "./cmd/provisiond")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building provisiond: %v\n%s", err, out)
	}
	return bin
}

func (l *lab) sh(ns string, args ...string) string {
	l.t.Helper()
	full := args
	if ns != "" {
		full = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	out, err := exec.Command(full[0], full[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(full, " "), err, out)
	}
	return string(out)
}

// newLab builds the namespaces, starts dnsmasq as the home router and
// provisiond as ProxyDHCP, with extra serve flags if given.
func newLab(t testing.TB, serveArgs ...string) *lab {
	return newLabWith(t, "", nil, serveArgs...)
}

// newLabWith is newLab with YAML added to the daemon's config file and
// arguments to dnsmasq's.
func newLabWith(t testing.TB, conf string, dnsmasqArgs []string, serveArgs ...string) *lab {
	return newLabBefore(t, conf, dnsmasqArgs, nil, serveArgs...)
}

// newLabBefore is newLabWith with before run once the namespaces and the
// router are up, before provisiond starts (peers it needs, such as etcd).
func newLabBefore(t testing.TB, conf string, dnsmasqArgs []string, before func(*lab), serveArgs ...string) *lab {
	requireLab(t)
	assets := buildAssets(t)
	dir := t.TempDir()
	p := labPrefix(t)
	l := &lab{t: t, prefix: p, dir: dir, assets: assets,
		lan: p + "-lan", router: p + "-rtr", server: p + "-srv", client: p + "-cli", logBuf: &lockedBuffer{}, conf: conf, dnsmasqArgs: dnsmasqArgs}
	l.bin = buildBinary(t, dir)
	// provisiond gets an assets directory of its own for each run (the
	// Talos cache must start empty); the test OS is copied in.
	l.served = filepath.Join(dir, "assets")
	os.MkdirAll(l.served, 0o755)
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		raw, err := os.ReadFile(filepath.Join(assets, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(l.served, f), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(l.close)
	for _, ns := range []string{l.lan, l.router, l.server, l.client} {
		l.sh("", "ip", "netns", "add", ns)
		l.sh(ns, "ip", "link", "set", "lo", "up")
	}
	for _, br := range []string{"br0", "br1"} {
		l.sh(l.lan, "ip", "link", "add", br, "type", "bridge")
		l.sh(l.lan, "ip", "link", "set", br, "up")
	}
	for _, h := range []struct{ ns, name, addr, br string }{
		{l.router, "r0", routerIP + "/25", "br0"},
		{l.server, "s0", serverIP + "/25", "br0"},
		{l.client, "c0", "", "br0"},
		{l.server, "s1", server2IP + "/25", "br1"},
		{l.client, "c1", "", "br1"},
	} {
		peer := "b-" + h.name
		l.sh(l.lan, "ip", "link", "add", peer, "type", "veth", "peer", "name", h.name, "netns", h.ns)
		l.sh(l.lan, "ip", "link", "set", peer, "master", h.br, "up")
		if h.addr != "" {
			l.sh(h.ns, "ip", "addr", "add", h.addr, "dev", h.name)
		}
		l.sh(h.ns, "ip", "link", "set", h.name, "up")
	}
	l.startDnsmasq()
	l.startFactory()
	if before != nil {
		before(l)
	}
	l.startDaemon(serveArgs...)
	return l
}

// host adds namespace ns to the lab, its interface ifname on br0 with
// addr (CIDR); the lab removes it.
func (l *lab) host(ns, ifname, addr string) {
	l.t.Helper()
	l.sh("", "ip", "netns", "add", ns)
	l.extraNS = append(l.extraNS, ns)
	l.sh(ns, "ip", "link", "set", "lo", "up")
	l.sh(l.lan, "ip", "link", "add", "b-"+ifname, "type", "veth", "peer", "name", ifname, "netns", ns)
	l.sh(l.lan, "ip", "link", "set", "b-"+ifname, "master", "br0", "up")
	l.sh(ns, "ip", "addr", "add", addr, "dev", ifname)
	l.sh(ns, "ip", "link", "set", ifname, "up")
}

// The fake Image Factory listens inside the server namespace.
const factoryAddr = "127.0.0.1:18090"

// startFactory runs the test binary as a fake Image Factory in the server
// namespace; its "Talos" kernel and initramfs are the test OS.
func (l *lab) startFactory() {
	cmd := exec.Command("ip", "netns", "exec", l.server, os.Args[0], "-test.run", "^TestFactoryHelper$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), "PROVISIOND_E2E_FACTORY="+factoryAddr+";"+l.assets)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting the fake factory: %v", err)
	}
	l.cleanup = append(l.cleanup, func() {
		cmd.Process.Kill()
		cmd.Wait()
		if l.t.Failed() {
			l.t.Logf("fake factory output:\n%s", out.String())
		}
	})
}

func (l *lab) close() {
	for i := len(l.cleanup) - 1; i >= 0; i-- {
		l.cleanup[i]()
	}
	for _, c := range []*exec.Cmd{l.daemon, l.dmasq} {
		if c != nil && c.Process != nil {
			c.Process.Kill()
			c.Wait()
		}
	}
	for _, ns := range append([]string{l.lan, l.router, l.server, l.client}, l.extraNS...) {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	if l.t.Failed() {
		l.t.Logf("provisiond log:\n%s", l.logBuf.String())
	}
}

func (l *lab) startDnsmasq() {
	lease := filepath.Join(l.dir, "dnsmasq.leases")
	cmd := exec.Command("ip", "netns", "exec", l.router, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--interface=r0", "--bind-interfaces", "--dhcp-authoritative",
		"--dhcp-range=192.0.2.100,192.0.2.126,255.255.255.128,10m", "--dhcp-option=option:router,"+routerIP,
		"--dhcp-leasefile="+lease, "--log-dhcp", "--pid-file=")
	cmd.Args = append(cmd.Args, l.dnsmasqArgs...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting dnsmasq: %v", err)
	}
	l.dmasq = cmd
	l.cleanup = append(l.cleanup, func() {
		if l.t.Failed() {
			l.t.Logf("dnsmasq log:\n%s", out.String())
		}
	})
}

func (l *lab) startDaemon(extra ...string) {
	data := filepath.Join(l.dir, "data")
	conf := filepath.Join(l.dir, "provisiond.yaml")
	os.WriteFile(conf, []byte("talos:\n  factory_url: http://"+factoryAddr+"\n  version: v1.9.5\n"+l.conf), 0o644)
	cmd := exec.Command("ip", "netns", "exec", l.server, l.bin, "serve", "--config", conf,
		"--interface", "s0,s1", "--data-dir", data, "--assets-dir", l.served, "--log-level", "debug")
	cmd.Args = append(cmd.Args, extra...)
	cmd.Stdout, cmd.Stderr = l.logBuf, l.logBuf
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting provisiond: %v", err)
	}
	l.daemon = cmd
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := l.cli("status"); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.t.Fatalf("provisiond did not come up within 20s:\n%s", l.logBuf.String())
}

// self is the lab's own daemon as the CLI reaches it: inside the server
// namespace, pinning the certificate it finds in the data directory next
// to the token, with a client config in the lab's directory (never the
// user's own).
func (l *lab) self() *instance {
	return &instance{l: l, ns: l.server, data: filepath.Join(l.dir, "data"), clientConf: filepath.Join(l.dir, "client.yaml")}
}

// cli runs the provisiond CLI against the lab's daemon.
func (l *lab) cli(args ...string) (string, error) { return l.self().cli(args...) }

// cliStdin runs the CLI with stdin.
func (l *lab) cliStdin(stdin string, args ...string) string {
	l.t.Helper()
	cmd := l.self().command(args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		l.t.Fatalf("provisiond %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (l *lab) mustCLI(args ...string) string {
	l.t.Helper()
	return l.self().must(args...)
}

func (l *lab) timeline(name string) []events.Event {
	l.t.Helper()
	return l.self().timeline(name)
}

func (l *lab) machine(name string) (*inventory.Machine, error) {
	out, err := l.cli("machine", "show", name, "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var m inventory.Machine
	return &m, json.Unmarshal([]byte(out), &m)
}

// vm is a QEMU machine on the lab bridge.
type vm struct {
	name   string
	cmd    *exec.Cmd
	serial string
	done   chan error
}

type firmware int

const (
	seabios firmware = iota
	ovmf
	// ovmfHTTP is OVMF with its PXE turned off (fw_cfg): it boots
	// through UEFI HTTP boot, no TFTP at all.
	ovmfHTTP
)

// vmAssetTag is the SMBIOS chassis asset tag of the lab's machine with mac
// (what an operator sets in the BIOS setup, for asset keys).
func vmAssetTag(mac string) string {
	return "E2E-ASSET-" + strings.ReplaceAll(mac[9:], ":", "")
}

// startVM boots a QEMU machine (TCG) with the given firmware and MAC.
func (l *lab) startVM(name, mac string, fw firmware) *vm {
	l.t.Helper()
	return l.startVMMem(name, mac, fw, "512")
}

// startVMMem is startVM with the memory size (MiB) given.
func (l *lab) startVMMem(name, mac string, fw firmware, mem string) *vm {
	l.t.Helper()
	tap := l.tap(name)
	serial := filepath.Join(l.dir, name+".serial")
	args := []string{"netns", "exec", l.lan, "qemu-system-x86_64", "-accel", "tcg", "-m", mem, "-smp", "1",
		"-uuid", vmUUID(mac), "-smbios", "type=1,serial=E2E-" + strings.ReplaceAll(mac[9:], ":", ""),
		"-smbios", "type=3,asset=" + vmAssetTag(mac),
		"-display", "none", "-monitor", "none", "-no-reboot", "-serial", "file:" + serial,
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no"}
	switch fw {
	case seabios:
		// SeaBIOS runs the NIC's iPXE option ROM.
		args = append(args, "-machine", "pc", "-device", "virtio-net-pci,netdev=n0,mac="+mac+",bootindex=1")
	case ovmf, ovmfHTTP:
		vars := filepath.Join(l.dir, name+"-vars.fd")
		raw, err := os.ReadFile(ovmfVars)
		if err != nil {
			l.t.Fatal(err)
		}
		if err := os.WriteFile(vars, raw, 0o600); err != nil {
			l.t.Fatal(err)
		}
		// romfile= drops the iPXE ROM: OVMF's own PXE must talk to us.
		args = append(args, "-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars,
			"-device", "virtio-net-pci,netdev=n0,mac="+mac+",romfile=,bootindex=1")
		if fw == ovmfHTTP {
			// OVMF tries PXEv4, PXEv6, then HTTPv4: with both PXE turned
			// off, HTTP boot over IPv4 is its first network boot.
			args = append(args, "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
				"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
		}
	}
	return l.runQEMU(name, serial, args)
}

// runQEMU starts QEMU (ip args...) as machine name, its serial console
// in serial; the console is logged when the test fails.
func (l *lab) runQEMU(name, serial string, args []string) *vm {
	l.t.Helper()
	cmd := exec.Command("ip", args...)
	var qout lockedBuffer
	cmd.Stdout, cmd.Stderr = &qout, &qout
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting QEMU: %v", err)
	}
	v := &vm{name: name, cmd: cmd, serial: serial, done: make(chan error, 1)}
	go func() { v.done <- cmd.Wait() }()
	l.cleanup = append(l.cleanup, func() {
		cmd.Process.Kill()
		if l.t.Failed() {
			s, _ := os.ReadFile(serial)
			l.t.Logf("%s QEMU output:\n%s\nserial console:\n%s", name, qout.String(), s)
		}
	})
	return v
}

// tap adds machine name's tap device to the lab's bridge.
func (l *lab) tap(name string) string {
	l.t.Helper()
	tap := "t-" + name
	if len(tap) > 15 {
		tap = tap[:15]
	}
	l.sh(l.lan, "ip", "tuntap", "add", tap, "mode", "tap")
	l.sh(l.lan, "ip", "link", "set", tap, "master", "br0", "up")
	return tap
}

// vmUUID derives a stable SMBIOS UUID from the MAC.
func vmUUID(mac string) string {
	return "e2e00000-0000-4000-8000-" + strings.ReplaceAll(mac, ":", "")
}

// waitSerial waits until the serial console holds marker, and returns the
// console text.
func (v *vm) waitSerial(ctx context.Context, marker string) (string, error) {
	for {
		raw, _ := os.ReadFile(v.serial)
		if bytes.Contains(raw, []byte(marker)) {
			return string(raw), nil
		}
		select {
		case <-ctx.Done():
			return string(raw), fmt.Errorf("%s: no %q on the serial console: %w", v.name, marker, ctx.Err())
		case err := <-v.done:
			raw, _ = os.ReadFile(v.serial)
			if bytes.Contains(raw, []byte(marker)) {
				return string(raw), nil
			}
			return string(raw), fmt.Errorf("%s: QEMU exited (%v) before %q appeared", v.name, err, marker)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (v *vm) stop() {
	v.cmd.Process.Kill()
}

// serialLine returns the first console line starting with prefix, without it.
func serialLine(console, prefix string) string {
	sc := bufio.NewScanner(strings.NewReader(console))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if i := strings.Index(line, prefix); i >= 0 {
			return strings.TrimSpace(line[i+len(prefix):])
		}
	}
	return ""
}

// machineScript is the shell script a test BMC's power-on runs: a SeaBIOS
// machine with mem MiB on the lab's bridge; with "pxe" as its argument (the boot device
// was set to PXE, once) its NIC keeps its iPXE option ROM and boots first,
// otherwise the ROM is dropped and it looks for a disk it does not have
// (no network boot).
func (l *lab) machineScript(mac, serial, tap, mem string) string {
	return fmt.Sprintf(`#!/bin/sh
if [ "$1" = pxe ]; then nic="virtio-net-pci,netdev=n0,mac=%[1]s,bootindex=1"; else nic="virtio-net-pci,netdev=n0,mac=%[1]s,romfile="; fi
exec ip netns exec %[2]s qemu-system-x86_64 -accel tcg -m %[6]s -smp 1 -machine pc -display none -monitor none -no-reboot \
  -device virtio-rng-pci -uuid %[3]s -chardev file,id=ser,path=%[4]s,append=on -serial chardev:ser \
  -netdev tap,id=n0,ifname=%[5]s,script=no,downscript=no -device "$nic"
`, mac, l.lan, vmUUID(mac), serial, tap, mem)
}
