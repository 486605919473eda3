package axes

import (
	"sync/atomic"
	"unsafe"

	"github.com/axes-go/axes/store"
)

// The limiter's running figures: striped counters written on every
// decision, and Stats, which adds them up with the store's own figures.

// counters are striped, so that cores counting at once do not contend for
// one cache line. Stats sums the stripes.
type counters struct {
	s [16]counterStripe
}

type counterStripe struct {
	failures, lockouts, refused, successes, resets, storeErrors atomic.Uint64
	_                                                           [128 - 6*8]byte // a stripe per two cache lines
}

// stripe returns the stripe for the calling goroutine to add one
// decision's counts to: the one its stack's address picks. A goroutine
// keeps its stripe from call to call (until its stack moves), and with it
// the stripe's cache line in the cache of the core it runs on, where a
// stripe drawn at random for every decision would, with two cores, find
// its line in the other core's cache about every other time. Goroutines
// have distinct stacks, so concurrent ones spread over the stripes.
func (n *counters) stripe() *counterStripe {
	var here byte
	a := uintptr(unsafe.Pointer(&here))
	return &n.s[(a>>13^a>>17)&15]
}

func (n *counters) sum(f func(*counterStripe) *atomic.Uint64) uint64 {
	var t uint64
	for i := range n.s {
		t += f(&n.s[i]).Load()
	}
	return t
}

// Stats are a limiter's running figures, cheap to read every second.
// Failures counts failures the store recorded, exactly or, under storage
// pressure, in the memory store's sketch.
type Stats struct {
	Entries         int    // entries the store holds now
	Failures        uint64 // failed attempts counted
	Lockouts        uint64 // locks started (per dimension)
	Refused         uint64 // attempts refused without reaching the password check
	Successes       uint64 // successful logins recorded
	Resets          uint64 // Reset, ResetIP, ResetUsername and ResetAll calls
	EvictedExpired  uint64 // entries dropped because they held nothing worth keeping
	EvictedPressure uint64 // live entries evicted to make room under the entry cap
	Overflows       uint64 // writes of keys that found no slot (only locks remained), recorded in the sketch
	SketchFolds     uint64 // evicted live entries folded into the sketch
	SketchDecisions uint64 // decisions made from the sketch's estimate, which may over-count
	// IdentitiesOverBudget counts locks kept without their identity (listed
	// by digest) because the identity budget was spent.
	IdentitiesOverBudget uint64
	StoreErrors          uint64 // store calls that failed
	Degraded             bool   // the store is deciding without its backend now (redisstore)
	Degradations         uint64 // times the store lost its backend
}

// Stats returns the limiter's figures.
func (l *Limiter) Stats() Stats {
	s := Stats{
		Failures:    l.counts.sum(func(c *counterStripe) *atomic.Uint64 { return &c.failures }),
		Lockouts:    l.counts.sum(func(c *counterStripe) *atomic.Uint64 { return &c.lockouts }),
		Refused:     l.counts.sum(func(c *counterStripe) *atomic.Uint64 { return &c.refused }),
		Successes:   l.counts.sum(func(c *counterStripe) *atomic.Uint64 { return &c.successes }),
		Resets:      l.counts.sum(func(c *counterStripe) *atomic.Uint64 { return &c.resets }),
		StoreErrors: l.counts.sum(func(c *counterStripe) *atomic.Uint64 { return &c.storeErrors }),
	}
	if sr, ok := l.store.(store.StatsReporter); ok {
		ss := sr.StoreStats()
		s.Entries = ss.Entries
		s.EvictedExpired = ss.EvictedExpired
		s.EvictedPressure = ss.EvictedPressure
		s.Overflows = ss.Overflows
		s.SketchFolds = ss.SketchFolds
		s.SketchDecisions = ss.SketchDecisions
		s.IdentitiesOverBudget = ss.IdentitiesOverBudget
		s.Degraded = ss.Degraded
		s.Degradations = ss.Degradations
	}
	return s
}
