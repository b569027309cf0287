package boot

import (
	"strconv"
	"strings"
)

// Features is a set of iPXE features: bit n is feature code n of DHCP
// option 175, as iPXE announces them (iPXE's include/ipxe/dhcp.h).
type Features uint64

// iPXE feature codes (sub-options of option 175) that provisiond's scripts
// depend on.
const (
	FeatureHTTP    = 19 // http:// URIs
	FeatureBzImage = 24 // Linux kernels on BIOS
	FeatureEFI     = 36 // EFI images: Linux kernels on UEFI
	FeatureMenu    = 39 // the menu profile's menu and choose
)

// AllFeatures stands for an iPXE that announced no feature list.
const AllFeatures = ^Features(0)

// featureNames are iPXE's names of its feature codes.
var featureNames = map[int]string{16: "pxe-ext", 17: "iscsi", 18: "aoe", FeatureHTTP: "http", 20: "https", 21: "tftp", 22: "ftp",
	23: "dns", FeatureBzImage: "bzimage", 25: "multiboot", 26: "slam", 27: "srp", 32: "nbi", 33: "pxe", 34: "elf", 35: "comboot",
	FeatureEFI: "efi", 37: "fcoe", 38: "vlan", FeatureMenu: "menu", 40: "sdi", 41: "nfs"}

// Has reports whether feature code is in f.
func (f Features) Has(code int) bool {
	return code >= 0 && code < 64 && f&(1<<code) != 0
}

// With returns f with feature code added (codes past 63 are not kept).
func (f Features) With(code int) Features {
	if code < 0 || code > 63 {
		return f
	}
	return f | 1<<code
}

// String names the features in f (codes without a name as numbers).
func (f Features) String() string {
	if f == AllFeatures {
		return "every feature (no list sent)"
	}
	var names []string
	for code := range 64 {
		if !f.Has(code) {
			continue
		}
		if n, ok := featureNames[code]; ok {
			names = append(names, n)
		} else {
			names = append(names, strconv.Itoa(code))
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// ScriptFeatures is what provisiond's scripts need of an iPXE on firmware
// fw: HTTP, the menu, and the image format that boots a Linux kernel there.
func ScriptFeatures(fw string) Features {
	f := Features(0).With(FeatureHTTP).With(FeatureMenu)
	if fw == FirmwareBIOS {
		return f.With(FeatureBzImage)
	}
	return f.With(FeatureEFI)
}

// ParseFeatures reads option 175's encapsulated options (code, length,
// value) into a feature set. A truncated entry ends the list.
func ParseFeatures(opt []byte) Features {
	var f Features
	for i := 0; i+1 < len(opt); {
		code, l := int(opt[i]), int(opt[i+1])
		if i+2+l > len(opt) {
			break
		}
		// Option 175 also carries settings (e.g. 235, the version), not
		// features: they are above 63 and dropped by With.
		f = f.With(code)
		i += 2 + l
	}
	return f
}
