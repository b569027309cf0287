// Package recorder writes the protocol servers' boot steps to the
// machines' timelines in batches and publishes them to live followers.
package recorder

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/events"
)

// Recorder queues timeline events from the protocol servers and writes them
// to the inventory in batches (one transaction, one fsync per batch), then
// publishes them to live followers. A full queue drops and counts rather
// than stalling DHCP or TFTP. (A flood of repeated DHCP requests is
// thinned out before it gets here: the ProxyDHCP server reports an answer
// that repeats one of the last second once.)
type Recorder struct {
	ch      chan events.Event
	store   Timelines
	broker  *events.Broker
	log     *slog.Logger
	dropped atomic.Uint64
	done    chan struct{}
}

// Timelines is where the steps are stored: AppendEvents stores a batch in
// one transaction and returns the events as stored (with their machine and
// sequence number); steps it does not keep are left out.
type Timelines interface {
	AppendEvents(batch []events.Event) ([]events.Event, error)
}

// batchWindow is the least time between two of the recorder's writes:
// events that come sooner wait for it (a live follower sees them that much
// later at most).
const batchWindow = 20 * time.Millisecond

// New returns a recorder with a queue of size n.
func New(store Timelines, broker *events.Broker, n int, log *slog.Logger) *Recorder {
	return &Recorder{ch: make(chan events.Event, n), store: store, broker: broker, log: log,
		done: make(chan struct{})}
}

// Emit implements events.Sink.
func (r *Recorder) Emit(ev events.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	select {
	case r.ch <- ev:
	default:
		r.dropped.Add(1)
	}
}

// Dropped returns how many events were dropped because the queue was full.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

// Run writes events until ctx ends, then writes what is queued and returns.
func (r *Recorder) Run(ctx context.Context) {
	defer close(r.done)
	batch := make([]events.Event, 0, 256)
	window := time.NewTimer(0)
	defer window.Stop()
	var last time.Time // the last write
	for {
		select {
		case ev := <-r.ch:
			// A batch is what is queued; but within batchWindow of the
			// last write, what comes until the window ends: a busy
			// network costs at most a commit (and an fsync) per window
			// rather than one per step, and a quiet one no delay. The
			// recorder sleeps through the window and then takes what
			// queued up: a step sent meanwhile wakes nobody.
			batch = append(batch[:0], ev)
			if wait := batchWindow - time.Since(last); wait > 0 {
				window.Reset(wait)
				select {
				case <-window.C:
				case <-ctx.Done():
				}
			}
		drain:
			for len(batch) < cap(batch) {
				select {
				case ev := <-r.ch:
					batch = append(batch, ev)
				default:
					break drain
				}
			}
			r.write(batch)
			last = time.Now()
		case <-ctx.Done():
			for {
				select {
				case ev := <-r.ch:
					r.write([]events.Event{ev})
				default:
					return
				}
			}
		}
	}
}

// Wait blocks until Run has returned.
func (r *Recorder) Wait() { <-r.done }

func (r *Recorder) write(batch []events.Event) {
	stored, err := r.store.AppendEvents(batch)
	if err != nil {
		r.log.Error("storing timeline events failed", "count", len(batch), "err", err)
		return
	}
	for _, ev := range stored {
		r.broker.Publish(ev)
	}
}
