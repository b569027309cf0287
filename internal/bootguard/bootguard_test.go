package bootguard

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

const (
	victim   = "52:54:00:00:00:06"
	attacker = "52:54:00:66:66:66"
)

var (
	victimIP   = netip.MustParseAddr("192.0.2.50")
	attackerIP = netip.MustParseAddr("192.0.2.66")
	routedIP   = netip.MustParseAddr("198.51.100.7")
	learnedIP  = netip.MustParseAddr("192.0.2.77")
)

// lab is a guard over a fixed neighbour table and a clock the test turns.
type lab struct {
	g   *Guard
	now time.Time
	// learned is what DHCP taught: learnedIP was used by victim at this
	// time (zero: never).
	learned time.Time
}

func newLab(t *testing.T, trusted ...string) *lab {
	t.Helper()
	l := &lab{now: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)}
	var pfx []netip.Prefix
	for _, s := range trusted {
		pfx = append(pfx, netip.MustParsePrefix(s))
	}
	l.g = New(Config{Window: 10 * time.Minute, NonceTTL: time.Hour, Trusted: pfx, MaxBoots: 3,
		Now: func() time.Time { return l.now },
		Neighbor: func(ip netip.Addr) (string, bool) {
			switch ip {
			case victimIP:
				return victim, true
			case attackerIP:
				return attacker, true
			}
			return "", false
		},
		Learned: func(ip netip.Addr) (string, time.Time, bool) {
			if ip == learnedIP && !l.learned.IsZero() {
				return victim, l.learned, true
			}
			return "", time.Time{}, false
		},
	})
	return l
}

func reason(t *testing.T, err error) string {
	t.Helper()
	var r *Refusal
	if err == nil {
		return ""
	}
	if !errors.As(err, &r) {
		t.Fatalf("error %v is not a *Refusal", err)
	}
	return r.Reason
}

func TestAdmitNeedsABootAndTheMachinesAddress(t *testing.T) {
	l := newLab(t)
	if _, err := l.g.Admit(victim, victimIP); reason(t, err) != ReasonNoBoot {
		t.Fatalf("no boot started: %v, want no_boot", err)
	}
	l.g.Start(victim, "dhcp")
	nonce, err := l.g.Admit(victim, victimIP)
	if err != nil || len(nonce) < 20 {
		t.Fatalf("the machine in its boot: %q %v", nonce, err)
	}
	// A stranger naming the victim's MAC, from its own address.
	if _, err := l.g.Admit(victim, attackerIP); reason(t, err) != ReasonSource {
		t.Errorf("stranger's address: %v, want source", err)
	}
	// Loopback, IPv6, a routed address, an address nobody has: no.
	for _, src := range []string{"127.0.0.1", "::1", "fe80::1", "198.51.100.7", "192.0.2.99"} {
		if _, err := l.g.Admit(victim, netip.MustParseAddr(src)); reason(t, err) != ReasonSource {
			t.Errorf("source %s: %v, want source", src, err)
		}
	}
	// The window closes.
	l.now = l.now.Add(10 * time.Minute)
	if _, err := l.g.Admit(victim, victimIP); reason(t, err) != ReasonNoBoot {
		t.Errorf("after the window: %v, want no_boot", err)
	}
}

func TestTrustedAndLearnedSources(t *testing.T) {
	l := newLab(t, "198.51.100.0/24")
	l.g.Start(victim, "dhcp")
	if _, err := l.g.Admit(victim, routedIP); err != nil {
		t.Errorf("trusted routed source: %v", err)
	}
	// IPv4-mapped IPv6 is the same address.
	if _, err := l.g.Admit(victim, netip.AddrFrom16(routedIP.As16())); err != nil {
		t.Errorf("trusted source as ::ffff:: %v", err)
	}
	// Learned from this boot's DHCP, with no neighbour entry: yes.
	l.learned = l.now.Add(time.Second)
	if _, err := l.g.Admit(victim, learnedIP); err != nil {
		t.Errorf("address from this boot's DHCP: %v", err)
	}
	// Learned in an earlier boot: no.
	l.learned = l.now.Add(-time.Hour)
	if _, err := l.g.Admit(victim, learnedIP); reason(t, err) != ReasonSource {
		t.Errorf("address learned before this boot: %v, want source", err)
	}
	// The kernel's entry wins over anything learned: a spoofed DHCP
	// cannot bind the attacker's address to the victim.
	l.learned = l.now
	if _, err := l.g.Admit(victim, attackerIP); reason(t, err) != ReasonSource {
		t.Errorf("attacker's address with a neighbour entry: %v, want source", err)
	}
	l.g.SetRules(0, nil)
	if _, err := l.g.Admit(victim, routedIP); reason(t, err) != ReasonSource {
		t.Errorf("routed source after trust was withdrawn: %v", err)
	}
}

func TestNonceIsSingleUsePerBootAndBound(t *testing.T) {
	l := newLab(t)
	l.g.Start(victim, "dhcp")
	nonce, _ := l.g.Admit(victim, victimIP)
	if err := l.g.Redeem(victim, nonce, "overlay", victimIP); reason(t, err) != ReasonNonce {
		t.Errorf("a use the script did not grant: %v", err)
	}
	l.g.Grant(victim, "overlay", "callback", "facts")
	if err := l.g.Redeem(victim, "", "overlay", victimIP); reason(t, err) != ReasonNonce {
		t.Errorf("no nonce: %v", err)
	}
	if err := l.g.Redeem(victim, nonce+"x", "overlay", victimIP); reason(t, err) != ReasonNonce {
		t.Errorf("wrong nonce: %v", err)
	}
	if err := l.g.Redeem(victim, nonce, "overlay", attackerIP); reason(t, err) != ReasonSource {
		t.Errorf("right nonce from the attacker's address: %v", err)
	}
	if err := l.g.Redeem(attacker, nonce, "overlay", attackerIP); reason(t, err) != ReasonNonce {
		t.Errorf("the victim's nonce for the attacker's own MAC: %v", err)
	}
	if err := l.g.Redeem(victim, nonce, "overlay", victimIP); err != nil {
		t.Fatalf("the machine's overlay: %v", err)
	}
	// Each use once; a second is the alarm.
	err := l.g.Redeem(victim, nonce, "overlay", victimIP)
	var r *Refusal
	if !errors.As(err, &r) || r.Reason != ReasonAgain || !r.Alarm || l.g.Alarms() != 1 {
		t.Errorf("second overlay: %v (alarms %d)", err, l.g.Alarms())
	}
	if err := l.g.Redeem(victim, nonce, "callback", victimIP); err != nil {
		t.Errorf("callback after the overlay: %v", err)
	}
	// A new boot, a new nonce: the old one is worthless.
	l.g.Start(victim, "dhcp")
	if err := l.g.Redeem(victim, nonce, "facts", victimIP); reason(t, err) != ReasonNonce {
		t.Errorf("last boot's nonce: %v", err)
	}
	fresh, _ := l.g.Admit(victim, victimIP)
	l.g.Grant(victim, "callback", "facts")
	if fresh == nonce {
		t.Error("two boots share a nonce")
	}
	// The callback comes after the window but within the nonce's life.
	l.now = l.now.Add(30 * time.Minute)
	if err := l.g.Redeem(victim, fresh, "callback", victimIP); err != nil {
		t.Errorf("callback 30 minutes in: %v", err)
	}
	l.now = l.now.Add(time.Hour)
	if err := l.g.Redeem(victim, fresh, "facts", victimIP); reason(t, err) != ReasonNonce {
		t.Errorf("expired nonce: %v", err)
	}
}

func TestOncePerBootAndStarts(t *testing.T) {
	l := newLab(t)
	if err := l.g.Once(victim, "script:talos"); reason(t, err) != ReasonNoBoot {
		t.Errorf("once without a boot: %v", err)
	}
	l.g.Start(victim, "dhcp")
	if err := l.g.Once(victim, "script:talos"); err != nil {
		t.Fatal(err)
	}
	if err := l.g.Once(victim, "script:talos"); reason(t, err) != ReasonAgain {
		t.Errorf("second script in one boot: %v", err)
	}
	// iPXE's own DHCP continues the boot: no second delivery.
	l.g.StartIfIdle(victim, "dhcp")
	if err := l.g.Once(victim, "script:talos"); reason(t, err) != ReasonAgain {
		t.Errorf("after iPXE's DHCP in the same boot: %v", err)
	}
	// After the window it starts a boot of its own.
	l.now = l.now.Add(11 * time.Minute)
	l.g.StartIfIdle(victim, "dhcp")
	if err := l.g.Once(victim, "script:talos"); err != nil {
		t.Errorf("a new boot: %v", err)
	}
	if l.g.Alarms() != 2 {
		t.Errorf("alarms %d, want 2 (the script asked for again twice in one boot)", l.g.Alarms())
	}
}

func TestBootsAreBounded(t *testing.T) {
	l := newLab(t)
	for _, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03", victim} {
		l.g.Start(mac, "dhcp")
		l.now = l.now.Add(time.Second)
	}
	l.g.mu.Lock()
	n := l.g.boots.Len()
	_, _, first := l.g.boots.Get("52:54:00:00:00:01")
	l.g.mu.Unlock()
	if n != 3 || first {
		t.Errorf("%d boots held (max 3), oldest kept: %v", n, first)
	}
	if _, err := l.g.Admit(victim, victimIP); err != nil {
		t.Errorf("the newest boot was dropped: %v", err)
	}
}
