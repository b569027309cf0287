package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/config"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/events"
)

// Slurm's power saving through the CLI and a running daemon: setup writes
// the scoped token and the three programs; resume with that token sets PXE
// and powers the Slurm machines on, staggered, and refuses a Talos machine
// by name without touching it; suspend powers them off; resume-failed
// --power-off records the failure; the token opens nothing else; slurm
// config prints the lines for slurm.conf.
func TestSlurmPowerSaving(t *testing.T) {
	f, c := newSimFleet(t, func(cfg *config.Config, _ *daemon.Options) {
		cfg.Slurm.Stagger, cfg.Slurm.SoftGrace = "300ms", "1s"
		assets := filepath.Join(cfg.DataDir, "assets", "slurm")
		os.MkdirAll(assets, 0o755)
		os.WriteFile(filepath.Join(assets, "vmlinuz"), []byte(strings.Repeat("k", 4096)), 0o644)
		os.WriteFile(filepath.Join(assets, "base.cpio.gz"), []byte(strings.Repeat("b", 4096)), 0o644)
	})
	c.runStdin("pw-Slurm-1", "secret", "set", "bmc")
	c.runStdin(strings.Repeat("m", 1024), "secret", "set", "munge-key")
	for i, name := range []string{"BLD-003", "BLD-004", "BLD-009"} {
		host := fmt.Sprintf("192.0.2.4%d", i)
		mac := fmt.Sprintf("52:54:00:00:04:%02x", i)
		f.add(host, &simBMC{machine: name, mac: mac, password: "pw-Slurm-1"})
		args := []string{"machine", "add", name, "--mac", mac, "--bmc-address", host, "--bmc-password-secret", "bmc", "--hostname", "node-00" + name[6:]}
		if name == "BLD-009" {
			args = append(args, "--profile", "local")
		} else {
			args = append(args, "--profile", "slurm", "--param", "slurm_controller=192.0.2.6:6817")
		}
		c.must(args...)
	}
	dir := t.TempDir()
	out := c.must("slurm", "setup", "--dir", dir, "--owner", "")
	t.Logf("slurm setup:\n%s", out)
	tok := filepath.Join(dir, "provisiond.token")
	if st, err := os.Stat(tok); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	resume, _ := os.ReadFile(filepath.Join(dir, "provisiond-resume"))
	if !strings.Contains(string(resume), "--token-file "+tok+" slurm resume \"$@\"") || !strings.Contains(string(resume), "--fingerprint sha256:") {
		t.Errorf("provisiond-resume:\n%s", resume)
	}
	hook := func(args ...string) (string, error) {
		return c.run(append([]string{"--token-file", tok}, args...)...)
	}
	out, err := hook("slurm", "resume", "node-00[3-4,9]")
	t.Logf("slurm resume node-00[3-4,9]:\n%s", out)
	if exitCode(err) != 1 || !strings.Contains(out, "node-003\tBLD-003\tresuming") || !strings.Contains(out, "node-004\tBLD-004\tresuming") ||
		!strings.Contains(out, `node-009 refused: machine BLD-009 boots profile "local", not slurm`) {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	waitCalls := func(what string, ok func(string) bool) string {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			f.mu.Lock()
			var all []string
			for _, h := range []string{"192.0.2.40", "192.0.2.41", "192.0.2.42"} {
				all = append(all, f.bmcs[h].machine+": "+strings.Join(f.bmcs[h].calls, ", "))
			}
			f.mu.Unlock()
			if s := strings.Join(all, "\n"); ok(s) {
				return s
			}
		}
		t.Fatalf("timed out waiting for %s", what)
		return ""
	}
	calls := waitCalls("both power-ons", func(s string) bool { return strings.Count(s, "power on") >= 2 })
	if !strings.Contains(calls, "BLD-003: open, bootdev pxe") || strings.Contains(calls, "BLD-009: open") {
		t.Errorf("BMC calls after resume:\n%s", calls)
	}
	f.wg.Wait() // the simulated machines fetched their scripts
	// The token changes nothing else (reads follow http.read_access, open
	// on loopback here; TestSlurmTokenScope in internal/api reads from
	// another host).
	for _, args := range [][]string{{"power", "BLD-009", "off"}, {"power", "BLD-003", "off"}, {"machine", "set", "BLD-009", "--profile", "slurm"}, {"secret", "set", "munge-key", "--from-file", tok}} {
		if out, err := hook(args...); err == nil {
			t.Errorf("provisiond %s with the Slurm token: %s", strings.Join(args, " "), out)
		}
	}
	if out, err := hook("slurm", "suspend", "node-00[3-4]"); err != nil {
		t.Fatalf("suspend: %v\n%s", err, out)
	}
	calls = waitCalls("both soft power-offs", func(s string) bool { return strings.Count(s, "power soft") == 2 })
	if strings.Contains(calls, "BLD-009: open") {
		t.Errorf("BLD-009 touched:\n%s", calls)
	}
	if out, err := hook("slurm", "resume-failed", "--power-off", "node-004"); err != nil || !strings.Contains(out, "node-004\tBLD-004\trecorded") {
		t.Fatalf("resume-failed: %v\n%s", err, out)
	}
	var types []string
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		types = types[:0]
		out := c.must("events", "BLD-004", "-o", "json")
		for _, typ := range []string{events.SlurmResume, events.BMCBootDevice, events.BMCPower, events.SlurmSuspend, events.SlurmResumeFailed} {
			if strings.Contains(out, `"type": "`+typ+`"`) {
				types = append(types, typ)
			}
		}
		if len(types) == 5 {
			break
		}
	}
	if len(types) != 5 {
		t.Errorf("BLD-004's timeline has only %v", types)
	}
	conf := c.must("slurm", "config", "--dir", dir)
	for _, want := range []string{"ResumeProgram=" + filepath.Join(dir, "provisiond-resume"), "SuspendProgram=", "ResumeFailProgram=", "ResumeTimeout=900 # no resume measured yet",
		"NodeName=node-003 ", " State=CLOUD", "SuspendTime=600", "PrivateData=cloud"} {
		if !strings.Contains(conf, want) {
			t.Errorf("slurm config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "node-009") {
		t.Errorf("slurm config names a machine on another profile:\n%s", conf)
	}
	t.Logf("slurm config:\n%s", conf)
}

// The jobs of a resume come from SLURM_RESUME_FILE as Slurm 22.05 writes
// it ("nodes") and as 23.02 and later do ("nodes_resume").
func TestResumeJobs(t *testing.T) {
	dir := t.TempDir()
	for name, doc := range map[string]string{
		"22.05": `{"all_nodes":"node-[007-009]","jobs":[{"job_id":1,"nodes":"node-[007-008]","partition":"debug"},{"job_id":2,"nodes":"node-009"}]}`,
		"23.02": `{"all_nodes_resume":"node-[007-009]","jobs":[{"job_id":1,"nodes_alloc":"node-[006-008]","nodes_resume":"node-[007-008]"},{"job_id":2,"nodes_alloc":"node-009","nodes_resume":"node-009"}]}`,
	} {
		path := filepath.Join(dir, name+".json")
		os.WriteFile(path, []byte(doc), 0o600)
		e := env{get: func(k string) string {
			if k == "SLURM_RESUME_FILE" {
				return path
			}
			return ""
		}}
		got := fmt.Sprint(resumeJobs("resume", e))
		if got != "[{1 node-[007-008]} {2 node-009}]" {
			t.Errorf("Slurm %s: %s", name, got)
		}
		if jobs := resumeJobs("suspend", e); jobs != nil {
			t.Errorf("suspend read the resume file: %v", jobs)
		}
	}
}
