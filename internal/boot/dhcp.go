// Package boot makes provisiond's boot decisions: which file a PXE client is
// offered, and which iPXE script a machine gets. It is pure: machine record,
// profile and request facts in, a decision or a script out. No I/O.
package boot

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/provisiond/provisiond/internal/inventory"
)

// Client architectures (DHCP option 93, RFC 4578 and the IANA registry).
const (
	ArchBIOS         = 0
	ArchUEFIx86      = 6
	ArchUEFIx64      = 7
	ArchUEFIBC       = 9 // EFI byte code; in practice sent by x86-64 UEFI
	ArchUEFIARM32    = 10
	ArchUEFIARM64    = 11
	ArchHTTPUEFIx86  = 15
	ArchHTTPUEFIx64  = 16
	ArchHTTPUEFIARM  = 18
	ArchHTTPUEFIARM6 = 19
)

// Firmware kinds a decision can land on.
const (
	FirmwareBIOS      = "bios"
	FirmwareUEFIx86   = "uefi-x86"
	FirmwareUEFIx64   = "uefi-x64"
	FirmwareUEFIARM64 = "uefi-arm64"
)

// Vendor classes (option 60) provisiond answers.
const (
	ClassPXE  = "PXEClient"
	ClassHTTP = "HTTPClient"
)

// Request holds the facts of a DHCP request that matter for the decision.
type Request struct {
	// MAC is the client's hardware address (normalised).
	MAC string
	// Class is option 60 as sent.
	Class string
	// Arch is option 93's first value; HasArch says whether it was sent.
	Arch    uint16
	HasArch bool
	// IPXE is true when the client is iPXE (user class "iPXE").
	IPXE bool
	// IPXEFeatures are the features that iPXE announced (option 175;
	// AllFeatures when it sent no list).
	IPXEFeatures Features
	// ChainedRecently is true when provisiond offered this MAC an iPXE
	// binary moments ago: this iPXE is the one it chained into.
	ChainedRecently bool
	// BaseURL is provisiond's HTTP base URL as this client reaches it
	// (BaseURL of the server's address and HTTP port).
	BaseURL string
}

// Options are the boot policy from the config.
type Options struct {
	// BIOS, UEFIx86, UEFIx64 and UEFIARM64 name the iPXE binaries.
	BIOS, UEFIx86, UEFIx64, UEFIARM64 string
	// Chain says when an iPXE that provisiond did not load itself (a NIC's
	// iPXE option ROM) is chained into provisiond's iPXE binary first:
	// ChainAuto (the default: when it lacks a feature the scripts use),
	// ChainAlways (every machine runs the same, known iPXE) or ChainNever
	// (only iPXE without HTTP, which could fetch nothing).
	Chain string
}

// When a ROM's iPXE is chained (Options.Chain).
const (
	ChainAuto   = "auto"
	ChainAlways = "always"
	ChainNever  = "never"
)

// DHCPDecision is what to answer.
type DHCPDecision struct {
	// Ignore means send nothing; Reason says why (for the timeline).
	Ignore bool
	Reason string
	// Silent means ignore without recording anything (not a PXE client).
	Silent bool
	// Class is the option 60 value to answer with.
	Class string
	// BootFile is a TFTP file name or an HTTP URL.
	BootFile string
	// Binary is the iPXE binary the boot file refers to, when it is one
	// (the caller checks that it exists).
	Binary string
	// Firmware is the firmware kind the decision assumed.
	Firmware string
	// Stage is "rom" (firmware PXE gets iPXE), "ipxe" (iPXE gets its
	// script) or "http" (UEFI HTTP boot gets iPXE over HTTP).
	Stage string
	// Chain says, for an iPXE client, why it was or was not chained into
	// provisiond's own binary (for the timeline).
	Chain string
	// Continues says the request continues a boot provisiond saw start:
	// its own iPXE, chained moments ago. Any other request starts a boot
	// (the firmware's PXE, or a NIC's iPXE ROM going to its script).
	Continues bool
}

// IsPXEClass reports whether option 60 marks a PXE or UEFI HTTP boot client.
func IsPXEClass(class string) bool {
	return strings.HasPrefix(class, ClassPXE) || strings.HasPrefix(class, ClassHTTP)
}

// ScriptPath is the HTTP (and TFTP) path of a machine's first-stage script.
func ScriptPath(mac string) string {
	return "boot/" + mac + ".ipxe"
}

// BaseURL is provisiond's HTTP base URL as seen by a client.
func BaseURL(serverIP string, port int) string {
	u := url.URL{Scheme: "http", Host: fmt.Sprintf("%s:%d", serverIP, port)}
	return u.String()
}

// DecideDHCP chooses the answer to a PXE client. m holds the boot settings
// of the machine that owns the MAC, or is nil for an unknown MAC. It never
// returns an address: the home router does that.
func DecideDHCP(req Request, m *inventory.BootSettings, bins Options) DHCPDecision {
	if !IsPXEClass(req.Class) {
		return DHCPDecision{Ignore: true, Silent: true, Reason: "not a PXE client"}
	}
	arch := uint16(ArchBIOS)
	if req.HasArch {
		arch = req.Arch
	}
	httpBoot := strings.HasPrefix(req.Class, ClassHTTP)
	var fw, bin string
	switch arch {
	case ArchBIOS:
		fw, bin = FirmwareBIOS, bins.BIOS
	case ArchUEFIx86, ArchHTTPUEFIx86:
		fw, bin = FirmwareUEFIx86, bins.UEFIx86
	case ArchUEFIx64, ArchUEFIBC, ArchHTTPUEFIx64:
		fw, bin = FirmwareUEFIx64, bins.UEFIx64
	case ArchUEFIARM64, ArchHTTPUEFIARM6:
		fw, bin = FirmwareUEFIARM64, bins.UEFIARM64
	default:
		return DHCPDecision{Ignore: true, Reason: fmt.Sprintf("client architecture %d has no iPXE binary configured", arch)}
	}
	switch arch {
	case ArchHTTPUEFIx86, ArchHTTPUEFIx64, ArchHTTPUEFIARM6:
		httpBoot = true
	}
	if bin == "" && !req.IPXE {
		return DHCPDecision{Ignore: true, Firmware: fw, Reason: fmt.Sprintf("client architecture %d (%s) has no iPXE binary configured: set boot.%s", arch, fw, binaryKey(fw))}
	}
	if m != nil {
		switch m.Firmware {
		case inventory.FirmwareBIOS:
			if fw != FirmwareBIOS {
				return DHCPDecision{Ignore: true, Firmware: fw, Reason: "machine is forced to BIOS boot; left this UEFI request to fall through to legacy PXE"}
			}
		case inventory.FirmwareUEFI:
			if fw == FirmwareBIOS {
				return DHCPDecision{Ignore: true, Firmware: fw, Reason: "machine is forced to UEFI boot; ignored its legacy BIOS PXE request"}
			}
		}
		if m.IPXEBinary != "" && !req.IPXE {
			bin = m.IPXEBinary
		}
	}
	base := req.BaseURL
	d := DHCPDecision{Class: ClassPXE, Firmware: fw}
	foreign := false
	if req.IPXE {
		foreign, d.Chain = chain(req, fw, bins.Chain)
		d.Continues = req.ChainedRecently
	}
	switch {
	case req.IPXE && !foreign && (req.IPXEFeatures.Has(FeatureHTTP) || httpBoot):
		d.Stage = "ipxe"
		d.BootFile = base + "/boot/" + req.MAC + ".ipxe" // base + "/" + ScriptPath(req.MAC), in one allocation
	case req.IPXE && !foreign:
		// Our own iPXE without HTTP: hand it its script over TFTP.
		d.Stage = "ipxe"
		d.BootFile = ScriptPath(req.MAC)
	case httpBoot:
		d.Stage = "http"
		d.Class = ClassHTTP
		d.Binary = bin
		d.BootFile = base + "/ipxe/" + bin
	default:
		d.Stage = "rom"
		d.Binary = bin
		d.BootFile = bin
	}
	return d
}

// chain decides whether an iPXE client is chained into provisiond's own
// binary for firmware fw under mode, and says why.
func chain(req Request, fw, mode string) (bool, string) {
	switch {
	case req.ChainedRecently:
		return false, "provisiond's own iPXE (chained moments ago)"
	case !req.IPXEFeatures.Has(FeatureHTTP):
		return true, "chained: this iPXE has no HTTP"
	case mode == ChainAlways:
		return true, "chained: chain_ipxe is always"
	case mode == ChainNever:
		return false, "not chained: chain_ipxe is never"
	}
	need := ScriptFeatures(fw)
	if missing := need &^ req.IPXEFeatures; missing != 0 {
		return true, "chained: this iPXE lacks " + missing.String()
	}
	return false, "not chained: this iPXE has " + need.String()
}

// binaryKey is the config key naming the iPXE binary for firmware fw.
func binaryKey(fw string) string {
	switch fw {
	case FirmwareBIOS:
		return "bios"
	case FirmwareUEFIx86:
		return "uefi_x86"
	case FirmwareUEFIARM64:
		return "uefi_arm64"
	}
	return "uefi_x64"
}
