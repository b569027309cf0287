package assets

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// flakyServer serves payload with Range support; the first full request is
// cut off after cut bytes.
func flakyServer(t *testing.T, payload []byte, cut int) (*httptest.Server, *atomic.Int32, *atomic.Int32) {
	var requests, ranged atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Range") != "" {
			ranged.Add(1)
			http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(payload))
			return
		}
		if n == 1 && cut > 0 {
			w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
			w.WriteHeader(http.StatusOK)
			w.Write(payload[:cut])
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		http.ServeContent(w, r, "f", time.Time{}, bytes.NewReader(payload))
	}))
	t.Cleanup(srv.Close)
	return srv, &requests, &ranged
}

func TestFetchResumesAndVerifies(t *testing.T) {
	payload := make([]byte, 3<<20)
	rand.Read(payload)
	srv, _, ranged := flakyServer(t, payload, 1<<20)
	root := t.TempDir()
	c := New(root, nil, nil)
	defer c.Close()
	entry := "talos/v1.9.5/abc"
	if _, ok := c.Complete(entry); ok {
		t.Fatal("empty cache says complete")
	}
	prepared := false
	j := c.Fetch(entry, []Source{{Name: "kernel-amd64", URL: srv.URL + "/k"}, {Name: "cmdline-metal-amd64", URL: srv.URL + "/c"}},
		map[string]string{"kind": "talos"}, func(context.Context) error { prepared = true; return nil })
	if again := c.Fetch(entry, nil, nil, nil); again != j {
		t.Error("a second fetch of the same entry started another download")
	}
	sub := j.Subscribe()
	var last Progress
	for p := range sub {
		last = p
	}
	if err := j.Wait(context.Background()); err != nil || !last.Done || last.Error != "" {
		t.Fatalf("fetch: %v %+v", err, last)
	}
	if !prepared {
		t.Error("prepare did not run")
	}
	if ranged.Load() == 0 {
		t.Error("the broken download was not resumed with Range")
	}
	m, ok := c.Complete(entry)
	if !ok {
		t.Fatal("entry not complete")
	}
	sum := sha256.Sum256(payload)
	if fi := m.Files["kernel-amd64"]; fi.Size != int64(len(payload)) || fi.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("manifest %+v", fi)
	}
	got, _ := os.ReadFile(filepath.Join(root, "talos/v1.9.5/abc/kernel-amd64"))
	if !bytes.Equal(got, payload) {
		t.Error("cached file differs from the source")
	}
	if entries, _ := os.ReadDir(filepath.Join(root, PartialDir, "talos/v1.9.5/abc")); len(entries) != 0 {
		t.Errorf("partial files left: %v", entries)
	}
	if es, _ := c.Entries("talos"); len(es) != 1 || es[0].Meta["kind"] != "talos" {
		t.Errorf("entries %+v", es)
	}

	// A damaged cached file is found by its checksum in a new process.
	os.WriteFile(filepath.Join(root, "talos/v1.9.5/abc/kernel-amd64"), bytes.Repeat([]byte{0}, len(payload)), 0o644)
	c2 := New(root, nil, nil)
	if _, ok := c2.Complete(entry); ok {
		t.Error("a corrupted file passed the checksum")
	}
}

func TestFetchFailsClearly(t *testing.T) {
	srv, _, _ := flakyServer(t, []byte("x"), 0)
	c := New(t.TempDir(), nil, nil)
	defer c.Close()
	j := c.Fetch("e", []Source{{Name: "f", URL: srv.URL + "/missing"}}, nil, nil)
	err := j.Wait(context.Background())
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "downloading f") {
		t.Fatalf("404: %v", err)
	}
	if _, ferr := c.LastFailure("e"); ferr == nil {
		t.Error("failure not remembered")
	}
	if _, ok := c.Complete("e"); ok {
		t.Error("failed entry complete")
	}
	j = c.Fetch("p", []Source{{Name: "f", URL: srv.URL + "/f"}}, nil, func(context.Context) error { return os.ErrPermission })
	if err := j.Wait(context.Background()); err == nil {
		t.Error("a failing prepare step did not fail the fetch")
	}
}

func TestContentRange(t *testing.T) {
	if s, n, ok := contentRange("bytes 100-199/1000"); !ok || s != 100 || n != 1000 {
		t.Errorf("%d %d %v", s, n, ok)
	}
	for _, bad := range []string{"", "bytes */1000", "items 1-2/3", "bytes 1-2"} {
		if _, _, ok := contentRange(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// A full disk while caching: the download fails at once with an error that
// says the disk is full and what to do, nothing is retried, the partial
// file is gone and no manifest says the entry is complete. Needs root to
// mount a 1 MiB tmpfs.
func TestFetchDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	srv, requests, _ := flakyServer(t, bytes.Repeat([]byte("k"), 4<<20), 0)
	c := New(dir, nil, nil)
	defer c.Close()
	err := c.Fetch("talos/v1", []Source{{Name: "kernel", URL: srv.URL + "/f"}}, nil, nil).Wait(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), "is full; free space there") {
		t.Fatalf("full disk: %v", err)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("a full disk was retried: %d requests", n)
	}
	if _, ok := c.Complete("talos/v1"); ok {
		t.Error("entry complete after a full disk")
	}
	for _, p := range []string{filepath.Join(dir, PartialDir, "talos", "v1", "kernel"), filepath.Join(dir, "talos", "v1", "kernel")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	t.Logf("full disk: %v", err)
}
