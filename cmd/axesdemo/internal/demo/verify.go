package demo

import (
	"fmt"
	"time"

	"github.com/axes-go/axes"
)

// LimitCheck is the outcome of CheckLedger.
type LimitCheck struct {
	// MaxPerCycle is the most failed guesses that reached the password
	// check in any one dimension (one IP, one username) within one lock
	// cycle: from a fresh count, or from the end of a lock, to the next lock.
	MaxPerCycle int
	// Violations describes every breach of the policy found; none if the
	// limiter held.
	Violations []string
}

// dimState is the checker's view of one dimension's value.
type dimState struct {
	count    int       // failed checks in the current cycle
	lastFail time.Time // last failed check
	locked   bool      // a lock has started (and may have ended since)
	until    time.Time // end of the last lock; zero for none
}

// CheckLedger replays the server's ledger against the documented semantics
// of p (a fixed limit, Window of inactivity, no ExtendLockOnRefused and no
// ResetOnSuccess, as the demo policy) and reports whether any password
// check happened that the limiter should have refused:
//
//   - a check in a dimension that was locked at the time, or
//   - more than Limit failed checks in a dimension within one cycle. A
//     cycle starts fresh when a dimension's failures have been forgotten
//     (Window after its last failure); after a lock ends while failures are
//     still remembered, the next failure locks again, so one more is
//     allowed.
//
// The ledger must hold every check and lockout of the run (none dropped).
func CheckLedger(recs []Record, p axes.Policy) LimitCheck {
	var res LimitCheck
	limit, window := p.Limit, p.Window
	states := make(map[string]*dimState)
	key := func(f axes.Fields, r Record) string {
		var k string
		if f&axes.IP != 0 {
			k += "ip=" + r.IP.String() + " "
		}
		if f&axes.Username != 0 {
			k += fmt.Sprintf("username=%q", r.Username)
			if r.Device != "" {
				// A trusted device counts the username on its own.
				k += fmt.Sprintf(" device=%q", r.Device)
			}
		}
		return f.String() + ": " + k
	}
	get := func(k string) *dimState {
		st := states[k]
		if st == nil {
			st = &dimState{}
			states[k] = st
		}
		return st
	}
	for i, r := range recs {
		switch r.Kind {
		case RecordLockout:
			st := get(key(r.By, r))
			st.locked, st.until = true, r.Until
		case RecordCheck:
			for _, f := range p.LockoutBy {
				k := key(f, r)
				st := get(k)
				remembered := st.count > 0 && r.At.Sub(st.lastFail) < window
				if !remembered {
					st.count = 0
				}
				if st.locked {
					if st.until.IsZero() || r.At.Before(st.until) {
						res.Violations = append(res.Violations,
							fmt.Sprintf("record %d: password check at %v while %s was locked until %v", i, r.At, k, st.until))
					} else {
						// The lock has ended: a new cycle, with one
						// failure left if the old ones are remembered.
						st.locked = false
						if remembered {
							st.count = limit - 1
						}
					}
				}
				if r.OK {
					continue
				}
				st.count++
				st.lastFail = r.At
				res.MaxPerCycle = max(res.MaxPerCycle, st.count)
				if st.count > limit {
					res.Violations = append(res.Violations,
						fmt.Sprintf("record %d: failed check %d of %s in one cycle, over the limit %d", i, st.count, k, limit))
				}
			}
		}
	}
	return res
}
