package slurm

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
)

type inv []inventory.Machine

func (i inv) Machines() ([]inventory.Machine, error) { return i, nil }

// bmcRec records power calls; machines in offAfterSoft go off on a soft
// power-off, the others stay on until the power is cut.
type bmcRec struct {
	mu           sync.Mutex
	calls        []string
	at           []time.Time
	offAfterSoft map[string]bool
	refuseSoft   map[string]bool
	state        map[string]string
}

func (b *bmcRec) PXENext(_ context.Context, m string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls, b.at = append(b.calls, m+" pxe"), append(b.at, time.Now())
	return nil
}

func (b *bmcRec) Power(_ context.Context, m, action string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if action != "status" {
		b.calls, b.at = append(b.calls, m+" "+action), append(b.at, time.Now())
	}
	switch action {
	case "cycle", "on":
		b.state[m] = "on"
	case "off":
		b.state[m] = "off"
	case "soft":
		if b.refuseSoft[m] {
			return "", errors.New("the BMC refused the request")
		}
		if b.offAfterSoft[m] {
			b.state[m] = "off"
		}
	}
	return b.state[m], nil
}

func (b *bmcRec) log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.calls, ", ")
}

type sinkRec struct {
	mu  sync.Mutex
	evs []events.Event
}

func (s *sinkRec) Emit(ev events.Event) { s.mu.Lock(); s.evs = append(s.evs, ev); s.mu.Unlock() }

func (s *sinkRec) find(typ, machine, key, val string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range s.evs {
		if ev.Type == typ && ev.Machine == machine && ev.Attrs[key] == val {
			return true
		}
	}
	return false
}

func nodes() inv {
	return inv{
		{Name: "BLD-003", Profile: "slurm", Hostname: "node-003"},
		{Name: "BLD-004", Profile: "slurm", Hostname: "node-004"},
		{Name: "BLD-005", Profile: "slurm", Params: map[string]string{"node_name": "gpu-005"}},
		{Name: "BLD-006", Profile: "talos", Hostname: "node-006"},
		{Name: "BLD-007", Profile: "commission", Once: &inventory.Once{Then: "slurm"}, Hostname: "node-007"},
	}
}

// Nodes are found by the name the slurm profile gives them; machines on
// another profile and unknown names are refused by name.
func TestResolve(t *testing.T) {
	ts, refused, err := Resolve("node-[003-004],gpu-005,node-00[6-9],node-003", nodes())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tg := range ts {
		got = append(got, tg.Node+"="+tg.Machine)
	}
	if strings.Join(got, " ") != "node-003=BLD-003 node-004=BLD-004 gpu-005=BLD-005 node-007=BLD-007" {
		t.Errorf("accepted %v", got)
	}
	var ref []string
	for _, r := range refused {
		ref = append(ref, r.Node+": "+r.Reason)
	}
	want := `node-006: machine BLD-006 boots profile "talos", not slurm|node-008: no machine in the inventory is this Slurm node|node-009: no machine in the inventory is this Slurm node`
	if strings.Join(ref, "|") != want {
		t.Errorf("refused:\n%s\nwant\n%s", strings.Join(ref, "|"), want)
	}
	if _, _, err := Resolve("node-[003", nodes()); err == nil {
		t.Error("a bad hostlist was accepted")
	}
}

func newCtl(t *testing.T, cfg Config, b *bmcRec) (*Controller, *sinkRec, context.CancelFunc) {
	s := &sinkRec{}
	c := New(cfg, nodes(), b, s, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, s, cancel
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Resume answers at once; power-ons follow PXE next, spaced by Stagger;
// nothing is done to a refused node.
func TestResumeStaggered(t *testing.T) {
	b := &bmcRec{state: map[string]string{}}
	c, s, _ := newCtl(t, Config{Stagger: 300 * time.Millisecond}, b)
	res, err := c.Resume(Request{Nodes: "node-[003-004,006]"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Accepted) != 2 || len(res.Refused) != 1 || res.Refused[0].Node != "node-006" {
		t.Fatalf("result %+v", res)
	}
	waitFor(t, "both resumes", func() bool { return s.find(events.SlurmResume, "BLD-004", "result", "ok") })
	if got := b.log(); got != "BLD-003 pxe, BLD-003 on, BLD-004 pxe, BLD-004 on" {
		t.Errorf("BMC calls: %s", got)
	}
	b.mu.Lock()
	gap := b.at[2].Sub(b.at[1])
	b.mu.Unlock()
	if gap < 250*time.Millisecond {
		t.Errorf("second power-on %s after the first, want the stagger (300ms)", gap)
	}
	if !s.find(events.SlurmResume, "BLD-003", "node", "node-003") {
		t.Errorf("no resume step on BLD-003's timeline: %+v", s.evs)
	}
	// Each node's why names its own jobs (SLURM_RESUME_FILE).
	if _, err := c.Resume(Request{Nodes: "node-00[3-4],gpu-005", Jobs: []Job{{ID: 11, Nodes: "node-00[3-4]"}, {ID: 12, Nodes: "node-004"}}}); err != nil {
		t.Fatal(err)
	}
	for m, want := range map[string]string{"BLD-003": "power saving: Slurm wants the node for job 11", "BLD-004": "power saving: Slurm wants the node for job 11, 12",
		"BLD-005": "power saving: Slurm wants the node (ResumeProgram)"} {
		if !s.find(events.SlurmResume, m, "why", want) {
			t.Errorf("%s: no resume with why %q", m, want)
		}
	}
	if _, err := c.Resume(Request{Nodes: "node-006"}); err != ErrNoNodes {
		t.Errorf("only a talos machine: %v", err)
	}
}

// A suspend shuts the machine down softly; one that stays on has its power
// cut after the grace; a resume during the grace keeps the power on.
func TestSuspendSoftThenHard(t *testing.T) {
	b := &bmcRec{state: map[string]string{"BLD-003": "on", "BLD-004": "on", "BLD-005": "on"}, offAfterSoft: map[string]bool{"BLD-003": true}}
	c, s, _ := newCtl(t, Config{SoftGrace: 300 * time.Millisecond, Poll: 20 * time.Millisecond}, b)
	if _, err := c.Suspend(context.Background(), Request{Nodes: "node-00[3-4]"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both suspends", func() bool {
		return s.find(events.SlurmSuspend, "BLD-003", "result", "ok") && s.find(events.SlurmSuspend, "BLD-004", "result", "ok")
	})
	if !s.find(events.SlurmSuspend, "BLD-003", "how", "soft") || !s.find(events.SlurmSuspend, "BLD-004", "how", "hard: still on after 300ms") {
		t.Errorf("how they went off: %+v", s.evs)
	}
	if got := b.log(); !strings.Contains(got, "BLD-004 off") || strings.Contains(got, "BLD-003 off") {
		t.Errorf("BMC calls: %s", got)
	}
	// BLD-005 stays on after its soft power-off; Slurm wants it back
	// before the grace ends: its power is not cut.
	if _, err := c.Suspend(context.Background(), Request{Nodes: "gpu-005"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resume(Request{Nodes: "gpu-005"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the suspend to step aside", func() bool { return s.find(events.SlurmSuspend, "BLD-005", "result", "error") })
	time.Sleep(400 * time.Millisecond)
	if got := b.log(); strings.Contains(got, "BLD-005 off") {
		t.Errorf("the power was cut after a resume: %s", got)
	}
}

// A BMC that refuses the soft power-off gets the hard one at once.
func TestSuspendSoftRefused(t *testing.T) {
	b := &bmcRec{state: map[string]string{"BLD-003": "on"}, refuseSoft: map[string]bool{"BLD-003": true}}
	c, s, _ := newCtl(t, Config{SoftGrace: time.Minute}, b)
	if _, err := c.Suspend(context.Background(), Request{Nodes: "node-003"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the suspend", func() bool { return s.find(events.SlurmSuspend, "BLD-003", "result", "ok") })
	if got := b.log(); got != "BLD-003 soft, BLD-003 off" {
		t.Errorf("BMC calls: %s", got)
	}
	if !s.find(events.SlurmSuspend, "BLD-003", "how", "hard: the soft power-off failed: the BMC refused the request") {
		t.Errorf("events %+v", s.evs)
	}
}

// A failed resume is on the timeline; with power_off the machine goes off.
func TestResumeFailed(t *testing.T) {
	b := &bmcRec{state: map[string]string{"BLD-003": "on"}}
	c, s, _ := newCtl(t, Config{}, b)
	if _, err := c.Failed(context.Background(), Request{Nodes: "node-003", PowerOff: true}); err != nil {
		t.Fatal(err)
	}
	if !s.find(events.SlurmResumeFailed, "BLD-003", "power_off", "true") || b.log() != "BLD-003 off" {
		t.Errorf("events %+v, calls %s", s.evs, b.log())
	}
}

// The booted callback of a resumed machine closes its resume with the
// seconds it took.
func TestResumedOnCallback(t *testing.T) {
	b := &bmcRec{state: map[string]string{}}
	s := &sinkRec{}
	c := New(Config{}, nodes(), b, s, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	follow := make(chan events.Event, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx, follow)
	c.Resume(Request{Nodes: "node-003"})
	waitFor(t, "the resume", func() bool { return s.find(events.SlurmResume, "BLD-003", "result", "ok") })
	follow <- events.Event{Type: events.Booted, Machine: "BLD-003", Time: time.Now().Add(90 * time.Second), Attrs: map[string]string{"status": "slurmd-started"}}
	waitFor(t, "resumed", func() bool { return s.find(events.SlurmResumed, "BLD-003", "status", "slurmd-started") })
	if !s.find(events.SlurmResumed, "BLD-003", "seconds", "90") {
		t.Errorf("events %+v", s.evs)
	}
}
