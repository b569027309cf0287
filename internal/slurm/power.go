package slurm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/events"
	"github.com/provisiond/provisiond/internal/inventory"
	"github.com/provisiond/provisiond/internal/slurm/hostlist"
)

// Power is what the controller needs of the BMC service: PXE as the next
// boot, and power actions (on, off, soft, cycle, status) returning the
// power state after them.
type Power interface {
	PXENext(ctx context.Context, machine string) error
	Power(ctx context.Context, machine, action string) (state string, err error)
}

// Machines lists the inventory.
type Machines interface {
	Machines() ([]inventory.Machine, error)
}

// Observer counts the controller's actions (action: resume, suspend,
// resume_failed; result: ok, error, refused).
type Observer interface {
	SlurmAction(action, result string)
}

// Config tunes the controller.
type Config struct {
	// Stagger spaces power-ons (an enclosure's power budget, "Enclosure
	// Busy"); 0 powers on at once.
	Stagger time.Duration
	// SoftGrace is how long a soft power-off may take before the power
	// is cut.
	SoftGrace time.Duration
	// Poll is how often a soft power-off's progress is read (default 5 s).
	Poll time.Duration
}

// Controller carries out slurmctld's power saving requests: it answers at
// once and powers machines on and off in the background, every step on
// the machine's timeline.
type Controller struct {
	cfg      Config
	machines Machines
	power    Power
	sink     events.Sink
	obs      Observer
	log      *slog.Logger

	resumes chan resumeJob
	mu      sync.Mutex
	gen     map[string]uint64    // per machine: bumped by every request
	pending map[string]resumeJob // resumed machines waiting for their boot
	wg      sync.WaitGroup
}

// resumeJob is a node to resume, why, and (once powered on) since when.
type resumeJob struct {
	Target
	why   string
	since time.Time
}

// New returns a Controller; Run carries out what it accepts.
func New(cfg Config, ms Machines, p Power, sink events.Sink, obs Observer, log *slog.Logger) *Controller {
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Second
	}
	if cfg.SoftGrace <= 0 {
		cfg.SoftGrace = 2 * time.Minute
	}
	return &Controller{cfg: cfg, machines: ms, power: p, sink: sink, obs: obs, log: log,
		resumes: make(chan resumeJob, 4096), gen: map[string]uint64{}, pending: map[string]resumeJob{}}
}

// Request is a power saving request as slurmctld's programs send it.
type Request struct {
	// Nodes is Slurm's hostlist expression (node-[003-005,010]).
	Nodes string `json:"nodes"`
	// PowerOff, for a failed resume, powers the machine off.
	PowerOff bool `json:"power_off,omitempty"`
	// Jobs, for a resume, are the jobs Slurm resumes the nodes for
	// (SLURM_RESUME_FILE): each node's why names its own jobs.
	Jobs []Job `json:"jobs,omitempty"`
}

// Job is one job of a resume and the nodes it needs resumed (hostlist).
type Job struct {
	ID    int    `json:"job_id"`
	Nodes string `json:"nodes"`
}

// jobsOf returns, for each node in jobs, the IDs of the jobs that want it.
func jobsOf(jobs []Job) map[string][]string {
	out := map[string][]string{}
	for _, j := range jobs {
		nodes, err := hostlist.Expand(j.Nodes)
		if err != nil {
			continue
		}
		for _, n := range nodes {
			out[n] = append(out[n], strconv.Itoa(j.ID))
		}
	}
	return out
}

// Result is what a request was accepted for.
type Result struct {
	// Accepted are the nodes being acted on, with their machines.
	Accepted []Target `json:"accepted"`
	// Refused are nodes that are no Slurm machine, by name.
	Refused []Refusal `json:"refused,omitempty"`
}

// ErrNoNodes is returned when none of a request's nodes is a Slurm machine.
var ErrNoNodes = errors.New("none of the nodes is a Slurm machine in the inventory")

func (c *Controller) resolve(action string, req Request) (*Result, error) {
	ms, err := c.machines.Machines()
	if err != nil {
		return nil, err
	}
	ts, refused, err := Resolve(req.Nodes, ms)
	if err != nil {
		return nil, err
	}
	for range refused {
		c.count(action, "refused")
	}
	res := &Result{Accepted: ts, Refused: refused}
	if len(ts) == 0 {
		return res, ErrNoNodes
	}
	return res, nil
}

func (c *Controller) count(action, result string) {
	if c.obs != nil {
		c.obs.SlurmAction(action, result)
	}
}

// bump starts a new request on machine and returns its generation: an
// older request still under way (a suspend in its grace) stops acting.
func (c *Controller) bump(machine string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen[machine]++
	return c.gen[machine]
}

func (c *Controller) current(machine string, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen[machine] == gen
}

func (c *Controller) emit(typ string, t Target, attrs map[string]string) {
	attrs["node"] = t.Node
	c.sink.Emit(events.Event{Type: typ, Machine: t.Machine, Attrs: attrs})
}

// Resume powers the request's Slurm machines on into PXE (one already on
// is left as it is), staggered, in the background; it returns once they
// are queued.
func (c *Controller) Resume(req Request) (*Result, error) {
	res, err := c.resolve("resume", req)
	if err != nil {
		return res, err
	}
	byNode := jobsOf(req.Jobs)
	for _, t := range res.Accepted {
		reason := "power saving: Slurm wants the node (ResumeProgram)"
		if ids := byNode[t.Node]; len(ids) > 0 {
			reason = "power saving: Slurm wants the node for job " + strings.Join(ids, ", ")
		}
		c.bump(t.Machine)
		c.emit(events.SlurmResume, t, map[string]string{"by": "slurmctld", "why": reason, "result": "queued"})
		select {
		case c.resumes <- resumeJob{Target: t, why: reason}:
		default:
			c.emit(events.SlurmResume, t, map[string]string{"why": reason, "result": "error", "error": "too many resumes queued"})
			c.count("resume", "error")
		}
	}
	return res, nil
}

// Suspend shuts the request's Slurm machines down through their BMCs in
// the background: a soft power-off, then the power cut after the grace
// period.
func (c *Controller) Suspend(ctx context.Context, req Request) (*Result, error) {
	res, err := c.resolve("suspend", req)
	if err != nil {
		return res, err
	}
	for _, t := range res.Accepted {
		gen := c.bump(t.Machine)
		c.mu.Lock()
		delete(c.pending, t.Machine)
		c.mu.Unlock()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.suspend(context.WithoutCancel(ctx), t, gen, "power saving: idle for SuspendTime (SuspendProgram)")
		}()
	}
	return res, nil
}

// Failed records that slurmctld gave up on the nodes' resume, and powers
// them off when the request asks.
func (c *Controller) Failed(ctx context.Context, req Request) (*Result, error) {
	res, err := c.resolve("resume_failed", req)
	if err != nil {
		return res, err
	}
	for _, t := range res.Accepted {
		c.bump(t.Machine)
		c.mu.Lock()
		job, waited := c.pending[t.Machine]
		delete(c.pending, t.Machine)
		c.mu.Unlock()
		attrs := map[string]string{"by": "slurmctld", "why": "the node did not come back within ResumeTimeout (ResumeFailProgram)",
			"power_off": strconv.FormatBool(req.PowerOff), "result": "error", "error": "Slurm marked the node down: it did not register in time"}
		if waited {
			attrs["seconds"] = strconv.FormatFloat(time.Since(job.since).Seconds(), 'f', 0, 64)
		}
		c.emit(events.SlurmResumeFailed, t, attrs)
		c.count("resume_failed", "ok")
		if req.PowerOff {
			if _, err := c.power.Power(ctx, t.Machine, "off"); err != nil {
				c.log.Warn("slurm: powering off a failed node", "machine", t.Machine, "err", err)
			}
		}
	}
	return res, nil
}

// Run carries out queued resumes, staggered, and follows resumed boots on
// the broker's events (nil: not followed) until ctx ends; then it waits
// for suspends under way.
func (c *Controller) Run(ctx context.Context, follow <-chan events.Event) {
	defer c.wg.Wait()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-follow:
			if !ok {
				follow = nil
				continue
			}
			c.booted(ev)
		case t := <-c.resumes:
			if wait := c.cfg.Stagger - time.Since(last); !last.IsZero() && wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			last = time.Now()
			c.resume(ctx, t)
		}
	}
}

func (c *Controller) resume(ctx context.Context, job resumeJob) {
	t := job.Target
	start := time.Now()
	err := c.power.PXENext(ctx, t.Machine)
	state := ""
	if err == nil {
		// On, never a cycle: slurmctld may run ResumeProgram again for a
		// node that is up (after a restart of its own), and a cycle would
		// kill its jobs. A node that is on but never registers is marked
		// down after ResumeTimeout, and ResumeFailProgram powers it off.
		state, err = c.power.Power(ctx, t.Machine, "on")
	}
	attrs := map[string]string{"why": job.why, "seconds": strconv.FormatFloat(time.Since(start).Seconds(), 'f', 1, 64)}
	if err != nil {
		attrs["result"], attrs["error"] = "error", err.Error()
		c.count("resume", "error")
		c.log.Warn("slurm: resume failed", "node", t.Node, "machine", t.Machine, "err", err)
	} else {
		attrs["result"], attrs["state"] = "ok", state
		c.count("resume", "ok")
		c.mu.Lock()
		job.since = start
		c.pending[t.Machine] = job
		c.mu.Unlock()
		c.log.Info("slurm: resumed", "node", t.Node, "machine", t.Machine)
	}
	c.emit(events.SlurmResume, t, attrs)
}

// booted closes a resumed machine's wait on its booted callback: the
// seconds from the resume are what slurm config's ResumeTimeout is from.
func (c *Controller) booted(ev events.Event) {
	if ev.Type != events.Booted || ev.Machine == "" {
		return
	}
	c.mu.Lock()
	job, ok := c.pending[ev.Machine]
	delete(c.pending, ev.Machine)
	c.mu.Unlock()
	if !ok {
		return
	}
	c.emit(events.SlurmResumed, job.Target, map[string]string{"why": job.why,
		"seconds": strconv.FormatFloat(ev.Time.Sub(job.since).Seconds(), 'f', 0, 64), "status": ev.Attrs["status"]})
}

func (c *Controller) suspend(ctx context.Context, t Target, gen uint64, reason string) {
	start := time.Now()
	attrs := map[string]string{"by": "slurmctld", "why": reason}
	finish := func(how string, err error) {
		attrs["how"] = how
		attrs["seconds"] = strconv.FormatFloat(time.Since(start).Seconds(), 'f', 1, 64)
		if err != nil {
			attrs["result"], attrs["error"] = "error", err.Error()
			c.count("suspend", "error")
			c.log.Warn("slurm: suspend failed", "node", t.Node, "machine", t.Machine, "err", err)
		} else {
			attrs["result"] = "ok"
			c.count("suspend", "ok")
			c.log.Info("slurm: suspended", "node", t.Node, "machine", t.Machine, "how", how)
		}
		c.emit(events.SlurmSuspend, t, attrs)
	}
	state, err := c.power.Power(ctx, t.Machine, "soft")
	if err != nil {
		// A BMC that refuses the soft power-off (or a machine with no
		// ACPI) still has to go off: Slurm counts on it.
		c.log.Warn("slurm: soft power-off refused; cutting the power", "node", t.Node, "machine", t.Machine, "err", err)
		_, offErr := c.power.Power(ctx, t.Machine, "off")
		finish("hard: the soft power-off failed: "+err.Error(), offErr)
		return
	}
	deadline := start.Add(c.cfg.SoftGrace)
	for state != "off" && time.Now().Before(deadline) {
		time.Sleep(c.cfg.Poll)
		if !c.current(t.Machine, gen) {
			finish("soft", errors.New("a newer request for the node came while it shut down; left to it"))
			return
		}
		if state, err = c.power.Power(ctx, t.Machine, "status"); err != nil {
			finish("soft", fmt.Errorf("reading the power state: %w", err))
			return
		}
	}
	if state == "off" {
		finish("soft", nil)
		return
	}
	if !c.current(t.Machine, gen) {
		finish("soft", errors.New("a newer request for the node came while it shut down; left to it"))
		return
	}
	_, err = c.power.Power(ctx, t.Machine, "off")
	finish(fmt.Sprintf("hard: still on after %s", c.cfg.SoftGrace), err)
}
