package api

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

// A machine's timeline, stored and live, is found by its asset tag as by
// its name: the stored steps come first, then the steps the recorder
// publishes (which carry the machine's name).
func TestFollowEventsByAssetTag(t *testing.T) {
	st, err := inventory.Open(filepath.Join(t.TempDir(), "provisiond.db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := inventory.Machine{Name: "BLD-001", MACs: []string{"52:54:00:00:00:01"}}
	m.Tag = "SYS-001"
	if _, err := st.PutMachine(m); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendEvents([]events.Event{{Type: events.DHCPOffer, MAC: "52:54:00:00:00:01", Time: time.Now().UTC()}}); err != nil {
		t.Fatal(err)
	}
	broker := events.NewBroker()
	s := &Server{Store: st, Broker: broker, ReadAccess: "open", Log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/machines/SYS-001/events?follow=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET by asset tag: %d", resp.StatusCode)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() events.Event {
		t.Helper()
		for lines.Scan() {
			if len(lines.Bytes()) == 0 {
				continue
			}
			var ev events.Event
			if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
				t.Fatalf("%q: %v", lines.Text(), err)
			}
			return ev
		}
		t.Fatalf("the stream ended: %v", lines.Err())
		return events.Event{}
	}
	if ev := next(); ev.Type != events.DHCPOffer || ev.Machine != "BLD-001" {
		t.Errorf("stored step: %+v", ev)
	}
	broker.Publish(events.Event{Type: events.Script, Machine: "BLD-001", Seq: 99, Time: time.Now().UTC()})
	if ev := next(); ev.Type != events.Script || ev.Seq != 99 {
		t.Errorf("live step: %+v", ev)
	}
}
