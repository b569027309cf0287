package api

import (
	"path/filepath"
	"testing"

	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/inventory"
)

// The audit is made once while the store and the configured roles are
// unchanged, and again after a machine changes, a role is configured, or
// on a store whose revision cannot tell.
func TestAuditCachedPerRevision(t *testing.T) {
	st := storeWithOneMachine(t)
	var roles []inventory.Role
	s := &Server{Store: st, Hardware: st, Revision: st.Revision,
		AuditConfig: func() ([]inventory.Role, []audit.Model) { return roles, nil }}
	first, _, err := s.Audit()
	if err != nil {
		t.Fatal(err)
	}
	if again, _, _ := s.Audit(); again != first {
		t.Error("an unchanged store was audited again")
	}
	if _, err := st.PutMachine(inventory.Machine{Name: "BLD-002", MACs: []string{"52:54:00:00:00:02"}}); err != nil {
		t.Fatal(err)
	}
	after, _, _ := s.Audit()
	if after == first || len(after.Machines) != 2 {
		t.Fatalf("after a machine was added: the same report (%v), %d machines", after == first, len(after.Machines))
	}
	roles = []inventory.Role{{Name: "compute", MinCores: 8}}
	if r, _, _ := s.Audit(); r == after {
		t.Error("a newly configured role kept the old audit")
	}
	s.Revision = func() (uint64, bool) { return 0, false }
	one, _, _ := s.Audit()
	if two, _, _ := s.Audit(); one == two {
		t.Error("audited from the cache on a store whose revision cannot tell")
	}
}

// The fleet is decoded once per store revision: the same list while
// nothing changed, a new one after any write, and never kept on a store
// whose revision cannot tell.
func TestMachinesCachedPerRevision(t *testing.T) {
	st := storeWithOneMachine(t)
	s := &Server{Store: st, Hardware: st, Revision: st.Revision}
	first, err := s.Machines()
	if err != nil || len(first) != 1 {
		t.Fatalf("machines: %d, %v", len(first), err)
	}
	if again, _ := s.Machines(); &again[0] != &first[0] {
		t.Error("an unchanged store's machines were decoded again")
	}
	if _, err := st.UpdateMachine("BLD-001", func(m *inventory.Machine) error { m.Role = "compute"; return nil }); err != nil {
		t.Fatal(err)
	}
	if after, _ := s.Machines(); &after[0] == &first[0] || after[0].Role != "compute" {
		t.Errorf("after a change: the same list (%v), role %q", &after[0] == &first[0], after[0].Role)
	}
	s.Revision = func() (uint64, bool) { return 0, false }
	one, _ := s.Machines()
	if two, _ := s.Machines(); &one[0] == &two[0] {
		t.Error("machines from the cache on a store whose revision cannot tell")
	}
}

// storeWithOneMachine is a new store holding BLD-001, closed when the test
// ends.
func storeWithOneMachine(t *testing.T) *inventory.Store {
	t.Helper()
	st, err := inventory.Open(filepath.Join(t.TempDir(), "provisiond.db"), inventory.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.PutMachine(inventory.Machine{Name: "BLD-001", MACs: []string{"52:54:00:00:00:01"}}); err != nil {
		t.Fatal(err)
	}
	return st
}
