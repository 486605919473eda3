package axes

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/axes-go/axes/store"
)

// Under pressure, blur, never forget. The memory store's exact table is
// bounded; what it cannot hold exactly still counts, conservatively, in a
// sketch: a count-min sketch of sketchRows rows, whose cells keep, over
// every key that fell in them, the most failures, the latest last failure,
// the highest back-off level and the latest lock end. A key's estimate
// takes the least of each over its cells (one per row). Every cell a key
// falls in holds at least that key's own state, so the estimate is never
// below the truth: a key may be over-counted, by keys that share all its
// cells, never under-counted. It is count-min with conservative update: a
// key that leaves the table folds in the state it started from (its
// estimate) plus its own failures, so under a long spray of distinct keys
// the cells ratchet up and fresh keys are over-counted more and more; the
// README gives measured thresholds. A cell forgets failures only Window after
// the latest failure any of its keys had, and a lock only once the latest
// lock end in it has passed.
//
// The sketch receives live entries evicted from the table (their state
// folds in), and the decisions on keys that cannot get a slot because only
// locked or reserved entries remain. A key absent from the table is
// decided on its estimate, and a key inserted in the table starts from it.
// A store never under pressure never writes the sketch, and reads it for
// no decision: one atomic load tells that it is empty.

// sketchRows is the number of rows: an untracked key is over-counted only
// if all its sketchRows cells are shared with live keys.
const sketchRows = 4

type sketch struct {
	cells []cell // sketchRows rows of 1<<bits cells
	bits  uint

	// live is the instant (in seconds, secForever for never) until which
	// the sketch may hold something live; 0 when it holds nothing.
	live atomic.Uint32
	// locks is the latest lock end written (secForever for a lock with no
	// end); 0 when no lock in the sketch may be current. Locked's
	// lock-free path consults the cells only when it is not 0.
	locks atomic.Uint32
}

// cell is 12 bytes, no pointers. Every field is read and written
// atomically, so that estimates read cells without any lock; writers of a
// cell take its own writer bit (cellWriting in fl), so that two folds into
// one cell never lose each other's update, and no lock is shared by the
// whole sketch. A reader may see some fields of a write in progress and
// not others: each field only ever rises, or drops what has expired for
// every key of the cell (its failures a window after the latest of them,
// its level a decay after the latest lock end), so every field read, old
// or new, is at least the live part of each key's own state, and the
// estimate stays an upper bound. ("Every key" holds for keys of one rule:
// a fold under a shorter window or decay than another key's drops on its
// own terms, with or without a lock; the writer bit changes nothing there.)
type cell struct {
	lockEnd  atomic.Uint32 // 0 none, secForever for no end
	lastFail atomic.Uint32
	fl       atomic.Uint32 // failures (low 16 bits), level (bits 16–23), cellWriting
}

// cellWriting is the bit of cell.fl a writer of the cell holds.
const cellWriting = 1 << 31

// cellFields returns the failures and level packed in a cell's fl.
func cellFields(fl uint32) (fails uint16, level uint8) { return uint16(fl), uint8(fl >> 16) }

// lockWrite takes c's writer bit and returns c.fl as it was. The bit is
// held for a few loads and stores; a writer that finds it taken yields
// after a short spin, in case the holder was preempted.
func (c *cell) lockWrite() uint32 {
	for spins := 0; ; spins++ {
		v := c.fl.Load()
		if v&cellWriting == 0 && c.fl.CompareAndSwap(v, v|cellWriting) {
			return v
		}
		if spins >= 64 {
			runtime.Gosched()
		}
	}
}

// unlockWrite stores fails and level in c.fl, releasing the writer bit.
func (c *cell) unlockWrite(fails uint16, level uint8) {
	c.fl.Store(uint32(fails) | uint32(level)<<16)
}

// sketchWidth returns log2 of the cells per row for an entry cap: about
// one cell per 16 entries (3 bytes per entry over the four rows), at least
// 256, a power of two.
func sketchWidth(maxEntries int) uint {
	return uint(bits.Len(uint(max(maxEntries/16, 256)) - 1))
}

func newSketch(maxEntries int) *sketch {
	b := sketchWidth(maxEntries)
	return &sketch{cells: make([]cell, sketchRows<<b), bits: b}
}

// index returns d's cell in each row, by double hashing of the digest's
// two halves (which are keyed, so an attacker cannot aim at cells).
func (sk *sketch) index(d Digest) (idx [sketchRows]int) {
	a := d.Lo ^ d.Hi*0x9E3779B97F4A7C15
	b := (d.Hi ^ d.Lo*0xC2B2AE3D27D4EB4F) | 1
	shift := 64 - sk.bits
	for r := range sketchRows {
		idx[r] = r<<sk.bits | int((a+uint64(r)*b)>>shift)
	}
	return idx
}

// active reports whether the sketch may hold something live at now, and
// notes when it no longer does.
func (sk *sketch) active(now time.Duration) bool {
	v := sk.live.Load()
	if v == 0 {
		return false
	}
	if v != secForever && now >= fromSec(v) {
		sk.live.CompareAndSwap(v, 0)
		sk.noteLocksEnded(now)
		return false
	}
	return true
}

// noteLocksEnded clears locks once every lock it covers has ended.
func (sk *sketch) noteLocksEnded(now time.Duration) {
	if v := sk.locks.Load(); v != 0 && v != secForever && now >= fromSec(v) {
		sk.locks.CompareAndSwap(v, 0)
	}
}

// mayBeLocked reports whether d might be locked in the sketch; false is
// certain. It takes no lock and reads no clock.
func (sk *sketch) mayBeLocked(d Digest) bool {
	if sk.locks.Load() == 0 {
		return false
	}
	for _, i := range sk.index(d) {
		if sk.cells[i].lockEnd.Load() == 0 {
			return false
		}
	}
	return true
}

// touch reads the cells of idx (lockEnd alone), so that their cache
// misses overlap, rather than follow one another at each cell's writer
// bit.
func (sk *sketch) touch(idx *[sketchRows]int) {
	for _, i := range idx {
		sk.cells[i].lockEnd.Load() // atomic: the compiler keeps the read
	}
}

// estimate returns the state the sketch vouches for d at now under a
// policy with the given window: never below d's true state. ok is false
// when it vouches for nothing.
func (sk *sketch) estimate(d Digest, now, window time.Duration) (s store.State, ok bool) {
	if !sk.active(now) {
		return store.State{}, false
	}
	sk.noteLocksEnded(now)
	idx := sk.index(d)
	fails, lastFail := uint16(MaxFailures), uint32(secForever)
	level, lockEnd := uint8(255), uint32(secForever)
	for _, i := range idx {
		c := &sk.cells[i]
		f, lv := cellFields(c.fl.Load())
		lf := c.lastFail.Load()
		if f > 0 && now >= satAdd(fromSec(lf), window) {
			f = 0
		}
		fails = min(fails, f)
		if f > 0 {
			lastFail = min(lastFail, lf)
		}
		level = min(level, lv)
		lockEnd = min(lockEnd, c.lockEnd.Load())
	}
	s.Failures = int(fails)
	if fails > 0 {
		s.LastFail = fromSec(lastFail)
	}
	s.Level = int(level)
	switch lockEnd {
	case 0:
	case secForever:
		s.LockEnd = Indefinite
	default:
		s.LockEnd = fromSec(lockEnd)
	}
	return s, !s.IsZero()
}

// record folds s, d's state at now, into the sketch: every cell of d ends
// up holding at least s. window and decay are the policy's.
func (sk *sketch) record(d Digest, s *store.State, now, window, decay time.Duration) {
	if s.IsZero() {
		return
	}
	fs := uint16(min(s.Failures, MaxFailures))
	lf := toSec(s.LastFail)
	lv := uint8(min(s.Level, 255))
	var le uint32
	switch s.LockEnd {
	case 0:
	case Indefinite:
		le = secForever
	default:
		le = max(toSec(s.LockEnd), 1)
	}
	idx := sk.index(d)
	sk.touch(&idx)
	for _, i := range idx {
		c := &sk.cells[i]
		fails, level := cellFields(c.lockWrite())
		lastFail := c.lastFail.Load()
		// Drop what has expired for every key of the cell, as Refresh does
		// for one key.
		if fails > 0 && now >= satAdd(fromSec(lastFail), window) {
			fails, lastFail = 0, 0
		}
		cle := c.lockEnd.Load()
		locked := cle == secForever || (cle != 0 && now < fromSec(cle))
		if level > 0 && !locked && now >= satAdd(fromSec(cle), decay) {
			level = 0
		}
		if !locked && level == 0 {
			cle = 0
		}
		if fs > 0 {
			fails = max(fails, fs)
			lastFail = max(lastFail, lf)
		}
		level = max(level, lv)
		c.lastFail.Store(lastFail)
		c.lockEnd.Store(max(cle, le))
		c.unlockWrite(fails, level)
	}
	// Until when something of s stays live, and whether it is a lock.
	var until uint32
	if fs > 0 {
		until = toSec(satAdd(s.LastFail, window))
	}
	if le != 0 {
		until = max(until, le)
		if lv > 0 && le != secForever {
			until = max(until, toSec(satAdd(s.LockEnd, decay)))
		}
	}
	raise(&sk.live, max(until, 1))
	if s.LockedAt(now) {
		raise(&sk.locks, le)
	}
}

// raise moves v up to x.
func raise(v *atomic.Uint32, x uint32) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// clear forgets everything.
func (sk *sketch) clear() {
	sk.live.Store(0)
	sk.locks.Store(0)
	for i := range sk.cells {
		c := &sk.cells[i]
		c.lockWrite()
		c.lockEnd.Store(0)
		c.lastFail.Store(0)
		c.unlockWrite(0, 0)
	}
}
