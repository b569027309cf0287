package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc/ipmisim"
	"github.com/provisiond/provisiond/internal/events"
)

// The Slurm nodes of the long test: two QEMU machines behind ipmi_sim
// BMCs, and one whose BMC never answers (its node never comes back).
var slurmNodes = []struct{ name, machine, mac, bmc string }{
	{"node-007", "sl-007", "52:54:00:e2:e0:07", "192.0.2.11"},
	{"node-008", "sl-008", "52:54:00:e2:e0:08", "192.0.2.12"},
	{"node-009", "sl-009", "52:54:00:e2:e0:09", "192.0.2.13"}, // nothing there
}

// TestSlurmPowerSaving is the long Slurm test (make e2e-slurm): it builds a
// real base image with profiles/slurm/build-base.sh, runs munged and a
// config-less slurmctld in the lab with power saving through provisiond
// (slurm setup's programs and token, slurm config's lines), and two nodes
// powered off behind ipmi_sim. A job for two nodes makes slurmctld resume
// them: both PXE-boot the stateless image, register and run the job; after
// SuspendTime they are shut down and QEMU exits. A third node, whose BMC
// never answers, is marked down by Slurm after its partition's
// ResumeTimeout and its failure is on its timeline.
func TestSlurmPowerSaving(t *testing.T) {
	if os.Getenv("PROVISIOND_E2E_SLURM") == "" {
		t.Skip("the long Slurm test runs with PROVISIOND_E2E_SLURM=1 (make e2e-slurm)")
	}
	requireLab(t)
	for _, c := range []string{"slurmctld", "munged", "sinfo", "sbatch", "scontrol", "debootstrap"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("the Slurm test needs %s: apt-get install slurmctld slurm-client munge debootstrap", c)
		}
	}
	if why := ipmisim.Available(); why != "" {
		t.Skip("the Slurm test " + why)
	}
	image := buildSlurmImage(t)
	// A site profile (as an operator would add one): the built-in slurm
	// profile plus an overlay file that sends slurmd's output to the
	// serial console, so a failure shows on the console this test prints.
	site := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "profiles", "slurm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	raw = append(raw, []byte("  - path: /etc/systemd/system/slurmd.service.d/zz-console.conf\n    template: |\n      [Service]\n      StandardOutput=tty\n      StandardError=tty\n      TTYPath=/dev/ttyS0\n")...)
	os.WriteFile(filepath.Join(site, "slurm.yaml"), raw, 0o644)
	tmpl, _ := os.ReadFile(filepath.Join(repoRoot(t), "profiles", "slurm.ipxe"))
	os.WriteFile(filepath.Join(site, "slurm.ipxe"), tmpl, 0o644)
	l := newLabWith(t, "slurm:\n  stagger: 5s\n  soft_grace: 20s\nbmc:\n  timeout: 10s\n", nil, "--profiles-dir", site)

	// munged for slurmctld, on the host's default socket (the lab's
	// namespaces share the file system).
	key := make([]byte, 1024)
	rand.Read(key)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "munge.key")
	os.WriteFile(keyFile, key, 0o400)
	os.MkdirAll("/run/munge", 0o755)
	if out, err := exec.Command("pgrep", "-x", "munged").Output(); err == nil && len(out) > 0 {
		t.Skip("a munged already runs on this host; the test needs the default socket for its own")
	}
	munged := exec.Command("munged", "--foreground", "--force", "--key-file", keyFile, "--socket", "/run/munge/munge.socket.2",
		"--pid-file", filepath.Join(dir, "munged.pid"), "--log-file", filepath.Join(dir, "munged.log"), "--seed-file", filepath.Join(dir, "munged.seed"))
	if err := munged.Start(); err != nil {
		t.Fatalf("munged: %v", err)
	}
	defer func() { munged.Process.Kill(); munged.Wait() }()

	// The real base image and its kernel go into provisiond's assets.
	os.MkdirAll(filepath.Join(l.served, "slurm"), 0o755)
	for _, f := range []string{"vmlinuz", "base.cpio.gz"} {
		if out, err := exec.Command("cp", filepath.Join(image, f), filepath.Join(l.served, "slurm", f)).CombinedOutput(); err != nil {
			t.Fatalf("copying %s: %v %s", f, err, out)
		}
	}
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	l.mustCLI("secret", "set", "munge-key", "--from-file", keyFile)
	l.cliStdin(bmcPass, "secret", "set", "bmc-slurm")
	bmcs := map[string]*ipmiBMC{}
	for _, n := range slurmNodes {
		if n.name != "node-009" {
			bmcs[n.name] = l.startBMCFor(t, n.name, n.mac, n.bmc, "2048")
		}
		l.mustCLI("machine", "add", n.machine, "--mac", n.mac, "--profile", "slurm", "--hostname", n.name,
			"--param", "slurm_controller="+serverIP+":6817", "--param", "cmdline=console=ttyS0,115200 systemd.journald.forward_to_console=1",
			"--param", "hosts="+serverIP+" "+host, "--param", "slurmd_args=-vv",
			"--bmc-address", n.bmc, "--bmc-user", bmcUser, "--bmc-password-secret", "bmc-slurm", "--bmc-cipher-suite", "3")
	}

	// slurmctld's programs and token, and the slurm.conf lines, as an
	// operator makes them.
	hooks := filepath.Join(dir, "hooks")
	t.Logf("provisiond slurm setup:\n%s", l.mustCLI("slurm", "setup", "--dir", hooks, "--owner", "root"))
	lines := l.mustCLI("slurm", "config", "--dir", hooks, "--suspend-time", "60s")
	t.Logf("provisiond slurm config:\n%s", lines)
	conf := filepath.Join(dir, "slurm.conf")
	os.MkdirAll(filepath.Join(dir, "state"), 0o755)
	os.WriteFile(conf, []byte(fmt.Sprintf(`ClusterName=provisiond-e2e
SlurmctldHost=%s(%s)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=%s/state
SlurmctldPidFile=%s/slurmctld.pid
SlurmctldLogFile=%s/slurmctld.log
SlurmctldDebug=debug
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
TreeWidth=65533
%s
PartitionName=debug Nodes=node-[007-008] Default=YES MaxTime=INFINITE State=UP
PartitionName=dead Nodes=node-009 MaxTime=INFINITE State=UP ResumeTimeout=90
`, host, serverIP, dir, dir, dir, lines)), 0o644)
	ctld := exec.Command("ip", "netns", "exec", l.server, "slurmctld", "-D", "-f", conf)
	ctldOut := &lockedBuffer{}
	ctld.Stdout, ctld.Stderr = ctldOut, ctldOut
	if err := ctld.Start(); err != nil {
		t.Fatalf("slurmctld: %v", err)
	}
	defer func() {
		ctld.Process.Kill()
		ctld.Wait()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "slurmctld.log"))
			t.Logf("slurmctld:\n%s\n%s", ctldOut.String(), tail(string(log), 150))
		}
	}()
	slurm := func(args ...string) string {
		cmd := exec.Command("ip", append([]string{"netns", "exec", l.server}, args...)...)
		cmd.Env = append(os.Environ(), "SLURM_CONF="+conf)
		out, _ := cmd.CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	state := func(node string) string { return slurm("sinfo", "-h", "-N", "-n", node, "-o", "%T") }
	waitUntil := func(what string, d time.Duration, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(3 * time.Second) {
			if ok() {
				return
			}
		}
		t.Fatalf("%s: not within %s; sinfo:\n%s\nsqueue:\n%s", what, d, slurm("sinfo", "-N", "-l"), slurm("squeue", "-l"))
	}
	// Powered down from the start: State=CLOUD, no QEMU running.
	waitUntil("the nodes start powered down", time.Minute, func() bool {
		return strings.HasSuffix(state("node-007"), "~") && strings.HasSuffix(state("node-008"), "~")
	})
	for name, b := range bmcs {
		if b.vmRunning() {
			t.Fatalf("%s runs before any job", name)
		}
	}
	t.Logf("before the job:\n%s", slurm("sinfo", "-N", "-n", "node-[007-009]"))

	// The nodes have no copy of this directory: the job runs in /tmp.
	job := slurm("sbatch", "--parsable", "-N2", "-p", "debug", "--chdir=/tmp", "--output=/dev/null", "--wrap", "hostname")
	dead := slurm("sbatch", "--parsable", "-N1", "-p", "dead", "--chdir=/tmp", "--output=/dev/null", "--wrap", "true")
	t.Logf("submitted job %s (debug, two nodes) and %s (dead)", job, dead)
	jobState := func(id string) string {
		for _, f := range strings.Fields(slurm("scontrol", "show", "job", id)) {
			if v, ok := strings.CutPrefix(f, "JobState="); ok {
				return v
			}
		}
		return ""
	}
	waitUntil("job "+job+" ends on the resumed nodes", 15*time.Minute, func() bool {
		st := jobState(job)
		return st == "COMPLETED" || st == "FAILED" || st == "CANCELLED" || st == "NODE_FAIL"
	})
	if st := jobState(job); st != "COMPLETED" {
		t.Fatalf("job %s: %s\n%s", job, st, slurm("scontrol", "show", "job", job))
	}
	t.Logf("job %s: %s", job, slurm("scontrol", "show", "job", job))
	for name, b := range bmcs {
		if log := b.chassisLog(); !strings.Contains(log, "boot device pxe") || !strings.Contains(log, "power on: boot pxe") {
			t.Errorf("%s's BMC did not see PXE then power-on:\n%s", name, log)
		}
	}

	// Idle for SuspendTime: slurmctld suspends them, provisiond shuts
	// them down, QEMU exits.
	waitUntil("both nodes powered off after SuspendTime", 6*time.Minute, func() bool {
		return !bmcs["node-007"].vmRunning() && !bmcs["node-008"].vmRunning()
	})
	t.Logf("after SuspendTime:\n%s", slurm("sinfo", "-N", "-n", "node-[007-009]"))

	// The node whose BMC never answers: Slurm marks it down and its
	// failure is on its timeline.
	waitUntil("node-009 marked down", 6*time.Minute, func() bool { return strings.HasPrefix(state("node-009"), "down") })
	slurm("scancel", dead)

	addrs := map[string]string{} // booted OS's address -> machine
	for _, n := range slurmNodes {
		var got []string
		var evs []events.Event
		for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(2 * time.Second) {
			evs = l.timeline(n.machine)
			got = slurmSteps(evs)
			if n.name == "node-009" && strings.Contains(strings.Join(got, " "), "slurm.resume_failed") ||
				n.name != "node-009" && strings.Contains(strings.Join(got, " "), "slurm.suspend:ok") {
				break
			}
		}
		want := []string{"slurm.resume:queued", "bmc.bootdev:ok", "bmc.power:ok", "slurm.resume:ok", "boot.callback:slurmd-started", "slurm.resumed", "slurm.suspend:ok"}
		if n.name == "node-009" {
			want = []string{"slurm.resume:queued", "bmc.bootdev:error", "slurm.resume:error", "slurm.resume_failed"}
		}
		if !inOrder(got, want) {
			t.Errorf("%s's timeline: %s, want in order %s\n%s", n.machine, strings.Join(got, " "), strings.Join(want, " "), formatTimeline(evs))
		} else {
			t.Logf("%s: %s", n.machine, strings.Join(got, " "))
		}
		if n.name == "node-009" {
			continue
		}
		// Each node's OS has an address of its own (the same image on
		// every node once gave them one machine ID, so one DHCP client ID
		// and one address).
		for _, ev := range evs {
			if ev.Type == events.Booted {
				if other, dup := addrs[ev.Attrs["client"]]; dup && other != n.machine {
					t.Errorf("%s and %s booted with the same address %s", other, n.machine, ev.Attrs["client"])
				}
				addrs[ev.Attrs["client"]] = n.machine
			}
		}
		// Why: the job Slurm resumed the node for (SLURM_RESUME_FILE),
		// and how it went off; the machine's state says it was Slurm.
		for _, ev := range evs {
			switch {
			case ev.Type == "slurm.resume" && ev.Attrs["result"] == "ok":
				if ev.Attrs["why"] != "power saving: Slurm wants the node for job "+job {
					t.Errorf("%s resumed for %q, want job %s", n.machine, ev.Attrs["why"], job)
				}
			case ev.Type == "slurm.suspend":
				t.Logf("%s suspended: how=%s seconds=%s why=%s", n.machine, ev.Attrs["how"], ev.Attrs["seconds"], ev.Attrs["why"])
			}
		}
		if show := l.mustCLI("machine", "show", n.machine); !strings.Contains(show, "by Slurm (power saving: idle for SuspendTime (SuspendProgram))") {
			t.Errorf("machine show %s does not say Slurm powered it off:\n%s", n.machine, show)
		} else {
			t.Logf("machine show %s: %s", n.machine, grepLines(show, "State"))
		}
	}
	metrics := l.sh(l.server, "busybox", "wget", "--no-check-certificate", "-q", "-O", "-", fmt.Sprintf("https://127.0.0.1:%d/metrics", controlPort))
	t.Logf("metrics:\n%s", grepLines(metrics, "provisiond_slurm_power_total{"))
	if metricValue(metrics, `provisiond_slurm_power_total{action="resume",result="ok"}`) < 2 {
		t.Errorf("slurm resume metrics:\n%s", grepLines(metrics, "provisiond_slurm_power_total{"))
	}
}

// slurmSteps is a timeline as the Slurm test reads it: the Slurm and BMC
// steps with their results, and the booted callback's status.
func slurmSteps(evs []events.Event) []string {
	var out []string
	for _, ev := range evs {
		switch ev.Type {
		case "slurm.resume", "slurm.suspend", "bmc.bootdev", "bmc.power":
			out = append(out, ev.Type+":"+ev.Attrs["result"])
		case "slurm.resumed", "slurm.resume_failed":
			out = append(out, ev.Type)
		case events.Booted:
			out = append(out, ev.Type+":"+ev.Attrs["status"])
		}
	}
	return out
}

// inOrder reports whether want appears in got in order (others between).
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// buildSlurmImage builds the real base image once per version of the
// script (cached in test/e2e/.cache/slurm).
func buildSlurmImage(t *testing.T) string {
	t.Helper()
	script := filepath.Join(repoRoot(t), "profiles", "slurm", "build-base.sh")
	raw, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	stamp := hex.EncodeToString(sum[:8])
	dir := filepath.Join(repoRoot(t), "test", "e2e", ".cache", "slurm")
	if got, _ := os.ReadFile(filepath.Join(dir, "stamp")); string(got) == stamp {
		return dir
	}
	start := time.Now()
	cmd := exec.Command("bash", script, dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build-base.sh: %v\n%s", err, tail(string(out), 40))
	}
	os.WriteFile(filepath.Join(dir, "stamp"), []byte(stamp), 0o644)
	t.Logf("built the Slurm base image in %s", time.Since(start).Round(time.Second))
	return dir
}
