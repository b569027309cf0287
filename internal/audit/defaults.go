package audit

import (
	"sort"

	"github.com/provisiond/provisiond/internal/inventory"
)

// DefaultRoles are the role requirements from the homelab's own table
// (Talos worker, OpenStack compute, control node, Slurm compute, Ceph OSD).
func DefaultRoles() []inventory.Role {
	return []inventory.Role{
		{Name: "talos-worker", Description: "Talos / Kubernetes worker; RAM is the limit",
			MemoryGB: inventory.Range{Min: 32, Max: 64}, BootDisk: true, OSDDisks: 1, Rank: "memory"},
		{Name: "openstack-compute", Description: "OpenStack compute with local ephemeral disk",
			MemoryGB: inventory.Range{Min: 32, Max: 64}, BootDisk: true, ScratchDisks: 1, Rank: "memory"},
		{Name: "control", Description: "Control plane (Kubernetes, OpenStack) or the Slurm controller; a small boot disk",
			MemoryGB: inventory.Range{Min: 32}, BootDisk: true, Rank: "memory"},
		{Name: "slurm-compute", Description: "Stateless Slurm compute node (boots into RAM); as much RAM as possible, the 1 GbE network is the limit",
			MemoryGB: inventory.Range{Min: 16}, Rank: "memory"},
		{Name: "ceph-osd", Description: "Ceph OSD host; more and bigger disks",
			MemoryGB: inventory.Range{Min: 16, Max: 32}, BootDisk: true, OSDDisks: 2, Rank: "disks"},
	}
}

// DefaultModels are figures for the homelab's hardware: sockets, DIMM
// slots, disk bays and running power (homelab.md's measurements: a C7000
// alone 200-400 W, each BL460c Gen8 blade 100-150 W more, the x3550 M3
// 100-150 W, the X4150 150-200 W). A Gen8 blade's range spans its CPUs,
// the E5-2600 family from 80 W (E5-2603) to 135 W (E5-2690).
func DefaultModels() []Model {
	return []Model{
		// Gen8 has no UEFI; the x3550 M3's UEFI cannot network-boot
		// iPXE (ipxe.efi is too large for the NIC's PXE buffer), so it
		// boots legacy BIOS too.
		{Match: "BL460c Gen8", Sockets: 2, DIMMSlots: 16, DiskBays: 2, DIMMSizesGB: []float64{2, 4, 8, 16, 32},
			PowerW: inventory.Range{Min: 100, Max: 150}, CPUTDPW: inventory.Range{Min: 80, Max: 135}, Firmware: inventory.FirmwareBIOS},
		{Match: "x3550 M3", Sockets: 2, DIMMSlots: 18, DIMMSizesGB: []float64{1, 2, 4, 8, 16},
			PowerW: inventory.Range{Min: 100, Max: 150}, Firmware: inventory.FirmwareBIOS},
		{Match: "X4150", Sockets: 2, DIMMSlots: 16, PowerW: inventory.Range{Min: 150, Max: 200}},
		{Match: "c7000", PowerW: inventory.Range{Min: 200, Max: 400}},
	}
}

// MergeRoles returns base with every role of over replacing (or adding to)
// the one of the same name, sorted by name.
func MergeRoles(base, over []inventory.Role) []inventory.Role {
	byName := map[string]inventory.Role{}
	for _, r := range base {
		byName[r.Name] = r
	}
	for _, r := range over {
		byName[r.Name] = r
	}
	out := make([]inventory.Role, 0, len(byName))
	for _, r := range byName {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
