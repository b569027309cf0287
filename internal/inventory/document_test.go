package inventory

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/provisiond/provisiond/internal/kv"
)

func homelab(t *testing.T) *Document {
	t.Helper()
	data, err := os.ReadFile("../../examples/homelab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := ParseDocument(data)
	if err != nil {
		t.Fatalf("examples/homelab.yaml: %v", err)
	}
	return doc
}

func TestImportExportRoundTrip(t *testing.T) {
	s, _ := open(t, Options{})
	doc := homelab(t)

	dry, err := s.Import(doc, false)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Applied || len(dry.Changes) != len(doc.Systems)+len(doc.Machines)+len(doc.Parts)+len(doc.Roles) {
		t.Fatalf("dry run: applied=%v, %d changes", dry.Applied, len(dry.Changes))
	}
	if ms, _ := s.Machines(); len(ms) != 0 {
		t.Fatalf("a dry run stored %d machines", len(ms))
	}
	if _, err := s.Import(doc, true); err != nil {
		t.Fatal(err)
	}
	m, err := s.Machine("SYS-005") // by asset tag
	if err != nil || m.Name != "ODEN" || len(m.Disks) != 5 {
		t.Fatalf("ODEN by tag: %+v, %v", m, err)
	}
	if h, _ := s.History("BLD-007"); len(h) != 1 || h[0].Source != SourceImport {
		t.Errorf("history after import: %+v", h)
	}

	exp1, err := s.Export()
	if err != nil {
		t.Fatal(err)
	}
	y1, err := exp1.EncodeYAML()
	if err != nil {
		t.Fatal(err)
	}
	doc2, err := ParseDocument(y1)
	if err != nil {
		t.Fatalf("re-reading the export: %v\n%s", err, y1)
	}
	again, err := s.Import(doc2, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Changes) != 0 || again.Unchanged != len(doc.Systems)+len(doc.Machines)+len(doc.Parts)+len(doc.Roles) {
		t.Errorf("importing the export changed things: %+v", again.Changes)
	}
	exp2, _ := s.Export()
	y2, _ := exp2.EncodeYAML()
	if !bytes.Equal(y1, y2) {
		t.Errorf("export -> import -> export differs:\n%s\n---\n%s", y1, y2)
	}
	// The export holds everything the file said.
	SortDocument(doc)
	a, _ := json.Marshal(doc)
	b, _ := json.Marshal(exp2)
	if string(a) != string(b) {
		t.Errorf("export is not what was imported:\n%s\n%s", a, b)
	}

	// CSV: machines round-trip too.
	var buf bytes.Buffer
	if err := WriteMachinesCSV(&buf, exp2.Machines); err != nil {
		t.Fatal(err)
	}
	cdoc, err := ParseMachinesCSV(buf.Bytes())
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, buf.String())
	}
	c, _ := json.Marshal(cdoc.Machines)
	d, _ := json.Marshal(exp2.Machines)
	if string(c) != string(d) {
		t.Errorf("CSV round trip differs:\n%s\n%s", c, d)
	}
}

func TestImportChangesAndKeepsOmittedFields(t *testing.T) {
	s, _ := open(t, Options{})
	if _, err := s.Import(homelab(t), true); err != nil {
		t.Fatal(err)
	}
	m, _ := s.Machine("BLD-006")
	m.MACs = []string{"52:54:00:00:00:06"}
	if _, err := s.PutMachine(*m); err != nil {
		t.Fatal(err)
	}
	doc, err := ParseDocument([]byte("machines:\n  - name: BLD-006\n    memory_gb: 40\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Import(doc, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 1 || res.Changes[0].Action != "update" || len(res.Changes[0].Fields) != 1 ||
		res.Changes[0].Fields[0] != (FieldChange{Path: "memory_gb", Old: "8", New: "40"}) {
		t.Errorf("changes: %+v", res.Changes)
	}
	m, _ = s.Machine("BLD-006")
	if m.MemoryGB != 40 || len(m.MACs) != 1 || m.Bay != 6 || len(m.Disks) != 2 {
		t.Errorf("import lost fields it did not name: %+v", m)
	}
	h, _ := s.History("BLD-006")
	if len(h) != 3 || h[1].Source != SourceManual || h[2].Source != SourceImport {
		// import (create), manual (MAC: not hardware, so no entry), import
		var srcs []string
		for _, c := range h {
			srcs = append(srcs, c.Source)
		}
		if len(h) != 2 || h[1].Source != SourceImport {
			t.Errorf("history sources %v", srcs)
		}
	}
}

func TestImportRejectsBadFilesWithLineAndChangesNothing(t *testing.T) {
	s, _ := open(t, Options{})
	if _, err := s.Import(homelab(t), true); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Export()
	for _, tc := range []struct{ yaml, want string }{
		{"machines:\n  - name: A\n    memory_gb: [1\n", "line"},
		{"machines:\n  - name: A\n    memroy_gb: 8\n", "line 3: field memroy_gb not found"},
		{"machines:\n  - name: A\n  - name: B\n    macs: [nope]\n", "line 3: machine B"},
		{"machines:\n  - name: A\n    disks:\n      - {size_gb: 1, use: ceph}\n", "line 2: machine A: disk"},
		{"machines:\n  - name: A\n    memory_gb: 16\n    dimms: [{slot: A1, size_gb: 8}]\n", "line 2"},
		{"parts:\n  - {tag: RAM-X, kind: dimm, count: 2}\n", "line 2: part RAM-X"},
		{"version: 7\n", "version 7"},
		{"", "empty"},
		{"machines:\n  - name: BLD-001\n    enclosure: NOWHERE\n    bay: 1\n", "NOWHERE"},
		{"machines:\n  - name: BLD-001\n    bay: 2\n", "bay 2 of ASGARD"},
		{"machines:\n  - name: BLD-001\n    bay: 17\n", "16 bays"},
		{"machines:\n  - name: BLD-100\n    tag: SYS-005\n", "SYS-005"},
	} {
		doc, err := ParseDocument([]byte(tc.yaml))
		if err == nil {
			_, err = s.Import(doc, true)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.yaml, err, tc.want)
		}
	}
	after, _ := s.Export()
	a, _ := json.Marshal(before)
	b, _ := json.Marshal(after)
	if string(a) != string(b) {
		t.Error("a rejected import changed the database")
	}
}

func TestMigrateSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "provisiond.db")
	// A database as schema 1 wrote it.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"meta", "machines", "macs", "events", "secrets"} {
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		tx.Bucket([]byte("meta")).Put([]byte("schema"), u64(1))
		tx.Bucket([]byte("machines")).Put([]byte("vm1"), []byte(`{"name":"vm1","macs":["52:54:00:00:00:01"],"profile":"linux","params":{"kernel":"k"},"facts":{"manufacturer":"QEMU"},"created":"2026-01-02T03:04:05Z","updated":"2026-01-02T03:04:05Z"}`))
		tx.Bucket([]byte("macs")).Put([]byte("52:54:00:00:00:01"), []byte("vm1"))
		tx.Bucket([]byte("secrets")).Put([]byte("omni"), []byte(`{"sealed":"AAAA","updated":"2026-01-02T03:04:05Z"}`))
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := s.MachineByMAC("52:54:00:00:00:01")
	if err != nil || m.Profile != "linux" || m.Params["kernel"] != "k" || m.Facts.Manufacturer != "QEMU" || !m.Created.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("migrated machine: %+v %v", m, err)
	}
	if sec, err := s.SealedSecret("omni"); err != nil || len(sec) == 0 {
		t.Errorf("migrated secret: %v", err)
	}
	if _, err := os.Stat(path + ".schema1.bak"); err != nil {
		t.Errorf("no copy of the schema-1 database kept: %v", err)
	}
	var v uint64
	s.view(func(tx *kv.Tx) error { v = uint64(tx.Bucket(bucketMeta).Get(keySchema)[7]); return nil })
	if v != SchemaVersion {
		t.Errorf("schema %d after migration", v)
	}
	// The new buckets work.
	if _, err := s.Import(&Document{Version: 1, Parts: []Part{{Tag: "RAM-007", Kind: "dimm", Count: 1, SizeGB: 8}}}, true); err != nil {
		t.Fatal(err)
	}
}

func TestObserveFillsAndNeverOverwrites(t *testing.T) {
	s, _ := open(t, Options{})
	if _, err := s.Import(homelab(t), true); err != nil {
		t.Fatal(err)
	}
	m, _ := s.Machine("BLD-003")
	m.MACs = []string{"52:54:00:00:00:03"}
	s.PutMachine(*m)
	obs := Observed{Source: "agent", Hardware: Hardware{
		Vendor: "HP", Model: "ProLiant BL460c Gen8", Serial: "CZ3333", BIOSVersion: "I31",
		CPUs:  []CPU{{Socket: 1, Model: "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", Cores: 8, Threads: 16}, {Socket: 2, Model: "Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz", Cores: 8, Threads: 16}},
		DIMMs: []DIMM{{Slot: "PROC 1 DIMM 1", SizeGB: 16}, {Slot: "PROC 2 DIMM 1", SizeGB: 16}, {Slot: "PROC 1 DIMM 4", SizeGB: 8}, {Slot: "PROC 2 DIMM 4", SizeGB: 8}},
		Disks: []Disk{{Device: "sda", SizeGB: 300}},
		NICs:  []NIC{{MAC: "52:54:00:00:00:03", Driver: "bnx2x"}},
	}}
	got, changes, err := s.Observe("", obs)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "BLD-003" {
		t.Fatalf("report landed on %s", got.Name)
	}
	// Filled: serial, BIOS, CPUs, NICs. Not touched: memory 32 (observed
	// 48) and the two recorded disks.
	if got.Serial != "CZ3333" || !got.CPUKnown() || got.MemoryGB != 32 || len(got.DIMMs) != 0 || len(got.Disks) != 2 || len(got.NICs) != 1 {
		t.Errorf("after observe: %+v", got.Hardware)
	}
	if len(changes) == 0 {
		t.Error("no changes reported")
	}
	h, _ := s.History("BLD-003")
	if h[len(h)-1].Source != SourceDiscovery {
		t.Errorf("history: %+v", h)
	}
	// Accepting the observation makes it the record, keeping disk uses.
	acc, _, err := s.AcceptObserved("BLD-003")
	if err != nil {
		t.Fatal(err)
	}
	if acc.TotalMemoryGB() != 48 || len(acc.DIMMs) != 4 || len(acc.Disks) != 1 {
		t.Errorf("after accept: %+v", acc.Hardware)
	}
	// Unknown MAC: a discovered machine.
	d, _, err := s.Observe("", Observed{Source: "agent", Hardware: Hardware{NICs: []NIC{{MAC: "52:54:00:00:00:99"}}}})
	if err != nil || !d.Discovered {
		t.Errorf("unknown reporter: %+v %v", d, err)
	}
	if _, _, err := s.Observe("", Observed{Source: "agent"}); err == nil {
		t.Error("a report without MACs or a name was accepted")
	}
}
