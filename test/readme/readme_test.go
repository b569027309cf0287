// Package readme runs the README and the docs as a new user would: every
// command they print, page after page in reading order, against a daemon
// started on its defaults with a fresh data directory, and checks that each
// works as printed.
//
// Everything runs in a network namespace of its own (a veth eth0 with
// 192.0.2.2/24, as in the README's outputs) and a mount namespace where the
// default paths the README uses (/var/lib/provisiond, /etc/provisiond,
// /root) are empty tmpfs, so its commands run verbatim and touch nothing of
// the host. The peers the README's outputs came from run there too: ipmi_sim
// as the blades' BMCs, the Image Factory's stand-in on 127.0.0.1:18090 and a
// Redfish BMC serving payloads recorded from an iDRAC 9.
//
// An HTML comment right before a README code block says when its output is
// not to be compared: <!-- readme-test: run: WHY --> runs the commands but
// not the comparison (their output comes from hardware or a QEMU boot);
// <!-- readme-test: skip: WHY --> does not run them (the end-to-end tests
// do). Everything else must print what the README prints, up to numbers,
// times, hex and spacing; a "..." line stands for lines left out.
package readme

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc/ipmisim"
	"github.com/provisiond/provisiond/internal/bmc/redfishtest"
	"github.com/provisiond/provisiond/internal/enclosure/oa/oatest"
	"github.com/provisiond/provisiond/internal/talos/talostest"
)

// The README's cast: what its outputs were made with.
const (
	bladePassword  = "iLO-pw-006" // ilo-bld-006.txt: 10 bytes
	otherPassword  = "iLO-pw-009"
	idracPassword  = "calvin-Sec"
	omniJoinToken  = "v1:omni-join-token-for-the-readme-test-0000" // 44 bytes with the newline
	factoryAddr    = "127.0.0.1:18090"
	redfishAddr    = "127.0.0.1:8444"
	oaAddr         = "127.0.0.1:8445"
	oaPassword     = "OA-pw-asgard"
	helperEnv      = "PROVISIOND_README_HELPER"
	fixturesEnv    = "PROVISIOND_README_FIXTURES"
	followDuration = 3 * time.Second
)

// pages are the README and the docs, in the order a newcomer reads them:
// their sessions run one after another on one daemon. Every page under
// docs/ must be listed.
var pages = []string{"README.md", "docs/inventory.md", "docs/bmc.md", "docs/enclosures.md", "docs/commissioning.md", "docs/profiles.md", "docs/talos.md", "docs/slurm.md",
	"docs/configuration.md", "docs/several-instances.md", "docs/operations.md", "docs/security.md", "docs/cli.md", "docs/dashboard.md", "docs/benchmarks.md",
	"docs/testing.md", "docs/troubleshooting.md"}

// step is one command of a page with what the page prints after it.
type step struct {
	file string
	line int
	cmd  string
	want []string
	// mode is "" (compare), "run" or "skip", from the block's annotation.
	mode, why string
}

var annotation = regexp.MustCompile(`^<!-- readme-test: (run|skip): (.+) -->$`)

// parseReadme reads the commands of every plain code block (lines starting
// with "$ ", continued by a trailing backslash) and the output printed
// after each, to the next command or the end of the block. Blocks marked
// sh or yaml are examples to adapt, not sessions.
func parseReadme(path string) ([]step, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var steps []step
	var mode, why, pending, pendingWhy string
	in, session, cont := false, false, false
	first := 0 // index of the block's first step
	for i, line := range strings.Split(string(raw), "\n") {
		n := i + 1
		if !in {
			if m := annotation.FindStringSubmatch(line); m != nil {
				pending, pendingWhy = m[1], m[2]
			} else if strings.HasPrefix(line, "```") {
				in, session, cont, first = true, line == "```", false, len(steps)
				mode, why, pending, pendingWhy = pending, pendingWhy, "", ""
			} else if strings.TrimSpace(line) != "" {
				pending, pendingWhy = "", ""
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, "```"):
			in = false
		case !session:
		case cont:
			s := &steps[len(steps)-1]
			s.cmd += " " + strings.TrimSpace(strings.TrimSuffix(line, `\`))
			cont = strings.HasSuffix(line, `\`)
		case strings.HasPrefix(line, "$ "):
			cmd := strings.TrimPrefix(line, "$ ")
			cont = strings.HasSuffix(cmd, `\`)
			steps = append(steps, step{file: path, line: n, cmd: strings.TrimSpace(strings.TrimSuffix(cmd, `\`)), mode: mode, why: why})
		case len(steps) > first:
			steps[len(steps)-1].want = append(steps[len(steps)-1].want, line)
		}
	}
	return steps, nil
}

// TestReadmeHelper is this test's own binary, run inside the namespaces:
// the Image Factory's stand-in and the Redfish BMC (serve), or one iPXE
// script request as a booting machine makes it (ipxe).
func TestReadmeHelper(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("run by TestReadme")
	case "serve":
		factory := talostest.New(map[string][]byte{
			"kernel-amd64":        bytes.Repeat([]byte("K"), 14_200_000),
			"initramfs-amd64.xz":  bytes.Repeat([]byte("I"), 1_200_000),
			"cmdline-metal-amd64": []byte("talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on\n"),
		})
		l, err := net.Listen("tcp", factoryAddr)
		if err != nil {
			t.Fatal(err)
		}
		go http.Serve(l, factory)
		redfishtest.Start(t, os.Getenv(fixturesEnv), redfishtest.DellR6515, redfishAddr, "root", idracPassword)
		serveOA(t)
		fmt.Println("serving")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
	case "ipxe":
		// What iPXE asks for after the chain: the script, with the facts.
		src, u := os.Getenv("PROVISIOND_README_SRC"), os.Getenv("PROVISIOND_README_URL")
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}}
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", u, resp.Status)
		}
	}
}

// world is the namespaces and what runs in them.
type world struct {
	t      *testing.T
	ns     string
	holder *exec.Cmd
	bin    string
	work   string
	daemon *exec.Cmd
	dlog   *bytes.Buffer
}

// enter is the command prefix that runs a program in the namespaces.
func (w *world) enter() []string {
	return []string{"nsenter", "-t", strconv.Itoa(w.holder.Process.Pid), "-m", "-n", "--wd=" + w.work, "--"}
}

func (w *world) cmd(args ...string) *exec.Cmd {
	a := append(w.enter(), args...)
	c := exec.Command(a[0], a[1:]...)
	c.Dir = w.work
	c.Env = []string{"PATH=" + filepath.Dir(w.bin) + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
	return c
}

func must(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestReadme(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the README test needs root (network and mount namespaces); run it as root: make test")
	}
	for _, c := range []string{"ip", "nsenter", "unshare"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("the README test needs %s: apt-get install iproute2 util-linux", c)
		}
	}
	if why := ipmisim.Available(); why != "" {
		t.Skip("the README test " + why)
	}
	listed := map[string]bool{}
	for _, p := range pages {
		listed[p] = true
	}
	docs, _ := filepath.Glob("../../docs/*.md")
	for _, d := range docs {
		if p := "docs/" + filepath.Base(d); !listed[p] {
			t.Errorf("%s is not in the README test's reading order (pages): its commands would go untested", p)
		}
	}
	var steps []step
	for _, p := range pages {
		s, err := parseReadme(filepath.Join("../..", p))
		if err != nil {
			t.Fatal(err)
		}
		for i := range s {
			s[i].file = p
		}
		steps = append(steps, s...)
	}
	w := &world{t: t, ns: fmt.Sprintf("prd-readme-%d", os.Getpid()), work: t.TempDir(), dlog: &bytes.Buffer{}}
	w.build()
	w.namespaces()
	w.files()
	w.peers()
	w.startDaemon()

	ran := 0
	for _, s := range steps {
		if s.mode == "skip" {
			t.Logf("%s:%d skipped (%s): %s", s.file, s.line, s.why, s.cmd)
			continue
		}
		ran++
		w.before(s)
		out, code := w.run(s)
		wantFail := false
		for _, l := range s.want {
			if strings.HasPrefix(l, "provisiond: ") {
				wantFail = true
			}
		}
		switch {
		case strings.Contains(s.cmd, "--follow"):
			// Runs until stopped.
		case wantFail && code == 0:
			t.Errorf("%s:%d %s\nsucceeded; the page prints an error:\n%s", s.file, s.line, s.cmd, out)
		case !wantFail && code != 0:
			t.Errorf("%s:%d %s\nfailed (exit %d):\n%s", s.file, s.line, s.cmd, code, out)
		}
		if s.mode == "run" {
			continue
		}
		if diff := compare(s.want, out); diff != "" {
			t.Errorf("%s:%d %s\nprints otherwise: %s\n--- got:\n%s", s.file, s.line, s.cmd, diff, out)
		}
	}
	t.Logf("%d commands of the README and docs run (of %d)", ran, len(steps))
	if ran < 30 {
		t.Errorf("only %d README commands ran: the parser lost some", ran)
	}
}

// build compiles provisiond as the README's make build does.
func (w *world) build() {
	w.t.Helper()
	w.bin = filepath.Join(w.t.TempDir(), "bin", "provisiond")
	cmd := exec.Command("go", "build", "-o", w.bin, "../../cmd/provisiond")
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("go build: %v\n%s", err, out)
	}
}

// namespaces makes the network namespace (lo, a veth eth0 with the
// daemon's 192.0.2.2 and the booting machines' addresses; its peer end
// stays in the namespace) and a process
// holding a mount namespace with tmpfs over the README's default paths.
func (w *world) namespaces() {
	t := w.t
	must(t, "ip", "netns", "add", w.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", w.ns).Run() })
	in := []string{"ip", "netns", "exec", w.ns}
	must(t, append(in, "ip", "link", "set", "lo", "up")...)
	must(t, append(in, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")...)
	must(t, append(in, "ip", "link", "set", "eth0p", "up")...)
	for _, a := range []string{"192.0.2.2/24", "192.0.2.140/24", "192.0.2.145/24"} {
		must(t, append(in, "ip", "addr", "add", a, "dev", "eth0")...)
	}
	must(t, append(in, "ip", "link", "set", "eth0", "up")...)
	var made []string
	for _, d := range []string{"/var/lib/provisiond", "/etc/provisiond"} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
			made = append(made, d)
		}
	}
	t.Cleanup(func() {
		for _, d := range made {
			os.Remove(d) // only if still empty: never the host's data
		}
	})
	script := "mount --make-rprivate / && for d in /var/lib/provisiond /etc/provisiond /root; do mount -t tmpfs -o mode=0700 tmpfs $d || exit 1; done && echo ready && exec sleep 100000"
	w.holder = exec.Command("ip", "netns", "exec", w.ns, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	stdout, _ := w.holder.StdoutPipe()
	w.holder.Stderr = os.Stderr
	if err := w.holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.holder.Process.Kill(); w.holder.Wait() })
	// ip netns exec, unshare and sh exec one another: the holder's PID
	// is sleep's, in both namespaces.
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("mount namespace: %q", line)
	}
}

// files are the files the README's commands read, as it describes them.
func (w *world) files() {
	t := w.t
	raw, err := os.ReadFile("../../examples/homelab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"examples/homelab.yaml": string(raw),
		"bld-008.yaml":          "machines:\n  - name: BLD-008\n    memory_gb: 32\n",
		"bad.yaml":              "machines:\n  - name: BLD-008\n    memroy_gb: 32\n",
		"ilo-bld-006.txt":       bladePassword,
		"ilo-bld-009.txt":       otherPassword,
		"idrac-r6515.txt":       idracPassword,
		"asgard-oa.txt":         oaPassword,
		"asgard-oa.yaml": "systems:\n  - name: ASGARD\n    kind: enclosure\n    bays: 16\n    blade_control: oa\n" +
			"    bmc: {protocol: oa, address: 127.0.0.1, port: 8445, username: Administrator, password_secret: asgard-oa}\n",
	} {
		p := filepath.Join(w.work, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The config: the factory's stand-in, the Talos version, and a 10 s
	// BMC timeout (BLD-008's BMC is not there at all).
	cfg := "talos:\n  factory_url: http://" + factoryAddr + "\n  version: v1.9.5\nbmc:\n  timeout: 10s\n"
	c := w.cmd("sh", "-c", "cat >/etc/provisiond/provisiond.yaml")
	c.Stdin = strings.NewReader(cfg)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("writing the config: %v\n%s", err, out)
	}
}

// peers starts the BMCs, the factory's stand-in and the Redfish BMC.
func (w *world) peers() {
	t := w.t
	for _, b := range []struct {
		port int
		pw   string
	}{{9621, bladePassword}, {9622, bladePassword}, {9623, otherPassword}} {
		ipmisim.Start(t, ipmisim.Options{Dir: filepath.Join(w.work, "bmc", strconv.Itoa(b.port)), Addr: "127.0.0.1", Port: b.port,
			User: "provisiond", Password: b.pw,
			Running: `[ "$(cat $D/power 2>/dev/null)" = on ]`, Start: `echo on >$D/power`, Stop: `echo off >$D/power`,
			Wrap: w.enter(), CheckWrap: w.enter()})
	}
	// The recorded payloads, where the namespace sees them (the module
	// cache may be under /root, which is empty there).
	fixtures := filepath.Join(w.work, "redfish")
	src := redfishtest.FixturesDir(t)
	for _, f := range redfishtest.DellR6515.Files {
		raw, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(fixtures, f)), 0o755)
		if err := os.WriteFile(filepath.Join(fixtures, f), raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	helper := w.cmd(os.Args[0], "-test.run", "^TestReadmeHelper$", "-test.v")
	helper.Env = append(helper.Env, helperEnv+"=serve", fixturesEnv+"="+fixtures)
	out, _ := helper.StdoutPipe()
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Signal(syscall.SIGTERM); helper.Wait() })
	rd := bufio.NewReader(out)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("the factory and Redfish helper did not start: %v", err)
		}
		if strings.TrimSpace(line) == "serving" {
			break
		}
	}
	go func() {
		for {
			if _, err := rd.ReadString('\n'); err != nil {
				return
			}
		}
	}()
}

// startDaemon runs provisiond serve on its defaults (and the config in
// /etc/provisiond) and waits until the CLI reaches it.
func (w *world) startDaemon() {
	t := w.t
	w.daemon = w.cmd(w.bin, "serve")
	w.daemon.Stdout, w.daemon.Stderr = w.dlog, w.dlog
	if err := w.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.stopDaemon()
		if t.Failed() {
			t.Logf("daemon log:\n%s", w.dlog.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if out, err := w.cmd(w.bin, "status").CombinedOutput(); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("the daemon does not answer: %v\n%s\n%s", err, out, w.dlog.String())
		}
	}
}

func (w *world) stopDaemon() {
	if w.daemon == nil || w.daemon.Process == nil || w.daemon.ProcessState != nil {
		return
	}
	w.daemon.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { w.daemon.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		w.daemon.Process.Kill()
		<-done
	}
}

// before sets up what a command needs that the README describes but does
// not run: machines booting (their iPXE asking for its script), the
// service being stopped.
func (w *world) before(s step) {
	t := w.t
	switch {
	case s.cmd == "provisiond machine list":
		// BLD-006 and an unknown BL460c Gen8 boot: iPXE asks for their
		// scripts with what it knows of them.
		for _, b := range []struct{ mac, src, facts string }{
			{"52:54:00:00:00:06", "192.0.2.140", "platform=pcbios&buildarch=i386&chip=undionly&ip=192.0.2.140"},
			{"52:54:00:00:00:0b", "192.0.2.145", "manufacturer=HP&product=ProLiant%20BL460c%20Gen8&serial=CZ3210ABCD&platform=pcbios&buildarch=i386&chip=undionly&ip=192.0.2.145"},
		} {
			c := w.cmd(os.Args[0], "-test.run", "^TestReadmeHelper$")
			c.Env = append(c.Env, helperEnv+"=ipxe", "PROVISIOND_README_SRC="+b.src,
				"PROVISIOND_README_URL=http://192.0.2.2:8080/boot/"+b.mac+"/script?"+b.facts)
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("iPXE's script request for %s: %v\n%s", b.mac, err, out)
			}
		}
	case strings.HasPrefix(s.cmd, "systemctl stop provisiond"):
		w.stopDaemon()
	}
}

// run runs one README command as the README's user would type it (a
// shell, as root, in the directory holding the files it names).
func (w *world) run(s step) (string, int) {
	if strings.HasPrefix(s.cmd, "systemctl ") {
		return "", 0 // done by before: there is no systemd here
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if strings.Contains(s.cmd, "--follow") {
		ctx, cancel = context.WithTimeout(context.Background(), followDuration)
		defer cancel()
	}
	a := append(w.enter(), "sh", "-c", s.cmd)
	c := exec.CommandContext(ctx, a[0], a[1:]...)
	c.Dir, c.Env = w.work, w.cmd().Env
	// The shell and what it started go together when the time is up.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second
	if strings.HasPrefix(s.cmd, "provisiond secret set") && !strings.Contains(s.cmd, "<") && !strings.Contains(s.cmd, "--from-file") {
		c.Stdin = strings.NewReader(omniJoinToken + "\n")
	}
	out, err := c.CombinedOutput()
	code := 0
	if err != nil {
		code = 1
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() > 0 {
			code = ee.ExitCode()
		}
	}
	return string(out), code
}

var (
	timestamp = regexp.MustCompile(`\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?( UTC)?|\d{8}T\d{6}Z`)
	hexRun    = regexp.MustCompile(`\b[0-9a-f]{12,}…?`)
	number    = regexp.MustCompile(`\d+(\.\d+)?`)
	spaces    = regexp.MustCompile(`\s+`)
)

// normalize keeps what a line says and drops what changes from run to run:
// times, numbers, hashes and column widths.
func normalize(l string) string {
	l = timestamp.ReplaceAllString(l, "<time>")
	l = hexRun.ReplaceAllString(l, "<hex>")
	l = number.ReplaceAllString(l, "<n>")
	return strings.TrimSpace(spaces.ReplaceAllString(l, " "))
}

// compare says how out differs from the lines the README prints ("" when
// it prints them): each run of lines between "..." must appear, in order,
// as consecutive lines of out; without "...", out must be exactly them.
func compare(want []string, out string) string {
	got := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if strings.TrimSpace(out) == "" {
		got = nil
	}
	for len(want) > 0 && strings.TrimSpace(want[len(want)-1]) == "" {
		want = want[:len(want)-1]
	}
	var segs [][]string
	var cur []string
	gapped := false
	for _, l := range want {
		if t := strings.TrimSpace(l); t == "..." || t == "…" {
			segs, cur, gapped = append(segs, cur), nil, true
			continue
		}
		cur = append(cur, normalize(l))
	}
	segs = append(segs, cur)
	var norm []string
	for _, l := range got {
		norm = append(norm, normalize(l))
	}
	norm = sortProgress(dropTransient(norm))
	for i := range segs {
		segs[i] = sortProgress(dropTransient(segs[i]))
	}
	if !gapped {
		if strings.Join(segs[0], "\n") != strings.Join(norm, "\n") {
			return fmt.Sprintf("want %d lines, got %d; first difference: %s", len(segs[0]), len(norm), firstDiff(segs[0], norm))
		}
		return ""
	}
	i := 0
	for si, seg := range segs {
		if len(seg) == 0 {
			continue
		}
		found := false
		for ; i+len(seg) <= len(norm); i++ {
			if si == 0 && i > 0 {
				break // the first segment starts the output
			}
			if strings.Join(norm[i:i+len(seg)], "\n") == strings.Join(seg, "\n") {
				found = true
				i += len(seg)
				break
			}
		}
		if !found {
			return fmt.Sprintf("lines not found in order: %q", seg)
		}
	}
	return ""
}

// transient is a download's progress on the way ("kernel-amd64: 93% of
// 14.2 MB"): how many a run prints depends on the machine's speed.
var transient = regexp.MustCompile(`^\S+: <n>% of <n> MB$`)

// dropTransient leaves out the transient progress lines (normalized).
func dropTransient(lines []string) []string {
	return slices.DeleteFunc(slices.Clone(lines), transient.MatchString)
}

// sortProgress sorts each run of progress lines ("[2/4] ok BLD-006 …"):
// machines finish in the order their BMCs answer.
func sortProgress(lines []string) []string {
	out := slices.Clone(lines)
	for i := 0; i < len(out); {
		j := i
		for j < len(out) && strings.HasPrefix(out[j], "[<n>/<n>] ") {
			j++
		}
		if j > i {
			slices.Sort(out[i:j])
			i = j
		} else {
			i++
		}
	}
	return out
}

func firstDiff(want, got []string) string {
	for i := 0; i < len(want) || i < len(got); i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			return fmt.Sprintf("line %d: want %q, got %q", i+1, w, g)
		}
	}
	return ""
}

// serveOA is ASGARD's Onboard Administrator for the docs: three BL460c
// Gen8 blades (bays 3, 6 and 7; the serials and MACs of bay 3 are those of
// a real OA's recorded answer), over TLS on oaAddr.
func serveOA(t *testing.T) {
	gen8 := func(bay int, serial, cuuid string, macs []string, cpu string, mhz, mb int, on bool) *oatest.Blade {
		return &oatest.Blade{Bay: bay, Product: "ProLiant BL460c Gen8", PartNumber: "641016-B21", Serial: serial, UUID: "641016" + serial,
			CUUID: cuuid, ILOAddress: fmt.Sprintf("192.0.2.%d", 200+bay), MACs: macs, CPUs: []string{cpu, cpu}, CPUMHz: mhz, MemoryMB: mb, On: on}
	}
	oa := oatest.New("ASGARD", "CZ372137H3", "Administrator", oaPassword,
		gen8(3, "CZ3403YLMV", "30313436-3631-5A43-3334-3033594C4D56", []string{"9c:b6:54:88:fc:b0", "9c:b6:54:88:fc:b4"}, "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", 2600, 32768, true),
		gen8(6, "CZ3403YLN2", "30313436-3631-5A43-3334-3033594C4E32", []string{"9c:b6:54:88:fd:30", "9c:b6:54:88:fd:34"}, "Intel(R) Xeon(R) CPU E5-2650 0 @ 2.00GHz", 2000, 65536, false),
		gen8(7, "CZ3403YLN5", "30313436-3631-5A43-3334-3033594C4E35", []string{"9c:b6:54:88:fd:50", "9c:b6:54:88:fd:54"}, "Intel(R) Xeon(R) CPU E5-2603 0 @ 1.80GHz", 1800, 16384, false))
	oa.Managers = [2]string{"127.0.0.1", ""}
	if _, err := oa.ServeTLS(oaAddr); err != nil {
		t.Fatal(err)
	}
}

// A download's progress on the way depends on the machine's speed: the
// page prints only where it ends, and a run that printed more still
// matches; anything else that differs does not.
func TestCompareDropsTransientProgress(t *testing.T) {
	want := []string{"registering the schematic with the Image Factory", "kernel-amd64: 14.2 MB done", "cached"}
	if d := compare(want, "registering the schematic with the Image Factory\nkernel-amd64: 93% of 14.2 MB\nkernel-amd64: 14.2 MB done\ncached\n"); d != "" {
		t.Errorf("a progress line on the way: %s", d)
	}
	if d := compare(want, "registering the schematic with the Image Factory\nkernel-amd64: 14.2 MB failed\ncached\n"); d == "" {
		t.Error("a different line matched")
	}
}
