package pxe

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

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
