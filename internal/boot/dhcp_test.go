package boot

import (
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/inventory"
)

var testOpts = Options{BIOS: "undionly.kpxe", UEFIx86: "ipxe-i386.efi", UEFIx64: "ipxe.efi", UEFIARM64: "ipxe-arm64.efi", Chain: ChainAlways}

func req(class string, arch int) Request {
	r := Request{MAC: "52:54:00:00:00:01", Class: class, BaseURL: "http://192.0.2.2:8080"}
	if arch >= 0 {
		r.Arch, r.HasArch = uint16(arch), true
	}
	return r
}

func TestDecideDHCPByArch(t *testing.T) {
	cases := []struct {
		name      string
		class     string
		arch      int
		file      string
		fw        string
		respClass string
		stage     string
	}{
		{"bios", "PXEClient:Arch:00000:UNDI:002001", ArchBIOS, "undionly.kpxe", FirmwareBIOS, ClassPXE, "rom"},
		{"bios without option 93", "PXEClient", -1, "undionly.kpxe", FirmwareBIOS, ClassPXE, "rom"},
		{"uefi x86-64 (7)", "PXEClient:Arch:00007:UNDI:003016", ArchUEFIx64, "ipxe.efi", FirmwareUEFIx64, ClassPXE, "rom"},
		{"uefi x86-64 (9)", "PXEClient:Arch:00009:UNDI:003016", ArchUEFIBC, "ipxe.efi", FirmwareUEFIx64, ClassPXE, "rom"},
		{"uefi ia32", "PXEClient:Arch:00006:UNDI:003016", ArchUEFIx86, "ipxe-i386.efi", FirmwareUEFIx86, ClassPXE, "rom"},
		{"uefi arm64", "PXEClient:Arch:00011:UNDI:003000", ArchUEFIARM64, "ipxe-arm64.efi", FirmwareUEFIARM64, ClassPXE, "rom"},
		{"uefi http x86-64", "HTTPClient:Arch:00016:UNDI:003001", ArchHTTPUEFIx64, "http://192.0.2.2:8080/ipxe/ipxe.efi", FirmwareUEFIx64, ClassHTTP, "http"},
		{"uefi http arm64", "HTTPClient:Arch:00019:UNDI:003001", ArchHTTPUEFIARM6, "http://192.0.2.2:8080/ipxe/ipxe-arm64.efi", FirmwareUEFIARM64, ClassHTTP, "http"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := DecideDHCP(req(c.class, c.arch), nil, testOpts)
			if d.Ignore {
				t.Fatalf("ignored: %s", d.Reason)
			}
			if d.BootFile != c.file || d.Firmware != c.fw || d.Class != c.respClass || d.Stage != c.stage {
				t.Errorf("got file %q fw %q class %q stage %q; want %q %q %q %q", d.BootFile, d.Firmware, d.Class, d.Stage, c.file, c.fw, c.respClass, c.stage)
			}
		})
	}
}

func TestDecideDHCPIgnoresNonPXE(t *testing.T) {
	for _, class := range []string{"", "MSFT 5.0", "udhcp 1.35.0", "android-dhcp-13", "pxeclient", " PXEClient"} {
		d := DecideDHCP(req(class, 0), nil, testOpts)
		if !d.Ignore || !d.Silent {
			t.Errorf("class %q: want a silent ignore, got %+v", class, d)
		}
	}
}

func TestDecideDHCPUnknownArch(t *testing.T) {
	d := DecideDHCP(req("PXEClient:Arch:00002", 2), nil, testOpts)
	if !d.Ignore || d.Silent || !strings.Contains(d.Reason, "architecture 2") {
		t.Fatalf("Itanium client: want a recorded ignore naming the architecture, got %+v", d)
	}
	// A known architecture whose binary the operator left empty.
	noARM := testOpts
	noARM.UEFIARM64 = ""
	d = DecideDHCP(req("PXEClient:Arch:00011", 11), nil, noARM)
	if !d.Ignore || d.Silent || d.BootFile != "" || !strings.Contains(d.Reason, "boot.uefi_arm64") {
		t.Fatalf("ARM64 client without a binary: want a recorded ignore naming boot.uefi_arm64, got %+v", d)
	}
}

// A BIOS iPXE ROM as QEMU's: HTTP, bzImage and the menu among others.
var romFeatures = ParseFeatures([]byte{16, 1, 2, 19, 1, 1, 21, 1, 1, 24, 1, 1, 33, 1, 1, 39, 1, 1, 235, 3, 1, 0, 0})

func TestDecideDHCPIPXE(t *testing.T) {
	// iPXE that provisiond delivered: script URL, no loop.
	r := req("PXEClient:Arch:00000:UNDI:002001", 0)
	r.IPXE, r.IPXEFeatures, r.ChainedRecently = true, romFeatures, true
	d := DecideDHCP(r, nil, testOpts)
	if d.Stage != "ipxe" || d.BootFile != "http://192.0.2.2:8080/boot/52:54:00:00:00:01.ipxe" || !d.Continues {
		t.Fatalf("our iPXE: got %+v", d)
	}
	// An iPXE option ROM (not delivered by us) with chain_ipxe: always:
	// chained once into ours.
	r.ChainedRecently = false
	d = DecideDHCP(r, nil, testOpts)
	if d.Stage != "rom" || d.BootFile != "undionly.kpxe" || d.Chain != "chained: chain_ipxe is always" {
		t.Fatalf("foreign iPXE with chaining always: got %+v", d)
	}
	// With chaining never, a capable ROM iPXE gets its script directly.
	opts := testOpts
	opts.Chain = ChainNever
	d = DecideDHCP(r, nil, opts)
	if d.Stage != "ipxe" || !strings.HasPrefix(d.BootFile, "http://") || d.Continues {
		t.Fatalf("foreign iPXE with chaining never: got %+v", d)
	}
	// An iPXE without HTTP is chained even with chaining never...
	r.IPXEFeatures = ParseFeatures([]byte{16, 1, 2})
	d = DecideDHCP(r, nil, opts)
	if d.Stage != "rom" || d.Chain != "chained: this iPXE has no HTTP" {
		t.Fatalf("foreign iPXE without HTTP: got %+v", d)
	}
	// ...and once it is ours, it gets its script over TFTP.
	r.ChainedRecently = true
	d = DecideDHCP(r, nil, opts)
	if d.Stage != "ipxe" || d.BootFile != "boot/52:54:00:00:00:01.ipxe" {
		t.Fatalf("our iPXE without HTTP: got %+v", d)
	}
	// UEFI iPXE gets the same script URL.
	u := req("PXEClient:Arch:00007:UNDI:003016", 7)
	u.IPXE, u.IPXEFeatures, u.ChainedRecently = true, AllFeatures, true
	if d := DecideDHCP(u, nil, testOpts); d.BootFile != "http://192.0.2.2:8080/boot/52:54:00:00:00:01.ipxe" {
		t.Fatalf("UEFI iPXE: got %+v", d)
	}
}

func TestDecideDHCPChainAuto(t *testing.T) {
	opts := testOpts
	opts.Chain = ChainAuto
	bios := req("PXEClient:Arch:00000:UNDI:002001", 0)
	bios.IPXE = true
	uefi := req("PXEClient:Arch:00007:UNDI:003016", 7)
	uefi.IPXE = true
	for _, c := range []struct {
		name  string
		r     Request
		feats Features
		stage string
		chain string
	}{
		{"BIOS ROM with what the scripts use", bios, romFeatures, "ipxe", "not chained: this iPXE has http, bzimage, menu"},
		{"BIOS ROM without a list", bios, AllFeatures, "ipxe", "not chained: this iPXE has http, bzimage, menu"},
		{"BIOS ROM without the menu", bios, romFeatures &^ Features(0).With(FeatureMenu), "rom", "chained: this iPXE lacks menu"},
		{"BIOS ROM without HTTP", bios, romFeatures &^ Features(0).With(FeatureHTTP), "rom", "chained: this iPXE has no HTTP"},
		{"UEFI ROM without EFI images", uefi, romFeatures, "rom", "chained: this iPXE lacks efi"},
		{"UEFI ROM with them", uefi, romFeatures.With(FeatureEFI), "ipxe", "not chained: this iPXE has http, efi, menu"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.r.IPXEFeatures = c.feats
			d := DecideDHCP(c.r, nil, opts)
			if d.Stage != c.stage || d.Chain != c.chain {
				t.Errorf("stage %q (%s), want %q (%s)", d.Stage, d.Chain, c.stage, c.chain)
			}
		})
	}
	// A firmware's own PXE (not iPXE) is never told about chaining.
	if d := DecideDHCP(req("PXEClient:Arch:00000:UNDI:002001", 0), nil, opts); d.Stage != "rom" || d.Chain != "" {
		t.Errorf("firmware PXE: %+v", d)
	}
}

func TestParseFeatures(t *testing.T) {
	f := ParseFeatures([]byte{19, 1, 1, 24, 1, 1, 235, 3, 1, 21, 1, 39})
	// 235 (the version, three bytes) is no feature; the last entry is
	// truncated and dropped.
	if f.String() != "http, bzimage" {
		t.Errorf("features %q", f)
	}
	if got := ParseFeatures([]byte{17, 1, 1, 42, 1, 1}).String(); got != "iscsi, 42" {
		t.Errorf("unnamed features %q", got)
	}
}

func TestDecideDHCPFirmwareOverride(t *testing.T) {
	bios := &inventory.BootSettings{Firmware: inventory.FirmwareBIOS}
	if d := DecideDHCP(req("PXEClient:Arch:00007", 7), bios, testOpts); !d.Ignore || d.Silent {
		t.Fatalf("machine forced to BIOS must not be answered on UEFI: %+v", d)
	}
	if d := DecideDHCP(req("PXEClient:Arch:00000", 0), bios, testOpts); d.Ignore || d.BootFile != "undionly.kpxe" {
		t.Fatalf("machine forced to BIOS, BIOS request: %+v", d)
	}
	uefi := &inventory.BootSettings{Firmware: inventory.FirmwareUEFI}
	if d := DecideDHCP(req("PXEClient:Arch:00000", 0), uefi, testOpts); !d.Ignore {
		t.Fatalf("machine forced to UEFI must not be answered on BIOS: %+v", d)
	}
	snp := &inventory.BootSettings{IPXEBinary: "snponly.efi"}
	if d := DecideDHCP(req("PXEClient:Arch:00007", 7), snp, testOpts); d.BootFile != "snponly.efi" {
		t.Fatalf("per-machine binary: %+v", d)
	}
}
