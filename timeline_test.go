package axes

import (
	"github.com/axes-go/axes/store"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	assert.Equal(t, 3, admitted)
	a := l.Begin(Key{IP: netip.MustParseAddr("192.0.2.2")})
	require.True(t, a.Allowed())
	a.Fail()
	assert.Equal(t, 1, l.Check(Key{IP: netip.MustParseAddr("192.0.2.2")}).Failures)
}

// TestClockZeroAtFirstUse: the same for a memory store made by
// NewMemoryStore, whose timeline starts at its first request.
func TestClockZeroAtFirstUse(t *testing.T) {
	var now atomic.Pointer[time.Time]
	zero := time.Time{}
	now.Store(&zero)
	s, err := store.NewMemory(1<<10, store.Rule{})
	require.NoError(t, err)
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
	assert.Equal(t, 3, admitted)
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
		require.True(t, l.Locked(k))
		return l, c
	}
	t.Run("forever survives +135 years", func(t *testing.T) {
		l, c := lockAtT0(t, Policy{Cooloff: Forever})
		c.Set(135 * year)
		assert.True(t, l.Locked(k))
		assert.Equal(t, Indefinite, l.Check(k).RetryAfter)
		c.Set(136*year + time.Hour)
		assert.True(t, l.Locked(k))
		assert.True(t, l.Fail(k).Locked)
	})
	t.Run("locks still start after +135 years", func(t *testing.T) {
		l, c := newTest(t, Policy{})
		c.Set(135 * year)
		other := Key{IP: netip.MustParseAddr("192.0.2.2")}
		for range 3 {
			l.Fail(other)
		}
		assert.True(t, l.Locked(other))
		v := l.Check(other)
		assert.True(t, v.Locked)
		assert.LessOrEqual(t, v.RetryAfter, 15*time.Minute+time.Second)
		assert.Greater(t, v.RetryAfter, 14*time.Minute)
		c.Set(135*year + 14*time.Minute)
		assert.True(t, l.Locked(other))
		c.Set(135*year + 16*time.Minute)
		assert.False(t, l.Locked(other))
	})
	t.Run("finite lock survives +135 years", func(t *testing.T) {
		l, c := lockAtT0(t, Policy{})
		c.Set(135 * year)
		assert.True(t, l.Locked(k), "a jump past the timeline dropped a lock")
	})
	t.Run("forever survives -2 years", func(t *testing.T) {
		l, c := lockAtT0(t, Policy{Cooloff: Forever})
		c.Set(-2 * year)
		assert.True(t, l.Locked(k))
		assert.Equal(t, Indefinite, l.Check(k).RetryAfter)
	})
	t.Run("-2 years neither shortens nor stretches a lock", func(t *testing.T) {
		l, c := lockAtT0(t, Policy{})
		c.Set(5 * time.Minute)
		require.True(t, l.Locked(k))
		c.Set(-2 * year)
		v := l.Check(k)
		assert.True(t, v.Locked)
		assert.LessOrEqual(t, v.RetryAfter, 15*time.Minute+time.Second, "RetryAfter after a step back: %v", v.RetryAfter)
		assert.GreaterOrEqual(t, v.RetryAfter, 10*time.Minute-time.Second, "a step back shortened the lock")
		c.Set(-2*year + 9*time.Minute)
		assert.True(t, l.Locked(k), "a step back shortened the lock")
		c.Set(-2*year + 11*time.Minute)
		assert.False(t, l.Locked(k), "a step back stretched the lock")
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
		assert.True(t, v.Locked)
		assert.LessOrEqual(t, v.RetryAfter, 15*time.Minute+time.Second)
		admitted := 0
		other := Key{IP: netip.MustParseAddr("192.0.2.3")}
		for range 100 {
			if !l.Locked(other) {
				admitted++
				l.Fail(other)
			}
		}
		assert.Equal(t, 3, admitted)
	})
	t.Run("lockouts and snapshots after a jump", func(t *testing.T) {
		l, c := lockAtT0(t, Policy{})
		c.Set(-2 * year)
		los := l.Lockouts()
		require.Len(t, los, 1)
		until := los[0].Until.Sub(c.Now())
		assert.LessOrEqual(t, until, 15*time.Minute+time.Second)
		assert.Positive(t, until)
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
