package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// BootInfo is how a machine boots with its profile now: the firmware
// provisiond answers for (and why), and for Talos the schematic its NICs
// and parameters give.
type BootInfo struct {
	Machine string `json:"machine" yaml:"machine"`
	Profile string `json:"profile" yaml:"profile"`
	// Firmware is bios or uefi when the machine or its model is bound to
	// one, "" when provisiond follows what the firmware reports.
	Firmware    string `json:"firmware,omitempty" yaml:"firmware,omitempty"`
	FirmwareWhy string `json:"firmware_why,omitempty" yaml:"firmware_why,omitempty"`
	// Talos is the machine's Talos schematic (profiles that use Talos).
	Talos *TalosBoot `json:"talos,omitempty" yaml:"talos,omitempty"`
	// State is what its timeline says it is doing (events.States: idle,
	// booting, stalled, booted, failed, on, off), StateText the same for
	// people, Power on, off or "" (not known), as the dashboard shows them.
	State     string `json:"state" yaml:"state"`
	StateText string `json:"state_text" yaml:"state_text"`
	Power     string `json:"power,omitempty" yaml:"power,omitempty"`
}

// timelineForState is how many of a machine's newest steps its state is
// derived from.
const timelineForState = 200

// TalosBoot is the Image Factory schematic a machine boots.
type TalosBoot struct {
	Version    string   `json:"version" yaml:"version"`
	Schematic  string   `json:"schematic" yaml:"schematic"`
	Extensions []string `json:"extensions" yaml:"extensions"`
	// Why says where the NIC firmware extensions come from.
	Why string `json:"why" yaml:"why"`
}

func (s *Server) bootInfo(w http.ResponseWriter, r *http.Request) {
	m, err := s.Store.Machine(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	info := BootInfo{Machine: m.Name, Profile: m.Profile}
	if s.BootInfo != nil {
		if info, err = s.BootInfo(*m); err != nil {
			writeErr(w, err)
			return
		}
	}
	evs, err := s.Store.Events(m.Name, 0, timelineForState)
	if err != nil {
		writeErr(w, err)
		return
	}
	st, now := events.DeriveStatus(evs), time.Now()
	info.State, info.StateText, info.Power = st.At(now, events.StallAfter), st.Text(now, events.StallAfter), st.Power
	writeJSON(w, http.StatusOK, info)
}

// BootInfo returns how machine name boots with its profile now.
func (c *Client) BootInfo(ctx context.Context, name string) (*BootInfo, error) {
	var out BootInfo
	if err := c.do(ctx, http.MethodGet, "/api/v1/machines/"+url.PathEscape(name)+"/boot", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
