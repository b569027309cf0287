package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/certs"
	"github.com/provisiond/provisiond/internal/daemon"
	"github.com/provisiond/provisiond/internal/inventory"
)

// proc is a provisiond serve process on loopback (no DHCP, no TFTP: these
// tests need no root).
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	url     string
	dataDir string
	log     *lockedBuffer
	token   string
	done    chan error
	// ctl is the control plane's URL, hc a client that pins its
	// certificate.
	ctl string
	hc  *http.Client
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProc starts the daemon bin on dataDir with config file conf and waits
// until it answers.
func startProc(t *testing.T, bin, dataDir, conf string, extra ...string) *proc {
	t.Helper()
	port, ctlPort := freePort(t), freePort(t)
	ipxe := filepath.Join(filepath.Dir(dataDir), "ipxe")
	os.MkdirAll(ipxe, 0o755)
	args := append([]string{"serve", "--config", conf, "--no-dhcp", "--no-tftp", "--data-dir", dataDir, "--ipxe-dir", ipxe,
		"--http-listen", fmt.Sprintf("127.0.0.1:%d", port), "--control-listen", fmt.Sprintf("127.0.0.1:%d", ctlPort)}, extra...)
	cmd := exec.Command(bin, args...)
	p := &proc{t: t, cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), ctl: fmt.Sprintf("https://127.0.0.1:%d", ctlPort),
		dataDir: dataDir, log: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("provisiond log:\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(p.url + "/healthz"); err == nil {
			resp.Body.Close()
			raw, _ := os.ReadFile(filepath.Join(dataDir, daemon.TokenFile))
			p.token = strings.TrimSpace(string(raw))
			fp, err := certs.FileFingerprint(filepath.Join(dataDir, certs.SelfSignedCert))
			if err != nil {
				t.Fatalf("the control plane's certificate: %v", err)
			}
			p.hc = &http.Client{Transport: &http.Transport{TLSClientConfig: certs.ClientConfig(fp, nil)}}
			return p
		}
		select {
		case err := <-p.done:
			t.Fatalf("provisiond exited at start: %v\n%s", err, p.log.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("provisiond did not answer within 20s:\n%s", p.log.String())
	return nil
}

// request sends an API request with the token and returns the status.
func (p *proc) request(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, p.ctl+path, rd)
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// TestKill9KeepsAcknowledgedWrites streams machine creations and updates
// through the API from 8 writers, kills the daemon with SIGKILL in the
// middle, restarts it on the same data directory, and checks that every
// write the API acknowledged is there. Three rounds, killed at different
// moments.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool to build provisiond")
	}
	bin := buildBinary(t, t.TempDir())
	dataDir := filepath.Join(t.TempDir(), "data")
	total := 0
	for round, after := range []time.Duration{700 * time.Millisecond, 1500 * time.Millisecond, 2300 * time.Millisecond} {
		p := startProc(t, bin, dataDir, "/dev/null")
		var mu sync.Mutex
		var created []string
		lastSeq := map[string]int{}
		updates := 0
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				own := fmt.Sprintf("R%d-W%d", round, w)
				if code, _, err := p.request("POST", "/api/v1/machines", labelled(own, "0")); err != nil || code != http.StatusCreated {
					return
				}
				mu.Lock()
				created = append(created, own)
				mu.Unlock()
				for i := 1; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var code int
					var err error
					name := own
					if i%2 == 0 {
						name = fmt.Sprintf("R%d-W%d-%d", round, w, i)
						code, _, err = p.request("POST", "/api/v1/machines", inventory.Machine{Name: name,
							MACs: []string{fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", round, w, i>>16&0xff, i>>8&0xff, i&0xff)}})
						if err == nil && code == http.StatusCreated {
							mu.Lock()
							created = append(created, name)
							mu.Unlock()
						}
					} else {
						code, _, err = p.request("PUT", "/api/v1/machines/"+own, labelled(own, fmt.Sprint(i)))
						if err == nil && code == http.StatusOK {
							mu.Lock()
							lastSeq[own] = i
							updates++
							mu.Unlock()
						}
					}
					if err != nil {
						return // the daemon is gone
					}
				}
			}()
		}
		time.Sleep(after)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		close(stop)
		wg.Wait()
		if len(created) < 10 {
			t.Fatalf("round %d: only %d writes acknowledged before the kill:\n%s", round, len(created), p.log.String())
		}

		// Restart on the same data directory: it opens, and every
		// acknowledged write is there.
		q := startProc(t, bin, dataDir, "/dev/null")
		code, raw, err := q.request("GET", "/api/v1/machines", nil)
		if err != nil || code != 200 {
			t.Fatalf("round %d: listing after restart: %d %v", round, code, err)
		}
		var ms []inventory.Machine
		json.Unmarshal(raw, &ms)
		have := map[string]inventory.Machine{}
		for _, m := range ms {
			have[m.Name] = m
		}
		missing := 0
		for _, n := range created {
			if _, ok := have[n]; !ok {
				missing++
				t.Errorf("round %d: acknowledged machine %s is missing after kill -9", round, n)
			}
		}
		for n, seq := range lastSeq {
			var got int
			fmt.Sscan(have[n].Labels["seq"], &got)
			if got < seq {
				t.Errorf("round %d: %s has seq %d after kill -9, but %d was acknowledged", round, n, got, seq)
			}
		}
		total += len(created) + updates
		t.Logf("round %d: killed after %v; %d creations and %d updates acknowledged, %d machines after restart, %d missing",
			round, after, len(created), updates, len(ms), missing)
		q.cmd.Process.Signal(syscall.SIGTERM)
		<-q.done
	}
	t.Logf("kill -9 three times: %d acknowledged writes, every one present after restart", total)
}

// labelled is machine name with label seq=seq.
func labelled(name, seq string) inventory.Machine {
	m := inventory.Machine{Name: name}
	m.Labels = map[string]string{"seq": seq}
	return m
}

// TestSIGTERMDrains starts a slow download, sends SIGTERM, and expects:
// new connections refused at once, the running download completed in
// full, a clean exit, and a database that opens.
func TestSIGTERMDrains(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool to build provisiond")
	}
	bin := buildBinary(t, t.TempDir())
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	assets := filepath.Join(dir, "assets")
	os.MkdirAll(assets, 0o755)
	payload := bytes.Repeat([]byte("provisiond"), 3<<20) // 30 MiB
	os.WriteFile(filepath.Join(assets, "big.img"), payload, 0o644)
	p := startProc(t, bin, dataDir, "/dev/null", "--assets-dir", assets)

	resp, err := http.Get(p.url + "/assets/big.img")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make([]byte, 0, len(payload))
	buf := make([]byte, 64<<10)
	n, _ := io.ReadFull(resp.Body, buf)
	got = append(got, buf[:n]...)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	// Stopped accepting: a new connection is refused.
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.url, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("a new connection was accepted after SIGTERM")
	}
	// The running download goes on, slowly, to the end.
	for {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("download cut short by SIGTERM: %d of %d bytes", len(got), len(payload))
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("provisiond did not exit within 15s of SIGTERM")
	}
	s, err := inventory.Open(filepath.Join(dataDir, daemon.DBFile), inventory.Options{})
	if err != nil {
		t.Fatalf("database after SIGTERM: %v", err)
	}
	s.Close()
	for _, want := range []string{"provisiond stopping: finishing transfers", "provisiond stopped"} {
		if !strings.Contains(p.log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	t.Logf("SIGTERM during a %d-byte download: finished in full, new connections refused, clean exit", len(payload))
}

// TestSIGHUPReload changes the config and the profiles under a running
// daemon: a good change applies, a broken config or profile is refused and
// the last good set keeps serving.
func TestSIGHUPReload(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool to build provisiond")
	}
	bin := buildBinary(t, t.TempDir())
	dir := t.TempDir()
	conf := filepath.Join(dir, "provisiond.yaml")
	profDir := filepath.Join(dir, "profiles")
	os.MkdirAll(profDir, 0o755)
	write := func(path, body string) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(conf, "profiles_dir: "+profDir+"\nboot:\n  default_profile: menu\n")
	p := startProc(t, bin, filepath.Join(dir, "data"), conf)
	script := func() string {
		resp, err := http.Get(p.url + "/boot/52-54-00-aa-bb-cc/script")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return string(raw)
	}
	hup := func(wantLog string) {
		t.Helper()
		before := strings.Count(p.log.String(), wantLog)
		p.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(p.log.String(), wantLog) == before {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log after SIGHUP:\n%s", wantLog, p.log.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if s := script(); !strings.Contains(s, "menu provisiond") {
		t.Fatalf("unknown machine before reload:\n%s", s)
	}

	// A new profile and a new default: both apply.
	write(filepath.Join(profDir, "rescue.ipxe"), "#!ipxe\necho rescue for {{.Name}}\nshell\n")
	write(filepath.Join(profDir, "rescue.yaml"), "description: Rescue shell\n")
	write(conf, "profiles_dir: "+profDir+"\nboot:\n  default_profile: rescue\nlog:\n  level: debug\n")
	hup("configuration and profiles reloaded")
	if s := script(); !strings.Contains(s, "echo rescue for discovered-525400aabbcc") {
		t.Fatalf("after a good reload:\n%s", s)
	}

	// A config that does not parse: refused, rescue keeps serving.
	write(conf, "boot: [this is not\n")
	hup("reload failed; keeping the last good configuration and profiles")
	// A default profile that does not exist: refused.
	write(conf, "profiles_dir: "+profDir+"\nboot:\n  default_profile: nosuch\n")
	hup("boot.default_profile nosuch is not a known profile")
	// A profile whose template is broken: refused.
	write(conf, "profiles_dir: "+profDir+"\nboot:\n  default_profile: rescue\n")
	write(filepath.Join(profDir, "rescue.ipxe"), "#!ipxe\necho {{.Name\n")
	hup("reload failed; keeping the last good configuration and profiles")
	if s := script(); !strings.Contains(s, "echo rescue for discovered-525400aabbcc") {
		t.Fatalf("after refused reloads the last good set must serve:\n%s", s)
	}
	// A setting bound at start is named, not applied.
	write(filepath.Join(profDir, "rescue.ipxe"), "#!ipxe\necho rescue again for {{.Name}}\nshell\n")
	write(conf, "profiles_dir: "+profDir+"\nboot:\n  default_profile: rescue\ntftp:\n  max_block_size: 1024\n")
	hup("apply only after a restart")
	if !strings.Contains(p.log.String(), "settings=tftp") {
		t.Errorf("the restart warning does not name tftp:\n%s", p.log.String())
	}
	if s := script(); !strings.Contains(s, "echo rescue again for") {
		t.Fatalf("after the last reload:\n%s", s)
	}
	// The process is alive and well after all that.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/healthz", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after reloads: %v", err)
	}
}
