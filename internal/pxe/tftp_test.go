package pxe

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/netutil"
)

func TestCleanTFTPPath(t *testing.T) {
	ok := map[string]string{
		"undionly.kpxe":                  "undionly.kpxe",
		"/undionly.kpxe":                 "undionly.kpxe",
		"//ipxe.efi":                     "ipxe.efi",
		`\boot\x.ipxe`:                   "boot/x.ipxe",
		"boot/52:54:00:12:34:56.ipxe":    "boot/52:54:00:12:34:56.ipxe",
		"a/./b":                          "a/b",
		"pxelinux.cfg/01-52-54-00-12-34": "pxelinux.cfg/01-52-54-00-12-34",
	}
	for in, want := range ok {
		got, err := CleanTFTPPath(in)
		if err != nil || got != want {
			t.Errorf("CleanTFTPPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{
		"", "..", "../etc/passwd", "/../etc/passwd", "a/../../etc/passwd", `..\..\etc\passwd`,
		`a\..\..\x`, "a/..", "undionly.kpxe\x00.txt", "line\nbreak", "/", ".", strings.Repeat("a", 300),
	} {
		if got, err := CleanTFTPPath(bad); err == nil {
			t.Errorf("CleanTFTPPath(%q) = %q, want refusal", bad, got)
		}
	}
}

type fakeScripts struct{}

func (fakeScripts) FirstStage(_ context.Context, mac, base string) ([]byte, error) {
	return []byte("#!ipxe\n"), nil
}

func (fakeScripts) Config(context.Context, ScriptRequest) ([]byte, string, error) {
	return nil, "", ErrRefused
}

func (fakeScripts) Overlay(context.Context, ScriptRequest) ([]byte, string, error) {
	return nil, "", nil
}

func (fakeScripts) Script(_ context.Context, r ScriptRequest) (ScriptReply, error) {
	return ScriptReply{Body: []byte("#!ipxe\necho script for " + r.MAC + " via " + r.BaseURL + "\n"), Profile: "menu"}, nil
}

func (fakeScripts) Callback(context.Context, ScriptRequest) error { return nil }

func (fakeScripts) Facts(context.Context, ScriptRequest, []byte) ([]byte, error) {
	return nil, ErrRefused
}

// startTFTP runs a real TFTP server on a loopback port.
func startTFTP(t *testing.T, root string, files map[string]string, sink events.Reporter) (string, *TFTPServer) {
	t.Helper()
	nb := NewNeighbors("")
	nb.Learn(net.IPv4(127, 0, 0, 1), "52:54:00:12:34:56")
	return serveTFTP(t, TFTPConfig{Root: root, Files: files, MaxBlockSize: 1468, Scripts: fakeScripts{}, Neighbors: nb, Steps: sink,
		HTTPBase: func(net.IP) string { return "http://192.0.2.2:8080" }})
}

// serveTFTP runs a TFTP server with cfg on a loopback port until the test
// ends, and returns its address.
func serveTFTP(t testing.TB, cfg TFTPConfig) (string, *TFTPServer) {
	t.Helper()
	s, err := NewTFTPServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// As netutil.ListenUDP's: a flood of requests is queued, not dropped
	// by the kernel before the server sees it.
	conn.SetReadBuffer(netutil.ReceiveBuffer)
	s.conns = []*net.UDPConn{conn}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return conn.LocalAddr().String(), s
}

func fetch(t testing.TB, addr, name string, blksize int) ([]byte, int64, error) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(2)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, 0, err
	}
	size, _ := wt.(tftp.IncomingTransfer).Size()
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, 0, err
	}
	return buf.Bytes(), size, nil
}

func TestTFTPServesReadOnly(t *testing.T) {
	root := t.TempDir()
	payload := make([]byte, 200_000)
	rand.Read(payload)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), payload, 0o644)
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o644)
	os.Symlink(outside, filepath.Join(root, "escape"))
	linked := filepath.Join(t.TempDir(), "ipxe.efi")
	os.WriteFile(linked, []byte("efi binary"), 0o644)
	sink := &sinkRec{}
	addr, srv := startTFTP(t, root, map[string]string{"ipxe.efi": linked}, sink)

	for _, bs := range []int{512, 1468} {
		got, size, err := fetch(t, addr, "undionly.kpxe", bs)
		if err != nil {
			t.Fatalf("blksize %d: %v", bs, err)
		}
		if !bytes.Equal(got, payload) || size != int64(len(payload)) {
			t.Fatalf("blksize %d: got %d bytes (tsize %d), want %d", bs, len(got), size, len(payload))
		}
	}
	// A configured binary behind a symbolic link (Debian's ipxe.efi).
	if got, _, err := fetch(t, addr, "/ipxe.efi", 0); err != nil || string(got) != "efi binary" {
		t.Fatalf("configured binary: %q %v", got, err)
	}
	// The per-machine script for iPXE builds without HTTP.
	if got, _, err := fetch(t, addr, "boot/52-54-00-12-34-56.ipxe", 0); err != nil || !strings.Contains(string(got), "script for 52:54:00:12:34:56 via http://192.0.2.2:8080") {
		t.Fatalf("script over TFTP: %q %v", got, err)
	}
	for _, bad := range []string{"../../etc/passwd", "escape", "missing", `..\..\etc\passwd`} {
		if got, _, err := fetch(t, addr, bad, 0); err == nil {
			t.Errorf("%q was served (%d bytes)", bad, len(got))
		}
	}
	// Writes are refused.
	c, _ := tftp.NewClient(addr)
	c.SetTimeout(time.Second)
	c.SetRetries(1)
	if rf, err := c.Send("upload", "octet"); err == nil {
		if _, err := rf.ReadFrom(strings.NewReader("data")); err == nil {
			t.Error("a write request was accepted")
		}
	}
	if _, err := os.Stat(filepath.Join(root, "upload")); err == nil {
		t.Error("a write created a file")
	}

	// Events: each successful transfer carries bytes and the blksize.
	time.Sleep(100 * time.Millisecond)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var ok1468 bool
	for _, ev := range sink.evs {
		if ev.Type == events.TFTPTransfer && ev.Attrs["file"] == "undionly.kpxe" && ev.Attrs["blksize"] == "1468" &&
			ev.Attrs["bytes"] == strconv.Itoa(len(payload)) && ev.Attrs["result"] == "ok" {
			ok1468 = true
		}
	}
	if !ok1468 {
		t.Errorf("no event for the 1468-byte-block transfer: %+v", sink.evs)
	}
	if st := srv.Stats(); st.Refused < 2 || st.Transfers < 4 {
		t.Errorf("stats %+v", st)
	}
}

// TestTFTPFloodIsBounded: 200 clients ask at once and never acknowledge a
// block (each transfer holds a socket until it times out). Transfers in
// flight stay at MaxTransfers, at most thirty-two times as many wait for a slot,
// the rest are answered "busy" at once and counted, and the process's file
// descriptors stay bounded.
func TestTFTPFloodIsBounded(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), make([]byte, 100_000), 0o644)
	addr, s := serveTFTP(t, TFTPConfig{Root: root, MaxTransfers: 8, QueueWait: time.Second, Timeout: 300 * time.Millisecond, Neighbors: NewNeighbors("")})
	server, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}

	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	const clients = 450
	before := fds()
	rrq := append([]byte{0, 1}, []byte("undionly.kpxe\x00octet\x00")...)
	var socks []*net.UDPConn
	for range clients {
		c, err := net.DialUDP("udp", nil, server)
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, c)
		c.Write(rrq)
	}
	peak := 0
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		st := s.Stats()
		if int(st.Active) > peak {
			peak = int(st.Active)
		}
		if st.Busy+uint64(st.Active)+st.Failures >= clients && st.Busy > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	during := fds() - before - clients // our own client sockets excluded
	st := s.Stats()
	for _, c := range socks {
		c.Close()
	}
	if peak > 8 || st.Active > 8 {
		t.Fatalf("%d transfers in flight (peak %d), bound 8", st.Active, peak)
	}
	// 8 in flight, 256 waiting, the rest busy (a few may have found a
	// slot freed by a timed-out transfer).
	if st.Busy < clients-8-256-8 {
		t.Fatalf("only %d of %d requests answered busy (active %d, failures %d)", st.Busy, clients, st.Active, st.Failures)
	}
	if during > 8+256+32 {
		t.Fatalf("server holds %d more file descriptors during the flood", during)
	}
	t.Logf("%d requests: %d in flight at most, %d answered busy, %d extra file descriptors", clients, peak, st.Busy, during)
}

// A rack powered on at once: more machines than transfer slots ask at the
// same moment. They wait for a slot rather than being told "busy" (which
// makes a PXE ROM give up), and every one gets its file.
func TestTFTPQueuesBeyondMaxTransfers(t *testing.T) {
	root := t.TempDir()
	want := bytes.Repeat([]byte("iPXE"), 50_000)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), want, 0o644)
	addr, s := serveTFTP(t, TFTPConfig{Root: root, MaxTransfers: 2, MaxBlockSize: 1468, Neighbors: NewNeighbors("")})

	const clients = 8 // four times the slots: all may wait
	errs := make(chan error, clients)
	for range clients {
		go func() {
			got, _, err := fetch(t, addr, "undionly.kpxe", 1468)
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("got %d bytes, want %d", len(got), len(want))
			}
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// A transfer is counted once the server has its final acknowledgement,
	// a moment after the client has the last block.
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Transfers < clients && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := s.Stats(); st.Busy != 0 || st.Transfers != clients {
		t.Errorf("stats %+v: want %d transfers, none busy", st, clients)
	}
}

// An enclosure and its racks powered on at once: 600 ROMs ask on the
// defaults, and each gets its first block at once rather than waiting in
// line. Lock-step transfers in flight share the CPU, and a ROM waits
// seconds for each block, but one whose request waits for a slot gives up
// after about 12 s: with 256 slots the last of a storm of 5,000 waited
// longer than that (bench/storm.sh). These transfers then stall (the ROMs
// acknowledge nothing), and one more machine still gets its whole file
// within a short patience.
func TestTFTPRackStartsAtOnce(t *testing.T) {
	root := t.TempDir()
	want := bytes.Repeat([]byte("iPXE"), 20_000)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), want, 0o644)
	addr, s := serveTFTP(t, TFTPConfig{Root: root, MaxBlockSize: 1468, Neighbors: NewNeighbors("")})
	server, _ := net.ResolveUDPAddr("udp", addr)

	const rack = 600
	rrq := append([]byte{0, 1}, []byte("undionly.kpxe\x00octet\x00blksize\x001468\x00")...)
	type rom struct {
		c    *net.UDPConn
		from *net.UDPAddr // the transfer's port, once it answered
	}
	roms := make([]rom, rack)
	for i := range roms {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		roms[i].c = c
		c.WriteToUDP(rrq, server)
	}
	// Each ROM aborts its transfer at the end (error 8), so the server's
	// shutdown does not wait for 600 timeouts.
	defer func() {
		for _, r := range roms {
			if r.from != nil {
				r.c.WriteToUDP([]byte("\x00\x05\x00\x08\x00"), r.from)
			}
			r.c.Close()
		}
	}()
	answered := 0
	deadline := time.Now().Add(5 * time.Second)
	for i := range roms {
		buf := make([]byte, 1600)
		roms[i].c.SetReadDeadline(deadline)
		if _, from, err := roms[i].c.ReadFromUDP(buf); err == nil {
			roms[i].from = from
			answered++
		}
	}
	if answered != rack {
		t.Fatalf("%d of %d ROMs asking at once were answered within 5 s (transfers in flight: %d); the rest wait for a slot", answered, rack, s.Stats().Active)
	}

	// One more machine, with less patience than a ROM: 3 tries of a second.
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	c.SetRetries(2)
	c.SetBlockSize(1468)
	wt, err := c.Receive("undionly.kpxe", "octet")
	if err != nil {
		t.Fatalf("with %d stalled transfers in flight, a new request was not answered: %v", rack, err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("got %d bytes (%v), want %d", buf.Len(), err, len(want))
	}
}

// A PXE ROM repeats its request from the same port while it waits for an
// answer. In a storm every request waits for a slot, and each repeat used to
// become a transfer of its own, waiting for a slot and then holding it until
// it timed out (the client had its file from the first): the machines
// behind them waited past QueueWait and were told "busy", which ends a
// PXE boot. Repeats now wait for the first transfer and take no slot.
func TestTFTPRepeatedRequestsTakeNoSlot(t *testing.T) {
	root := t.TempDir()
	want := bytes.Repeat([]byte("iPXE"), 5_000)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), want, 0o644)
	addr, s := serveTFTP(t, TFTPConfig{Root: root, MaxTransfers: 1, MaxBlockSize: 1468, QueueWait: 10 * time.Second,
		Timeout: 300 * time.Millisecond, Neighbors: NewNeighbors("")})
	server, _ := net.ResolveUDPAddr("udp", addr)

	// A client that asks once and never acknowledges holds the one slot
	// until its transfer times out (5 retries of 300 ms, each after a
	// random pause of up to 1 s: 4 s on average).
	stalled, err := net.DialUDP("udp", nil, server)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.Write(append([]byte{0, 1}, []byte("undionly.kpxe\x00octet\x00")...))
	time.Sleep(100 * time.Millisecond)

	// Two machines behind it: the first repeats its request every 200 ms
	// while it waits, as an impatient ROM would; the second asks once and
	// waits (old code: behind every repeat of the first, each holding the
	// slot for seconds, until it was told "busy").
	get := func(timeout time.Duration) error {
		c, err := tftp.NewClient(addr)
		if err != nil {
			return err
		}
		c.SetTimeout(timeout)
		c.SetRetries(60)
		c.SetBackoff(func(int) time.Duration { return 100 * time.Millisecond })
		c.SetBlockSize(1468)
		wt, err := c.Receive("undionly.kpxe", "octet")
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if _, err := wt.WriteTo(&buf); err != nil {
			return err
		}
		if !bytes.Equal(buf.Bytes(), want) {
			return fmt.Errorf("got %d bytes, want %d", buf.Len(), len(want))
		}
		return nil
	}
	errs := make(chan error, 2)
	go func() { errs <- get(100 * time.Millisecond) }()
	time.Sleep(300 * time.Millisecond)
	go func() { errs <- get(30 * time.Second) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	st := s.Stats()
	if st.Busy != 0 || st.Repeats == 0 {
		t.Errorf("stats %+v: want repeats answered by the first transfer, none busy", st)
	}
	t.Logf("stats %+v", st)
}

// Requests refused, missing or busy before a transfer starts leave no
// options behind (each used to keep ~470 bytes for good: a spoofable UDP
// packet apiece).
func TestTFTPRefusedRequestsLeaveNothing(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), make([]byte, 5000), 0o644)
	addr, s := startTFTP(t, root, nil, nil)
	for i := 0; i < 50; i++ {
		fetch(t, addr, "missing-file", 1468)
		fetch(t, addr, "../etc/passwd", 1468)
	}
	if _, _, err := fetch(t, addr, "undionly.kpxe", 1468); err != nil {
		t.Fatal(err)
	}
	// The hooks run on the server's goroutines: give them a moment.
	deadline := time.Now().Add(2 * time.Second)
	for s.pendingLen() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.pendingLen(); n != 0 {
		t.Fatalf("%d transfer option entries left after 100 refused requests and one transfer, want 0", n)
	}
}

// One iPXE binary's transfer (undionly.kpxe's size) over loopback, client
// and server in this process: the per-transfer cost, start-up included.
func BenchmarkTFTPTransfer(b *testing.B) {
	for _, blksize := range []int{512, 1468} {
		b.Run(fmt.Sprint("blksize=", blksize), func(b *testing.B) {
			root := b.TempDir()
			os.WriteFile(filepath.Join(root, "undionly.kpxe"), make([]byte, 74213), 0o644)
			addr, _ := serveTFTP(b, TFTPConfig{Root: root, MaxBlockSize: 1468, Neighbors: NewNeighbors("")})
			b.ResetTimer()
			for range b.N {
				if _, _, err := fetch(b, addr, "undionly.kpxe", blksize); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Firmware (EDK2 among them) asks for a file's size, aborts the transfer
// (error 8), and asks for the file at once, possibly from the same port
// (EDK2 takes a new one): that second request is a new one, served, not a
// repeat of the first.
func TestTFTPSizeQueryThenFetchFromOnePort(t *testing.T) {
	root := t.TempDir()
	want := bytes.Repeat([]byte("iPXE"), 1000) // 4000 bytes: 8 blocks of 512
	os.WriteFile(filepath.Join(root, "snponly.efi"), want, 0o644)
	addr, s := serveTFTP(t, TFTPConfig{Root: root, Neighbors: NewNeighbors("")})
	server, _ := net.ResolveUDPAddr("udp", addr)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() ([]byte, *net.UDPAddr) {
		t.Helper()
		buf := make([]byte, 1500)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n], from
	}
	c.WriteToUDP([]byte("\x00\x01snponly.efi\x00octet\x00tsize\x000\x00"), server)
	oack, first := read()
	if oack[1] != 6 || !bytes.Contains(oack, []byte("tsize\x004000\x00")) {
		t.Fatalf("size query answered %q", oack)
	}
	c.WriteToUDP([]byte("\x00\x05\x00\x08size only\x00"), first)
	c.WriteToUDP([]byte("\x00\x01snponly.efi\x00octet\x00"), server)
	var got []byte
	for block := 1; ; block++ {
		pkt, from := read()
		if from.Port == first.Port {
			// pin/tftp answers the client's abort with an error of its
			// own, from the first transfer's port; only that port's.
			block--
			continue
		}
		if pkt[1] != 3 || int(pkt[2])<<8|int(pkt[3]) != block {
			t.Fatalf("the fetch after the size query got %q from %v", pkt, from)
		}
		got = append(got, pkt[4:]...)
		c.WriteToUDP([]byte{0, 4, pkt[2], pkt[3]}, from)
		if len(pkt)-4 < 512 {
			break
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
	if st := s.Stats(); st.Repeats != 0 {
		t.Errorf("the fetch was taken for a repeat: %+v", st)
	}
}
