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

	"github.com/provisiond/provisiond/internal/events"
)

// The Slurm node's fixed address (dnsmasq pins it) so slurm.conf can name it.
const (
	slurmNodeMAC = "52:54:00:e2:e0:05"
	slurmNodeIP  = "192.0.2.115"
)

// TestSlurmNodeRegisters is the long Slurm test (make e2e-slurm): it builds a
// real base image with profiles/slurm/build-base.sh, runs munged and a
// config-less slurmctld in the lab, PXE-boots a VM with the slurm profile,
// and waits until sinfo shows the node idle.
func TestSlurmNodeRegisters(t *testing.T) {
	if os.Getenv("PROVISIOND_E2E_SLURM") == "" {
		t.Skip("the long Slurm test runs with PROVISIOND_E2E_SLURM=1 (make e2e-slurm)")
	}
	requireLab(t)
	for _, c := range []string{"slurmctld", "munged", "sinfo", "debootstrap"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("the Slurm test needs %s: apt-get install slurmctld slurm-client munge debootstrap", c)
		}
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
	l := newLab(t, "--profiles-dir", site)

	// munged for slurmctld, on the host's default socket (the lab's
	// namespaces share the file system).
	key := make([]byte, 1024)
	rand.Read(key)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "munge.key")
	os.WriteFile(keyFile, key, 0o400)
	os.MkdirAll("/run/munge", 0o755)
	munged := exec.Command("munged", "--foreground", "--force", "--key-file", keyFile, "--socket", "/run/munge/munge.socket.2",
		"--pid-file", filepath.Join(dir, "munged.pid"), "--log-file", filepath.Join(dir, "munged.log"), "--seed-file", filepath.Join(dir, "munged.seed"))
	if out, err := exec.Command("pgrep", "-x", "munged").Output(); err == nil && len(out) > 0 {
		t.Skip("a munged already runs on this host; the test needs the default socket for its own")
	}
	if err := munged.Start(); err != nil {
		t.Fatalf("munged: %v", err)
	}
	defer func() { munged.Process.Kill(); munged.Wait() }()

	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	conf := filepath.Join(dir, "slurm.conf")
	os.MkdirAll(filepath.Join(dir, "state"), 0o755)
	os.WriteFile(conf, []byte(fmt.Sprintf(`ClusterName=provisiond-e2e
SlurmctldHost=%s(%s)
SlurmctldParameters=enable_configless
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=%s/state
SlurmctldPidFile=%s/slurmctld.pid
SlurmctldLogFile=%s/slurmctld.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
NodeName=node-007 NodeAddr=%s CPUs=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
`, host, serverIP, dir, dir, dir, slurmNodeIP)), 0o644)
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
			t.Logf("slurmctld:\n%s\n%s", ctldOut.String(), log)
		}
	}()

	// The real base image and its kernel go into provisiond's assets.
	os.MkdirAll(filepath.Join(l.served, "slurm"), 0o755)
	for _, f := range []string{"vmlinuz", "base.cpio.gz"} {
		if out, err := exec.Command("cp", filepath.Join(image, f), filepath.Join(l.served, "slurm", f)).CombinedOutput(); err != nil {
			t.Fatalf("copying %s: %v %s", f, err, out)
		}
	}
	l.mustCLI("secret", "set", "munge-key", "--from-file", keyFile)
	l.mustCLI("machine", "add", "node-007", "--mac", slurmNodeMAC, "--profile", "slurm", "--hostname", "node-007",
		"--param", "slurm_controller="+serverIP+":6817", "--param", "cmdline=console=ttyS0,115200 systemd.journald.forward_to_console=1",
		"--param", "hosts="+serverIP+" "+host, "--param", "slurmd_args=-vv")
	v := l.startVMMem("node-007", slurmNodeMAC, seabios, "2048")
	defer v.stop()

	sinfo := func() string {
		cmd := exec.Command("ip", "netns", "exec", l.server, "sinfo", "-h", "-N", "-n", "node-007", "-o", "%T")
		cmd.Env = append(os.Environ(), "SLURM_CONF="+conf)
		out, _ := cmd.CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	deadline := time.Now().Add(10 * time.Minute)
	state := ""
	for time.Now().Before(deadline) {
		if state = sinfo(); state == "idle" {
			break
		}
		time.Sleep(5 * time.Second)
	}
	if state != "idle" {
		raw, _ := os.ReadFile(v.serial)
		t.Fatalf("node-007 never became idle in sinfo (last: %q); node console:\n%s", state, tail(string(raw), 60))
	}
	t.Logf("sinfo: node-007 %s", state)
	// The node reports back once slurmd runs (a few seconds after it
	// registers).
	var evs []events.Event
	booted := ""
	for end := time.Now().Add(2 * time.Minute); booted == "" && time.Now().Before(end); time.Sleep(2 * time.Second) {
		evs = l.timeline("node-007")
		for _, ev := range evs {
			if ev.Type == events.Booted {
				booted = ev.Attrs["status"]
			}
		}
	}
	if booted != "slurmd-started" {
		t.Errorf("the node's booted callback says %q, want slurmd-started:\n%s", booted, formatTimeline(evs))
	}
	t.Logf("node-007 timeline:\n%s", formatTimeline(evs))
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
