package inventory

import (
	"errors"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// Facts match a record by UUID (either byte order), then serial, then
// enclosure bay; discovered records and the reporter itself never match.
func TestMatch(t *testing.T) {
	ms := []Machine{
		{Name: "discovered-1", Discovered: true, Hardware: Hardware{Serial: "CZ1"}},
		{Name: "BLD-003", Hardware: Hardware{UUID: "30333536-3135-5a43-3333-303158595a00", Enclosure: "ASGARD", Bay: 3}},
		{Name: "BLD-004", Hardware: Hardware{Serial: "CZ1", Enclosure: "ASGARD", Bay: 4}},
		{Name: "BLD-005", Hardware: Hardware{Enclosure: "ASGARD", Bay: 5}},
	}
	for _, c := range []struct {
		hw       Hardware
		name, by string
	}{
		{Hardware{UUID: "36353330-3531-435a-3333-303158595a00"}, "BLD-003", "uuid"}, // the other byte order
		{Hardware{Serial: " cz1 "}, "BLD-004", "serial"},
		{Hardware{Enclosure: "ASGARD", Bay: 5}, "BLD-005", "bay"},
		{Hardware{Serial: "CZ1", Enclosure: "ASGARD", Bay: 5}, "BLD-004", "serial"},
		{Hardware{Serial: "Not Specified", UUID: "00000000-0000-0000-0000-000000000000"}, "", ""},
		{Hardware{Enclosure: "OTHER", Bay: 5}, "", ""},
	} {
		if name, by := Match(ms, &c.hw, ""); name != c.name || by != c.by {
			t.Errorf("%+v: %s by %s, want %s by %s", c.hw, name, by, c.name, c.by)
		}
	}
	if name, _ := Match(ms, &Hardware{Serial: "CZ1"}, "BLD-004"); name != "" {
		t.Errorf("matched itself: %s", name)
	}
}

// machine adopt folds a discovered machine into a record in one
// transaction: MACs, timeline and observed hardware move; empty fields
// fill; what the record holds stays (drift); a new name takes it over.
func TestAdopt(t *testing.T) {
	s, _ := open(t, Options{})
	mac := "52:54:00:e2:c0:05"
	if _, err := s.AppendEvents([]events.Event{{Time: time.Now(), MAC: mac, Type: events.DHCPOffer}}); err != nil {
		t.Fatal(err)
	}
	disc := DiscoveredName(mac)
	obs := Observed{Source: ObservedCommission, Hardware: Hardware{Serial: "CZ5", CPUs: []CPU{{Socket: 1, Model: "E5-2650 v2", Cores: 8, Threads: 16}},
		DIMMs: []DIMM{{Slot: "PROC 1 DIMM 1", SizeGB: 16}}, NICs: []NIC{{MAC: mac, Driver: "be2net", Boot: true}}}}
	if _, _, err := s.Observe(disc, obs); err != nil {
		t.Fatal(err)
	}
	s.PutMachine(Machine{Name: "BLD-005", Profile: "local", Hardware: Hardware{Enclosure: "", Bay: 0, MemoryGB: 32}})
	if _, _, err := s.Adopt("BLD-005", "BLD-006"); err == nil {
		t.Error("adopted a machine that is not discovered")
	}
	m, filled, err := s.Adopt(disc, "BLD-005")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.MACs) != 1 || m.MACs[0] != mac || m.Serial != "CZ5" || len(m.CPUs) != 1 || m.MemoryGB != 32 || len(m.DIMMs) != 0 || m.Observed == nil || len(filled) == 0 {
		t.Errorf("adopted %+v (filled %d)", m, len(filled))
	}
	if _, err := s.Machine(disc); !errors.Is(err, ErrNotFound) {
		t.Errorf("the discovered record stays: %v", err)
	}
	if evs, _ := s.Events("BLD-005", 0, 0); len(evs) != 1 {
		t.Errorf("timeline not moved: %d events", len(evs))
	}
	if owner, _ := s.MachineByMAC(mac); owner == nil || owner.Name != "BLD-005" {
		t.Errorf("the MAC's owner: %+v", owner)
	}
	// A new name: the discovered machine becomes it.
	mac2 := "52:54:00:e2:c0:08"
	s.AppendEvents([]events.Event{{Time: time.Now(), MAC: mac2, Type: events.DHCPOffer}})
	m, _, err = s.Adopt(DiscoveredName(mac2), "BLD-008")
	if err != nil || m.Discovered || len(m.MACs) != 1 {
		t.Errorf("adopt into a new name: %+v %v", m, err)
	}
}
