package store

import (
	"math/rand/v2"
	"testing"
	"time"
)

// One dimension, one operation at an instant: the state before, the
// operation, and the state and outcome after. The instants are named from
// t0, as x/time/rate's tests name theirs.
func TestRuleApplyTable(t *testing.T) {
	const (
		t0 = time.Hour // any instant away from the timeline's start
		m  = time.Minute
	)
	fixed := Rule{Limit: 3, Window: 15 * m, Cooloff: 15 * m, ReserveTimeout: m}
	extend := fixed
	extend.Extend = true
	observe := fixed
	observe.ObserveOnly = true
	resetOnSuccess := fixed
	resetOnSuccess.ResetOnSuccess = true
	backoff := Rule{Limit: 2, Window: m, Cooloff: m, Factor: 2, Decay: time.Hour, ReserveTimeout: m}
	challenge := fixed
	challenge.Limit, challenge.ChallengeAt = 5, 2
	challenged := challenge
	challenged.Challenged = true
	tiers := Rule{Limit: 2, Window: 24 * time.Hour, Cooloff: m, Tiers: []Tier{{2, m}, {4, Indefinite}}, ReserveTimeout: m}

	locked := State{Failures: 3, Level: 1, LastFail: t0, LockEnd: t0 + 15*m}
	tests := []struct {
		name    string
		r       Rule
		before  State
		op      Op
		at      time.Duration
		gen     uint32 // the generation a settle presents
		after   State
		out     Outcome
		refused bool
	}{
		{"first failure", fixed, State{}, OpFail, t0,
			0, State{Failures: 1, LastFail: t0}, Outcome{Failures: 1, Counted: true}, false},
		{"the limit-th failure locks", fixed, State{Failures: 2, LastFail: t0 - m}, OpFail, t0,
			0, locked, Outcome{Failures: 3, Counted: true, Started: true, Locked: true, Remaining: 15 * m}, false},
		{"refused while locked, not extended", fixed, locked, OpFail, t0 + 5*m,
			0, locked, Outcome{Failures: 3, Locked: true, Refused: true, Remaining: 10 * m}, true},
		{"refused while locked, extended", extend, locked, OpFail, t0 + 5*m,
			0, State{Failures: 4, Level: 1, LastFail: t0 + 5*m, LockEnd: t0 + 20*m}, Outcome{Failures: 4, Counted: true, Locked: true, Refused: true, Remaining: 15 * m}, true},
		{"failures forgotten a Window after the last", fixed, State{Failures: 2, LastFail: t0}, OpFail, t0 + 15*m,
			0, State{Failures: 1, LastFail: t0 + 15*m}, Outcome{Failures: 1, Counted: true}, false},
		{"remembered just inside the Window", fixed, State{Failures: 2, LastFail: t0}, OpCheck, t0 + 15*m - 1,
			0, State{Failures: 2, LastFail: t0}, Outcome{Failures: 2}, false},
		{"a lock ends and is forgotten with its failures", fixed, locked, OpCheck, t0 + 15*m,
			0, State{LastFail: t0}, Outcome{}, false},
		{"observe-only counts but never locks", observe, State{Failures: 2, LastFail: t0}, OpFail, t0,
			0, State{Failures: 3, LastFail: t0}, Outcome{Failures: 3, Counted: true}, false},
		{"begin reserves", fixed, State{Failures: 1, LastFail: t0, Gen: 7}, OpBegin, t0,
			0, State{Failures: 1, Pending: 1, LastFail: t0, LastBegin: t0, Gen: 7}, Outcome{Failures: 1, Reserved: true}, false},
		{"begin is busy when the rest are in flight", fixed, State{Failures: 1, Pending: 2, LastFail: t0, LastBegin: t0}, OpBegin, t0,
			0, State{Failures: 1, Pending: 2, LastFail: t0, LastBegin: t0}, Outcome{Failures: 1, Busy: true, Refused: true}, true},
		{"begin is refused while locked", fixed, locked, OpBegin, t0,
			0, locked, Outcome{Failures: 3, Locked: true, Refused: true, Remaining: 15 * m}, true},
		{"settle-fail of the current generation counts", fixed, State{Failures: 2, Pending: 1, LastFail: t0, LastBegin: t0, Gen: 7}, OpSettleFail, t0,
			7, State{Failures: 3, Level: 1, LastFail: t0, LastBegin: t0, Gen: 7, LockEnd: t0 + 15*m}, Outcome{Failures: 3, Counted: true, Started: true, Locked: true, Remaining: 15 * m}, false},
		{"settle-fail of another generation is ignored", fixed, State{Failures: 2, Pending: 1, LastFail: t0, LastBegin: t0, Gen: 8}, OpSettleFail, t0,
			7, State{Failures: 2, Pending: 1, LastFail: t0, LastBegin: t0, Gen: 8}, Outcome{Failures: 2}, false},
		{"settle-success releases", fixed, State{Failures: 2, Pending: 1, LastFail: t0, LastBegin: t0, Gen: 7}, OpSettleSuccess, t0,
			7, State{Failures: 2, LastFail: t0, LastBegin: t0, Gen: 7}, Outcome{Failures: 2}, false},
		{"an unsettled reservation times out into a failure that locks", fixed, State{Failures: 2, Pending: 1, LastFail: t0, LastBegin: t0, Gen: 7}, OpCheck, t0 + 2*m,
			0, State{Failures: 3, Level: 1, LastFail: t0 + m, LastBegin: t0, Gen: 8, LockEnd: t0 + 16*m},
			Outcome{Failures: 3, Counted: true, Started: true, TimedOut: 1, Locked: true, Remaining: 14 * m}, false},
		{"success keeps failures by default", fixed, State{Failures: 2, LastFail: t0}, OpSuccess, t0,
			0, State{Failures: 2, LastFail: t0}, Outcome{Failures: 2}, false},
		{"success forgets with ResetOnSuccess", resetOnSuccess, State{Failures: 2, Level: 1, LastFail: t0, LockEnd: t0 - m}, OpSuccess, t0,
			0, State{LastFail: t0}, Outcome{}, false},
		{"success never lifts a lock", resetOnSuccess, locked, OpSuccess, t0,
			0, locked, Outcome{Failures: 3, Locked: true, Remaining: 15 * m}, false},
		{"back-off doubles at the next level", backoff, State{Failures: 1, Level: 1, LastFail: t0, LockEnd: t0 - m}, OpFail, t0,
			0, State{Failures: 2, Level: 2, LastFail: t0, LockEnd: t0 + 2*m}, Outcome{Failures: 2, Counted: true, Started: true, Locked: true, Remaining: 2 * m}, false},
		{"back-off level decays after Decay unlocked", backoff, State{Level: 3, LockEnd: t0}, OpCheck, t0 + time.Hour,
			0, State{}, Outcome{}, false},
		{"the last tier locks indefinitely", tiers, State{Failures: 3, Level: 2, LastFail: t0 - m, LockEnd: t0}, OpFail, t0,
			0, State{Failures: 4, Level: 1, LastFail: t0, LockEnd: Indefinite}, Outcome{Failures: 4, Counted: true, Started: true, Locked: true, Remaining: Indefinite}, false},
		{"without Decay the level ends with the lock", tiers, State{Failures: 1, Level: 2, LastFail: t0 - m, LockEnd: t0 - 1}, OpCheck, t0,
			0, State{Failures: 1, LastFail: t0 - m}, Outcome{Failures: 1}, false},
		{"failures, level and lock end saturate", backoff, State{Failures: MaxFailures, Level: 255, LastFail: t0, LockEnd: t0 - 1}, OpFail, t0,
			0, State{Failures: MaxFailures, Level: 255, LastFail: t0, LockEnd: maxFinite}, Outcome{Failures: MaxFailures, Counted: true, Started: true, Locked: true, Remaining: maxFinite - t0}, false},
		{"below ChallengeAt a failure counts", challenge, State{Failures: 1, LastFail: t0 - m}, OpFail, t0,
			0, State{Failures: 2, LastFail: t0}, Outcome{Failures: 2, Counted: true}, false},
		{"from ChallengeAt a failure without a challenge is refused, counting nothing", challenge, State{Failures: 2, LastFail: t0 - m}, OpFail, t0,
			0, State{Failures: 2, LastFail: t0 - m}, Outcome{Failures: 2, Refused: true, Challenge: true}, true},
		{"from ChallengeAt a begin without a challenge is refused, reserving nothing", challenge, State{Failures: 2, LastFail: t0 - m, Gen: 7}, OpBegin, t0,
			0, State{Failures: 2, LastFail: t0 - m, Gen: 7}, Outcome{Failures: 2, Refused: true, Challenge: true}, true},
		{"a begin counts reservations toward ChallengeAt", challenge, State{Failures: 1, Pending: 1, LastFail: t0 - m, LastBegin: t0}, OpBegin, t0,
			0, State{Failures: 1, Pending: 1, LastFail: t0 - m, LastBegin: t0}, Outcome{Failures: 1, Refused: true, Challenge: true}, true},
		{"a challenged begin reserves", challenged, State{Failures: 2, LastFail: t0 - m, Gen: 7}, OpBegin, t0,
			0, State{Failures: 2, Pending: 1, LastFail: t0 - m, LastBegin: t0, Gen: 7}, Outcome{Failures: 2, Reserved: true}, false},
		{"a challenged failure counts and still locks at Limit", challenged, State{Failures: 4, LastFail: t0 - m}, OpFail, t0,
			0, State{Failures: 5, Level: 1, LastFail: t0, LockEnd: t0 + 15*m}, Outcome{Failures: 5, Counted: true, Started: true, Locked: true, Remaining: 15 * m}, false},
		{"a lock comes before a challenge", challenge, State{Failures: 5, Level: 1, LastFail: t0, LockEnd: t0 + 15*m}, OpFail, t0 + m,
			0, State{Failures: 5, Level: 1, LastFail: t0, LockEnd: t0 + 15*m}, Outcome{Failures: 5, Locked: true, Refused: true, Remaining: 14 * m}, true},
		{"a check asks for no challenge", challenge, State{Failures: 3, LastFail: t0 - m}, OpCheck, t0,
			0, State{Failures: 3, LastFail: t0 - m}, Outcome{Failures: 3}, false},
		{"failures forgotten a Window after the last need no challenge", challenge, State{Failures: 3, LastFail: t0 - 15*m}, OpFail, t0,
			0, State{Failures: 1, LastFail: t0}, Outcome{Failures: 1, Counted: true}, false},
	}
	for _, tt := range tests {
		d := []DimState{{State: tt.before, Gen: tt.gen}}
		refused := tt.r.Apply(tt.op, d, tt.at)
		if d[0].State != tt.after || d[0].Outcome != tt.out || refused != tt.refused {
			t.Errorf("%s: %v at t0%+v:\n got %+v %+v refused %v\nwant %+v %+v refused %v",
				tt.name, tt.op, tt.at-t0, d[0].State, d[0].Outcome, refused, tt.after, tt.out, tt.refused)
		}
	}
}

// One dimension at ChallengeAt refuses the whole attempt: no dimension
// counts or reserves, and every one reports the challenge.
func TestRuleChallengeEveryDimension(t *testing.T) {
	const t0 = time.Hour
	r := Rule{Limit: 5, Window: time.Hour, Cooloff: time.Hour, ReserveTimeout: time.Minute, ChallengeAt: 3}
	for _, op := range []Op{OpFail, OpBegin} {
		d := []DimState{{State: State{Failures: 1, LastFail: t0}}, {State: State{Failures: 3, LastFail: t0}}}
		if !r.Apply(op, d, t0) {
			t.Fatalf("%v: not refused", op)
		}
		for i, want := range []int{1, 3} {
			o, s := d[i].Outcome, d[i].State
			if !o.Challenge || !o.Refused || o.Counted || s.Failures != want || s.Pending != 0 {
				t.Errorf("%v: dimension %d: outcome %+v state %+v", op, i, o, s)
			}
		}
	}
}

// Horizon is exact: Refresh at the horizon or later leaves nothing, and
// just before it leaves something, for random states and rules.
func TestHorizon(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	d := func(upTo time.Duration) time.Duration { return time.Duration(rng.Int64N(int64(upTo))) }
	for i := range 20000 {
		r := Rule{Limit: 1 + rng.IntN(5), Window: 1 + d(time.Hour), Cooloff: 1 + d(time.Hour), ReserveTimeout: 1 + d(time.Hour)}
		if rng.IntN(2) == 0 {
			r.Factor, r.Decay = 2, 1+d(24*time.Hour)
		}
		if rng.IntN(8) == 0 {
			r.Cooloff = Indefinite
		}
		var s State
		now := d(time.Hour)
		for range 1 + rng.IntN(6) {
			now += d(90 * time.Minute)
			op := []Op{OpFail, OpFail, OpBegin, OpSettleFail, OpSettleSuccess, OpCheck}[rng.IntN(6)]
			d := []DimState{{State: s, Gen: s.Gen}}
			r.Apply(op, d, now)
			s = d[0].State
		}
		h := r.Horizon(s)
		if h == Indefinite {
			continue
		}
		after := s
		r.Refresh(&after, max(h, now))
		if !after.IsZero() {
			t.Fatalf("case %d: %+v under %+v: Refresh at the horizon %v leaves %+v", i, s, r, h, after)
		}
		if h > now {
			before := s
			r.Refresh(&before, h-1)
			if before.IsZero() {
				t.Fatalf("case %d: %+v under %+v: nothing left at %v, before the horizon %v", i, s, r, h-1, h)
			}
		}
	}
	if got := (&Rule{}).Horizon(State{LockEnd: Indefinite}); got != Indefinite {
		t.Errorf("a lock with no end: horizon %v", got)
	}
}
