package axes

import (
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/axes-go/axes/store"
)

// The lock cache: a small direct-mapped table per shard of the locked
// entries whose answer does not change while their lock lasts, read
// without the shard's mutex. It serves Locked, Check, and the refused Fail
// and Begin of a client that is locked (when refused attempts do not
// extend the lock), which under attack are the hot path.
//
// An entry is cached only while the store's own answer is fixed: the
// dimension is locked and has no reservation in flight (a reservation may
// time out into a failure). A lock that holds no identity (the identity
// budget was spent when it started) answers a Check alone: a refused
// attempt would record its identity on it. The entry holds the lock's end and the remembered
// failures, and is served only before whichever comes first: the lock's
// end, or the instant the failures are forgotten (under a Forever lock
// failures still expire after the window). In that span the store's
// transition of a Check, or of a refused Fail or Begin, leaves the state
// as it is; the verdict, counters and events are built from the cached
// outcome exactly as from the store's.
//
// Each shard's entries have one writer (under the shard's mutex); readers
// check a sequence number before and after reading the entry, all through
// atomics. Every write to a slot updates or invalidates its entry under
// the same mutex, before the writing call returns; a removed slot's entry
// is invalidated at once.

// lockEntry is one cached lock: 32 bytes.
type lockEntry struct {
	seq  atomic.Uint64 // odd while written
	hi   atomic.Uint64 // the digest's Hi
	lo   atomic.Uint64 // the digest's Lo, high 32 bits; failures in the low 16; lcAnonymous
	ends atomic.Uint64 // lock end (seconds, high 32 bits) and validity end (seconds, low 32 bits); 0 for none
}

// lockCacheSize is the number of entries per shard for a shard holding up
// to per entries: one for every 16 entries, at least 16 (2 bytes per
// entry of the cap, in the shards that hold a lock).
func lockCacheSize(per int) int {
	return 1 << bits.Len(uint(max(per/16, 16)-1))
}

// lockEntryOf returns the entry of d in the lock cache lc, by the low
// bits of the digest's Lo, which neither the filter nor the shard use.
func lockEntryOf(lc []lockEntry, d Digest) *lockEntry {
	return &lc[d.Lo&uint64(len(lc)-1)]
}

// cacheSet records slot i (just written at now under rule r) in the lock
// cache when its answer is fixed until a later instant, and invalidates
// its entry otherwise. sh.mu must be held.
func (st *memStore) cacheSet(sh *shard, i int, d Digest, r *store.Rule, now time.Duration) {
	if st.noLockCache {
		return
	}
	sl := &sh.slots[i]
	lc := sh.lc.Load()
	if sl.lockEnd == 0 || sl.pending != 0 || (sl.lockEnd != secForever && now >= fromSec(sl.lockEnd)) {
		if lc != nil {
			cacheDrop(lockEntryOf(*lc, d), d)
		}
		return
	}
	// Served while now < valid: the lock's end, or earlier the instant
	// the failures are forgotten (rounded down to a whole second).
	valid := uint64(sl.lockEnd)
	if sl.fails > 0 {
		forget := satAdd(fromSec(sl.lastFail), r.Window) / time.Second
		valid = min(valid, uint64(max(forget, 0)))
		if valid > secMax {
			valid = secMax
		}
	}
	if valid == 0 || (valid != secForever && now >= fromSec(uint32(valid))) {
		if lc != nil {
			cacheDrop(lockEntryOf(*lc, d), d)
		}
		return
	}
	if lc == nil {
		// A shard's cache is made at its first lock, so that a store
		// without locks spends nothing on it.
		t := make([]lockEntry, st.lcSize)
		lc = &t
		sh.lc.Store(lc)
	}
	e := lockEntryOf(*lc, d)
	s := e.seq.Load()
	e.seq.Store(s + 1)
	e.hi.Store(d.Hi)
	lo := d.Lo&^0xffffffff | uint64(sl.fails)
	if sl.flags&flagIdentity == 0 {
		lo |= lcAnonymous
	}
	e.lo.Store(lo)
	e.ends.Store(uint64(sl.lockEnd)<<32 | valid)
	e.seq.Store(s + 2)
}

// cacheDrop invalidates e if it holds d. The shard's mutex must be held.
func cacheDrop(e *lockEntry, d Digest) {
	if e.ends.Load() == 0 || e.hi.Load() != d.Hi || e.lo.Load()>>32 != d.Lo>>32 {
		return
	}
	s := e.seq.Load()
	e.seq.Store(s + 1)
	e.ends.Store(0)
	e.seq.Store(s + 2)
}

// lcAnonymous marks, in an entry's lo, a lock whose entry holds no
// identity (the store's identity budget was spent when it started): a
// refused Fail or Begin would record the attempt's identity on it, so only
// a Check may be answered from the cache.
const lcAnonymous = 1 << 16

// peekLock returns the cached lock of d, if the lock cache holds one: its
// lock end and validity end (as an entry keeps them) and failures. A lock
// without an identity is returned only for a check (see lcAnonymous).
// Shards without a lock have no cache; the filter of locked digests
// answers most other keys before the entry is read.
func (st *memStore) peekLock(d Digest, check bool) (ends uint64, fails uint16, ok bool) {
	sh := &st.shards[st.shardOf(d)]
	lc := sh.lc.Load()
	if lc == nil || st.filter[st.filterIndex(d)].Load() == 0 {
		return 0, 0, false
	}
	e := lockEntryOf(*lc, d)
	s := e.seq.Load()
	hi, lo, ends := e.hi.Load(), e.lo.Load(), e.ends.Load()
	if s&1 != 0 || e.seq.Load() != s || ends == 0 || hi != d.Hi || lo>>32 != d.Lo>>32 || (lo&lcAnonymous != 0 && !check) {
		return 0, 0, false
	}
	return ends, uint16(lo), true
}

// fromCache answers op (OpCheck, or a refused OpFail or OpBegin) on dims
// from the cached locks peekLock returned for them (ends, fails), filling
// their outcomes, if every one is valid at the reading t.
func (st *memStore) fromCache(op store.Op, dims []store.Dim, ends []uint64, fails []uint16, t time.Time) bool {
	if !st.tl.started() {
		return false
	}
	now := st.instantOf(t)
	for i := range dims {
		rem, ok := cachedAt(ends[i], now)
		if !ok {
			return false
		}
		dims[i].Outcome = store.Outcome{Locked: true, Refused: op != store.OpCheck, Failures: int(fails[i]), Remaining: rem}
	}
	if countCacheServes {
		st.cacheServes.Add(1)
	}
	return true
}

// cachedAt reports whether a lock-cache entry whose ends peekLock read may
// still be served at instant t, and the time left on its lock then
// (Indefinite for a lock with no end).
func cachedAt(ends uint64, t time.Duration) (remaining time.Duration, ok bool) {
	lockEnd, valid := uint32(ends>>32), uint32(ends)
	if valid != secForever && t >= fromSec(valid) {
		return 0, false
	}
	if lockEnd == secForever {
		return Indefinite, true
	}
	return fromSec(lockEnd) - t, true
}

// lockedFromCache reports whether every digest of ds is cached as locked
// and valid now (read from now, only once every entry is found): then a
// Check of them is answered locked, and changes nothing, counts nothing
// and emits no event, so Locked needs no verdict.
func (st *memStore) lockedFromCache(ds []Digest, now func() time.Time) bool {
	var ends [8]uint64
	for i, d := range ds {
		e, _, ok := st.peekLock(d, true)
		if !ok {
			return false
		}
		ends[i] = e
	}
	if !st.tl.started() {
		return false
	}
	t := st.instantOf(now())
	for _, e := range ends[:len(ds)] {
		if _, ok := cachedAt(e, t); !ok {
			return false
		}
	}
	if countCacheServes {
		st.cacheServes.Add(1)
	}
	return true
}

// countCacheServes makes stores count the answers of their lock cache in
// cacheServes, for tests.
var countCacheServes bool
