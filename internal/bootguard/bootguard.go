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
// table and the learned addresses are functions it is given.
package bootguard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
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
	// MaxBoots bounds the boots followed at once (4096 when zero); the
	// oldest is forgotten first.
	MaxBoots int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Guard follows the boots of machines in the inventory. It is safe for
// concurrent use.
type Guard struct {
	cfg Config

	mu    sync.Mutex
	boots *bounded.Map[*bootState]

	alarms atomic.Uint64
}

type bootState struct {
	started time.Time
	cause   string
	nonce   string
	granted map[string]bool // nonce uses the served script handed out
	used    map[string]bool // nonce uses redeemed
	served  map[string]bool // secret-bearing responses served
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
		cfg.MaxBoots = 4096
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Guard{cfg: cfg, boots: bounded.New[*bootState](cfg.MaxBoots, cfg.NonceTTL)}
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
	g.mu.Lock()
	defer g.mu.Unlock()
	g.boots.Put(mac, &bootState{started: now, cause: cause, nonce: newNonce(), granted: map[string]bool{}, used: map[string]bool{}, served: map[string]bool{}}, now, now)
}

// StartIfIdle starts a boot of mac unless one is in its window (an iPXE
// DHCP exchange that continues a boot the ROM started).
func (g *Guard) StartIfIdle(mac, cause string) {
	g.mu.Lock()
	b, _, ok := g.boots.Get(mac)
	open := ok && g.cfg.Now().Sub(b.started) < g.cfg.Window
	g.mu.Unlock()
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
		started = b.started
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
	g.mu.Lock()
	defer g.mu.Unlock()
	b, _, ok := g.boots.Get(mac)
	if !ok {
		return "", &Refusal{Reason: ReasonNoBoot, Detail: "provisiond saw no boot of this machine start (no PXE DHCP, no BMC action)"}
	}
	if age := g.cfg.Now().Sub(b.started); age >= g.cfg.Window {
		return "", &Refusal{Reason: ReasonNoBoot, Detail: fmt.Sprintf("its boot started (%s) %s ago, beyond boot.secret_window (%s)", b.cause, age.Round(time.Second), g.cfg.Window)}
	}
	return b.nonce, nil
}

// Grant records what the script served to mac in its current boot hands
// out with the nonce (the overlay of the profile it rendered, the
// callback, facts): only granted uses can be redeemed. A one-shot
// assignment used up meanwhile does not take back what its script gave.
func (g *Guard) Grant(mac string, uses ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, _, ok := g.boots.Get(mac); ok {
		for _, u := range uses {
			b.granted[u] = true
		}
	}
}

// Once records that the secret-bearing response what is served to mac in
// its current boot; a second time in the same boot is refused with an
// alarm.
func (g *Guard) Once(mac, what string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, _, ok := g.boots.Get(mac)
	if !ok {
		return &Refusal{Reason: ReasonNoBoot, Detail: "no boot in progress"}
	}
	if b.served[what] {
		g.alarms.Add(1)
		return &Refusal{Reason: ReasonAgain, Alarm: true, Detail: what + " was already served in this boot: another host may be using this MAC"}
	}
	b.served[what] = true
	return nil
}

// Redeem checks a nonce that a served script handed out and uses it up for
// use (overlay, callback, facts): src must be bound to mac, the nonce must
// be the current boot's and within NonceTTL, the use granted by the
// script and not taken yet. A nonce used twice raises an alarm.
func (g *Guard) Redeem(mac, nonce, use string, src netip.Addr) error {
	if err := g.Bound(mac, src); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	b, _, ok := g.boots.Get(mac)
	if !ok || nonce == "" || subtle.ConstantTimeCompare([]byte(nonce), []byte(b.nonce)) != 1 {
		return &Refusal{Reason: ReasonNonce, Detail: "no nonce of this machine's current boot"}
	}
	if g.cfg.Now().Sub(b.started) >= g.cfg.NonceTTL {
		return &Refusal{Reason: ReasonNonce, Detail: fmt.Sprintf("the nonce expired (%s after the boot started)", g.cfg.NonceTTL)}
	}
	if !b.granted[use] {
		return &Refusal{Reason: ReasonNonce, Detail: "this boot's script did not hand out " + use}
	}
	if b.used[use] {
		g.alarms.Add(1)
		return &Refusal{Reason: ReasonAgain, Alarm: true, Detail: "this boot's " + use + " nonce was already used: another host may be using this MAC"}
	}
	b.used[use] = true
	return nil
}

// Alarms returns how many requests looked like a second host using a
// machine's MAC.
func (g *Guard) Alarms() uint64 { return g.alarms.Load() }
