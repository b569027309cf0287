package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/provisiond/provisiond/internal/assets"
)

// PullRequest asks the daemon to fill its asset cache.
type PullRequest struct {
	// Kind is what to pull: talos.
	Kind string `json:"kind"`
	// Version is the Talos version (default: the config's).
	Version string `json:"version,omitempty"`
	// Extensions replace the config's schematic extensions when set.
	Extensions []string `json:"extensions,omitempty"`
	// ExtraKernelArgs replace the config's schematic kernel arguments.
	ExtraKernelArgs []string `json:"extra_kernel_args,omitempty"`
	// Machine, when set, pulls what that machine's parameters ask for.
	Machine string `json:"machine,omitempty"`
}

// Assets is the daemon's asset cache as the API needs it.
type Assets interface {
	// Pull starts (or joins) a download; info describes it (entry,
	// schematic, version).
	Pull(ctx context.Context, req PullRequest) (job *assets.Job, info map[string]string, err error)
	// Entries lists the complete cache entries.
	Entries() ([]assets.Manifest, error)
}

func (s *Server) listAssets(w http.ResponseWriter, r *http.Request) {
	es, err := s.Assets.Entries()
	if err != nil {
		writeErr(w, err)
		return
	}
	if es == nil {
		es = []assets.Manifest{}
	}
	writeJSON(w, http.StatusOK, es)
}

// pullAssets streams the download's progress as newline-delimited JSON: a
// first line with the entry's description, then progress reports, then a
// last report with done set (and error on failure).
func (s *Server) pullAssets(w http.ResponseWriter, r *http.Request) {
	var req PullRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("pull request: %v: %w", err, errBadRequest))
		return
	}
	job, info, err := s.Assets.Pull(r.Context(), req)
	if err != nil {
		writeErr(w, fmt.Errorf("%v: %w", err, errBadRequest))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	enc.Encode(info)
	if job == nil {
		enc.Encode(assets.Progress{Entry: info["entry"], Done: true, Step: "cached"})
		return
	}
	for p := range job.Subscribe() {
		if err := enc.Encode(p); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
	}
}

// Pull asks the daemon to fill its cache and calls fn with the entry's
// description and then each progress report. It returns the download's error.
func (c *Client) Pull(ctx context.Context, req PullRequest, info func(map[string]string), fn func(assets.Progress)) error {
	resp, err := c.stream(ctx, http.MethodPost, "/api/v1/assets/pull", req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	first := true
	for sc.Scan() {
		if first {
			first = false
			var m map[string]string
			json.Unmarshal(sc.Bytes(), &m)
			info(m)
			continue
		}
		var p assets.Progress
		if json.Unmarshal(sc.Bytes(), &p) != nil {
			continue
		}
		fn(p)
		if p.Done && p.File == "" {
			if p.Error != "" {
				return fmt.Errorf("%s", p.Error)
			}
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("provisiond ended the download report early (daemon stopped?)")
}

// AssetEntries lists the daemon's complete cache entries.
func (c *Client) AssetEntries(ctx context.Context) ([]assets.Manifest, error) {
	var out []assets.Manifest
	return out, c.do(ctx, http.MethodGet, "/api/v1/assets", nil, &out)
}
