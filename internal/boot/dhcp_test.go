package boot

import (
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/inventory"
)

var testOpts = Options{BIOS: "undionly.kpxe", UEFIx86: "ipxe-i386.efi", UEFIx64: "ipxe.efi", UEFIARM64: "ipxe-arm64.efi", ChainIPXE: true}

func req(class string, arch int) Request {
	r := Request{MAC: "52:54:00:00:00:01", Class: class, ServerIP: "192.0.2.2", HTTPPort: 8080}
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

func TestDecideDHCPIPXE(t *testing.T) {
	// iPXE that provisiond delivered: script URL, no loop.
	r := req("PXEClient:Arch:00000:UNDI:002001", 0)
	r.IPXE, r.IPXEHTTP, r.ChainedRecently = true, true, true
	d := DecideDHCP(r, nil, testOpts)
	if d.Stage != "ipxe" || d.BootFile != "http://192.0.2.2:8080/boot/52:54:00:00:00:01.ipxe" {
		t.Fatalf("our iPXE: got %+v", d)
	}
	// An iPXE option ROM (not delivered by us): chained once into ours.
	r.ChainedRecently = false
	d = DecideDHCP(r, nil, testOpts)
	if d.Stage != "rom" || d.BootFile != "undionly.kpxe" {
		t.Fatalf("foreign iPXE with chaining on: got %+v", d)
	}
	// With chaining off, a capable ROM iPXE gets its script directly.
	opts := testOpts
	opts.ChainIPXE = false
	d = DecideDHCP(r, nil, opts)
	if d.Stage != "ipxe" || !strings.HasPrefix(d.BootFile, "http://") {
		t.Fatalf("foreign iPXE with chaining off: got %+v", d)
	}
	// An iPXE without HTTP is chained even with chaining off...
	r.IPXEHTTP = false
	d = DecideDHCP(r, nil, opts)
	if d.Stage != "rom" {
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
	u.IPXE, u.IPXEHTTP, u.ChainedRecently = true, true, true
	if d := DecideDHCP(u, nil, testOpts); d.BootFile != "http://192.0.2.2:8080/boot/52:54:00:00:00:01.ipxe" {
		t.Fatalf("UEFI iPXE: got %+v", d)
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
