// Package talostest provides a local HTTP server that plays the Talos Image
// Factory for tests: it registers schematics (computing their IDs as the
// factory does) and serves the PXE assets of registered schematics, with
// Range support, from files the test gives it.
package talostest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/provisiond/provisiond/internal/talos"
)

// Factory is the fake factory's handler.
type Factory struct {
	// Files are served for every registered schematic and version, by name
	// (kernel-amd64, initramfs-amd64.xz, cmdline-metal-amd64).
	Files map[string][]byte
	// Extensions are the official extensions listed for every version
	// (nil: a few of the real factory's, bnx2-bnx2x and intel-ucode
	// among them).
	Extensions []string

	mu         sync.Mutex
	schematics map[string][]byte
	hits       map[string]int
}

// New returns a fake factory serving files.
func New(files map[string][]byte) *Factory {
	return &Factory{Files: files, schematics: map[string][]byte{}, hits: map[string]int{}}
}

// Registered reports whether a schematic ID was registered.
func (f *Factory) Registered(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.schematics[id]
	return ok
}

// Hits returns how many times a file was requested.
func (f *Factory) Hits(file string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[file]
}

// ServeHTTP implements http.Handler.
func (f *Factory) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/schematics":
		raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var s talos.Schematic
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&s); err != nil {
			http.Error(w, "invalid schematic: "+err.Error(), http.StatusBadRequest)
			return
		}
		id, _ := s.ID()
		f.mu.Lock()
		f.schematics[id] = raw
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": id})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/version/") && strings.HasSuffix(r.URL.Path, "/extensions/official"):
		names := f.Extensions
		if names == nil {
			names = []string{"siderolabs/amd-ucode", "siderolabs/bnx2-bnx2x", "siderolabs/gvisor", "siderolabs/intel-ucode",
				"siderolabs/iscsi-tools", "siderolabs/qlogic-firmware", "siderolabs/realtek-firmware", "siderolabs/util-linux-tools"}
		}
		var list []map[string]string
		for _, n := range names {
			list = append(list, map[string]string{"name": n, "ref": "ghcr.io/" + n + ":test", "digest": "sha256:test", "author": "Sidero Labs"})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(list)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/image/"):
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/image/"), "/")
		if len(parts) != 3 || !f.Registered(parts[0]) || talos.ValidVersion(parts[1]) != nil {
			http.Error(w, "schematic not found", http.StatusNotFound)
			return
		}
		body, ok := f.Files[parts[2]]
		if !ok {
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		f.hits[parts[2]]++
		f.mu.Unlock()
		http.ServeContent(w, r, parts[2], time.Time{}, bytes.NewReader(body))
	default:
		http.NotFound(w, r)
	}
}
