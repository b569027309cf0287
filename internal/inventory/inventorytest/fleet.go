// Package inventorytest builds inventories for tests and benchmarks.
package inventorytest

import (
	"fmt"

	"github.com/provisiond/provisiond/internal/inventory"
)

// Fleet returns n machines shaped like the homelab's blades (two CPUs, a
// DIMM per channel on one socket, two disks, a NIC, a BMC, a profile and
// labels), named fleet-00000 up, with MACs 52:54:02:xx:xx:xx. Every seventh
// has a DIMM missing and every eleventh no BMC, so an audit has findings.
func Fleet(n int) []inventory.Machine {
	ms := make([]inventory.Machine, 0, n)
	for i := range n {
		m := inventory.Machine{
			Name:    fmt.Sprintf("fleet-%05d", i),
			MACs:    []string{fmt.Sprintf("52:54:02:%02x:%02x:%02x", i>>16&255, i>>8&255, i&255)},
			Profile: "linux",
			Params:  map[string]string{"kernel": "vmlinuz", "initrd": "initrd.img"},
			Hardware: inventory.Hardware{
				Vendor: "HP", Model: "ProLiant BL460c Gen8", Role: "slurm",
				Rack: fmt.Sprintf("R%02d", i/40), Unit: 1 + i%40,
				Labels: map[string]string{"state": "ready"},
				CPUs: []inventory.CPU{
					{Socket: 1, Model: "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", Cores: 8, Threads: 16},
					{Socket: 2, Model: "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", Cores: 8, Threads: 16},
				},
				DIMMs: []inventory.DIMM{{Slot: "PROC 1 DIMM 1", SizeGB: 8}, {Slot: "PROC 1 DIMM 4", SizeGB: 8},
					{Slot: "PROC 2 DIMM 1", SizeGB: 8}, {Slot: "PROC 2 DIMM 4", SizeGB: 8}},
				Disks: []inventory.Disk{{Device: "sda", SizeGB: 300, Use: "boot"}, {Device: "sdb", SizeGB: 300}},
				NICs:  []inventory.NIC{{Chip: "BCM57810", Driver: "bnx2x", Boot: true}},
				BMC:   &inventory.BMC{Address: fmt.Sprintf("192.0.2.%d", 1+i%250), Protocol: "ipmi"},
			},
		}
		if i%7 == 0 {
			m.DIMMs = m.DIMMs[:3]
		}
		if i%11 == 0 {
			m.BMC = nil
		}
		ms = append(ms, m)
	}
	return ms
}
