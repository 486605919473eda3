package axes

import (
	"fmt"
	"github.com/axes-go/axes/store"
	"math/rand/v2"
	"time"
)

// Policy says what is counted, when a client is locked and for how long.
// Zero fields take the defaults given on each field, so Policy{} is a valid
// policy: 3 failures of one IP lock it for 15 minutes. New validates a
// Policy once and returns errors prefixed "axes:"; a Policy is not used
// after New returns, except for its funcs.
type Policy struct {
	// Limit is the number of remembered failures at which a dimension locks
	// (count >= Limit: the Limit-th failure itself gets the locked verdict).
	// Default 3, or the first tier's Failures under Tiers. At most
	// MaxFailures.
	Limit int

	// LimitFunc, if set, gives the limit for each attempt instead of Limit
	// (django-axes' callable AXES_FAILURE_LIMIT). Results below 1 mean 1 and
	// results above MaxFailures mean MaxFailures.
	LimitFunc func(Key) int

	// ChallengeAt, if not 0, asks for a challenge before the lock: from
	// ChallengeAt remembered failures in any dimension of an attempt (below
	// the limit), the attempt is admitted only if the application proves
	// that the client passed a challenge (a CAPTCHA, a proof of work, a
	// code sent by e-mail) by calling Limiter.BeginPassed or
	// Limiter.FailPassed; Begin and Fail refuse it with Reason
	// ReasonChallenge, counting nothing. Passing a challenge does not
	// forget failures: the failures after it still lock at the limit. A
	// lock comes before a challenge, and ObserveOnly asks for none. Must be
	// in 1..Limit-1; under LimitFunc it must be below MaxFailures and each
	// attempt uses min(ChallengeAt, its limit - 1), so that an attempt
	// whose limit is 1 needs no challenge. Default 0: no challenge.
	ChallengeAt int

	// LockoutBy lists the dimensions counted, as combinations of fields: an
	// attempt is locked when any dimension is (OR across the list, AND within
	// a combination). Default []Fields{IP}. Each combination must be non-zero,
	// use only IP, Username and UserAgent, and appear once.
	LockoutBy []Fields

	// Cooloff says how long a lock lasts. Default Fixed(15 * time.Minute).
	Cooloff Cooloff

	// Window is how long a dimension remembers its failures after its last
	// failure (django-axes' inactivity rule: failures at 0, 10 and 20 minutes
	// with a 15-minute window still lock). Default: the base cooloff (the
	// Fixed duration, Backoff.Base), 15 minutes under Forever and
	// CooloffFunc, and under Tiers 24 hours or twice the longest finite tier
	// Cooloff, whichever is longer, so that a guesser who waits out each
	// lock still climbs every tier. Under Tiers an explicit Window must be
	// longer than every finite tier Cooloff.
	Window time.Duration

	// ResetOnSuccess makes a successful login forget the failures and
	// back-off level of each of the attempt's dimensions that is not locked
	// (AXES_RESET_ON_SUCCESS). A success never lifts a current lock. Default
	// false, as django-axes.
	ResetOnSuccess bool

	// ExtendLockOnRefused makes an attempt refused while locked count as a
	// failure in every dimension of the attempt and push the lock end to now
	// plus the cooloff (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT, which
	// django-axes enables by default). Default false: a lock ends one
	// cooloff after the failure that caused it, however often the client
	// knocks.
	ExtendLockOnRefused bool

	// ObserveOnly counts failures and reports what would lock (Verdict's
	// WouldLock and By) but locks nobody (AXES_LOCK_OUT_AT_FAILURE=False).
	// Deny and OnlyAllow still refuse.
	ObserveOnly bool

	// NeverLockout lists client IPs that are never counted nor locked
	// (AXES_NEVER_LOCKOUT_WHITELIST, with CIDR prefixes).
	NeverLockout IPSet

	// OnlyAllow, when not empty, refuses every client IP outside it at once,
	// with a locked verdict (AXES_ONLY_WHITELIST).
	OnlyAllow IPSet

	// Deny lists client IPs that are always refused at once, with a locked
	// verdict of Reason ReasonDenied (AXES_IP_BLACKLIST). Deny is consulted
	// before every other list.
	Deny IPSet

	// NeverLockoutUser, if set, exempts attempts for which it returns true
	// from counting and locking (AXES_WHITELIST_CALLABLE). It is called
	// with the key as given, before normalisation.
	NeverLockoutUser func(Key) bool

	// IPv6Prefix is the prefix length by which IPv6 clients are grouped,
	// since one client usually holds a whole /64. Default 64; 128 counts
	// every address apart. Must be in 1..128.
	IPv6Prefix int

	// NormalizeUsername maps a username to the form that is counted. Default
	// DefaultNormalizeUsername (trim, lower-case), applied without
	// allocating; a custom func is called on every attempt that counts the
	// username.
	NormalizeUsername func(string) string

	// Spray, if its Limit is not 0, detects password spraying: one IP
	// failing with many distinct usernames is locked after Spray.Limit of
	// them, apart from Limit (see Spray). It needs attempts that carry the
	// client IP and the username; with it, LockoutBy may hold at most 6
	// combinations. Default off.
	Spray Spray

	// OnEvent, if set, is called for each failure, lockout (once per lock),
	// refused attempt, success and reset, after the store's locks are
	// released, on the goroutine that made the call. It must be safe for
	// concurrent use and should be quick; see LogEvents.
	OnEvent func(Event)
}

// MaxFailures is the highest failure count a dimension remembers; counts
// saturate there, and Limit may not exceed it.
const MaxFailures = store.MaxFailures

// Indefinite is the RetryAfter of a lock with no end (Forever, a Tier with
// an Indefinite Cooloff, or a denied IP).
const Indefinite = store.Indefinite

// maxFinite is the longest finite lock; durations saturate there.
const maxFinite = Indefinite - 1

// satAdd is t+d, saturating at maxFinite (and Indefinite d gives maxFinite).
func satAdd(t, d time.Duration) time.Duration {
	if d >= Indefinite || t > maxFinite-d {
		return maxFinite
	}
	return t + d
}

// DefaultReserveTimeout is how long a reservation from Limiter.Begin may
// stay unsettled before it is taken as a failure (a handler that crashed or
// forgot to settle).
const DefaultReserveTimeout = time.Minute

// resolved is a Policy's base rule and what the limiter draws per attempt.
type resolved struct {
	store.Rule
	jitter float64 // Backoff.Jitter, drawn into JitterScale per attempt
}

func (p *Policy) rule() (resolved, []Fields, error) {
	r := resolved{Rule: store.Rule{ReserveTimeout: DefaultReserveTimeout}}
	if p.Limit < 0 || p.Limit > MaxFailures {
		return r, nil, fmt.Errorf("axes: Limit must be in 0..%d, got %d", MaxFailures, p.Limit)
	}
	if p.Window < 0 {
		return r, nil, fmt.Errorf("axes: Window must not be negative, got %v", p.Window)
	}
	if p.IPv6Prefix < 0 || p.IPv6Prefix > 128 {
		return r, nil, fmt.Errorf("axes: IPv6Prefix must be in 1..128, got %d", p.IPv6Prefix)
	}
	c := p.Cooloff
	if c == nil {
		c = Fixed(defaultCooloff)
	}
	if err := c.resolve(&r); err != nil {
		return r, nil, err
	}
	var err error
	r.Limit = p.Limit
	if r.Limit == 0 {
		r.Limit = 3
		if len(r.Tiers) > 0 {
			r.Limit = r.Tiers[0].Failures
		}
	}
	r.Window = p.Window
	if r.Window == 0 {
		switch {
		case len(r.Tiers) > 0:
			r.Window = max(tiersMinWindow, satAdd(longestTier(r.Tiers), longestTier(r.Tiers)))
		case r.Cooloff == Indefinite:
			r.Window = defaultCooloff
		default:
			r.Window = r.Cooloff
		}
	}
	if len(r.Tiers) > 0 && r.Window <= longestTier(r.Tiers) {
		return r, nil, fmt.Errorf("axes: Window (%v) must be longer than the longest finite tier Cooloff (%v), or failures are forgotten when that tier's lock ends and the tiers above it cannot be reached", r.Window, longestTier(r.Tiers))
	}
	switch {
	case p.ChallengeAt < 0:
		return r, nil, fmt.Errorf("axes: ChallengeAt must not be negative, got %d", p.ChallengeAt)
	case p.ChallengeAt > 0 && p.LimitFunc == nil && p.ChallengeAt >= r.Limit:
		return r, nil, fmt.Errorf("axes: ChallengeAt (%d) must be below Limit (%d): a challenge is asked for before the lock", p.ChallengeAt, r.Limit)
	case p.ChallengeAt >= MaxFailures:
		return r, nil, fmt.Errorf("axes: ChallengeAt must be below MaxFailures (%d), got %d", MaxFailures, p.ChallengeAt)
	}
	r.ChallengeAt = p.ChallengeAt
	r.Extend = p.ExtendLockOnRefused
	r.ObserveOnly = p.ObserveOnly
	r.ResetOnSuccess = p.ResetOnSuccess

	dims := p.LockoutBy
	if len(dims) == 0 {
		dims = []Fields{IP}
	}
	if len(dims) > 7 {
		return r, nil, fmt.Errorf("axes: LockoutBy has %d combinations; there are only 7 distinct ones", len(dims))
	}
	var seenSet [8]bool
	for i, f := range dims {
		if f == 0 {
			return r, nil, fmt.Errorf("axes: LockoutBy[%d] is an empty combination", i)
		}
		if f&^allFields != 0 {
			return r, nil, fmt.Errorf("axes: LockoutBy[%d] has unknown Fields bits %#x", i, uint8(f&^allFields))
		}
		if seenSet[f] {
			return r, nil, fmt.Errorf("axes: LockoutBy[%d] repeats %v", i, f)
		}
		seenSet[f] = true
	}
	if r.Spray, err = p.Spray.resolve(len(dims)); err != nil {
		return r, nil, err
	}
	return r, append([]Fields(nil), dims...), nil
}

// forAttempt returns the rule for one attempt: base with LimitFunc,
// CooloffFunc and jitter applied.
func (l *Limiter) forAttempt(k *Key) store.Rule {
	r := l.rule
	if l.limitFunc != nil {
		n := l.limitFunc(*k)
		r.Limit = min(max(n, 1), MaxFailures)
		r.ChallengeAt = challengeAt(r.ChallengeAt, r.Limit)
	}
	if l.cooloffFunc != nil {
		d := l.cooloffFunc(*k)
		if d > 0 {
			r.Cooloff = d
		}
	}
	if l.jitter > 0 {
		r.JitterScale = 1 + l.jitter*(2*rand.Float64()-1)
	}
	return r
}

// challengeAt is the ChallengeAt of an attempt whose limit is limit: a
// challenge is asked for before the lock, or not at all.
func challengeAt(base, limit int) int {
	return min(base, limit-1)
}
