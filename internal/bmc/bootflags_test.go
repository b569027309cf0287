package bmc_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/bmc/ipmisim"
)

// Over IPMI a boot-device call disables the BMC's 60 s boot flag timeout
// first and reads the flags back: against ipmi_sim (with the boot-flags
// module that keeps parameters 3 and 5 as a BMC does) the result says the
// flags are valid for PXE, once, legacy BIOS, with the timeout off, and the
// BMC saw the timeout disabled before the device was set.
func TestIPMIBootFlagsReadBack(t *testing.T) {
	if why := ipmisim.Available(); why != "" {
		t.Skip("the IPMI boot flag test " + why)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	sim := ipmisim.Start(t, ipmisim.Options{Dir: t.TempDir(), Addr: "127.0.0.1", Port: port, User: "admin", Password: "flags-Pw-1",
		Running: `[ "$(cat $D/power 2>/dev/null)" = on ]`, Start: `echo on >$D/power`, Stop: `echo off >$D/power`})

	ctx := context.Background()
	c, err := bmc.NewBmclib(bmc.Options{Timeout: 20 * time.Second}).Dial(ctx, bmc.Endpoint{Machine: "BLD-006", Host: "127.0.0.1", Port: port,
		Protocol: bmc.IPMI, CipherSuite: 3, Username: "admin", Password: "flags-Pw-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	flags, err := c.SetBootDevice(ctx, bmc.BootPXE, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if flags == nil || !flags.Valid || flags.Device != bmc.BootPXE || flags.Persistent || flags.EFI || !flags.TimeoutDisabled || flags.TimeoutNote != "" {
		t.Fatalf("read back %+v", flags)
	}
	if got, want := flags.String(), "valid pxe once bios, 60 s timeout off"; got != want {
		t.Errorf("flags render %q, want %q", got, want)
	}
	log := sim.ChassisLog()
	disabled, set := strings.Index(log, "60 s timeout disabled"), strings.Index(log, "boot device pxe")
	if disabled < 0 || set < 0 || disabled > set {
		t.Errorf("the BMC did not see the timeout disabled before the device was set:\n%s", log)
	}
	if strings.Contains(log, "valid for 60 s") {
		t.Errorf("the flags were set with the 60 s timeout still on:\n%s", log)
	}
}
