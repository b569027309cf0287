package inventory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// A listing longer than one batch (listBatch machines copied out of one
// read) holds every machine once, in order, and pages across the batches.
func TestWriteMachinesAcrossBatches(t *testing.T) {
	s, _ := open(t, Options{})
	doc := &Document{Version: 1}
	for i := range 2*listBatch + 10 {
		m := Machine{Name: fmt.Sprintf("m-%04d", i), MACs: []string{fmt.Sprintf("52:54:00:01:%02x:%02x", i/256, i%256)}}
		if i%3 == 0 {
			m.Labels = map[string]string{"pick": "yes"}
		}
		doc.Machines = append(doc.Machines, m)
	}
	if _, err := s.Import(doc, true); err != nil {
		t.Fatal(err)
	}
	names := func(q ListQuery) ([]string, string) {
		var buf bytes.Buffer
		next, err := s.WriteMachines(&buf, q)
		if err != nil {
			t.Fatal(err)
		}
		var ms []Machine
		if err := json.Unmarshal(buf.Bytes(), &ms); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out, next
	}
	all, _ := names(ListQuery{})
	if len(all) != len(doc.Machines) {
		t.Fatalf("%d machines listed of %d", len(all), len(doc.Machines))
	}
	for i, n := range all {
		if n != doc.Machines[i].Name {
			t.Fatalf("machine %d is %s, want %s", i, n, doc.Machines[i].Name)
		}
	}
	var paged []string
	after := ""
	for pages := 0; ; pages++ {
		page, next := names(ListQuery{Label: "pick=yes", Limit: 100, After: after})
		paged = append(paged, page...)
		if next == "" {
			break
		}
		if next != page[len(page)-1] || pages > 10 {
			t.Fatalf("next %q after a page ending %q", next, page[len(page)-1])
		}
		after = next
	}
	if want := (len(doc.Machines) + 2) / 3; len(paged) != want || paged[1] != "m-0003" {
		t.Errorf("%d labelled machines paged (%v…), want %d", len(paged), paged[:2], want)
	}
}
