package pxe

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"
)

// fileCache keeps the contents of the small files served over TFTP (the
// iPXE binaries) in memory, shared by every transfer: a lock-step transfer
// then reads no file for each block, one system call fewer per round trip.
// An entry is used only while the file still has the size, modification
// time and inode it was read with; a file that changes is read again.
type fileCache struct {
	maxFile, maxTotal int64

	mu    sync.Mutex
	total int64
	files map[string]cachedFile
}

type cachedFile struct {
	mod   time.Time
	inode uint64
	data  []byte
}

// newFileCache keeps files of at most maxFile bytes, maxTotal in all.
func newFileCache(maxFile, maxTotal int64) *fileCache {
	return &fileCache{maxFile: maxFile, maxTotal: maxTotal, files: map[string]cachedFile{}}
}

func inodeOf(st fs.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}

// reader returns what to send for f (opened as name, with st its Stat):
// its cached contents, or its contents read now and kept, or f itself
// when it is too large to keep.
func (c *fileCache) reader(name string, f *os.File, st fs.FileInfo) (io.Reader, error) {
	if st.Size() > c.maxFile {
		return f, nil
	}
	ino := inodeOf(st)
	c.mu.Lock()
	e, ok := c.files[name]
	c.mu.Unlock()
	if ok && int64(len(e.data)) == st.Size() && e.mod.Equal(st.ModTime()) && e.inode == ino {
		return bytes.NewReader(e.data), nil
	}
	data, err := io.ReadAll(io.LimitReader(f, st.Size()+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != st.Size() {
		// Written to since it was opened: send it from the file, as it
		// is now, and keep nothing.
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		return f, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.files[name]; ok {
		c.total -= int64(len(old.data))
		delete(c.files, name)
	}
	for k, v := range c.files {
		if c.total+int64(len(data)) <= c.maxTotal {
			break
		}
		c.total -= int64(len(v.data))
		delete(c.files, k)
	}
	if c.total+int64(len(data)) <= c.maxTotal {
		c.files[name] = cachedFile{mod: st.ModTime(), inode: ino, data: data}
		c.total += int64(len(data))
	}
	return bytes.NewReader(data), nil
}
