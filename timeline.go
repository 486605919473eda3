package axes

import (
	"sync"
	"sync/atomic"
	"time"
)

// The memory store keeps instants as whole seconds in 32 bits, on a
// timeline of its own: a clock reading maps to an instant through an
// anchor (a reading and the instant it stands for). Whatever the clock
// does, the timeline saturates toward keeping locks:
//
//   - A reading more than timelineStepBack before the latest instant handed
//     out (a clock stepped back, or the zero Time after real time) does not
//     move the timeline back: it stands for that latest instant. Once the
//     clock has run on for timelineSettle from such a reading, without any
//     reading in between that the timeline could take as it is, the step is
//     taken as real: the timeline re-anchors so that the first reading of
//     the step stands for the latest instant, and time goes on from there.
//     A lock keeps the time it had left (plus at most timelineSettle), and
//     no remaining time grows past the lock's length by more than
//     timelineStepBack. A straggling reading from before a pause (racing
//     goroutines) is one the timeline takes as the latest instant, and
//     shifts nothing.
//   - A reading beyond timelineSpan (a clock jumped far ahead, or a store
//     anchored at the zero Time that then reads real time) does not move
//     the timeline forward either: the jump counts as no time at all, so
//     no lock, not even one with no end, is dropped by it.
//
// Readings within those bounds map exactly, on the monotonic clock when
// the anchor and the reading both carry it.

// timelineSpan is the last instant the timeline reaches: 2^31 seconds
// (about 68 years), half the 32-bit range, so that lock ends up to 68
// years after any instant are kept exactly.
const timelineSpan = time.Duration(1<<31) * time.Second

// timelineStepBack is how far a reading may fall behind the latest instant
// (readings taken by racing goroutines arrive out of order) before the
// timeline re-anchors.
const timelineStepBack = time.Minute

// timelineSettle is how long the clock must run on after stepping back
// before the timeline follows it.
const timelineSettle = timelineStepBack / 2

// epochMargin places a memory store's first instant well after instant 0,
// so that restored snapshot times and racing clock readings fall after it.
const epochMargin = 365 * 24 * time.Hour

type timeline struct {
	anchor atomic.Pointer[anchor]
	high   atomic.Int64 // the latest instant handed out, to the second
	mu     sync.Mutex   // serialises re-anchoring
	// step is the anchor the timeline takes if the clock has really
	// stepped back: the first reading behind, at the latest instant. A
	// reading the timeline takes as it is clears it.
	step atomic.Pointer[anchor]
}

// anchor maps the clock reading at to the instant inst.
type anchor struct {
	at   time.Time
	inst time.Duration
}

// start anchors the timeline: the reading at stands for instant inst.
func (tl *timeline) start(at time.Time, inst time.Duration) {
	tl.anchor.Store(&anchor{at: at, inst: inst})
	tl.high.Store(int64(epochMargin))
}

// started reports whether start was called.
func (tl *timeline) started() bool { return tl.anchor.Load() != nil }

// detach rebuilds t from integers, so that nothing of the caller's value
// (its location) is retained; it drops the monotonic reading.
func detach(t time.Time) time.Time { return time.Unix(t.Unix(), int64(t.Nanosecond())) }

// instant maps the reading t to the timeline. The timeline must have been
// started.
func (tl *timeline) instant(t time.Time) time.Duration {
	a := tl.anchor.Load()
	return tl.offset(a, t.Sub(a.at), t, false) // Sub saturates at about ±292 years
}

// instantNow is instant(time.Now()) with one clock read instead of two:
// when the anchor carries a monotonic reading (a limiter's own memory
// store on the default clock), time.Since reads the monotonic clock alone,
// and Now's offset from the anchor is the monotonic one either way.
func (tl *timeline) instantNow() time.Duration {
	a := tl.anchor.Load()
	return tl.offset(a, time.Since(a.at), time.Time{}, true)
}

// offset maps the reading that lies d after the anchor a to the timeline;
// t is that reading, unless now is set: then it is time.Now's.
func (tl *timeline) offset(a *anchor, d time.Duration, t time.Time, now bool) time.Duration {
	hi := time.Duration(tl.high.Load())
	if d > -timelineSpan && d < timelineSpan {
		in := a.inst + d
		if in >= hi-timelineStepBack && in <= timelineSpan {
			if in >= hi+time.Second {
				tl.raise(in)
			}
			return in
		}
	}
	if now {
		t = time.Now()
	}
	return tl.reanchor(t)
}

// raise moves the latest instant up to in.
func (tl *timeline) raise(in time.Duration) {
	if tl.step.Load() != nil {
		tl.step.Store(nil)
	}
	for {
		hi := tl.high.Load()
		if int64(in) <= hi || tl.high.CompareAndSwap(hi, int64(in)) {
			return
		}
	}
}

// reanchor maps a reading out of bounds: it counts as no time at all.
//
//go:noinline
func (tl *timeline) reanchor(t time.Time) time.Duration {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	a := tl.anchor.Load()
	hi := time.Duration(tl.high.Load())
	d := t.Sub(a.at)
	if d > -timelineSpan && d < timelineSpan {
		if in := a.inst + d; in >= hi-timelineStepBack && in <= timelineSpan {
			return in // another caller re-anchored for this reading already
		}
	}
	if d > 0 {
		// Ahead of the timeline's end: no straggler can be that far
		// ahead, so follow the clock from here at once. The wall clock
		// serves from here.
		tl.anchor.Store(&anchor{at: detach(t), inst: hi})
		tl.step.Store(nil)
		return hi
	}
	// Behind. Follow the clock only once it has run on from the step.
	if st := tl.step.Load(); st != nil {
		ds := t.Sub(st.at)
		if ds >= timelineSettle && ds < timelineSpan && st.inst+ds <= timelineSpan {
			tl.anchor.Store(st)
			tl.step.Store(nil)
			in := st.inst + ds
			tl.high.Store(int64(in))
			return in
		}
		if ds > -timelineStepBack && ds < timelineSettle {
			return hi
		}
	}
	tl.step.Store(&anchor{at: detach(t), inst: hi})
	return hi
}

// wall returns the reading that instant in stands for, given that the
// reading now stands for nowInst.
func wall(now time.Time, nowInst, in time.Duration) time.Time {
	return now.Add(in - nowInst)
}
