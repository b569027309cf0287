package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/daemon/daemontest"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

// cliEnv runs CLI commands against an in-process daemon (HTTP on loopback,
// no DHCP or TFTP).
type cliEnv struct {
	t       *testing.T
	server  string // the control plane
	boot    string // the boot plane
	token   string
	dataDir string
	// clientConfig is the CLI's client config (trusted servers), apart
	// from the user's own.
	clientConfig string
}

// getenv is the environment the CLI sees: only its client config.
func (c *cliEnv) getenv(k string) string {
	if k == "PROVISIOND_CLIENT_CONFIG" {
		return c.clientConfig
	}
	return ""
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	return newCLIEnvWith(t, nil)
}

// newCLIEnvWith lets a test change the config and daemon options.
func newCLIEnvWith(t *testing.T, adjust func(*config.Config, *daemon.Options)) *cliEnv {
	t.Helper()
	d := daemontest.Start(t, adjust)
	return &cliEnv{t: t, server: d.URL, boot: d.BootURL, token: d.TokenFile, dataDir: d.Config.DataDir,
		clientConfig: filepath.Join(t.TempDir(), "client.yaml")}
}

func (c *cliEnv) run(args ...string) (string, error) {
	var out bytes.Buffer
	e := env{get: c.getenv, stdout: &out, stderr: &out}
	root := newRoot(context.Background(), e)
	root.SetArgs(append([]string{"--server", c.server, "--token-file", c.token}, args...))
	root.SetOut(&out)
	err := root.Execute()
	return out.String(), err
}

func (c *cliEnv) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("provisiond %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestMachineCommands(t *testing.T) {
	c := newCLIEnv(t)
	out := c.must("machine", "add", "BLD-006", "--mac", "52-54-00-00-00-06", "--profile", "linux", "--hostname", "bld-006",
		"--param", "kernel=vmlinuz", "--param", "cmdline=console=ttyS0 quiet", "--address", "192.0.2.56/24", "--gateway", "192.0.2.1", "--firmware", "bios")
	for _, w := range []string{"Name:", "BLD-006", "52:54:00:00:00:06", "Param cmdline:", "console=ttyS0 quiet", "Firmware:", "bios"} {
		if !strings.Contains(out, w) {
			t.Errorf("add output lacks %q:\n%s", w, out)
		}
	}
	c.must("machine", "add", "oden", "--mac", "52:54:00:00:01:71", "--profile", "local")

	out = c.must("machine", "list")
	if !strings.HasPrefix(out, "NAME") || !strings.Contains(out, "BLD-006") || !strings.Contains(out, "192.0.2.56/24") || !strings.Contains(out, "oden") {
		t.Errorf("list:\n%s", out)
	}
	var ms []inventory.Machine
	if err := json.Unmarshal([]byte(c.must("machine", "list", "-o", "json")), &ms); err != nil || len(ms) != 2 {
		t.Fatalf("list -o json: %v %v", ms, err)
	}
	if out := c.must("machine", "list", "-o", "yaml"); !strings.Contains(out, "name: BLD-006") {
		t.Errorf("list -o yaml:\n%s", out)
	}

	c.must("machine", "set", "BLD-006", "--kernel-args", "slurm.role=compute", "--add-mac", "52:54:00:00:00:16", "--unset-param", "cmdline", "--firmware", "auto")
	var m inventory.Machine
	json.Unmarshal([]byte(c.must("machine", "show", "BLD-006", "-o", "json")), &m)
	if m.KernelArgs != "slurm.role=compute" || len(m.MACs) != 2 || m.Params["cmdline"] != "" || m.Firmware != "" || m.Hostname != "bld-006" {
		t.Errorf("after set: %+v", m)
	}

	script := c.must("profile", "render", "BLD-006", "--mac", "52:54:00:00:00:16")
	if !strings.Contains(script, "slurm.role=compute") || !strings.Contains(script, "mac=52%3A54%3A00%3A00%3A00%3A16") {
		t.Errorf("render:\n%s", script)
	}
	if out := c.must("profile", "list"); !strings.Contains(out, "kernel*") || !strings.Contains(out, "menu") {
		t.Errorf("profile list:\n%s", out)
	}

	// Mistakes get clear messages and change nothing.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"machine", "add", "x", "--mac", "nonsense"}, "is not a 6-byte MAC address"},
		{[]string{"machine", "add", "y", "--mac", "52:54:00:00:01:71"}, "already belongs to machine oden"},
		{[]string{"machine", "add", "z"}, "has no MAC address"},
		{[]string{"machine", "set", "BLD-006", "--param", "novalue"}, "KEY=VALUE"},
		{[]string{"machine", "set", "BLD-006", "--address", "192.0.2.5"}, "prefix length"},
		{[]string{"machine", "set", "BLD-006", "--profile", "nope"}, "profile nope does not exist"},
		{[]string{"machine", "show", "missing"}, "not found"},
		{[]string{"machine", "list", "-o", "xml"}, "unknown output format"},
		{[]string{"events"}, "name a machine"},
	} {
		out, err := c.run(tc.args...)
		if err == nil || !strings.Contains(err.Error()+out, tc.want) {
			t.Errorf("%v: want error %q, got %v\n%s", tc.args, tc.want, err, out)
		}
	}
	// Without the token, changes are refused.
	var buf bytes.Buffer
	root := newRoot(context.Background(), env{get: c.getenv, stdout: &buf, stderr: &buf})
	root.SetArgs([]string{"--server", c.server, "--token-file", "/nonexistent", "machine", "rm", "oden"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("rm without token: %v", err)
	}

	if out := c.must("machine", "rm", "oden"); !strings.Contains(out, "removed oden") {
		t.Errorf("rm: %s", out)
	}
	// A machine that never booted has only its assignments on the timeline.
	var evs []events.Event
	json.Unmarshal([]byte(c.must("events", "BLD-006", "-o", "json")), &evs)
	if len(evs) != 1 || evs[0].Type != events.MachineChanged || evs[0].Attrs["profile"] != "linux" {
		t.Errorf("events of a machine that never booted: %+v", evs)
	}
}

func TestProfileCheck(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rescue.yaml"), []byte("description: rescue\nparams:\n  kernel:\n    required: true\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "rescue.ipxe"), []byte("#!ipxe\nkernel {{asset .Params.kernel}}\nboot\n"), 0o644)
	var out bytes.Buffer
	if err := checkProfiles(&out, dir); err != nil || !strings.Contains(out.String(), "ok    "+filepath.Join(dir, "rescue.ipxe")) {
		t.Fatalf("good directory: %v\n%s", err, out.String())
	}
	os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("description: broken\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "broken.ipxe"), []byte("#!ipxe\nkernel {{asset \"\"}}\n"), 0o644)
	out.Reset()
	err := checkProfiles(&out, dir)
	if err == nil || !strings.Contains(out.String(), "FAIL  "+filepath.Join(dir, "broken.ipxe")) || !strings.Contains(out.String(), "empty file name") {
		t.Fatalf("broken profile: %v\n%s", err, out.String())
	}
	os.WriteFile(filepath.Join(dir, "broken.ipxe"), []byte("#!ipxe\nkernel {{asset .Params.nope}}\n"), 0o644)
	if err := checkProfiles(&out, dir); err == nil || !strings.Contains(err.Error(), "broken.ipxe:2") {
		t.Fatalf("undeclared parameter: %v", err)
	}
}

func TestSecretCommands(t *testing.T) {
	c := newCLIEnv(t)
	var out bytes.Buffer
	e := env{get: c.getenv, stdin: strings.NewReader("tok-abc\n"), stdout: &out, stderr: &out}
	root := newRoot(context.Background(), e)
	root.SetArgs([]string{"--server", c.server, "--token-file", c.token, "secret", "set", "omni-join-token"})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "stored secret omni-join-token (7 bytes)") {
		t.Fatalf("secret set: %v %s", err, out.String())
	}
	list := c.must("secret", "list")
	if !strings.Contains(list, "omni-join-token") || strings.Contains(list, "tok-abc") {
		t.Errorf("secret list:\n%s", list)
	}
	if out := c.must("secret", "list", "-o", "json"); strings.Contains(out, "tok-abc") {
		t.Errorf("secret list -o json shows the value:\n%s", out)
	}
	c.must("secret", "rm", "omni-join-token")
	if _, err := c.run("secret", "rm", "omni-join-token"); err == nil {
		t.Error("removing a missing secret succeeded")
	}
}

// Every machine of the example homelab renders, machines without a MAC
// included (BLD-008 is known only by its hardware): no handler may index
// what is not there, and the CLI says what it rendered.
func TestRenderEveryExampleMachine(t *testing.T) {
	d := daemontest.Start(t, nil)
	ac := d.ImportHomelab(t)
	c := &cliEnv{t: t, server: d.URL, boot: d.BootURL, token: d.TokenFile, dataDir: d.Config.DataDir, clientConfig: filepath.Join(t.TempDir(), "client.yaml")}
	ms, err := ac.Machines(context.Background())
	if err != nil || len(ms) < 20 {
		t.Fatalf("example machines: %d, %v", len(ms), err)
	}
	for _, m := range ms {
		out, err := c.run("profile", "render", m.Name)
		if err != nil {
			// A render may fail for a reason the operator can fix (ODEN's
			// Talos needs talos.version), never because the daemon broke.
			if strings.Contains(err.Error(), "cannot reach") || !strings.Contains(err.Error(), "bad request") {
				t.Errorf("profile render %s: %v\n%s", m.Name, err, out)
			}
			continue
		}
		if !strings.HasPrefix(out, "#!ipxe\n") {
			t.Errorf("profile render %s:\n%s", m.Name, out)
		}
		if len(m.MACs) == 0 && !strings.Contains(out, "has no MAC yet") {
			t.Errorf("profile render %s (no MAC) does not say so:\n%s", m.Name, out)
		}
	}
	out := c.must("profile", "render", "BLD-008")
	t.Logf("provisiond profile render BLD-008:\n%s", out)
}

// machine set while the machine boots: a write based on a record a boot
// changed meanwhile is refused (409) and applied again to the new record,
// so no one-shot assignment a boot used up comes back and no change of
// the operator's is lost. The API never takes a client's facts or
// one-shot state.
func TestSetDuringBootsLosesNothing(t *testing.T) {
	d := daemontest.Start(t, nil)
	d.WriteAssets(t)
	c := &cliEnv{t: t, server: d.URL, boot: d.BootURL, token: d.TokenFile, dataDir: d.Config.DataDir, clientConfig: filepath.Join(t.TempDir(), "client.yaml")}
	ac := d.Client(t)
	ctx := context.Background()
	const mac = "52:54:00:00:17:01"
	c.must("machine", "add", "m1", "--mac", mac, "--profile", "linux", "--once", "--param", "kernel=vmlinuz", "--param", "initrd=initrd.img")

	// Deterministic: a record read before a boot used up its one-shot
	// cannot be written back.
	stale, _ := ac.Machine(ctx, "m1")
	d.Boot(t, mac)
	waitUsedUp := func() {
		// The boot's last file is counted a moment after the client has
		// it: wait for its one-shot to be used up.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if m, err := ac.Machine(ctx, "m1"); err == nil && m.Once == nil {
				return
			}
		}
	}
	waitUsedUp()
	stale.Hostname = "stale"
	if _, err := ac.UpdateMachine(ctx, *stale); err == nil || !strings.Contains(err.Error(), "changed since it was read") {
		t.Fatalf("a stale write: %v", err)
	}
	if m, _ := ac.Machine(ctx, "m1"); m.Once != nil || m.Profile != "local" || m.Hostname == "stale" {
		t.Fatalf("after the stale write: %+v", m)
	}
	// Facts and one-shot state in a client's record are ignored.
	cur, _ := ac.Machine(ctx, "m1")
	cur.Once = &inventory.Once{Then: "menu"}
	cur.Facts = &inventory.Facts{Manufacturer: "Forged"}
	got, err := ac.UpdateMachine(ctx, *cur)
	if err != nil || got.Once != nil || (got.Facts != nil && got.Facts.Manufacturer == "Forged") {
		t.Fatalf("a client's once and facts were taken: %+v %v", got, err)
	}

	// Concurrent: 30 changes by the CLI while the machine boots ten times.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 30 {
			if out, err := c.run("machine", "set", "m1", "--hostname", fmt.Sprintf("h%02d", i)); err != nil {
				t.Errorf("machine set: %v\n%s", err, out)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 10 {
			if _, err := ac.Assign(ctx, "m1", api.AssignRequest{Profile: "linux", Once: true}); err != nil {
				t.Errorf("assign: %v", err)
				return
			}
			d.Boot(t, mac)
			waitUsedUp()
		}
	}()
	wg.Wait()
	m, _ := ac.Machine(ctx, "m1")
	if m.Hostname != "h29" || m.Once != nil || m.Profile != "local" {
		t.Errorf("after the race: hostname %q, profile %q, once %+v; want h29, local, none", m.Hostname, m.Profile, m.Once)
	}
	// Timeline steps are stored a moment after they happen.
	consumed := 0
	for deadline := time.Now().Add(5 * time.Second); consumed != 11 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var evs []events.Event
		json.Unmarshal([]byte(c.must("events", "m1", "-n", "500", "-o", "json")), &evs)
		consumed = 0
		for _, ev := range evs {
			if ev.Type == events.OnceConsumed {
				consumed++
			}
		}
	}
	if consumed != 11 {
		t.Errorf("one-shot consumed %d times, want 11 (one per boot)\n%s", consumed, c.must("events", "m1", "-n", "500"))
	}
}
