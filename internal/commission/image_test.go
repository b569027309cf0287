package commission

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fakeModule compiles an ELF object whose .modinfo section holds info, as
// a kernel module's does: the C compiler makes it, nothing is faked in Go.
func fakeModule(t *testing.T, path string, info ...string) {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		msg := "building test kernel modules needs a C compiler: apt-get install gcc"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var src strings.Builder
	for i, kv := range info {
		fmt.Fprintf(&src, "static const char __attribute__((section(\".modinfo\"), used, aligned(1))) m%d[] = %s;\n", i, strconv.Quote(kv))
	}
	c := filepath.Join(t.TempDir(), "m.c")
	os.WriteFile(c, []byte(src.String()), 0o644)
	os.MkdirAll(filepath.Dir(path), 0o755)
	if out, err := exec.Command(cc, "-c", "-o", path, c).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
}

func TestParseBusID(t *testing.T) {
	if v, d, ok := ParseBusID("01:80:86:10:0e"); !ok || v != 0x8086 || d != 0x100e {
		t.Errorf("%x %x %v", v, d, ok)
	}
	for _, bad := range []string{"", "02:80:86:10:0e", "01:80:86:10", "01:zz:86:10:0e"} {
		if _, _, ok := ParseBusID(bad); ok {
			t.Errorf("%q read as PCI", bad)
		}
	}
}

// program compiles a C program into path: static (no program
// interpreter) or as cc links by default (dynamic).
func program(t *testing.T, path string, static bool) {
	t.Helper()
	c := filepath.Join(t.TempDir(), "p.c")
	os.WriteFile(c, []byte("int main(void) { return 0; }\n"), 0o644)
	args := []string{"-o", path, c}
	if static {
		args = append([]string{"-static"}, args...)
	}
	if out, err := exec.Command("cc", args...).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
}

// unpack reads a gzip'd newc archive into path -> content.
func unpack(t *testing.T, gz []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for off := 0; off+110 <= len(raw); {
		if string(raw[off:off+6]) != "070701" {
			t.Fatalf("bad cpio magic at %d", off)
		}
		field := func(i int) int {
			v, _ := strconv.ParseUint(string(raw[off+6+8*i:off+14+8*i]), 16, 32)
			return int(v)
		}
		size, nameLen := field(6), field(11)
		name := string(raw[off+110 : off+110+nameLen-1])
		data := off + 110 + nameLen
		data += (4 - data%4) % 4
		if name == "TRAILER!!!" {
			break
		}
		out["/"+name] = raw[data : data+size]
		off = data + size
		off += (4 - off%4) % 4
	}
	return out
}

// A modules tree as Debian's package unpacks it (no modules.dep): the
// drivers asked for come with what they depend on, dependencies first;
// firmware found goes in, firmware not found and drivers the kernel lacks
// are listed; /init is the binary.
func TestBuildImage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "6.1.0-57-amd64")
	fakeModule(t, filepath.Join(dir, "kernel/drivers/net/ethernet/broadcom/bnx2x/bnx2x.ko"), "license=GPL",
		"firmware=bnx2x/bnx2x-e2-7.13.15.0.fw", "firmware=bnx2x/bnx2x-e1-7.13.15.0.fw", "depends=libcrc32c,mdio", "name=bnx2x")
	// libcrc32c wants a crc32c implementation, named by an alias.
	fakeModule(t, filepath.Join(dir, "kernel/lib/libcrc32c.ko"), "depends=", "softdep=pre: crc32c", "name=libcrc32c")
	fakeModule(t, filepath.Join(dir, "kernel/arch/x86/crypto/crc32c-intel.ko"), "alias=crc32c", "alias=crypto-crc32c", "name=crc32c_intel")
	fakeModule(t, filepath.Join(dir, "kernel/crypto/crc32c_generic.ko"), "alias=crc32c", "alias=crypto-crc32c", "name=crc32c_generic")
	fakeModule(t, filepath.Join(dir, "kernel/drivers/net/mdio.ko"), "name=mdio")
	fakeModule(t, filepath.Join(dir, "kernel/drivers/net/ethernet/emulex/benet/be2net.ko"), "depends=", "name=be2net",
		"alias=pci:v000019A2d00000710sv*sd*bc*sc*i*", "alias=pci:v000010DFd*sv*sd*bc02sc00i*")
	fakeModule(t, filepath.Join(dir, "kernel/drivers/scsi/hpsa.ko"), "depends=scsi_transport_sas", "name=hpsa",
		"alias=pci:v*d*sv*sd*bc01sc04i*") // a storage class: never a NIC's driver
	fakeModule(t, filepath.Join(dir, "kernel/drivers/scsi/scsi_transport_sas.ko"), "depends=", "name=scsi_transport_sas")
	fw := t.TempDir()
	os.MkdirAll(filepath.Join(fw, "bnx2x"), 0o755)
	os.WriteFile(filepath.Join(fw, "bnx2x/bnx2x-e2-7.13.15.0.fw"), []byte("FIRMWARE"), 0o644)
	bin := filepath.Join(t.TempDir(), "provisiond")
	program(t, bin, true)
	shell := filepath.Join(t.TempDir(), "busybox")
	program(t, shell, true)

	tree, err := OpenTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	man, err := BuildImage(&buf, ImageOptions{Binary: bin, Tree: tree, Modules: []string{"be2net", "bnx2x", "hpsa", "tg3"}, FirmwareDirs: []string{fw}, Shell: shell})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(man.Modules, " "); got != "be2net crc32c_generic libcrc32c mdio bnx2x scsi_transport_sas hpsa" {
		t.Errorf("load order %s", got)
	}
	if man.Kernel != "6.1.0-57-amd64" || !slices.Equal(man.Missing, []string{"tg3"}) || !slices.Equal(man.Firmware, []string{"bnx2x/bnx2x-e2-7.13.15.0.fw"}) ||
		!slices.Equal(man.NoFirmware, []string{"bnx2x/bnx2x-e1-7.13.15.0.fw"}) || man.Bytes != int64(buf.Len()) {
		t.Errorf("manifest %+v", man)
	}
	// Which NICs the image drives, by their PCI IDs (the BL460c Gen8's
	// 554FLB is Emulex 19a2:0710; the e1000 8086:100e is not carried).
	if man.Driver(0x19a2, 0x0710) != "be2net" || man.Driver(0x10df, 0x1234) != "be2net" || man.Driver(0x8086, 0x100e) != "" {
		t.Errorf("drivers by PCI ID: %v", man.PCI)
	}
	files := unpack(t, buf.Bytes())
	want, _ := os.ReadFile(bin)
	if !bytes.Equal(files["/init"], want) || string(files["/lib/firmware/bnx2x/bnx2x-e2-7.13.15.0.fw"]) != "FIRMWARE" {
		t.Errorf("init or firmware wrong: %d files", len(files))
	}
	if _, ok := files["/bin/busybox"]; !ok || !strings.HasPrefix(man.Shell, "/bin/busybox") {
		t.Errorf("the shell is not in the image: %q", man.Shell)
	}
	if _, ok := files["/lib/modules/6.1.0-57-amd64/kernel/drivers/net/ethernet/broadcom/bnx2x/bnx2x.ko"]; !ok {
		t.Error("bnx2x.ko not in the image")
	}
	order := strings.Fields(string(files[ModulesList]))
	if len(order) != 7 || !strings.HasSuffix(order[1], "crc32c_generic.ko") || !strings.HasSuffix(order[2], "libcrc32c.ko") || !strings.HasSuffix(order[4], "bnx2x.ko") {
		t.Errorf("load order file: %v", order)
	}

	// A dependency the kernel does not have is an error that names both.
	fakeModule(t, filepath.Join(dir, "kernel/drivers/net/broken.ko"), "depends=nosuchmod", "name=broken")
	tree, _ = OpenTree(dir)
	if _, err := BuildImage(io.Discard, ImageOptions{Binary: bin, Tree: tree, Modules: []string{"broken"}}); err == nil || !strings.Contains(err.Error(), "broken needs nosuchmod") {
		t.Errorf("missing dependency: %v", err)
	}
	if _, err := OpenTree(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no kernel module") {
		t.Errorf("an empty tree: %v", err)
	}
	// A dynamically linked binary cannot be /init; a dynamic shell is
	// left out and said so.
	dyn := filepath.Join(t.TempDir(), "dynamic")
	program(t, dyn, false)
	if _, err := BuildImage(io.Discard, ImageOptions{Binary: dyn, Tree: tree, Modules: []string{"be2net"}}); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("a dynamic binary: %v", err)
	}
	man, err = BuildImage(io.Discard, ImageOptions{Binary: bin, Tree: tree, Modules: []string{"be2net"}, Shell: dyn})
	if err != nil || !strings.HasPrefix(man.Shell, "none: ") {
		t.Errorf("a dynamic shell: %v %q", err, man.Shell)
	}
}

// With Debian's own kernel (PROVISIOND_TEST_KERNEL names its unpacked
// /lib/modules/VERSION; make test unpacks it), the homelab's drivers
// resolve with their dependencies and the image with a Go binary of
// provisiond's size stays under 40 MiB.
func TestBuildImageDebianKernel(t *testing.T) {
	dir := os.Getenv("PROVISIOND_TEST_KERNEL")
	if dir == "" {
		msg := "set PROVISIOND_TEST_KERNEL to an unpacked linux-image-amd64's lib/modules/VERSION to build with Debian's kernel (make test does)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	tree, err := OpenTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	// provisiond itself, static and stripped as make build builds it (the
	// e2e suite builds it with the same flags: one build in the cache).
	bin := filepath.Join(t.TempDir(), "provisiond")
	build := exec.Command("go", "build", "-ldflags", "-s -w", "-o", bin, "github.com/provisiond/provisiond/cmd/provisiond")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building provisiond: %v\n%s", err, out)
	}
	var buf bytes.Buffer
	man, err := BuildImage(&buf, ImageOptions{Binary: bin, Tree: tree, FirmwareDirs: []string{"/lib/firmware"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d modules (%s), missing %v, firmware %d, not found %d, %.1f MiB", len(man.Modules), strings.Join(man.Modules, " "), man.Missing, len(man.Firmware), len(man.NoFirmware), float64(man.Bytes)/(1<<20))
	for _, want := range []string{"be2net", "bnx2", "bnx2x", "tg3", "e1000e", "igb", "ixgbe", "virtio_net", "hpsa", "megaraid_sas", "mpt3sas", "ahci", "nvme"} {
		if !slices.Contains(man.Modules, want) {
			t.Errorf("%s not in the image", want)
		}
	}
	// The homelab's NICs by PCI ID: the Gen8's 554FLB (Emulex 19a2:0710),
	// the x3550 M3's BCM5709 (14e4:1639), QEMU's virtio (1af4:1000); an
	// e1000 (8086:100e) is not carried.
	for id, want := range map[[2]uint16]string{{0x19a2, 0x0710}: "be2net", {0x14e4, 0x1639}: "bnx2", {0x1af4, 0x1000}: "virtio_pci", {0x8086, 0x100e}: ""} {
		if got := man.Driver(id[0], id[1]); got != want {
			t.Errorf("PCI %04x:%04x: driver %q, want %q", id[0], id[1], got, want)
		}
	}
	if man.Bytes >= 40<<20 {
		t.Errorf("image is %d bytes, over 40 MiB", man.Bytes)
	}
}
