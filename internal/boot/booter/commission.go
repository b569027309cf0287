package booter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/provisiond/provisiond/internal/audit"
	"github.com/provisiond/provisiond/internal/bootguard"
	"github.com/provisiond/provisiond/internal/commission"
	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/profile"
	"github.com/provisiond/provisiond/internal/pxe"
)

// CommissionProfile is the built-in profile that boots the commissioning
// image.
const CommissionProfile = "commission"

// CommissionRules say what happens to machines provisiond does not know
// and how long a commissioning machine has to report.
type CommissionRules struct {
	// Auto commissions unknown machines that PXE-boot.
	Auto bool
	// ReportWithin is how long after its image went out a commissioning
	// machine has to report.
	ReportWithin time.Duration
}

// BootNICChecker says whether the commissioning image drives a boot NIC,
// by iPXE's busid fact (the image's provider).
type BootNICChecker interface {
	BootNIC(busid string) (detail string, ok bool)
}

// checkBootNIC puts a commission.step on the timeline, as the script goes
// out, when the image has no driver for the NIC the machine boots from:
// it will not report, and this says why before report_within runs out.
func (b *Booter) checkBootNIC(machine string, req pxe.ScriptRequest) {
	if b.nics == nil || req.Facts["busid"] == "" {
		return
	}
	if detail, ok := b.nics.BootNIC(req.Facts["busid"]); !ok {
		b.log.Warn("commissioning image has no driver for the boot NIC", "machine", machine, "mac", req.MAC, "busid", req.Facts["busid"])
		b.sink.Emit(events.Event{Type: events.CommissionStep, Machine: machine, MAC: req.MAC, Attrs: map[string]string{"step": "nic", "detail": detail}})
	}
}

// FactsStore records what a commissioning machine reported.
type FactsStore interface {
	Observe(name string, obs inventory.Observed) (*inventory.Machine, []inventory.FieldChange, error)
	Machines() ([]inventory.Machine, error)
}

// FactsAnswer is the boot plane's answer to a commissioning report.
type FactsAnswer struct {
	Machine string   `json:"machine"`
	Filled  int      `json:"filled"`
	Drift   []string `json:"drift,omitempty"`
	// Matches names the inventory machine the facts match (uuid, serial,
	// bay) when the reporting MAC is not in the inventory.
	Matches string `json:"matches,omitempty"`
}

// SetCommission replaces the commissioning rules (a reloaded config).
func (b *Booter) SetCommission(r CommissionRules) {
	if r.ReportWithin <= 0 {
		r.ReportWithin = 5 * time.Minute
	}
	b.commission.Store(&r)
}

func (b *Booter) commissionRules() CommissionRules {
	if r := b.commission.Load(); r != nil {
		return *r
	}
	return CommissionRules{ReportWithin: 5 * time.Minute}
}

// usesCommission reports whether profile name boots the commissioning
// image.
func (b *Booter) usesCommission(name string) bool {
	p, ok := b.profiles.Load().Get(name)
	return ok && slices.Contains(p.Uses, "commission")
}

// commissionUnknown renders the commission profile for a MAC provisiond
// does not know (commission.auto): a nonce for the report and nothing
// else; the boot is followed like any other.
func (b *Booter) commissionUnknown(ctx context.Context, req pxe.ScriptRequest) (pxe.ScriptReply, error) {
	nonce, err := b.guard.Admit(req.MAC, req.Source)
	if err != nil {
		b.refused("", req, "script", CommissionProfile, err)
		rep, err := b.unknownScript(ctx, req)
		rep.RecordFacts, rep.RecordStep = true, true
		return rep, err
	}
	m := &inventory.Machine{Name: inventory.DiscoveredName(req.MAC), MACs: []string{req.MAC}, Discovered: true, Profile: CommissionProfile}
	r, _, err := b.render(ctx, m, req.MAC, req.BaseURL, CommissionProfile, secretsWithheld, nonce)
	if err != nil {
		var nr *profile.NotReadyError
		if errors.As(err, &nr) {
			return b.waiting(nr, req, CommissionProfile, true, true), nil
		}
		return pxe.ScriptReply{Profile: CommissionProfile}, err
	}
	b.guard.Grant(req.MAC, "facts")
	b.follow(&inventory.Machine{}, CommissionProfile, req.MAC, r.Assets, false)
	b.checkBootNIC("", req)
	return pxe.ScriptReply{Body: r.Script, Profile: CommissionProfile, RecordFacts: true, RecordStep: true}, nil
}

// awaitReport starts the wait for a commissioning machine's report, once
// its image went out; past commission.report_within the timeline says it
// failed.
func (b *Booter) awaitReport(machine, mac string) {
	within := b.commissionRules().ReportWithin
	w := &reportWait{since: time.Now()}
	b.mu.Lock()
	tr, _, _ := b.tracks.Get(mac)
	if tr == nil {
		tr = &track{}
	}
	tr.report = w
	b.tracks.Put(mac, tr, w.since, w.since)
	b.mu.Unlock()
	w.timer = time.AfterFunc(within, func() {
		b.mu.Lock()
		tr, _, _ := b.tracks.Get(mac)
		mine := tr != nil && tr.report == w
		if mine {
			tr.report = nil
		}
		b.mu.Unlock()
		if !mine {
			return
		}
		b.log.Warn("commissioning machine did not report", "machine", machine, "mac", mac, "within", within)
		b.sink.Emit(events.Event{Type: events.CommissionFailed, Machine: machine, MAC: mac, Attrs: map[string]string{
			"within": within.String(),
			"reason": "no report within " + within.String() + " of the image going out: its console says why (no driver in the image for its boot NIC, or no network at all); it powers itself off once it has said so, at the latest at its deadline",
		}})
	})
}

// reportWait is a commissioning boot waiting for its report.
type reportWait struct {
	since time.Time
	timer *time.Timer
}

// reported ends mac's wait for a report.
func (b *Booter) reported(mac string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if tr, _, _ := b.tracks.Get(mac); tr != nil && tr.report != nil {
		tr.report.timer.Stop()
		tr.report = nil
	}
}

// Facts implements pxe.Scripter: a commissioning machine's report, from
// its own address with its boot's nonce, once. It lands on the machine
// that booted (a discovered one for an unknown MAC), fills what the record
// leaves empty and turns differences into drift; failed steps go on the
// timeline first.
func (b *Booter) Facts(_ context.Context, req pxe.ScriptRequest, body []byte) ([]byte, error) {
	var rep commission.Report
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		b.count("facts", "bad")
		return nil, fmt.Errorf("%w: %v", pxe.ErrBadReport, err)
	}
	m := b.machine(req.MAC)
	if m == nil || b.facts == nil {
		b.count("facts", bootguard.ReasonUnknown)
		return nil, pxe.ErrRefused
	}
	if err := b.guard.Redeem(req.MAC, req.Nonce, "facts", req.Source); err != nil {
		b.refused(named(m), req, "facts", "", err)
		return nil, pxe.ErrRefused
	}
	b.reported(req.MAC)
	for _, s := range rep.Steps {
		if !s.OK {
			b.sink.Emit(events.Event{Type: events.CommissionStep, Machine: named(m), MAC: req.MAC, Attrs: map[string]string{
				"step": s.Name, "detail": s.Detail, "seconds": strconv.FormatFloat(s.Seconds, 'f', 1, 64)}})
		}
	}
	obs := inventory.Observed{Hardware: rep.Hardware, Source: inventory.ObservedCommission, Time: time.Now(), Host: req.Source.String()}
	got, filled, err := b.facts.Observe(m.Name, obs)
	if err != nil {
		b.log.Error("recording a commissioning report failed", "machine", m.Name, "mac", req.MAC, "err", err)
		return nil, fmt.Errorf("%w: %v", pxe.ErrBadReport, err)
	}
	ans := FactsAnswer{Machine: got.Name, Filled: len(filled), Drift: audit.Drift(got)}
	attrs := map[string]string{"source": inventory.ObservedCommission, "filled": strconv.Itoa(len(filled)), "drift": strconv.Itoa(len(ans.Drift)),
		"cpus": strconv.Itoa(len(rep.Hardware.CPUs)), "memory_gb": strconv.FormatFloat(rep.Hardware.TotalMemoryGB(), 'f', -1, 64),
		"dimms": strconv.Itoa(len(rep.Hardware.DIMMs)), "disks": strconv.Itoa(len(rep.Hardware.Disks)), "nics": strconv.Itoa(len(rep.Hardware.NICs)),
		"then": rep.Then}
	if got.Discovered {
		if all, err := b.facts.Machines(); err == nil {
			if name, by := inventory.Match(all, &rep.Hardware, got.Name); name != "" {
				ans.Matches = name + " by " + by
				attrs["matches"] = ans.Matches
			}
		}
	}
	b.log.Info("commissioning report", "machine", got.Name, "mac", req.MAC, "filled", len(filled), "drift", len(ans.Drift), "matches", ans.Matches, "then", rep.Then)
	b.sink.Emit(events.Event{Type: events.FactsReported, Machine: named(got), MAC: req.MAC, Attrs: attrs})
	return json.Marshal(ans)
}

// named is the machine name an event carries: none for a discovered
// machine (the store finds it by MAC).
func named(m *inventory.Machine) string {
	if m.Discovered {
		return ""
	}
	return m.Name
}
