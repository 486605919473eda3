package axes

import (
	"math/bits"
	mrand "math/rand/v2"
	"time"

	"github.com/axes-go/axes/store"
)

// Expiry and eviction of the memory store: what an entry must keep (its
// Horizon), the amortised sweep, and making room at the entry cap, where
// entries evicted alive fold into the sketch and keys that find no slot are
// decided on it.

// expired reports whether sl holds nothing worth keeping at now under the
// base rule: its Horizon has passed.
func (st *memStore) expired(sl *slot, now time.Duration) bool {
	if sl.flags&flagKind != 0 {
		r := st.base.ForKind(slotKind(sl))
		return r.Horizon(sl.state()) <= now
	}
	if sl.pending == 0 && sl.lockEnd == 0 && sl.level == 0 {
		// Horizon of a state with failures alone, without building it:
		// the sweep's common case.
		return sl.fails == 0 || now >= satAdd(fromSec(sl.lastFail), st.base.Window)
	}
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

// makeRoom ensures sh can take one more entry, of digest d, sweeping,
// growing or evicting as needed, and reserves the entry in the store's
// total. It reports false when only locked or reserved entries remain and
// the entry cap is reached: the caller records the key in the sketch
// instead. sh.mu must be held.
func (st *memStore) makeRoom(sh *shard, d Digest, now time.Duration) bool {
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
		// An entry of that cheapest class on d's own probe path goes
		// first: the new key takes its place, so that eviction does not
		// empty one region of the table while the others fill and probe
		// sequences grow long.
		if try >= 3 || !(st.evictOnPath(sh, d, now) || st.evict(sh, now, cheapScore) || st.evictElsewhere(sh, now, cheapScore) ||
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
		// tables double while small, then grow by an eighth (at least to
		// the shard's share of the cap), so that a full store wastes
		// little space: live entries fill 25/32 to 7/8 of a grown table. Otherwise the occupancy is tombstones
		// (evictions, expiries): rebuild at the same size, so that a store
		// churning at its cap keeps a flat heap.
		if sh.count*32 > ng*8*25 && ng < st.maxGroups && st.sweep(sh, 0, ng, now) < ng {
			next := ng * 2
			if next*7 > st.capPerShard {
				next = max(ng+ng/8, (st.capPerShard+6)/7)
			}
			sh.resize(min(next, st.maxGroups))
		} else if sh.count+sh.tombs+1 > ng*7 {
			sh.rehash()
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
	if upTo == cheapScore && now < time.Duration(st.noCheapUntil.Load()) {
		return false // a look within the last second found none anywhere
	}
	start := int(mrand.Uint32()) & int(st.shardMask)
	for i := range st.shards {
		other := &st.shards[(start+i)&int(st.shardMask)]
		if other == sh || !other.mu.TryLock() {
			continue
		}
		// A full sweep that found nothing is not repeated within a
		// second, here as in makeRoom.
		freed := false
		if other.swept == 0 || now-other.swept >= time.Second {
			if freed = st.sweep(other, 0, len(other.ctrl), now) > 0; !freed {
				other.swept = max(now, 1)
			}
		}
		freed = freed || st.evict(other, now, upTo)
		other.mu.Unlock()
		if freed {
			return true
		}
	}
	if upTo == cheapScore {
		// No entry of the cheapest class anywhere: a spray whose new keys
		// the sketch starts above one failure would otherwise visit every
		// shard on every insert. Look again in a second.
		st.noCheapUntil.Store(int64(now + time.Second))
	}
	return false
}

// pathGroups is how many groups from a new key's home group evictOnPath
// looks at.
const pathGroups = 8

// evictOnPath evicts the first entry that is expired or of the cheapest
// class (at most cheapScore failures, no back-off level, neither locked
// nor reserved) in the first pathGroups groups from d's home group (the
// shard's full sweep, at most a second old, took the expired ones before
// it), and
// folds a live entry's state into the sketch as evict does. It takes only
// entries whose slot is left reusable: in a group with an empty slot
// (which the freed slot joins), or on d's probe path before its first
// such group, where the freed slot is the one d takes; so that eviction
// at the cap leaves no tombstones and no region emptied while the others
// fill. It reports whether it freed anything. sh.mu must be held.
func (st *memStore) evictOnPath(sh *shard, d Digest, now time.Duration) bool {
	// Above the cheapest class, when no entry of that class was found
	// anywhere within the last second, the cheapest score the shard's
	// last full scan found (within that second): the class a batch
	// eviction would take first.
	upTo := cheapScore
	if now < sh.pathUntil && now < time.Duration(st.noCheapUntil.Load()) {
		upTo = max(upTo, sh.pathScore)
	}
	n := len(sh.ctrl)
	g := fastrange(d.Lo, n)
	cand := -1
	pastPath := false // a group with an empty slot was seen: d's probe path ended
	for range min(n, pathGroups) {
		c := sh.ctrl[g]
		hasEmpty := matchEmpty(c) != 0
		if reusable := hasEmpty || !pastPath; reusable {
			for m := matchFull(c); m != 0; m &= m - 1 {
				i := g*8 + bits.TrailingZeros64(m)>>3
				sl := &sh.slots[i]
				if st.expired(sl, now) {
					st.remove(sh, i)
					sh.evictedExpired++
					return true
				}
				if sl.level == 0 && int(sl.fails) <= upTo && !lockedOrReserved(sl, now) {
					cand = i
					break
				}
			}
		}
		if cand >= 0 {
			break
		}
		pastPath = pastPath || hasEmpty
		if g++; g == n {
			g = 0
		}
	}
	if cand < 0 {
		return false
	}
	st.fold(sh, &sh.slots[cand], now)
	st.remove(sh, cand)
	sh.evictedPressure++
	return true
}

// fold records the state of sl, a live entry about to be evicted, in the
// sketch under the rule of its kind, so that its count is not lost: what
// the sketch holds may over-count, never under-count. A spray member
// never goes to the sketch (one it held by mistake would hide a new
// username). sh.mu must be held.
func (st *memStore) fold(sh *shard, sl *slot, now time.Duration) {
	s := sl.state()
	r := &st.base
	if sl.flags&flagKind != 0 {
		kr := st.base.ForKind(slotKind(sl))
		r = &kr
	}
	r.Refresh(&s, now)
	if !s.IsZero() && slotKind(sl) != store.KindMember {
		st.sk.record(sl.k.digest(), &s, now, r.Window, r.Decay)
		sh.sketchFolds++
	}
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
	if upTo == maxScore {
		lowest := 0
		for hist[lowest] == 0 {
			lowest++
		}
		sh.pathScore, sh.pathUntil = lowest, now+time.Second
	}
	// Of the entries at the threshold score, every one in hist[threshold]
	// / atThreshold is taken, spread over the whole table: a batch from one
	// region would leave the others full, and probes long.
	atThreshold, acc := want-below, 0
	removed := 0
	sh.eachFull(func(i int) {
		sl := &sh.slots[i]
		if !evictable(sl) {
			return
		}
		sc := score(sl)
		if sc == threshold {
			if acc += atThreshold; acc < hist[threshold] {
				return
			}
			acc -= hist[threshold]
		}
		if sc <= threshold {
			st.fold(sh, sl, now)
			st.remove(sh, i)
			removed++
		}
	})
	sh.evictedPressure += uint64(removed)
	return removed > 0
}

// sweepEvery is how many writes to a shard pay for sweeping one group.
const sweepEvery = 8

// overflow decides dimension i of req on the sketch, because it found no
// slot in the table: its new state, states of req.Dims[i] as store.Rule.Apply
// left it in s, is recorded there. A reservation cannot be held by the
// sketch, so it counts as a failure at once (locking if it reaches the
// limit), and a later settle does not count it again: a Begin decided
// here is a failure whatever its outcome. sh.mu must be held.
func (st *memStore) overflow(sh *shard, req *store.Request, i int, s *store.State, sketched bool, now time.Duration) {
	sh.overflows++
	r := req.Rule
	switch req.Dims[i].Kind {
	case store.KindCount:
	case store.KindMember:
		return // forgotten: the username counts as new again (see Spray)
	default:
		kr := req.Rule.ForKind(req.Dims[i].Kind)
		r = &kr
	}
	if !sketched {
		sh.sketchDecisions++
	}
	if s.Pending > 0 {
		s.Failures = min(s.Failures+s.Pending, MaxFailures)
		s.Pending = 0
		s.LastFail = max(s.LastFail, now)
		if !r.ObserveOnly && !s.LockedAt(now) && s.Failures >= r.Limit {
			r.StartLock(s, now)
		}
	}
	st.sk.record(req.Dims[i].Digest, s, now, r.Window, r.Decay)
}

// slotKind is the spray-detection kind of the dimension in sl.
func slotKind(sl *slot) store.Kind { return store.Kind(sl.flags >> kindShift) }

// windowOf is the Window by which a dimension of kind k forgets under r.
func windowOf(r *store.Rule, k store.Kind) time.Duration {
	if k != store.KindCount {
		return r.Spray.Window
	}
	return r.Window
}
