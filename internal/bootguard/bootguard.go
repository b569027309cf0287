// Package bootguard decides which boot-plane requests may receive a
// machine's secrets or change its state. Firmware cannot authenticate, so
// the guard binds what can be bound:
//
//   - the request's source address to the MAC it names (the kernel's
//     neighbour table, or the address that MAC's own DHCP exchange used in
//     this boot; routed sources only from subnets the operator trusts);
//   - the request to a boot provisiond saw start (a PXE DHCP exchange or a
//     BMC action, within a window);
//   - what a served script hands out (overlay, callback, facts) to a
//     per-boot nonce, each use of it once.
//
// A secret-bearing response is served once per boot; a second request in
// the same boot is refused and raises an alarm, so a host that took the
// machine's MAC is seen even when it cannot be stopped.
//
// The guard keeps no secrets and does no I/O of its own: the neighbour
// table, the learned addresses and, with several instances, the boots they
// share (Config.Shared, in etcd) are what it is given. With shared boots a
// boot that starts on one instance can finish on another: its nonce, what
// its script granted and what was served are the same on both.
package bootguard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/bounded"
)

// Reasons a request is refused; they are metric labels and timeline words.
const (
	// ReasonNoBoot: no boot of this MAC started within the window.
	ReasonNoBoot = "no_boot"
	// ReasonSource: the source address does not belong to the MAC.
	ReasonSource = "source"
	// ReasonNonce: the nonce is missing, wrong or expired.
	ReasonNonce = "nonce"
	// ReasonAgain: the response was already served in this boot (alarm).
	ReasonAgain = "again"
	// ReasonAssetKey: the boot did not report the machine's asset key.
	ReasonAssetKey = "asset_key"
	// ReasonProfile: a profile outside the machine's menu was asked for.
	ReasonProfile = "profile"
	// ReasonUnknown: the MAC is not a machine in the inventory.
	ReasonUnknown = "unknown"
)

// Refusal is why a request gets no secret or changes nothing. Alarm marks
// a request that may come from a host impersonating the machine. The
// caller counts refusals (it knows what was asked for); the guard counts
// only alarms.
type Refusal struct {
	Reason string
	Detail string
	Alarm  bool
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Detail }

// Config sets the guard's rules and what it reads.
type Config struct {
	// Window is how long after a boot starts its secrets may be served
	// (10 minutes when zero).
	Window time.Duration
	// NonceTTL is how long a boot's nonce stays good for the callback
	// and facts, which come once the OS is up (1 hour when zero).
	NonceTTL time.Duration
	// Trusted are routed source networks (a DHCP relay's far side, a
	// NAT) whose requests are taken to come from the MAC they name: no
	// neighbour entry can tell.
	Trusted []netip.Prefix
	// Neighbor looks an IPv4 address up in the kernel's neighbour table
	// (ok false: no entry).
	Neighbor func(ip netip.Addr) (mac string, ok bool)
	// Learned returns the MAC that used ip in a DHCP exchange
	// provisiond saw, and when (ok false: none).
	Learned func(ip netip.Addr) (mac string, at time.Time, ok bool)
	// MaxBoots bounds the boots followed at once (16,384 when zero: a
	// storm of every machine of a 10,000-machine inventory at once fits);
	// the oldest are forgotten first.
	MaxBoots int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Shared keeps the boots where every instance sharing the inventory
	// sees them (nil: this process only).
	Shared Shared
}

// Boot is one boot of a machine as the guard follows it.
type Boot struct {
	Started time.Time `json:"started"`
	Cause   string    `json:"cause"`
	Nonce   string    `json:"nonce"`
	// Granted are the nonce uses the served script handed out, Used
	// those redeemed, Served the secret-bearing responses served.
	Granted map[string]bool `json:"granted,omitempty"`
	Used    map[string]bool `json:"used,omitempty"`
	Served  map[string]bool `json:"served,omitempty"`
}

func (b *Boot) clone() *Boot {
	c := *b
	c.Granted, c.Used, c.Served = maps.Clone(b.Granted), maps.Clone(b.Used), maps.Clone(b.Served)
	return &c
}

// Shared is where instances sharing an inventory keep the boots (etcd).
// The DHCP path never waits on it: a start is written in the background.
type Shared interface {
	// Start stores b as mac's boot for ttl unless a boot of mac started
	// less than same before it (another instance answered the same DHCP
	// exchange); it returns the boot that stands.
	Start(ctx context.Context, mac string, b Boot, same, ttl time.Duration) (Boot, error)
	// Load returns mac's boot (ok false: none).
	Load(ctx context.Context, mac string) (b Boot, ok bool, err error)
	// Change runs fn on mac's boot and stores the result in one atomic
	// step; an error from fn stores nothing and is returned. ok is false
	// when mac has no boot.
	Change(ctx context.Context, mac string, fn func(*Boot) error) (ok bool, err error)
}

// sameBoot is how close two starts of one MAC are to be one boot seen by
// two instances (the same DHCP exchange).
const sameBoot = 30 * time.Second

// sharedTimeout bounds a call to the shared boots; past it the guard
// decides on what this instance saw.
const sharedTimeout = 3 * time.Second

// Guard follows the boots of machines in the inventory. It is safe for
// concurrent use.
type Guard struct {
	cfg Config

	mu    sync.Mutex
	boots *bounded.Map[*Boot]
	// writing bounds the background writes of starts to Shared.
	writing chan struct{}

	alarms atomic.Uint64
}

// New returns a guard.
func New(cfg Config) *Guard {
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Minute
	}
	if cfg.NonceTTL <= 0 {
		cfg.NonceTTL = time.Hour
	}
	if cfg.MaxBoots <= 0 {
		cfg.MaxBoots = 16384
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Guard{cfg: cfg, boots: bounded.New[*Boot](cfg.MaxBoots, cfg.NonceTTL), writing: make(chan struct{}, 64)}
}

// SetRules replaces the window (when positive) and the trusted source
// networks (a reloaded config).
func (g *Guard) SetRules(window time.Duration, trusted []netip.Prefix) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if window > 0 {
		g.cfg.Window = window
	}
	g.cfg.Trusted = trusted
}

// Start records that a boot of mac started (cause: dhcp, bmc). It begins a
// new boot: a new nonce, nothing served yet.
func (g *Guard) Start(mac, cause string) {
	now := g.cfg.Now()
	b := &Boot{Started: now, Cause: cause, Nonce: newNonce(), Granted: map[string]bool{}, Used: map[string]bool{}, Served: map[string]bool{}}
	g.mu.Lock()
	g.boots.Put(mac, b, now, now)
	g.mu.Unlock()
	if g.cfg.Shared == nil {
		return
	}
	select {
	case g.writing <- struct{}{}:
	default:
		return // a flood of starts: this instance's own record only
	}
	go func(own Boot) {
		defer func() { <-g.writing }()
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		defer cancel()
		stood, err := g.cfg.Shared.Start(ctx, mac, own, sameBoot, g.cfg.NonceTTL)
		if err != nil || stood.Nonce == own.Nonce {
			return
		}
		// Another instance started this boot first: take its record.
		g.mu.Lock()
		defer g.mu.Unlock()
		if cur, _, ok := g.boots.Get(mac); ok && cur == b {
			g.boots.Put(mac, &stood, stood.Started, g.cfg.Now())
		}
	}(*b.clone())
}

// StartIfIdle starts a boot of mac unless one is in its window (an iPXE
// DHCP exchange that continues a boot the ROM started).
func (g *Guard) StartIfIdle(mac, cause string) {
	b, ok := g.boot(mac)
	open := ok && g.cfg.Now().Sub(b.Started) < g.cfg.Window
	if !open {
		g.Start(mac, cause)
	}
}

func newNonce() string {
	b := make([]byte, 18)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// learnSlack is how long before a boot's start an address learned from
// its DHCP exchange still counts as learned in that boot.
const learnSlack = 10 * time.Second

// Bound checks that src may speak for mac: a trusted routed source, the
// kernel's neighbour entry for src, or (with no entry) the address mac used
// in its DHCP exchange in the current boot.
func (g *Guard) Bound(mac string, src netip.Addr) error {
	src = src.Unmap()
	g.mu.Lock()
	trusted := g.cfg.Trusted
	var started time.Time
	if b, _, ok := g.boots.Get(mac); ok {
		started = b.Started
	}
	g.mu.Unlock()
	for _, p := range trusted {
		if p.Contains(src) {
			return nil
		}
	}
	if !src.IsValid() || !src.Is4() {
		return &Refusal{Reason: ReasonSource, Detail: fmt.Sprintf("source %s is not an IPv4 neighbour and not in boot.trusted_sources", src)}
	}
	if g.cfg.Neighbor != nil {
		if got, ok := g.cfg.Neighbor(src); ok {
			if got == mac {
				return nil
			}
			return &Refusal{Reason: ReasonSource, Detail: fmt.Sprintf("source %s is %s in the neighbour table", src, got)}
		}
	}
	if g.cfg.Learned != nil && !started.IsZero() {
		// The exchange that started the boot may have taught the address
		// a moment before it was reported as a start.
		if got, at, ok := g.cfg.Learned(src); ok && got == mac && !at.Before(started.Add(-learnSlack)) {
			return nil
		}
	}
	return &Refusal{Reason: ReasonSource, Detail: fmt.Sprintf("source %s has no neighbour entry and did not take part in this MAC's DHCP exchange", src)}
}

// Admit checks a request that would receive mac's secrets or nonce: src is
// bound to mac and a boot of mac is in its window. It returns the boot's
// nonce.
func (g *Guard) Admit(mac string, src netip.Addr) (string, error) {
	if err := g.Bound(mac, src); err != nil {
		return "", err
	}
	b, ok := g.boot(mac)
	if !ok {
		return "", &Refusal{Reason: ReasonNoBoot, Detail: "provisiond saw no boot of this machine start (no PXE DHCP, no BMC action)"}
	}
	g.mu.Lock()
	window := g.cfg.Window
	g.mu.Unlock()
	if age := g.cfg.Now().Sub(b.Started); age >= window {
		return "", &Refusal{Reason: ReasonNoBoot, Detail: fmt.Sprintf("its boot started (%s) %s ago, beyond boot.secret_window (%s)", b.Cause, age.Round(time.Second), window)}
	}
	return b.Nonce, nil
}

// boot returns mac's current boot: the shared record when there is one
// (kept here too), else this instance's.
func (g *Guard) boot(mac string) (Boot, bool) {
	if g.cfg.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		b, ok, err := g.cfg.Shared.Load(ctx, mac)
		cancel()
		if err == nil && ok {
			now := g.cfg.Now()
			g.mu.Lock()
			g.boots.Put(mac, b.clone(), now, now)
			g.mu.Unlock()
			return b, true
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	b, _, ok := g.boots.Get(mac)
	if !ok {
		return Boot{}, false
	}
	return *b.clone(), true
}

// change runs fn on mac's current boot: on the shared record when it can
// be reached (so two instances never both serve or redeem the same
// thing), and on this instance's copy. ok is false when mac has no boot.
func (g *Guard) change(mac string, fn func(*Boot) error) (ok bool, err error) {
	if g.cfg.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		ok, err := g.cfg.Shared.Change(ctx, mac, fn)
		cancel()
		var refusal *Refusal
		if ok || errors.As(err, &refusal) {
			if err == nil {
				g.mu.Lock()
				if b, _, found := g.boots.Get(mac); found {
					fn(b) // keep this instance's copy in step
				}
				g.mu.Unlock()
			}
			return ok, err
		}
		// Not shared yet (its start is still being written) or etcd
		// unreachable: decide on what this instance saw.
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	b, _, found := g.boots.Get(mac)
	if !found {
		return false, nil
	}
	return true, fn(b)
}

// Grant records what the script served to mac in its current boot hands
// out with the nonce (the overlay of the profile it rendered, the
// callback, facts): only granted uses can be redeemed. A one-shot
// assignment used up meanwhile does not take back what its script gave.
func (g *Guard) Grant(mac string, uses ...string) {
	g.change(mac, func(b *Boot) error {
		if b.Granted == nil {
			b.Granted = map[string]bool{}
		}
		for _, u := range uses {
			b.Granted[u] = true
		}
		return nil
	})
}

// Once records that the secret-bearing response what is served to mac in
// its current boot; a second time in the same boot is refused with an
// alarm.
func (g *Guard) Once(mac, what string) error {
	ok, err := g.change(mac, func(b *Boot) error {
		if b.Served[what] {
			return &Refusal{Reason: ReasonAgain, Alarm: true, Detail: what + " was already served in this boot: another host may be using this MAC"}
		}
		if b.Served == nil {
			b.Served = map[string]bool{}
		}
		b.Served[what] = true
		return nil
	})
	if !ok && err == nil {
		return &Refusal{Reason: ReasonNoBoot, Detail: "no boot in progress"}
	}
	return g.count(err)
}

// count counts an alarm.
func (g *Guard) count(err error) error {
	var r *Refusal
	if errors.As(err, &r) && r.Alarm {
		g.alarms.Add(1)
	}
	return err
}

// Redeem checks a nonce that a served script handed out and uses it up for
// use (overlay, callback, facts): src must be bound to mac, the nonce must
// be the current boot's and within NonceTTL, the use granted by the
// script and not taken yet. A nonce used twice raises an alarm.
func (g *Guard) Redeem(mac, nonce, use string, src netip.Addr) error {
	if err := g.Bound(mac, src); err != nil {
		return err
	}
	now := g.cfg.Now()
	ok, err := g.change(mac, func(b *Boot) error {
		if nonce == "" || subtle.ConstantTimeCompare([]byte(nonce), []byte(b.Nonce)) != 1 {
			return &Refusal{Reason: ReasonNonce, Detail: "no nonce of this machine's current boot"}
		}
		if now.Sub(b.Started) >= g.cfg.NonceTTL {
			return &Refusal{Reason: ReasonNonce, Detail: fmt.Sprintf("the nonce expired (%s after the boot started)", g.cfg.NonceTTL)}
		}
		if !b.Granted[use] {
			return &Refusal{Reason: ReasonNonce, Detail: "this boot's script did not hand out " + use}
		}
		if b.Used[use] {
			return &Refusal{Reason: ReasonAgain, Alarm: true, Detail: "this boot's " + use + " nonce was already used: another host may be using this MAC"}
		}
		if b.Used == nil {
			b.Used = map[string]bool{}
		}
		b.Used[use] = true
		return nil
	})
	if !ok && err == nil {
		return &Refusal{Reason: ReasonNonce, Detail: "no nonce of this machine's current boot"}
	}
	return g.count(err)
}

// Alarms returns how many requests looked like a second host using a
// machine's MAC.
func (g *Guard) Alarms() uint64 { return g.alarms.Load() }
