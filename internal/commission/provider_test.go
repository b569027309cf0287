package commission

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/assets"
	"github.com/provisiond/provisiond/internal/profile"
)

// kernelDir lays out a linux-image package as dpkg-deb -x unpacks it:
// boot/vmlinuz-V and lib/modules/V with one module.
func kernelDir(t *testing.T, versions ...string) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "boot"), 0o755)
	for _, v := range versions {
		os.WriteFile(filepath.Join(dir, "boot", "vmlinuz-"+v), []byte("kernel "+v), 0o644)
		fakeModule(t, filepath.Join(dir, "lib/modules", v, "kernel/drivers/net/virtio_net.ko"), "name=virtio_net", "alias=pci:v00001AF4d00001000sv*sd*bc*sc*i*")
	}
	return dir
}

// The newest kernel that has its modules is taken (numbers compared as
// numbers); a kernel without modules is not.
func TestFindKernel(t *testing.T) {
	dir := kernelDir(t, "6.1.0-9-amd64", "6.1.0-10-amd64")
	os.WriteFile(filepath.Join(dir, "boot", "vmlinuz-6.1.0-11-amd64"), []byte("no modules"), 0o644)
	vm, mods, v, err := FindKernel(dir)
	if err != nil || v != "6.1.0-10-amd64" || !strings.HasSuffix(vm, "vmlinuz-6.1.0-10-amd64") || !strings.HasSuffix(mods, "lib/modules/6.1.0-10-amd64") {
		t.Fatalf("%s %s %s %v", vm, mods, v, err)
	}
	if _, _, _, err := FindKernel(t.TempDir()); err == nil || !strings.Contains(err.Error(), "apt-get install linux-image-amd64") {
		t.Errorf("no kernel: %v", err)
	}
}

// The first boot that needs the image waits while it is built; then the
// profile gets its paths, the cache lists it, and a new binary makes a
// new image and removes the old one.
func TestProviderBuildsOnce(t *testing.T) {
	dir := kernelDir(t, "6.1.0-57-amd64")
	bin := filepath.Join(t.TempDir(), "provisiond")
	program(t, bin, true)
	root := t.TempDir()
	cache := assets.New(root, nil, nil)
	defer cache.Close()
	p := NewProvider(Source{KernelDir: dir, Binary: bin, Drivers: []string{"virtio_net"}}, cache, nil)
	if !p.Wants(&profile.Profile{Uses: []string{"commission"}}) || p.Wants(&profile.Profile{Uses: []string{"talos"}}) {
		t.Error("Wants")
	}
	_, err := p.Values(context.Background(), nil, nil)
	var nr *profile.NotReadyError
	if !errors.As(err, &nr) {
		t.Fatalf("first render: %v", err)
	}
	if _, ok := p.BootNIC("01:80:86:10:0e"); !ok {
		t.Error("a NIC refused before the image is built")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	man, err := ensure(ctx, t, p, cache)
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.Values(context.Background(), nil, nil)
	if err != nil || v["kernel"] != man.Entry+"/vmlinuz" || v["initrd"] != man.Entry+"/initrd.img" || v["kernel_version"] != "6.1.0-57-amd64" || v["modules"] != "1" {
		t.Fatalf("values %v %v", v, err)
	}
	if d, ok := p.BootNIC("01:1a:f4:10:00"); !ok || !strings.Contains(d, "virtio_net") {
		t.Errorf("virtio NIC: %s %v", d, ok)
	}
	if d, ok := p.BootNIC("01:80:86:10:0e"); ok || !strings.Contains(d, "8086:100e") {
		t.Errorf("e1000: %s %v", d, ok)
	}
	es, _ := cache.Entries(Prefix)
	if len(es) != 1 || es[0].Meta["kind"] != "commission" || es[0].Files["initrd.img"].SHA256 == "" {
		t.Fatalf("entries %+v", es)
	}
	// A new provisiond binary: a new image; the old one goes.
	bin2 := filepath.Join(t.TempDir(), "provisiond")
	program(t, bin2, true)
	f, _ := os.OpenFile(bin2, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte("a newer build"))
	f.Close()
	p2 := NewProvider(Source{KernelDir: dir, Binary: bin2, Drivers: []string{"virtio_net"}}, cache, nil)
	man2, err := ensure(ctx, t, p2, cache)
	if err != nil || man2.Entry == man.Entry {
		t.Fatalf("rebuild: %v %s", err, man2.Entry)
	}
	if es, _ := cache.Entries(Prefix); len(es) != 1 || es[0].Entry != man2.Entry {
		t.Errorf("old image kept: %+v", es)
	}
	// A dynamically linked binary is refused with the fix.
	dyn := filepath.Join(t.TempDir(), "dyn")
	program(t, dyn, false)
	if _, err := NewProvider(Source{KernelDir: dir, Binary: dyn}, cache, nil).Values(context.Background(), nil, nil); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("dynamic binary: %v", err)
	}
}

// ensure builds p's image as assets pull commission does, and waits.
func ensure(ctx context.Context, t *testing.T, p *Provider, cache *assets.Cache) (*assets.Manifest, error) {
	t.Helper()
	job, info, err := p.Pull()
	if err != nil {
		return nil, err
	}
	if job != nil {
		if err := job.Wait(ctx); err != nil {
			return nil, err
		}
	}
	man, ok := cache.Complete(info["entry"])
	if !ok {
		return nil, errors.New("not complete after its build: " + info["entry"])
	}
	return man, nil
}
