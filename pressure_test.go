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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
		require.True(t, l.Locked(k), "junk %d", i)
	}
	require.Equal(t, capN, l.Stats().Entries)
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
	assert.LessOrEqual(t, admitted, 3, "a full store admitted %d guesses", admitted)
	assert.True(t, l.Locked(victim))
	assert.True(t, l.Check(victim).Locked)
	st := l.Stats()
	assert.Positive(t, st.Overflows)
	assert.Positive(t, st.SketchDecisions)
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
	assert.LessOrEqual(t, guesses, 3, "a full store admitted %d guesses", guesses)
	v := l.Fail(victim)
	assert.True(t, v.Locked)
	assert.Equal(t, ReasonLockout, v.Reason)
	assert.Positive(t, v.RetryAfter)
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
	assert.LessOrEqual(t, admitted, 3)
}

// TestFullStoreCountsWhatItRecords: Stats.Failures counts failures the
// store recorded, and a full store still records them.
func TestFullStoreCountsWhatItRecords(t *testing.T) {
	l := lockFill(t, 1000)
	before := l.Stats().Failures
	for i := range 10 {
		v := l.Fail(Key{Username: fmt.Sprintf("fresh-%d", i)})
		assert.Equal(t, 1, v.Failures, "fresh %d", i)
	}
	assert.Equal(t, before+10, l.Stats().Failures)
	for i := range 10 {
		assert.GreaterOrEqual(t, l.Check(Key{Username: fmt.Sprintf("fresh-%d", i)}).Failures, 1,
			"failure of fresh %d was counted in Stats but not recorded", i)
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
			require.LessOrEqual(t, l.Stats().Entries, capN)
			lost := 0
			for i := range 50 {
				if !l.Fail(victim(i)).Locked {
					lost++
				}
			}
			assert.Zero(t, lost, "%d of 50 victims lost their partial count", lost)
			assert.Positive(t, l.Stats().SketchFolds)
		})
	}
}

// TestEvictedBackoffLevelIsKept: an entry evicted while it remembers a
// back-off level comes back with at least that level.
func TestEvictedBackoffLevelIsKept(t *testing.T) {
	const capN = 1024
	l, c := newTest(t, Policy{Limit: 1, Cooloff: Backoff{Base: time.Minute, Decay: 24 * time.Hour}}, WithMaxEntries(capN))
	v := Key{IP: netip.MustParseAddr("198.51.100.1")}
	require.Equal(t, time.Minute, l.Fail(v).RetryAfter)
	c.Set(2 * time.Minute)
	require.False(t, l.Locked(v))
	// Fill the store with locks until v, the only unlocked entry, is
	// evicted.
	for i := 0; l.Stats().SketchFolds == 0; i++ {
		require.Less(t, i, 2*capN)
		l.Fail(Key{IP: ipN(i)})
	}
	got := l.Fail(v)
	require.True(t, got.Locked)
	assert.GreaterOrEqual(t, got.RetryAfter, 2*time.Minute, "the back-off level was forgotten")
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
	require.True(t, l.Fail(k).Locked)
	require.True(t, l.Locked(k))
	require.Positive(t, l.Stats().Overflows)
	c.Set(16 * time.Minute)
	assert.False(t, l.Locked(k))
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
	assert.False(t, l.Locked(other))
	assert.Equal(t, before, c.reads.Load(), "Locked stays on the slow path after the sketch's locks ended")
}

// TestResetAllClearsSketch: ResetAll forgets the sketch too.
func TestResetAllClearsSketch(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 1, LockoutBy: []Fields{Username}}, WithMaxEntries(64))
	for i := range 64 {
		l.Fail(Key{Username: fmt.Sprintf("junk-%d", i)})
	}
	k := Key{Username: "victim"}
	require.True(t, l.Fail(k).Locked)
	l.ResetAll()
	assert.False(t, l.Locked(k))
	assert.Equal(t, 0, l.Check(k).Failures)
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
		require.True(t, l.Fail(k).Locked)
	}
	st := l.mem
	held := 0
	for si := range st.shards {
		sh := &st.shards[si]
		for _, id := range sh.ids {
			held += identityCost(id)
		}
	}
	assert.Equal(t, int64(held), st.idBytes.Load())
	assert.LessOrEqual(t, held, st.idBudget, "identities hold %d bytes, budget %d", held, st.idBudget)
	assert.Equal(t, capN*identityBytesPerEntry, st.idBudget)
	los := l.Lockouts()
	require.Len(t, los, capN, "a lock without an identity must still be listed")
	named := 0
	for _, lo := range los {
		if lo.Username != "" {
			named++
			assert.Len(t, lo.Username, MaxIdentityBytes)
			assert.True(t, lo.IP.IsValid())
		}
	}
	assert.Positive(t, named)
	assert.Less(t, named, capN)
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
		assert.LessOrEqual(t, admitted[v].Load(), int64(3), "victim %d", v)
	}
}
