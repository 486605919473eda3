package axes

import (
	"fmt"
	"github.com/axes-go/axes/store"
	"math"
	"time"
)

// Cooloff says how long a lock lasts. The implementations are Fixed,
// Forever, Backoff, Tiers and CooloffFunc; a nil Cooloff in a Policy means
// Fixed(15 * time.Minute).
type Cooloff interface {
	// resolve fills the lock-duration fields of r and checks them.
	resolve(r *resolved) error
}

type fixed time.Duration

// Fixed returns a Cooloff under which every lock lasts d, which must be
// positive.
func Fixed(d time.Duration) Cooloff { return fixed(d) }

func (f fixed) resolve(r *resolved) error {
	if f <= 0 {
		return fmt.Errorf("axes: Fixed cooloff must be positive, got %v", time.Duration(f))
	}
	r.Cooloff = time.Duration(f)
	return nil
}

type forever struct{}

// Forever is a Cooloff under which a lock lasts until it is reset
// (Limiter.Reset, ResetIP, ResetUsername, ResetAll): django-axes' behaviour
// with no AXES_COOLOFF_TIME. RetryAfter of such a lock is Indefinite.
var Forever Cooloff = forever{}

func (forever) resolve(r *resolved) error {
	r.Cooloff = Indefinite
	return nil
}

// Backoff is an escalating Cooloff, as fail2ban's bantime.increment and
// Keycloak's wait increment: the n-th consecutive lock of a dimension lasts
// Base×Factor^(n−1), capped at Max, then scaled by a random factor in
// [1−Jitter, 1+Jitter]. The level (n) falls back to 0 once a dimension has
// gone Decay without being locked, counted from the end of its last lock.
type Backoff struct {
	Base   time.Duration // first lock; required, positive
	Factor float64       // growth per lock; 0 means 2; otherwise at least 1
	Max    time.Duration // cap; 0 means no cap below about 290 years
	Jitter float64       // fraction in [0, 1); 0 means none
	Decay  time.Duration // quiet period that forgets the level; 0 means 24 hours
}

func (b Backoff) resolve(r *resolved) error {
	switch {
	case b.Base <= 0:
		return fmt.Errorf("axes: Backoff.Base must be positive, got %v", b.Base)
	case b.Factor != 0 && (b.Factor < 1 || math.IsNaN(b.Factor) || math.IsInf(b.Factor, 0)):
		return fmt.Errorf("axes: Backoff.Factor must be at least 1, got %v", b.Factor)
	case b.Max < 0 || (b.Max > 0 && b.Max < b.Base):
		return fmt.Errorf("axes: Backoff.Max must be 0 or at least Base, got %v", b.Max)
	case b.Jitter < 0 || b.Jitter >= 1 || math.IsNaN(b.Jitter):
		return fmt.Errorf("axes: Backoff.Jitter must be in [0, 1), got %v", b.Jitter)
	case b.Decay < 0:
		return fmt.Errorf("axes: Backoff.Decay must not be negative, got %v", b.Decay)
	}
	r.Cooloff = b.Base
	r.Factor = b.Factor
	if r.Factor == 0 {
		r.Factor = 2
	}
	r.MaxCooloff = b.Max
	r.jitter = b.Jitter
	r.Decay = b.Decay
	if r.Decay == 0 {
		r.Decay = 24 * time.Hour
	}
	return nil
}

// Tier is one step of Tiers: from Failures remembered failures on, a lock
// lasts Cooloff (Indefinite for a lock with no end).
type Tier struct {
	Failures int
	Cooloff  time.Duration
}

// Tiers is a Cooloff by failure count, django-axes' AXES_LOCKOUT_TIERS done
// so that tiers really expire: a lock lasts the Cooloff of the highest tier
// whose Failures the dimension has reached (the first tier's below it).
// Tiers must be sorted by strictly increasing Failures, each at least 1, with
// positive Cooloffs. When Policy.Limit is 0 it defaults to the first tier's
// Failures. Failures must outlive every lock for the tiers to be climbed: a
// guesser who waits out a lock and tries again must find the failures that
// caused it still remembered. So Policy.Window defaults to 24 hours or twice
// the longest finite tier Cooloff, whichever is longer, and New refuses an
// explicit Window that is not longer than every finite tier Cooloff.
type Tiers []Tier

func (t Tiers) resolve(r *resolved) error {
	if len(t) == 0 {
		return fmt.Errorf("axes: Tiers is empty")
	}
	for i, x := range t {
		if x.Failures < 1 || x.Failures > MaxFailures {
			return fmt.Errorf("axes: tier %d: Failures must be in 1..%d, got %d", i, MaxFailures, x.Failures)
		}
		if x.Cooloff <= 0 {
			return fmt.Errorf("axes: tier %d: Cooloff must be positive, got %v", i, x.Cooloff)
		}
		if i > 0 && x.Failures <= t[i-1].Failures {
			return fmt.Errorf("axes: tiers must have increasing Failures (tier %d has %d after %d)", i, x.Failures, t[i-1].Failures)
		}
	}
	r.Tiers = make([]store.Tier, len(t))
	for i, x := range t {
		r.Tiers[i] = store.Tier{Failures: x.Failures, Cooloff: x.Cooloff}
	}
	r.Cooloff = t[0].Cooloff
	return nil
}

// tiersMinWindow is the shortest default Window under Tiers: as long as
// Backoff's default Decay, so that both escalating cooloffs remember a
// guesser for a day.
const tiersMinWindow = 24 * time.Hour

// longestTier returns the longest finite Cooloff of tiers, 0 if none.
func longestTier(tiers []store.Tier) time.Duration {
	var d time.Duration
	for _, t := range tiers {
		if t.Cooloff != Indefinite {
			d = max(d, t.Cooloff)
		}
	}
	return d
}

// CooloffFunc computes the lock duration from the attempt that causes the
// lock, as django-axes' callable AXES_COOLOFF_TIME. It is called on every
// counted failure, outside any lock; a result that is not positive means the
// default 15 minutes, and Indefinite means a lock with no end.
type CooloffFunc func(Key) time.Duration

func (f CooloffFunc) resolve(r *resolved) error {
	if f == nil {
		return fmt.Errorf("axes: CooloffFunc is nil")
	}
	r.Cooloff = defaultCooloff
	return nil
}

const defaultCooloff = 15 * time.Minute
