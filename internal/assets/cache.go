// Package assets downloads remote boot assets (Talos kernels and
// initramfs images) once into the assets directory. A download goes to a
// hidden .partial directory, resumes with HTTP Range after a break, is
// checked against the announced size, has its sha256 recorded in the
// entry's manifest, and is renamed into place only when complete: a
// half-written file is never where the HTTP server looks.
package assets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// PartialDir is the hidden directory (below the assets root) that holds
// downloads in progress.
const PartialDir = ".partial"

// ManifestFile is written into an entry's directory once it is complete.
const ManifestFile = "manifest.json"

// Source is one file of an entry and where it comes from.
type Source struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// FileInfo is a downloaded file as the manifest records it.
type FileInfo struct {
	Size    int64     `json:"size"`
	SHA256  string    `json:"sha256"`
	URL     string    `json:"url"`
	Fetched time.Time `json:"fetched"`
}

// Manifest describes a complete entry.
type Manifest struct {
	Entry string              `json:"entry"`
	Files map[string]FileInfo `json:"files"`
	// Meta is free-form information about the entry (kind, version, ...).
	Meta map[string]string `json:"meta,omitempty"`
}

// Progress reports a download's state.
type Progress struct {
	Entry string `json:"entry"`
	File  string `json:"file,omitempty"`
	Bytes int64  `json:"bytes"`
	Total int64  `json:"total"`
	Done  bool   `json:"done,omitempty"`
	Error string `json:"error,omitempty"`
	Step  string `json:"step,omitempty"`
}

// Cache downloads entries into root. It is safe for concurrent use; two
// requests for the same entry share one download.
type Cache struct {
	root   string
	client *http.Client
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	jobs     map[string]*Job
	failed   map[string]failure
	verified map[string]bool
}

type failure struct {
	err error
	at  time.Time
}

// New returns a cache over root. Close cancels running downloads.
func New(root string, client *http.Client, log *slog.Logger) *Cache {
	if client == nil {
		client = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 60 * time.Second}}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Cache{root: root, client: client, log: log, ctx: ctx, cancel: cancel,
		jobs: map[string]*Job{}, failed: map[string]failure{}, verified: map[string]bool{}}
}

// Close cancels the downloads in progress (their partial files stay and
// resume next time).
func (c *Cache) Close() { c.cancel() }

// Complete returns the entry's manifest when every file is in place with
// its recorded size. The first time in a process it also checks each
// file's sha256 against the manifest, and a mismatch makes the entry
// incomplete (it is downloaded again).
func (c *Cache) Complete(entry string) (*Manifest, bool) {
	dir := filepath.Join(c.root, filepath.FromSlash(entry))
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, false
	}
	var m Manifest
	if json.Unmarshal(raw, &m) != nil || len(m.Files) == 0 {
		return nil, false
	}
	for name, fi := range m.Files {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Size() != fi.Size {
			return nil, false
		}
	}
	c.mu.Lock()
	done := c.verified[entry]
	c.mu.Unlock()
	if !done {
		for name, fi := range m.Files {
			sum, err := fileSHA256(filepath.Join(dir, name))
			if err != nil || sum != fi.SHA256 {
				c.log.Warn("cached asset does not match its checksum; it will be downloaded again", "entry", entry, "file", name)
				os.Remove(filepath.Join(dir, ManifestFile))
				return nil, false
			}
		}
		c.mu.Lock()
		c.verified[entry] = true
		c.mu.Unlock()
	}
	return &m, true
}

// Entries lists the complete entries below prefix (e.g. "talos").
func (c *Cache) Entries(prefix string) ([]Manifest, error) {
	var out []Manifest
	base := filepath.Join(c.root, filepath.FromSlash(prefix))
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if d.Name() != ManifestFile {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		var m Manifest
		if json.Unmarshal(raw, &m) == nil {
			out = append(out, m)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Entry < out[j].Entry })
	return out, err
}

// LastFailure returns the error of the entry's last failed download and
// when it failed.
func (c *Cache) LastFailure(entry string) (time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.failed[entry]
	if !ok {
		return time.Time{}, nil
	}
	return f.at, f.err
}

// Running returns the entry's download in progress, if any.
func (c *Cache) Running(entry string) *Job {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jobs[entry]
}

// Fetch starts downloading entry's files (or joins the download in
// progress). prepare, when set, runs first (e.g. registering a schematic).
func (c *Cache) Fetch(entry string, files []Source, meta map[string]string, prepare func(ctx context.Context) error) *Job {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j, ok := c.jobs[entry]; ok {
		return j
	}
	j := &Job{Entry: entry, done: make(chan struct{}), files: files}
	c.jobs[entry] = j
	go c.run(j, meta, func() error { return c.fetch(j, meta, prepare) })
	return j
}

func (c *Cache) run(j *Job, meta map[string]string, work func() error) {
	err := work()
	c.mu.Lock()
	delete(c.jobs, j.Entry)
	if err != nil {
		c.failed[j.Entry] = failure{err: err, at: time.Now()}
	} else {
		delete(c.failed, j.Entry)
		c.verified[j.Entry] = true
	}
	c.mu.Unlock()
	j.finish(err)
	if err != nil {
		c.log.Error("caching assets failed", "entry", j.Entry, "err", err)
	} else {
		c.log.Info("assets cached", "entry", j.Entry)
	}
}

func (c *Cache) fetch(j *Job, meta map[string]string, prepare func(ctx context.Context) error) error {
	ctx := c.ctx
	if prepare != nil {
		j.update(Progress{Entry: j.Entry, Step: "prepare"})
		if err := prepare(ctx); err != nil {
			return err
		}
	}
	m := Manifest{Entry: j.Entry, Files: map[string]FileInfo{}, Meta: meta}
	for _, src := range j.files {
		var fi FileInfo
		var err error
		for attempt := 1; attempt <= 4; attempt++ {
			fi, err = c.download(ctx, j, src)
			if err == nil || ctx.Err() != nil || !retryable(err) {
				break
			}
			c.log.Warn("asset download interrupted; resuming", "entry", j.Entry, "file", src.Name, "attempt", attempt, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		if err != nil {
			return fmt.Errorf("downloading %s from %s: %w", src.Name, src.URL, err)
		}
		m.Files[src.Name] = fi
	}
	return c.writeManifest(filepath.Join(c.root, filepath.FromSlash(j.Entry)), m)
}

// writeManifest completes an entry: its manifest, written last.
func (c *Cache) writeManifest(dir string, m Manifest) error {
	raw, _ := json.MarshalIndent(m, "", "  ")
	tmp := filepath.Join(dir, "."+ManifestFile+".tmp")
	if err := os.WriteFile(tmp, raw, 0o644); err != nil {
		return fmt.Errorf("writing the manifest of %s: %w", m.Entry, err)
	}
	return os.Rename(tmp, filepath.Join(dir, ManifestFile))
}

// httpError is a non-success HTTP status.
type httpError struct {
	status string
	code   int
}

func (e *httpError) Error() string { return "the server answered " + e.status }

// diskFull says what to do when the assets directory's disk is full.
type diskFull struct {
	dir string
	err error
}

func (e *diskFull) Error() string {
	return fmt.Sprintf("%v: the disk holding %s is full; free space there (provisiond assets list shows what is cached) and pull again", e.err, e.dir)
}

func (e *diskFull) Unwrap() error { return e.err }

func retryable(err error) bool {
	if errors.Is(err, syscall.ENOSPC) {
		return false
	}
	var he *httpError
	if errors.As(err, &he) {
		return he.code >= 500
	}
	var se *sizeError
	if errors.As(err, &se) {
		return true
	}
	// Network errors, resets, unexpected EOF: try again from where we were.
	return true
}

type sizeError struct{ got, want int64 }

func (e *sizeError) Error() string {
	return fmt.Sprintf("got %d bytes of %d", e.got, e.want)
}

func (c *Cache) download(ctx context.Context, j *Job, src Source) (FileInfo, error) {
	if strings.ContainsAny(src.Name, `/\`) || strings.HasPrefix(src.Name, ".") {
		return FileInfo{}, fmt.Errorf("bad asset file name %q", src.Name)
	}
	partDir := filepath.Join(c.root, PartialDir, filepath.FromSlash(j.Entry))
	finalDir := filepath.Join(c.root, filepath.FromSlash(j.Entry))
	for _, d := range []string{partDir, finalDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return FileInfo{}, err
		}
	}
	part := filepath.Join(partDir, src.Name)
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return FileInfo{}, err
	}
	defer f.Close()
	h := sha256.New()
	// Resume: hash what is already there, then ask for the rest.
	offset, err := io.Copy(h, f)
	if err != nil {
		return FileInfo{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return FileInfo{}, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return FileInfo{}, err
	}
	defer resp.Body.Close()
	total := int64(-1)
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		start, size, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			return FileInfo{}, fmt.Errorf("the server resumed at the wrong place (%q)", resp.Header.Get("Content-Range"))
		}
		total = size
	case resp.StatusCode == http.StatusOK:
		// A fresh download, or a server that does not resume.
		if offset > 0 {
			if err := f.Truncate(0); err != nil {
				return FileInfo{}, err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return FileInfo{}, err
			}
			h.Reset()
			offset = 0
		}
		total = resp.ContentLength
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// What we have is wrong for this file: start again.
		f.Truncate(0)
		return FileInfo{}, &sizeError{got: offset, want: -1}
	default:
		return FileInfo{}, &httpError{status: resp.Status, code: resp.StatusCode}
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return FileInfo{}, err
	}
	pw := &progressWriter{j: j, p: Progress{Entry: j.Entry, File: src.Name, Bytes: offset, Total: total}}
	n, err := io.Copy(io.MultiWriter(f, h, pw), resp.Body)
	got := offset + n
	if errors.Is(err, syscall.ENOSPC) {
		// Nothing half-written stays: the partial file goes, so a
		// later pull starts clean once there is room.
		f.Close()
		os.Remove(part)
		return FileInfo{}, &diskFull{dir: c.root, err: err}
	}
	if err != nil {
		return FileInfo{}, err
	}
	if total >= 0 && got != total {
		return FileInfo{}, &sizeError{got: got, want: total}
	}
	if err := f.Sync(); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			f.Close()
			os.Remove(part)
			return FileInfo{}, &diskFull{dir: c.root, err: err}
		}
		return FileInfo{}, err
	}
	if err := f.Close(); err != nil {
		return FileInfo{}, err
	}
	if err := os.Rename(part, filepath.Join(finalDir, src.Name)); err != nil {
		return FileInfo{}, err
	}
	pw.p.Done = true
	j.update(pw.p)
	return FileInfo{Size: got, SHA256: hex.EncodeToString(h.Sum(nil)), URL: src.URL, Fetched: time.Now().UTC()}, nil
}

// contentRange parses "bytes START-END/SIZE".
func contentRange(v string) (start, size int64, ok bool) {
	v, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, sz, found := strings.Cut(v, "/")
	if !found {
		return 0, 0, false
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(s, 10, 64)
	size, err2 := strconv.ParseInt(sz, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return start, size, true
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type progressWriter struct {
	j    *Job
	p    Progress
	last time.Time
}

func (w *progressWriter) Write(b []byte) (int, error) {
	w.p.Bytes += int64(len(b))
	if time.Since(w.last) > 200*time.Millisecond {
		w.last = time.Now()
		w.j.update(w.p)
	}
	return len(b), nil
}

// Job is one entry's download.
type Job struct {
	// Entry is the entry being downloaded.
	Entry string
	files []Source

	mu   sync.Mutex
	last Progress
	subs []chan Progress
	err  error
	done chan struct{}
}

func (j *Job) update(p Progress) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.last = p
	for _, ch := range j.subs {
		select {
		case ch <- p:
		default:
		}
	}
}

func (j *Job) finish(err error) {
	j.mu.Lock()
	j.err = err
	final := Progress{Entry: j.Entry, Done: true}
	if err != nil {
		final.Error = err.Error()
	}
	for _, ch := range j.subs {
		select {
		case ch <- final:
		default:
		}
		close(ch)
	}
	j.subs = nil
	j.mu.Unlock()
	close(j.done)
}

// Last returns the latest progress.
func (j *Job) Last() Progress {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.last
}

// Subscribe returns a channel of progress reports, closed when the job
// ends (its last report has Done set, and Error on failure).
func (j *Job) Subscribe() <-chan Progress {
	ch := make(chan Progress, 64)
	j.mu.Lock()
	defer j.mu.Unlock()
	select {
	case <-j.done:
		final := Progress{Entry: j.Entry, Done: true}
		if j.err != nil {
			final.Error = j.err.Error()
		}
		ch <- final
		close(ch)
	default:
		j.subs = append(j.subs, ch)
	}
	return ch
}

// Wait blocks until the job ends and returns its error.
func (j *Job) Wait(ctx context.Context) error {
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
