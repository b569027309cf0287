package daemon

import (
	"context"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/audit"
	bmcsvc "github.com/provisiond/provisiond/internal/bmc/service"
	"github.com/provisiond/provisiond/internal/inventory"
)

// slurmPower is the BMC service as Slurm's power saving uses it.
type slurmPower struct {
	bmcs   *bmcsvc.Service
	store  inventory.Backend
	models func() []audit.Model
}

// PXENext sets PXE as the next boot, in the firmware mode the machine or
// its model is bound to (as a reprovision does).
func (p slurmPower) PXENext(ctx context.Context, machine string) error {
	efi := false
	if m, err := p.store.Machine(machine); err == nil {
		fw, _ := audit.Firmware(m, p.models())
		efi = fw == inventory.FirmwareUEFI
	}
	_, err := p.bmcs.BootDevice(ctx, machine, api.BootDeviceRequest{Device: "pxe", EFI: efi})
	return err
}

// Power runs a power action and returns the state after it.
func (p slurmPower) Power(ctx context.Context, machine, action string) (string, error) {
	res, err := p.bmcs.Power(ctx, machine, action)
	if err != nil {
		return "", err
	}
	return res.State, nil
}
