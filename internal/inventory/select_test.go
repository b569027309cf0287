package inventory

import (
	"errors"
	"strings"
	"testing"
)

// One selection rule for the CLI, the API and the dashboard: names or tags,
// enclosure, label (role=R also matches the role), narrowing each other.
func TestSelector(t *testing.T) {
	ms := []Machine{
		{Name: "BLD-003", Hardware: Hardware{Enclosure: "ASGARD", Bay: 3, Role: "talos", Tag: "T-3"}},
		{Name: "BLD-006", Hardware: Hardware{Enclosure: "ASGARD", Bay: 6, Labels: map[string]string{"role": "slurm"}}},
		{Name: "ODEN", Hardware: Hardware{Role: "talos"}},
	}
	for _, tc := range []struct {
		sel  Selector
		want string
	}{
		{Selector{}, "BLD-003 BLD-006 ODEN"},
		{Selector{Enclosure: "ASGARD"}, "BLD-003 BLD-006"},
		{Selector{Label: "role=talos"}, "BLD-003 ODEN"},
		{Selector{Label: "role=slurm"}, "BLD-006"},
		{Selector{Enclosure: "ASGARD", Label: "role=talos"}, "BLD-003"},
		{Selector{Machines: []string{"T-3", "ODEN"}}, "BLD-003 ODEN"},
		{Selector{Machines: []string{"ODEN"}, Enclosure: "ASGARD"}, ""},
	} {
		got, err := tc.sel.Select(ms)
		var names []string
		for _, m := range got {
			names = append(names, m.Name)
		}
		if err != nil || strings.Join(names, " ") != tc.want {
			t.Errorf("%+v: %v, %v; want %s", tc.sel, names, err, tc.want)
		}
	}
	if _, err := (Selector{Machines: []string{"BLD-099"}}).Select(ms); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "BLD-099") {
		t.Errorf("an unknown name: %v", err)
	}
}
