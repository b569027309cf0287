package service

import (
	"cmp"
	"strings"

	"github.com/bmc-toolbox/common"

	"github.com/provisiond/provisiond/internal/inventory"
)

// HardwareFromDevice maps a bmclib inventory to a hardware record: identity,
// BIOS version, CPUs, DIMMs, drives and NIC ports. Empty DIMM slots and
// absent parts are left out.
func HardwareFromDevice(d *common.Device) inventory.Hardware {
	var a inventory.Hardware
	if d == nil {
		return a
	}
	a.Vendor, a.Model, a.Serial = usable(d.Vendor), usable(d.Model), usable(d.Serial)
	if a.Model == "" {
		a.Model = usable(d.ProductName)
	}
	if d.BIOS != nil && d.BIOS.Firmware != nil {
		a.BIOSVersion = usable(d.BIOS.Firmware.Installed)
	}
	for i, c := range d.CPUs {
		if c == nil || (c.Model == "" && c.Cores == 0) {
			continue
		}
		a.CPUs = append(a.CPUs, inventory.CPU{Socket: i, Model: strings.TrimSpace(c.Model), Cores: c.Cores, Threads: c.Threads})
	}
	for _, mem := range d.Memory {
		if mem == nil || mem.SizeBytes <= 0 {
			continue
		}
		a.DIMMs = append(a.DIMMs, inventory.DIMM{Slot: cmp.Or(mem.Slot, mem.ID), SizeGB: float64(mem.SizeBytes) / (1 << 30),
			Type: mem.Type, SpeedMTs: int(mem.ClockSpeedHz / 1e6), Part: usable(mem.PartNumber), Serial: usable(mem.Serial)})
	}
	for _, dr := range d.Drives {
		if dr == nil || dr.CapacityBytes <= 0 {
			continue
		}
		typ := ""
		switch strings.ToUpper(dr.Type) {
		case "HDD":
			typ = "hdd"
		case "SSD":
			typ = "ssd"
		}
		a.Disks = append(a.Disks, inventory.Disk{Device: cmp.Or(dr.LogicalName, dr.ID), Bus: strings.ToLower(dr.Protocol), Type: typ,
			SizeGB: float64(dr.CapacityBytes) / 1e9, Model: usable(dr.Model), Serial: usable(dr.Serial)})
	}
	for _, n := range d.NICs {
		if n == nil {
			continue
		}
		for _, p := range n.NICPorts {
			if p == nil || p.MacAddress == "" {
				continue
			}
			mac, err := inventory.NormalizeMAC(p.MacAddress)
			if err != nil {
				continue
			}
			a.NICs = append(a.NICs, inventory.NIC{MAC: mac, Name: p.ID, Chip: usable(n.Model), SpeedMbps: int(p.SpeedBits / 1e6)})
		}
	}
	return a
}

func usable(s string) string {
	s = strings.TrimSpace(s)
	if !inventory.Usable(s) {
		return ""
	}
	return s
}
