package web

import (
	"fmt"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// delta writes the time between two steps: +0.042 s, +12.3 s, +4 min 5 s.
func delta(d time.Duration) string {
	switch {
	case d < 0:
		return ""
	case d < time.Second:
		return fmt.Sprintf("+%.3f s", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("+%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("+%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	}
	return "+" + events.Span(d)
}
