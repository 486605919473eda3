package redisstore

import (
	"log/slog"
	"strconv"
	"time"
)

// Options of New, the failure modes, and the store's own figures.

// FailureMode says what a Store does when Redis errors or does not answer
// within Options.Timeout.
type FailureMode uint8

// The failure modes of Options.OnFailure.
const (
	// FallbackLocal answers from a local memory store while Redis is
	// unavailable. The local store keeps the locks this server has seen
	// Redis report, so that clients known to be locked stay locked, and it
	// counts the failures of the outage by itself. Locks that start during
	// the outage (up to LocalMaxEntries of them) are written to Redis when
	// it answers again, before any other decision, so that they keep
	// refusing until they end, on every server.
	FallbackLocal FailureMode = iota
	// FailClosed returns an error: the limiter refuses every attempt with
	// axes.ReasonUnavailable until Redis recovers.
	FailClosed
	// FailOpen reports every dimension unlocked and counts nothing until
	// Redis recovers: logins go on unprotected.
	FailOpen
)

var modeNames = [...]string{"fallback-local", "fail-closed", "fail-open"}

// String returns the mode's name, such as "fallback-local".
func (m FailureMode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "FailureMode(" + strconv.Itoa(int(m)) + ")"
}

// Options configures New. The zero Options is valid: keys under "axes:" in
// one hash slot, the server's clock, a 100ms timeout, FallbackLocal.
type Options struct {
	// Prefix starts every key. Default "axes:".
	Prefix string

	// HashTag is the Redis Cluster hash tag shared by every key (without
	// braces), so that one script can update all the dimensions of an
	// attempt. Default "axes". Ignored under SpreadSlots.
	HashTag string

	// SpreadSlots gives every dimension key its own hash tag, spreading
	// axes state over all the slots of a Cluster. Each dimension is then
	// its own script call, pipelined in one round trip, and atomic only by
	// itself: when one dimension of an attempt refuses it (locked or busy)
	// while another has already counted or reserved it, a second round
	// trip undoes that in the other dimensions, unless another attempt
	// wrote them in between (counted in Stats.UndoRaces). SpreadSlots does not
	// take axes.Policy.Spray, whose count of an IP must read the IP's
	// username entries atomically: every decision under such a policy
	// fails with ErrSpraySpread (the limiter refuses the attempt as
	// unavailable), and the store stays up.
	SpreadSlots bool

	// UseRequestTime makes the store use store.Request.Now (the limiter's
	// clock) instead of the Redis server's TIME. Use it with fake clocks
	// (tests, simulations) or when the servers' clocks are trusted more
	// than Redis's; all servers sharing a prefix must agree.
	UseRequestTime bool

	// Timeout bounds every call to Redis; no call waits longer. Default
	// 100ms. The client must honour contexts (ContextTimeoutEnabled).
	Timeout time.Duration

	// OnFailure says what happens while Redis is unavailable. Default
	// FallbackLocal.
	OnFailure FailureMode

	// LocalMaxEntries caps the fallback memory store. Default 1<<16.
	LocalMaxEntries int

	// Secret, if set, must be the secret given to axes.WithSecret. New
	// writes a verifier derived from it next to the keys and refuses to
	// start when another server wrote a different one: servers with
	// different secrets would count in separate keys without noticing.
	Secret []byte

	// RefuseEvictingPolicy makes New fail when a server's maxmemory-policy
	// is not noeviction. Every axes key has a TTL, so volatile-* policies
	// evict lockout keys as allkeys-* do. By default New only logs a
	// warning. A server that refuses CONFIG (managed Redis) is logged and
	// accepted.
	RefuseEvictingPolicy bool

	// MaxKeys is the footprint budget: how many dimension keys the store
	// may hold in Redis. A
	// dimension seen for the first time while the budget is spent is kept
	// in the sketch instead (see SketchWidth), so that a spray of new keys
	// cannot exhaust Redis's memory; keys already held stay exact. Units
	// are counted by the minute in which they expire, so a key is counted
	// until at most a minute after it expired. Under SpreadSlots each of
	// the 256 shards gets MaxKeys/256 (rounded down). Default 1<<20.
	MaxKeys int

	// SketchWidth is the number of cells in each of the sketch's 4 rows
	// (24 bytes a cell, so the default takes 1.5 MiB). The sketch keeps the
	// dimensions the budget cannot: a count-min sketch whose cells hold
	// failures, reservations, the last failure and the lock end, so that a
	// dimension in it may be over-counted (it shares its cells with others)
	// but never under-counted. Wider means fewer false lockouts when a
	// spray fills the budget. Under SpreadSlots each shard gets
	// SketchWidth/256 cells a row. Default 1<<14.
	SketchWidth int

	// MaxTTL bounds the TTL of every key. A lock with no end (axes.Forever)
	// is kept this long. Default 365 days.
	MaxTTL time.Duration

	// ProbeInterval is the first wait before probing Redis after a
	// failure; it doubles up to 32 times itself. Default 50ms.
	ProbeInterval time.Duration

	// Logger receives warnings (eviction policy, degradation). Default
	// slog.Default().
	Logger *slog.Logger

	// OnDegraded, if set, is called once when Redis becomes unavailable,
	// with the error, and OnRecovered when it answers again. They run on
	// the goroutine that noticed, outside any lock.
	OnDegraded  func(err error)
	OnRecovered func()

	// NoLocalLocks turns off the local lock cache. By default each Store
	// keeps the lock ends Redis reports (LocalLocksSize of them) and
	// refuses a client it knows to be locked without a round trip, until
	// the lock ends, for decisions whose policy does not extend locks on
	// refused attempts (ExtendLockOnRefused); every reset is published on
	// a channel under Prefix so that it reaches every server's cache. See
	// the README's "Locks served locally". A reset reaches the other
	// servers' caches when its message does, a moment after it returns;
	// and until the store notices an outage, cached locks go on refusing
	// whatever OnFailure says.
	NoLocalLocks bool

	// LocalLocksSize is the number of locks the local cache holds, rounded
	// up to a power of two, at least 512; 72 bytes each, so the default
	// 1<<14 takes 1.1 MiB. When it is full a new lock replaces, among the
	// 8 that share its slot set, the one that ends soonest. At most 1<<26.
	LocalLocksSize int

	// WaitReplicas, if positive, makes every write that may start a lock
	// (Fail, Begin and settling a reservation as a failure) wait until
	// that many replicas of its master have acknowledged it (Redis WAIT,
	// pipelined behind the script on the same connection), or until
	// WaitTimeout. A lock a replica acknowledged survives the replica's
	// promotion when the master is lost; see the README's "Failover".
	// When fewer replicas acknowledge in time, the decision stands (the
	// store does not degrade) and Stats.Unacknowledged counts it; the
	// writes of the next second then do not wait (counted unacknowledged
	// too), but one a second waits again until one is acknowledged, so
	// that a master without replicas (one just promoted) does not add
	// WaitTimeout to every write. It
	// needs a *redis.Client (standalone or Sentinel's NewFailoverClient)
	// or a *redis.ClusterClient, and the default one-slot layout (not
	// SpreadSlots). Default 0: writes are replicated asynchronously.
	WaitReplicas int

	// WaitTimeout bounds WAIT under WaitReplicas. Default Timeout/4; it is
	// shortened further so that no call waits past Timeout.
	WaitTimeout time.Duration
}

// Stats are the store's own figures.
type Stats struct {
	Degraded     bool   // Redis is unavailable now
	Degradations uint64 // times Redis became unavailable
	Recoveries   uint64 // times it answered again
	Errors       uint64 // Redis calls that failed or timed out
	Fallbacks    uint64 // decisions made without Redis (by OnFailure)
	RoundTrips   uint64 // round trips made for decisions
	UndoRaces    uint64 // SpreadSlots: undos skipped because a dimension was written in between
	Sketched     uint64 // dimension decisions kept in the sketch because the budget was spent
	OutageLocks  uint64 // locks started during an outage and written to Redis on recovery

	RoundTripsSaved    uint64 // decisions answered from the local lock cache, without Redis
	CacheInvalidations uint64 // invalidations received by the local lock cache, and whole drops when its channel was lost

	Waited         uint64 // WaitReplicas: writes that waited for replicas
	Unacknowledged uint64 // WaitReplicas: writes fewer replicas than WaitReplicas acknowledged in time, or that did not wait (see WaitReplicas)
}
