package axes

import (
	"net/netip"
	"time"
)

// Store keeps the state of every dimension for a Limiter. The limiter
// computes digests and the Rule, then hands each decision to the store in a
// single Apply call, so that a networked store (see module redisstore) can
// make one round trip per decision. The memory store is the default; use
// WithStore for another. Implementations must be safe for concurrent use
// and must apply Rule.Apply's transition exactly; the package storetest
// checks that.
type Store interface {
	// Apply performs req.Op on req.Dims: for every operation but OpReset it
	// runs req.Rule.Apply on the dimensions' states at req.Now (or the
	// store's own clock, documented by the store) and writes each Dim's
	// Outcome and, for OpBegin, its Gen. The dimensions of one request
	// should be updated atomically together; a store that can only update
	// them one at a time must document what it does instead.
	Apply(req *Request) error

	// ResetField forgets every entry whose dimension counts field f (IP or
	// Username) with the given field digest (Dim.IPKey or Dim.UserKey), for
	// every combination, and returns how many it forgot.
	ResetField(f Fields, key Digest) (int, error)

	// ResetAll forgets every entry and returns how many it forgot.
	ResetAll() (int, error)

	// Close releases the store's resources. The limiter calls it from
	// Limiter.Close.
	Close() error
}

// Request is one decision handed to a Store.
type Request struct {
	Op   Op
	Now  time.Time // the limiter's clock
	Rule *Rule
	Dims []Dim

	// Identity describes the client, for stores that keep the identity of
	// current locks (Lockouts). Username and UserAgent are as sent, cut to
	// MaxIdentityBytes; a store must copy them, not retain them.
	Identity Identity
}

// Identity is who a lock is about, as Lockouts reports it.
type Identity struct {
	IP        netip.Prefix // the grouped client address; invalid if unknown
	Username  string
	UserAgent string
}

// MaxIdentityBytes bounds the username and user agent kept for each current
// lock.
const MaxIdentityBytes = 256

// Dim is one dimension of a Request: its digest and index keys as input,
// its outcome as output.
type Dim struct {
	Fields  Fields // the combination counted
	Digest  Digest // the dimension's keyed digest
	IPKey   Digest // digest of the IP field, when Fields has IP (for ResetIP)
	UserKey Digest // digest of the username field, when Fields has Username
	Gen     uint32 // reservation generation: written by OpBegin, read by settles

	Outcome Outcome // written by Apply
}

// LockLister is implemented by stores that can list their current locks.
type LockLister interface {
	Lockouts(now time.Time) ([]Lockout, error)
}

// StatsReporter is implemented by stores that count their own events.
type StatsReporter interface {
	StoreStats() StoreStats
}

// StoreStats are a store's own figures, part of Stats. The memory store's
// degraded mode under storage pressure (see WithMaxEntries) shows in
// EvictedPressure, Overflows, SketchFolds and SketchDecisions: while they
// stay at 0, every decision was exact.
type StoreStats struct {
	Entries         int    // entries held now
	EvictedExpired  uint64 // entries dropped because they held nothing worth keeping
	EvictedPressure uint64 // live entries evicted to make room under the entry cap
	// Overflows counts writes of keys that found no slot because only
	// locked or reserved entries remained; the memory store records them
	// in its sketch instead.
	Overflows uint64
	// SketchFolds counts evicted live entries whose state folded into the
	// sketch.
	SketchFolds uint64
	// SketchDecisions counts decisions on a dimension made from the
	// sketch's estimate (the key was not in the table and the sketch held
	// something for it, or the key found no slot): such decisions may
	// over-count, never under-count.
	SketchDecisions uint64
	// IdentitiesOverBudget counts locks kept without their identity
	// because the identity budget was spent; Lockouts lists them by digest.
	IdentitiesOverBudget uint64
	Degraded             bool   // a networked store is deciding without its backend now
	Degradations         uint64 // times a networked store lost its backend
}

// Lockout is one current lock, as Limiter.Lockouts lists it, with the
// client of the attempt that started it.
type Lockout struct {
	IP        netip.Prefix // the client's grouped address; invalid when unknown
	Username  string       // as sent, cut to MaxIdentityBytes
	UserAgent string       // as sent, cut to MaxIdentityBytes
	By        Fields       // the dimension that is locked
	Failures  int          // remembered failures
	Until     time.Time    // when the lock ends; the zero Time for a lock with no end
	Digest    Digest       // the dimension's digest
}
