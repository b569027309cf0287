package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/netutil"
)

// Scripter renders scripts for machines: the first stage (what iPXE gets
// from its boot file URL) and the machine's profile.
type Scripter interface {
	// FirstStage returns the script iPXE fetches first for mac.
	FirstStage(ctx context.Context, mac, baseURL string) ([]byte, error)
	// Script renders the profile a machine boots now.
	Script(ctx context.Context, req ScriptRequest) (ScriptReply, error)
	// Overlay renders the machine's overlay archive for its profile (a
	// cpio the kernel unpacks over the base image). An error wrapping
	// ErrRefused is answered as for an unknown machine.
	Overlay(ctx context.Context, req ScriptRequest) ([]byte, string, error)
	// Config renders the machine's config document for its profile (what
	// Talos fetches from talos.config=). Refusals as for Overlay.
	Config(ctx context.Context, req ScriptRequest) ([]byte, string, error)
	// Callback checks a booted OS's report (its nonce and source); an
	// error means it is refused and changes nothing.
	Callback(ctx context.Context, req ScriptRequest) error
	// Facts takes a commissioning machine's report (its nonce and
	// source checked as for Callback) and returns the answer for it. An
	// error wrapping ErrRefused is answered as for an unknown machine;
	// one wrapping ErrBadReport with 400.
	Facts(ctx context.Context, req ScriptRequest, body []byte) ([]byte, error)
}

// ErrBadReport marks a report that could not be read.
var ErrBadReport = errors.New("bad report")

// ErrRefused marks a request answered as if its machine were unknown: the
// Scripter already recorded why.
var ErrRefused = errors.New("not found")

// ScriptReply is a rendered script.
type ScriptReply struct {
	// Body is the script.
	Body []byte
	// Profile is the profile rendered.
	Profile string
	// RecordFacts says what the request reported (iPXE's facts) may be
	// recorded: it came from the machine's own boot, or from a MAC that
	// is not in the inventory (discovery).
	RecordFacts bool
	// RecordStep says the script step goes on the timeline (false: the
	// Scripter's budget for steps anyone can cause is spent).
	RecordStep bool
}

// ScriptRequest is one machine's request for its script.
type ScriptRequest struct {
	// MAC is the booting NIC.
	MAC string
	// BaseURL is provisiond's URL as the machine reached it.
	BaseURL string
	// Facts are what iPXE reported about the hardware.
	Facts map[string]string
	// Profile is a profile chosen from a boot menu ("" for the assigned one).
	Profile string
	// Source is the client's address (invalid over TFTP, where the
	// script carries no secret).
	Source netip.Addr
	// Nonce is the per-boot nonce a served script put in the URL.
	Nonce string
}

// TFTPConfig configures the TFTP server.
type TFTPConfig struct {
	// Root is the directory served (the iPXE binaries). Symbolic links
	// that leave it are not followed.
	Root string
	// Files are served by name from the paths given, ahead of Root: the
	// iPXE binaries the config names, resolved by the operator's trust
	// (Debian links ipxe.efi to /boot).
	Files map[string]string
	// Port is the TFTP port (69).
	Port int
	// Interfaces to serve on (all when empty).
	Interfaces []netutil.Interface
	// MaxBlockSize caps the negotiated blksize.
	MaxBlockSize int
	// Scripts renders boot/<mac>.ipxe for iPXE builds without HTTP.
	Scripts Scripter
	// HTTPBase returns provisiond's HTTP base URL for a server address.
	HTTPBase func(local net.IP) string
	// Neighbors maps client IPs to MACs.
	Neighbors *Neighbors
	// Steps receives one step per transfer.
	Steps events.Reporter
	// MaxTransfers bounds the transfers in flight (each holds a socket,
	// a goroutine and the open file until its client acknowledges the
	// last block or times out). Transfers in flight share the CPU, so
	// under a storm each one slows down a little rather than some waiting
	// for others to end: a ROM gives up on a request nobody answers after
	// a few retries (the storm benchmark's clients: 2 s, 5 retries), but
	// waits as long again for each block.
	// Up to thirty-two times as many requests beyond it (at most
	// 4,096) wait for a slot, each at most QueueWait, unanswered (a
	// PXE ROM that is told "busy" gives up on the network boot); the rest
	// are answered "busy" at once and counted. A request repeated from the
	// same address and port while it waits or runs is the client
	// retransmitting: it takes no slot and starts no second transfer.
	// Zero means 4096.
	MaxTransfers int
	// QueueWait is how long a request waits for a transfer slot before it
	// is answered "busy" (20 s when zero: about as long as a PXE ROM
	// keeps asking).
	QueueWait time.Duration
	// Observer is told every request's result (nil: nobody).
	Observer Observer
	// Timeout is how long a transfer waits for each acknowledgement (5
	// retries); zero means 5 s.
	Timeout time.Duration
	// Log is the logger.
	Log *slog.Logger
}

// defaultMaxTransfers is the transfers in flight when TFTPConfig leaves
// MaxTransfers zero: a storm of 5,000 lock-step transfers of undionly.kpxe
// completes on two cores with every one in flight (bench/storm.sh), where
// 256 slots made the last of the queue wait past the ROMs' patience.
const defaultMaxTransfers = 4096

// maxQueued bounds the requests waiting for a transfer slot. A waiting
// request holds a socket and a goroutine already (pin/tftp opens the
// transfer's socket before the handler runs), so the slots and this bound
// together cap what a flood of requests can hold.
const maxQueued = 4096

// Files served over TFTP up to cachedFileMax bytes (the iPXE binaries are
// 70 KB to 1 MB) are kept in memory, cachedTotalMax in all.
const (
	cachedFileMax  = 8 << 20
	cachedTotalMax = 64 << 20
)

// TFTPStats counts TFTP transfers.
type TFTPStats struct {
	Transfers, Failures, Refused, Busy, Bytes uint64
	// Repeats counts requests a client sent again while the first one
	// waited or ran (answered by the first).
	Repeats uint64
	// Active is the number of transfers in flight.
	Active int64
}

// TFTPServer serves files read-only over TFTP. Write requests are refused.
type TFTPServer struct {
	cfg     TFTPConfig
	root    *os.Root
	conns   []*net.UDPConn
	pending sync.Map // "ip:port" -> negotiated options, while the transfer runs
	clients sync.Map // "ip:port" -> *request, while it waits or runs
	files   *fileCache
	slots   chan struct{}
	waiting chan struct{} // requests waiting for a slot
	// repeating bounds the repeated requests waiting for their first.
	repeating chan struct{}

	transfers, failures, refused, busy, repeats, bytes atomic.Uint64
	active                                             atomic.Int64
}

// NewTFTPServer opens the root directory and prepares the server.
func NewTFTPServer(cfg TFTPConfig) (*TFTPServer, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Steps == nil {
		cfg.Steps = events.ReporterFunc(func(events.Step) {})
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = defaultMaxTransfers
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.QueueWait <= 0 {
		cfg.QueueWait = 20 * time.Second
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("TFTP root %s: %w (install Debian's ipxe package or set ipxe_dir)", cfg.Root, err)
	}
	queued := min(32*cfg.MaxTransfers, maxQueued)
	return &TFTPServer{cfg: cfg, root: root, files: newFileCache(cachedFileMax, cachedTotalMax), slots: make(chan struct{}, cfg.MaxTransfers),
		waiting: make(chan struct{}, queued), repeating: make(chan struct{}, 2*queued)}, nil
}

// newServer returns a pin/tftp server for one socket: a tftp.Server holds
// a single connection, so each interface gets its own.
func (s *TFTPServer) newServer() *tftp.Server {
	srv := tftp.NewServer(s.read, nil)
	if s.cfg.MaxBlockSize > 0 {
		srv.SetBlockSize(s.cfg.MaxBlockSize)
	}
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(5)
	srv.SetHook(s)
	return srv
}

// Listen binds the TFTP port on each interface.
func (s *TFTPServer) Listen() error {
	names := []string{""}
	if len(s.cfg.Interfaces) > 0 {
		names = names[:0]
		for _, i := range s.cfg.Interfaces {
			names = append(names, i.Name)
		}
	}
	for _, n := range names {
		c, err := netutil.ListenUDP(n, s.cfg.Port, false)
		if err != nil {
			s.Close()
			return fmt.Errorf("TFTP: %w", err)
		}
		s.conns = append(s.conns, c)
	}
	return nil
}

// Serve serves until ctx ends, then lets running transfers finish.
func (s *TFTPServer) Serve(ctx context.Context) error {
	errc := make(chan error, len(s.conns))
	srvs := make([]*tftp.Server, len(s.conns))
	for i, c := range s.conns {
		srvs[i] = s.newServer()
		go func(srv *tftp.Server, c *net.UDPConn) { errc <- srv.Serve(c) }(srvs[i], c)
	}
	<-ctx.Done()
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Add(1)
		go func(srv *tftp.Server) { defer wg.Done(); srv.Shutdown() }(srv)
	}
	wg.Wait()
	for range s.conns {
		<-errc
	}
	return nil
}

// Close releases the sockets and the root (only needed when Serve is not run).
func (s *TFTPServer) Close() {
	for _, c := range s.conns {
		c.Close()
	}
}

// Queued reports whether requests wait for a transfer slot.
func (s *TFTPServer) Queued() bool { return len(s.waiting) > 0 }

// Stats returns the counters.
func (s *TFTPServer) Stats() TFTPStats {
	return TFTPStats{Transfers: s.transfers.Load(), Failures: s.failures.Load(), Refused: s.refused.Load(), Busy: s.busy.Load(),
		Repeats: s.repeats.Load(), Bytes: s.bytes.Load(), Active: s.active.Load()}
}

// CleanTFTPPath turns a requested file name into a path relative to the TFTP
// root, or refuses it: anything that could leave the root (parent elements,
// NUL or control characters) is an error. Backslashes, which some PXE ROMs
// send, count as separators; leading slashes are dropped.
func CleanTFTPPath(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty file name")
	}
	if len(name) > 255 {
		return "", errors.New("file name too long")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("control character in file name")
		}
	}
	n := strings.ReplaceAll(name, `\`, "/")
	for _, el := range strings.Split(n, "/") {
		if el == ".." {
			return "", errors.New("parent directory in file name")
		}
	}
	n = strings.TrimLeft(n, "/")
	n = path.Clean(n)
	if n == "." || n == "" || !fs.ValidPath(n) {
		return "", errors.New("not a file below the TFTP root")
	}
	return n, nil
}

// scriptMAC returns the MAC of a boot/<mac>.ipxe request, or "".
func scriptMAC(p string) string {
	if !strings.HasPrefix(p, "boot/") || !strings.HasSuffix(p, ".ipxe") {
		return ""
	}
	mac, err := inventory.NormalizeMAC(strings.TrimSuffix(strings.TrimPrefix(p, "boot/"), ".ipxe"))
	if err != nil {
		return ""
	}
	return mac
}

// request is one client's request (address and port) while it waits for a
// slot or runs: started is closed when its transfer starts sending, done
// when it ends.
type request struct {
	file          string
	started, done chan struct{}
	// aborted says the client ended the transfer with an error packet
	// (set before done is closed).
	aborted bool
	repeats atomic.Int32
}

// maxRepeats bounds the repeats of one request that wait for it: a PXE ROM
// asks again every one to four seconds while it waits (iPXE backs off up to
// 10 s); far more from one port is not a ROM retransmitting. All repeats
// waiting at once are bounded by the repeating channel (twice as many as
// requests may wait for a slot).
const maxRepeats = 32

// errRepeat ends a repeated request's transfer. pin/tftp sends it as an
// error packet from this transfer's own port, after the first transfer has
// started: the client took the first port it heard from as the transfer's
// and ignores packets from any other (RFC 1350).
var errRepeat = errors.New("repeated request: answered by the first transfer")

// abortGrace is how long a request from the port of a running transfer
// waits for that transfer to end on the client's abort.
const abortGrace = time.Second

// repeat handles a request for file from a client whose request r is
// already waiting or running, and reports whether to serve it. It is the
// client asking again for the same file unless r ends on the client's own
// error packet: firmware asks for the size, aborts, and asks for the file
// from the same port; that request is served once r has ended. So is a
// request for another file. A repeat waits until r's first packet went out
// (and a moment more, so that packet is the one the client hears first).
func (s *TFTPServer) repeat(r *request, file string) bool {
	if file != r.file {
		return true
	}
	t := time.NewTimer(s.cfg.QueueWait + s.cfg.Timeout)
	defer t.Stop()
	select {
	case <-r.started:
		grace := time.NewTimer(abortGrace)
		defer grace.Stop()
		select {
		case <-r.done:
			if r.aborted {
				return true
			}
		case <-grace.C:
		}
		s.countRepeat()
	default:
		s.countRepeat()
		s.waitRepeat(r, t.C)
	}
	return false
}

func (s *TFTPServer) countRepeat() {
	s.repeats.Add(1)
	s.cfg.Observer.TFTP("repeat", 0, 0)
}

// waitRepeat holds a repeat of r, which has not started, until r's first
// packet went out, unless too many repeats wait already.
func (s *TFTPServer) waitRepeat(r *request, timeout <-chan time.Time) {
	if r.repeats.Add(1) > maxRepeats {
		s.cfg.Observer.Dropped("tftp", "repeats")
		return
	}
	select {
	case s.repeating <- struct{}{}:
		defer func() { <-s.repeating }()
	default:
		s.cfg.Observer.Dropped("tftp", "repeats")
		return
	}
	select {
	case <-r.started:
		time.Sleep(100 * time.Millisecond)
	case <-r.done:
	case <-timeout:
	}
}

// acquire takes a transfer slot: at once if one is free, else after
// waiting up to QueueWait if fewer than thirty-two times MaxTransfers
// requests (at most maxQueued) are waiting already. false means busy.
func (s *TFTPServer) acquire() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	select {
	case s.waiting <- struct{}{}:
		defer func() { <-s.waiting }()
	default:
		return false
	}
	t := time.NewTimer(s.cfg.QueueWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

func (s *TFTPServer) read(filename string, rf io.ReaderFrom) error {
	ot := rf.(tftp.OutgoingTransfer)
	raddr := ot.RemoteAddr()
	var local net.IP
	if rpi, ok := rf.(tftp.RequestPacketInfo); ok {
		local = rpi.LocalIP()
	}
	start := time.Now()
	key := raddr.String()
	req := &request{file: filename, started: make(chan struct{}), done: make(chan struct{})}
	for {
		first, loaded := s.clients.LoadOrStore(key, req)
		if !loaded {
			break
		}
		if !s.repeat(first.(*request), filename) {
			return errRepeat
		}
		// A new request from the port of one that ended: it takes its place.
		s.clients.CompareAndDelete(key, first)
	}
	defer func() { s.clients.CompareAndDelete(key, req); close(req.done) }()
	if !s.acquire() {
		s.busy.Add(1)
		s.cfg.Observer.Dropped("tftp", "max_transfers")
		s.cfg.Observer.TFTP("busy", 0, 0)
		s.cfg.Log.Debug("TFTP request dropped: too many transfers in flight", "file", filename, "client", raddr.IP, "max", s.cfg.MaxTransfers)
		return errors.New("server busy, try again")
	}
	s.active.Add(1)
	defer func() { s.active.Add(-1); <-s.slots }()
	mac := s.cfg.Neighbors.MAC(raddr.IP)
	notFound := false
	emit := func(n int64, err error, opts map[string]string) {
		attrs := map[string]string{
			"bytes":    strconv.FormatInt(n, 10),
			"duration": time.Since(start).Round(time.Millisecond).String(),
			"client":   raddr.IP.String(),
		}
		// PXE ROMs (EDK2 among them) often ask for the size with tsize,
		// then abort (TFTP error 8) and fetch the file in a second
		// request: that is a size query, not a failure.
		if err != nil && n == 0 && opts["tsize"] != "" && strings.Contains(err.Error(), "code=8") {
			attrs["result"] = "size-query"
			err = nil
		} else if err == nil {
			attrs["result"] = "ok"
		} else {
			attrs["result"] = "failed"
		}
		attrs["ok"] = strconv.FormatBool(err == nil)
		if bs := opts["blksize"]; bs != "" {
			attrs["blksize"] = bs
		} else {
			attrs["blksize"] = "512"
		}
		if err != nil {
			attrs["error"] = strings.Map(func(r rune) rune {
				if r < 0x20 || r == 0x7f {
					return -1
				}
				return r
			}, err.Error())
			s.failures.Add(1)
		} else if attrs["result"] == "ok" {
			s.transfers.Add(1)
		}
		s.bytes.Add(uint64(n))
		res := strings.ReplaceAll(attrs["result"], "-", "_")
		if res == "failed" && n == 0 && notFound {
			res = "not_found"
		}
		s.cfg.Observer.TFTP(res, n, time.Since(start))
		s.cfg.Log.Info("TFTP transfer", "mac", mac, "file", filename, "bytes", n, "client", raddr.IP, "err", err)
		if mac != "" {
			s.cfg.Steps.Report(events.Step{Type: events.TFTPTransfer, MAC: mac, File: filename, OK: attrs["result"] == "ok", Attrs: attrs})
		}
	}
	p, err := CleanTFTPPath(filename)
	if err != nil {
		s.refused.Add(1)
		s.cfg.Observer.TFTP("refused", 0, 0)
		s.cfg.Log.Warn("TFTP request refused", "file", filename, "client", raddr.IP, "reason", err)
		return fmt.Errorf("refused: %v", err)
	}
	var r io.Reader
	if smac := scriptMAC(p); smac != "" && s.cfg.Scripts != nil {
		base := ""
		if s.cfg.HTTPBase != nil {
			base = s.cfg.HTTPBase(local)
		}
		src, _ := netip.AddrFromSlice(raddr.IP)
		rep, err := s.cfg.Scripts.Script(context.Background(), ScriptRequest{MAC: smac, BaseURL: base, Source: src.Unmap()})
		body := rep.Body
		if err != nil {
			emit(0, err, nil)
			return errors.New("no script for this machine")
		}
		if mac == "" {
			mac = smac
		}
		ot.SetSize(int64(len(body)))
		r = bytes.NewReader(body)
	} else {
		var f *os.File
		var err error
		opened := p // below the root; the Files' paths are absolute
		if real, ok := s.cfg.Files[p]; ok {
			f, err = os.Open(real)
			opened = real
		} else {
			f, err = s.root.Open(p)
		}
		if err != nil {
			s.cfg.Log.Info("TFTP file not found", "file", filename, "client", raddr.IP, "err", err)
			notFound = true
			emit(0, err, nil)
			return errors.New("file not found")
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			notFound = true
			emit(0, errors.New("not a regular file"), nil)
			return errors.New("file not found")
		}
		if r, err = s.files.reader(opened, f, st); err != nil {
			s.cfg.Log.Warn("TFTP file unreadable", "file", filename, "err", err)
			emit(0, err, nil)
			return errors.New("file unreadable")
		}
	}
	// The hooks below fill in the negotiated options of this transfer
	// only while it runs: requests refused before it starts leave nothing
	// behind (the map holds at most the transfers in flight).
	s.pending.Store(key, (map[string]string)(nil))
	close(req.started)
	n, err := rf.ReadFrom(r)
	// pin/tftp reports an error packet from the client as "code=N".
	req.aborted = err != nil && strings.Contains(err.Error(), "code=")
	opts, _ := s.pending.LoadAndDelete(key)
	om, _ := opts.(map[string]string)
	emit(n, err, om)
	return err
}

// OnSuccess implements tftp.Hook: it keeps the negotiated options for the
// transfer's event.
func (s *TFTPServer) OnSuccess(st tftp.TransferStats) { s.keepOpts(st) }

// OnFailure implements tftp.Hook.
func (s *TFTPServer) OnFailure(st tftp.TransferStats, _ error) { s.keepOpts(st) }

func (s *TFTPServer) keepOpts(st tftp.TransferStats) {
	if st.RemoteAddr == nil {
		return
	}
	key := (&net.UDPAddr{IP: st.RemoteAddr, Port: st.Tid}).String()
	if _, running := s.pending.Load(key); !running {
		return // refused, missing or busy before any transfer
	}
	m := map[string]string{}
	for k, v := range st.Opts {
		m[k] = v
	}
	s.pending.Store(key, m)
}

// pendingLen is how many transfers' options are held (tests).
func (s *TFTPServer) pendingLen() int {
	n := 0
	s.pending.Range(func(any, any) bool { n++; return true })
	return n
}
