package store

import (
	"testing"
	"time"
)

// TestApplySpray steps one attempt's spray dimensions (a member and the
// IP's count) through Apply: a new username counts, a known one does not,
// Begin reserves in the count only for a username not failed before (one
// in flight included), a settle counts there only a username's first
// failure, and a refused
// attempt under Extend pushes the spray lock without counting.
func TestApplySpray(t *testing.T) {
	const m = time.Minute
	t0 := time.Hour
	r := Rule{Limit: 100, Window: m, Cooloff: m, ReserveTimeout: m,
		Spray: Spray{Limit: 2, Window: time.Hour, Cooloff: 10 * m}}
	dims := func(member, spray State) []DimState {
		return []DimState{{Kind: KindCount}, {Kind: KindMember, State: member}, {Kind: KindSpray, State: spray}}
	}

	// A new username counts in the IP's count; the member never locks.
	d := dims(State{}, State{Failures: 1, LastFail: t0 - m})
	if r.Apply(OpFail, d, t0) || !d[2].Outcome.Started || d[2].State.LockEnd != t0+10*m || d[1].Outcome.Locked {
		t.Errorf("second new username: %+v", d)
	}
	// A username the IP has failed with does not count again.
	d = dims(State{Failures: 1, LastFail: t0 - m}, State{Failures: 1, LastFail: t0 - m})
	r.Apply(OpFail, d, t0)
	if d[2].Outcome.Counted || d[2].State.Failures != 1 || d[1].State.Failures != 2 {
		t.Errorf("known username: %+v", d)
	}
	// A username failed before: Begin reserves in the member alone.
	d = dims(State{Failures: 1, LastFail: t0}, State{Failures: 1, LastFail: t0})
	if r.Apply(OpBegin, d, t0) || d[2].Outcome.Reserved || !d[1].Outcome.Reserved || d[2].State.Pending != 0 {
		t.Errorf("begin of a failed username: %+v", d)
	}
	// A username only in flight is still new (its attempt may be
	// cancelled): Begin reserves in the count too.
	d = dims(State{Pending: 1, LastBegin: t0}, State{Pending: 1, LastBegin: t0})
	if r.Apply(OpBegin, d, t0) || !d[2].Outcome.Reserved || d[2].State.Pending != 2 {
		t.Errorf("begin of a username in flight: %+v", d)
	}
	// Of two such reservations, the first failure counts and the second
	// gives its reservation back.
	d[0].Gen, d[1].Gen, d[2].Gen = d[0].State.Gen, d[1].State.Gen, d[2].State.Gen
	r.Apply(OpSettleFail, d, t0)
	if !d[2].Outcome.Counted || d[2].State.Failures != 1 || d[2].State.Pending != 1 {
		t.Errorf("first settled failure of a username: %+v", d)
	}
	r.Apply(OpSettleFail, d, t0)
	if d[2].Outcome.Counted || d[2].State.Failures != 1 || d[2].State.Pending != 0 || d[1].State.Failures != 2 {
		t.Errorf("second settled failure of a username: %+v", d)
	}
	// A new username's Begin reserves in the count, and is busy when the
	// count's failures and reservations reach the limit.
	d = dims(State{}, State{Failures: 1, LastFail: t0, Pending: 1, LastBegin: t0})
	if !r.Apply(OpBegin, d, t0) || !d[2].Outcome.Busy {
		t.Errorf("begin past the spray limit: %+v", d)
	}
	// The member forgets after Spray.Window, not the policy's Window.
	d = dims(State{Failures: 1, LastFail: t0}, State{})
	r.Apply(OpCheck, d, t0+30*m)
	if d[1].State.Failures != 1 {
		t.Errorf("member forgotten at the policy's Window: %+v", d[1])
	}
	// Extend: refused, the spray lock is pushed, nothing counted there.
	ext := r
	ext.Extend = true
	locked := State{Failures: 2, Level: 1, LastFail: t0, LockEnd: t0 + 10*m}
	d = dims(State{}, locked)
	if !ext.Apply(OpFail, d, t0+5*m) || d[2].State.LockEnd != t0+15*m || d[2].State.Failures != 2 || d[1].State.Failures != 0 {
		t.Errorf("extend: %+v", d)
	}
	// ObserveOnly counts and never locks.
	obs := r
	obs.ObserveOnly = true
	d = dims(State{}, State{Failures: 1, LastFail: t0})
	if obs.Apply(OpFail, d, t0) || d[2].State.Failures != 2 || d[2].Outcome.Locked {
		t.Errorf("observe-only: %+v", d)
	}
	// Off: kinds are ignored, every dimension counts under the rule.
	off := r
	off.Spray = Spray{}
	d = dims(State{Failures: 1, LastFail: t0}, State{})
	off.Apply(OpFail, d, t0)
	if !d[2].Outcome.Counted || d[1].State.Failures != 2 {
		t.Errorf("spray off: %+v", d)
	}
}
