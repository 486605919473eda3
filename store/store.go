package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/axes-go/axes/internal/memhook"
)

// Store keeps the state of every dimension for a Limiter. The limiter
// computes digests and the Rule, then hands each decision to the store in a
// single Apply call, so that a networked store (see module redisstore) can
// make one round trip per decision. The memory store is the default; give
// another to axes.WithStore. Implementations must be safe for concurrent
// use and must apply Rule.Apply's transition exactly; the package
// github.com/axes-go/axes/storetest checks that.
//
// Every method takes the caller's context: a networked store gives up when
// it is done (and must then make sure the call has no effect later, or
// document what it does instead); the memory store ignores it.
type Store interface {
	// Apply performs req.Op on req.Dims: for every operation but OpReset it
	// runs req.Rule.Apply on the dimensions' states at req.Now (or the
	// store's own clock, documented by the store) and writes each Dim's
	// Outcome and, for OpBegin, its Gen. The dimensions of one request
	// should be updated atomically together; a store that can only update
	// them one at a time must document what it does instead.
	Apply(ctx context.Context, req *Request) error

	// ResetField forgets every entry whose dimension counts field f (IP or
	// Username) with the given field digest (Dim.IPKey or Dim.UserKey), for
	// every combination, and returns how many it forgot.
	ResetField(ctx context.Context, f Fields, key Digest) (int, error)

	// ResetAll forgets every entry and returns how many it forgot.
	ResetAll(ctx context.Context) (int, error)

	// Close releases the store's resources. The limiter calls it from
	// axes.Limiter.Close.
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
	Kind    Kind   // how it counts: KindCount, or a kind of spray detection (ignored unless Rule.Spray is on)
	Digest  Digest // the dimension's keyed digest
	IPKey   Digest // digest of the IP field, when Fields has IP (for ResetIP)
	UserKey Digest // digest of the username field, when Fields has Username
	Gen     uint32 // reservation generation: written by OpBegin, read by settles

	Outcome Outcome // written by Apply
}

// LockLister is implemented by stores that can list their current locks,
// for axes.Limiter.Lockouts.
type LockLister interface {
	Lockouts(ctx context.Context, now time.Time) ([]Lockout, error)
}

// StatsReporter is implemented by stores that count their own events, for
// axes.Limiter.Stats.
type StatsReporter interface {
	StoreStats() Stats
}

// Stats are a store's own figures, part of axes.Stats. The memory store's
// degraded mode under storage pressure (see axes.WithMaxEntries) shows in
// EvictedPressure, Overflows, SketchFolds and SketchDecisions: while they
// stay at 0, every decision was exact.
type Stats struct {
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

// Lockout is one current lock, as axes.Limiter.Lockouts lists it, with the
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

// NewMemory returns the in-memory Store that a Limiter uses by default,
// holding at most maxEntries entries (see axes.WithMaxEntries for what
// happens at the cap), for stores that build on it, such as redisstore's
// local fallback. rule is the base rule by which it expires entries between
// requests (each request brings its own rule); the zero Rule means the rule
// of the first request. The memory store is part of package axes, which
// every program with a Limiter links; without it NewMemory returns an
// error.
func NewMemory(maxEntries int, rule Rule) (Store, error) {
	if memhook.New == nil {
		return nil, errors.New("axes: store.NewMemory needs package github.com/axes-go/axes, which holds the memory store: import it")
	}
	s, err := memhook.New(maxEntries, rule)
	if err != nil {
		return nil, err
	}
	return s.(Store), nil
}
