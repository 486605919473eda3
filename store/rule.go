package store

import (
	"fmt"
	"math"
	"time"
)

// The policy's state transition: what a store remembers of one dimension
// (State), the numbers of the policy for one attempt (Rule), and the one
// transition every store applies (Rule.Apply, with Refresh for the passage
// of time and Horizon for how long a state must be kept). The memory store
// runs it in Go; redisstore runs the same steps in its Lua script, in the
// same order, and a differential test proves the two agree.

// MaxFailures is the highest failure count a dimension remembers; counts
// saturate there, and Limit may not exceed it.
const MaxFailures = 1<<16 - 1

// Indefinite is the RetryAfter of a lock with no end (Forever, a Tier with
// an Indefinite Cooloff, or a denied IP).
const Indefinite time.Duration = 1<<63 - 1

// maxFinite is the longest finite lock; durations saturate there.
const maxFinite = Indefinite - 1

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

	// ChallengeAt, if above 0, refuses a Fail or Begin that does not carry
	// a passed challenge (Challenged) once a dimension of the attempt holds
	// ChallengeAt failures (for Begin, failures and reservations), unless a
	// dimension is locked (locks come first) or ObserveOnly is set.
	ChallengeAt int
	// Challenged reports that this attempt carries a passed challenge: a
	// property of the attempt, like JitterScale, not of the policy.
	Challenged bool

	// Spray holds the numbers of password-spray detection, for the
	// dimensions of kinds KindMember and KindSpray (see Kind); its zero
	// value means off, and the limiter then sends no such dimension.
	Spray Spray
}

// Spray is axes.Spray as a store applies it: a KindSpray dimension (one
// per client IP) counts a failure only when the attempt's KindMember
// dimension (one per IP and username) remembers no failure (a reservation
// there does not make the username old), that is, for a username new to
// the IP within Window, and locks at Limit for Cooloff. Both kinds forget Window after their last
// failure.
type Spray struct {
	Limit   int
	Window  time.Duration
	Cooloff time.Duration
}

// Kind says how a dimension counts: KindCount for the policy's own
// dimensions, KindMember and KindSpray for password-spray detection.
type Kind uint8

// The kinds of Dim.Kind and DimState.Kind.
const (
	KindCount  Kind = iota // a LockoutBy dimension, counted under the Rule itself
	KindMember             // an (IP, username) pair of spray detection: remembers, never locks
	KindSpray              // an IP of spray detection: counts new usernames, locks at Spray.Limit
)

// ForKind returns the rule by which a dimension of kind k is kept: r
// itself for KindCount; for the spray kinds, a fixed lock of
// Spray.Cooloff at Spray.Limit (KindMember never locks, by ObserveOnly),
// failures kept Spray.Window, with no back-off, tiers, jitter, challenge
// or reset on success. Stores use it for what they do to one dimension
// outside Apply (expiry, the sketch).
func (r *Rule) ForKind(k Kind) Rule {
	if k == KindCount {
		return *r
	}
	return Rule{
		Limit:          r.Spray.Limit,
		Window:         r.Spray.Window,
		Cooloff:        r.Spray.Cooloff,
		Extend:         r.Extend,
		ObserveOnly:    r.ObserveOnly || k == KindMember,
		ReserveTimeout: r.ReserveTimeout,
		Spray:          r.Spray,
	}
}

// Tier is one step of axes.Tiers: from Failures remembered failures on, a lock
// lasts Cooloff (Indefinite for a lock with no end).
type Tier struct {
	Failures int
	Cooloff  time.Duration
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
	Challenge bool          // refused for want of a passed challenge (set on every dimension)
	Reserved  bool          // Begin: a reservation was made here (a KindSpray dimension may take none)
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
			r.StartLock(s, at)
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

// Horizon returns the instant from which s holds nothing worth keeping
// under r, if time passes without another operation: Refresh at that
// instant or later leaves s zero. Its reservations time out into failures
// (which may start a lock), its failures are forgotten Window after the
// last one, its lock ends, and its back-off level decays Decay after that.
// Indefinite means never. Every store derives its expiry from it: the
// memory store's sweep, snapshot restore and redisstore's key TTLs.
func (r *Rule) Horizon(s State) time.Duration {
	if s.LockEnd == Indefinite {
		return Indefinite
	}
	if s.Pending > 0 {
		at := satAdd(s.LastBegin, r.ReserveTimeout)
		if r.ReserveTimeout <= 0 {
			return Indefinite // reservations that never time out
		}
		r.Refresh(&s, at)
		return max(at, r.Horizon(s))
	}
	var h time.Duration
	if s.Failures > 0 {
		h = max(h, satAdd(s.LastFail, r.Window))
	}
	if s.LockEnd != 0 {
		h = max(h, s.LockEnd)
	}
	if s.Level > 0 {
		h = max(h, satAdd(s.LockEnd, r.Decay))
	}
	return h
}

// StartLock starts a lock of s at at, as Apply does when a dimension
// reaches the limit: the back-off level rises by one (saturating at 255) and
// the lock ends LockDuration later. Stores that keep a state outside Apply
// (the memory store's sketch) use it to lock as Apply would.
func (r *Rule) StartLock(s *State, at time.Duration) {
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

// DimState is one dimension of an attempt as Rule.Apply transforms it.
type DimState struct {
	Kind    Kind    // how the dimension counts; ignored unless Spray.Limit > 0
	State   State   // what the store remembers, updated in place
	Gen     uint32  // the reservation generation: read by the settles, written by OpBegin
	Outcome Outcome // what the operation did, written by Apply
}

// Apply is the one state transition of the policy: it applies op at now to
// the dimensions of one attempt, whose states the caller must hold
// exclusively for the whole call (the memory store holds their shard
// locks), updating each State and Gen and writing each Outcome. It reports
// whether the attempt was refused (a dimension is locked; or, for Fail and
// Begin, a challenge is due and the attempt carries none; or, for Begin, a
// dimension is busy). OpReset is not a transition: the store deletes the
// states.
func (r *Rule) Apply(op Op, dims []DimState, now time.Duration) (refused bool) {
	if r.Spray.Limit > 0 {
		ks := kindRules{member: r.ForKind(KindMember), spray: r.ForKind(KindSpray)}
		return r.apply(op, dims, now, &ks)
	}
	return r.apply(op, dims, now, nil)
}

// kindRules are the rules of the spray-detection kinds of dimension
// (ForKind), for an attempt under a rule with spray detection on.
type kindRules struct {
	member, spray Rule
}

// of returns the rule of dimension d under base: base itself for
// KindCount (and any unknown kind), and whenever spray detection is off
// (ks nil).
func (ks *kindRules) of(base *Rule, d *DimState) *Rule {
	if ks != nil {
		switch d.Kind {
		case KindMember:
			return &ks.member
		case KindSpray:
			return &ks.spray
		}
	}
	return base
}

// apply is Apply, with ks the rules of the spray-detection kinds, or nil
// when spray detection is off (every dimension then goes by r).
//
// Under spray detection each dimension is kept under the rule of its kind
// (ForKind), and a KindSpray dimension counts or reserves only when the
// attempt's KindMember dimension remembers no failure (after Refresh): a
// username new to the IP within Spray.Window. A reservation in the member
// does not make the username old, since its attempt may end without a
// failure (a cancel, a success): every Begin of a username not yet failed
// reserves in the spray count, and a settled failure counts there only
// when the member remembered no failure before it (the others give their
// reservation back). A KindMember dimension counts every failure and
// reservation and never locks. Under Extend, a refused attempt pushes the
// end of a KindSpray lock but counts nothing in either spray kind, so that
// a locked IP adds no member entries. The limiter sends the KindMember
// dimension whenever it sends the KindSpray one for Fail and Begin; a
// settle carries the KindSpray dimension only when its Begin reserved
// there (Outcome.Reserved).
func (r *Rule) apply(op Op, dims []DimState, now time.Duration, ks *kindRules) (refused bool) {
	for i := range dims {
		started, timedOut := ks.of(r, &dims[i]).Refresh(&dims[i].State, now)
		dims[i].Outcome = Outcome{Started: started, TimedOut: timedOut, Counted: timedOut > 0}
	}
	locked, fresh := false, true
	for i := range dims {
		s := &dims[i].State
		if s.LockedAt(now) {
			locked = true
		}
		if ks != nil && dims[i].Kind == KindMember && s.Failures > 0 {
			fresh = false
		}
	}
	// skip reports whether dimension i takes no part in a failure or
	// reservation, or a settled failure counts nothing in: a KindSpray
	// dimension for a username that failed from the IP.
	skip := func(i int) bool { return ks != nil && dims[i].Kind == KindSpray && !fresh }
	switch op {
	case OpFail, OpBegin:
		if locked {
			refused = true
			if r.Extend {
				for i := range dims {
					s := &dims[i].State
					ru := ks.of(r, &dims[i])
					if ks != nil {
						switch dims[i].Kind {
						case KindMember:
							continue
						case KindSpray:
							if s.LockedAt(now) && s.LockEnd != Indefinite {
								s.LockEnd = max(s.LockEnd, satAdd(now, ru.LockDuration(max(s.Level, 1), s.Failures)))
							}
							continue
						}
					}
					ru.count(s, now)
					dims[i].Outcome.Counted = true
					if s.LockedAt(now) {
						if s.LockEnd != Indefinite {
							d := ru.LockDuration(max(s.Level, 1), s.Failures)
							if d == Indefinite {
								s.LockEnd = Indefinite
							} else {
								s.LockEnd = max(s.LockEnd, satAdd(now, d))
							}
						}
					} else if !ru.ObserveOnly && s.Failures >= ru.Limit {
						ru.StartLock(s, now)
						dims[i].Outcome.Started = true
					}
				}
			}
			break
		}
		if r.challengeDue(op, dims) {
			// Refused, counting and reserving nothing: the client may come
			// back with a passed challenge.
			refused = true
			for i := range dims {
				dims[i].Outcome.Challenge = true
			}
			break
		}
		if op == OpBegin {
			for i := range dims {
				s := &dims[i].State
				ru := ks.of(r, &dims[i])
				if ru.ObserveOnly || skip(i) {
					continue
				}
				if s.Failures+s.Pending >= ru.Limit && !(s.Failures >= ru.Limit && s.Pending == 0) {
					dims[i].Outcome.Busy = true
					refused = true
				}
			}
			if refused {
				break
			}
			for i := range dims {
				if skip(i) {
					continue
				}
				s := &dims[i].State
				s.Pending = min(s.Pending+1, MaxFailures)
				s.LastBegin = max(s.LastBegin, now)
				dims[i].Gen = s.Gen
				dims[i].Outcome.Reserved = true
			}
			break
		}
		for i := range dims {
			if skip(i) {
				continue
			}
			s := &dims[i].State
			ru := ks.of(r, &dims[i])
			ru.count(s, now)
			dims[i].Outcome.Counted = true
			if !ru.ObserveOnly && s.Failures >= ru.Limit {
				ru.StartLock(s, now)
				dims[i].Outcome.Started = true
			}
		}
	case OpSettleFail:
		for i := range dims {
			s := &dims[i].State
			if s.Gen != dims[i].Gen || s.Pending == 0 {
				continue // timed out (already counted) or forgiven by a reset
			}
			s.Pending--
			if skip(i) {
				continue // the username failed from the IP meanwhile: not new
			}
			ru := ks.of(r, &dims[i])
			ru.count(s, now)
			dims[i].Outcome.Counted = true
			if !ru.ObserveOnly && !s.LockedAt(now) && s.Failures >= ru.Limit {
				ru.StartLock(s, now)
				dims[i].Outcome.Started = true
			}
		}
	case OpSettleSuccess, OpSuccess:
		for i := range dims {
			s := &dims[i].State
			if op == OpSettleSuccess && s.Gen == dims[i].Gen && s.Pending > 0 {
				s.Pending--
			}
			if ks.of(r, &dims[i]).ResetOnSuccess && !s.LockedAt(now) {
				s.Failures, s.Level, s.LockEnd = 0, 0, 0
			}
		}
	}
	r.outcomes(dims, refused, now)
	return refused
}

// outcomes completes the outcome of every dimension, the end of Apply.
func (r *Rule) outcomes(dims []DimState, refused bool, now time.Duration) {
	for i := range dims {
		s := &dims[i].State
		o := &dims[i].Outcome
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
}

// challengeDue reports whether op (OpFail or OpBegin) on dims, none of
// them locked, must carry a passed challenge and does not: some dimension
// holds ChallengeAt failures, counting its reservations for Begin (so
// that racing Begins cannot pass the threshold together).
func (r *Rule) challengeDue(op Op, dims []DimState) bool {
	if r.ChallengeAt <= 0 || r.Challenged || r.ObserveOnly {
		return false
	}
	for i := range dims {
		if dims[i].Kind != KindCount && r.Spray.Limit > 0 {
			continue // spray detection asks for no challenge
		}
		s := &dims[i].State
		n := s.Failures
		if op == OpBegin {
			n += s.Pending
		}
		if n >= r.ChallengeAt {
			return true
		}
	}
	return false
}

// LockDuration returns how long a lock that starts at back-off level (1 for
// a first lock) with failures remembered failures lasts under r, or
// Indefinite.
func (r *Rule) LockDuration(level, failures int) time.Duration {
	if len(r.Tiers) > 0 {
		d := r.Tiers[0].Cooloff
		for _, t := range r.Tiers {
			if failures >= t.Failures {
				d = t.Cooloff
			}
		}
		return d
	}
	d := r.Cooloff
	if d == Indefinite || r.Factor <= 1 || level <= 1 {
		return r.scale(d)
	}
	f := float64(d) * math.Pow(r.Factor, float64(level-1))
	if r.MaxCooloff > 0 && f > float64(r.MaxCooloff) {
		return r.scale(r.MaxCooloff)
	}
	if f >= float64(maxFinite) {
		return maxFinite
	}
	return r.scale(time.Duration(f))
}

// scale applies the jitter drawn for this attempt.
func (r *Rule) scale(d time.Duration) time.Duration {
	if r.JitterScale == 0 || r.JitterScale == 1 || d == Indefinite {
		return d
	}
	f := float64(d) * r.JitterScale
	if f >= float64(maxFinite) {
		return maxFinite
	}
	if f < float64(time.Second) {
		return time.Second
	}
	return time.Duration(f)
}
