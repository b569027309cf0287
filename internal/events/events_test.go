package events

import "testing"

// Details lists attributes in key order, quoting values with blanks.
func TestDetails(t *testing.T) {
	ev := Event{Attrs: map[string]string{"note": "was off: powered on", "action": "cycle", "state": "on", "tab": "a\tb"}}
	want := `action=cycle note="was off: powered on" state=on tab="a\tb"`
	if got := ev.Details(); got != want {
		t.Errorf("Details() = %s, want %s", got, want)
	}
	if got := (Event{}).Details(); got != "" {
		t.Errorf("no attributes: %q", got)
	}
}
