package inventory

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzImport feeds arbitrary YAML to the inventory import: parsing,
// validation, and a dry run against a database that already holds the
// example homelab. Whatever the input, nothing panics; a document that
// parses exports to YAML that parses and exports to the same bytes, and a dry run stores nothing.
func FuzzImport(f *testing.F) {
	seed, err := os.ReadFile("../../examples/homelab.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("machines:\n  - name: BLD-001\n    macs: [\"52:54:00:12:34:56\"]\n    bmc: {address: 192.0.2.10, password_secret: x}\n"))
	f.Add([]byte("version: 1\nsystems:\n  - name: ASGARD\n    kind: enclosure\n    bays: 16\nmachines:\n  - name: B1\n    enclosure: ASGARD\n    bay: 17\n"))
	f.Add([]byte("machines:\n  - &a {name: x}\n  - *a\n"))
	f.Add([]byte("parts: [{tag: P1, kind: dimm, quantity: -1}]\n"))
	s, err := Open(filepath.Join(f.TempDir(), "fuzz.db"), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	doc, err := ParseDocument(seed)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := s.Import(doc, true); err != nil {
		f.Fatal(err)
	}
	before, _ := s.Machines()
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := ParseDocument(data)
		if err != nil {
			return
		}
		out, err := doc.EncodeYAML()
		if err != nil {
			t.Fatalf("a parsed document does not encode: %v", err)
		}
		again, err := ParseDocument(out)
		if err != nil {
			t.Fatalf("export of a parsed document does not parse: %v\n%s", err, out)
		}
		out2, err := again.EncodeYAML()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("export is not stable (%v):\n%s\n---\n%s", err, out, out2)
		}
		if _, err := s.Import(doc, false); err == nil {
			after, _ := s.Machines()
			if len(after) != len(before) {
				t.Fatalf("a dry run changed the machine count from %d to %d", len(before), len(after))
			}
		}
	})
}
