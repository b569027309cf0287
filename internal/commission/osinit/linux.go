package osinit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/netboot"
	"golang.org/x/sys/unix"

	"github.com/provisiond/provisiond/internal/agent"
	"github.com/provisiond/provisiond/internal/commission"
)

// Linux is the real System: the kernel the image booted.
type Linux struct {
	// NICWait bounds the wait for the boot NIC (default 30 s); DHCPWait
	// the DHCP exchange (default 30 s).
	NICWait, DHCPWait time.Duration
	// Shell is the static busybox the image carries ("" or missing: no
	// shell for a hold).
	ShellPath string
}

// Mount implements System. What is mounted already stays as it is.
func (Linux) Mount() error {
	var errs []error
	for _, m := range []struct{ dir, fs string }{{"/proc", "proc"}, {"/sys", "sysfs"}, {"/dev", "devtmpfs"}, {"/run", "tmpfs"}, {"/tmp", "tmpfs"}} {
		if mounted(m.dir) {
			continue
		}
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mounting %s on %s: %w", m.fs, m.dir, err))
		}
	}
	return errors.Join(errs...)
}

// mounted reports whether dir is a mount point (by /proc's mount table).
func mounted(dir string) bool {
	raw, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// LoadModules implements System: commission.ModulesList in order.
func (Linux) LoadModules() (int, []string, error) {
	raw, err := os.ReadFile(commission.ModulesList)
	if err != nil {
		return 0, nil, fmt.Errorf("reading the module list: %w", err)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, nil, err
	}
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	n := 0
	var failed []string
	for _, rel := range strings.Fields(string(raw)) {
		if err := loadModule(filepath.Join(dir, rel)); err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", strings.TrimSuffix(filepath.Base(rel), ".ko"), err))
			continue
		}
		n++
	}
	return n, failed, nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// WaitNIC implements System.
func (l Linux) WaitNIC(ctx context.Context, mac string) (string, error) {
	wait := l.NICWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if name := nicByMAC(mac); name != "" {
			return name, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no network interface with this MAC after %s: %s", wait, noDriver())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func nicByMAC(mac string) string {
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if strings.EqualFold(i.HardwareAddr.String(), mac) {
			return i.Name
		}
	}
	return ""
}

// noDriver names the PCI network controllers no module of the image
// drove.
func noDriver() string {
	devs, _ := filepath.Glob("/sys/bus/pci/devices/*")
	var out []string
	for _, d := range devs {
		class, _ := os.ReadFile(filepath.Join(d, "class"))
		if !strings.HasPrefix(strings.TrimSpace(string(class)), "0x02") {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "driver")); err == nil {
			continue
		}
		v, _ := os.ReadFile(filepath.Join(d, "vendor"))
		p, _ := os.ReadFile(filepath.Join(d, "device"))
		out = append(out, fmt.Sprintf("PCI %s %s:%s", filepath.Base(d), strings.TrimPrefix(strings.TrimSpace(string(v)), "0x"), strings.TrimPrefix(strings.TrimSpace(string(p)), "0x")))
	}
	if len(out) == 0 {
		return "no network controller without a driver was found"
	}
	return "no driver in this image for the network controller(s) " + strings.Join(out, ", ") + " (add its module to commission.drivers)"
}

// Configure implements System: DHCP, else the fallback address.
// It refuses outside the image's process 1: configuring an interface
// rewrites /etc/resolv.conf, which on a host is not ours to touch.
func (l Linux) Configure(ctx context.Context, ifname, fallback, gateway string) (string, bool, error) {
	if os.Getpid() != 1 {
		return ifname, false, errors.New("not configuring the network: only the commissioning image's init (process 1) does; on a host it would rewrite /etc/resolv.conf")
	}
	if _, err := netboot.IfUp(ifname, 20*time.Second); err != nil {
		return ifname, false, fmt.Errorf("bringing %s up: %w", ifname, err)
	}
	wait := l.DHCPWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	conf, server, derr := dhcp(ctx, ifname, wait)
	if derr == nil {
		if err := netboot.ConfigureInterface(ifname, conf); err != nil {
			return ifname, true, fmt.Errorf("configuring %s: %w", ifname, err)
		}
		return fmt.Sprintf("%s %s from DHCP server %s", ifname, conf.Addresses[0].IPNet.String(), server), true, nil
	}
	conf, err := static(fallback, gateway)
	if err != nil {
		return fmt.Sprintf("%s: DHCP: %v", ifname, derr), false, err
	}
	if err := netboot.ConfigureInterface(ifname, conf); err != nil {
		return ifname, false, fmt.Errorf("configuring %s: %w", ifname, err)
	}
	return fmt.Sprintf("%s: DHCP: %v; using iPXE's address %s", ifname, derr, conf.Addresses[0].IPNet.String()), false, nil
}

func dhcp(ctx context.Context, ifname string, wait time.Duration) (*netboot.NetConf, string, error) {
	c, err := nclient4.New(ifname, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	type result struct {
		conf   *netboot.NetConf
		server string
		err    error
	}
	// The exchange runs apart so that the wait bounds it: a DHCP
	// transaction ID comes from the kernel's random generator, which
	// blocks until it is ready (a machine without RDRAND or a hardware
	// RNG, early in boot).
	done := make(chan result, 1)
	go func() {
		for ctx.Err() == nil {
			lease, err := c.Request(ctx)
			if err != nil {
				time.Sleep(time.Second)
				continue
			}
			conf, err := netboot.GetNetConfFromPacketv4(lease.ACK)
			if err != nil {
				done <- result{err: err}
				return
			}
			done <- result{conf: conf, server: lease.ACK.ServerIdentifier().String()}
			return
		}
	}()
	select {
	case r := <-done:
		return r.conf, r.server, r.err
	case <-ctx.Done():
		if !entropyReady() {
			return nil, "", fmt.Errorf("no answer in %s (the kernel's random generator was not ready: no RDRAND or hardware RNG)", wait)
		}
		return nil, "", fmt.Errorf("no answer in %s", wait)
	}
}

// entropyReady reports whether the kernel's random generator is ready
// (getrandom would not block).
func entropyReady() bool {
	var b [1]byte
	_, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK)
	return err == nil
}

// static is the fallback: ADDR/MASK (dotted or bits) from iPXE.
func static(addr, gateway string) (*netboot.NetConf, error) {
	if addr == "" {
		return nil, errors.New("no fallback address (iPXE's) on the command line")
	}
	ip, mask, ok := strings.Cut(addr, "/")
	a, err := netip.ParseAddr(ip)
	if err != nil || !ok || !a.Is4() {
		return nil, fmt.Errorf("fallback address %q: want ADDR/MASK", addr)
	}
	var m net.IPMask
	if bits, err := netip.ParsePrefix("0.0.0.0/" + mask); err == nil {
		m = net.CIDRMask(bits.Bits(), 32)
	} else if mm, err := netip.ParseAddr(mask); err == nil && mm.Is4() {
		b := mm.As4()
		m = net.IPv4Mask(b[0], b[1], b[2], b[3])
	} else {
		return nil, fmt.Errorf("fallback address %q: bad mask", addr)
	}
	conf := &netboot.NetConf{Addresses: []netboot.AddrConf{{IPNet: net.IPNet{IP: a.AsSlice(), Mask: m}}}}
	if g, err := netip.ParseAddr(gateway); err == nil && g.Is4() && !g.IsUnspecified() {
		conf.Routers = []net.IP{g.AsSlice()}
	}
	return conf, nil
}

// Host implements System.
func (Linux) Host() agent.Host { return agent.Host{} }

// PowerOff implements System.
func (Linux) PowerOff() {
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// Shell implements System: busybox's shell on the console.
func (l Linux) Shell() bool {
	if l.ShellPath == "" {
		return false
	}
	if _, err := os.Stat(l.ShellPath); err != nil {
		return false
	}
	_ = exec.Command(l.ShellPath, "--install", "-s", filepath.Dir(l.ShellPath)).Run()
	con, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer con.Close()
	cmd := exec.Command(l.ShellPath, "sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = con, con, con
	cmd.Env = []string{"PATH=/bin:/sbin", "HOME=/", "TERM=linux", "PS1=commission# "}
	_ = cmd.Run()
	return true
}

// Console opens the console for the run's messages and makes it the
// process's standard streams (an initramfs without /dev/console starts
// init with none).
func Console() *os.File {
	con, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return os.Stderr
	}
	for _, fd := range []int{0, 1, 2} {
		_ = unix.Dup2(int(con.Fd()), fd)
	}
	return con
}
