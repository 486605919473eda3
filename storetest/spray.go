package storetest

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
)

func init() {
	add("SprayDetection", func(t *testing.T, ns func() store.Store) {
		// One IP failing with distinct usernames locks at Spray.Limit,
		// apart from the per-IP Limit; repeated failures of one username
		// count once; another IP is unaffected; the lock and the window
		// end; ResetIP and ResetUsername forget.
		p := axes.Policy{Limit: 100, Spray: axes.Spray{Limit: 3, Window: time.Hour, Cooloff: 30 * minute}}
		h := harness(t, ns, p)
		u := func(ip netip.Addr, name string) axes.Key { return axes.Key{IP: ip, Username: name} }
		spray := func(failures int, retry time.Duration) V {
			return V{Locked: true, Failures: failures, RetryAfter: retry, Reason: axes.ReasonSpray, By: axes.IP}
		}
		h.Steps([]Step{
			{0, "fail", u(ip1, "user1"), V{Failures: 1, By: axes.IP}},
			{0, "fail", u(ip1, "user1"), V{Failures: 2}}, // the same username: not a new one
			{0, "fail", u(ip1, "User1"), V{Failures: 3}}, // nor after normalisation
			{0, "fail", u(ip1, "user2"), V{Failures: 4}},
			{0, "locked", u(ip1, "user3"), V{}},
			{0, "fail", u(ip1, "user3"), spray(3, 30*minute)},
			// Every attempt from the IP is refused, counting nothing.
			{0, "locked", u(ip1, "user1"), V{Locked: true}},
			{minute, "check", u(ip1, "user4"), spray(3, 29*minute)},
			{minute, "fail", u(ip1, "user4"), spray(3, 29*minute)},
			{minute, "fail", u(ip1, "user1"), spray(3, 29*minute)},
			// Another IP is not affected.
			{minute, "fail", u(ip2, "user1"), V{Failures: 1}},
			{minute, "locked", u(ip2, "user5"), V{}},
		})
		if v := h.L.Check(u(ip1, "x")); v.Limit != 3 {
			t.Errorf("spray verdict Limit = %d, want the spray limit 3", v.Limit)
		}
		los := h.L.Lockouts()
		if len(los) != 1 || los[0].By != axes.IP || los[0].IP != netip.PrefixFrom(ip1, 32) || los[0].Failures != 3 {
			t.Errorf("Lockouts = %+v, want one lock by ip of %v with 3 usernames", los, ip1)
		}
		var sawLock bool
		for _, e := range h.Events() {
			if e.Kind == axes.EventLockout {
				if e.Reason != axes.ReasonSpray || e.By != axes.IP || e.Limit != 3 || e.Failures != 3 || sawLock {
					t.Errorf("lockout event %+v, want one of reason spray, by ip, 3/3", e)
				}
				sawLock = true
			}
			if e.Kind == axes.EventFailure && e.By != axes.IP {
				t.Errorf("failure event %+v: by %v, want the policy's own dimension ip", e, e.By)
			}
		}
		if !sawLock {
			t.Errorf("no lockout event for the spray lock")
		}
		h.Steps([]Step{
			// The lock ends; the count is remembered for the Window, so
			// the next new username locks again at once.
			{30 * minute, "check", u(ip1, "user4"), V{}},
			{31 * minute, "fail", u(ip1, "user1"), V{Failures: 1}}, // an old name: not counted
			{31 * minute, "fail", u(ip1, "user4"), spray(4, 30*minute)},
			// A Window after the last counted name, the IP starts afresh.
			{91 * minute, "fail", u(ip1, "user5"), V{Failures: 1}},
			{91 * minute, "fail", u(ip1, "user6"), V{Failures: 2}},
		})
		// ResetUsername forgets the username's pairs: user6 counts again.
		h.L.ResetUsername("user6")
		h.Steps([]Step{
			{91 * minute, "fail", u(ip1, "user6"), spray(3, 30*minute)},
		})
		// ResetIP forgets the lock and the IP's usernames.
		h.L.ResetIP(ip1)
		h.Steps([]Step{
			{92 * minute, "check", u(ip1, "user5"), V{}},
			{92 * minute, "fail", u(ip1, "user5"), V{Failures: 1}},
			{92 * minute, "fail", u(ip1, "user6"), V{Failures: 2}},
		})
		// A NAT: many failures of few usernames, under a high Limit, is
		// not a spray.
		for i := range 60 {
			h.At(100*minute + time.Duration(i)*second)
			name := "alice"
			if i%2 == 1 {
				name = "bob"
			}
			if v := h.L.Fail(u(ip3, name)); v.Locked || v.Failures != i+1 {
				t.Fatalf("NAT failure %d: %+v, want %d failures, not locked", i+1, v, i+1)
			}
		}
		// IPv6 counts by prefix: names from one /64 add up.
		h.Steps([]Step{
			{2 * time.Hour, "fail", u(Addr("2001:db8::1"), "a"), V{Failures: 1}},
			{2 * time.Hour, "fail", u(Addr("2001:db8::2"), "b"), V{Failures: 2}},
			{2 * time.Hour, "fail", u(Addr("2001:db8::ffff:3"), "c"), spray(3, 30*minute)},
			{2 * time.Hour, "check", u(Addr("2001:db8:0:1::1"), "c"), V{}},
		})

		// ObserveOnly counts and reports, never locks.
		ho := harness(t, ns, axes.Policy{Limit: 100, ObserveOnly: true, Spray: axes.Spray{Limit: 2}})
		ho.Steps([]Step{
			{0, "fail", u(ip1, "a"), V{Failures: 1}},
			{0, "fail", u(ip1, "b"), V{Failures: 2, WouldLock: true}},
			{0, "locked", u(ip1, "c"), V{}},
		})
	})
	add("SprayReservations", func(t *testing.T, ns func() store.Store) {
		// Begins of new usernames from one IP reserve in its spray count,
		// so that racing ones cannot pass the limit together. A Begin of a
		// username in flight reserves there too (the attempt in flight may
		// be cancelled), but only the username's first failure counts; a
		// Begin of a username failed before reserves nothing there, and
		// its settle does not count there.
		h := harness(t, ns, axes.Policy{Limit: 100, Spray: axes.Spray{Limit: 3, Cooloff: time.Hour}})
		k := func(name string) axes.Key { return axes.Key{IP: ip1, Username: name} }
		begin := func(name string, allowed bool, reason axes.Reason) *axes.Attempt {
			t.Helper()
			a := h.L.Begin(k(name))
			if a.Allowed() != allowed || a.Verdict().Reason != reason {
				t.Errorf("begin %s: %+v, want allowed %v reason %v", name, a.Verdict(), allowed, reason)
			}
			return &a
		}
		a1 := begin("u1", true, axes.ReasonNone)
		a1b := begin("u1", true, axes.ReasonNone) // u1 is in flight: reserves again
		a2 := begin("u2", true, axes.ReasonNone)
		begin("u3", false, axes.ReasonBusy)
		Expect(t, "settle u1", a1.Fail(), V{Failures: 1})
		Expect(t, "settle u1 again", a1b.Fail(), V{Failures: 2}) // counted once as a name
		a2.Fail()
		a1c := begin("u1", true, axes.ReasonNone) // failed before: reserves nothing there
		a3 := begin("u3", true, axes.ReasonNone)
		a1c.Fail()
		a3.Succeed() // a success is no sprayed name
		a4 := begin("u4", true, axes.ReasonNone)
		Expect(t, "settle u4", a4.Fail(), V{Locked: true, Failures: 3, RetryAfter: time.Hour, Reason: axes.ReasonSpray, By: axes.IP})
		begin("u1", false, axes.ReasonSpray)

		// Goroutines racing with new usernames: at most Limit admitted.
		h2 := harness(t, ns, axes.Policy{Limit: 1000, Spray: axes.Spray{Limit: 4}})
		var wg sync.WaitGroup
		var mu sync.Mutex
		admitted := 0
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := h2.L.Begin(axes.Key{IP: ip2, Username: fmt.Sprintf("user%d", i)})
				if a.Allowed() {
					mu.Lock()
					admitted++
					mu.Unlock()
					a.Fail()
				}
			}()
		}
		wg.Wait()
		if admitted > 4 {
			t.Errorf("%d racing Begins of new usernames admitted, want at most the spray limit 4", admitted)
		}
		if v := h2.L.Check(axes.Key{IP: ip2, Username: "late"}); admitted == 4 && v.Reason != axes.ReasonSpray {
			t.Errorf("after 4 admitted and failed: %+v, want a spray lock", v)
		}
	})
}

func init() {
	add("SprayCancelledReservation", func(t *testing.T, ns func() store.Store) {
		// A sprayer begins two attempts of each new username and makes the
		// first end without an outcome (Cancel: a request the handler
		// rejects before checking the password, a status outside
		// FailureCodes), then fails the second. The cancelled attempt held
		// the username's reservation in the IP's spray count; the second
		// must not have relied on it, or each username costs nothing and
		// the spray never locks.
		const limit = 3
		h := harness(t, ns, axes.Policy{Limit: 100, Spray: axes.Spray{Limit: limit}})
		tried := 0
		for i := range 10 {
			k := axes.Key{IP: ip1, Username: fmt.Sprintf("user%d", i)}
			a, b := h.L.Begin(k), h.L.Begin(k)
			switch {
			case a.Allowed() && b.Allowed():
				a.Cancel()
				b.Fail()
			case a.Allowed():
				a.Fail()
			default:
				b.Cancel()
				continue
			}
			tried++
		}
		if tried > limit {
			t.Errorf("%d usernames checked from one IP, want at most the spray limit %d", tried, limit)
		}
		if v := h.L.Check(axes.Key{IP: ip1, Username: "late"}); v.Reason != axes.ReasonSpray {
			t.Errorf("after the spray: %+v, want a spray lock", v)
		}
	})
}
