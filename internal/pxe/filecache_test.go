package pxe

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// openStat returns the file and its Stat, closed at the end of the test.
func openStat(t *testing.T, path string) (*os.File, os.FileInfo) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, st
}

// reads returns a function that reads all of what fileCache.reader
// returned, failing the test on an error.
func reads(t *testing.T) func(io.Reader, error) []byte {
	return func(r io.Reader, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// A file served once is served again from memory: the second transfer
// reads nothing from its file (here: a file already closed). A file that
// is rewritten, or replaced by another, is read again.
func TestFileCacheServesFromMemory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "undionly.kpxe")
	first := bytes.Repeat([]byte("iPXE"), 1000)
	os.WriteFile(path, first, 0o644)
	c := newFileCache(1<<20, 4<<20)
	read := reads(t)

	f, st := openStat(t, path)
	if got := read(c.reader("undionly.kpxe", f, st)); !bytes.Equal(got, first) {
		t.Fatalf("first read: %d bytes", len(got))
	}
	f, st = openStat(t, path)
	f.Close()
	if got := read(c.reader("undionly.kpxe", f, st)); !bytes.Equal(got, first) {
		t.Fatalf("cached read: %d bytes", len(got))
	}

	// Rewritten in place, same size, a later modification time.
	second := bytes.Repeat([]byte("EXPI"), 1000)
	os.WriteFile(path, second, 0o644)
	later := time.Now().Add(time.Second)
	os.Chtimes(path, later, later)
	f, st = openStat(t, path)
	if got := read(c.reader("undionly.kpxe", f, st)); !bytes.Equal(got, second) {
		t.Fatal("a rewritten file was served from the cache")
	}

	// Replaced by another file with the same size and time (a package
	// upgrade renames the new file over the old one).
	third := bytes.Repeat([]byte("PXEI"), 1000)
	tmp := filepath.Join(dir, "new")
	os.WriteFile(tmp, third, 0o644)
	os.Chtimes(tmp, later, later)
	os.Rename(tmp, path)
	f, st = openStat(t, path)
	if got := read(c.reader("undionly.kpxe", f, st)); !bytes.Equal(got, third) {
		t.Fatal("a replaced file was served from the cache")
	}
}

// Files above the size bound are sent from the file; what is kept stays
// within the total bound.
func TestFileCacheBounds(t *testing.T) {
	dir := t.TempDir()
	c := newFileCache(3000, 5000)
	read := reads(t)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 4000), 0o644)
	f, st := openStat(t, big)
	r, err := c.reader("big", f, st)
	if err != nil || r != io.Reader(f) {
		t.Fatalf("a file above the bound: %T %v, want the file itself", r, err)
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, bytes.Repeat([]byte(name), 2000), 0o644)
		f, st := openStat(t, p)
		if got := read(c.reader(name, f, st)); len(got) != 2000 || got[0] != name[0] {
			t.Fatalf("%s: %d bytes", name, len(got))
		}
		if c.total > 5000 {
			t.Fatalf("%d bytes kept after %s, bound 5000", c.total, name)
		}
	}
	if len(c.files) != 2 {
		t.Errorf("%d files kept, want 2 of 2,000 bytes within 5,000", len(c.files))
	}
}
