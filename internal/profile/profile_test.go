package profile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/profiles"
)

func builtin(t *testing.T) *profile.Set {
	t.Helper()
	s, err := profile.Load(profiles.FS, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func render(t *testing.T, name string, m *inventory.Machine) (string, error) {
	t.Helper()
	p, ok := builtin(t).Get(name)
	if !ok {
		t.Fatalf("no profile %s", name)
	}
	mac := "52:54:00:12:34:56"
	r, err := p.Render(boot.ScriptData(m, mac, "http://192.0.2.2:8080", name, nil))
	if err != nil {
		return "", err
	}
	return string(r.Script), nil
}

func TestBuiltinProfiles(t *testing.T) {
	s := builtin(t)
	for name, want := range map[string]bool{"menu": true, "linux": false, "talos": false, "local": false} {
		if p, _ := s.Get(name); p.UsesMenu != want {
			t.Errorf("%s.UsesMenu = %v, want %v", name, p.UsesMenu, want)
		}
	}
	if p, _ := s.Get("slurm"); strings.Join(p.Missing(map[string]string{"kernel": "x"}), ",") != "slurm_controller" {
		t.Errorf("slurm missing %v", p.Missing(nil))
	}
	for _, n := range []string{"linux", "local", "menu", "shell"} {
		if _, ok := s.Get(n); !ok {
			t.Errorf("built-in profile %s missing", n)
		}
	}
}

func TestRenderLinux(t *testing.T) {
	m := &inventory.Machine{Name: "BLD-006", MACs: []string{"52:54:00:12:34:56"}, Hostname: "bld-006", KernelArgs: "talos.platform=metal ip=192.0.2.50::192.0.2.1:255.255.255.0::eth0:off",
		Params: map[string]string{"kernel": "debian/vmlinuz", "initrd": "http://mirror.example/initrd.img", "cmdline": "console=ttyS0"}}
	got, err := render(t, "linux", m)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"#!ipxe",
		"kernel http://192.0.2.2:8080/assets/debian/vmlinuz?mac=52%3A54%3A00%3A12%3A34%3A56 initrd=initrd console=ttyS0 talos.platform=metal ip=192.0.2.50::192.0.2.1:255.255.255.0::eth0:off provisiond.callback=http://192.0.2.2:8080/boot/52:54:00:12:34:56/booted || goto failed",
		"initrd --name initrd http://mirror.example/initrd.img || goto failed",
		"boot || goto failed",
	}
	for _, w := range want {
		if !strings.Contains(got, w+"\n") {
			t.Errorf("script lacks line %q:\n%s", w, got)
		}
	}
	m.Params["callback"] = "false"
	m.Params["initrd"] = ""
	got, _ = render(t, "linux", m)
	if strings.Contains(got, "callback") || strings.Contains(got, "initrd") {
		t.Errorf("callback=false and no initrd still render them:\n%s", got)
	}
}

func TestRenderRequiresParams(t *testing.T) {
	_, err := render(t, "linux", &inventory.Machine{Name: "x", MACs: []string{"52:54:00:12:34:56"}})
	if err == nil || !strings.Contains(err.Error(), "needs parameter kernel") || !strings.Contains(err.Error(), "--param kernel=") {
		t.Fatalf("missing kernel: %v", err)
	}
}

// Inventory values can never inject iPXE commands.
func TestRenderRefusesInjection(t *testing.T) {
	hostile := []string{
		"quiet\nshell",
		"quiet\r\nchain http://evil/x",
		"a ${net0/mac}",
		"a || shell",
		"a && shell",
		"#comment",
		"x\x00y",
	}
	for _, h := range hostile {
		m := &inventory.Machine{Name: "x", MACs: []string{"52:54:00:12:34:56"}, KernelArgs: h, Params: map[string]string{"kernel": "vmlinuz"}}
		if got, err := render(t, "linux", m); err == nil {
			t.Errorf("kernel args %q rendered:\n%s", h, got)
		}
		m = &inventory.Machine{Name: "x", MACs: []string{"52:54:00:12:34:56"}, Params: map[string]string{"kernel": h}}
		if got, err := render(t, "linux", m); err == nil {
			t.Errorf("kernel param %q rendered:\n%s", h, got)
		}
	}
	m := &inventory.Machine{Name: "x", MACs: []string{"52:54:00:12:34:56"}, Params: map[string]string{"kernel": "../../etc/shadow"}}
	if _, err := render(t, "linux", m); err == nil {
		t.Error("an asset path leaving the assets directory rendered")
	}
}

func TestRenderMenuForUnknown(t *testing.T) {
	got, err := render(t, "menu", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"not in the inventory yet", "choose --timeout 10000 --default local target", "sanboot --no-describe --drive 0x80", "chain --replace http://192.0.2.2:8080/boot/52:54:00:12:34:56.ipxe", "item shell"} {
		if !strings.Contains(got, w) {
			t.Errorf("menu lacks %q:\n%s", w, got)
		}
	}
}

func TestRenderLocalAndShell(t *testing.T) {
	m := &inventory.Machine{Name: "oden", MACs: []string{"52:54:00:12:34:56"}}
	got, err := render(t, "local", m)
	if err != nil || !strings.Contains(got, "iseq ${platform} efi && exit 1 ||\n") || !strings.Contains(got, "sanboot --no-describe --drive 0x80 ||\nexit 1\n") {
		t.Errorf("local: %v\n%s", err, got)
	}
	got, err = render(t, "shell", m)
	if err != nil || !strings.Contains(got, "\nshell\n") {
		t.Errorf("shell: %v\n%s", err, got)
	}
}

func TestOverrideDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "local.yaml"), []byte("description: site local\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "local.ipxe"), []byte("#!ipxe\nexit\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "rescue.yaml"), []byte("description: rescue\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "rescue.ipxe"), []byte("#!ipxe\nshell\n"), 0o644)
	s, err := profile.Load(profiles.FS, dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Get("local"); p.Description != "site local" || p.Source != dir {
		t.Errorf("override not applied: %+v", p)
	}
	if _, ok := s.Get("rescue"); !ok {
		t.Error("added profile missing")
	}
	if _, ok := s.Get("menu"); !ok {
		t.Error("built-in profile lost")
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("description: x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.ipxe"), []byte("#!ipxe\necho {{.Name\n"), 0o644)
	_, err := profile.Load(profiles.FS, dir)
	if err == nil || !strings.Contains(err.Error(), "bad.ipxe:2") {
		t.Fatalf("template error should name file and line: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bad.ipxe"), []byte("echo hi\n"), 0o644)
	if _, err := profile.Load(profiles.FS, dir); err == nil || !strings.Contains(err.Error(), "#!ipxe") {
		t.Fatalf("missing #!ipxe: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("descripton: typo\n"), 0o644)
	if _, err := profile.Load(profiles.FS, dir); err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("unknown YAML field: %v", err)
	}
}

func TestUndeclaredParamNamesFileAndLine(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x.yaml"), []byte("description: x\nparams:\n  kernel:\n    required: true\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "x.ipxe"), []byte("#!ipxe\nkernel {{asset .Params.kernel}}\n{{if .Params.initrd}}initrd {{.Params.initrd}}{{end}}\nboot\n"), 0o644)
	_, err := profile.Load(profiles.FS, dir)
	if err == nil || !strings.Contains(err.Error(), "x.ipxe:3") || !strings.Contains(err.Error(), "parameter initrd is used but not declared") {
		t.Fatalf("undeclared parameter: %v", err)
	}
	os.Remove(filepath.Join(dir, "x.yaml"))
	if _, err := profile.Load(profiles.FS, dir); err == nil || !strings.Contains(err.Error(), "no x.yaml beside it") {
		t.Fatalf("template without sidecar: %v", err)
	}
}

func TestLocalMethodExit(t *testing.T) {
	m := &inventory.Machine{Name: "oden", MACs: []string{"52:54:00:12:34:56"}, Params: map[string]string{"local_method": "exit"}}
	got, err := render(t, "local", m)
	if err != nil || strings.Contains(got, "sanboot") || !strings.HasSuffix(got, "exit 1\n") {
		t.Errorf("local_method=exit: %v\n%s", err, got)
	}
}

func TestSlurmOverlay(t *testing.T) {
	p, _ := builtin(t).Get("slurm")
	m := &inventory.Machine{Name: "BLD-008", MACs: []string{"52:54:00:12:34:56"}, Hostname: "node-008",
		Params: map[string]string{"slurm_controller": "192.0.2.6:6817", "hosts": "192.0.2.6 bld-006; 192.0.2.9 nfs ;"}}
	d := boot.ScriptData(m, "52:54:00:12:34:56", "http://192.0.2.2:8080", "slurm", nil)
	key := string([]byte{0, 1, '\n', 0xff})
	d.Secret = func(name string) (string, error) {
		if name != "munge-key" {
			t.Fatalf("asked for secret %q", name)
		}
		return key, nil
	}
	files, err := p.RenderOverlay(d)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]profile.OverlayFile{}
	for _, f := range files {
		got[f.Path] = f
	}
	if f := got["/etc/munge/munge.key"]; string(f.Data) != key || f.Mode != 0o400 {
		t.Errorf("munge key %q mode %o", f.Data, f.Mode)
	}
	if s := string(got["/etc/hosts"].Data); !strings.Contains(s, "127.0.1.1\tnode-008\n") || !strings.Contains(s, "\n192.0.2.6 bld-006\n192.0.2.9 nfs") {
		t.Errorf("hosts:\n%s", s)
	}
	if s := string(got["/etc/default/slurmd"].Data); s != "SLURMD_OPTIONS=\"--conf-server 192.0.2.6:6817 -N node-008\"\n" {
		t.Errorf("slurmd options %q", s)
	}
	// Without a resolver the key reads REDACTED.
	d.Secret = nil
	files, _ = p.RenderOverlay(d)
	for _, f := range files {
		if f.Path == "/etc/munge/munge.key" && string(f.Data) != profile.Redacted {
			t.Errorf("redacted overlay holds %q", f.Data)
		}
	}
	// The boot script loads base image and overlay as two initrds.
	s, err := p.Render(boot.ScriptData(m, "52:54:00:12:34:56", "http://192.0.2.2:8080", "slurm", nil))
	if err != nil || !strings.Contains(string(s.Script), "initrd --name overlay.cpio http://192.0.2.2:8080/boot/52:54:00:12:34:56/overlay.cpio?profile=slurm") {
		t.Errorf("slurm script: %v\n%s", err, s.Script)
	}
}
