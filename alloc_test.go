package axes

import (
	"net/netip"
	"testing"
)

var (
	sinkVerdict Verdict
	sinkBool    bool
)

// TestNoAllocs guards the hot paths: Locked, Check and Fail on keys the
// store already holds, and a reservation settled both ways, allocate
// nothing.
func TestNoAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation allocates")
	}
	l, _ := newTest(t, Policy{Limit: 1 << 15, LockoutBy: []Fields{IP, IP | Username, Username | UserAgent}})
	k := Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "Alice", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)"}
	k6 := Key{IP: netip.MustParseAddr("2001:db8::1"), Username: "bob"}
	kd := k
	kd.Device = "Yk3bXj1lQ0yQ2cK7pL9aZw"
	l.Fail(k)
	l.Fail(k6)
	l.Fail(kd)
	cases := map[string]func(){
		"Locked":            func() { sinkBool = l.Locked(k) },
		"Check":             func() { sinkVerdict = l.Check(k) },
		"Fail":              func() { sinkVerdict = l.Fail(k) },
		"Fail/IPv6":         func() { sinkVerdict = l.Fail(k6) },
		"Begin+Fail":        func() { a := l.Begin(k); sinkVerdict = a.Fail() },
		"Begin+Succed":      func() { a := l.Begin(k); a.Succeed(); sinkVerdict = a.Verdict() },
		"Success":           func() { l.Success(k) },
		"Locked/Device":     func() { sinkBool = l.Locked(kd) },
		"Fail/Device":       func() { sinkVerdict = l.Fail(kd) },
		"Begin+Fail/Device": func() { a := l.Begin(kd); sinkVerdict = a.Fail() },
	}
	for name, f := range cases {
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s allocates %v times per call", name, n)
		}
	}
	// A locked client, answered from the lock cache (lockcache.go) and,
	// with the cache off, by the store; on the default clock too.
	for _, c := range []struct{ cached, defaultClock bool }{{true, false}, {false, false}, {true, true}, {false, true}} {
		cached := c.cached
		var locked *Limiter
		if c.defaultClock {
			locked = Must(New(Policy{Limit: 1, LockoutBy: []Fields{IP, Username}}))
		} else {
			locked, _ = newTest(t, Policy{Limit: 1, LockoutBy: []Fields{IP, Username}, OnEvent: func(Event) {}})
		}
		locked.mem.noLockCache = !cached
		locked.Fail(k)
		for name, f := range map[string]func(){
			"Locked":       func() { sinkBool = locked.Locked(k) },
			"Check":        func() { sinkVerdict = locked.Check(k) },
			"Fail":         func() { sinkVerdict = locked.Fail(k) },
			"Begin":        func() { a := locked.Begin(k); sinkVerdict = a.Verdict() },
			"Fail/Device":  func() { sinkVerdict = locked.Fail(kd) },
			"Locked/IPv6":  func() { sinkBool = locked.Locked(k6) },
			"Fail/new key": func() { sinkVerdict = locked.Fail(Key{IP: netip.MustParseAddr("192.0.2.9")}) },
		} {
			if n := testing.AllocsPerRun(200, f); n != 0 {
				t.Errorf("%s on a locked key (%+v) allocates %v times per call", name, c, n)
			}
		}
	}
}
