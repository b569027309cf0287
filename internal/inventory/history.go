package inventory

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/provisiond/provisiond/internal/kv"
)

// Sources of a change to a hardware record.
const (
	SourceManual    = "manual"
	SourceImport    = "import"
	SourceDiscovery = "discovery"
	// SourceOA is an enclosure's Onboard Administrator (enclosure sync).
	SourceOA = "oa"
)

// Who reported observed hardware (Observed.Source).
const (
	// ObservedAgent: provisiond agent report on the booted machine.
	ObservedAgent = "agent"
	// ObservedRedfish: the machine's Redfish BMC.
	ObservedRedfish = "redfish"
)

// maxHistory bounds each machine's change history (oldest dropped first).
const maxHistory = 500

// Change is one change to a machine's hardware record.
type Change struct {
	Time time.Time `json:"time" yaml:"time"`
	// Source is manual, import or discovery.
	Source string        `json:"source" yaml:"source"`
	Fields []FieldChange `json:"fields" yaml:"fields"`
}

// FieldChange is one field of a Change. Paths name list items by their
// key where they have one: disks[sda].size_gb, dimms[PROC 1 DIMM 3].size_gb.
type FieldChange struct {
	Path string `json:"path" yaml:"path"`
	Old  string `json:"old,omitempty" yaml:"old,omitempty"`
	New  string `json:"new,omitempty" yaml:"new,omitempty"`
}

// DiffAssets lists the fields that differ between two hardware records,
// sorted by path.
func DiffAssets(a, b *Hardware) []FieldChange {
	return diffFlat(Flatten(a), Flatten(b))
}

func diffFlat(fa, fb map[string]string) []FieldChange {
	var out []FieldChange
	for k, v := range fa {
		if w, ok := fb[k]; !ok || w != v {
			out = append(out, FieldChange{Path: k, Old: v, New: fb[k]})
		}
	}
	for k, w := range fb {
		if _, ok := fa[k]; !ok {
			out = append(out, FieldChange{Path: k, New: w})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Flatten turns a record into path = value pairs (through its JSON form).
func Flatten(v any) map[string]string {
	raw, err := json.Marshal(v)
	if err != nil {
		return map[string]string{}
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return map[string]string{}
	}
	out := map[string]string{}
	flatten(out, "", tree)
	return out
}

// listKeys are the fields that identify an item of a list, in order of
// preference.
var listKeys = []string{"slot", "device", "mac", "socket", "tag"}

func flatten(out map[string]string, prefix string, v any) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			flatten(out, join(k), x)
		}
	case []any:
		key := itemKey(t)
		for i, x := range t {
			id := strconv.Itoa(i)
			if key != "" {
				id = fmt.Sprint(x.(map[string]any)[key])
			}
			flatten(out, prefix+"["+id+"]", x)
		}
	case nil:
	case string:
		if t != "" {
			out[prefix] = t
		}
	default:
		out[prefix] = fmt.Sprint(t)
	}
}

// itemKey returns the field that identifies every item of list uniquely,
// or "" when none does (items are then numbered).
func itemKey(list []any) string {
	for _, k := range listKeys {
		seen := map[string]bool{}
		ok := len(list) > 0
		for _, x := range list {
			m, isMap := x.(map[string]any)
			if !isMap {
				return ""
			}
			id, has := m[k]
			s := fmt.Sprint(id)
			if !has || s == "" || seen[s] {
				ok = false
				break
			}
			seen[s] = true
		}
		if ok {
			return k
		}
	}
	return ""
}

func addHistory(tx *kv.Tx, name string, c Change) error {
	if len(c.Fields) == 0 {
		return nil
	}
	hb := tx.Bucket(bucketHistory)
	b, err := hb.CreateBucketIfNotExists([]byte(name))
	if err != nil {
		return err
	}
	seq, err := hb.NextSequence()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := b.Put(u64(seq), raw); err != nil {
		return err
	}
	return trim(b, maxHistory)
}

// moveHistory appends machine from's history to machine to's.
func moveHistory(tx *kv.Tx, from, to string) error {
	hb := tx.Bucket(bucketHistory)
	src := hb.Bucket([]byte(from))
	if src == nil {
		return nil
	}
	dst, err := hb.CreateBucketIfNotExists([]byte(to))
	if err != nil {
		return err
	}
	if err := src.ForEach(func(k, v []byte) error { return dst.Put(k, v) }); err != nil {
		return err
	}
	if err := recount(dst); err != nil {
		return err
	}
	return hb.DeleteBucket([]byte(from))
}

// History returns a machine's hardware changes, oldest first.
func (s *Store) History(name string) ([]Change, error) {
	out := []Change{}
	err := s.view(func(tx *kv.Tx) error {
		m, err := getMachine(tx, name)
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketHistory).Bucket([]byte(m.Name))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var c Change
			if json.Unmarshal(v, &c) == nil {
				out = append(out, c)
			}
			return nil
		})
	})
	return out, err
}
