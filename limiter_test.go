package axes

import (
	"fmt"
	"github.com/axes-go/axes/store"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
	if err != nil {
		t.Fatalf("New(%+v): %v", p, err)
	}
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
			if err == nil {
				t.Fatal("New: no error")
			}
			if !strings.HasPrefix(err.Error(), "axes: ") {
				t.Errorf("error %q does not start with \"axes: \"", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
	_, err := New(Policy{})
	if err != nil {
		t.Fatalf("New(Policy{}): %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Must(New(Policy{Limit: -1})) did not panic")
			}
		}()
		Must(New(Policy{Limit: -1}))
	}()
}

func TestDefaults(t *testing.T) {
	l, _ := newTest(t, Policy{})
	if l.rule.Limit != 3 {
		t.Errorf("default Limit = %d, want 3", l.rule.Limit)
	}
	if l.rule.Cooloff != 15*time.Minute {
		t.Errorf("default Cooloff = %v, want 15m", l.rule.Cooloff)
	}
	if l.rule.Window != 15*time.Minute {
		t.Errorf("default Window = %v, want 15m", l.rule.Window)
	}
	if want := []Fields{IP}; !slices.Equal(l.dims, want) {
		t.Errorf("default LockoutBy = %v, want %v", l.dims, want)
	}
	if l.v6bits != 64 {
		t.Errorf("default IPv6Prefix = %d, want 64", l.v6bits)
	}
	lt, _ := newTest(t, Policy{Cooloff: Tiers{{4, time.Minute}, {8, time.Hour}, {20, Indefinite}}})
	if lt.rule.Limit != 4 {
		t.Errorf("Tiers: Limit = %d, want the first tier's 4", lt.rule.Limit)
	}
	if lt.rule.Window != 24*time.Hour {
		t.Errorf("Tiers: Window = %v, want 24h", lt.rule.Window)
	}
	lb, _ := newTest(t, Policy{Cooloff: Backoff{Base: time.Minute}})
	if lb.rule.Factor != 2.0 {
		t.Errorf("Backoff: Factor = %v, want 2", lb.rule.Factor)
	}
	if lb.rule.Decay != 24*time.Hour {
		t.Errorf("Backoff: Decay = %v, want 24h", lb.rule.Decay)
	}
	if lb.rule.Window != time.Minute {
		t.Errorf("Backoff: Window = %v, want the Base, 1m", lb.rule.Window)
	}
	lf, _ := newTest(t, Policy{Cooloff: Forever})
	if lf.rule.Window != 15*time.Minute {
		t.Errorf("Forever: Window = %v, want 15m", lf.rule.Window)
	}
}

func TestLockedReadsNoClockWhenNotLocked(t *testing.T) {
	l, c := newTest(t, Policy{LockoutBy: []Fields{IP, IP | Username}})
	k := Key{IP: ipN(1), Username: "bob"}
	l.Fail(k)
	l.Fail(Key{IP: ipN(2)})
	before := c.reads.Load()
	for range 100 {
		if l.Locked(k) {
			t.Errorf("Locked(%+v) = true after 1 failure", k)
		}
		if l.Locked(Key{IP: ipN(3), Username: "x"}) {
			t.Error("Locked = true for a key never seen")
		}
	}
	if got := c.reads.Load(); got != before {
		t.Errorf("Locked read the clock %d times for an unlocked key", got-before)
	}
	l.Fail(k)
	l.Fail(k)
	if !l.Locked(k) {
		t.Errorf("Locked(%+v) = false after 3 failures", k)
	}
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
	if got := checked.Load(); got != n {
		t.Errorf("%d racing requests reached the password check with limit 5, want all %d", got, n)
	}
	if !l.Locked(k) {
		t.Error("Locked = false after the burst of failures")
	}
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
	if !l.Locked(a) {
		t.Fatal("not locked after 3 failures")
	}
	l.Fail(b)
	l.Fail(b)
	for i := range 10 * capN {
		c.Set(time.Duration(i) * time.Millisecond)
		l.Fail(Key{IP: ipN(i)})
		if i%512 == 0 {
			if got := l.Stats().Entries; got > capN {
				t.Fatalf("after %d flood keys: Stats().Entries = %d, want at most %d", i+1, got, capN)
			}
		}
	}
	st := l.Stats()
	if st.Entries > capN {
		t.Errorf("Stats().Entries = %d, want at most %d", st.Entries, capN)
	}
	if st.EvictedPressure == 0 {
		t.Error("Stats().EvictedPressure = 0, want > 0")
	}
	if !l.Locked(a) {
		t.Error("a flood evicted a lock")
	}
	v := l.Fail(b)
	if !v.Locked {
		t.Errorf("a flood flushed a partial count: %+v", v)
	}
}

func TestOverflowWhenOnlyLockedRemain(t *testing.T) {
	const capN = 64
	l, _ := newTest(t, Policy{Limit: 1}, WithMaxEntries(capN))
	for i := range capN {
		if v := l.Fail(Key{IP: ipN(i)}); !v.Locked {
			t.Fatalf("key %d: Fail = %+v, want locked", i, v)
		}
	}
	if got := l.Stats().Entries; got != capN {
		t.Errorf("Stats().Entries = %d, want %d", got, capN)
	}
	v := l.Fail(Key{IP: ipN(100000)})
	st := l.Stats()
	if st.Entries != capN {
		t.Errorf("Stats().Entries = %d after the overflow, want %d", st.Entries, capN)
	}
	if st.Overflows != 1 {
		t.Errorf("Stats().Overflows = %d, want 1", st.Overflows)
	}
	if locked := l.Locked(Key{IP: ipN(100000)}); !v.Locked || !locked {
		t.Errorf("a key the table cannot hold stays locked in the sketch: Fail = %+v, Locked = %v", v, locked)
	}
	for i := range capN {
		if !l.Locked(Key{IP: ipN(i)}) {
			t.Errorf("lock %d evicted", i)
		}
	}
}

func TestExpiredEntriesAreSwept(t *testing.T) {
	l, c := newTest(t, Policy{}, WithMaxEntries(1<<12))
	for i := range 2000 {
		l.Fail(Key{IP: ipN(i)})
	}
	if got := l.Stats().Entries; got != 2000 {
		t.Errorf("Stats().Entries = %d, want 2000", got)
	}
	c.Set(time.Hour)
	for i := range 3000 {
		l.Fail(Key{IP: ipN(10000 + i)})
	}
	st := l.Stats()
	if st.Entries > 3000+256 {
		t.Errorf("expired entries linger: %+v", st)
	}
	if st.EvictedExpired == 0 {
		t.Error("Stats().EvictedExpired = 0, want > 0")
	}
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
	if got := l.Stats().Entries; got != len(model) {
		t.Errorf("Stats().Entries = %d, want the model's %d", got, len(model))
	}
	c.Set(time.Hour)
	for i := range model {
		if got := l.Check(Key{IP: ipN(i)}).Failures; got != 0 {
			t.Errorf("key %d: %d failures an hour later, want 0", i, got)
		}
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
	if st.Failures != 3 {
		t.Errorf("Stats().Failures = %d, want 3", st.Failures)
	}
	if st.Lockouts != 1 {
		t.Errorf("Stats().Lockouts = %d, want 1", st.Lockouts)
	}
	if st.Refused != 2 {
		t.Errorf("Stats().Refused = %d, want 2", st.Refused)
	}
	if st.Successes != 1 {
		t.Errorf("Stats().Successes = %d, want 1", st.Successes)
	}
	if st.Resets != 1 {
		t.Errorf("Stats().Resets = %d, want 1", st.Resets)
	}
	out := buf.String()
	if !strings.Contains(out, "axes lockout") {
		t.Errorf("the log lacks %q:\n%s", "axes lockout", out)
	}
	if !strings.Contains(out, "ip=192.0.*.*") {
		t.Errorf("the log lacks the masked IP %q:\n%s", "ip=192.0.*.*", out)
	}
	if strings.Contains(out, "192.0.2.77") {
		t.Errorf("the log holds the raw IP:\n%s", out)
	}
	if strings.Contains(out, "Alice") {
		t.Errorf("the log holds the raw username:\n%s", out)
	}
	if !strings.Contains(out, "username=sha256:") {
		t.Errorf("the log lacks %q:\n%s", "username=sha256:", out)
	}
	if !strings.Contains(out, "reason=denied") {
		t.Errorf("the log lacks %q:\n%s", "reason=denied", out)
	}
	if strings.Contains(out, "axes failure") {
		t.Errorf("failures are not logged by default, but the log holds one:\n%s", out)
	}
	buf.Reset()
	l2, _ := newTest(t, Policy{OnEvent: LogEvents(logger, LogRawIdentity(), LogFailures())})
	l2.Fail(k)
	if !strings.Contains(buf.String(), "192.0.2.77") {
		t.Errorf("the log with LogRawIdentity lacks the raw IP:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "username=Alice") {
		t.Errorf("the log with LogRawIdentity lacks %q:\n%s", "username=Alice", buf.String())
	}
}

func TestLockoutIdentityNotRetained(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 1, LockoutBy: []Fields{Username}})
	big := strings.Repeat("x", 1<<20)
	l.Fail(Key{Username: big, UserAgent: big})
	lo := l.Lockouts()
	if len(lo) != 1 {
		t.Fatalf("%d lockouts, want 1", len(lo))
	}
	if len(lo[0].Username) != MaxIdentityBytes {
		t.Errorf("the listed username holds %d bytes, want %d", len(lo[0].Username), MaxIdentityBytes)
	}
	if len(lo[0].UserAgent) != MaxIdentityBytes {
		t.Errorf("the listed user agent holds %d bytes, want %d", len(lo[0].UserAgent), MaxIdentityBytes)
	}
}

func TestBackoffJitterAndSaturation(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 1, Cooloff: Backoff{Base: time.Hour, Jitter: 0.5}})
	for i := range 50 {
		v := l.Fail(Key{IP: ipN(i)})
		if !v.Locked {
			t.Fatalf("key %d: Fail = %+v, want locked", i, v)
		}
		if v.RetryAfter < 30*time.Minute {
			t.Errorf("key %d: RetryAfter = %v, want at least 30m", i, v.RetryAfter)
		}
		if v.RetryAfter > 90*time.Minute+time.Second {
			t.Errorf("key %d: RetryAfter = %v, want at most 1h30m1s", i, v.RetryAfter)
		}
	}
	r := store.Rule{Cooloff: time.Hour, Factor: 10}
	if got := r.LockDuration(255, 1); got != maxFinite {
		t.Errorf("LockDuration(255, 1) = %v, want maxFinite %v", got, maxFinite)
	}
	if got := r.LockDuration(40, 1); got <= 0 {
		t.Errorf("LockDuration(40, 1) = %v, want > 0", got)
	}
}

func TestFieldsString(t *testing.T) {
	if got := (IP | Username | UserAgent).String(); got != "ip+username+user_agent" {
		t.Errorf("(IP | Username | UserAgent).String() = %q, want %q", got, "ip+username+user_agent")
	}
	if got := Fields(0).String(); got != "none" {
		t.Errorf("Fields(0).String() = %q, want %q", got, "none")
	}
	if got := (IP | 64).String(); got != "ip+unknown" {
		t.Errorf("(IP | 64).String() = %q, want %q", got, "ip+unknown")
	}
	if got := ReasonBusy.String(); got != "busy" {
		t.Errorf("ReasonBusy.String() = %q, want %q", got, "busy")
	}
	if got := EventLockout.String(); got != "lockout" {
		t.Errorf("EventLockout.String() = %q, want %q", got, "lockout")
	}
	if got := store.OpSettleFail.String(); got != "settle-fail" {
		t.Errorf("store.OpSettleFail.String() = %q, want %q", got, "settle-fail")
	}
	if got := Reason(99).String(); got != "unknown" {
		t.Errorf("Reason(99).String() = %q, want %q", got, "unknown")
	}
	if got := fmt.Sprint(store.Op(99)); got != "Op(99)" {
		t.Errorf("fmt.Sprint(store.Op(99)) = %q, want %q", got, "Op(99)")
	}
}

func TestCancelAndResetLockout(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 2, ResetOnSuccess: true, LockoutBy: []Fields{IP, IP | UserAgent}})
	k := Key{IP: ipN(1), UserAgent: strings.Repeat("u", 1000)}
	l.Fail(k)
	a := l.Begin(k)
	if !a.Allowed() {
		t.Fatalf("Begin after 1 failure of 2 refused: %+v", a.Verdict())
	}
	a.Cancel()
	a.Cancel()
	if got := l.Check(k).Failures; got != 1 {
		t.Errorf("Check(...).Failures = %d after Cancel, want 1: Cancel neither counts nor resets", got)
	}
	if got := l.Stats().Successes; got != 0 {
		t.Errorf("Stats().Successes = %d after Cancel, want 0", got)
	}
	l.Fail(k)
	lo := l.Lockouts()
	if len(lo) != 2 {
		t.Fatalf("%d lockouts, want 2: %+v", len(lo), lo)
	}
	for _, x := range lo {
		if x.By == IP|UserAgent {
			l.ResetLockout(x)
		}
	}
	lo = l.Lockouts()
	if len(lo) != 1 {
		t.Fatalf("%d lockouts after ResetLockout, want 1: %+v", len(lo), lo)
	}
	if lo[0].By != IP {
		t.Errorf("the lockout left is by %v, want %v", lo[0].By, IP)
	}
	d, err := store.ParseDigest(lo[0].Digest.String())
	if err != nil {
		t.Fatalf("ParseDigest(%q): %v", lo[0].Digest.String(), err)
	}
	if d != lo[0].Digest {
		t.Errorf("ParseDigest(%q) = %v, want %v", lo[0].Digest.String(), d, lo[0].Digest)
	}
	if _, err = store.ParseDigest("xyz"); err == nil {
		t.Error(`ParseDigest("xyz"): no error`)
	}
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
	if s.Overflows != 0 {
		t.Errorf("Stats().Overflows = %d, want 0", s.Overflows)
	}
	if s.EvictedPressure == 0 {
		t.Error("Stats().EvictedPressure = 0, want > 0")
	}
	if v.Failures != 1 {
		t.Errorf("Fail(victim).Failures = %d, want 1", v.Failures)
	}
	if got := l.Check(victim).Failures; got != 1 {
		t.Errorf("the victim's failure was not stored: Check(victim).Failures = %d, want 1", got)
	}
	if s.Entries > capN {
		t.Errorf("Stats().Entries = %d, want at most %d", s.Entries, capN)
	}
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
	if got := l.Check(k).Failures; got != before {
		t.Errorf("a settled success counted as a failure after the generation wrapped: %d failures, want %d", got, before)
	}

	l2, c2 := newTest(t, Policy{Limit: 3})
	k2 := Key{IP: ipN(2), Username: "carol"}
	l2.Fail(k2)
	l2.Fail(k2)
	l2.Begin(k2) // the handler crashes
	c2.Set(2 * time.Minute)
	if !l2.Locked(k2) {
		t.Error("Locked disagrees with Check: Locked = false")
	}
	if v := l2.Check(k2); !v.Locked {
		t.Errorf("Check after the timed-out reservation = %+v, want locked", v)
	}
	lo := l2.Lockouts()
	if len(lo) != 1 {
		t.Fatalf("%d lockouts, want 1: %+v", len(lo), lo)
	}
	if lo[0].Username != "carol" {
		t.Errorf("the lockout's Username = %q, want %q", lo[0].Username, "carol")
	}

	l3, c3 := newTest(t, Policy{Limit: 3, LimitFunc: func(Key) int { return 1 }})
	k3 := Key{IP: ipN(3)}
	l3.Begin(k3)
	c3.Set(2 * time.Minute)
	if v := l3.Check(k3); !v.Locked {
		t.Errorf("a read applied the base limit instead of LimitFunc's: Check = %+v", v)
	}
	a3 := l3.Begin(k3)
	if a3.Allowed() {
		t.Error("Begin admitted a key LimitFunc locks after 1 failure")
	}
}

func TestTimedOutReservationsAreReported(t *testing.T) {
	var kinds []string
	l, c := newTest(t, Policy{Limit: 5, OnEvent: func(e Event) { kinds = append(kinds, e.Kind.String()) }})
	k := Key{IP: ipN(9)}
	l.Begin(k)
	l.Begin(k)
	c.Set(2 * time.Minute)
	if got := l.Check(k).Failures; got != 2 {
		t.Errorf("Check(...).Failures = %d after 2 timed-out reservations, want 2", got)
	}
	if got := l.Stats().Failures; got != 2 {
		t.Errorf("Stats().Failures = %d, want 2", got)
	}
	if want := []string{"failure"}; !slices.Equal(kinds, want) {
		t.Errorf("events %q, want %q", kinds, want)
	}
}

func TestResetClient(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 2, LockoutBy: []Fields{IP, Username, IP | Username, IP | UserAgent}})
	k := Key{IP: ipN(1), Username: "bob", UserAgent: "ua"}
	other := Key{IP: ipN(2), Username: "carol"}
	for range 2 {
		l.Fail(k)
		l.Fail(other)
	}
	if !l.Locked(k) {
		t.Fatal("not locked after 2 failures")
	}
	if got := l.ResetClient(ipN(1), "Bob "); got != 3 {
		t.Errorf("ResetClient = %d, want 3: IP, Username and IP|Username; not IP|UserAgent", got)
	}
	v := l.Check(k)
	if !v.Locked {
		t.Errorf("the IP|UserAgent dimension keeps its lock: Check = %+v", v)
	}
	if v.By != IP|UserAgent {
		t.Errorf("Check(...).By = %v, want %v", v.By, IP|UserAgent)
	}
	if l.Locked(Key{IP: ipN(1), Username: "bob", UserAgent: "other"}) {
		t.Error("every dimension without the user agent was forgotten, yet another user agent is locked")
	}
	if !l.Locked(other) {
		t.Error("other clients keep their locks: Locked(other) = false")
	}
}
