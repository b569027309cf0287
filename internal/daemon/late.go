package daemon

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/boot/booter"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/events/recorder"
	"github.com/provisiond/provisiond/internal/metrics"
	"github.com/provisiond/provisiond/internal/pxe"
)

// late lets the protocol servers, built before the store opens, reach the
// Booter and the Recorder once they exist. Until then events are dropped
// and no request is served (the servers are not started before).
type late struct {
	booter  atomic.Pointer[booter.Booter]
	rec     atomic.Pointer[recorder.Recorder]
	metrics *metrics.Metrics
}

// Emit implements events.Sink: the event is counted and stored (and
// published to followers).
func (l *late) Emit(ev events.Event) {
	r := l.rec.Load()
	if r == nil {
		return
	}
	l.metrics.Emit(ev)
	r.Emit(ev)
}

// Report implements events.Reporter: a boot step from a protocol server or
// the BMC service is stored like any event, and the boot tracker acts on it
// (chainloads, the boot guard, boot.done, one-shot assignments).
func (l *late) Report(s events.Step) {
	if s.Time.IsZero() {
		s.Time = time.Now().UTC()
	}
	l.Emit(s.Event())
	if b := l.booter.Load(); b != nil {
		b.Report(s)
	}
}

// DecideDHCP implements pxe.Decider.
func (l *late) DecideDHCP(ctx context.Context, req boot.Request) boot.DHCPDecision {
	return l.booter.Load().DecideDHCP(ctx, req)
}

// FirstStage implements pxe.Scripter.
func (l *late) FirstStage(ctx context.Context, mac, baseURL string) ([]byte, error) {
	return l.booter.Load().FirstStage(ctx, mac, baseURL)
}

// Script implements pxe.Scripter.
func (l *late) Script(ctx context.Context, req pxe.ScriptRequest) (pxe.ScriptReply, error) {
	return l.booter.Load().Script(ctx, req)
}

// Callback implements pxe.Scripter.
func (l *late) Callback(ctx context.Context, req pxe.ScriptRequest) error {
	return l.booter.Load().Callback(ctx, req)
}

// Facts implements pxe.Scripter.
func (l *late) Facts(ctx context.Context, req pxe.ScriptRequest, body []byte) ([]byte, error) {
	return l.booter.Load().Facts(ctx, req, body)
}

// Overlay implements pxe.Scripter.
func (l *late) Overlay(ctx context.Context, req pxe.ScriptRequest) ([]byte, string, error) {
	return l.booter.Load().Overlay(ctx, req)
}

// Config implements pxe.Scripter.
func (l *late) Config(ctx context.Context, req pxe.ScriptRequest) ([]byte, string, error) {
	return l.booter.Load().Config(ctx, req)
}
