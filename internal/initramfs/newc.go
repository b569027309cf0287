// Package initramfs writes cpio archives in the "newc" format the Linux
// kernel unpacks as an initramfs (Documentation/driver-api/early-userspace/
// buffer-format.rst). provisiond uses it for per-machine overlays that the
// kernel unpacks over a base image.
package initramfs

import (
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// File is one regular file of an archive.
type File struct {
	// Path is the file's absolute path in the booted system.
	Path string
	// Mode holds the permission bits (0644, 0400, ...).
	Mode uint32
	// Data is the content.
	Data []byte
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
)

// Write writes files as a newc archive, each parent directory first
// (mode 0755), then a trailer. All entries belong to root.
func Write(w io.Writer, files []File) error {
	dirs := map[string]bool{}
	var entries []entry
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	ino := uint32(1)
	for _, f := range sorted {
		p := path.Clean("/" + f.Path)
		if p == "/" || p != "/"+strings.TrimPrefix(f.Path, "/") {
			return fmt.Errorf("overlay path %q is not a clean absolute path", f.Path)
		}
		var parents []string
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if !dirs[d] {
				dirs[d] = true
				entries = append(entries, entry{name: d[1:], mode: modeDir | 0o755, ino: ino, nlink: 2})
				ino++
			}
		}
		entries = append(entries, entry{name: p[1:], mode: modeFile | (f.Mode & 0o7777), ino: ino, nlink: 1, data: f.Data})
		ino++
	}
	entries = append(entries, entry{name: "TRAILER!!!", nlink: 1})
	var off int64
	for _, e := range entries {
		n, err := e.write(w, off)
		if err != nil {
			return err
		}
		off += n
	}
	return nil
}

type entry struct {
	name  string
	mode  uint32
	ino   uint32
	nlink uint32
	data  []byte
}

func pad(n int64) int64 { return (4 - n%4) % 4 }

func (e entry) write(w io.Writer, off int64) (int64, error) {
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		e.ino, e.mode, 0, 0, e.nlink, 0, len(e.data), 0, 0, 0, 0, len(e.name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(e.name)+8+len(e.data)+4)
	buf = append(buf, hdr...)
	buf = append(buf, e.name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad(off+int64(len(buf))))...)
	buf = append(buf, e.data...)
	buf = append(buf, make([]byte, pad(off+int64(len(buf))))...)
	n, err := w.Write(buf)
	return int64(n), err
}
