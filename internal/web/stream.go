package web

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// liveStep is one step as the dashboard's script receives it: the step,
// and the machine's state after it.
type liveStep struct {
	Seq       uint64 `json:"seq"`
	Machine   string `json:"machine"`
	Time      string `json:"time"`
	Clock     string `json:"clock"`
	Type      string `json:"type"`
	Details   string `json:"details"`
	State     string `json:"state"`
	StateText string `json:"state_text"`
	Power     string `json:"power"`
}

// stream sends timeline steps as server-sent events (event "step"), for
// one machine (/ui/machines/{name}/events) or all. A machine's stream
// first replays what came after Last-Event-ID (or ?after=), so a browser
// that reconnects misses nothing.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name != "" {
		m, err := s.API.Store.Machine(name)
		if err != nil {
			http.Error(w, "machine "+name+": "+err.Error(), statusOf(err))
			return
		}
		name = m.Name // an asset tag names the same timeline
	}
	after, _ := strconv.ParseUint(cmp.Or(r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")), 10, 64)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	sub := s.API.Broker.Subscribe(ctx, name)
	var past []events.Event
	if name != "" && after > 0 {
		var err error
		if past, err = s.API.Store.Events(name, after, 0); err != nil {
			http.Error(w, err.Error(), statusOf(err))
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// Each machine's status, derived once from its stored timeline and
	// moved on by every step after.
	known := map[string]*events.Status{}
	send := func(ev events.Event) error {
		st := known[ev.Machine]
		if st == nil {
			evs, err := s.API.Store.Events(ev.Machine, 0, timelineDepth)
			if err != nil {
				return nil // a machine removed meanwhile
			}
			// The state before this step: the store may hold later ones
			// already (a quick boot), which this stream sends after it.
			if ev.Seq > 0 {
				evs = slices.DeleteFunc(evs, func(e events.Event) bool { return e.Seq >= ev.Seq })
			}
			d := events.DeriveStatus(evs)
			st = &d
			known[ev.Machine] = st
		}
		st.Apply(ev)
		now := time.Now()
		body, _ := json.Marshal(liveStep{Seq: ev.Seq, Machine: ev.Machine, Time: ev.Time.UTC().Format(time.RFC3339Nano),
			Clock: ev.Time.Local().Format("2006-01-02 15:04:05.000"), Type: ev.Type, Details: ev.Details(),
			State: st.At(now, stallAfter), StateText: st.Text(now, stallAfter), Power: st.Power})
		if _, err := w.Write([]byte("id: " + strconv.FormatUint(ev.Seq, 10) + "\nevent: step\ndata: " + string(body) + "\n\n")); err != nil {
			return err
		}
		return rc.Flush()
	}
	last := after
	for _, ev := range past {
		if send(ev) != nil {
			return
		}
		last = ev.Seq
	}
	// A comment opens the stream at once (the browser then fires open).
	w.Write([]byte(": provisiond\n\n"))
	rc.Flush()
	events.Relay(ctx, sub, last, s.API.Closing, 15*time.Second, send, func() error {
		if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
			return err
		}
		return rc.Flush()
	})
}
