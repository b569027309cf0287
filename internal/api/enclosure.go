package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/provisiond/provisiond/internal/enclosure"
	"github.com/provisiond/provisiond/internal/events"
)

// Enclosures syncs enclosures from their Onboard Administrators.
type Enclosures interface {
	Sync(ctx context.Context, name string, apply bool) (*enclosure.Report, error)
	// Last is what the enclosure's OA said at its last sync (nil: none).
	Last(name string) *enclosure.Report
}

// SyncRequest is the body of POST /api/v1/enclosures/{name}/sync.
type SyncRequest struct {
	// Apply writes what the sync found; without it nothing is written.
	Apply bool `json:"apply"`
}

// syncEnclosure runs a sync: a dry run shows what would change, an applied
// one writes it and puts a step on each changed machine's timeline.
func (s *Server) syncEnclosure(w http.ResponseWriter, r *http.Request) {
	if s.Enclosures == nil {
		writeErr(w, fmt.Errorf("this daemon does not sync enclosures: %w", errBadRequest))
		return
	}
	var req SyncRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<12)).Decode(&req); err != nil {
		writeErr(w, fmt.Errorf("sync request: %v: %w", err, errBadRequest))
		return
	}
	rep, err := s.Enclosures.Sync(r.Context(), r.PathValue("name"), req.Apply)
	if err != nil {
		if rep == nil {
			writeErr(w, fmt.Errorf("%w: %w", err, errBadRequest))
			return
		}
		// Applied up to a bay that failed: say what was done, and why it stopped.
		rep.Warnings = append(rep.Warnings, "stopped: "+err.Error())
	}
	if req.Apply {
		for _, b := range rep.Bays {
			if b.Action == "unchanged" || s.Events == nil {
				continue
			}
			s.Events.Emit(events.Event{Type: events.MachineChanged, Machine: b.Machine, Attrs: map[string]string{
				"source": "oa", "action": b.Action, "fields": strconv.Itoa(len(b.Filled)), "drift": strconv.Itoa(len(b.Drift))}})
		}
		s.Log.Info("enclosure synced", "enclosure", rep.Enclosure, "oa", rep.OA, "bays", len(rep.Bays))
	}
	writeJSON(w, http.StatusOK, rep)
}

// SyncEnclosure asks the daemon to sync an enclosure from its OA (apply:
// write the result).
func (c *Client) SyncEnclosure(ctx context.Context, name string, apply bool) (*enclosure.Report, error) {
	var rep enclosure.Report
	err := c.do(ctx, http.MethodPost, "/api/v1/enclosures/"+url.PathEscape(name)+"/sync", SyncRequest{Apply: apply}, &rep)
	return &rep, err
}
