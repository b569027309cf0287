package enclosure

import (
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/enclosure/oa"
	"github.com/provisiond/provisiond/internal/enclosure/oa/oatest"
	"github.com/provisiond/provisiond/internal/inventory"
)

func blades() []*oatest.Blade {
	var out []*oatest.Blade
	for _, bay := range []int{3, 6} {
		out = append(out, &oatest.Blade{Bay: bay, Product: "ProLiant BL460c Gen8", PartNumber: "641016-B21", Serial: fmt.Sprintf("CZ34030%03d", bay),
			UUID: fmt.Sprintf("641016CZ34030%03d", bay), CUUID: fmt.Sprintf("30313436-3631-5A43-3334-303330303%03d", bay), ILOAddress: fmt.Sprintf("192.0.2.%d", 100+bay),
			MACs: []string{fmt.Sprintf("9c:b6:54:88:%02x:b0", bay), fmt.Sprintf("9c:b6:54:88:%02x:b4", bay)},
			CPUs: []string{"Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz"}, CPUMHz: 2600, MemoryMB: 32768})
	}
	return out
}

// newSync is a bbolt inventory holding ASGARD (its OA a test OA) and a
// Syncer over both.
func newSync(t *testing.T, blades ...*oatest.Blade) (*Syncer, *inventory.Store, *oatest.Server) {
	t.Helper()
	store, err := inventory.Open(filepath.Join(t.TempDir(), "db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ts := oatest.New("ASGARD", "CZ372137H3", "Administrator", "s3cret", blades...)
	srv := httptest.NewTLSServer(ts.Handler())
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "https://")
	doc := &inventory.Document{Systems: []inventory.System{{Name: "ASGARD", Tag: "SYS-007", Kind: inventory.KindEnclosure, Bays: 16,
		BMC: &inventory.BMC{Address: "oa.asgard", Username: "Administrator", PasswordSecret: "asgard-oa"}}}}
	if _, err := store.Import(doc, true); err != nil {
		t.Fatal(err)
	}
	s := &Syncer{Store: store,
		Password: func(owner string, b *inventory.BMC) (string, error) { return "s3cret", nil },
		Client: func(sys *inventory.System, pw string) *oa.Client {
			return &oa.Client{Addresses: []string{addr}, User: sys.BMC.Username, Password: pw}
		}}
	return s, store, ts
}

// On an empty inventory a dry run shows two blades to create and writes
// nothing; applied, the machines have their bay, MACs, iLO as BMC, CPUs
// and memory, the history says the OA; a second sync changes nothing.
func TestSyncCreates(t *testing.T) {
	s, store, ts := newSync(t, blades()...)
	rep, err := s.Sync(t.Context(), "asgard", false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Applied || len(rep.Bays) != 2 || rep.Bays[0].Machine != "BLD-003" || rep.Bays[0].Action != "create" || rep.Bays[1].Machine != "BLD-006" {
		t.Fatalf("dry run: %+v", rep)
	}
	if ms, _ := store.Machines(); len(ms) != 0 {
		t.Fatalf("a dry run wrote %d machines", len(ms))
	}
	if n := ts.XMLReads(); n != 1 {
		t.Errorf("a sync read /xmldata %d times, want once (the login orders the OAs by that read)", n)
	}
	if _, err = s.Sync(t.Context(), "ASGARD", true); err != nil {
		t.Fatal(err)
	}
	m, err := store.Machine("BLD-003")
	if err != nil {
		t.Fatal(err)
	}
	if m.Enclosure != "ASGARD" || m.Bay != 3 || strings.Join(m.MACs, ",") != "9c:b6:54:88:03:b0,9c:b6:54:88:03:b4" || m.Serial != "CZ34030003" ||
		m.BMC == nil || m.BMC.Address != "192.0.2.103" || m.BMC.Protocol != "ipmi" || m.BMC.CipherSuite != 3 ||
		len(m.CPUs) != 2 || !strings.Contains(m.CPUs[0].Model, "E5-2670") || m.MemoryGB != 32 || m.UUID != "30313436-3631-5a43-3334-303330303003" {
		t.Errorf("BLD-003: %+v", m)
	}
	if got, err := store.MachineByMAC("9c:b6:54:88:06:b4"); err != nil || got.Name != "BLD-006" {
		t.Errorf("BLD-006 by its second MAC: %v", err)
	}
	if hist, _ := store.History("BLD-003"); len(hist) == 0 || hist[0].Source != inventory.SourceOA {
		t.Errorf("history %+v", hist)
	}
	again, err := s.Sync(t.Context(), "ASGARD", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range again.Bays {
		if b.Action != "unchanged" || len(b.Drift) != 0 {
			t.Errorf("second sync, bay %d: %+v", b.Bay, b)
		}
	}
	if n := ts.Sessions(); n != 0 {
		t.Errorf("%d OA sessions left open", n)
	}
}

// What the operator entered stays: the sync fills what the record leaves
// empty (MACs, CPUs) and reports the differences (serial, iLO address) as
// drift; a blade whose MAC is on a record elsewhere is matched to it.
func TestSyncDriftNeverOverwrites(t *testing.T) {
	s, store, _ := newSync(t, blades()...)
	store.PutMachine(inventory.Machine{Name: "BLD-003", Hardware: inventory.Hardware{Enclosure: "ASGARD", Bay: 3, Serial: "TYPO-SERIAL", MemoryGB: 4,
		BMC: &inventory.BMC{Address: "192.0.2.203", Username: "admin", PasswordSecret: "ilo"}}})
	store.PutMachine(inventory.Machine{Name: "worker-6", MACs: []string{"9c:b6:54:88:06:b0"}})
	rep, err := s.Sync(t.Context(), "ASGARD", true)
	if err != nil {
		t.Fatal(err)
	}
	b3, b6 := rep.Bays[0], rep.Bays[1]
	if b3.Machine != "BLD-003" || b3.Action != "update" || b6.Machine != "worker-6" || b6.Action != "update" {
		t.Fatalf("bays %+v", rep.Bays)
	}
	drift := map[string]string{}
	for _, d := range b3.Drift {
		drift[d.Path] = d.Old + " -> " + d.New
	}
	if drift["serial"] != "TYPO-SERIAL -> CZ34030003" || drift["bmc.address"] != "192.0.2.203 -> 192.0.2.103" || drift["memory_gb"] != "4 -> 32" {
		t.Errorf("drift %v", drift)
	}
	m, _ := store.Machine("BLD-003")
	if m.Serial != "TYPO-SERIAL" || m.BMC.Address != "192.0.2.203" || m.MemoryGB != 4 || len(m.MACs) != 2 || len(m.CPUs) != 2 {
		t.Errorf("BLD-003 after sync: %+v", m)
	}
	w, _ := store.Machine("worker-6")
	if w.Enclosure != "ASGARD" || w.Bay != 6 || len(w.MACs) != 1 {
		t.Errorf("worker-6 after sync: %+v", w)
	}
}

// A new blade whose pattern name is taken by a machine elsewhere is an
// error that says what to do; patterns render as documented.
func TestBladeNames(t *testing.T) {
	s, store, _ := newSync(t, blades()[0])
	store.PutMachine(inventory.Machine{Name: "BLD-003", MACs: []string{"52:54:00:00:00:01"}, Hardware: inventory.Hardware{Serial: "OTHER"}})
	if _, err := s.Sync(t.Context(), "ASGARD", false); err == nil || !strings.Contains(err.Error(), "blade_names") {
		t.Errorf("name taken: %v", err)
	}
	for pattern, want := range map[string]string{"BLD-{bay:03}": "BLD-007", "{enclosure}-b{bay}": "ASGARD-b7", "node{bay:2}": "node07"} {
		if got, err := bladeName(pattern, "ASGARD", 7); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %s", pattern, got, err, want)
		}
	}
	for _, bad := range []string{"BLD-{slot}", "BLD-{bay", "{bay:x}"} {
		if _, err := bladeName(bad, "ASGARD", 7); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// A record that holds the blade's SMBIOS UUID in the other byte order (as
// a booted OS printed it) is the blade's: matched, and no uuid drift.
func TestSyncMatchesEitherUUIDOrder(t *testing.T) {
	bl := blades()[0] // cUUID 30313436-3631-5A43-3334-303330303003
	s, store, _ := newSync(t, bl)
	store.PutMachine(inventory.Machine{Name: "from-the-os", Hardware: inventory.Hardware{UUID: "36343130-3136-435a-3334-303330303003"}})
	rep, err := s.Sync(t.Context(), "ASGARD", false)
	if err != nil {
		t.Fatal(err)
	}
	if b := rep.Bays[0]; b.Machine != "from-the-os" || b.Action != "update" {
		t.Fatalf("bay 3: %+v", b)
	}
	for _, d := range rep.Bays[0].Drift {
		if d.Path == "uuid" {
			t.Errorf("the swapped UUID is drift: %+v", d)
		}
	}
	if !inventory.SameUUID("30313436-3631-5A43-3334-303330303003", "36343130-3136-435a-3334-303330303003") || inventory.SameUUID("30313436-3631-5A43-3334-303330303003", "30313436-3631-5A43-3334-303330303004") {
		t.Error("SameUUID")
	}
}
