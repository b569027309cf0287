package web

import (
	"testing"
	"time"
)

// The way back after signing in stays on the dashboard.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/machines/BLD-006": "/ui/machines/BLD-006",
		"":                     "/ui/",
		"https://evil.example": "/ui/",
		"//evil.example/ui/":   "/ui/",
		"/ui/\\evil":           "/ui/",
		"/api/v1/backup":       "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDurations(t *testing.T) {
	for d, want := range map[time.Duration]string{
		42 * time.Millisecond:         "+0.042 s",
		12300 * time.Millisecond:      "+12.3 s",
		4*time.Minute + 5*time.Second: "+4 min 5 s",
		3*time.Hour + 5*time.Minute:   "+3 h 5 min",
		-time.Second:                  "",
	} {
		if got := delta(d); got != want {
			t.Errorf("delta(%v) = %q, want %q", d, got, want)
		}
	}
}
