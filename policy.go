package axes

import (
	"fmt"
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

	// OnEvent, if set, is called for each failure, lockout (once per lock),
	// refused attempt, success and reset, after the store's locks are
	// released, on the goroutine that made the call. It must be safe for
	// concurrent use and should be quick; see LogEvents.
	OnEvent func(Event)
}

// MaxFailures is the highest failure count a dimension remembers; counts
// saturate there, and Limit may not exceed it.
const MaxFailures = 1<<16 - 1

// Indefinite is the RetryAfter of a lock with no end (Forever, a Tier with
// an Indefinite Cooloff, or a denied IP).
const Indefinite time.Duration = 1<<63 - 1

// maxFinite is the longest finite lock; durations saturate there.
const maxFinite = Indefinite - 1

// DefaultReserveTimeout is how long a reservation from Limiter.Begin may
// stay unsettled before it is taken as a failure (a handler that crashed or
// forgot to settle).
const DefaultReserveTimeout = time.Minute

// Rule is a policy as a store applies it to one attempt: the numbers of the
// state transition, resolved from the Policy and, for LimitFunc, CooloffFunc
// and Backoff jitter, from the attempt. Stores written outside this package
// (such as redisstore) mirror Apply in their own language; the storetest
// suite checks that they agree.
type Rule struct {
	Limit          int           // lock at Failures >= Limit
	Window         time.Duration // failures forgotten Window after the last one
	Cooloff        time.Duration // lock duration (level 1 under back-off); Indefinite for none
	Factor         float64       // back-off growth per level; <= 1 means none
	MaxCooloff     time.Duration // back-off cap; 0 means none
	JitterScale    float64       // multiplier drawn for this attempt; 0 or 1 means none
	Decay          time.Duration // back-off level forgotten after this long without a lock
	Tiers          []Tier        // lock duration by failure count, when not empty
	Extend         bool          // refused attempts count and extend the lock
	ObserveOnly    bool          // never lock
	ResetOnSuccess bool          // success forgets failures and level
	ReserveTimeout time.Duration // unsettled reservations count as failures after this

	jitter float64 // Backoff.Jitter, drawn into JitterScale per attempt
}

func (p *Policy) rule() (Rule, []Fields, error) {
	r := Rule{ReserveTimeout: DefaultReserveTimeout}
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
			r.Window = max(tiersMinWindow, satAdd(r.longestTier(), r.longestTier()))
		case r.Cooloff == Indefinite:
			r.Window = defaultCooloff
		default:
			r.Window = r.Cooloff
		}
	}
	if len(r.Tiers) > 0 && r.Window <= r.longestTier() {
		return r, nil, fmt.Errorf("axes: Window (%v) must be longer than the longest finite tier Cooloff (%v), or failures are forgotten when that tier's lock ends and the tiers above it cannot be reached", r.Window, r.longestTier())
	}
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
	return r, append([]Fields(nil), dims...), nil
}

// forAttempt returns the rule for one attempt: base with LimitFunc,
// CooloffFunc and jitter applied.
func (l *Limiter) forAttempt(k *Key) Rule {
	r := l.rule
	if l.limitFunc != nil {
		n := l.limitFunc(*k)
		r.Limit = min(max(n, 1), MaxFailures)
	}
	if l.cooloffFunc != nil {
		d := l.cooloffFunc(*k)
		if d > 0 {
			r.Cooloff = d
		}
	}
	if r.jitter > 0 {
		r.JitterScale = 1 + r.jitter*(2*rand.Float64()-1)
	}
	return r
}

// Op is an operation a store applies to the dimensions of one attempt.
type Op uint8

// The operations of Request.Op.
const (
	OpCheck         Op = iota // report, counting nothing
	OpFail                    // record a failed attempt (refused if locked)
	OpBegin                   // reserve one attempt in every dimension
	OpSettleFail              // settle a reservation as a failure
	OpSettleSuccess           // settle a reservation as a success
	OpSuccess                 // record a success without a reservation
	OpReset                   // forget the dimensions entirely
)

var opNames = [...]string{"check", "fail", "begin", "settle-fail", "settle-success", "success", "reset"}

// String returns the operation's name, such as "fail".
func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// State is what a store remembers of one dimension. Instants are durations
// on the store's own timeline (the memory store counts from its creation,
// a Redis store from the Unix epoch); Indefinite as LockEnd means a lock
// with no end. The zero State is a dimension never seen.
type State struct {
	Failures  int           // remembered failures, saturating at MaxFailures
	Pending   int           // reservations in flight
	Level     int           // consecutive locks (back-off level), saturating at 255
	Gen       uint32        // reservation generation, bumped when reservations time out
	LastFail  time.Duration // instant of the last failure
	LastBegin time.Duration // instant of the last reservation
	LockEnd   time.Duration // end of the current or last lock; 0 if none
}

// Outcome is what an operation did to one dimension and how the dimension
// stands after it.
type Outcome struct {
	Failures  int           // remembered failures after the operation
	Locked    bool          // the dimension is locked after the operation
	Started   bool          // this operation started the lock
	Counted   bool          // this operation recorded a failure here
	Busy      bool          // Begin: every remaining attempt is in flight
	Refused   bool          // the attempt was refused (set on every dimension)
	TimedOut  int           // reservations that timed out into failures here (counted too)
	Remaining time.Duration // time left on the lock, Indefinite for none; 0 if not locked
}

// IsZero reports whether s holds nothing worth keeping: no failures, no
// reservation, no lock and no back-off level.
func (s *State) IsZero() bool {
	return s.Failures == 0 && s.Pending == 0 && s.Level == 0 && s.LockEnd == 0
}

// LockedAt reports whether s is locked at now.
func (s *State) LockedAt(now time.Duration) bool {
	return s.LockEnd == Indefinite || (s.LockEnd != 0 && now < s.LockEnd)
}

func satAdd(t, d time.Duration) time.Duration {
	if d >= Indefinite || t > maxFinite-d {
		return maxFinite
	}
	return t + d
}

// Refresh applies the passage of time to s at now: reservations older than
// the reserve timeout become failures (possibly starting a lock at that
// instant), remembered failures older than the window are forgotten, and a
// back-off level older than the decay is dropped. It reports whether a lock
// started and how many reservations timed out into failures. Stores call
// it, through Apply, before every operation.
func (r *Rule) Refresh(s *State, now time.Duration) (started bool, timedOut int) {
	if s.Pending > 0 && r.ReserveTimeout > 0 && now >= satAdd(s.LastBegin, r.ReserveTimeout) {
		at := satAdd(s.LastBegin, r.ReserveTimeout)
		timedOut = s.Pending
		if s.Failures > 0 && at >= satAdd(s.LastFail, r.Window) {
			s.Failures = 0
		}
		s.Failures = min(s.Failures+s.Pending, MaxFailures)
		s.Pending = 0
		s.Gen++
		s.LastFail = max(s.LastFail, at)
		if !r.ObserveOnly && !s.LockedAt(at) && s.Failures >= r.Limit {
			r.startLock(s, at)
			started = s.LockedAt(now)
		}
	}
	if s.Failures > 0 && now >= satAdd(s.LastFail, r.Window) {
		s.Failures = 0
	}
	if s.Level > 0 && !s.LockedAt(now) && now >= satAdd(s.LockEnd, r.Decay) {
		s.Level = 0
	}
	if s.LockEnd != 0 && s.LockEnd != Indefinite && s.Level == 0 && now >= s.LockEnd {
		s.LockEnd = 0 // nothing left to remember of the lock
	}
	return started, timedOut
}

func (r *Rule) startLock(s *State, at time.Duration) {
	s.Level = min(s.Level+1, 255)
	d := r.LockDuration(s.Level, s.Failures)
	if d == Indefinite {
		s.LockEnd = Indefinite
	} else {
		s.LockEnd = satAdd(at, d)
	}
}

func (r *Rule) count(s *State, now time.Duration) {
	s.Failures = min(s.Failures+1, MaxFailures)
	s.LastFail = max(s.LastFail, now)
}

// Apply is the one state transition of the policy: it applies op at now to
// the states of one attempt's dimensions, which the caller must hold
// exclusively for the whole call (the memory store holds their shard
// locks), and fills out (len(out) == len(st)). gens carries the reservation
// generations: Begin writes them, the settle operations read them. It
// reports whether the attempt was refused (a dimension is locked, or, for
// Begin, busy). OpReset is not a transition: the store deletes the states.
func (r *Rule) Apply(op Op, st []State, gens []uint32, now time.Duration, out []Outcome) (refused bool) {
	for i := range st {
		started, timedOut := r.Refresh(&st[i], now)
		out[i] = Outcome{Started: started, TimedOut: timedOut, Counted: timedOut > 0}
	}
	locked := false
	for i := range st {
		if st[i].LockedAt(now) {
			locked = true
		}
	}
	switch op {
	case OpFail, OpBegin:
		if locked {
			refused = true
			if r.Extend {
				for i := range st {
					s := &st[i]
					r.count(s, now)
					out[i].Counted = true
					if s.LockedAt(now) {
						if s.LockEnd != Indefinite {
							d := r.LockDuration(max(s.Level, 1), s.Failures)
							if d == Indefinite {
								s.LockEnd = Indefinite
							} else {
								s.LockEnd = max(s.LockEnd, satAdd(now, d))
							}
						}
					} else if !r.ObserveOnly && s.Failures >= r.Limit {
						r.startLock(s, now)
						out[i].Started = true
					}
				}
			}
			break
		}
		if op == OpBegin {
			for i := range st {
				s := &st[i]
				if r.ObserveOnly {
					continue
				}
				if s.Failures+s.Pending >= r.Limit && !(s.Failures >= r.Limit && s.Pending == 0) {
					out[i].Busy = true
					refused = true
				}
			}
			if refused {
				break
			}
			for i := range st {
				s := &st[i]
				s.Pending = min(s.Pending+1, MaxFailures)
				s.LastBegin = max(s.LastBegin, now)
				gens[i] = s.Gen
			}
			break
		}
		for i := range st {
			s := &st[i]
			r.count(s, now)
			out[i].Counted = true
			if !r.ObserveOnly && s.Failures >= r.Limit {
				r.startLock(s, now)
				out[i].Started = true
			}
		}
	case OpSettleFail:
		for i := range st {
			s := &st[i]
			if s.Gen != gens[i] || s.Pending == 0 {
				continue // timed out (already counted) or forgiven by a reset
			}
			s.Pending--
			r.count(s, now)
			out[i].Counted = true
			if !r.ObserveOnly && !s.LockedAt(now) && s.Failures >= r.Limit {
				r.startLock(s, now)
				out[i].Started = true
			}
		}
	case OpSettleSuccess, OpSuccess:
		for i := range st {
			s := &st[i]
			if op == OpSettleSuccess && s.Gen == gens[i] && s.Pending > 0 {
				s.Pending--
			}
			if r.ResetOnSuccess && !s.LockedAt(now) {
				s.Failures, s.Level, s.LockEnd = 0, 0, 0
			}
		}
	}
	for i := range st {
		s := &st[i]
		o := &out[i]
		o.Refused = refused
		o.Failures = s.Failures
		if s.LockedAt(now) {
			o.Locked = true
			if s.LockEnd == Indefinite {
				o.Remaining = Indefinite
			} else {
				o.Remaining = s.LockEnd - now
			}
		} else {
			o.Started = false
		}
	}
	return refused
}
