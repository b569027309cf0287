package bmc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/bmc/redfishtest"
)

func endpoint(b *redfishtest.BMC, machine, password string) bmc.Endpoint {
	host, port := b.Addr()
	return bmc.Endpoint{Machine: machine, Host: host, Port: port, Protocol: bmc.Redfish, Username: "root", Password: password}
}

func TestRedfishRecordedPayloads(t *testing.T) {
	dir := redfishtest.FixturesDir(t)
	for name, fx := range map[string]redfishtest.Fixture{"dell-idrac9": redfishtest.DellR6515, "supermicro-x12": redfishtest.SupermicroX12} {
		t.Run(name, func(t *testing.T) {
			b := redfishtest.Start(t, dir, fx, "", "root", "calvin-Sec")
			dl := bmc.NewBmclib(bmc.Options{Timeout: 20 * time.Second})
			ctx := context.Background()

			if _, err := dl.Dial(ctx, endpoint(b, "R-1", "wrong-Pass")); err == nil {
				t.Fatal("a wrong password logged in")
			} else if strings.Contains(err.Error(), "wrong-Pass") || !strings.Contains(err.Error(), "R-1") || !strings.Contains(err.Error(), "(redfish)") {
				t.Errorf("wrong password: %v", err)
			}

			c, err := dl.Dial(ctx, endpoint(b, "R-1", "calvin-Sec"))
			if err != nil {
				t.Fatal(err)
			}
			if st, err := c.PowerState(ctx); err != nil || st != bmc.On {
				t.Fatalf("power state %s, %v", st, err)
			}
			if _, err := c.SetBootDevice(ctx, bmc.BootPXE, false, true); err != nil {
				t.Fatalf("boot device: %v", err)
			}
			if err := c.SetPower(ctx, bmc.PowerOff); err != nil {
				t.Fatalf("power off: %v", err)
			}
			if st, _ := c.PowerState(ctx); st != bmc.Off {
				t.Errorf("after off: %s", st)
			}
			if err := c.SetPower(ctx, bmc.PowerOnAction); err != nil {
				t.Fatalf("power on: %v", err)
			}
			if st, _ := c.PowerState(ctx); st != bmc.On {
				t.Errorf("after on: %s", st)
			}
			dev, err := c.Inventory(ctx)
			if err != nil {
				t.Fatalf("inventory: %v", err)
			}
			if dev.Vendor != fx.Vendor || dev.Model != fx.Model || dev.Serial != fx.Serial {
				t.Errorf("inventory identity %q %q %q", dev.Vendor, dev.Model, dev.Serial)
			}
			if dev.BIOS == nil || dev.BIOS.Firmware == nil || dev.BIOS.Firmware.Installed != fx.BIOS {
				t.Errorf("BIOS %+v", dev.BIOS)
			}
			c.Close(ctx)

			if got := strings.Join(b.Resets(), ","); got != "ForceOff,On" {
				t.Errorf("reset actions %s", got)
			}
			patches, _ := b.Patches()
			if len(patches) == 0 {
				t.Fatal("no PATCH of the boot override")
			}
			boot, _ := patches[0]["Boot"].(map[string]any)
			if boot["BootSourceOverrideTarget"] != "Pxe" || boot["BootSourceOverrideEnabled"] != "Once" || boot["BootSourceOverrideMode"] != "UEFI" {
				t.Errorf("boot override %v", patches[0])
			}
			if !b.LoggedOut() {
				t.Error("the session was not closed")
			}
		})
	}
}

// iLO 4 (a BL460c Gen8's BMC) knows no BootSourceOverrideMode: the PXE
// override that sticks is the PATCH with only the target and once, with
// no mode, no UEFI target and no HTTP boot URI.
func TestRedfishBootOverrideOnILO4(t *testing.T) {
	b := redfishtest.Start(t, redfishtest.FixturesDir(t), redfishtest.DellR6515, "", "root", "calvin-Sec")
	b.RejectMode(true)
	ctx := context.Background()
	c, err := bmc.NewBmclib(bmc.Options{Timeout: 20 * time.Second}).Dial(ctx, endpoint(b, "BLD-006", "calvin-Sec"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.SetBootDevice(ctx, bmc.BootPXE, false, false); err != nil {
		t.Fatalf("PXE once on iLO 4: %v", err)
	}
	sent, accepted := b.Patches()
	if len(accepted) != 1 {
		t.Fatalf("%d boot override PATCHes taken (%d sent: %v), want 1", len(accepted), len(sent), sent)
	}
	boot, _ := accepted[0]["Boot"].(map[string]any)
	if len(boot) != 2 || boot["BootSourceOverrideTarget"] != "Pxe" || boot["BootSourceOverrideEnabled"] != "Once" {
		t.Errorf("the override iLO 4 took: %v, want only target Pxe and enabled Once", accepted[0])
	}
}
