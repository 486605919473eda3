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

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type fakeClock struct {
	now   atomic.Int64
	reads atomic.Int64
}

func (c *fakeClock) Now() time.Time {
	c.reads.Add(1)
	return t0.Add(time.Duration(c.now.Load()))
}
func (c *fakeClock) Set(d time.Duration) { c.now.Store(int64(d)) }

func newTest(t testing.TB, p Policy, opts ...Option) (*Limiter, *fakeClock) {
	t.Helper()
	c := &fakeClock{}
	l, err := New(p, append([]Option{WithClock(c.Now)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l, c
}

func ipN(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestPolicyValidation(t *testing.T) {
	cases := []struct {
		name string
		p    Policy
		opts []Option
		want string
	}{
		{"negative limit", Policy{Limit: -1}, nil, "Limit"},
		{"huge limit", Policy{Limit: MaxFailures + 1}, nil, "Limit"},
		{"empty combination", Policy{LockoutBy: []Fields{IP, 0}}, nil, "empty combination"},
		{"unknown bits", Policy{LockoutBy: []Fields{IP | 8}}, nil, "unknown Fields"},
		{"duplicate", Policy{LockoutBy: []Fields{IP | Username, Username | IP}}, nil, "repeats"},
		{"ipv6 prefix low", Policy{IPv6Prefix: -1}, nil, "IPv6Prefix"},
		{"ipv6 prefix high", Policy{IPv6Prefix: 129}, nil, "IPv6Prefix"},
		{"negative window", Policy{Window: -time.Second}, nil, "Window"},
		{"fixed zero", Policy{Cooloff: Fixed(0)}, nil, "Fixed"},
		{"backoff base", Policy{Cooloff: Backoff{}}, nil, "Base"},
		{"backoff factor", Policy{Cooloff: Backoff{Base: time.Second, Factor: 0.5}}, nil, "Factor"},
		{"backoff max", Policy{Cooloff: Backoff{Base: time.Minute, Max: time.Second}}, nil, "Max"},
		{"backoff jitter", Policy{Cooloff: Backoff{Base: time.Minute, Jitter: 1}}, nil, "Jitter"},
		{"tiers empty", Policy{Cooloff: Tiers{}}, nil, "empty"},
		{"tiers order", Policy{Cooloff: Tiers{{5, time.Minute}, {3, time.Hour}}}, nil, "increasing"},
		{"tiers cooloff", Policy{Cooloff: Tiers{{5, 0}}}, nil, "Cooloff"},
		{"tiers window", Policy{Cooloff: Tiers{{3, time.Minute}, {5, time.Hour}}, Window: time.Hour}, nil, "tiers above it cannot be reached"},
		{"nil func", Policy{Cooloff: CooloffFunc(nil)}, nil, "nil"},
		{"max entries", Policy{}, []Option{WithMaxEntries(0)}, "WithMaxEntries"},
		{"short secret", Policy{}, []Option{WithSecret([]byte("short"))}, "16 bytes"},
		{"reserve timeout", Policy{}, []Option{WithReserveTimeout(0)}, "WithReserveTimeout"},
		{"nil clock", Policy{}, []Option{WithClock(nil)}, "clock"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.p, c.opts...)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "axes: "), err.Error())
			assert.Contains(t, err.Error(), c.want)
		})
	}
	_, err := New(Policy{})
	require.NoError(t, err)
	assert.Panics(t, func() { Must(New(Policy{Limit: -1})) })
}

func TestDefaults(t *testing.T) {
	l, _ := newTest(t, Policy{})
	assert.Equal(t, 3, l.rule.Limit)
	assert.Equal(t, 15*time.Minute, l.rule.Cooloff)
	assert.Equal(t, 15*time.Minute, l.rule.Window)
	assert.Equal(t, []Fields{IP}, l.dims)
	assert.Equal(t, 64, l.v6bits)
	lt, _ := newTest(t, Policy{Cooloff: Tiers{{4, time.Minute}, {8, time.Hour}, {20, Indefinite}}})
	assert.Equal(t, 4, lt.rule.Limit)
	assert.Equal(t, 24*time.Hour, lt.rule.Window)
	lb, _ := newTest(t, Policy{Cooloff: Backoff{Base: time.Minute}})
	assert.Equal(t, 2.0, lb.rule.Factor)
	assert.Equal(t, 24*time.Hour, lb.rule.Decay)
	assert.Equal(t, time.Minute, lb.rule.Window)
	lf, _ := newTest(t, Policy{Cooloff: Forever})
	assert.Equal(t, 15*time.Minute, lf.rule.Window)
}

func TestLockedReadsNoClockWhenNotLocked(t *testing.T) {
	l, c := newTest(t, Policy{LockoutBy: []Fields{IP, IP | Username}})
	k := Key{IP: ipN(1), Username: "bob"}
	l.Fail(k)
	l.Fail(Key{IP: ipN(2)})
	before := c.reads.Load()
	for range 100 {
		assert.False(t, l.Locked(k))
		assert.False(t, l.Locked(Key{IP: ipN(3), Username: "x"}))
	}
	assert.Equal(t, before, c.reads.Load(), "Locked read the clock for an unlocked key")
	l.Fail(k)
	l.Fail(k)
	assert.True(t, l.Locked(k))
}

// TestReservationsExactUnderRace releases 1,000 goroutines together, each
// doing Begin then Fail on one key with limit 5, 200 times: exactly 5 are
// admitted every round.
func TestReservationsExactUnderRace(t *testing.T) {
	rounds := 200
	if testing.Short() {
		rounds = 20
	}
	l, _ := newTest(t, Policy{Limit: 5, LockoutBy: []Fields{IP, Username, IP | Username}})
	k := Key{IP: ipN(7), Username: "victim"}
	for round := range rounds {
		var admitted, lockedVerdicts atomic.Int64
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		for range 1000 {
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				ready.Done()
				<-start
				a := l.Begin(k)
				if a.Allowed() {
					admitted.Add(1)
					if a.Fail().Locked {
						lockedVerdicts.Add(1)
					}
				}
			}()
		}
		ready.Wait()
		close(start)
		done.Wait()
		if admitted.Load() != 5 || lockedVerdicts.Load() != 1 {
			t.Fatalf("round %d: %d admitted, %d locking failures; want 5 and 1", round, admitted.Load(), lockedVerdicts.Load())
		}
		l.Reset(k)
	}
}

// TestPlainPatternWeakerBound documents why Begin exists: with Locked then
// Fail, every request that passes Locked before the first failure is
// counted reaches the password check, so a burst gets more than the limit.
func TestPlainPatternWeakerBound(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 5})
	k := Key{IP: ipN(8)}
	const n = 50
	var passed sync.WaitGroup
	var checked atomic.Int64
	passed.Add(n)
	release := make(chan struct{})
	var done sync.WaitGroup
	for range n {
		done.Add(1)
		go func() {
			defer done.Done()
			ok := !l.Locked(k)
			passed.Done()
			<-release // every request has passed Locked before any fails
			if ok {
				checked.Add(1)
				l.Fail(k)
			}
		}()
	}
	passed.Wait()
	close(release)
	done.Wait()
	assert.Equal(t, int64(n), checked.Load(), "all %d racing requests reach the password check with limit 5", n)
	assert.True(t, l.Locked(k))
}

func TestFlood(t *testing.T) {
	// Each run draws a new secret, so a new layout of keys over shards.
	for range 3 {
		flood(t)
	}
}

func flood(t *testing.T) {
	const capN = 4096
	l, c := newTest(t, Policy{}, WithMaxEntries(capN))
	a := Key{IP: netip.MustParseAddr("198.51.100.1")}
	b := Key{IP: netip.MustParseAddr("198.51.100.2")}
	for range 3 {
		l.Fail(a)
	}
	require.True(t, l.Locked(a))
	l.Fail(b)
	l.Fail(b)
	for i := range 10 * capN {
		c.Set(time.Duration(i) * time.Millisecond)
		l.Fail(Key{IP: ipN(i)})
		if i%512 == 0 {
			require.LessOrEqual(t, l.Stats().Entries, capN)
		}
	}
	st := l.Stats()
	assert.LessOrEqual(t, st.Entries, capN)
	assert.Positive(t, st.EvictedPressure)
	assert.True(t, l.Locked(a), "a flood evicted a lock")
	v := l.Fail(b)
	assert.True(t, v.Locked, "a flood flushed a partial count: %+v", v)
}

func TestOverflowWhenOnlyLockedRemain(t *testing.T) {
	const capN = 64
	l, _ := newTest(t, Policy{Limit: 1}, WithMaxEntries(capN))
	for i := range capN {
		require.True(t, l.Fail(Key{IP: ipN(i)}).Locked)
	}
	assert.Equal(t, capN, l.Stats().Entries)
	v := l.Fail(Key{IP: ipN(100000)})
	st := l.Stats()
	assert.Equal(t, capN, st.Entries)
	assert.Equal(t, uint64(1), st.Overflows)
	assert.True(t, v.Locked && l.Locked(Key{IP: ipN(100000)}), "a key the table cannot hold stays locked in the sketch")
	for i := range capN {
		assert.True(t, l.Locked(Key{IP: ipN(i)}), "lock %d evicted", i)
	}
}

func TestExpiredEntriesAreSwept(t *testing.T) {
	l, c := newTest(t, Policy{}, WithMaxEntries(1<<12))
	for i := range 2000 {
		l.Fail(Key{IP: ipN(i)})
	}
	assert.Equal(t, 2000, l.Stats().Entries)
	c.Set(time.Hour)
	for i := range 3000 {
		l.Fail(Key{IP: ipN(10000 + i)})
	}
	st := l.Stats()
	assert.LessOrEqual(t, st.Entries, 3000+256, "expired entries linger: %+v", st)
	assert.Positive(t, st.EvictedExpired)
}

// TestStoreMatchesModel drives the memory store's table through random
// inserts, updates, resets and expiries and checks every answer against a
// plain map.
func TestStoreMatchesModel(t *testing.T) {
	l, c := newTest(t, Policy{Limit: 1000}, WithMaxEntries(1<<16))
	model := map[int]int{}
	seed := uint64(1)
	next := func(n int) int {
		seed = seed*6364136223846793005 + 1442695040888963407
		return int(seed>>33) % n
	}
	for step := range 50000 {
		i := next(5000)
		k := Key{IP: ipN(i)}
		switch next(10) {
		case 0:
			l.Reset(k)
			delete(model, i)
		default:
			v := l.Fail(k)
			model[i]++
			if v.Failures != model[i] {
				t.Fatalf("step %d: key %d has %d failures, want %d", step, i, v.Failures, model[i])
			}
		}
	}
	for i, n := range model {
		if got := l.Check(Key{IP: ipN(i)}).Failures; got != n {
			t.Fatalf("key %d: %d failures, want %d", i, got, n)
		}
	}
	assert.Equal(t, len(model), l.Stats().Entries)
	c.Set(time.Hour)
	for i := range model {
		assert.Equal(t, 0, l.Check(Key{IP: ipN(i)}).Failures)
	}
}

func TestStatsAndLogEvents(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	logger := newTextLogger(&lockedWriter{w: &buf, mu: &mu})
	l, _ := newTest(t, Policy{OnEvent: LogEvents(logger), Deny: MustParseIPSet("203.0.113.0/24")})
	k := Key{IP: netip.MustParseAddr("192.0.2.77"), Username: "Alice", UserAgent: "curl/8"}
	for range 4 {
		l.Fail(k)
	}
	l.Success(Key{IP: ipN(1)})
	l.Fail(Key{IP: netip.MustParseAddr("203.0.113.5")})
	l.ResetAll()
	st := l.Stats()
	assert.Equal(t, uint64(3), st.Failures)
	assert.Equal(t, uint64(1), st.Lockouts)
	assert.Equal(t, uint64(2), st.Refused)
	assert.Equal(t, uint64(1), st.Successes)
	assert.Equal(t, uint64(1), st.Resets)
	out := buf.String()
	assert.Contains(t, out, "axes lockout")
	assert.Contains(t, out, "ip=192.0.*.*")
	assert.NotContains(t, out, "192.0.2.77")
	assert.NotContains(t, out, "Alice")
	assert.Contains(t, out, "username=sha256:")
	assert.Contains(t, out, "reason=denied")
	assert.NotContains(t, out, "axes failure", "failures are not logged by default")
	buf.Reset()
	l2, _ := newTest(t, Policy{OnEvent: LogEvents(logger, LogRawIdentity(), LogFailures())})
	l2.Fail(k)
	assert.Contains(t, buf.String(), "192.0.2.77")
	assert.Contains(t, buf.String(), "username=Alice")
}

func TestLockoutIdentityNotRetained(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 1, LockoutBy: []Fields{Username}})
	big := strings.Repeat("x", 1<<20)
	l.Fail(Key{Username: big, UserAgent: big})
	lo := l.Lockouts()
	require.Len(t, lo, 1)
	assert.Len(t, lo[0].Username, MaxIdentityBytes)
	assert.Len(t, lo[0].UserAgent, MaxIdentityBytes)
}

func TestBackoffJitterAndSaturation(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 1, Cooloff: Backoff{Base: time.Hour, Jitter: 0.5}})
	for i := range 50 {
		v := l.Fail(Key{IP: ipN(i)})
		require.True(t, v.Locked)
		assert.GreaterOrEqual(t, v.RetryAfter, 30*time.Minute)
		assert.LessOrEqual(t, v.RetryAfter, 90*time.Minute+time.Second)
	}
	r := store.Rule{Cooloff: time.Hour, Factor: 10}
	assert.Equal(t, maxFinite, r.LockDuration(255, 1))
	assert.Positive(t, r.LockDuration(40, 1))
}

func TestFieldsString(t *testing.T) {
	assert.Equal(t, "ip+username+user_agent", (IP | Username | UserAgent).String())
	assert.Equal(t, "none", Fields(0).String())
	assert.Equal(t, "ip+unknown", (IP | 64).String())
	assert.Equal(t, "busy", ReasonBusy.String())
	assert.Equal(t, "lockout", EventLockout.String())
	assert.Equal(t, "settle-fail", store.OpSettleFail.String())
	assert.Equal(t, "unknown", Reason(99).String())
	assert.Equal(t, fmt.Sprint(store.Op(99)), "Op(99)")
}

func TestCancelAndResetLockout(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 2, ResetOnSuccess: true, LockoutBy: []Fields{IP, IP | UserAgent}})
	k := Key{IP: ipN(1), UserAgent: strings.Repeat("u", 1000)}
	l.Fail(k)
	a := l.Begin(k)
	require.True(t, a.Allowed())
	a.Cancel()
	a.Cancel()
	assert.Equal(t, 1, l.Check(k).Failures, "Cancel neither counts nor resets")
	assert.Equal(t, uint64(0), l.Stats().Successes)
	l.Fail(k)
	lo := l.Lockouts()
	require.Len(t, lo, 2)
	for _, x := range lo {
		if x.By == IP|UserAgent {
			l.ResetLockout(x)
		}
	}
	lo = l.Lockouts()
	require.Len(t, lo, 1)
	assert.Equal(t, IP, lo[0].By)
	d, err := store.ParseDigest(lo[0].Digest.String())
	require.NoError(t, err)
	assert.Equal(t, lo[0].Digest, d)
	_, err = store.ParseDigest("xyz")
	assert.Error(t, err)
}

// The cap is global: a new key whose own shard holds nothing evictable
// displaces an entry of another shard rather than going untracked.
func TestEvictionCrossesShards(t *testing.T) {
	const capN = 1 << 14
	l, _ := newTest(t, Policy{}, WithMaxEntries(capN))
	st := l.mem
	victim := Key{IP: ipN(1 << 20)}
	var dims [8]store.Dim
	l.digestsOf(&victim, &dims)
	vs := st.shardOf(dims[0].Digest)
	for i := 0; st.total.Load() < capN; i++ {
		k := Key{IP: ipN(i)}
		l.digestsOf(&k, &dims)
		if st.shardOf(dims[0].Digest) != vs {
			l.Fail(k)
		}
	}
	v := l.Fail(victim)
	s := l.Stats()
	assert.Equal(t, uint64(0), s.Overflows)
	assert.Positive(t, s.EvictedPressure)
	assert.Equal(t, 1, v.Failures)
	assert.Equal(t, 1, l.Check(victim).Failures, "the victim's failure was not stored")
	assert.LessOrEqual(t, s.Entries, capN)
}

// Regressions: a reservation generation past 255, Locked agreeing with
// Check when reservations time out into a lock, per-key rules on reads,
// and the identity of a lock started by a read.
func TestReservationEdges(t *testing.T) {
	l, c := newTest(t, Policy{Limit: MaxFailures, Window: 365 * 24 * time.Hour})
	k := Key{IP: ipN(1)}
	var now time.Duration
	for range 256 {
		l.Begin(k)
		now += 2 * time.Minute
		c.Set(now)
	}
	a := l.Begin(k)
	before := l.Check(k).Failures
	a.Succeed()
	now += 2 * time.Minute
	c.Set(now)
	assert.Equal(t, before, l.Check(k).Failures, "a settled success counted as a failure after the generation wrapped")

	l2, c2 := newTest(t, Policy{Limit: 3})
	k2 := Key{IP: ipN(2), Username: "carol"}
	l2.Fail(k2)
	l2.Fail(k2)
	l2.Begin(k2) // the handler crashes
	c2.Set(2 * time.Minute)
	assert.True(t, l2.Locked(k2), "Locked disagrees with Check")
	assert.True(t, l2.Check(k2).Locked)
	lo := l2.Lockouts()
	require.Len(t, lo, 1)
	assert.Equal(t, "carol", lo[0].Username)

	l3, c3 := newTest(t, Policy{Limit: 3, LimitFunc: func(Key) int { return 1 }})
	k3 := Key{IP: ipN(3)}
	l3.Begin(k3)
	c3.Set(2 * time.Minute)
	assert.True(t, l3.Check(k3).Locked, "a read applied the base limit instead of LimitFunc's")
	a3 := l3.Begin(k3)
	assert.False(t, a3.Allowed())
}

func TestTimedOutReservationsAreReported(t *testing.T) {
	var kinds []string
	l, c := newTest(t, Policy{Limit: 5, OnEvent: func(e Event) { kinds = append(kinds, e.Kind.String()) }})
	k := Key{IP: ipN(9)}
	l.Begin(k)
	l.Begin(k)
	c.Set(2 * time.Minute)
	assert.Equal(t, 2, l.Check(k).Failures)
	assert.Equal(t, uint64(2), l.Stats().Failures)
	assert.Equal(t, []string{"failure"}, kinds)
}

func TestResetClient(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 2, LockoutBy: []Fields{IP, Username, IP | Username, IP | UserAgent}})
	k := Key{IP: ipN(1), Username: "bob", UserAgent: "ua"}
	other := Key{IP: ipN(2), Username: "carol"}
	for range 2 {
		l.Fail(k)
		l.Fail(other)
	}
	require.True(t, l.Locked(k))
	assert.Equal(t, 3, l.ResetClient(ipN(1), "Bob "), "IP, Username and IP|Username; not IP|UserAgent")
	v := l.Check(k)
	assert.True(t, v.Locked, "the IP|UserAgent dimension keeps its lock")
	assert.Equal(t, IP|UserAgent, v.By)
	assert.False(t, l.Locked(Key{IP: ipN(1), Username: "bob", UserAgent: "other"}), "every dimension without the user agent was forgotten")
	assert.True(t, l.Locked(other), "other clients keep their locks")
}
