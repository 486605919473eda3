package axes

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/axes-go/axes/internal/memhook"
	"github.com/axes-go/axes/store"
)

// The memory store: lock-striped shards, each an open-addressed table of
// pointer-free slots probed by groups of eight control bytes (as Go's own
// maps and SwissTable do), sized from the entry cap so that a full store
// wastes little space. Expiry is lazy on access, plus a bounded sweep of a
// few groups on every write and a full sweep before a shard grows or
// evicts; there is no background goroutine.
//
// A lock-free filter of currently locked digests lets Locked answer "not
// locked" with one atomic load per dimension: no mutex, no clock read.
//
// What the table cannot hold exactly goes to a sketch (sketch.go): live
// entries evicted under the cap fold into it, and keys that find no slot
// because only locked or reserved entries remain are decided on it. Times
// are kept on the store's own timeline (timeline.go). The table is in
// table.go, expiry and eviction in evict.go, lock identities in identity.go.

// memStore is the default store.Store. Its methods are safe for concurrent use.
type memStore struct {
	shards      []shard
	shardMask   uint64
	maxEntries  int        // the hard cap on entries across shards
	capPerShard int        // the average shard's share of maxEntries
	maxPer      int        // most entries one shard may hold (its share plus slack)
	maxGroups   int        // the largest table of a shard
	tl          timeline   // clock readings to instants
	base        store.Rule // the limiter's base rule, for expiry during sweeps
	baseOnce    sync.Once  // sets base from the first request when not given
	timeOnce    sync.Once  // starts the timeline at the first call when not started
	filter      []atomic.Uint32
	filterShift uint
	sk          *sketch
	idBudget    int          // bytes of lock identities the store may hold
	idBytes     atomic.Int64 // bytes of lock identities held, as identityCost counts them
	// fullUntil is the instant (in nanoseconds) until which a store at its
	// cap does not look for entries to evict again, because the last look
	// found none: only locked or reserved entries remained.
	fullUntil atomic.Int64
	// noCheapUntil is the instant until which evictElsewhere does not look
	// for entries of the cheapest class again, because the last look found
	// none in any other shard.
	noCheapUntil atomic.Int64

	// total is written by every insert at the cap: its own cache line,
	// apart from the fields above that every call reads.
	_     [64]byte
	total atomic.Int64 // entries held, reserved before each insert
	_     [56]byte
	// noLockCache turns the lock cache off (lockcache.go), for tests
	// that compare the store with and without it.
	noLockCache bool
	lcSize      int // entries of a shard's lock cache
	// monotonic is set when the store's clock is time.Now: a request whose
	// Now is zero is then at the current time (instantOf). The limiter
	// passes a zero Now when nothing else needs the reading.
	monotonic bool
	// noSweepStep turns the incremental sweep off, for tests that compare
	// stores whose writes differ only by the refusals the cache answers.
	noSweepStep bool
	cacheServes atomic.Int64 // answers from the lock cache, when countCacheServes
}

// shard is one stripe. The fields are padded to a multiple of the cache
// line so that neighbouring shards' mutexes do not share a line.
type shard struct {
	shardFields
	_ [(128 - unsafe.Sizeof(shardFields{})%128) % 128]byte
}

type shardFields struct {
	mu     sync.Mutex                  // protects everything below
	ctrl   []uint64                    // a control word per group of 8 slots
	slots  []slot                      // len(ctrl)*8
	ids    map[slotKey]string          // packed identities of locked entries (identity.go)
	lc     atomic.Pointer[[]lockEntry] // the lock cache (lockcache.go), made at its first lock; read without mu
	count  int                         // full slots
	tombs  int                         // deleted control bytes
	cursor int                         // next group for the incremental sweep
	writes uint32                      // writes since the last incremental sweep step
	moves  uint32                      // bumped whenever a slot is freed or the table rebuilt
	swept  time.Duration               // when a full sweep last found nothing to drop

	// pathScore is the cheapest eviction score the shard's last full
	// eviction scan found (see evictOnPath), valid until pathUntil.
	pathScore int
	pathUntil time.Duration

	evictedExpired  uint64
	evictedPressure uint64
	overflows       uint64
	sketchFolds     uint64
	sketchDecisions uint64
	idsOverBudget   uint64
}

func init() {
	memhook.New = func(maxEntries int, rule any) (any, error) {
		if maxEntries < 1 {
			return nil, fmt.Errorf("axes: store.NewMemory needs a positive entry cap, got %d", maxEntries)
		}
		return newMemStore(maxEntries, time.Time{}, rule.(store.Rule)), nil
	}
}

// newMemStore returns a memory store. A non-zero epoch is a clock reading
// less epochMargin: instant 0 of the timeline (an unusable reading, such as
// the zero Time, is corrected at the first request); a zero epoch starts the
// timeline at the first request.
func newMemStore(maxEntries int, epoch time.Time, base store.Rule) *memStore {
	nshards := 256
	for nshards > 1 && maxEntries/nshards < 64 {
		nshards /= 2
	}
	per := (maxEntries + nshards - 1) / nshards
	// Digests spread keys evenly but not exactly: a shard may hold more
	// than its share (the cap itself is enforced across shards), up to a
	// slack of many standard deviations.
	maxPer := per + 6*int(math.Sqrt(float64(per))) + 16
	st := &memStore{
		shards:      make([]shard, nshards),
		shardMask:   uint64(nshards - 1),
		maxEntries:  maxEntries,
		capPerShard: per,
		maxPer:      maxPer,
		maxGroups:   (maxPer+6)/7 + 1,
		base:        base,
		sk:          newSketch(maxEntries),
		idBudget:    maxEntries * identityBytesPerEntry,
		lcSize:      lockCacheSize(per),
	}
	if !epoch.IsZero() {
		st.tl.start(epoch, 0)
	}
	fbits := bits.Len(uint(max(maxEntries/4, 256)) - 1)
	st.filter = make([]atomic.Uint32, 1<<fbits)
	st.filterShift = uint(64 - fbits)
	for i := range st.shards {
		st.shards[i].ids = make(map[slotKey]string)
	}
	return st
}

func (st *memStore) shardOf(d Digest) int { return int(d.Hi & st.shardMask) }

// filterIndex takes bits of the digest that neither the shard nor the
// table position use.
func (st *memStore) filterIndex(d Digest) uint64 { return (d.Lo << 17) >> st.filterShift }

// mayBeLocked reports whether d might be locked, in the table or in the
// sketch; false is certain.
func (st *memStore) mayBeLocked(d Digest) bool {
	return st.filter[st.filterIndex(d)].Load() != 0 || st.sk.mayBeLocked(d)
}

// init completes a store made by store.NewMemory at its first use: its
// timeline starts then (rebuilt from integers so that nothing of the
// caller's values is retained), and its base rule for sweeps is the first
// rule it sees. A nil base sets only the timeline (for reads before any
// write).
func (st *memStore) init(now time.Time, base *store.Rule) {
	st.timeOnce.Do(func() {
		if !st.tl.started() {
			st.tl.start(detach(now), epochMargin)
		}
	})
	if base == nil {
		return
	}
	st.baseOnce.Do(func() {
		if st.base.Window == 0 {
			st.base = *base
			st.base.Tiers = nil
			st.base.JitterScale = 0
		}
	})
}

// Apply implements store.Store.
func (st *memStore) Apply(_ context.Context, req *store.Request) error {
	st.apply(req)
	return nil
}

// ResetField implements store.Store.
func (st *memStore) ResetField(_ context.Context, f Fields, k Digest) (int, error) {
	tag := uint32(k.Lo)
	removed := 0
	st.eachShard(func(sh *shard) {
		sh.eachFull(func(i int) {
			sl := &sh.slots[i]
			if Fields(sl.flags&flagFields)&f != 0 && ((f == IP && sl.ipTag == tag) || (f == Username && sl.userTag == tag)) {
				st.remove(sh, i)
				removed++
			}
		})
	})
	return removed, nil
}

// ResetAll implements store.Store. It forgets the sketch too.
func (st *memStore) ResetAll(context.Context) (int, error) {
	st.sk.clear()
	removed := 0
	st.eachShard(func(sh *shard) {
		removed += sh.count
		sh.eachFull(func(i int) { st.remove(sh, i) })
		sh.ctrl, sh.slots, sh.count, sh.tombs, sh.cursor = nil, nil, 0, 0, 0
	})
	return removed, nil
}

// Close implements store.Store. The memory store holds no goroutine or file.
func (st *memStore) Close() error { return nil }

// Lockouts implements store.LockLister.
func (st *memStore) Lockouts(_ context.Context, t time.Time) ([]Lockout, error) {
	st.init(t, nil)
	now := st.instant(t)
	var out []Lockout
	st.eachShard(func(sh *shard) {
		sh.eachFull(func(i int) {
			sl := &sh.slots[i]
			s := sl.state()
			if !s.LockedAt(now) {
				return
			}
			id := unpackIdentity(sh.ids[sl.k])
			lo := Lockout{
				IP: id.IP, Username: id.Username, UserAgent: id.UserAgent,
				By: Fields(sl.flags & flagFields), Failures: s.Failures, Digest: sl.k.digest(),
			}
			if s.LockEnd != Indefinite {
				lo.Until = t.Add(s.LockEnd - now)
			}
			out = append(out, lo)
		})
	})
	return out, nil
}

// StoreStats implements store.StatsReporter.
func (st *memStore) StoreStats() store.Stats {
	var s store.Stats
	for si := range st.shards {
		sh := &st.shards[si]
		sh.mu.Lock()
		s.Entries += sh.count
		s.EvictedExpired += sh.evictedExpired
		s.EvictedPressure += sh.evictedPressure
		s.Overflows += sh.overflows
		s.SketchFolds += sh.sketchFolds
		s.SketchDecisions += sh.sketchDecisions
		s.IdentitiesOverBudget += sh.idsOverBudget
		sh.mu.Unlock()
	}
	return s
}

// instant converts a clock reading to the store's timeline.
func (st *memStore) instant(t time.Time) time.Duration { return st.tl.instant(t) }

// instantOf is instant(t), except that a zero t on a store whose clock is
// time.Now (monotonic) stands for the current time, read from the
// monotonic clock alone (see timeline.instantNow).
func (st *memStore) instantOf(t time.Time) time.Duration {
	if st.monotonic && t.IsZero() {
		return st.tl.instantNow()
	}
	return st.tl.instant(t)
}

// apply is Apply without the interface, so that the limiter's calls on the
// default store are direct and allocation-free.
func (st *memStore) apply(req *store.Request) {
	st.init(req.Now, req.Rule)
	dims := req.Dims
	n := len(dims)
	var order [8]int
	var keys [8]slotKey
	var idx [8]int
	var moves [8]uint32
	var sketched uint8 // bit i: the state of dims[i] was estimated from the sketch
	// Lock the distinct shards in ascending order.
	m := 0
	for i := range dims {
		s := st.shardOf(dims[i].Digest)
		j := m
		for j > 0 && order[j-1] > s {
			j--
		}
		if j > 0 && order[j-1] == s {
			continue
		}
		copy(order[j+1:m+1], order[j:m])
		order[j] = s
		m++
	}
	for _, s := range order[:m] {
		st.shards[s].mu.Lock()
	}
	now := st.instantOf(req.Now)
	// The dimensions as Rule.Apply transforms them: most policies have one
	// or two, and a smaller array costs less to zero.
	var ds []store.DimState
	if n <= 2 {
		var small [2]store.DimState
		ds = small[:n]
	} else {
		var all [8]store.DimState
		ds = all[:n]
	}
	for i := range dims {
		d := &dims[i]
		keys[i] = toSlotKey(d.Digest)
		sh := &st.shards[st.shardOf(d.Digest)]
		idx[i] = sh.find(keys[i], d.Digest)
		moves[i] = sh.moves
		if idx[i] >= 0 {
			ds[i].State = sh.slots[idx[i]].state()
		} else {
			// A new entry starts at a random reservation generation, so
			// that a settle arriving after its entry was forgotten and
			// made anew almost never matches a new reservation.
			ds[i].State = store.State{Gen: uint32(uint8(mrand.Uint32()))}
			// A key the table does not hold starts from what the sketch
			// vouches for it.
			if req.Op != store.OpReset && st.sk.live.Load() != 0 && d.Kind != store.KindMember {
				// (A spray member is not read from the sketch: one it
				// holds by mistake would hide a new username.)
				if est, ok := st.sk.estimate(d.Digest, now, windowOf(req.Rule, d.Kind)); ok {
					est.Gen = ds[i].State.Gen
					ds[i].State = est
					sketched |= 1 << i
					sh.sketchDecisions++
				}
			}
		}
		ds[i].Gen = d.Gen
		ds[i].Kind = d.Kind
	}
	if req.Op == store.OpReset {
		for i := range dims {
			sh := &st.shards[st.shardOf(dims[i].Digest)]
			if j := sh.find(keys[i], dims[i].Digest); j >= 0 {
				st.remove(sh, j)
			}
			dims[i].Outcome = store.Outcome{}
		}
	} else {
		refused := req.Rule.Apply(req.Op, ds, now)
		for i := range dims {
			d := &dims[i]
			sh := &st.shards[st.shardOf(d.Digest)]
			d.Outcome = ds[i].Outcome
			d.Gen = uint32(uint8(ds[i].Gen)) // the generation as the slot keeps it
			s := &ds[i].State
			j := idx[i]
			if sh.moves != moves[i] {
				// An earlier dimension's insert swept, evicted or rebuilt
				// this shard: look again.
				j = sh.find(keys[i], d.Digest)
			}
			if s.IsZero() {
				if j >= 0 {
					st.remove(sh, j)
				}
				continue
			}
			if j < 0 {
				if sketched&(1<<i) != 0 && !d.Outcome.Counted && !d.Outcome.Started && s.Pending == 0 {
					continue // nothing the sketch does not hold already
				}
				if !st.makeRoom(sh, d.Digest, now) {
					st.overflow(sh, req, i, s, sketched&(1<<i) != 0, now)
					continue
				}
				j = sh.place(keys[i], d.Digest)
				sl := &sh.slots[j]
				sl.flags = uint8(d.Fields) | uint8(d.Kind)<<kindShift
				sl.ipTag = uint32(d.IPKey.Lo)
				sl.userTag = uint32(d.UserKey.Lo)
			}
			sl := &sh.slots[j]
			sl.setState(s)
			locked := s.LockedAt(now)
			// The filter holds every entry that is locked or may become
			// locked without a write (reservations in flight can time out
			// into a lock), so that Locked's fast "no" is always right.
			maybe := locked || s.Pending > 0
			switch {
			case maybe && sl.flags&flagFiltered == 0:
				st.filter[st.filterIndex(d.Digest)].Add(1)
				sl.flags |= flagFiltered
			case !maybe && sl.flags&flagFiltered != 0:
				st.filter[st.filterIndex(d.Digest)].Add(^uint32(0))
				sl.flags &^= flagFiltered
			}
			switch {
			case locked && req.Identity != (store.Identity{}) && (d.Outcome.Started || sl.flags&flagIdentity == 0):
				st.setIdentity(sh, j, &req.Identity)
			case !locked:
				st.dropIdentity(sh, j)
			}
			if d.Kind != store.KindCount {
				kr := req.Rule.ForKind(d.Kind)
				st.cacheSet(sh, j, d.Digest, &kr, now)
			} else {
				st.cacheSet(sh, j, d.Digest, req.Rule, now)
			}
		}
		// A little incremental sweeping, one group every sweepEvery
		// writes (refused attempts do not count), keeps expired entries from lingering in shards that never
		// fill, at little cost per write.
		if req.Op != store.OpCheck && !refused && !st.noSweepStep {
			for _, s := range order[:m] {
				sh := &st.shards[s]
				if sh.writes++; sh.writes >= sweepEvery {
					sh.writes = 0
					if ng := len(sh.ctrl); ng > 0 {
						st.sweep(sh, sh.cursor, 1, now)
						sh.cursor = (sh.cursor + 1) % ng
					}
				}
			}
		}
	}
	for _, s := range order[:m] {
		st.shards[s].mu.Unlock()
	}
}
