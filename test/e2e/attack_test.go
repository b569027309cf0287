package e2e

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/pxe/pxetest"
)

// The attacker's namespace sits on the lab's bridge like a phone or a
// guest's laptop on a flat home LAN.
const (
	attackerIP = "192.0.2.66"
	holderIP   = "192.0.2.71"
	talosMAC   = "52:54:00:e2:a0:03"
	slurmMAC   = "52:54:00:e2:a0:04"
	idleMAC    = "52:54:00:e2:a0:05"
	unknownMAC = "52:54:00:e2:a0:99"
)

// attackReq is one request the attacker makes; attackRes its answer.
type attackReq struct {
	Name, Method, URL, Body, Type string
}

type attackRes struct {
	Name   string `json:"name"`
	Status int    `json:"status"`
	Body   string `json:"body"`
	Err    string `json:"err,omitempty"`
}

// TestAttackerOnTheLAN boots a Talos node (Omni join token on its kernel
// command line) and a Slurm node (munge key in its overlay) on real
// firmware while a host on the same bridge, knowing their MACs, asks for
// their scripts, overlays and callbacks before, during and after their
// boots (from its own address, and with a victim's MAC set on its own
// interface), posts facts, and holds 2,000 idle connections. It gets no
// secret, uses up no one-shot assignment, records no facts; the boots
// succeed; the timelines show the refusals, and a spoof in the victims'
// boots raises the alarm.
func TestAttackerOnTheLAN(t *testing.T) {
	l := newLab(t)
	atk := l.prefix + "-atk"
	l.sh("", "ip", "netns", "add", atk)
	l.cleanup = append(l.cleanup, func() { exec.Command("ip", "netns", "del", atk).Run() })
	l.sh(atk, "ip", "link", "set", "lo", "up")
	l.sh(l.lan, "ip", "link", "add", "b-a0", "type", "veth", "peer", "name", "a0", "netns", atk)
	l.sh(l.lan, "ip", "link", "set", "b-a0", "master", "br0", "up")
	l.sh(atk, "ip", "addr", "add", attackerIP+"/25", "dev", "a0")
	l.sh(atk, "ip", "link", "set", "a0", "up")

	const joinToken = "attack-e2e-join-token-S3CRET"
	mungeKey := make([]byte, 1024)
	rand.Read(mungeKey)
	keyFile := filepath.Join(l.dir, "munge.key")
	os.WriteFile(keyFile, mungeKey, 0o600)
	l.cliStdin(joinToken+"\n", "secret", "set", "omni-join-token")
	l.mustCLI("secret", "set", "munge-key", "--from-file", keyFile)
	l.mustCLI("assets", "pull", "talos")
	// vm-talos keeps its profile (so a spoof after its boot still meets
	// its secret); vm-slurm is one-shot, used up by its own boot only;
	// vm-idle is one-shot and never boots while the attacker tries.
	// vm-slurm and vm-idle have asset keys: the SMBIOS asset tags their
	// BIOS setup holds (QEMU's -smbios type=3), stored as secrets.
	l.cliStdin(vmAssetTag(slurmMAC)+"\n", "secret", "set", "vm-slurm-asset")
	l.cliStdin(vmAssetTag(idleMAC)+"\n", "secret", "set", "vm-idle-asset")
	l.mustCLI("machine", "add", "vm-idle", "--mac", idleMAC, "--profile", "slurm", "--once", "--param", "slurm_controller="+serverIP+":6817",
		"--asset-key-secret", "vm-idle-asset")
	l.mustCLI("machine", "add", "vm-talos", "--mac", talosMAC, "--profile", "talos", "--hostname", "vm-talos",
		"--address", "192.0.2.61/25", "--gateway", routerIP, "--param", "omni_api=https://omni.e2e.test:8090/",
		"--param", "interface=eth0", "--kernel-args", "e2e.machine=vm-talos")
	l.mustCLI("machine", "add", "vm-slurm", "--mac", slurmMAC, "--profile", "slurm", "--once", "--hostname", "node-008", "--asset-key-secret", "vm-slurm-asset",
		"--param", "kernel=vmlinuz", "--param", "base_image=initrd.img", "--param", "cmdline=console=ttyS0 panic=-1",
		"--param", "slurm_controller="+serverIP+":6817", "--kernel-args", "e2e.machine=vm-slurm")
	keySum := sha256.Sum256(mungeKey)
	// What counts as a leak: the token, or the munge key (raw, or its
	// first bytes in any overlay body the attacker gets).
	leaks := func(r attackRes) bool {
		return strings.Contains(r.Body, joinToken) || strings.Contains(r.Body, string(mungeKey[:32]))
	}
	boot := fmt.Sprintf("http://%s:%d", serverIP, httpPort)
	probes := func(tag string) []attackReq {
		var out []attackReq
		for _, mac := range []string{talosMAC, slurmMAC, idleMAC, unknownMAC} {
			out = append(out,
				attackReq{Name: tag + " script " + mac, URL: boot + "/boot/" + mac + "/script"},
				attackReq{Name: tag + " overlay " + mac, URL: boot + "/boot/" + mac + "/overlay.cpio?profile=slurm"},
				attackReq{Name: tag + " overlay-nonce " + mac, URL: boot + "/boot/" + mac + "/overlay.cpio?profile=slurm&nonce=AAAAAAAAAAAAAAAAAAAAAAAA"},
				attackReq{Name: tag + " config " + mac, URL: boot + "/boot/" + mac + "/config?profile=talos"},
				attackReq{Name: tag + " config-nonce " + mac, URL: boot + "/boot/" + mac + "/config?profile=talos&nonce=AAAAAAAAAAAAAAAAAAAAAAAA"},
				attackReq{Name: tag + " script?profile=slurm " + mac, URL: boot + "/boot/" + mac + "/script?profile=slurm"},
				attackReq{Name: tag + " callback " + mac, Method: "POST", URL: boot + "/boot/" + mac + "/booted", Body: "status=pwned", Type: "application/x-www-form-urlencoded"},
				attackReq{Name: tag + " facts " + mac, Method: "POST", URL: fmt.Sprintf("https://%s:%d/api/v1/facts", serverIP, controlPort), Type: "application/json",
					Body: `{"host":"intruder","hardware":{"vendor":"Forged","model":"Forged","serial":"FORGED"},"boot_mac":"` + mac + `","boot_nonce":"AAAAAAAAAAAAAAAAAAAAAAAA"}`},
			)
		}
		return out
	}
	check := func(rs []attackRes) {
		t.Helper()
		var overlay404 []string
		for _, r := range rs {
			if leaks(r) {
				t.Errorf("%s: the attacker got a secret (status %d)", r.Name, r.Status)
			}
			if strings.Contains(r.Name, " callback ") && r.Status == 200 {
				t.Errorf("%s: the callback was taken", r.Name)
			}
			if strings.Contains(r.Name, " facts ") && r.Status == 200 {
				t.Errorf("%s: the facts were taken", r.Name)
			}
			if strings.Contains(r.Name, " overlay") || strings.Contains(r.Name, " config") {
				if r.Status != 404 {
					t.Errorf("%s: %d, want 404", r.Name, r.Status)
				}
				overlay404 = append(overlay404, r.Body)
			}
		}
		// No oracle: known and unknown MACs' overlays and config
		// documents look the same.
		for _, b := range overlay404 {
			if b != overlay404[0] {
				t.Errorf("overlay refusals differ between MACs: %q vs %q", overlay404[0], b)
			}
		}
	}

	// Before the boots, from the attacker's own address.
	check(l.attack(atk, probes("before")))
	// With a victim's MAC on the attacker's interface, outside its boot
	// (a fresh address, so provisiond's neighbour entry is the copied MAC).
	for i, mac := range []string{talosMAC, slurmMAC} {
		l.asVictim(atk, mac, fmt.Sprintf("192.0.2.%d", 67+i), func() {
			check(l.attack(atk, probes("spoofed-mac-before")))
		})
	}
	for _, name := range []string{"vm-idle", "vm-slurm"} {
		if m, err := l.machine(name); err != nil || m.Once == nil {
			t.Fatalf("%s's one-shot assignment after the attacker's requests: %+v %v", name, m, err)
		}
	}

	// During the boots: 2,000 idle connections (from a second address of
	// the attacker's) and probes all along.
	l.sh(atk, "ip", "addr", "add", holderIP+"/25", "dev", "a0")
	hold := l.holdConnections(atk, holderIP, fmt.Sprintf("%s:%d", serverIP, httpPort), 2000)
	stopProbes := make(chan struct{})
	var during []attackRes
	var probesWG sync.WaitGroup
	probesWG.Add(1)
	go func() {
		defer probesWG.Done()
		for {
			select {
			case <-stopProbes:
				return
			case <-time.After(500 * time.Millisecond):
			}
			during = append(during, l.attack(atk, probes("during"))...)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	consoles := map[string]string{}
	var errs sync.Map
	var wg sync.WaitGroup
	var mu sync.Mutex
	for name, mac := range map[string]string{"vm-talos": talosMAC, "vm-slurm": slurmMAC} {
		v := l.startVM(name, mac, seabios)
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := v.waitSerial(ctx, "PROVISIOND-TEST-DONE")
			v.stop()
			mu.Lock()
			consoles[name] = out
			mu.Unlock()
			if err != nil {
				errs.Store(name, err)
			}
		}()
	}
	wg.Wait()
	close(stopProbes)
	probesWG.Wait()
	held := hold()
	l.sh(atk, "ip", "addr", "del", holderIP+"/25", "dev", "a0")
	check(during)
	t.Logf("during the boots the attacker made %d requests and held up to %d idle connections (tried 2,000)", len(during), held)

	errs.Range(func(k, v any) bool {
		t.Fatalf("%s did not boot: %v\nconsole:\n%s", k, v, consoles[k.(string)])
		return false
	})
	if !strings.Contains(consoles["vm-talos"], `PROVISIOND-TEST-TALOSCONFIG: apiUrl: "https://omni.e2e.test:8090/?jointoken=`+joinToken+`"`) {
		t.Errorf("vm-talos booted without its join token:\n%s", grepLines(consoles["vm-talos"], "PROVISIOND-TEST-"))
	}
	if !strings.Contains(consoles["vm-slurm"], "PROVISIOND-TEST-MUNGE: "+hex.EncodeToString(keySum[:])+" 400") {
		t.Errorf("vm-slurm booted without its munge key:\n%s", grepLines(consoles["vm-slurm"], "PROVISIOND-TEST-"))
	}
	if got := serialLine(consoles["vm-slurm"], "PROVISIOND-TEST-CALLBACK:"); got != "ok" {
		t.Errorf("vm-slurm's callback: %q", got)
	}

	// Still in their boots (the window is open), a host that takes a
	// victim's MAC and address binding asks for its secrets: vm-talos's
	// script went out once in this boot, so it is refused with the alarm;
	// vm-slurm's one-shot is used up, its script now boots the disk.
	l.asVictim(atk, talosMAC, "192.0.2.70", func() {
		rs := l.attack(atk, []attackReq{{Name: "spoof script " + talosMAC, URL: boot + "/boot/" + talosMAC + "/script"}})
		check(rs)
		if strings.Contains(rs[0].Body, "jointoken") || strings.Contains(rs[0].Body, "talos.config") {
			t.Errorf("the spoofing host got vm-talos's Talos script:\n%s", rs[0].Body)
		}
	})
	l.asVictim(atk, slurmMAC, "192.0.2.69", func() {
		rs := l.attack(atk, []attackReq{{Name: "spoof script " + slurmMAC, URL: boot + "/boot/" + slurmMAC + "/script"}})
		check(rs)
		if strings.Contains(rs[0].Body, "overlay.cpio") {
			t.Errorf("after its one-shot, vm-slurm's script still names the overlay:\n%s", rs[0].Body)
		}
	})

	// The whole impostor: vm-idle's MAC and address binding, and a boot
	// of its own (its PXE ROM's request replayed). Without vm-idle's
	// asset tag, its script carries no nonce and the overlay stays shut.
	l.asVictim(atk, idleMAC, "192.0.2.72", func() {
		rs := l.attack(atk, []attackReq{{Name: "impostor pxe " + idleMAC, Method: "PXE", URL: fmt.Sprintf("%s:4011", serverIP), Body: "192.0.2.72"}})
		if rs[0].Status != 200 {
			t.Fatalf("the impostor's PXE request got no answer: %+v", rs[0])
		}
		rs = l.attack(atk, []attackReq{{Name: "impostor script " + idleMAC, URL: boot + "/boot/" + idleMAC + "/script?asset=E2E-ASSET-guess"}})
		check(rs)
		if strings.Contains(rs[0].Body, "nonce=") {
			t.Errorf("the impostor without the asset tag got vm-idle's nonce:\n%s", rs[0].Body)
		}
		check(l.attack(atk, []attackReq{{Name: "impostor overlay " + idleMAC, URL: boot + "/boot/" + idleMAC + "/overlay.cpio?profile=slurm&nonce=AAAAAAAAAAAAAAAAAAAAAAAA"}}))
	})
	var idleReasons []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !slices.Contains(idleReasons, "script:asset_key"); time.Sleep(250 * time.Millisecond) {
		idleReasons = nil
		for _, ev := range l.timeline("vm-idle") {
			if ev.Type == events.SecretRefused {
				idleReasons = append(idleReasons, ev.Attrs["what"]+":"+ev.Attrs["reason"])
			}
		}
	}
	if !slices.Contains(idleReasons, "script:asset_key") {
		t.Errorf("vm-idle's timeline lacks the asset key refusal: %v", idleReasons)
	}

	// The timelines: refusals with their reasons, the alarms, the real
	// boots' consumption; no facts from the attacker.
	for _, tc := range []struct {
		name, profile string
		consumed      int
		alarm         bool
	}{{"vm-talos", "talos", 0, true}, {"vm-slurm", "local", 1, false}} {
		var evs []events.Event
		var reasons, alarms []string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			evs = l.timeline(tc.name)
			reasons, alarms = nil, nil
			for _, ev := range evs {
				switch ev.Type {
				case events.SecretRefused:
					reasons = append(reasons, ev.Attrs["what"]+":"+ev.Attrs["reason"])
				case events.SpoofAlarm:
					alarms = append(alarms, ev.Attrs["what"]+" from "+ev.Attrs["client"])
				}
			}
			if len(alarms) > 0 || !tc.alarm && len(evs) > 0 {
				break
			}
		}
		t.Logf("%s: refusals on the timeline %v; alarms %v", tc.name, reasons, alarms)
		if len(reasons) == 0 || tc.alarm && len(alarms) == 0 {
			t.Errorf("%s: timeline lacks refusals (%v) or the spoof alarm (%v)", tc.name, reasons, alarms)
		}
		var consumed, booted int
		for _, ev := range evs {
			switch ev.Type {
			case events.OnceConsumed:
				consumed++
			case events.Booted:
				booted++
				if ev.Attrs["status"] == "pwned" {
					t.Errorf("%s: the attacker's callback is on the timeline", tc.name)
				}
			}
		}
		if consumed != tc.consumed {
			t.Errorf("%s: one-shot consumed %d times, want %d (by its own boot)", tc.name, consumed, tc.consumed)
		}
		m, err := l.machine(tc.name)
		if err != nil || m.Once != nil || m.Profile != tc.profile {
			t.Errorf("%s after its boot: profile %q once %v (%v)", tc.name, m.Profile, m.Once, err)
		}
		if m.Observed != nil {
			t.Errorf("%s: facts recorded from %s", tc.name, m.Observed.Host)
		}
	}
	t.Logf("provisiond events vm-talos:\n%s", l.mustCLI("events", "vm-talos", "-n", "12"))
	t.Logf("provisiond events vm-idle:\n%s", l.mustCLI("events", "vm-idle", "-n", "6"))
	metrics := l.sh(l.server, "busybox", "wget", "--no-check-certificate", "-q", "-O", "-", fmt.Sprintf("https://127.0.0.1:%d/metrics", controlPort))
	t.Logf("metrics:\n%s", grepLines(metrics, "provisiond_boot_refused_total{", "provisiond_boot_spoof_alarms_total", `provisiond_dropped_total{reason="max_connections_per_source"`))
	if metricValue(metrics, "provisiond_boot_spoof_alarms_total") < 1 {
		t.Error("no spoof alarm counted")
	}
	if m, err := l.machine("vm-idle"); err != nil || m.Once == nil || m.Observed != nil {
		t.Errorf("vm-idle, which never booted, after the attack: %+v %v", m, err)
	}
	if metricValue(metrics, `provisiond_dropped_total{reason="max_connections_per_source",server="http"}`) == 0 {
		t.Error("no connection of the attacker's was refused for its address's bound")
	}
}

// attack runs reqs from the attacker's namespace and returns the answers.
func (l *lab) attack(ns string, reqs []attackReq) []attackRes {
	l.t.Helper()
	raw, _ := json.Marshal(reqs)
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestAttackHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PROVISIOND_E2E_ATTACK=probe", "PROVISIOND_E2E_ATTACK_REQS="+string(raw))
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("attacker: %v\n%s", err, out)
	}
	var res []attackRes
	for _, line := range strings.Split(string(out), "\n") {
		if j, ok := strings.CutPrefix(line, "ATTACK-RESULT "); ok {
			var r attackRes
			json.Unmarshal([]byte(j), &r)
			res = append(res, r)
		}
	}
	if len(res) != len(reqs) {
		l.t.Fatalf("attacker: %d answers to %d requests:\n%s", len(res), len(reqs), out)
	}
	return res
}

// asVictim gives the attacker's interface mac and, instead of its own
// address, a fresh one (so provisiond's neighbour entry for it is the
// copied MAC) for the length of do; then its own back.
func (l *lab) asVictim(ns, mac, ip string, do func()) {
	l.t.Helper()
	own := strings.TrimSpace(l.sh(ns, "cat", "/sys/class/net/a0/address"))
	l.sh(ns, "ip", "link", "set", "a0", "down")
	l.sh(ns, "ip", "addr", "del", attackerIP+"/25", "dev", "a0")
	l.sh(ns, "ip", "link", "set", "a0", "address", mac)
	l.sh(ns, "ip", "addr", "add", ip+"/25", "dev", "a0")
	l.sh(ns, "ip", "link", "set", "a0", "up")
	defer func() {
		l.sh(ns, "ip", "link", "set", "a0", "down")
		l.sh(ns, "ip", "addr", "del", ip+"/25", "dev", "a0")
		l.sh(ns, "ip", "link", "set", "a0", "address", own)
		l.sh(ns, "ip", "addr", "add", attackerIP+"/25", "dev", "a0")
		l.sh(ns, "ip", "link", "set", "a0", "up")
	}()
	do()
}

// holdConnections has the attacker open n idle connections from its
// address from to addr and
// open them again as the daemon closes them, until the returned function
// is called; it returns the most held at once.
func (l *lab) holdConnections(ns, from, addr string, n int) func() int {
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestAttackHelper$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), "PROVISIOND_E2E_ATTACK=hold", "PROVISIOND_E2E_ATTACK_FROM="+from, "PROVISIOND_E2E_ATTACK_ADDR="+addr, "PROVISIOND_E2E_ATTACK_N="+strconv.Itoa(n))
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting the attacker's connections: %v", err)
	}
	var maxHeld atomic.Int64
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "HELD "); ok {
				if h, err := strconv.ParseInt(v, 10, 64); err == nil && h > maxHeld.Load() {
					maxHeld.Store(h)
				}
			}
		}
	}()
	stopped := false
	stop := func() int {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			cmd.Wait()
		}
		return int(maxHeld.Load())
	}
	l.cleanup = append(l.cleanup, func() { stop() })
	return stop
}

// TestAttackHelper is the attacker's program, run in its namespace by the
// lab tests: it makes the requests it is given, or holds idle connections.
func TestAttackHelper(t *testing.T) {
	switch os.Getenv("PROVISIOND_E2E_ATTACK") {
	case "probe":
		var reqs []attackReq
		json.Unmarshal([]byte(os.Getenv("PROVISIOND_E2E_ATTACK_REQS")), &reqs)
		c := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		for _, r := range reqs {
			res := attackRes{Name: r.Name}
			if r.Method == "PXE" {
				// A PXE ROM's request to the boot server, for a MAC.
				mac := strings.Fields(r.Name)[len(strings.Fields(r.Name))-1]
				server, _ := net.ResolveUDPAddr("udp4", r.URL)
				res.Status = 200
				if err := pxetest.RequestTo(server, mac, net.ParseIP(r.Body)); err != nil {
					res.Status, res.Err = 0, err.Error()
				}
				j, _ := json.Marshal(res)
				fmt.Printf("ATTACK-RESULT %s\n", j)
				continue
			}
			req, _ := http.NewRequest(cmp.Or(r.Method, "GET"), r.URL, strings.NewReader(r.Body))
			if r.Type != "" {
				req.Header.Set("Content-Type", r.Type)
			}
			if resp, err := c.Do(req); err != nil {
				res.Err = err.Error()
			} else {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
				resp.Body.Close()
				res.Status, res.Body = resp.StatusCode, string(b)
			}
			j, _ := json.Marshal(res)
			fmt.Printf("ATTACK-RESULT %s\n", j)
		}
	case "hold":
		addr := os.Getenv("PROVISIOND_E2E_ATTACK_ADDR")
		n, _ := strconv.Atoi(os.Getenv("PROVISIOND_E2E_ATTACK_N"))
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(os.Getenv("PROVISIOND_E2E_ATTACK_FROM"))}}
		var held atomic.Int64
		for i := 0; i < n; i++ {
			go func() {
				for {
					c, err := d.Dial("tcp", addr)
					if err == nil {
						held.Add(1)
						// Idle: send nothing, wait until the daemon hangs up.
						io.Copy(io.Discard, c)
						c.Close()
						held.Add(-1)
					}
					time.Sleep(5 * time.Second)
				}
			}()
			if i%100 == 99 {
				time.Sleep(50 * time.Millisecond)
			}
		}
		var most int64
		for range time.Tick(500 * time.Millisecond) {
			if h := held.Load(); h > most {
				most = h
			}
			fmt.Printf("HELD %d\n", most)
		}
	default:
		t.Skip("helper process for the lab tests")
	}
}
