package store

import "time"

// applySpray is Apply for a rule with spray detection on (Spray.Limit >
// 0): each dimension is kept under the rule of its kind (ForKind), and a
// KindSpray dimension counts or reserves only when the attempt's
// KindMember dimension remembers no failure (after Refresh): a username
// new to the IP within Spray.Window. A reservation in the member does not
// make the username old, since its attempt may end without a failure (a
// cancel, a success): every Begin of a username not yet failed reserves in
// the spray count, and a settled failure counts there only when the member
// remembered no failure before it (the others give their reservation
// back). A KindMember dimension counts every failure and reservation and
// never locks. Under
// Extend, a refused attempt pushes the end of a KindSpray lock but counts
// nothing in either spray kind, so that a locked IP adds no member
// entries. KindCount dimensions go exactly as in Apply. The limiter sends
// the KindMember dimension whenever it sends the KindSpray one for Fail
// and Begin; a settle carries the KindSpray dimension only when its Begin
// reserved there (Outcome.Reserved).
func (r *Rule) applySpray(op Op, dims []DimState, now time.Duration) (refused bool) {
	var rules [3]Rule
	rules[KindCount] = *r
	rules[KindMember] = r.ForKind(KindMember)
	rules[KindSpray] = r.ForKind(KindSpray)
	kind := func(i int) Kind {
		if k := dims[i].Kind; k <= KindSpray {
			return k
		}
		return KindCount
	}
	for i := range dims {
		started, timedOut := rules[kind(i)].Refresh(&dims[i].State, now)
		dims[i].Outcome = Outcome{Started: started, TimedOut: timedOut, Counted: timedOut > 0}
	}
	locked, fresh := false, true
	for i := range dims {
		s := &dims[i].State
		if s.LockedAt(now) {
			locked = true
		}
		if kind(i) == KindMember && s.Failures > 0 {
			fresh = false
		}
	}
	// skip reports whether dimension i takes no part in a failure or
	// reservation, or a settled failure counts nothing in: a KindSpray
	// dimension for a username that failed from the IP.
	skip := func(i int) bool { return kind(i) == KindSpray && !fresh }
	switch op {
	case OpFail, OpBegin:
		if locked {
			refused = true
			if r.Extend {
				for i := range dims {
					s := &dims[i].State
					ru := &rules[kind(i)]
					switch kind(i) {
					case KindMember:
						continue
					case KindSpray:
						if s.LockedAt(now) && s.LockEnd != Indefinite {
							s.LockEnd = max(s.LockEnd, satAdd(now, ru.LockDuration(max(s.Level, 1), s.Failures)))
						}
						continue
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
			refused = true
			for i := range dims {
				dims[i].Outcome.Challenge = true
			}
			break
		}
		if op == OpBegin {
			for i := range dims {
				s := &dims[i].State
				ru := &rules[kind(i)]
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
			ru := &rules[kind(i)]
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
			ru := &rules[kind(i)]
			if s.Gen != dims[i].Gen || s.Pending == 0 {
				continue
			}
			s.Pending--
			if skip(i) {
				continue // the username failed from the IP meanwhile: not new
			}
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
			if rules[kind(i)].ResetOnSuccess && !s.LockedAt(now) {
				s.Failures, s.Level, s.LockEnd = 0, 0, 0
			}
		}
	}
	r.outcomes(dims, refused, now)
	return refused
}
