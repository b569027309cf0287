package pxe

import "time"

// Observer is told what the protocol servers did, for metrics. Decisions
// and results are short lowercase words; see each server for its set.
type Observer interface {
	// DHCP reports one received packet: its message type (discover,
	// request, …; "unknown" when it did not parse) and the decision
	// (offer, ack, ignored_non_pxe, ignored_not_ours, ignored_decision,
	// malformed, error).
	DHCP(msgType, decision string)
	// TFTP reports one read request: result (ok, failed, size_query,
	// refused, not_found, busy), bytes sent and how long it took.
	TFTP(result string, bytes int64, d time.Duration)
	// HTTP reports one boot endpoint request: kind (first_stage, script,
	// overlay, asset, ipxe, callback), status, bytes and duration.
	HTTP(kind string, status int, bytes int64, d time.Duration)
	// Dropped reports a request dropped because a bound was reached.
	Dropped(server, reason string)
}

type nopObserver struct{}

func (nopObserver) DHCP(string, string)                    {}
func (nopObserver) TFTP(string, int64, time.Duration)      {}
func (nopObserver) HTTP(string, int, int64, time.Duration) {}
func (nopObserver) Dropped(string, string)                 {}
