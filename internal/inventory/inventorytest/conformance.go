package inventorytest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

// Conformance runs the store contract (inventory.Backend) against a
// backend: open returns a fresh, empty store with the options given, which
// the test closes. Every backend (bbolt, etcd) must pass it; what it checks
// is what the rest of provisiond relies on.
func Conformance(t *testing.T, open func(t *testing.T, opts inventory.Options) inventory.Backend) {
	fresh := func(t *testing.T) inventory.Backend {
		t.Helper()
		s := open(t, inventory.Options{})
		t.Cleanup(func() { s.Close() })
		return s
	}
	t.Run("bounded-timeline", func(t *testing.T) {
		s := open(t, inventory.Options{MaxEventsPerMachine: 3})
		t.Cleanup(func() { s.Close() })
		conformBoundedTimeline(t, s)
	})
	t.Run("discovered-takeover", func(t *testing.T) { conformTakeover(t, fresh(t)) })
	t.Run("machines", func(t *testing.T) { conformMachines(t, fresh(t)) })
	t.Run("mac-conflict", func(t *testing.T) { conformMacConflict(t, fresh(t)) })
	t.Run("no-lost-updates", func(t *testing.T) { conformNoLostUpdates(t, fresh(t)) })
	t.Run("one-shot", func(t *testing.T) { conformOneShot(t, fresh(t)) })
	t.Run("timelines", func(t *testing.T) { conformTimelines(t, fresh(t)) })
	t.Run("secrets", func(t *testing.T) { conformSecrets(t, fresh(t)) })
	t.Run("import-export", func(t *testing.T) { conformImportExport(t, fresh(t)) })
	t.Run("sync", func(t *testing.T) { conformSync(t, fresh(t)) })
	t.Run("write-machines", func(t *testing.T) { conformWriteMachines(t, fresh(t)) })
}

func names(ms []inventory.Machine) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func blade(name, mac string) inventory.Machine {
	return inventory.Machine{Name: name, MACs: []string{mac}, Profile: "linux", Hostname: "h-" + name,
		Params: map[string]string{"kernel": "vmlinuz"}}
}

func conformMachines(t *testing.T, s inventory.Backend) {
	saved, err := s.PutMachine(blade("BLD-006", "52:54:00:00:00:06"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Machine("BLD-006")
	if err != nil || got.Hostname != "h-BLD-006" || got.Params["kernel"] != "vmlinuz" || got.Revision != saved.Revision || got.Revision == 0 {
		t.Fatalf("Machine: %+v, %v (saved revision %d)", got, err, saved.Revision)
	}
	if m, err := s.MachineByMAC("52:54:00:00:00:06"); err != nil || m.Name != "BLD-006" {
		t.Errorf("MachineByMAC: %+v, %v", m, err)
	}
	if _, err := s.MachineByMAC("52:54:00:00:00:99"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("MachineByMAC of an unknown MAC: %v, want ErrNotFound", err)
	}
	if _, err := s.PutMachine(blade("BLD-007", "52:54:00:00:00:07")); err != nil {
		t.Fatal(err)
	}
	ms, err := s.Machines()
	if err != nil || len(ms) != 2 || ms[0].Name != "BLD-006" || ms[1].Name != "BLD-007" {
		t.Errorf("Machines: %v, %v; want BLD-006 and BLD-007 by name", names(ms), err)
	}
	up, err := s.UpdateMachine("BLD-006", func(m *inventory.Machine) error { m.Hostname = "node-006"; return nil })
	if err != nil || up.Hostname != "node-006" || up.Revision <= saved.Revision {
		t.Errorf("UpdateMachine: %+v, %v; the revision must grow", up, err)
	}
	if err := s.DeleteMachine("BLD-006"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Machine("BLD-006"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("after DeleteMachine: %v, want ErrNotFound", err)
	}
	if _, err := s.MachineByMAC("52:54:00:00:00:06"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("a deleted machine's MAC still resolves: %v", err)
	}
}

func conformMacConflict(t *testing.T, s inventory.Backend) {
	if _, err := s.PutMachine(blade("BLD-006", "52:54:00:00:00:06")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutMachine(blade("BLD-007", "52:54:00:00:00:06")); !errors.Is(err, inventory.ErrConflict) {
		t.Errorf("two machines with one MAC: %v, want ErrConflict", err)
	}
	if m, err := s.MachineByMAC("52:54:00:00:00:06"); err != nil || m.Name != "BLD-006" {
		t.Errorf("the MAC moved: %+v, %v", m, err)
	}
}

func conformNoLostUpdates(t *testing.T, s inventory.Backend) {
	if _, err := s.PutMachine(blade("BLD-006", "52:54:00:00:00:06")); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				_, err := s.UpdateMachine("BLD-006", func(m *inventory.Machine) error {
					if m.Labels == nil {
						m.Labels = map[string]string{}
					}
					m.Labels[fmt.Sprintf("w%d-%d", w, i)] = "1"
					return nil
				})
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	m, _ := s.Machine("BLD-006")
	if len(m.Labels) != writers*each {
		t.Errorf("%d of %d concurrent updates kept", len(m.Labels), writers*each)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateMachine("BLD-006", func(m *inventory.Machine) error { m.Hostname = "lost"; return boom }); !errors.Is(err, boom) {
		t.Errorf("UpdateMachine's fn error: %v, want it returned", err)
	}
	if m, _ := s.Machine("BLD-006"); m.Hostname == "lost" {
		t.Error("a failed update was stored")
	}
}

func conformOneShot(t *testing.T, s inventory.Backend) {
	m := blade("BLD-006", "52:54:00:00:00:06")
	m.Profile, m.Once = "talos", &inventory.Once{Then: "local", Since: time.Now().UTC()}
	m.Firmware, m.Params["ipxe_binary"] = inventory.FirmwareBIOS, "snponly.efi"
	if _, err := s.PutMachine(m); err != nil {
		t.Fatal(err)
	}
	if bs, found, err := s.BootSettingsByMAC("52:54:00:00:00:06"); err != nil || !found || bs.Firmware != inventory.FirmwareBIOS || bs.IPXEBinary != "snponly.efi" {
		t.Errorf("BootSettingsByMAC: %+v %v %v", bs, found, err)
	}
	if _, found, err := s.BootSettingsByMAC("52:54:00:00:00:99"); err != nil || found {
		t.Errorf("BootSettingsByMAC of an unknown MAC: found %v, %v", found, err)
	}
	if then, err := s.ConsumeOnce("BLD-006", "linux"); err != nil || then != "" {
		t.Errorf("ConsumeOnce of another profile: %q, %v; want nothing done", then, err)
	}
	if then, err := s.ConsumeOnce("BLD-006", "talos"); err != nil || then != "local" {
		t.Errorf("ConsumeOnce: %q, %v; want local", then, err)
	}
	got, _ := s.Machine("BLD-006")
	if got.Profile != "local" || got.Once != nil {
		t.Errorf("after ConsumeOnce: profile %q once %+v", got.Profile, got.Once)
	}
	if then, _ := s.ConsumeOnce("BLD-006", "talos"); then != "" {
		t.Errorf("a one-shot was used up twice: %q", then)
	}
}

func conformTimelines(t *testing.T, s inventory.Backend) {
	m := blade("BLD-006", "52:54:00:00:00:06")
	m.Tag = "SYS-006"
	if _, err := s.PutMachine(m); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	step := func(typ, mac string, i int) events.Event {
		return events.Event{Type: typ, MAC: mac, Time: at.Add(time.Duration(i) * time.Millisecond), Attrs: map[string]string{"i": fmt.Sprint(i)}}
	}
	stored, err := s.AppendEvents([]events.Event{step(events.DHCPOffer, "52:54:00:00:00:06", 0), step(events.Script, "52:54:00:00:00:06", 1)})
	if err != nil || len(stored) != 2 || stored[0].Machine != "BLD-006" || stored[0].Seq == 0 || stored[1].Seq <= stored[0].Seq {
		t.Fatalf("AppendEvents: %+v, %v", stored, err)
	}
	if _, err := s.AppendEvents([]events.Event{step(events.Asset, "52:54:00:00:00:06", 2), step(events.Asset, "52:54:00:00:00:06", 3)}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Events("BLD-006", 0, 0)
	if err != nil || len(all) != 4 || all[0].Attrs["i"] != "0" || all[3].Attrs["i"] != "3" {
		t.Fatalf("Events: %d, %v; want 4, oldest first", len(all), err)
	}
	// The asset tag names the same timeline.
	if byTag, err := s.Events("SYS-006", 0, 0); err != nil || len(byTag) != 4 {
		t.Errorf("Events by asset tag: %d, %v; want the machine's 4", len(byTag), err)
	}
	// With a limit, the newest steps after the sequence number, oldest
	// first (events -n 2, a reconnecting follower).
	if last, _ := s.Events("BLD-006", 0, 2); len(last) != 2 || last[0].Seq != all[2].Seq || last[1].Seq != all[3].Seq {
		t.Errorf("Events limit 2: %+v", last)
	}
	if after, _ := s.Events("BLD-006", all[1].Seq, 0); len(after) != 2 || after[0].Seq != all[2].Seq {
		t.Errorf("Events after %d: %+v", all[1].Seq, after)
	}
	// A step of an unknown MAC records a discovered machine.
	if _, err := s.AppendEvents([]events.Event{step(events.DHCPOffer, "52:54:00:00:00:0b", 4)}); err != nil {
		t.Fatal(err)
	}
	if m, err := s.MachineByMAC("52:54:00:00:00:0b"); err != nil || !m.Discovered {
		t.Errorf("an unknown MAC's step: %+v, %v; want a discovered machine", m, err)
	}
	if err := s.DeleteMachine("BLD-006"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Events("BLD-006", 0, 0); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("a deleted machine's timeline: %v, want ErrNotFound", err)
	}
}

func conformSecrets(t *testing.T, s inventory.Backend) {
	if got, err := s.KeyCanary([]byte("first"), false); err != nil || string(got) != "first" {
		t.Fatalf("KeyCanary on a new store: %q, %v", got, err)
	}
	if got, err := s.KeyCanary([]byte("second"), false); err != nil || string(got) != "first" {
		t.Errorf("KeyCanary again: %q, %v; want the first instance's", got, err)
	}
	if got, err := s.KeyCanary([]byte("third"), true); err != nil || string(got) != "third" {
		t.Errorf("KeyCanary replaced: %q, %v", got, err)
	}
	sealed := []byte{0, 1, 2, 0xff, 'x'}
	if err := s.PutSecret("munge-key", sealed); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSecret("bad name!", sealed); err == nil {
		t.Error("a bad secret name was stored")
	}
	got, err := s.SealedSecret("munge-key")
	if err != nil || !bytes.Equal(got, sealed) {
		t.Errorf("SealedSecret: %x, %v", got, err)
	}
	list, err := s.Secrets()
	if err != nil || len(list) != 1 || list[0].Name != "munge-key" || list[0].Updated.IsZero() {
		t.Errorf("Secrets: %+v, %v", list, err)
	}
	if err := s.DeleteSecret("munge-key"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SealedSecret("munge-key"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("a deleted secret: %v, want ErrNotFound", err)
	}
}

func conformImportExport(t *testing.T, s inventory.Backend) {
	doc := &inventory.Document{Version: 2,
		Systems:  []inventory.System{{Name: "ASGARD", Kind: "enclosure", Model: "BladeSystem c7000", Bays: 16}},
		Machines: []inventory.Machine{{Name: "BLD-003", Hardware: inventory.Hardware{Enclosure: "ASGARD", Bay: 3, MemoryGB: 32}}}}
	res, err := s.Import(doc, false)
	if err != nil || res.Applied || len(res.Changes) != 2 {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	if ms, _ := s.Machines(); len(ms) != 0 {
		t.Fatal("a dry run stored machines")
	}
	if _, err := s.Import(doc, true); err != nil {
		t.Fatal(err)
	}
	out, err := s.Export()
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Import(out, false)
	if err != nil || len(again.Changes) != 0 {
		t.Errorf("importing the export changes %+v, %v; want nothing", again, err)
	}
	hist, err := s.History("BLD-003")
	if err != nil || len(hist) == 0 {
		t.Errorf("History: %d changes, %v", len(hist), err)
	}
	var buf bytes.Buffer
	if size, n, err := s.WriteSnapshot(&buf); err != nil || n != 1 || size == 0 || int64(buf.Len()) != size {
		t.Errorf("WriteSnapshot: %d bytes (%d written), %d machines, %v", size, buf.Len(), n, err)
	}
}

// conformSync: SyncMachine creates a missing machine only when asked,
// indexes its MACs, and the history names the source.
func conformSync(t *testing.T, s inventory.Backend) {
	fill := func(m *inventory.Machine) error {
		m.MACs = []string{"52:54:00:00:00:03"}
		m.Enclosure, m.Bay, m.Serial = "", 0, "CZ3403YLMV"
		return nil
	}
	if _, err := s.SyncMachine("BLD-003", inventory.SourceOA, false, fill); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("SyncMachine without create on a missing machine: %v, want ErrNotFound", err)
	}
	m, err := s.SyncMachine("BLD-003", inventory.SourceOA, true, fill)
	if err != nil || m.Serial != "CZ3403YLMV" {
		t.Fatalf("SyncMachine with create: %+v, %v", m, err)
	}
	if got, err := s.MachineByMAC("52:54:00:00:00:03"); err != nil || got.Name != "BLD-003" {
		t.Errorf("the synced machine's MAC: %+v, %v", got, err)
	}
	hist, err := s.History("BLD-003")
	if err != nil || len(hist) == 0 || hist[len(hist)-1].Source != inventory.SourceOA {
		t.Errorf("History: %+v, %v; want the last change from %s", hist, err, inventory.SourceOA)
	}
}

// conformBoundedTimeline: a timeline keeps its newest steps only, whatever
// the batches.
func conformBoundedTimeline(t *testing.T, s inventory.Backend) {
	if _, err := s.PutMachine(blade("BLD-001", "52:54:00:00:00:01")); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	for batch := range 3 {
		var evs []events.Event
		for i := range 2 {
			evs = append(evs, events.Event{Type: events.Asset, MAC: "52:54:00:00:00:01", Time: at, Attrs: map[string]string{"i": fmt.Sprint(batch*2 + i)}})
		}
		if _, err := s.AppendEvents(evs); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Events("BLD-001", 0, 0)
	var got []string
	for _, ev := range all {
		got = append(got, ev.Attrs["i"])
	}
	if err != nil || fmt.Sprint(got) != "[3 4 5]" {
		t.Fatalf("timeline bounded to 3 after 6 steps: %v, %v; want [3 4 5]", got, err)
	}
}

// conformTakeover: a machine entered with a discovered MAC takes over the
// discovered record's timeline and facts, and the discovered record goes.
func conformTakeover(t *testing.T, s inventory.Backend) {
	at := time.Now().UTC()
	ev := events.Event{Type: events.DHCPOffer, MAC: "52:54:00:00:00:0c", Time: at,
		Facts: map[string]string{"serial": "CZ3401ABCD", "manufacturer": "HP"}}
	if _, err := s.AppendEvents([]events.Event{ev, {Type: events.Script, MAC: "52:54:00:00:00:0c", Time: at}}); err != nil {
		t.Fatal(err)
	}
	d, err := s.MachineByMAC("52:54:00:00:00:0c")
	if err != nil || !d.Discovered {
		t.Fatalf("discovered: %+v, %v", d, err)
	}
	m, err := s.PutMachine(blade("BLD-012", "52:54:00:00:00:0c"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Facts == nil || m.Facts.Serial != "CZ3401ABCD" {
		t.Errorf("facts after takeover: %+v", m.Facts)
	}
	if evs, err := s.Events("BLD-012", 0, 0); err != nil || len(evs) != 2 || evs[0].Machine != "BLD-012" {
		t.Errorf("timeline after takeover: %+v, %v; want the discovered record's 2 steps", evs, err)
	}
	if _, err := s.Machine(d.Name); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("discovered record %s after takeover: %v, want gone", d.Name, err)
	}
	if _, err := s.Events(d.Name, 0, 0); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("discovered timeline after takeover: %v", err)
	}
}

// conformWriteMachines: the streamed listing holds what Machines returns,
// narrowed by enclosure and label (role=R also matching the role), paged
// in name order with the next page's start, and cut to the fields asked.
func conformWriteMachines(t *testing.T, s inventory.Backend) {
	if _, err := s.Import(&inventory.Document{Version: 1, Systems: []inventory.System{{Name: "ASGARD", Kind: "enclosure", Bays: 16}}}, true); err != nil {
		t.Fatal(err)
	}
	for i, m := range []inventory.Machine{
		{Name: "BLD-001", MACs: []string{"52:54:00:00:10:01"}, Hardware: inventory.Hardware{Enclosure: "ASGARD", Role: "slurm"}},
		{Name: "BLD-002", MACs: []string{"52:54:00:00:10:02"}, Hardware: inventory.Hardware{Enclosure: "ASGARD", Labels: map[string]string{"state": "ready"}}},
		{Name: "BLD-003", MACs: []string{"52:54:00:00:10:03"}, Hardware: inventory.Hardware{Enclosure: "ASGARD", Labels: map[string]string{"role": "slurm"}}},
		{Name: "ODEN", MACs: []string{"52:54:00:00:10:04"}, Profile: "talos", Hardware: inventory.Hardware{Labels: map[string]string{"state": "ready"}}},
	} {
		if _, err := s.PutMachine(m); err != nil {
			t.Fatalf("machine %d: %v", i, err)
		}
	}
	list := func(q inventory.ListQuery) ([]map[string]any, string) {
		t.Helper()
		var buf bytes.Buffer
		next, err := s.WriteMachines(&buf, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
			t.Fatalf("%v: not a JSON array: %v\n%s", q, err, buf.Bytes())
		}
		return out, next
	}
	names := func(ms []map[string]any) string {
		var n []string
		for _, m := range ms {
			n = append(n, fmt.Sprint(m["name"]))
		}
		return strings.Join(n, " ")
	}
	all, next := list(inventory.ListQuery{})
	want, _ := s.Machines()
	wantJSON, _ := json.Marshal(want)
	var wantAny []map[string]any
	json.Unmarshal(wantJSON, &wantAny)
	if !reflect.DeepEqual(all, wantAny) || next != "" {
		t.Errorf("the listing is not Machines():\n%v\n%v (next %q)", all, wantAny, next)
	}
	for _, c := range []struct {
		q    inventory.ListQuery
		want string
		next string
	}{
		{inventory.ListQuery{Enclosure: "ASGARD"}, "BLD-001 BLD-002 BLD-003", ""},
		{inventory.ListQuery{Label: "state=ready"}, "BLD-002 ODEN", ""},
		{inventory.ListQuery{Label: "role=slurm"}, "BLD-001 BLD-003", ""},
		{inventory.ListQuery{Label: "role=slurm", Enclosure: "NONE"}, "", ""},
		{inventory.ListQuery{Limit: 2}, "BLD-001 BLD-002", "BLD-002"},
		{inventory.ListQuery{Limit: 2, After: "BLD-002"}, "BLD-003 ODEN", ""},
		{inventory.ListQuery{Limit: 1, After: "BLD-001", Enclosure: "ASGARD"}, "BLD-002", "BLD-002"},
		{inventory.ListQuery{Limit: 2, After: "BLD-002", Enclosure: "ASGARD"}, "BLD-003", ""},
		{inventory.ListQuery{After: "BLD-0025"}, "BLD-003 ODEN", ""},
	} {
		got, next := list(c.q)
		if names(got) != c.want || next != c.next {
			t.Errorf("%+v: %q next %q, want %q next %q", c.q, names(got), next, c.want, c.next)
		}
	}
	got, _ := list(inventory.ListQuery{Fields: []string{"name", "profile", "nothing"}, Label: "state=ready"})
	if fmt.Sprint(got) != "[map[name:BLD-002] map[name:ODEN profile:talos]]" {
		t.Errorf("fields: %v", got)
	}
}
