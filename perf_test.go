package axes

import (
	mrand "math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestInstantNow: on a store anchored at a reading of time.Now, the
// monotonic instant of the current time lies between the instants of
// readings taken before and after it, and a limiter on the default clock
// reads the time through it.
func TestInstantNow(t *testing.T) {
	var tl timeline
	tl.start(time.Now().Add(-epochMargin), 0)
	for range 1000 {
		a := tl.instant(time.Now())
		b := tl.instantNow()
		c := tl.instant(time.Now())
		if a > b || b > c {
			t.Fatalf("instantNow %v not between %v and %v", b, a, c)
		}
	}
	// An anchor without a monotonic reading (a store started by its first
	// request) maps the same way.
	var tw timeline
	tw.start(detach(time.Now()), epochMargin)
	a := tw.instant(time.Now())
	b := tw.instantNow()
	c := tw.instant(time.Now())
	if a > b || b > c {
		t.Fatalf("instantNow %v not between %v and %v", b, a, c)
	}

	l := Must(New(Policy{Limit: 2, Cooloff: Fixed(time.Minute)}))
	if !l.lazyClock || !l.mem.monotonic {
		t.Fatal("a limiter on the default clock without events does not read the monotonic clock")
	}
	k := Key{IP: netip.MustParseAddr("192.0.2.1")}
	l.Fail(k)
	v := l.Fail(k)
	if !v.Locked || v.RetryAfter <= 59*time.Second || v.RetryAfter > 61*time.Second {
		t.Fatalf("%+v", v)
	}
	if v := l.Check(k); !v.Locked || v.RetryAfter > 61*time.Second {
		t.Fatalf("%+v", v)
	}
	if los := l.Lockouts(); len(los) != 1 || time.Until(los[0].Until) > 61*time.Second || time.Until(los[0].Until) < 58*time.Second {
		t.Fatalf("%+v", los)
	}
	withEvents := Must(New(Policy{OnEvent: func(Event) {}}))
	withClock := Must(New(Policy{}, WithClock(time.Now)))
	if withEvents.lazyClock || withClock.lazyClock || withClock.mem.monotonic {
		t.Fatal("the monotonic clock stands in for a reading that is needed")
	}
}

// probeGroups is how many groups find visits for the absent digest d.
func probeGroups(sh *shard, d Digest) int {
	n := len(sh.ctrl)
	g := fastrange(d.Lo, n)
	for v := 1; v <= n; v++ {
		if matchEmpty(sh.ctrl[g]) != 0 {
			return v
		}
		if g++; g == n {
			g = 0
		}
	}
	return n
}

// TestSprayAtTheCapKeepsProbesShort: a spray of new keys at the entry cap
// evicts single failures on the new keys' own probe paths, so that a
// lookup of an absent key stays a short probe, while a partial count
// above one failure is kept (or over-counted by the sketch, never lost).
func TestSprayAtTheCapKeepsProbesShort(t *testing.T) {
	const limit = 1 << 16
	l := Must(New(Policy{Limit: 5}, WithMaxEntries(limit)))
	kept := Key{IP: netip.MustParseAddr("198.51.100.7")}
	l.Fail(kept)
	l.Fail(kept)
	for i := range 2 * limit {
		l.Fail(Key{IP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})})
	}
	total, samples := 0, 0
	r := mrand.New(mrand.NewPCG(1, 2))
	for si := range l.mem.shards {
		sh := &l.mem.shards[si]
		for range 64 {
			total += probeGroups(sh, Digest{Hi: r.Uint64(), Lo: r.Uint64()})
			samples++
		}
	}
	// Batch eviction alone (emptying one region of a shard while the
	// others fill) leaves about 4.6 groups here.
	if avg := float64(total) / float64(samples); avg > 3.5 {
		t.Errorf("an absent key probes %.2f groups on average at the cap", avg)
	}
	if v := l.Check(kept); v.Failures < 2 {
		t.Errorf("the partial count of two failures was lost: %+v", v)
	}
	if s := l.Stats(); s.Entries > limit {
		t.Errorf("%d entries over the cap of %d", s.Entries, limit)
	}
}
