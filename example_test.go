package axes_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/axes-go/axes"
)

// clock is a fake clock for deterministic examples.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)} }

// The default policy: three failures from one IP lock it for 15 minutes.
func Example() {
	c := newClock()
	lim := axes.Must(axes.New(axes.Policy{}, axes.WithClock(c.Now)))
	defer lim.Close()

	k := axes.Key{IP: netip.MustParseAddr("203.0.113.7"), Username: "alice"}
	for range 3 {
		v := lim.Fail(k)
		fmt.Printf("failures=%d locked=%v retry=%v\n", v.Failures, v.Locked, v.RetryAfter)
	}
	c.Advance(10 * time.Minute)
	fmt.Println("after 10m:", lim.Check(k).RetryAfter)
	c.Advance(5 * time.Minute)
	fmt.Println("after 15m locked:", lim.Locked(k))
	// Output:
	// failures=1 locked=false retry=0s
	// failures=2 locked=false retry=0s
	// failures=3 locked=true retry=15m0s
	// after 10m: 5m0s
	// after 15m locked: false
}

// Combinations: lock an IP that tries many usernames, a username tried from
// many IPs, and each (IP, username) pair sooner than either.
func Example_combinations() {
	lim := axes.Must(axes.New(axes.Policy{
		Limit:     5,
		LockoutBy: []axes.Fields{axes.IP, axes.Username, axes.IP | axes.Username},
	}))
	defer lim.Close()

	// A spray: one IP, many usernames.
	spray := netip.MustParseAddr("198.51.100.9")
	for i := range 5 {
		v := lim.Fail(axes.Key{IP: spray, Username: fmt.Sprintf("user%d", i)})
		if v.Locked {
			fmt.Println("spray locked by", v.By, "after", v.Failures, "failures")
		}
	}
	// Stuffing: one username from many IPs.
	for i := range 5 {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		v := lim.Fail(axes.Key{IP: ip, Username: "ceo"})
		if v.Locked {
			fmt.Println("stuffing locked by", v.By, "after", v.Failures, "failures")
		}
	}
	// Other users of the sprayed-from network are unaffected.
	fmt.Println("bob locked:", lim.Locked(axes.Key{IP: netip.MustParseAddr("198.51.100.10"), Username: "bob"}))
	// Output:
	// spray locked by ip after 5 failures
	// stuffing locked by username after 5 failures
	// bob locked: false
}

// Escalating back-off: each consecutive lock lasts twice the one before,
// up to an hour, and the level is forgotten after a quiet day.
func Example_backoff() {
	c := newClock()
	lim := axes.Must(axes.New(axes.Policy{
		Limit:   2,
		Cooloff: axes.Backoff{Base: time.Minute, Factor: 2, Max: time.Hour, Decay: 24 * time.Hour},
	}, axes.WithClock(c.Now)))
	defer lim.Close()

	k := axes.Key{IP: netip.MustParseAddr("203.0.113.50")}
	for range 4 {
		lim.Fail(k)
		v := lim.Fail(k)
		fmt.Println("locked for", v.RetryAfter)
		c.Advance(v.RetryAfter)
	}
	// Output:
	// locked for 1m0s
	// locked for 2m0s
	// locked for 4m0s
	// locked for 8m0s
}

// A reservation admits at most Limit password checks, however many
// requests race.
func ExampleLimiter_Begin() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 2}))
	defer lim.Close()
	k := axes.Key{IP: netip.MustParseAddr("203.0.113.8")}

	a1, a2, a3 := lim.Begin(k), lim.Begin(k), lim.Begin(k)
	fmt.Println(a1.Allowed(), a2.Allowed(), a3.Allowed(), a3.Verdict().Reason)

	a1.Fail()      // wrong password
	v := a2.Fail() // wrong again: the limit is reached
	fmt.Println("locked:", v.Locked, v.RetryAfter)
	// Output:
	// true true false busy
	// locked: true 15m0s
}

// Allow and deny lists take addresses and CIDR prefixes.
func ExampleParseIPSet() {
	office, err := axes.ParseIPSet("192.0.2.0/24", "2001:db8::/32")
	if err != nil {
		panic(err)
	}
	lim := axes.Must(axes.New(axes.Policy{NeverLockout: office, Deny: axes.MustParseIPSet("203.0.113.0/24")}))
	defer lim.Close()
	fmt.Println(lim.Fail(axes.Key{IP: netip.MustParseAddr("203.0.113.1")}).Reason)
	fmt.Println(lim.Fail(axes.Key{IP: netip.MustParseAddr("2001:db8::5")}).Failures)
	// Output:
	// denied
	// 0
}

// ObserveOnly reports what would lock without locking anybody, to try a
// policy on live traffic.
func ExamplePolicy_observeOnly() {
	lim := axes.Must(axes.New(axes.Policy{ObserveOnly: true}))
	defer lim.Close()
	k := axes.Key{IP: netip.MustParseAddr("203.0.113.9")}
	var v axes.Verdict
	for range 3 {
		v = lim.Fail(k)
	}
	fmt.Println(v.Locked, v.WouldLock, v.By)
	// Output: false true ip
}

// Resets by IP or username reach every combination that counts them.
func ExampleLimiter_ResetUsername() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 1, LockoutBy: []axes.Fields{axes.Username, axes.IP | axes.Username}}))
	defer lim.Close()
	lim.Fail(axes.Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "Alice"})
	fmt.Println(len(lim.Lockouts()), "locks")
	fmt.Println(lim.ResetUsername("alice"), "entries reset")
	fmt.Println(len(lim.Lockouts()), "locks")
	// Output:
	// 2 locks
	// 2 entries reset
	// 0 locks
}

// NIST SP 800-63B: at most 100 consecutive failures on an account, and in
// front of it a per-IP limiter with increasing waits, so that a guesser is
// slowed by address long before an account reaches the cap.
func ExampleNIST80063B() {
	c := newClock()
	account := axes.Must(axes.New(axes.NIST80063B(), axes.WithClock(c.Now)))
	defer account.Close()
	byIP := axes.Must(axes.New(axes.Policy{
		Limit:   10,
		Cooloff: axes.Backoff{Base: time.Minute, Max: 24 * time.Hour},
	}, axes.WithClock(c.Now)))
	defer byIP.Close()

	// login refuses a client that either limiter locks, and counts a
	// failure in both.
	login := func(k axes.Key, passwordOK bool) string {
		if byIP.Locked(k) || account.Locked(k) {
			return "refused"
		}
		if passwordOK {
			byIP.Success(k)
			account.Success(k)
			return "welcome"
		}
		byIP.Fail(k)
		if v := account.Fail(k); v.Locked {
			return "account locked"
		}
		return "wrong password"
	}

	// A guesser rotating 100 addresses reaches the account's cap; the
	// per-IP limiter alone would have let each address guess 10 times.
	var last string
	for i := range 100 {
		last = login(axes.Key{IP: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), Username: "alice"}, false)
	}
	fmt.Println("100th guess:", last)
	fmt.Println("alice, right password:", login(axes.Key{IP: netip.MustParseAddr("203.0.113.9"), Username: "alice"}, true))

	// Bob mistypes 99 times over months, then logs in: his count starts over.
	bob := axes.Key{IP: netip.MustParseAddr("192.0.2.44"), Username: "bob"}
	for range 99 {
		login(bob, false)
		c.Advance(30 * 24 * time.Hour)
	}
	fmt.Println("bob, right password:", login(bob, true))
	fmt.Println("bob's failures now:", account.Check(bob).Failures)
	// Output:
	// 100th guess: account locked
	// alice, right password: refused
	// bob, right password: welcome
	// bob's failures now: 0
}
