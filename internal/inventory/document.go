package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/kv"
	"go.yaml.in/yaml/v3"
)

// DocumentVersion is the version of the import/export format.
const DocumentVersion = 1

// Document is the inventory as a file: what provisiond export writes and
// provisiond import reads. Runtime data (timelines, facts, history,
// discovered machines, secrets) is not part of it.
type Document struct {
	Version  int       `json:"version" yaml:"version"`
	Systems  []System  `json:"systems,omitempty" yaml:"systems,omitempty"`
	Machines []Machine `json:"machines,omitempty" yaml:"machines,omitempty"`
	Parts    []Part    `json:"parts,omitempty" yaml:"parts,omitempty"`
	Roles    []Role    `json:"roles,omitempty" yaml:"roles,omitempty"`
}

// ParseDocument reads an inventory file in YAML. Every error names the
// line it is about; nothing is stored.
func ParseDocument(data []byte) (*Document, error) {
	var doc Document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: nothing to import")
		}
		return nil, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Version == 0 {
		doc.Version = DocumentVersion
	}
	if doc.Version != DocumentVersion {
		return nil, fmt.Errorf("version %d: this provisiond reads inventory files of version %d", doc.Version, DocumentVersion)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	lines := itemLines(&root)
	line := func(section string, i int) string {
		if l := lines[section]; i < len(l) {
			return fmt.Sprintf("line %d: ", l[i])
		}
		return ""
	}
	if err := doc.check(line); err != nil {
		return nil, err
	}
	return &doc, nil
}

// itemLines maps each top-level section to the lines of its items.
func itemLines(root *yaml.Node) map[string][]int {
	out := map[string][]int{}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return out
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		for _, item := range m.Content[i+1].Content {
			out[m.Content[i].Value] = append(out[m.Content[i].Value], item.Line)
		}
	}
	return out
}

// check validates a document on its own (before it meets the database).
func (d *Document) check(line func(section string, i int) string) error {
	names := map[string]bool{}
	for i := range d.Systems {
		s := &d.Systems[i]
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%s%w", line("systems", i), err)
		}
		if names[s.Name] {
			return fmt.Errorf("%ssystem %s is listed twice", line("systems", i), s.Name)
		}
		names[s.Name] = true
	}
	machines := map[string]bool{}
	macs := map[string]string{}
	for i := range d.Machines {
		m := &d.Machines[i]
		m.clearRuntime()
		if err := m.Validate(); err != nil {
			return fmt.Errorf("%s%w", line("machines", i), err)
		}
		if machines[m.Name] || (m.Tag != "" && machines[m.Tag]) {
			return fmt.Errorf("%smachine %s is listed twice (by name or tag)", line("machines", i), m.Name)
		}
		machines[m.Name] = true
		if m.Tag != "" && m.Tag != m.Name {
			machines[m.Tag] = true
		}
		for _, mac := range m.MACs {
			if other, ok := macs[mac]; ok {
				return fmt.Errorf("%smachine %s: MAC %s is also machine %s's", line("machines", i), m.Name, mac, other)
			}
			macs[mac] = m.Name
		}
	}
	parts := map[string]bool{}
	for i := range d.Parts {
		if err := d.Parts[i].Validate(); err != nil {
			return fmt.Errorf("%s%w", line("parts", i), err)
		}
		if parts[d.Parts[i].Tag] {
			return fmt.Errorf("%spart %s is listed twice", line("parts", i), d.Parts[i].Tag)
		}
		parts[d.Parts[i].Tag] = true
	}
	roles := map[string]bool{}
	for i := range d.Roles {
		if err := d.Roles[i].Validate(); err != nil {
			return fmt.Errorf("%s%w", line("roles", i), err)
		}
		if roles[d.Roles[i].Name] {
			return fmt.Errorf("%srole %s is listed twice", line("roles", i), d.Roles[i].Name)
		}
		roles[d.Roles[i].Name] = true
	}
	return nil
}

// clearRuntime drops what the store maintains and a file cannot set.
func (m *Machine) clearRuntime() {
	m.Facts, m.Observed, m.Discovered = nil, nil, false
	m.Created, m.Updated, m.Revision = time.Time{}, time.Time{}, 0
}

// EncodeYAML writes a document the way export does.
func (d *Document) EncodeYAML() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	enc.Close()
	return b.Bytes(), nil
}

// EntityChange is what an import does to one record.
type EntityChange struct {
	// Kind is system, machine, part or role.
	Kind string `json:"kind" yaml:"kind"`
	Name string `json:"name" yaml:"name"`
	// Action is create or update.
	Action string        `json:"action" yaml:"action"`
	Fields []FieldChange `json:"fields,omitempty" yaml:"fields,omitempty"`
}

// ImportResult says what an import did (or, in a dry run, would do).
type ImportResult struct {
	Applied   bool           `json:"applied" yaml:"applied"`
	Changes   []EntityChange `json:"changes" yaml:"changes"`
	Unchanged int            `json:"unchanged" yaml:"unchanged"`
}

var errDryRun = errors.New("dry run")

// Import brings a parsed document into the inventory. Records in the file
// are created or updated: a field the file gives replaces the stored one,
// a field it leaves out keeps its stored value. Nothing is deleted. With
// apply false nothing is written and the result says what would change.
// The import is all or nothing.
func (s *Store) Import(doc *Document, apply bool) (*ImportResult, error) {
	var res *ImportResult
	err := s.update(func(tx *kv.Tx) error {
		res = &ImportResult{Applied: apply, Changes: []EntityChange{}} // a transaction may run again
		if err := importRecords(tx, res, bucketSystems, "system", doc.Systems, func(x *System) string { return x.Name }); err != nil {
			return err
		}
		if err := importRecords(tx, res, bucketParts, "part", doc.Parts, func(x *Part) string { return x.Tag }); err != nil {
			return err
		}
		if err := importRecords(tx, res, bucketRoles, "role", doc.Roles, func(x *Role) string { return x.Name }); err != nil {
			return err
		}
		for _, in := range doc.Machines {
			in.clearRuntime()
			var oldView any
			cur := in
			if raw := tx.Bucket(bucketMachines).Get([]byte(in.Name)); raw != nil {
				old, err := getMachine(tx, in.Name)
				if err != nil {
					return err
				}
				if !old.Discovered {
					v := *old
					v.clearRuntime()
					oldView = v
					cur = v
					overlay(&cur, &in)
				}
			}
			if err := cur.Validate(); err != nil {
				return err
			}
			view := cur
			view.clearRuntime()
			fields := diffFlat(Flatten(oldView), Flatten(view))
			if oldView != nil && len(fields) == 0 {
				res.Unchanged++
				continue
			}
			if _, err := s.upsert(tx, &cur, SourceImport); err != nil {
				return err
			}
			res.record("machine", cur.Name, oldView == nil, fields)
		}
		if err := checkPlacement(tx); err != nil {
			return err
		}
		if !apply {
			return errDryRun
		}
		return nil
	})
	if errors.Is(err, errDryRun) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// record adds one record's outcome to the result.
func (r *ImportResult) record(kind, name string, created bool, fields []FieldChange) {
	switch {
	case created:
		r.Changes = append(r.Changes, EntityChange{Kind: kind, Name: name, Action: "create", Fields: fields})
	case len(fields) > 0:
		r.Changes = append(r.Changes, EntityChange{Kind: kind, Name: name, Action: "update", Fields: fields})
	default:
		r.Unchanged++
	}
}

// importRecords stores the systems, parts or roles of a file, each
// overlaid on the stored record of the same key.
func importRecords[T any, PT interface {
	*T
	Validate() error
}](tx *kv.Tx, res *ImportResult, bucket []byte, kind string, items []T, key func(*T) string) error {
	for _, in := range items {
		var old any
		cur := in
		if raw := tx.Bucket(bucket).Get([]byte(key(&in))); raw != nil {
			var stored T
			if err := json.Unmarshal(raw, &stored); err != nil {
				return fmt.Errorf("decoding stored %s %s: %w", kind, key(&in), err)
			}
			old, cur = stored, stored
			overlay(&cur, &in)
		}
		if err := PT(&cur).Validate(); err != nil {
			return err
		}
		if err := putJSON(tx, bucket, key(&cur), cur); err != nil {
			return err
		}
		res.record(kind, key(&cur), old == nil, diffFlat(Flatten(old), Flatten(cur)))
	}
	return nil
}

// checkPlacement checks that machines sit in enclosures that exist, in
// bays that exist, one to a bay.
func checkPlacement(tx *kv.Tx) error {
	encl := map[string]System{}
	err := tx.Bucket(bucketSystems).ForEach(func(k, v []byte) error {
		var s System
		if json.Unmarshal(v, &s) == nil {
			encl[s.Name] = s
			if s.Tag != "" {
				encl[s.Tag] = s
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	bays := map[string]string{}
	return tx.Bucket(bucketMachines).ForEach(func(k, v []byte) error {
		var m Machine
		if json.Unmarshal(v, &m) != nil {
			return nil
		}
		if m.Enclosure == "" {
			if m.Bay > 0 {
				return fmt.Errorf("machine %s has bay %d but no enclosure", m.Name, m.Bay)
			}
			return nil
		}
		e, ok := encl[m.Enclosure]
		if !ok {
			return fmt.Errorf("machine %s is in enclosure %s, which is not in the inventory: add it under systems (kind: enclosure)", m.Name, m.Enclosure)
		}
		if e.Kind != KindEnclosure {
			return fmt.Errorf("machine %s is in %s, which is a %s, not an enclosure", m.Name, m.Enclosure, e.Kind)
		}
		if m.Bay > e.Bays {
			return fmt.Errorf("machine %s is in bay %d of %s, which has %d bays", m.Name, m.Bay, e.Name, e.Bays)
		}
		if m.Bay > 0 {
			key := fmt.Sprintf("%s/%d", e.Name, m.Bay)
			if other, ok := bays[key]; ok {
				return fmt.Errorf("machines %s and %s are both in bay %d of %s", other, m.Name, m.Bay, e.Name)
			}
			bays[key] = m.Name
		}
		return nil
	})
}

func putJSON(tx *kv.Tx, bucket []byte, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(key), raw)
}

// overlay copies into dst every field src gives: non-zero values, and
// slices and maps that are present even when empty. Embedded structs are
// merged field by field.
func overlay[T any](dst, src *T) {
	overlayValue(reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem())
}

func overlayValue(dst, src reflect.Value) {
	t := dst.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		d, s := dst.Field(i), src.Field(i)
		switch {
		case f.Anonymous && f.Type.Kind() == reflect.Struct:
			overlayValue(d, s)
		case s.Kind() == reflect.Slice || s.Kind() == reflect.Map:
			if !s.IsNil() {
				d.Set(s)
			}
		case !s.IsZero():
			d.Set(s)
		}
	}
}

// Export returns the inventory as a document: systems, operator-entered
// machines, spare parts and roles, each sorted by name.
func (s *Store) Export() (*Document, error) {
	doc := &Document{Version: DocumentVersion}
	err := s.view(func(tx *kv.Tx) error {
		if err := loadAll(tx, bucketSystems, &doc.Systems); err != nil {
			return err
		}
		if err := loadAll(tx, bucketParts, &doc.Parts); err != nil {
			return err
		}
		if err := loadAll(tx, bucketRoles, &doc.Roles); err != nil {
			return err
		}
		var ms []Machine
		if err := loadAll(tx, bucketMachines, &ms); err != nil {
			return err
		}
		for _, m := range ms {
			if m.Discovered {
				continue
			}
			m.clearRuntime()
			doc.Machines = append(doc.Machines, m)
		}
		return nil
	})
	return doc, err
}

// loadAll decodes every record of a bucket (in key order) into out.
func loadAll[T any](tx *kv.Tx, bucket []byte, out *[]T) error {
	return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		var x T
		if err := json.Unmarshal(v, &x); err != nil {
			return fmt.Errorf("decoding stored %s record %s: %w", bucket, k, err)
		}
		*out = append(*out, x)
		return nil
	})
}

// Systems returns every system, sorted by name.
func (s *Store) Systems() ([]System, error) {
	out := []System{}
	err := s.view(func(tx *kv.Tx) error { return loadAll(tx, bucketSystems, &out) })
	return out, err
}

// Parts returns the spare-parts pool, sorted by tag.
func (s *Store) Parts() ([]Part, error) {
	out := []Part{}
	err := s.view(func(tx *kv.Tx) error { return loadAll(tx, bucketParts, &out) })
	return out, err
}

// Roles returns the roles stored in the inventory (imported), sorted by
// name. Built-in and configured roles are not stored.
func (s *Store) Roles() ([]Role, error) {
	out := []Role{}
	err := s.view(func(tx *kv.Tx) error { return loadAll(tx, bucketRoles, &out) })
	return out, err
}

// SortDocument orders a document's records by name.
func SortDocument(d *Document) {
	sort.Slice(d.Systems, func(i, j int) bool { return d.Systems[i].Name < d.Systems[j].Name })
	sort.Slice(d.Machines, func(i, j int) bool { return d.Machines[i].Name < d.Machines[j].Name })
	sort.Slice(d.Parts, func(i, j int) bool { return d.Parts[i].Tag < d.Parts[j].Tag })
	sort.Slice(d.Roles, func(i, j int) bool { return d.Roles[i].Name < d.Roles[j].Name })
}
