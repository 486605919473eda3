package axes

import (
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
