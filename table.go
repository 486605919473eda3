package axes

import (
	"math"
	"math/bits"
	"time"

	"github.com/axes-go/axes/store"
)

// The memory store's hash table: open addressing over groups of eight
// control bytes probed with SWAR matchers, as Go's own maps and SwissTable
// do, and pointer-free slots that keep times as whole seconds.

// slotKey is a digest as a slot stores it: four 32-bit words, so that slots need only
// 4-byte alignment.
type slotKey [4]uint32

func toSlotKey(d Digest) slotKey {
	return slotKey{uint32(d.Hi), uint32(d.Hi >> 32), uint32(d.Lo), uint32(d.Lo >> 32)}
}

func (k slotKey) digest() Digest {
	return Digest{Hi: uint64(k[0]) | uint64(k[1])<<32, Lo: uint64(k[2]) | uint64(k[3])<<32}
}

// slot is one entry: 44 bytes, no pointers, so the garbage collector never
// scans the tables. Times are whole seconds since the store's epoch,
// rounded up.
type slot struct {
	k         slotKey
	lockEnd   uint32 // 0 none; secForever for no end
	lastFail  uint32
	lastBegin uint32
	ipTag     uint32 // low bits of the IP field digest, for ResetIP
	userTag   uint32 // low bits of the username field digest, for ResetUsername
	fails     uint16
	pending   uint16
	level     uint8
	gen       uint8
	flags     uint8 // flagFields: the dimension's Fields; flagFiltered; flagIdentity; flagKind
	_         uint8
}

const (
	flagFields   = 7      // the bits of slot.flags that hold the dimension's Fields
	flagFiltered = 1 << 4 // counted in the locked filter
	flagIdentity = 1 << 5 // has an identity in shard.ids
	flagKind     = 3 << 6 // the dimension's store.Kind (spray detection), from bit kindShift
	kindShift    = 6

	secForever = math.MaxUint32
	secMax     = math.MaxUint32 - 1
)

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

func matchEmpty(g uint64) uint64 { return (g &^ (g << 6)) & msb }

func matchEmptyOrDeleted(g uint64) uint64 { return g & msb }

func matchFull(g uint64) uint64 { return ^g & msb }

func ctrlByte(g uint64, j int) uint8 { return uint8(g >> (8 * j)) }

func setCtrl(g *uint64, j int, b uint8) {
	*g = *g&^(0xff<<(8*j)) | uint64(b)<<(8*j)
}

func h2(d Digest) uint8 { return uint8(d.Hi >> 57) }

func fastrange(h uint64, n int) int {
	hi, _ := bits.Mul64(h, uint64(n))
	return int(hi)
}

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
func (sh *shard) find(k slotKey, d Digest) int {
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
func (sh *shard) place(k slotKey, d Digest) int {
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
	if lc := sh.lc.Load(); lc != nil {
		d := sl.k.digest()
		cacheDrop(lockEntryOf(*lc, d), d)
	}
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

// rehash rebuilds the table at its size in its own memory, dropping
// tombstones (as SwissTable does without resizing): every full slot is
// marked deleted and every tombstone empty, then each entry marked deleted
// moves to the first group of its probe path with an empty or deleted slot,
// swapping with an entry still to place, so that a store churning at its
// cap rebuilds without allocating. sh.mu must be held.
func (sh *shard) rehash() {
	n := len(sh.ctrl)
	for g, c := range sh.ctrl {
		// Full (high bit clear) -> deleted; deleted -> empty; empty stays.
		full := ^c & msb
		sh.ctrl[g] = (full>>7)*ctrlDeleted | (c&msb>>7)*ctrlEmpty
	}
	sh.tombs, sh.cursor = 0, 0
	sh.moves++
	for i := 0; i < n*8; i++ {
		g := i / 8
		if ctrlByte(sh.ctrl[g], i%8) != ctrlDeleted {
			continue
		}
		d := sh.slots[i].k.digest()
		t := fastrange(d.Lo, n)
		var m uint64
		for {
			if m = matchEmptyOrDeleted(sh.ctrl[t]); m != 0 {
				break
			}
			if t++; t == n {
				t = 0
			}
		}
		if t == g {
			setCtrl(&sh.ctrl[g], i%8, h2(d)) // its own group comes first on its path
			continue
		}
		j := bits.TrailingZeros64(m) >> 3
		k := t*8 + j
		if ctrlByte(sh.ctrl[t], j) == ctrlEmpty {
			sh.slots[k] = sh.slots[i]
			sh.slots[i] = slot{}
			setCtrl(&sh.ctrl[t], j, h2(d))
			setCtrl(&sh.ctrl[g], i%8, ctrlEmpty)
			continue
		}
		// An entry still to place: swap, and place the one now at i.
		sh.slots[k], sh.slots[i] = sh.slots[i], sh.slots[k]
		setCtrl(&sh.ctrl[t], j, h2(d))
		i--
	}
}
