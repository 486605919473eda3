package axes

import (
	"context"
	"fmt"
	"github.com/axes-go/axes/internal/memhook"
	"github.com/axes-go/axes/store"
	"math"
	"math/bits"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
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
// are kept on the store's own timeline (timeline.go).

// memStore is the default store.Store. Its methods are safe for concurrent use.
type memStore struct {
	shards      []shard
	shardMask   uint64
	maxEntries  int          // the hard cap on entries across shards
	total       atomic.Int64 // entries held, reserved before each insert
	capPerShard int          // the average shard's share of maxEntries
	maxPer      int          // most entries one shard may hold (its share plus slack)
	maxGroups   int          // the largest table of a shard
	tl          timeline     // clock readings to instants
	base        store.Rule   // the limiter's base rule, for expiry during sweeps
	baseOnce    sync.Once    // sets base from the first request when not given
	timeOnce    sync.Once    // starts the timeline at the first call when not started
	filter      []atomic.Uint32
	filterShift uint
	sk          *sketch
	idBudget    int          // bytes of lock identities the store may hold
	idBytes     atomic.Int64 // bytes of lock identities held, as identityCost counts them
	// fullUntil is the instant (in nanoseconds) until which a store at its
	// cap does not look for entries to evict again, because the last look
	// found none: only locked or reserved entries remained.
	fullUntil atomic.Int64
}

// key is a digest as stored: four 32-bit words, so that slots need only
// 4-byte alignment.
type key [4]uint32

func toKey(d Digest) key {
	return key{uint32(d.Hi), uint32(d.Hi >> 32), uint32(d.Lo), uint32(d.Lo >> 32)}
}

func (k key) digest() Digest {
	return Digest{Hi: uint64(k[0]) | uint64(k[1])<<32, Lo: uint64(k[2]) | uint64(k[3])<<32}
}

// slot is one entry: 44 bytes, no pointers, so the garbage collector never
// scans the tables. Times are whole seconds since the store's epoch,
// rounded up.
type slot struct {
	k         key
	lockEnd   uint32 // 0 none; secForever for no end
	lastFail  uint32
	lastBegin uint32
	ipTag     uint32 // low bits of the IP field digest, for ResetIP
	userTag   uint32 // low bits of the username field digest, for ResetUsername
	fails     uint16
	pending   uint16
	level     uint8
	gen       uint8
	flags     uint8 // low 3 bits: Fields; flagFiltered; flagIdentity
	_         uint8
}

const (
	flagFiltered = 1 << 4 // counted in the locked filter
	flagIdentity = 1 << 5 // has an identity in shard.ids

	secForever = math.MaxUint32
	secMax     = math.MaxUint32 - 1
)

// shard is one stripe. The fields are padded to a multiple of the cache
// line so that neighbouring shards' mutexes do not share a line.
type shard struct {
	shardFields
	_ [(128 - unsafe.Sizeof(shardFields{})%128) % 128]byte
}

type shardFields struct {
	mu     sync.Mutex     // protects everything below
	ctrl   []uint64       // a control word per group of 8 slots
	slots  []slot         // len(ctrl)*8
	ids    map[key]string // packed identities of locked entries (identity.go)
	count  int            // full slots
	tombs  int            // deleted control bytes
	cursor int            // next group for the incremental sweep
	writes uint32         // writes since the last incremental sweep step
	moves  uint32         // bumped whenever a slot is freed or the table rebuilt
	swept  time.Duration  // when a full sweep last found nothing to drop

	evictedExpired  uint64
	evictedPressure uint64
	overflows       uint64
	sketchFolds     uint64
	sketchDecisions uint64
	idsOverBudget   uint64
}

const (
	ctrlEmpty   = 0x80
	ctrlDeleted = 0xFE
	lsb         = 0x0101010101010101
	msb         = 0x8080808080808080
)

func matchH2(g uint64, h uint8) uint64 {
	v := g ^ (lsb * uint64(h))
	return ((v - lsb) &^ v) & msb
}
func matchEmpty(g uint64) uint64          { return (g &^ (g << 6)) & msb }
func matchEmptyOrDeleted(g uint64) uint64 { return g & msb }
func matchFull(g uint64) uint64           { return ^g & msb }

func ctrlByte(g uint64, j int) uint8 { return uint8(g >> (8 * j)) }
func setCtrl(g *uint64, j int, b uint8) {
	*g = *g&^(0xff<<(8*j)) | uint64(b)<<(8*j)
}

func h2(d Digest) uint8 { return uint8(d.Hi >> 57) }

func fastrange(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
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
	maxPer := per + max(per/4, 6*int(math.Sqrt(float64(per)))+16)
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
	}
	if !epoch.IsZero() {
		st.tl.start(epoch, 0)
	}
	fbits := bits.Len(uint(max(maxEntries/4, 256)) - 1)
	st.filter = make([]atomic.Uint32, 1<<fbits)
	st.filterShift = uint(64 - fbits)
	for i := range st.shards {
		st.shards[i].ids = make(map[key]string)
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

// instant converts a clock reading to the store's timeline.
func (st *memStore) instant(t time.Time) time.Duration { return st.tl.instant(t) }

func toSec(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	if s >= secMax {
		return secMax
	}
	return uint32(s)
}

func fromSec(s uint32) time.Duration { return time.Duration(s) * time.Second }

func (sl *slot) state() store.State {
	s := store.State{
		Failures:  int(sl.fails),
		Pending:   int(sl.pending),
		Level:     int(sl.level),
		Gen:       uint32(sl.gen),
		LastFail:  fromSec(sl.lastFail),
		LastBegin: fromSec(sl.lastBegin),
	}
	switch sl.lockEnd {
	case 0:
	case secForever:
		s.LockEnd = Indefinite
	default:
		s.LockEnd = fromSec(sl.lockEnd)
	}
	return s
}

func (sl *slot) setState(s *store.State) {
	sl.fails = uint16(min(s.Failures, MaxFailures))
	sl.pending = uint16(min(s.Pending, MaxFailures))
	sl.level = uint8(min(s.Level, 255))
	sl.gen = uint8(s.Gen)
	sl.lastFail = toSec(s.LastFail)
	sl.lastBegin = toSec(s.LastBegin)
	switch s.LockEnd {
	case 0:
		sl.lockEnd = 0
	case Indefinite:
		sl.lockEnd = secForever
	default:
		sl.lockEnd = max(toSec(s.LockEnd), 1)
	}
}

// find returns the slot index of k, or -1. sh.mu must be held.
func (sh *shard) find(k key, d Digest) int {
	n := len(sh.ctrl)
	if n == 0 {
		return -1
	}
	g := fastrange(d.Lo, n)
	tag := h2(d)
	for range n {
		c := sh.ctrl[g]
		for m := matchH2(c, tag); m != 0; m &= m - 1 {
			i := g*8 + bits.TrailingZeros64(m)>>3
			if sh.slots[i].k == k {
				return i
			}
		}
		if matchEmpty(c) != 0 {
			return -1
		}
		if g++; g == n {
			g = 0
		}
	}
	return -1
}

// place puts k, known to be absent, in a free slot and returns its index.
// The table must have a free slot. sh.mu must be held.
func (sh *shard) place(k key, d Digest) int {
	n := len(sh.ctrl)
	g := fastrange(d.Lo, n)
	for {
		if m := matchEmptyOrDeleted(sh.ctrl[g]); m != 0 {
			j := bits.TrailingZeros64(m) >> 3
			if ctrlByte(sh.ctrl[g], j) == ctrlDeleted {
				sh.tombs--
			}
			setCtrl(&sh.ctrl[g], j, h2(d))
			i := g*8 + j
			sh.slots[i] = slot{k: k}
			sh.count++
			return i
		}
		if g++; g == n {
			g = 0
		}
	}
}

// remove frees slot i. sh.mu must be held.
func (st *memStore) remove(sh *shard, i int) {
	sl := &sh.slots[i]
	if sl.flags&flagFiltered != 0 {
		st.filter[st.filterIndex(sl.k.digest())].Add(^uint32(0))
	}
	st.dropIdentity(sh, i)
	g, j := i/8, i%8
	if matchEmpty(sh.ctrl[g]) != 0 {
		setCtrl(&sh.ctrl[g], j, ctrlEmpty)
	} else {
		setCtrl(&sh.ctrl[g], j, ctrlDeleted)
		sh.tombs++
	}
	*sl = slot{}
	sh.count--
	sh.moves++
	st.total.Add(-1)
}

// eachFull calls f with the index of every full slot of sh, in table
// order; f may remove the slot it is given. sh.mu must be held.
func (sh *shard) eachFull(f func(i int)) {
	for g, c := range sh.ctrl {
		for m := matchFull(c); m != 0; m &= m - 1 {
			f(g*8 + bits.TrailingZeros64(m)>>3)
		}
	}
}

// eachShard calls f with each shard in turn, under its lock.
func (st *memStore) eachShard(f func(sh *shard)) {
	for si := range st.shards {
		sh := &st.shards[si]
		sh.mu.Lock()
		f(sh)
		sh.mu.Unlock()
	}
}

// resize rebuilds the table with ngroups groups, dropping tombstones.
// sh.mu must be held.
func (sh *shard) resize(ngroups int) {
	oldCtrl, oldSlots := sh.ctrl, sh.slots
	sh.ctrl = make([]uint64, ngroups)
	for i := range sh.ctrl {
		sh.ctrl[i] = lsb * ctrlEmpty
	}
	sh.slots = make([]slot, ngroups*8)
	sh.count, sh.tombs, sh.cursor = 0, 0, 0
	sh.moves++
	for g, c := range oldCtrl {
		for m := matchFull(c); m != 0; m &= m - 1 {
			old := &oldSlots[g*8+bits.TrailingZeros64(m)>>3]
			i := sh.place(old.k, old.k.digest())
			sh.slots[i] = *old
		}
	}
}

// expired reports whether sl holds nothing worth keeping at now under the
// base rule: its Horizon has passed.
func (st *memStore) expired(sl *slot, now time.Duration) bool {
	return st.base.Horizon(sl.state()) <= now
}

// lockedOrReserved reports whether sl may not be evicted at now.
func lockedOrReserved(sl *slot, now time.Duration) bool {
	return sl.pending != 0 || sl.lockEnd == secForever || (sl.lockEnd != 0 && now < fromSec(sl.lockEnd))
}

// sweep removes expired entries from groups [from, from+n) of sh and
// returns how many it removed. sh.mu must be held.
func (st *memStore) sweep(sh *shard, from, n int, now time.Duration) int {
	removed := 0
	ng := len(sh.ctrl)
	for k := 0; k < n && k < ng; k++ {
		g := (from + k) % ng
		for m := matchFull(sh.ctrl[g]); m != 0; m &= m - 1 {
			i := g*8 + bits.TrailingZeros64(m)>>3
			if st.expired(&sh.slots[i], now) {
				st.remove(sh, i)
				removed++
			}
		}
	}
	sh.evictedExpired += uint64(removed)
	return removed
}

// makeRoom ensures sh can take one more entry, sweeping, growing or
// evicting as needed, and reserves the entry in the store's total. It
// reports false when only locked or reserved entries remain and the entry
// cap is reached: the caller records the key in the sketch instead. sh.mu
// must be held.
func (st *memStore) makeRoom(sh *shard, now time.Duration) bool {
	if len(sh.ctrl) == 0 {
		sh.resize(1)
	}
	for try := 0; ; try++ {
		if sh.count < st.maxPer {
			if st.total.Add(1) <= int64(st.maxEntries) {
				break
			}
			st.total.Add(-1)
			// The store is at its cap. If a look within the last second
			// found nothing to drop anywhere, do not look again (it visits
			// every shard): a store full of locks must answer an attacker's
			// new keys in constant time.
			if try == 0 && now < time.Duration(st.fullUntil.Load()) {
				return false
			}
		}
		// Full: drop what has expired first, then evict live entries. A
		// full sweep that found nothing is not repeated within a second,
		// so that a store at its cap evicts in amortised constant time.
		if sh.swept == 0 || now-sh.swept >= time.Second {
			if st.sweep(sh, 0, len(sh.ctrl), now) > 0 {
				continue
			}
			sh.swept = max(now, 1)
		}
		// Evict the cheapest entries first across the store: plain single
		// failures here, then elsewhere, and only then larger counts, so
		// that a spray of new keys cannot flush a partial count from a
		// shard that happens to hold few entries.
		if try >= 3 || !(st.evict(sh, now, cheapScore) || st.evictElsewhere(sh, now, cheapScore) ||
			st.evict(sh, now, maxScore) || st.evictElsewhere(sh, now, maxScore)) {
			if st.total.Load() >= int64(st.maxEntries) {
				st.fullUntil.Store(int64(now + time.Second))
			}
			return false
		}
	}
	ng := len(sh.ctrl)
	if sh.count+sh.tombs+1 > ng*7 {
		// Past 7/8 occupancy. If live entries fill more than 25/32 of the
		// table, drop what has expired and grow unless that freed enough:
		// tables double while small, then grow by a quarter, so that a full
		// store wastes little space. Otherwise the occupancy is tombstones
		// (evictions, expiries): rebuild at the same size, so that a store
		// churning at its cap keeps a flat heap.
		if sh.count*32 > ng*8*25 && ng < st.maxGroups && st.sweep(sh, 0, ng, now) < ng {
			next := ng * 2
			if next*7 > st.capPerShard {
				next = max(ng+ng/4, (st.capPerShard+6)/7)
			}
			sh.resize(min(next, st.maxGroups))
		} else if sh.count+sh.tombs+1 > ng*7 {
			sh.resize(ng)
		}
	}
	return true
}

// evictElsewhere makes room in another shard when sh has nothing to
// evict: the cap is global, so a new key may displace an entry anywhere.
// It only tries shards whose lock is free (TryLock), so that it never waits
// on a lock while holding sh's and cannot deadlock. It reports whether it
// freed anything. sh.mu must be held.
func (st *memStore) evictElsewhere(sh *shard, now time.Duration, upTo int) bool {
	if st.total.Load() < int64(st.maxEntries) || len(st.shards) == 1 {
		return false // sh is full by its own slack, not by the cap
	}
	start := int(mrand.Uint32()) & int(st.shardMask)
	for i := range st.shards {
		other := &st.shards[(start+i)&int(st.shardMask)]
		if other == sh || !other.mu.TryLock() {
			continue
		}
		freed := st.sweep(other, 0, len(other.ctrl), now) > 0 || st.evict(other, now, upTo)
		other.mu.Unlock()
		if freed {
			return true
		}
	}
	return false
}

// Eviction scores: the remembered failures, with entries that remember a
// back-off level above every plain count.
const (
	cheapScore = 1   // entries with at most one failure
	maxScore   = 256 // entries with a back-off level
)

// evict removes a batch of live, unlocked, unreserved entries whose score
// is at most upTo, fewest failures first (entries that remember a back-off
// level after all plain counts), and folds their state into the sketch, so
// that an attacker spraying new keys cannot flush a lock or a partial
// count: an evicted key comes back with at least what it had. It reports
// whether it freed anything. sh.mu must be held.
func (st *memStore) evict(sh *shard, now time.Duration, upTo int) bool {
	want := max(st.capPerShard/16, 1)
	var hist [maxScore + 1]int
	score := func(sl *slot) int {
		if sl.level > 0 {
			return maxScore
		}
		return int(min(sl.fails, maxScore-1))
	}
	evictable := func(sl *slot) bool { return !lockedOrReserved(sl, now) && score(sl) <= upTo }
	total := 0
	sh.eachFull(func(i int) {
		if sl := &sh.slots[i]; evictable(sl) {
			hist[score(sl)]++
			total++
		}
	})
	if total == 0 {
		return false
	}
	want = min(want, total)
	threshold, below := 0, 0
	for threshold = 0; threshold < len(hist); threshold++ {
		if below+hist[threshold] >= want {
			break
		}
		below += hist[threshold]
	}
	atThreshold := want - below
	removed := 0
	sh.eachFull(func(i int) {
		sl := &sh.slots[i]
		if !evictable(sl) {
			return
		}
		sc := score(sl)
		if sc < threshold || (sc == threshold && atThreshold > 0) {
			if sc == threshold {
				atThreshold--
			}
			s := sl.state()
			st.base.Refresh(&s, now)
			if !s.IsZero() {
				st.sk.record(sl.k.digest(), &s, now, st.base.Window, st.base.Decay)
				sh.sketchFolds++
			}
			st.remove(sh, i)
			removed++
		}
	})
	sh.evictedPressure += uint64(removed)
	return removed > 0
}

// sweepEvery is how many writes to a shard pay for sweeping one group.
const sweepEvery = 8

// init completes a store made by NewMemoryStore at its first use: its
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

// apply is Apply without the interface, so that the limiter's calls on the
// default store are direct and allocation-free.
func (st *memStore) apply(req *store.Request) {
	st.init(req.Now, req.Rule)
	dims := req.Dims
	n := len(dims)
	var order [8]int
	var keys [8]key
	var idx [8]int
	var moves [8]uint32
	var ds [8]store.DimState // the dimensions as Rule.Apply transforms them
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
	now := st.instant(req.Now)
	for i := range dims {
		d := &dims[i]
		keys[i] = toKey(d.Digest)
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
			if req.Op != store.OpReset && st.sk.live.Load() != 0 {
				if est, ok := st.sk.estimate(d.Digest, now, req.Rule.Window); ok {
					est.Gen = ds[i].State.Gen
					ds[i].State = est
					sketched |= 1 << i
					sh.sketchDecisions++
				}
			}
		}
		ds[i].Gen = d.Gen
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
		req.Rule.Apply(req.Op, ds[:n], now)
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
				if !st.makeRoom(sh, now) {
					st.overflow(sh, req, i, s, sketched&(1<<i) != 0, now)
					continue
				}
				j = sh.place(keys[i], d.Digest)
				sl := &sh.slots[j]
				sl.flags = uint8(d.Fields)
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
		}
		// A little incremental sweeping, one group every sweepEvery
		// writes, keeps expired entries from lingering in shards that never
		// fill, at little cost per write.
		if req.Op != store.OpCheck {
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

// overflow decides dimension i of req on the sketch, because it found no
// slot in the table: its new state, states of req.Dims[i] as store.Rule.Apply
// left it in s, is recorded there. A reservation cannot be held by the
// sketch, so it counts as a failure at once (locking if it reaches the
// limit), and a later settle does not count it again: a Begin decided
// here is a failure whatever its outcome. sh.mu must be held.
func (st *memStore) overflow(sh *shard, req *store.Request, i int, s *store.State, sketched bool, now time.Duration) {
	sh.overflows++
	if !sketched {
		sh.sketchDecisions++
	}
	if s.Pending > 0 {
		s.Failures = min(s.Failures+s.Pending, MaxFailures)
		s.Pending = 0
		s.LastFail = max(s.LastFail, now)
		if !req.Rule.ObserveOnly && !s.LockedAt(now) && s.Failures >= req.Rule.Limit {
			req.Rule.StartLock(s, now)
		}
	}
	st.sk.record(req.Dims[i].Digest, s, now, req.Rule.Window, req.Rule.Decay)
}

func truncate(s string) string {
	if len(s) <= MaxIdentityBytes {
		return s
	}
	// Cut at a rune boundary when the string is UTF-8.
	n := MaxIdentityBytes
	for n > MaxIdentityBytes-4 && n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// ResetField implements store.Store.
func (st *memStore) ResetField(_ context.Context, f Fields, k Digest) (int, error) {
	tag := uint32(k.Lo)
	removed := 0
	st.eachShard(func(sh *shard) {
		sh.eachFull(func(i int) {
			sl := &sh.slots[i]
			if Fields(sl.flags&7)&f != 0 && ((f == IP && sl.ipTag == tag) || (f == Username && sl.userTag == tag)) {
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
				By: Fields(sl.flags & 7), Failures: s.Failures, Digest: sl.k.digest(),
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
