package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/certs"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/talos/talostest"
)

// TestSecretsNeverLeak puts every kind of secret into a daemon (BMC
// passwords from a sealed secret and from the environment, Omni's join
// token, a munge key), uses them (power calls, a Talos boot, a Slurm
// overlay, a failed BMC login), and then greps the daemon's log at debug
// level, every timeline, every API listing and every CLI command's output
// for them. A secret may appear only where a machine needs it to boot: the
// Talos script and the Slurm overlay of the machines that use them.
func TestSecretsNeverLeak(t *testing.T) {
	const (
		bmcPW   = "Bmc-Secr3t-Pw"
		envPW   = "Env-Secr3t-Pw"
		joinTok = "omni-J0in-T0ken-xyz"
		munge   = "Munge-K3y-Bytes-abc"
	)
	factory := httptest.NewServer(talostest.New(map[string][]byte{
		"kernel-amd64": []byte("kernel"), "initramfs-amd64.xz": []byte("initramfs"), "cmdline-metal-amd64": []byte("talos.platform=metal\n"),
	}))
	defer factory.Close()
	log := &lockedLog{}
	f, c := newSimFleet(t, func(cfg *config.Config, o *daemon.Options) {
		cfg.Talos.FactoryURL, cfg.Talos.Version = factory.URL, "v1.9.5"
		o.Log = slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Getenv = func(k string) string {
			if k == "BLD_ENV_PW" {
				return envPW
			}
			return ""
		}
	})
	var outputs []string
	run := func(stdin string, args ...string) {
		t.Helper()
		out, err := c.runStdin(stdin, args...)
		if err != nil {
			out += err.Error()
		}
		outputs = append(outputs, "provisiond "+strings.Join(args, " ")+"\n"+out)
	}
	run(bmcPW, "secret", "set", "bmc-pw")
	run(joinTok, "secret", "set", "omni-join-token")
	run(munge, "secret", "set", "munge-key")
	f.add("192.0.2.31", &simBMC{machine: "BLD-001", password: bmcPW})
	f.add("192.0.2.32", &simBMC{machine: "BLD-002", password: envPW})
	f.add("192.0.2.33", &simBMC{machine: "BLD-003", password: "something-else"})
	run("", "machine", "add", "BLD-001", "--mac", "52:54:00:00:03:01", "--profile", "talos", "--param", "omni_api=https://omni.example.com:8090/",
		"--bmc-address", "192.0.2.31", "--bmc-user", "admin", "--bmc-password-secret", "bmc-pw", "--label", "leak=1")
	run("", "machine", "add", "BLD-002", "--mac", "52:54:00:00:03:02", "--profile", "slurm", "--param", "slurm_controller=192.0.2.2",
		"--bmc-address", "192.0.2.32", "--bmc-user", "admin", "--bmc-password-env", "BLD_ENV_PW", "--label", "leak=1")
	// A wrong password: the BMC's error echoes what it was given.
	run("", "machine", "add", "BLD-003", "--mac", "52:54:00:00:03:03", "--bmc-address", "192.0.2.33", "--bmc-user", "admin",
		"--bmc-password-secret", "bmc-pw", "--label", "leak=1")
	run("", "assets", "pull", "talos")
	run("", "power", "--label", "leak=1", "on")
	run("", "power", "--label", "leak=1", "status", "-o", "json")
	run("", "bootdev", "--label", "leak=1", "pxe")

	// Where secrets belong: the Talos script, the Slurm overlay.
	fp, err := certs.FileFingerprint(filepath.Join(c.dataDir, certs.SelfSignedCert))
	if err != nil {
		t.Fatal(err)
	}
	control := &http.Client{Transport: &http.Transport{TLSClientConfig: certs.ClientConfig(fp, nil)}}
	get := func(path string) string {
		// Boot files from the boot plane, the rest from the control plane.
		var resp *http.Response
		var err error
		if strings.HasPrefix(path, "/boot/") {
			resp, err = http.Get(c.boot + path)
		} else {
			resp, err = control.Get(c.server + path)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return string(raw)
	}
	// The Talos script names its config document (with the boot's nonce),
	// which holds the join token.
	config := regexp.MustCompile(`talos\.config=(http://\S+)`).FindStringSubmatch(get("/boot/52-54-00-00-03-01/script"))
	if config == nil || !strings.Contains(config[1], "nonce=") {
		t.Fatalf("BLD-001's Talos script names no config document with a nonce: %q", config)
	}
	if s := get(strings.TrimPrefix(config[1], c.boot)); !strings.Contains(s, "jointoken="+joinTok) {
		t.Errorf("BLD-001's Talos config document lacks its join token:\n%s", s)
	}
	// The overlay's URL, with the boot's nonce, is in the Slurm script
	// (the power-on through the BMC started the boot).
	overlay := regexp.MustCompile(`http://\S+/overlay\.cpio\S*`).FindString(get("/boot/52-54-00-00-03-02/script"))
	if !strings.Contains(overlay, "nonce=") {
		t.Fatalf("BLD-002's Slurm script names no overlay with a nonce: %q", overlay)
	}
	if s := get(strings.TrimPrefix(overlay, c.boot)); !strings.Contains(s, munge) {
		t.Error("BLD-002's Slurm overlay lacks the munge key")
	}
	// Nowhere else: not for an unknown machine, not in another machine's
	// boot files.
	for _, p := range []string{"/boot/52-54-00-00-03-03/script", "/boot/52-54-00-00-03-99/script", "/boot/52-54-00-00-03-99/overlay.cpio?profile=slurm",
		"/boot/52-54-00-00-03-03/overlay.cpio?profile=slurm", "/boot/52-54-00-00-03-99/script?profile=talos",
		"/boot/52-54-00-00-03-99/config?profile=talos", "/boot/52-54-00-00-03-03/config?profile=talos", "/boot/52-54-00-00-03-01/config?profile=talos"} {
		outputs = append(outputs, "GET "+p+"\n"+get(p))
	}

	// Timeline events are stored a moment after the API answers: wait for
	// the last action's, so every event is there to be grepped.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if out, _ := c.run("events", "BLD-003", "-o", "json"); strings.Contains(out, `"bmc.bootdev"`) {
			break
		}
	}
	for _, args := range [][]string{
		{"machine", "list"}, {"machine", "list", "-o", "json"}, {"machine", "show", "BLD-001"}, {"machine", "show", "BLD-002", "-o", "yaml"},
		{"machine", "show", "BLD-003", "-o", "json"}, {"machine", "history", "BLD-001"}, {"events", "BLD-001", "-o", "json"}, {"events", "BLD-002"},
		{"events", "BLD-003", "-o", "json"}, {"secret", "list", "-o", "json"}, {"export"}, {"status"}, {"profile", "render", "BLD-001"},
		{"profile", "render", "BLD-002"}, {"audit"}, {"assets", "list"}, {"systems"},
	} {
		run("", args...)
	}
	for _, p := range []string{"/api/v1/machines", "/api/v1/machines/BLD-001", "/api/v1/machines/BLD-001/events", "/api/v1/events",
		"/api/v1/secrets", "/api/v1/export", "/api/v1/status", "/api/v1/machines/BLD-001/script", "/api/v1/machines/BLD-002/script", "/metrics"} {
		outputs = append(outputs, "GET "+p+"\n"+get(p))
	}
	outputs = append(outputs, "daemon log\n"+log.String())

	checked := 0
	for _, out := range outputs {
		for _, secret := range []string{bmcPW, envPW, joinTok, munge} {
			checked++
			if strings.Contains(out, secret) {
				name, _, _ := strings.Cut(out, "\n")
				t.Errorf("secret %q appears in %s", secret, name)
			}
		}
	}
	// The failed login was really attempted and reported, redacted.
	if !strings.Contains(log.String(), "[redacted]") {
		t.Error("the failed BMC login left no redacted error in the log")
	}
	t.Logf("%d outputs (CLI, API, boot endpoints, metrics, daemon log: %d bytes) checked for 4 secrets: %d checks, none leaked",
		len(outputs), len(log.String()), checked)
}

// lockedLog is a log sink safe for the daemon's goroutines.
type lockedLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
