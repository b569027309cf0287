package pxe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/netutil"
)

// HTTPConfig configures the HTTP boot endpoints.
type HTTPConfig struct {
	// AssetsDir is served under /assets/ (kernels, initrds).
	AssetsDir string
	// IPXEDir is served under /ipxe/ (for UEFI HTTP boot clients).
	IPXEDir string
	// IPXEFiles are served by name under /ipxe/ from the paths given
	// (the configured binaries, symbolic links resolved).
	IPXEFiles map[string]string
	// Scripts renders scripts.
	Scripts Scripter
	// Neighbors maps client IPs to MACs for asset requests without ?mac=.
	Neighbors *Neighbors
	// Steps receives the timeline steps (scripts, files, callbacks).
	Steps events.Reporter
	// Observer is told every request's kind, status, size and duration
	// (nil: nobody).
	Observer Observer
	// RatePerSource bounds the requests one client address makes per
	// second, with bursts of four times as many; more are answered 429
	// and counted. Zero means no bound.
	RatePerSource float64
	// MaxAssetStreams bounds the assets sent at once; more requests wait
	// for a stream in order (until their client goes). Zero means no
	// bound. In a storm this is the back-pressure that leaves the cores
	// to the firmware's TFTP transfers, which give up, while iPXE's HTTP
	// downloads wait their turn.
	MaxAssetStreams int
	// Yield reports whether new asset streams should wait: the TFTP
	// server has requests waiting for a slot (nil: never). Firmware gives
	// up on a TFTP transfer that does not start; iPXE waits for HTTP.
	Yield func() bool
	// Log is the logger.
	Log *slog.Logger
}

// HTTPStats counts what the boot endpoints served.
type HTTPStats struct {
	Scripts, ScriptErrors, Assets, AssetBytes, Callbacks, RefusedCallbacks, BadRequests uint64
	// Yielded counts asset requests that waited for TFTP's queue.
	Yielded uint64
}

// HTTPBoot serves iPXE scripts, boot assets and the booted callback.
type HTTPBoot struct {
	cfg     HTTPConfig
	assets  *os.Root
	ipxe    *os.Root
	limiter *sourceLimiter
	streams chan struct{} // asset streams being sent (nil: no bound)
	// maxYield bounds an asset request's wait for TFTP (maxYield).
	maxYield time.Duration
	yielded  atomic.Uint64

	scripts, scriptErrors, assetsServed, assetBytes, callbacks, refusedCallbacks, badRequests atomic.Uint64
}

// NewHTTPBoot opens the served directories. A missing assets directory is
// created empty.
func NewHTTPBoot(cfg HTTPConfig) (*HTTPBoot, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Steps == nil {
		cfg.Steps = events.ReporterFunc(func(events.Step) {})
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	h := &HTTPBoot{cfg: cfg, limiter: newSourceLimiter(cfg.RatePerSource, int(4*cfg.RatePerSource)), maxYield: maxYield}
	if cfg.MaxAssetStreams > 0 {
		h.streams = make(chan struct{}, cfg.MaxAssetStreams)
	}
	if cfg.AssetsDir != "" {
		if err := os.MkdirAll(cfg.AssetsDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating assets directory %s: %w", cfg.AssetsDir, err)
		}
		r, err := os.OpenRoot(cfg.AssetsDir)
		if err != nil {
			return nil, fmt.Errorf("assets directory %s: %w", cfg.AssetsDir, err)
		}
		h.assets = r
	}
	if cfg.IPXEDir != "" {
		r, err := os.OpenRoot(cfg.IPXEDir)
		if err != nil {
			return nil, fmt.Errorf("iPXE directory %s: %w (install Debian's ipxe package or set ipxe_dir)", cfg.IPXEDir, err)
		}
		h.ipxe = r
	}
	return h, nil
}

// Register adds the boot endpoints to mux.
func (h *HTTPBoot) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /boot/{file}", h.instrument("first_stage", h.firstStage))
	mux.HandleFunc("GET /boot/{mac}/script", h.instrument("script", h.script))
	mux.HandleFunc("POST /boot/{mac}/booted", h.instrument("callback", h.booted))
	mux.HandleFunc("POST /boot/{mac}/facts", h.instrument("facts", h.facts))
	mux.HandleFunc("GET /boot/{mac}/overlay.cpio", h.instrument("overlay", h.machineFile("overlay.cpio", "application/octet-stream", h.cfg.Scripts.Overlay)))
	mux.HandleFunc("GET /boot/{mac}/config", h.instrument("config", h.machineFile("config", "application/yaml", h.cfg.Scripts.Config)))
	mux.HandleFunc("GET /assets/{path...}", h.instrument("asset", h.asset))
	mux.HandleFunc("GET /ipxe/{path...}", h.instrument("ipxe", h.ipxeFile))
}

// instrument reports each request's status, size and duration to the
// Observer.
func (h *HTTPBoot) instrument(kind string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if !h.limiter.allow(netutil.SourceAddr(r), start) {
			h.cfg.Observer.Dropped("http", "rate_per_source")
			w.Header().Set("Retry-After", "1")
			http.Error(w, "provisiond: too many requests from this address", http.StatusTooManyRequests)
			return
		}
		// A client that stops reading gives up its connection: scripts
		// and callbacks get a short deadline, files one that grows with
		// their size (assetDeadline).
		http.NewResponseController(w).SetWriteDeadline(start.Add(smallWriteTimeout))
		cw := &countingWriter{ResponseWriter: w}
		next(cw, r)
		status := cw.status
		if status == 0 {
			status = http.StatusOK
		}
		h.cfg.Observer.HTTP(kind, status, cw.n, time.Since(start))
	}
}

// smallWriteTimeout bounds writing a script, an overlay or an answer.
const smallWriteTimeout = 30 * time.Second

// minAssetRate is the slowest a file may be sent before the client loses
// its connection (old NICs at 100 Mbit/s do 20 times better).
const minAssetRate = 512 << 10 // bytes per second

// assetDeadline gives a file of size bytes time to move at minAssetRate.
func assetDeadline(w http.ResponseWriter, size int64) {
	d := smallWriteTimeout + time.Duration(size/minAssetRate)*time.Second
	http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}

// Stats returns the counters.
func (h *HTTPBoot) Stats() HTTPStats {
	return HTTPStats{
		Scripts: h.scripts.Load(), ScriptErrors: h.scriptErrors.Load(), Assets: h.assetsServed.Load(),
		AssetBytes: h.assetBytes.Load(), Callbacks: h.callbacks.Load(), RefusedCallbacks: h.refusedCallbacks.Load(), BadRequests: h.badRequests.Load(),
		Yielded: h.yielded.Load(),
	}
}

var profileNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

var hostRE = regexp.MustCompile(`^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)

// baseURL is provisiond's URL as this client reached it.
func baseURL(r *http.Request) (string, error) {
	if !hostRE.MatchString(r.Host) {
		return "", fmt.Errorf("bad Host header %q", r.Host)
	}
	return "http://" + r.Host, nil
}

func (h *HTTPBoot) bad(w http.ResponseWriter, r *http.Request, msg string) {
	h.badRequests.Add(1)
	h.cfg.Log.Debug("bad boot request", "path", r.URL.Path, "from", r.RemoteAddr, "reason", msg)
	http.Error(w, msg, http.StatusBadRequest)
}

// macAndBase parses the MAC in a boot URL and the base URL the client used;
// on bad input it answers 400 and returns false.
func (h *HTTPBoot) macAndBase(w http.ResponseWriter, r *http.Request, rawMAC string) (string, string, bool) {
	mac, err := inventory.NormalizeMAC(rawMAC)
	if err != nil {
		h.bad(w, r, "not a MAC address")
		return "", "", false
	}
	base, err := baseURL(r)
	if err != nil {
		h.bad(w, r, err.Error())
		return "", "", false
	}
	return mac, base, true
}

func scriptReply(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

func (h *HTTPBoot) firstStage(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	if !strings.HasSuffix(file, ".ipxe") {
		http.NotFound(w, r)
		return
	}
	mac, base, ok := h.macAndBase(w, r, strings.TrimSuffix(file, ".ipxe"))
	if !ok {
		return
	}
	body, err := h.cfg.Scripts.FirstStage(r.Context(), mac, base)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	scriptReply(w, body)
}

// cleanFact keeps a reported fact only when it is short printable text.
func cleanFact(v string) string {
	v = strings.TrimSpace(v)
	if len(v) > 128 {
		return ""
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return ""
		}
	}
	return v
}

func (h *HTTPBoot) script(w http.ResponseWriter, r *http.Request) {
	mac, base, ok := h.macAndBase(w, r, r.PathValue("mac"))
	if !ok {
		return
	}
	// iPXE's uristring leaves '+' as it is, so the query is decoded
	// with path rules ('+' stays '+'), not form rules.
	q := map[string]string{}
	for _, kv := range strings.Split(r.URL.RawQuery, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if uv, err := url.PathUnescape(v); err == nil {
			q[k] = uv
		}
	}
	h.cfg.Log.Debug("boot script requested", "mac", mac, "profile", q["profile"])
	facts := map[string]string{}
	for _, f := range boot.Facts() {
		if v := cleanFact(q[f.Param]); v != "" {
			facts[f.Param] = v
		}
	}
	// Firmware without a UUID reports all zeros: that identifies nothing.
	if strings.Trim(facts["uuid"], "0-") == "" {
		delete(facts, "uuid")
	}
	// The address is not learned here: anyone may name any MAC in a
	// script URL. DHCP and the kernel's neighbour table say who is who.
	src := netutil.SourceAddr(r)
	if facts["ip"] == "" && src.IsValid() {
		facts["ip"] = src.String()
	}
	chosen := q["profile"]
	if chosen != "" && !profileNameRE.MatchString(chosen) {
		h.bad(w, r, "bad profile name")
		return
	}
	rep, err := h.cfg.Scripts.Script(r.Context(), ScriptRequest{MAC: mac, BaseURL: base, Facts: facts, Profile: chosen, Source: src})
	prof := rep.Profile
	if err != nil {
		h.scriptErrors.Add(1)
		h.cfg.Log.Warn("boot script failed", "mac", mac, "profile", prof, "err", err)
		h.cfg.Steps.Report(events.Step{Type: events.ScriptError, MAC: mac, Profile: prof, Attrs: map[string]string{"error": err.Error()}, Facts: facts})
		http.Error(w, "provisiond: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h.scripts.Add(1)
	h.cfg.Log.Info("boot script served", "mac", mac, "profile", prof, "record_facts", rep.RecordFacts)
	step := events.Step{Type: events.Script, MAC: mac, Profile: prof, OK: true, Attrs: map[string]string{"client": src.String()}}
	// The asset tag is a key the boot guard checks: never recorded.
	delete(facts, "asset")
	if rep.RecordFacts {
		// Only the machine's own boot may fill in its hardware facts.
		step.Facts = facts
	} else {
		step.Attrs["bound"] = "false" // not the machine's own boot
	}
	if rep.RecordStep {
		h.cfg.Steps.Report(step)
	}
	scriptReply(w, rep.Body)
}

// machineFile serves a file rendered for one machine's boot (its overlay
// archive, its config document). Like every boot endpoint it cannot
// authenticate the firmware; the Scripter serves only machines in the
// inventory, within their own boot, with the nonce their script carried.
func (h *HTTPBoot) machineFile(file, contentType string, render func(context.Context, ScriptRequest) ([]byte, string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mac, base, ok := h.macAndBase(w, r, r.PathValue("mac"))
		if !ok {
			return
		}
		q := r.URL.Query()
		chosen := q.Get("profile")
		if chosen != "" && !profileNameRE.MatchString(chosen) {
			h.bad(w, r, "bad profile name")
			return
		}
		start := time.Now()
		body, prof, err := render(r.Context(), ScriptRequest{MAC: mac, BaseURL: base, Profile: chosen, Source: netutil.SourceAddr(r), Nonce: q.Get("nonce")})
		if err != nil {
			// Unknown, refused and failed look the same from outside: no
			// oracle for which MACs are machines.
			if !errors.Is(err, ErrRefused) {
				h.cfg.Log.Warn(file+" failed", "mac", mac, "profile", prof, "err", err)
				h.cfg.Steps.Report(events.Step{Type: events.ScriptError, MAC: mac, Profile: prof, File: file, Attrs: map[string]string{"error": err.Error()}})
			}
			notFound(w)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
		h.cfg.Steps.Report(events.Step{Type: events.Asset, MAC: mac, File: file, Profile: prof, OK: true, Attrs: map[string]string{
			"bytes": strconv.Itoa(len(body)), "size": strconv.Itoa(len(body)), "status": "200",
			"duration": time.Since(start).Round(time.Millisecond).String(),
		}})
	}
}

func (h *HTTPBoot) booted(w http.ResponseWriter, r *http.Request) {
	mac, err := inventory.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		h.bad(w, r, "not a MAC address")
		return
	}
	src := netutil.SourceAddr(r)
	attrs := map[string]string{"client": src.String()}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err == nil {
		if v := cleanFact(r.PostForm.Get("status")); v != "" {
			attrs["status"] = v
		}
	}
	if err := h.cfg.Scripts.Callback(r.Context(), ScriptRequest{MAC: mac, Source: src, Nonce: r.URL.Query().Get("nonce")}); err != nil {
		h.refusedCallbacks.Add(1)
		h.cfg.Log.Debug("callback refused", "mac", mac, "client", src, "err", err)
		notFound(w)
		return
	}
	h.callbacks.Add(1)
	h.cfg.Log.Info("machine reported booted", "mac", mac)
	h.cfg.Steps.Report(events.Step{Type: events.Booted, MAC: mac, OK: true, Attrs: attrs})
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// maxReport bounds a commissioning report (a machine with many disks and
// DIMMs stays far below it).
const maxReport = 1 << 20

// facts takes a commissioning machine's report.
func (h *HTTPBoot) facts(w http.ResponseWriter, r *http.Request) {
	mac, err := inventory.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		h.bad(w, r, "not a MAC address")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReport))
	if err != nil {
		h.bad(w, r, "report too large or cut short")
		return
	}
	src := netutil.SourceAddr(r)
	answer, err := h.cfg.Scripts.Facts(r.Context(), ScriptRequest{MAC: mac, Source: src, Nonce: r.URL.Query().Get("nonce")}, body)
	switch {
	case errors.Is(err, ErrBadReport):
		h.bad(w, r, err.Error())
		return
	case err != nil:
		h.refusedCallbacks.Add(1)
		h.cfg.Log.Debug("facts report refused", "mac", mac, "client", src, "err", err)
		notFound(w)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(answer)
}

// notFound is the one answer for unknown machines and refused requests.
func notFound(w http.ResponseWriter) {
	http.Error(w, "provisiond: not found", http.StatusNotFound)
}

func remoteIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return nil
	}
	return net.ParseIP(host)
}

// countingWriter counts body bytes and remembers the status.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// ReadFrom hands the copy to the ResponseWriter's own ReadFrom, as
// http.ServeContent expects: net/http then sends a file with sendfile(2).
func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	}
	c.n += n
	return n, err
}

// Unwrap gives http.ResponseController the ResponseWriter underneath.
func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// openIn opens a request path below root, refusing anything that leaves it.
func openIn(root *os.Root, p string) (*os.File, fs.FileInfo, error) {
	if root == nil || p == "" || !fs.ValidPath(p) || strings.Contains(p, `\`) {
		return nil, nil, fs.ErrNotExist
	}
	// Hidden files and directories are never served: downloads in
	// progress live in .partial.
	for _, el := range strings.Split(p, "/") {
		if strings.HasPrefix(el, ".") {
			return nil, nil, fs.ErrNotExist
		}
	}
	f, err := root.Open(p)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, fs.ErrNotExist
	}
	return f, st, nil
}

func (h *HTTPBoot) asset(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	start := time.Now()
	mac := h.attribute(r)
	f, st, err := openIn(h.assets, p)
	if err != nil {
		h.cfg.Log.Info("asset not found", "file", p, "mac", mac, "err", err)
		if mac != "" {
			h.cfg.Steps.Report(events.Step{Type: events.Asset, MAC: mac, File: p, Attrs: map[string]string{"status": "404", "error": "not found"}})
		}
		status := http.StatusNotFound
		if !errors.Is(err, fs.ErrNotExist) {
			status = http.StatusForbidden
		}
		http.Error(w, "asset not found", status)
		return
	}
	defer f.Close()
	if sizeQuery(w, r, f, st) {
		return
	}
	if !h.yield(r.Context()) {
		return
	}
	if h.streams != nil {
		select {
		case h.streams <- struct{}{}:
			defer func() { <-h.streams }()
		case <-r.Context().Done():
			return // the client went while it waited
		}
	}
	assetDeadline(w, st.Size())
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, st.Name(), st.ModTime(), f)
	h.assetsServed.Add(1)
	h.assetBytes.Add(uint64(cw.n))
	if mac != "" {
		attrs := map[string]string{
			"bytes": strconv.FormatInt(cw.n, 10), "size": strconv.FormatInt(st.Size(), 10),
			"status": strconv.Itoa(cw.status), "duration": time.Since(start).Round(time.Millisecond).String(),
		}
		if rg := r.Header.Get("Range"); rg != "" {
			attrs["range"] = rg
		}
		h.cfg.Steps.Report(events.Step{Type: events.Asset, MAC: mac, File: p, OK: whole(cw, st), Attrs: attrs})
	}
}

// yieldPoll is how often a waiting asset request asks whether TFTP still
// has requests waiting; maxYield is the longest it waits (a flood of
// TFTP requests cannot hold the downloads back for longer).
const (
	yieldPoll = 20 * time.Millisecond
	maxYield  = 30 * time.Second
)

// yield waits while Yield says to, at most h.maxYield (false: the client
// went meanwhile).
func (h *HTTPBoot) yield(ctx context.Context) bool {
	if h.cfg.Yield == nil || !h.cfg.Yield() {
		return true
	}
	h.yielded.Add(1)
	deadline := time.Now().Add(h.maxYield)
	for h.cfg.Yield() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(yieldPoll):
		}
	}
	return true
}

// attribute names the machine whose timeline a file request goes on: the
// kernel's neighbour entry for its source (what the peer really is), else
// the MAC the URL names (a routed client), else what DHCP taught. Anyone
// may put ?mac= in a URL: it never outweighs the neighbour table, so a
// stranger's downloads land on its own record, not on a machine's.
func (h *HTTPBoot) attribute(r *http.Request) string {
	if mac, ok := h.cfg.Neighbors.Kernel(netutil.SourceAddr(r)); ok {
		return mac
	}
	if m := r.URL.Query().Get("mac"); m != "" {
		if mac, err := inventory.NormalizeMAC(m); err == nil {
			return mac
		}
	}
	return h.cfg.Neighbors.MAC(remoteIP(r))
}

func (h *HTTPBoot) ipxeFile(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	var f *os.File
	var st fs.FileInfo
	var err error
	if real, ok := h.cfg.IPXEFiles[p]; ok {
		if f, err = os.Open(real); err == nil {
			st, err = f.Stat()
		}
	} else {
		f, st, err = openIn(h.ipxe, p)
	}
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	if sizeQuery(w, r, f, st) {
		return
	}
	start := time.Now()
	assetDeadline(w, st.Size())
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, st.Name(), st.ModTime(), f)
	if mac := h.attribute(r); mac != "" {
		h.cfg.Steps.Report(events.Step{Type: events.Asset, MAC: mac, File: p, OK: whole(cw, st), Attrs: map[string]string{
			"bytes": strconv.FormatInt(cw.n, 10), "size": strconv.FormatInt(st.Size(), 10),
			"status": strconv.Itoa(cw.status), "duration": time.Since(start).Round(time.Millisecond).String(),
		}})
	}
}

// sizeQuery answers a HEAD request (UEFI HTTP boot asks for the size of
// the file it then downloads) and reports whether it did: a size query is
// no download, for the timeline or the counters.
func sizeQuery(w http.ResponseWriter, r *http.Request, f *os.File, st fs.FileInfo) bool {
	if r.Method != http.MethodHead {
		return false
	}
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
	return true
}

// whole reports whether a file went out in full: status 200, every byte.
func whole(cw *countingWriter, st fs.FileInfo) bool {
	return cw.status == http.StatusOK && cw.n == st.Size()
}
