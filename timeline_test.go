package axes

import (
	"github.com/axes-go/axes/store"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// No clock value makes the memory store fail open: instants out of its
// range saturate toward keeping locks.

// TestClockZeroAtNew: a clock that reads the zero Time while New runs and
// real time afterwards still locks.
func TestClockZeroAtNew(t *testing.T) {
	var started atomic.Bool
	clock := func() time.Time {
		if !started.Load() {
			return time.Time{}
		}
		return t0
	}
	l := Must(New(Policy{}, WithClock(clock)))
	started.Store(true)
	k := Key{IP: netip.MustParseAddr("192.0.2.1")}
	admitted := 0
	for range 100 {
		if !l.Locked(k) {
			admitted++
			l.Fail(k)
		}
	}
	if admitted != 3 {
		t.Errorf("%d attempts admitted, want 3", admitted)
	}
	a := l.Begin(Key{IP: netip.MustParseAddr("192.0.2.2")})
	if !a.Allowed() {
		t.Fatalf("Begin on a fresh key refused: %+v", a.Verdict())
	}
	a.Fail()
	if got := l.Check(Key{IP: netip.MustParseAddr("192.0.2.2")}).Failures; got != 1 {
		t.Errorf("Check(...).Failures = %d after a failed reservation, want 1", got)
	}
}

// TestClockZeroAtFirstUse: the same for a memory store made by
// store.NewMemory, whose timeline starts at its first request.
func TestClockZeroAtFirstUse(t *testing.T) {
	var now atomic.Pointer[time.Time]
	zero := time.Time{}
	now.Store(&zero)
	s, err := store.NewMemory(1<<10, store.Rule{})
	if err != nil {
		t.Fatalf("store.NewMemory: %v", err)
	}
	l := Must(New(Policy{}, WithStore(s), WithClock(func() time.Time { return *now.Load() })))
	k := Key{IP: netip.MustParseAddr("192.0.2.1")}
	l.Check(k)
	real := t0
	now.Store(&real)
	admitted := 0
	for range 100 {
		if !l.Locked(k) {
			admitted++
			l.Fail(k)
		}
	}
	if admitted != 3 {
		t.Errorf("%d attempts admitted, want 3", admitted)
	}
}

// TestClockJumps runs locks through clocks that jump both ways.
func TestClockJumps(t *testing.T) {
	const year = 365 * 24 * time.Hour
	k := Key{IP: netip.MustParseAddr("192.0.2.1")}
	lockAtT0 := func(t *testing.T, p Policy) (*Limiter, *fakeClock) {
		l, c := newTest(t, p)
		for range 3 {
			l.Fail(k)
		}
		if !l.Locked(k) {
			t.Fatal("not locked after 3 failures")
		}
		return l, c
	}
	t.Run("forever survives +135 years", func(t *testing.T) {
		l, c := lockAtT0(t, Policy{Cooloff: Forever})
		c.Set(135 * year)
		if !l.Locked(k) {
			t.Error("Locked = false at +135 years")
		}
		if got := l.Check(k).RetryAfter; got != Indefinite {
			t.Errorf("RetryAfter = %v at +135 years, want Indefinite", got)
		}
		c.Set(136*year + time.Hour)
		if !l.Locked(k) {
			t.Error("Locked = false at +136 years")
		}
		if v := l.Fail(k); !v.Locked {
			t.Errorf("Fail at +136 years = %+v, want locked", v)
		}
	})
	t.Run("locks still start after +135 years", func(t *testing.T) {
		l, c := newTest(t, Policy{})
		c.Set(135 * year)
		other := Key{IP: netip.MustParseAddr("192.0.2.2")}
		for range 3 {
			l.Fail(other)
		}
		if !l.Locked(other) {
			t.Error("Locked = false after 3 failures at +135 years")
		}
		v := l.Check(other)
		if !v.Locked {
			t.Errorf("Check = %+v, want locked", v)
		}
		if v.RetryAfter > 15*time.Minute+time.Second {
			t.Errorf("RetryAfter = %v, want at most 15m1s", v.RetryAfter)
		}
		if v.RetryAfter <= 14*time.Minute {
			t.Errorf("RetryAfter = %v, want more than 14m", v.RetryAfter)
		}
		c.Set(135*year + 14*time.Minute)
		if !l.Locked(other) {
			t.Error("Locked = false 14 minutes into the lock")
		}
		c.Set(135*year + 16*time.Minute)
		if l.Locked(other) {
			t.Error("Locked = true 16 minutes after the lock started")
		}
	})
	t.Run("finite lock survives +135 years", func(t *testing.T) {
		l, c := lockAtT0(t, Policy{})
		c.Set(135 * year)
		if !l.Locked(k) {
			t.Error("a jump past the timeline dropped a lock")
		}
	})
	t.Run("forever survives -2 years", func(t *testing.T) {
		l, c := lockAtT0(t, Policy{Cooloff: Forever})
		c.Set(-2 * year)
		if !l.Locked(k) {
			t.Error("Locked = false at -2 years")
		}
		if got := l.Check(k).RetryAfter; got != Indefinite {
			t.Errorf("RetryAfter = %v at -2 years, want Indefinite", got)
		}
	})
	t.Run("-2 years neither shortens nor stretches a lock", func(t *testing.T) {
		l, c := lockAtT0(t, Policy{})
		c.Set(5 * time.Minute)
		if !l.Locked(k) {
			t.Fatal("Locked = false 5 minutes into the lock")
		}
		c.Set(-2 * year)
		v := l.Check(k)
		if !v.Locked {
			t.Errorf("Check after a step back = %+v, want locked", v)
		}
		if v.RetryAfter > 15*time.Minute+time.Second {
			t.Errorf("RetryAfter after a step back: %v, want at most 15m1s", v.RetryAfter)
		}
		if v.RetryAfter < 10*time.Minute-time.Second {
			t.Errorf("a step back shortened the lock: RetryAfter %v, want at least 9m59s", v.RetryAfter)
		}
		c.Set(-2*year + 9*time.Minute)
		if !l.Locked(k) {
			t.Error("a step back shortened the lock: unlocked 9 minutes after it")
		}
		c.Set(-2*year + 11*time.Minute)
		if l.Locked(k) {
			t.Error("a step back stretched the lock: still locked 11 minutes after it")
		}
	})
	t.Run("zero time after running", func(t *testing.T) {
		var zero atomic.Bool
		c := &fakeClock{}
		l := Must(New(Policy{}, WithClock(func() time.Time {
			if zero.Load() {
				return time.Time{}
			}
			return c.Now()
		})))
		for range 3 {
			l.Fail(k)
		}
		zero.Store(true)
		v := l.Check(k)
		if !v.Locked {
			t.Errorf("Check under a zero clock = %+v, want locked", v)
		}
		if v.RetryAfter > 15*time.Minute+time.Second {
			t.Errorf("RetryAfter under a zero clock = %v, want at most 15m1s", v.RetryAfter)
		}
		admitted := 0
		other := Key{IP: netip.MustParseAddr("192.0.2.3")}
		for range 100 {
			if !l.Locked(other) {
				admitted++
				l.Fail(other)
			}
		}
		if admitted != 3 {
			t.Errorf("%d attempts admitted under a zero clock, want 3", admitted)
		}
	})
	t.Run("lockouts and snapshots after a jump", func(t *testing.T) {
		l, c := lockAtT0(t, Policy{})
		c.Set(-2 * year)
		los := l.Lockouts()
		if len(los) != 1 {
			t.Fatalf("%d lockouts listed, want 1: %+v", len(los), los)
		}
		until := los[0].Until.Sub(c.Now())
		if until > 15*time.Minute+time.Second {
			t.Errorf("the lockout ends in %v, want at most 15m1s", until)
		}
		if until <= 0 {
			t.Errorf("the lockout ends in %v, want > 0", until)
		}
	})
}

// TestTimeline steps the timeline through a straggling reading, a real
// step back and jumps ahead, at named readings.
func TestTimeline(t *testing.T) {
	var tl timeline
	tl.start(t0, epochMargin)
	m := epochMargin
	back := t0.Add(-time.Hour)
	steps := []struct {
		at   time.Time
		want time.Duration
	}{
		{t0, m},
		{t0.Add(2 * time.Minute), m + 2*time.Minute},
		{t0.Add(90 * time.Second), m + 90*time.Second},                // within the tolerance: as it is
		{t0, m + 2*time.Minute},                                       // a straggler stands for the latest instant
		{t0.Add(2*time.Minute + 10*time.Second), m + 130*time.Second}, // and shifts nothing
		{back, m + 130*time.Second},                                   // a step back stands still
		{back.Add(20 * time.Second), m + 130*time.Second},             // while it settles
		{back.Add(40 * time.Second), m + 170*time.Second},             // then time goes on from there
		{back.Add(time.Minute), m + 190*time.Second},
		{back.Add(200 * 365 * 24 * time.Hour), m + 190*time.Second}, // a jump past the end is no time
		{back.Add(200*365*24*time.Hour + time.Minute), m + 250*time.Second},
		{time.Time{}, m + 250*time.Second},
	}
	for i, s := range steps {
		if got := tl.instant(s.at); got != s.want {
			t.Errorf("step %d: got %v want %v", i, got-m, s.want-m)
		}
	}
}
