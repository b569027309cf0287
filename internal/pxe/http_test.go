package pxe

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// An asset that disappeared answers 404 and says so on the machine's
// timeline; files still being downloaded (.partial) are never served.
func TestAssetGoneAndPartialNotServed(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, ".partial", "talos"), 0o755)
	os.WriteFile(filepath.Join(dir, ".partial", "talos", "kernel"), []byte("half"), 0o644)
	os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("kernel"), 0o644)
	sink := &sinkRec{}
	mux := bootMux(t, dir, sink)
	get := func(target string) int {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
		return w.Code
	}
	if code := get("/assets/vmlinuz?mac=52-54-00-12-34-56"); code != 200 {
		t.Fatalf("vmlinuz: %d", code)
	}
	os.Remove(filepath.Join(dir, "vmlinuz"))
	if code := get("/assets/vmlinuz?mac=52-54-00-12-34-56"); code != 404 {
		t.Fatalf("vanished vmlinuz: %d", code)
	}
	for _, p := range []string{"/assets/.partial/talos/kernel", "/assets/.partial/talos/kernel?mac=52-54-00-12-34-56", "/assets/%2epartial/talos/kernel"} {
		if code := get(p); code == 200 {
			t.Errorf("%s served", p)
		}
	}
	var last events.Event
	for _, ev := range sink.evs {
		if ev.Type == events.Asset && ev.Attrs["file"] == "vmlinuz" {
			last = ev
		}
	}
	if last.MAC != "52:54:00:12:34:56" || last.Attrs["status"] != "404" || last.Attrs["error"] != "not found" {
		t.Fatalf("timeline entry for the vanished asset: %+v", last)
	}
}

// A HEAD request (UEFI HTTP boot's size query before its download) gets
// the size and is neither a step on the timeline nor a served asset; the
// GET that follows is.
func TestHeadIsASizeQuery(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "snponly.efi"), make([]byte, 1234), 0o644)
	sink := &sinkRec{}
	mux := bootMux(t, dir, sink)
	for _, path := range []string{"/ipxe/snponly.efi?mac=52-54-00-12-34-56", "/assets/snponly.efi?mac=52-54-00-12-34-56"} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("HEAD", path, nil))
		if w.Code != 200 || w.Header().Get("Content-Length") != "1234" || w.Body.Len() != 0 {
			t.Errorf("HEAD %s: %d, length %q, %d body bytes", path, w.Code, w.Header().Get("Content-Length"), w.Body.Len())
		}
	}
	if len(sink.evs) != 0 {
		t.Errorf("HEAD requests made timeline steps: %+v", sink.evs)
	}
	for _, path := range []string{"/ipxe/snponly.efi?mac=52-54-00-12-34-56", "/assets/snponly.efi?mac=52-54-00-12-34-56"} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	}
	if len(sink.evs) != 2 || sink.evs[0].Attrs["bytes"] != "1234" || sink.evs[1].Attrs["bytes"] != "1234" {
		t.Errorf("GETs: steps %+v", sink.evs)
	}
}

// bootMux serves the boot endpoints with dir as both the assets and the
// iPXE directory.
func bootMux(tb testing.TB, dir string, sink events.Reporter) *http.ServeMux {
	tb.Helper()
	h, err := NewHTTPBoot(HTTPConfig{AssetsDir: dir, IPXEDir: dir, Scripts: fakeScripts{}, Neighbors: NewNeighbors(""), Steps: sink})
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	return mux
}

// readFromRecorder is a ResponseWriter that, like net/http's, offers ReadFrom.
type readFromRecorder struct {
	*httptest.ResponseRecorder
	readFrom bool
}

func (r *readFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.readFrom = true
	return io.Copy(r.ResponseRecorder, src)
}

// Files go to the connection's ReadFrom (sendfile) through the counting
// writer, and are still counted.
func TestCountingWriterKeepsReadFrom(t *testing.T) {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	rec := &readFromRecorder{ResponseRecorder: httptest.NewRecorder()}
	outer := &countingWriter{ResponseWriter: rec}
	inner := &countingWriter{ResponseWriter: outer}
	http.ServeContent(inner, httptest.NewRequest("GET", "/assets/x", nil), "x", st.ModTime(), f)
	if !rec.readFrom {
		t.Error("http.ServeContent did not reach the ResponseWriter's ReadFrom: no sendfile")
	}
	if inner.n != st.Size() || outer.n != st.Size() || inner.status != 200 {
		t.Errorf("counted %d/%d bytes, status %d; want %d, 200", inner.n, outer.n, inner.status, st.Size())
	}
}

// One address cannot take the boot endpoints for itself: past its rate
// (with bursts of four times as many) it is answered 429 and counted,
// while another address is served.
func TestRatePerSource(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	obs := &dropCounter{}
	h, err := NewHTTPBoot(HTTPConfig{AssetsDir: dir, Scripts: fakeScripts{}, Neighbors: NewNeighbors(""), Observer: obs, RatePerSource: 5})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	get := func(from string) int {
		r := httptest.NewRequest("GET", "/assets/f", nil)
		r.RemoteAddr = from + ":5000"
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w.Code
	}
	codes := map[int]int{}
	for range 40 {
		codes[get("192.0.2.66")]++
	}
	if codes[200] < 20 || codes[200] > 22 || codes[429] < 18 {
		t.Errorf("40 requests at once from one address: %v, want the burst of 20 (and a token or two) served, the rest 429", codes)
	}
	if obs.n.Load() != int64(codes[429]) {
		t.Errorf("%d dropped counted, %d answered 429", obs.n.Load(), codes[429])
	}
	if code := get("192.0.2.50"); code != 200 {
		t.Errorf("another address: %d", code)
	}
}

type dropCounter struct {
	nopObserver
	n atomic.Int64
}

func (d *dropCounter) Dropped(server, reason string) {
	if server == "http" && reason == "rate_per_source" {
		d.n.Add(1)
	}
}

// assetServer serves dir's assets with cfg over a real connection (sendfile
// and backpressure as in the daemon).
func assetServer(t *testing.T, dir string, cfg HTTPConfig) (*HTTPBoot, string) {
	t.Helper()
	cfg.AssetsDir, cfg.IPXEDir, cfg.Scripts, cfg.Neighbors = dir, dir, fakeScripts{}, NewNeighbors("")
	h, err := NewHTTPBoot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return h, srv.URL
}

// get starts a download and returns once its headers came (or it failed).
func get(url string) <-chan *http.Response {
	c := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			resp = nil
		}
		c <- resp
	}()
	return c
}

// While TFTP has requests waiting for a slot, new downloads wait: the
// firmware gives up on a TFTP transfer that does not start, iPXE waits for
// its HTTP answer. They go on when the queue is empty, or after maxYield.
func TestAssetsYieldToTFTP(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vmlinuz"), []byte("kernel"), 0o644)
	var queued atomic.Bool
	queued.Store(true)
	h, url := assetServer(t, dir, HTTPConfig{Yield: queued.Load})
	c := get(url + "/assets/vmlinuz")
	select {
	case <-c:
		t.Fatal("a download went out while TFTP had requests waiting")
	case <-time.After(300 * time.Millisecond):
	}
	queued.Store(false)
	if resp := <-c; resp == nil || resp.StatusCode != 200 {
		t.Fatalf("after the TFTP queue emptied: %v", resp)
	}
	// A queue that never empties holds a download back maxYield at most.
	queued.Store(true)
	h.maxYield = 200 * time.Millisecond
	if resp := <-get(url + "/assets/vmlinuz"); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("past maxYield: %v", resp)
	}
	if st := h.Stats(); st.Yielded != 2 || st.Assets != 2 {
		t.Errorf("stats %+v", st)
	}
}

// With one asset stream, a second download waits until the first is sent.
func TestAssetStreamsBounded(t *testing.T) {
	dir := t.TempDir()
	f, _ := os.Create(filepath.Join(dir, "initrd.img"))
	f.Truncate(64 << 20) // more than the sockets hold: the first send blocks
	f.Close()
	_, url := assetServer(t, dir, HTTPConfig{MaxAssetStreams: 1})
	first := <-get(url + "/assets/initrd.img")
	if first == nil {
		t.Fatal("first download failed")
	}
	first.Body.Read(make([]byte, 1)) // then stalls, holding the stream
	second := get(url + "/assets/initrd.img")
	select {
	case <-second:
		t.Fatal("a second stream went out past max_asset_streams 1")
	case <-time.After(300 * time.Millisecond):
	}
	first.Body.Close()
	if resp := <-second; resp == nil || resp.StatusCode != 200 {
		t.Fatalf("second download after the first: %v", resp)
	} else {
		resp.Body.Close()
	}
}
