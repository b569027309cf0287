package assets

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Build makes entry from files provisiond writes itself (the
// commissioning image), or joins the build in progress. build writes the
// entry's files into the directory it is given; they are checksummed and
// moved into place, and the manifest written, only when build succeeds.
func (c *Cache) Build(entry string, meta map[string]string, build func(dir string) error) *Job {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j, ok := c.jobs[entry]; ok {
		return j
	}
	j := &Job{Entry: entry, done: make(chan struct{})}
	c.jobs[entry] = j
	go c.run(j, meta, func() error { return c.build(j, meta, build) })
	return j
}

func (c *Cache) build(j *Job, meta map[string]string, build func(dir string) error) error {
	j.update(Progress{Entry: j.Entry, Step: "build"})
	stage := filepath.Join(c.root, PartialDir, "build-"+filepath.Base(j.Entry))
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return fmt.Errorf("building %s: %w", j.Entry, err)
	}
	defer os.RemoveAll(stage)
	if err := build(stage); err != nil {
		return err
	}
	files, err := os.ReadDir(stage)
	if err != nil {
		return err
	}
	dir := filepath.Join(c.root, filepath.FromSlash(j.Entry))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("building %s: %w", j.Entry, err)
	}
	m := Manifest{Entry: j.Entry, Files: map[string]FileInfo{}, Meta: meta}
	now := time.Now().UTC()
	for _, f := range files {
		src := filepath.Join(stage, f.Name())
		sum, err := fileSHA256(src)
		if err != nil {
			return err
		}
		st, err := os.Stat(src)
		if err != nil {
			return err
		}
		if err := os.Rename(src, filepath.Join(dir, f.Name())); err != nil {
			return fmt.Errorf("building %s: %w", j.Entry, err)
		}
		m.Files[f.Name()] = FileInfo{Size: st.Size(), SHA256: sum, Fetched: now}
	}
	return c.writeManifest(dir, m)
}

// Remove deletes a complete entry (an image built for an older binary).
// An entry being fetched or built is left alone.
func (c *Cache) Remove(entry string) error {
	c.mu.Lock()
	_, busy := c.jobs[entry]
	delete(c.verified, entry)
	c.mu.Unlock()
	if busy {
		return fmt.Errorf("%s is being fetched or built", entry)
	}
	return os.RemoveAll(filepath.Join(c.root, filepath.FromSlash(entry)))
}

// File is the path of file name of entry in the cache (complete or not).
func (c *Cache) File(entry, name string) string {
	return filepath.Join(c.root, filepath.FromSlash(entry), name)
}
