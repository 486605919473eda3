package axes

import (
	"fmt"
	"github.com/axes-go/axes/store"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Attacks on the memory store's bound: a full store blurs what it cannot
// hold exactly, it never forgets it.

// lockFill fills a store of capN entries, locking by username, with capN
// locked junk usernames from one IP (3 failures each), as an attacker
// would before guessing a real account.
func lockFill(t *testing.T, capN int) *Limiter {
	t.Helper()
	l, _ := newTest(t, Policy{LockoutBy: []Fields{Username}}, WithMaxEntries(capN))
	ip := netip.MustParseAddr("203.0.113.9")
	for i := range capN {
		k := Key{IP: ip, Username: fmt.Sprintf("junk-%d", i)}
		for range 3 {
			l.Fail(k)
		}
		if !l.Locked(k) {
			t.Fatalf("junk %d is not locked after 3 failures", i)
		}
	}
	if got := l.Stats().Entries; got != capN {
		t.Fatalf("Stats().Entries = %d after filling, want %d", got, capN)
	}
	return l
}

// TestLockFillBegin: once only locks remain, a fresh username gets at most
// Limit reservations, not one per request.
func TestLockFillBegin(t *testing.T) {
	l := lockFill(t, 1000)
	victim := Key{IP: netip.MustParseAddr("198.51.100.7"), Username: "alice"}
	admitted := 0
	for range 1000 {
		a := l.Begin(victim)
		if a.Allowed() {
			admitted++
			a.Fail()
		}
	}
	if admitted > 3 {
		t.Errorf("a full store admitted %d guesses, want at most 3", admitted)
	}
	if !l.Locked(victim) {
		t.Error("Locked(victim) = false after the guesses")
	}
	if v := l.Check(victim); !v.Locked {
		t.Errorf("Check(victim) = %+v, want locked", v)
	}
	st := l.Stats()
	if st.Overflows == 0 {
		t.Error("Stats().Overflows = 0, want > 0")
	}
	if st.SketchDecisions == 0 {
		t.Error("Stats().SketchDecisions = 0, want > 0")
	}
}

// TestLockFillLockedThenFail: the same through the plain Locked-then-Fail
// pattern.
func TestLockFillLockedThenFail(t *testing.T) {
	l := lockFill(t, 1000)
	victim := Key{IP: netip.MustParseAddr("198.51.100.7"), Username: "alice"}
	guesses := 0
	for range 1000 {
		if l.Locked(victim) {
			continue
		}
		guesses++
		l.Fail(victim)
	}
	if guesses > 3 {
		t.Errorf("a full store admitted %d guesses, want at most 3", guesses)
	}
	v := l.Fail(victim)
	if !v.Locked {
		t.Errorf("Fail(victim) = %+v, want locked", v)
	}
	if v.Reason != ReasonLockout {
		t.Errorf("Fail(victim).Reason = %v, want %v", v.Reason, ReasonLockout)
	}
	if v.RetryAfter <= 0 {
		t.Errorf("Fail(victim).RetryAfter = %v, want > 0", v.RetryAfter)
	}
}

// TestLockFillSuccessDoesNotUncount: a reservation decided from the sketch
// counts at once; settling it as a success does not give the guess back.
func TestLockFillSuccessDoesNotUncount(t *testing.T) {
	l := lockFill(t, 1000)
	victim := Key{IP: netip.MustParseAddr("198.51.100.7"), Username: "bob"}
	admitted := 0
	for range 100 {
		a := l.Begin(victim)
		if a.Allowed() {
			admitted++
			a.Succeed()
		}
	}
	if admitted > 3 {
		t.Errorf("a full store admitted %d guesses settled as successes, want at most 3", admitted)
	}
}

// TestFullStoreCountsWhatItRecords: Stats.Failures counts failures the
// store recorded, and a full store still records them.
func TestFullStoreCountsWhatItRecords(t *testing.T) {
	l := lockFill(t, 1000)
	before := l.Stats().Failures
	for i := range 10 {
		v := l.Fail(Key{Username: fmt.Sprintf("fresh-%d", i)})
		if v.Failures != 1 {
			t.Errorf("fresh %d: Fail(...).Failures = %d, want 1", i, v.Failures)
		}
	}
	if got := l.Stats().Failures; got != before+10 {
		t.Errorf("Stats().Failures = %d, want %d", got, before+10)
	}
	for i := range 10 {
		if got := l.Check(Key{Username: fmt.Sprintf("fresh-%d", i)}).Failures; got < 1 {
			t.Errorf("failure of fresh %d was counted in Stats but not recorded: Check(...).Failures = %d, want >= 1", i, got)
		}
	}
}

// TestPartialCountSpray: a spray of keys with Limit-1 failures each must
// not flush other keys' partial counts of Limit-1: every victim locks on
// its next failure.
func TestPartialCountSpray(t *testing.T) {
	for run := range 3 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			const capN = 4096
			l, c := newTest(t, Policy{}, WithMaxEntries(capN))
			victim := func(i int) Key { return Key{IP: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})} }
			for i := range 50 {
				l.Fail(victim(i))
				l.Fail(victim(i))
			}
			for i := range 4 * capN {
				c.Set(time.Duration(i) * time.Millisecond)
				k := Key{IP: ipN(i)}
				l.Fail(k)
				l.Fail(k)
			}
			if got := l.Stats().Entries; got > capN {
				t.Fatalf("Stats().Entries = %d, want at most %d", got, capN)
			}
			lost := 0
			for i := range 50 {
				if !l.Fail(victim(i)).Locked {
					lost++
				}
			}
			if lost != 0 {
				t.Errorf("%d of 50 victims lost their partial count", lost)
			}
			if l.Stats().SketchFolds == 0 {
				t.Error("Stats().SketchFolds = 0, want > 0")
			}
		})
	}
}

// TestEvictedBackoffLevelIsKept: an entry evicted while it remembers a
// back-off level comes back with at least that level.
func TestEvictedBackoffLevelIsKept(t *testing.T) {
	const capN = 1024
	l, c := newTest(t, Policy{Limit: 1, Cooloff: Backoff{Base: time.Minute, Decay: 24 * time.Hour}}, WithMaxEntries(capN))
	v := Key{IP: netip.MustParseAddr("198.51.100.1")}
	if got := l.Fail(v).RetryAfter; got != time.Minute {
		t.Fatalf("first lock: RetryAfter = %v, want %v", got, time.Minute)
	}
	c.Set(2 * time.Minute)
	if l.Locked(v) {
		t.Fatal("still locked after the first lock ended")
	}
	// Fill the store with locks until v, the only unlocked entry, is
	// evicted.
	for i := 0; l.Stats().SketchFolds == 0; i++ {
		if i >= 2*capN {
			t.Fatalf("no entry folded into the sketch after %d locks", i)
		}
		l.Fail(Key{IP: ipN(i)})
	}
	got := l.Fail(v)
	if !got.Locked {
		t.Fatalf("Fail(v) after eviction = %+v, want locked", got)
	}
	if got.RetryAfter < 2*time.Minute {
		t.Errorf("the back-off level was forgotten: RetryAfter = %v, want >= %v", got.RetryAfter, 2*time.Minute)
	}
}

// TestSketchLockedFastPath: Locked's lock-free "no" is never given for a
// key locked in the sketch only, and it returns once the sketch's locks
// end.
func TestSketchLockedFastPath(t *testing.T) {
	l, c := newTest(t, Policy{Limit: 1, LockoutBy: []Fields{Username}}, WithMaxEntries(64))
	for i := range 64 {
		l.Fail(Key{Username: fmt.Sprintf("junk-%d", i)})
	}
	k := Key{Username: "victim"}
	if v := l.Fail(k); !v.Locked {
		t.Fatalf("Fail(victim) = %+v, want locked", v)
	}
	if !l.Locked(k) {
		t.Fatal("Locked(victim) = false, want true")
	}
	if l.Stats().Overflows == 0 {
		t.Fatal("Stats().Overflows = 0, want > 0")
	}
	c.Set(16 * time.Minute)
	if l.Locked(k) {
		t.Error("Locked(victim) = true after the lock ended")
	}
	l.Check(k) // a slow-path call notices that the sketch's locks ended
	// A key whose place in the table's filter is free (the junk entries'
	// ended locks stay in the filter until they are touched).
	var other Key
	for i := 0; ; i++ {
		other = Key{Username: fmt.Sprintf("someone-%d", i)}
		var dims [8]store.Dim
		l.digestsOf(&other, &dims)
		if l.mem.filter[l.mem.filterIndex(dims[0].Digest)].Load() == 0 {
			break
		}
	}
	before := c.reads.Load()
	if l.Locked(other) {
		t.Errorf("Locked(%+v) = true, want false", other)
	}
	if got := c.reads.Load(); got != before {
		t.Errorf("Locked stays on the slow path after the sketch's locks ended: %d clock reads, want none", got-before)
	}
}

// TestResetAllClearsSketch: ResetAll forgets the sketch too.
func TestResetAllClearsSketch(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 1, LockoutBy: []Fields{Username}}, WithMaxEntries(64))
	for i := range 64 {
		l.Fail(Key{Username: fmt.Sprintf("junk-%d", i)})
	}
	k := Key{Username: "victim"}
	if v := l.Fail(k); !v.Locked {
		t.Fatalf("Fail(victim) = %+v, want locked", v)
	}
	l.ResetAll()
	if l.Locked(k) {
		t.Error("Locked(victim) = true after ResetAll")
	}
	if got := l.Check(k).Failures; got != 0 {
		t.Errorf("Check(victim).Failures = %d after ResetAll, want 0", got)
	}
}

// TestIdentityBudget: a store full of locks with the longest identities
// holds at most its identity budget of identity bytes; locks beyond it are
// listed by digest only.
func TestIdentityBudget(t *testing.T) {
	const capN = 4096
	l, _ := newTest(t, Policy{Limit: 1, LockoutBy: []Fields{IP | Username}}, WithMaxEntries(capN))
	long := strings.Repeat("x", 300)
	for i := range capN {
		k := Key{IP: ipN(i), Username: fmt.Sprintf("%s-%d", long, i), UserAgent: long}
		if v := l.Fail(k); !v.Locked {
			t.Fatalf("key %d: Fail(...) = %+v, want locked", i, v)
		}
	}
	st := l.mem
	held := 0
	for si := range st.shards {
		sh := &st.shards[si]
		for _, id := range sh.ids {
			held += identityCost(id)
		}
	}
	if got := st.idBytes.Load(); got != int64(held) {
		t.Errorf("idBytes = %d, want the %d bytes the identities hold", got, held)
	}
	if held > st.idBudget {
		t.Errorf("identities hold %d bytes, budget %d", held, st.idBudget)
	}
	if want := capN * identityBytesPerEntry; st.idBudget != want {
		t.Errorf("idBudget = %d, want %d", st.idBudget, want)
	}
	los := l.Lockouts()
	if len(los) != capN {
		t.Fatalf("%d lockouts listed, want %d: a lock without an identity must still be listed", len(los), capN)
	}
	named := 0
	for _, lo := range los {
		if lo.Username != "" {
			named++
			if len(lo.Username) != MaxIdentityBytes {
				t.Errorf("a listed username of %d bytes, want %d", len(lo.Username), MaxIdentityBytes)
			}
			if !lo.IP.IsValid() {
				t.Errorf("lockout %+v has a username but no IP", lo)
			}
		}
	}
	if named == 0 {
		t.Error("no lockout listed with its identity")
	}
	if named >= capN {
		t.Errorf("%d of %d lockouts listed with their identity, want fewer (the budget)", named, capN)
	}
}

// TestLockFillBeginUnderRace: racing reservations on keys decided by the
// sketch are bounded as well: at most Limit per key, however many race,
// with other keys writing the same cells meanwhile.
func TestLockFillBeginUnderRace(t *testing.T) {
	l := lockFill(t, 1000)
	var wg sync.WaitGroup
	var admitted [8]atomic.Int64
	for g := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := g % len(admitted)
			k := Key{IP: ipN(g), Username: fmt.Sprintf("victim-%d", v)}
			for range 5 {
				a := l.Begin(k)
				if a.Allowed() {
					admitted[v].Add(1)
					if g%2 == 0 {
						a.Fail()
					} else {
						a.Succeed()
					}
				}
			}
		}()
	}
	wg.Wait()
	for v := range admitted {
		if n := admitted[v].Load(); n > 3 {
			t.Errorf("victim %d: %d reservations admitted, want at most 3", v, n)
		}
	}
}
