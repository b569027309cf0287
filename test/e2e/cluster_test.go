package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// The several-instances lab: three etcd members and a second provisiond
// (instance B) on br0 beside the lab's own (instance A, at serverIP).
const instanceBIP = "192.0.2.3"

var etcdIPs = []string{"192.0.2.11", "192.0.2.12", "192.0.2.13"}

// etcdMember is one member of the lab's etcd cluster (Debian's etcd).
type etcdMember struct {
	name, ns, ip, dir string
	cmd               *exec.Cmd
	log               *lockedBuffer
}

func etcdCluster() string {
	var peers []string
	for i, ip := range etcdIPs {
		peers = append(peers, fmt.Sprintf("e%d=http://%s:2380", i+1, ip))
	}
	return strings.Join(peers, ",")
}

func etcdEndpoints() string {
	var eps []string
	for _, ip := range etcdIPs {
		eps = append(eps, "http://"+ip+":2379")
	}
	return strings.Join(eps, ", ")
}

// start runs the member (again, on its data, after a kill).
func (m *etcdMember) start(l *lab) {
	l.t.Helper()
	m.cmd = exec.Command("ip", "netns", "exec", m.ns, "/usr/bin/etcd", "--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", "http://"+m.ip+":2379", "--advertise-client-urls", "http://"+m.ip+":2379",
		"--listen-peer-urls", "http://"+m.ip+":2380", "--initial-advertise-peer-urls", "http://"+m.ip+":2380",
		"--initial-cluster", etcdCluster(), "--initial-cluster-state", "new", "--max-txn-ops", "8192")
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		l.t.Fatalf("starting etcd member %s: %v", m.name, err)
	}
}

// kill stops the member as a crash does.
func (m *etcdMember) kill() {
	if m.cmd != nil && m.cmd.ProcessState == nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
	}
}

// instance is a provisiond started by the test in a namespace of its own.
type instance struct {
	l                  *lab
	ns, data, conf     string
	served, clientConf string
	args               []string
	cmd                *exec.Cmd
	log                *lockedBuffer
}

func (in *instance) start() {
	l := in.l
	l.t.Helper()
	in.cmd = exec.Command("ip", append([]string{"netns", "exec", in.ns, l.bin, "serve", "--config", in.conf}, in.args...)...)
	in.cmd.Stdout, in.cmd.Stderr = in.log, in.log
	if err := in.cmd.Start(); err != nil {
		l.t.Fatalf("starting provisiond in %s: %v", in.ns, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := in.cli("status"); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.t.Fatalf("provisiond in %s did not come up within 20 s:\n%s", in.ns, in.log.String())
}

func (in *instance) stop() {
	if in.cmd != nil && in.cmd.ProcessState == nil {
		in.cmd.Process.Signal(syscall.SIGTERM)
		in.cmd.Wait()
	}
}

// command is the provisiond CLI against the instance's control plane,
// inside its namespace.
func (in *instance) command(args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", in.ns, in.l.bin, "--server", fmt.Sprintf("https://127.0.0.1:%d", controlPort),
		"--token-file", filepath.Join(in.data, "api-token")}, args...)
	cmd := exec.Command("ip", full...)
	cmd.Env = in.env()
	return cmd
}

func (in *instance) cli(args ...string) (string, error) {
	out, err := in.command(args...).CombinedOutput()
	return string(out), err
}

// env is the CLI's environment: its client config (trusted servers).
func (in *instance) env() []string {
	return append(os.Environ(), "PROVISIOND_CLIENT_CONFIG="+in.clientConf)
}

func (in *instance) must(args ...string) string {
	in.l.t.Helper()
	out, err := in.cli(args...)
	if err != nil {
		in.l.t.Fatalf("provisiond (%s) %s: %v\n%s", in.ns, strings.Join(args, " "), err, out)
	}
	return out
}

func (in *instance) timeline(name string) []events.Event {
	in.l.t.Helper()
	var evs []events.Event
	out := in.must("events", name, "-n", "500", "-o", "json")
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		in.l.t.Fatalf("decoding timeline of %s: %v\n%s", name, err, out)
	}
	return evs
}

func eventuallyE2E(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestSeveralInstances: two provisiond instances on one bridge share an
// inventory in a three-member etcd cluster (Debian's etcd-server, run in
// namespaces of the lab). A machine added through A boots with its
// arguments and secrets while only B runs; a one-shot assigned through B
// is consumed once although both instances answer the boot; an etcd member
// killed during a burst of writes and a boot loses nothing acknowledged;
// with etcd stopped a known machine still boots, changes are refused, and
// everything resyncs when etcd is back.
func TestSeveralInstances(t *testing.T) {
	t.Parallel() // VMs under TCG: two tests share the two cores
	if _, err := os.Stat("/usr/bin/etcd"); err != nil {
		t.Skip("needs Debian's etcd-server (/usr/bin/etcd): make deps installs it")
	}
	var members []*etcdMember
	conf := "store: etcd\netcd:\n  endpoints: [" + etcdEndpoints() + "]\n  timeout: 3s\ninstance: pxe-a\n"
	var b *instance
	l := newLabBefore(t, conf, nil, func(l *lab) {
		for i, ip := range etcdIPs {
			m := &etcdMember{name: fmt.Sprintf("e%d", i+1), ns: fmt.Sprintf("%s-e%d", l.prefix, i+1), ip: ip,
				dir: filepath.Join(l.dir, fmt.Sprintf("etcd%d", i+1)), log: &lockedBuffer{}}
			l.host(m.ns, fmt.Sprintf("e%d", i+1), ip+"/25")
			m.start(l)
			members = append(members, m)
		}
		l.cleanup = append(l.cleanup, func() {
			for _, m := range members {
				m.kill()
				if l.t.Failed() {
					l.t.Logf("etcd %s log (tail):\n%s", m.name, tail(m.log.String(), 40))
				}
			}
		})
	})
	a := l.self()

	// Instance B: its own namespace, address, data directory and assets,
	// the deployment's secret key.
	b = &instance{l: l, ns: l.prefix + "-srv2", data: filepath.Join(l.dir, "data-b"), conf: filepath.Join(l.dir, "provisiond-b.yaml"),
		served: filepath.Join(l.dir, "assets-b"), clientConf: filepath.Join(l.dir, "client-b.yaml"), log: &lockedBuffer{}}
	l.host(b.ns, "b0", instanceBIP+"/25")
	os.MkdirAll(b.data, 0o700)
	os.MkdirAll(b.served, 0o755)
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		raw, _ := os.ReadFile(filepath.Join(l.served, f))
		os.WriteFile(filepath.Join(b.served, f), raw, 0o644)
	}
	key, err := os.ReadFile(filepath.Join(a.data, "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(b.data, "secret.key"), key, 0o600)
	os.WriteFile(b.conf, []byte(strings.Replace(conf, "pxe-a", "pxe-b", 1)), 0o644)
	b.args = []string{"--interface", "b0", "--data-dir", b.data, "--assets-dir", b.served, "--log-level", "debug"}
	l.cleanup = append(l.cleanup, func() {
		b.stop()
		if t.Failed() {
			t.Logf("instance B log:\n%s", b.log.String())
		}
	})
	b.start()

	status := b.must("status")
	for _, want := range []string{`"name": "pxe-a"`, `"name": "pxe-b"`, `"backend": "etcd"`} {
		if !strings.Contains(status, want) {
			t.Errorf("B's status lacks %s:\n%s", want, status)
		}
	}
	t.Logf("B's status:\n%s", status)

	// A machine added through A, booted while only B answers.
	mungeKey := make([]byte, 1024)
	rand.Read(mungeKey)
	keyFile := filepath.Join(l.dir, "munge.key")
	os.WriteFile(keyFile, mungeKey, 0o600)
	a.must("secret", "set", "munge-key", "--from-file", keyFile)
	const c1MAC, c2MAC = "52:54:00:e2:c1:01", "52:54:00:e2:c1:02"
	a.must("machine", "add", "vm-c1", "--mac", c1MAC, "--profile", "slurm", "--hostname", "node-c1",
		"--param", "kernel=vmlinuz", "--param", "base_image=initrd.img", "--param", "cmdline=console=ttyS0 panic=-1",
		"--param", "slurm_controller="+serverIP+":6817", "--kernel-args", "e2e.machine=vm-c1 e2e.added-through=pxe-a")
	eventuallyE2E(t, "B sees vm-c1", 10*time.Second, func() bool { _, err := b.cli("machine", "show", "vm-c1"); return err == nil })
	l.daemon.Process.Signal(syscall.SIGTERM) // A stops: only B answers
	l.daemon.Wait()
	keySum := sha256.Sum256(mungeKey)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	console := bootVM(ctx, t, l, "vm-c1", c1MAC)
	cmdline := serialLine(console, "PROVISIOND-TEST-CMDLINE:")
	if !strings.Contains(cmdline, "e2e.added-through=pxe-a") || !strings.Contains(cmdline, "provisiond.callback=http://"+instanceBIP) {
		t.Errorf("vm-c1 with only B up: command line %q, want A's arguments and B's callback", cmdline)
	}
	if !strings.Contains(console, "PROVISIOND-TEST-MUNGE: "+hex.EncodeToString(keySum[:])) {
		t.Errorf("vm-c1's overlay (from B) lacks the munge key stored through A:\n%s", grepLines(console, "PROVISIOND-TEST-MUNGE:"))
	}
	if got := serialLine(console, "PROVISIOND-TEST-CALLBACK:"); got != "ok" {
		t.Errorf("vm-c1's callback to B: %q", got)
	}
	t.Logf("vm-c1 booted from B alone: %s", cmdline)

	// Both up: a one-shot assigned through B, a burst of writes through
	// both, and a member killed in the middle of them and of the boot.
	l.startDaemon()
	b.must("machine", "add", "vm-c2", "--mac", c2MAC, "--profile", "linux", "--once", "--then", "local",
		"--param", "kernel=vmlinuz", "--param", "initrd=initrd.img", "--param", "cmdline=console=ttyS0 panic=-1",
		"--kernel-args", "e2e.machine=vm-c2")
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked, failed := map[string]bool{}, 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 40 {
			name := fmt.Sprintf("burst-%02d", i)
			via := a
			if i%2 == 1 {
				via = b
			}
			_, err := via.cli("machine", "add", name, "--mac", fmt.Sprintf("52:54:00:e2:c5:%02x", i), "--profile", "local")
			mu.Lock()
			if err == nil {
				acked[name] = true
			} else {
				failed++
			}
			mu.Unlock()
			if i == 8 {
				members[0].kill() // the first endpoint of both instances
			}
		}
	}()
	console = bootVM(ctx, t, l, "vm-c2", c2MAC)
	wg.Wait()
	if !strings.Contains(serialLine(console, "PROVISIOND-TEST-CMDLINE:"), "e2e.machine=vm-c2") {
		t.Errorf("vm-c2's command line: %q", serialLine(console, "PROVISIOND-TEST-CMDLINE:"))
	}
	out := b.must("machine", "list", "-o", "json")
	var lost []string
	for name := range acked {
		if !strings.Contains(out, `"name": "`+name+`"`) {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 {
		t.Errorf("acknowledged writes lost after a member was killed: %v", lost)
	}
	t.Logf("burst with member e1 killed at the 9th write: %d acknowledged, %d refused, none lost", len(acked), failed)
	var consumed int
	var evs []events.Event
	eventuallyE2E(t, "vm-c2's one-shot consumed", 30*time.Second, func() bool {
		evs, consumed = b.timeline("vm-c2"), 0
		for _, ev := range evs {
			if ev.Type == events.OnceConsumed {
				consumed++
			}
		}
		return consumed > 0
	})
	time.Sleep(2 * time.Second) // a second consumption would be written by now
	evs, consumed = b.timeline("vm-c2"), 0
	for _, ev := range evs {
		if ev.Type == events.OnceConsumed {
			consumed++
		}
	}
	if consumed != 1 {
		t.Errorf("vm-c2's one-shot consumed %d times, want once:\n%s", consumed, formatTimeline(evs))
	}
	if m := a.must("machine", "show", "vm-c2", "-o", "json"); !strings.Contains(m, `"profile": "local"`) || strings.Contains(m, `"once"`) {
		t.Errorf("vm-c2 after its one-shot, read through A:\n%s", m)
	}
	members[0].start(l)

	// etcd stopped entirely: a known machine boots from the instances'
	// tables, changes are refused; then everything comes back.
	for _, m := range members {
		m.kill()
	}
	start := time.Now()
	out, err = a.cli("machine", "add", "while-down", "--mac", "52:54:00:e2:c6:01", "--profile", "local")
	if err == nil || !strings.Contains(out, "changes are refused") {
		t.Errorf("a change with etcd stopped: %v\n%s", err, out)
	}
	t.Logf("a change with etcd stopped was refused after %s: %s", time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(out))
	console = bootVM(ctx, t, l, "vm-c1-again", c1MAC)
	if cl := serialLine(console, "PROVISIOND-TEST-CMDLINE:"); !strings.Contains(cl, "e2e.added-through=pxe-a") {
		t.Errorf("vm-c1 with etcd stopped: command line %q", cl)
	}
	if !strings.Contains(console, "PROVISIOND-TEST-MUNGE: "+hex.EncodeToString(keySum[:])) {
		t.Errorf("vm-c1 with etcd stopped got no munge key:\n%s", grepLines(console, "PROVISIOND-TEST-MUNGE:"))
	}
	for _, m := range members {
		m.start(l)
	}
	eventuallyE2E(t, "a change through A once etcd is back", 60*time.Second, func() bool {
		_, err := a.cli("machine", "add", "after-etcd", "--mac", "52:54:00:e2:c6:02", "--profile", "local")
		return err == nil
	})
	eventuallyE2E(t, "B follows the change made through A", 30*time.Second, func() bool {
		_, err := b.cli("machine", "show", "after-etcd")
		return err == nil
	})
	eventuallyE2E(t, "both instances registered again", 30*time.Second, func() bool {
		st, err := a.cli("status")
		return err == nil && strings.Contains(st, `"name": "pxe-a"`) && strings.Contains(st, `"name": "pxe-b"`)
	})
}

// bootVM boots a SeaBIOS machine with mac to the test OS's end and
// returns its console.
func bootVM(ctx context.Context, t *testing.T, l *lab, name, mac string) string {
	t.Helper()
	v := l.startVM(name, mac, seabios)
	defer v.stop()
	console, err := v.waitSerial(ctx, "PROVISIOND-TEST-DONE")
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, console)
	}
	return console
}
