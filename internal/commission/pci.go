package commission

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// pciAlias reads the vendor, device and base class patterns of a
// module's PCI alias (pci:v00008086d000010D3sv*sd*bc*sc*i*; ahci's
// pci:v*d*sv*sd*bc01sc06i01* matches by class alone).
var pciAlias = regexp.MustCompile(`^pci:v([0-9A-Fa-f*?]+)d([0-9A-Fa-f*?]+)sv.*?sd.*?bc([0-9A-Fa-f*?]+)sc`)

// ParseBusID reads iPXE's ${netX/busid} (01:80:86:10:0e: bus type 1 is
// PCI, then vendor and device); ok is false for anything else.
func ParseBusID(s string) (vendor, device uint16, ok bool) {
	f := strings.Split(strings.TrimSpace(s), ":")
	if len(f) != 5 || f[0] != "01" {
		return 0, 0, false
	}
	v, err1 := strconv.ParseUint(f[1]+f[2], 16, 16)
	d, err2 := strconv.ParseUint(f[3]+f[4], 16, 16)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint16(v), uint16(d), true
}

// Driver names the module of man that drives the network controller
// vendor:device ("" when none does), as the kernel matches a module's
// aliases: its base class is 02 (network); its subsystem, unknown here,
// is taken to match.
func (man *Manifest) Driver(vendor, device uint16) string {
	v, d := fmt.Sprintf("%08X", vendor), fmt.Sprintf("%08X", device)
	aliases := make([]string, 0, len(man.PCI))
	for a := range man.PCI {
		aliases = append(aliases, a)
	}
	sort.Strings(aliases)
	for _, a := range aliases {
		m := pciAlias.FindStringSubmatch(a)
		if m == nil {
			continue
		}
		vm, _ := path.Match(strings.ToUpper(m[1]), v)
		dm, _ := path.Match(strings.ToUpper(m[2]), d)
		cm, _ := path.Match(strings.ToUpper(m[3]), "02")
		if vm && dm && cm {
			return man.PCI[a]
		}
	}
	return ""
}
