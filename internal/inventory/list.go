package inventory

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"

	"github.com/tidwall/gjson"

	"github.com/provisiond/provisiond/internal/kv"
)

// ListQuery narrows a listing of machines: the enclosure and label of its
// Selector (names are Select's, which must say which were not found), a
// page of at most Limit machines after the machine named After, in name
// order, and the top-level Fields of each record to keep.
type ListQuery struct {
	Enclosure, Label string
	// After starts the page after this name ("" at the first machine).
	After string
	// Limit bounds the page (0: every machine after After).
	Limit int
	// Fields keeps these JSON fields of each record, in this order (nil:
	// the whole record).
	Fields []string
}

// WriteMachines writes the machines q picks to w as a JSON array, one
// record a line, straight from the stored records in one read of the
// store: the selector and the fields read single fields of a record
// (gjson) and decode nothing. It returns the last name written when the page is full and more
// may follow (the next page's After), else "". An error after the first
// byte leaves w holding a truncated array: the caller must not pass it on
// as whole.
func (s *Store) WriteMachines(out io.Writer, q ListQuery) (next string, err error) {
	sel := Selector{Enclosure: q.Enclosure, Label: q.Label}
	fields := encodeFields(q.Fields)
	w := bufio.NewWriterSize(out, 64<<10)
	w.WriteString("[")
	n, after, last, more := 0, q.After, "", true
	for more {
		// A batch at a time, copied out of a short read: a slow client
		// never holds a read transaction open (bbolt cannot grow its file
		// while one is).
		var batch bytes.Buffer
		more = false
		err := s.view(func(tx *kv.Tx) error {
			var from []byte
			if after != "" {
				from = []byte(after)
			}
			taken := 0
			return tx.Bucket(bucketMachines).Scan(from, false, func(k, v []byte) (bool, error) {
				if after != "" && string(k) == after {
					return true, nil
				}
				if taken == listBatch {
					more = true
					return false, nil
				}
				after = string(k)
				if !sel.matchesRecord(v) {
					return true, nil
				}
				if q.Limit > 0 && n == q.Limit {
					// One more machine matches: the page is full.
					next, more = last, false
					return false, nil
				}
				if n > 0 {
					batch.WriteString(",")
				}
				batch.WriteString("\n")
				writeFields(&batch, v, fields)
				n++
				taken++
				last = string(k)
				return true, nil
			})
		})
		if err != nil {
			return "", err
		}
		if _, err := w.Write(batch.Bytes()); err != nil {
			return "", err
		}
	}
	if n > 0 {
		w.WriteString("\n")
	}
	w.WriteString("]\n")
	return next, w.Flush()
}

// listBatch is how many machines WriteMachines copies out of one read.
const listBatch = 256

// matchesRecord is Matches on a stored record (its JSON), reading only
// the fields it needs.
func (s Selector) matchesRecord(v []byte) bool {
	return s.match(func(f string) string { return gjson.GetBytes(v, f).String() },
		func(k string) string { return gjson.GetBytes(v, "labels."+gjson.Escape(k)).String() })
}

// field is a field to keep: its path in a record and its JSON name.
type field struct {
	path string
	name []byte
}

// encodeFields prepares the fields to keep once per listing (nil: all).
func encodeFields(names []string) []field {
	if names == nil {
		return nil
	}
	out := make([]field, len(names))
	for i, n := range names {
		name, _ := json.Marshal(n)
		out[i] = field{path: gjson.Escape(n), name: name}
	}
	return out
}

// writeFields writes record v, or only its fields when some are named.
func writeFields(w *bytes.Buffer, v []byte, fields []field) {
	if fields == nil {
		w.Write(v)
		return
	}
	w.WriteString("{")
	first := true
	for _, f := range fields {
		r := gjson.GetBytes(v, f.path)
		if !r.Exists() {
			continue
		}
		if !first {
			w.WriteString(",")
		}
		first = false
		w.Write(f.name)
		w.WriteString(":")
		w.WriteString(r.Raw)
	}
	w.WriteString("}")
}
