package redisstore

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/axes-go/axes/storetest"
	"github.com/redis/go-redis/v9"
)

// waitFor polls cond until it holds, failing the test after 10 seconds.
// It waits for deliveries (a subscription confirmed, an invalidation
// received); correctness never depends on how long it takes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ready waits until s's cache is subscribed to invalidations.
func ready(t testing.TB, s *Store) {
	t.Helper()
	waitFor(t, "the invalidation subscription", func() bool { return s.near.ready.Load() })
}

// The conformance suite with the local cache subscribed before every
// test, so that the cache answers whatever it can.
func TestConformanceLocalLocks(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) {
			var c redis.UniversalClient
			if cluster {
				c = newCluster(t)
			} else {
				c = newClient(t)
			}
			var mu sync.Mutex
			var stores []*Store
			t.Cleanup(func() { // registered first, so it runs after the suite's
				var saved uint64
				for _, s := range stores {
					saved += s.Stats().RoundTripsSaved
				}
				if saved == 0 {
					t.Error("the cache answered no decision of the suite")
				}
				t.Logf("decisions answered from the cache: %d", saved)
			})
			storetest.Run(t, func() store.Store {
				s := mustNew(t, c, Options{UseRequestTime: true, Timeout: conformanceTimeout})
				ready(t, s)
				mu.Lock()
				stores = append(stores, s)
				mu.Unlock()
				return s
			})
		})
	}
}

// twoServers returns two limiters on separate clients and stores sharing a
// prefix, as two servers behind a load balancer, with their caches
// subscribed.
func twoServers(t *testing.T, cluster bool, p axes.Policy, o Options) ([]*axes.Limiter, []*Store) {
	ls, ss := limiters(t, 2, cluster, p, o)
	ready(t, ss[0])
	ready(t, ss[1])
	return ls, ss
}

// Server A locks a client; server B learns the lock from Redis once and
// then refuses it from its cache, without round trips; each kind of reset
// on A reaches B's cache, and B admits again.
func TestLocalLocksAcrossServers(t *testing.T) {
	ip := netip.MustParseAddr("203.0.113.9")
	resets := []struct {
		name  string
		reset func(l *axes.Limiter, k axes.Key)
	}{
		{"Reset", func(l *axes.Limiter, k axes.Key) { l.Reset(k) }},
		{"ResetIP", func(l *axes.Limiter, k axes.Key) {
			if _, err := l.ResetIPContext(context.Background(), k.IP); err != nil {
				panic(err)
			}
		}},
		{"ResetUsername", func(l *axes.Limiter, k axes.Key) {
			if _, err := l.ResetUsernameContext(context.Background(), k.Username); err != nil {
				panic(err)
			}
		}},
		{"ResetAll", func(l *axes.Limiter, k axes.Key) {
			if _, err := l.ResetAllContext(context.Background()); err != nil {
				panic(err)
			}
		}},
	}
	for _, cluster := range []bool{false, true} {
		for _, spread := range []bool{false, true} {
			for _, rs := range resets {
				t.Run(fmt.Sprintf("cluster=%v/spread=%v/%s", cluster, spread, rs.name), func(t *testing.T) {
					p := axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.IP | axes.Username}}
					ls, ss := twoServers(t, cluster, p, Options{SpreadSlots: spread})
					a, b, sb := ls[0], ls[1], ss[1]
					k := axes.Key{IP: ip, Username: "victim"}
					for range 3 {
						a.Fail(k)
					}
					if !a.Locked(k) {
						t.Fatal("A did not lock the client")
					}
					trips := sb.Stats().RoundTrips
					if v := b.Fail(k); !v.Locked || v.RetryAfter <= 0 || v.Failures != 3 {
						t.Fatalf("B, first refusal: %+v", v)
					}
					if got := sb.Stats().RoundTrips - trips; got != 1 {
						t.Fatalf("B learned the lock in %d round trips, want 1", got)
					}
					for i := range 10 {
						v := b.Fail(k)
						if !v.Locked || v.Reason != axes.ReasonLockout || v.Failures != 3 || v.RetryAfter <= 0 || v.RetryAfter > 15*time.Minute {
							t.Fatalf("B, refusal %d from the cache: %+v", i, v)
						}
						if !b.Locked(k) {
							t.Fatalf("B, check %d: not locked", i)
						}
					}
					st := sb.Stats()
					if st.RoundTrips != trips+1 || st.RoundTripsSaved != 20 {
						t.Fatalf("B: %d round trips and %d saved after 21 decisions, want 1 and 20", st.RoundTrips-trips, st.RoundTripsSaved)
					}
					inv := sb.Stats().CacheInvalidations
					rs.reset(a, k)
					waitFor(t, "B to receive the invalidation", func() bool { return sb.Stats().CacheInvalidations > inv })
					if v := b.Check(k); v.Locked {
						t.Fatalf("B after the reset: %+v", v)
					}
					if sb.Stats().RoundTripsSaved != 20 {
						t.Fatal("B answered from its cache after the reset")
					}
				})
			}
		}
	}
}

// Refusals on B race a reset on A: once the reset has returned and its
// invalidation reached B, B admits, whichever replies from before the
// reset B was still processing.
func TestLocalLocksResetRace(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) {
			p := axes.Policy{Limit: 3}
			ls, ss := twoServers(t, cluster, p, Options{Timeout: 5 * time.Second})
			a, b, sb := ls[0], ls[1], ss[1]
			k := axes.Key{IP: netip.MustParseAddr("198.51.100.77")}
			for round := range 20 {
				for range 3 {
					a.Fail(k)
				}
				if !b.Locked(k) {
					t.Fatalf("round %d: B does not see the lock", round)
				}
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							select {
							case <-stop:
								return
							default:
							}
							b.Check(k) // refused while locked; each may refill the cache
						}
					}()
				}
				inv := sb.Stats().CacheInvalidations
				a.Reset(k)
				waitFor(t, "B to receive the invalidation", func() bool { return sb.Stats().CacheInvalidations > inv })
				close(stop)
				wg.Wait()
				if v := b.Check(k); v.Locked {
					t.Fatalf("round %d: B refuses after the reset: %+v", round, v)
				}
			}
			if sb.Stats().RoundTripsSaved == 0 {
				t.Error("B never answered from its cache: the race was not exercised")
			}
		})
	}
}

// A reply that reports a lock, sent before a reset but processed after
// the reset's invalidation reached the store, does not refill the cache.
func TestLocalLocksStaleReply(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) {
			ls, ss := twoServers(t, cluster, axes.Policy{Limit: 3}, Options{Timeout: 5 * time.Second})
			a, b, sb := ls[0], ls[1], ss[1]
			k := axes.Key{IP: netip.MustParseAddr("198.51.100.78")}
			for range 3 {
				a.Fail(k)
			}
			held, release := make(chan struct{}), make(chan struct{})
			sb.near.beforeFill = func() {
				sb.near.beforeFill = nil
				close(held)
				<-release
			}
			done := make(chan axes.Verdict)
			go func() { done <- b.Check(k) }()
			<-held // B holds Redis's reply: locked
			inv := sb.Stats().CacheInvalidations
			a.Reset(k)
			waitFor(t, "B to receive the invalidation", func() bool { return sb.Stats().CacheInvalidations > inv })
			close(release)
			if v := <-done; !v.Locked {
				t.Fatalf("the held reply: %+v, want locked", v)
			}
			if v := b.Check(k); v.Locked {
				t.Fatalf("B refuses after the reset from a reply sent before it: %+v", v)
			}
		})
	}
}

// Under ExtendLockOnRefused every refused attempt must reach Redis to
// count and extend the lock: the cache answers nothing.
func TestLocalLocksNotWithExtend(t *testing.T) {
	p := axes.Policy{Limit: 3, ExtendLockOnRefused: true}
	ls, ss := twoServers(t, false, p, Options{})
	k := axes.Key{IP: netip.MustParseAddr("192.0.2.44")}
	for range 3 {
		ls[0].Fail(k)
	}
	trips := ss[1].Stats().RoundTrips
	for range 10 {
		if !ls[1].Fail(k).Locked || !ls[1].Locked(k) {
			t.Fatal("not locked")
		}
	}
	st := ss[1].Stats()
	if st.RoundTripsSaved != 0 || st.RoundTrips-trips != 20 {
		t.Fatalf("%d saved, %d round trips for 20 decisions; want 0 and 20", st.RoundTripsSaved, st.RoundTrips-trips)
	}
	if v := ls[1].Fail(k); v.Failures != 3+10+1 {
		t.Fatalf("refused attempts were not counted: %+v", v)
	}
}

// Without a lock, or with NoLocalLocks, every decision is a round trip.
func TestNoLocalLocks(t *testing.T) {
	ls, ss := limiters(t, 1, false, axes.Policy{Limit: 3}, Options{NoLocalLocks: true})
	k := axes.Key{IP: netip.MustParseAddr("192.0.2.45")}
	ls[0].Check(axes.Key{IP: netip.MustParseAddr("192.0.2.46")}) // loads the script on a fresh server
	before := ss[0].Stats().RoundTrips
	for range 5 {
		ls[0].Fail(k)
	}
	if st := ss[0].Stats(); st.RoundTripsSaved != 0 || st.RoundTrips-before != 5 {
		t.Fatalf("%d round trips for 5 decisions: %+v", st.RoundTrips-before, st)
	}
	if _, err := New(newClient(t), Options{LocalLocksSize: -1}); err == nil {
		t.Fatal("New accepted a negative LocalLocksSize")
	}
}

// A store whose subscription is lost drops its whole cache, serves
// nothing until it is subscribed again, and then learns the locks anew.
func TestLocalLocksReconnect(t *testing.T) {
	srv := startServer(t, 0)
	c := redis.NewClient(&redis.Options{Addr: srv.addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	s := mustNew(t, c, Options{ProbeInterval: time.Millisecond})
	ready(t, s)
	l, err := axes.New(axes.Policy{Limit: 1}, axes.WithSecret(secret), axes.WithStore(s))
	if err != nil {
		t.Fatal(err)
	}
	k := axes.Key{IP: netip.MustParseAddr("192.0.2.46")}
	l.Fail(k)
	l.Check(k)
	if s.Stats().RoundTripsSaved != 1 {
		t.Fatalf("%+v", s.Stats())
	}
	inv := s.Stats().CacheInvalidations
	if err := c.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cache to be dropped", func() bool { return s.Stats().CacheInvalidations > inv })
	ready(t, s)
	trips := s.Stats().RoundTrips
	if !l.Locked(k) || s.Stats().RoundTrips != trips+1 {
		t.Fatalf("the lock was not asked of Redis after the reconnection: %+v", s.Stats())
	}
	if !l.Locked(k) || s.Stats().RoundTripsSaved != 2 {
		t.Fatalf("the lock was not learned again: %+v", s.Stats())
	}
}

// Which failures the cache may report, by rule: a lock no longer than the
// window keeps its failures to its end; Forever keeps them only when none
// are left or the reply counted the last one.
func TestFailuresKnown(t *testing.T) {
	const m = int64(time.Minute)
	s := &Store{o: Options{UseRequestTime: true}}
	fixed := store.Rule{Limit: 3, Window: 15 * time.Minute, Cooloff: 15 * time.Minute}
	short := fixed
	short.Window = 5 * time.Minute
	forever := fixed
	forever.Cooloff = axes.Indefinite
	jitter := fixed
	jitter.JitterScale = 1.1
	backoff := store.Rule{Limit: 3, Window: 15 * time.Minute, Cooloff: time.Minute, Factor: 2, MaxCooloff: time.Hour}
	const never = int64(1<<63 - 1)
	tests := []struct {
		name string
		r    store.Rule
		o    store.Outcome
		end  int64
		want int64
	}{
		{"fixed, refused", fixed, store.Outcome{Failures: 3, Locked: true}, 100 * m, 100 * m},
		{"window shorter than the lock", short, store.Outcome{Failures: 3, Locked: true}, 100 * m, 90*m - int64(time.Millisecond)},
		{"forever, refused", forever, store.Outcome{Failures: 3, Locked: true}, never, -1 << 63},
		{"forever, counted", forever, store.Outcome{Failures: 3, Locked: true, Counted: true, Started: true}, never, 10*m + 15*m},
		{"forever, forgotten", forever, store.Outcome{Locked: true}, never, never},
		{"jitter: no bound", jitter, store.Outcome{Failures: 3, Locked: true}, 100 * m, -1 << 63},
		{"back-off up to an hour", backoff, store.Outcome{Failures: 3, Locked: true}, 100 * m, 55*m - int64(time.Millisecond)},
		{"timed out reservations leave the last failure unknown", forever, store.Outcome{Failures: 3, Locked: true, Counted: true, TimedOut: 1}, never, -1 << 63},
	}
	for _, tt := range tests {
		if got := s.failuresKnown(&tt.r, &tt.o, 10*m, tt.end); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, time.Duration(got), time.Duration(tt.want))
		}
	}
}

// Under Forever a server that did not see the lock start does not know
// when Redis forgets its failures, and asks Redis until the failures are
// forgotten; the server that counted the last failure answers from its
// cache for a window.
func TestLocalLocksForever(t *testing.T) {
	c := newClient(t)
	o := Options{Prefix: prefix(), UseRequestTime: true}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var at atomic.Int64
	clock := func() time.Time { return now.Add(time.Duration(at.Load())) }
	p := axes.Policy{Limit: 2, Cooloff: axes.Forever, Window: time.Minute}
	var ls [2]*axes.Limiter
	var ss [2]*Store
	for i := range ls {
		ss[i] = mustNew(t, c, o)
		ready(t, ss[i])
		var err error
		if ls[i], err = axes.New(p, axes.WithSecret(secret), axes.WithStore(ss[i]), axes.WithClock(clock)); err != nil {
			t.Fatal(err)
		}
	}
	a, b := ls[0], ls[1]
	k := axes.Key{IP: netip.MustParseAddr("192.0.2.47")}
	a.Fail(k)
	if v := a.Fail(k); !v.Locked || v.RetryAfter != axes.Indefinite {
		t.Fatalf("%+v", v)
	}
	steps := []struct {
		at            time.Duration
		l             *axes.Limiter
		failures      int
		savedA, saveB uint64
	}{
		{0, a, 2, 1, 0},                // A counted the last failure: known for a window
		{0, b, 2, 1, 0},                // B learns the lock with failures it cannot date
		{30 * time.Second, b, 2, 1, 0}, // so B asks Redis again
		{59 * time.Second, a, 2, 2, 0}, // A still knows them
		{time.Minute, a, 0, 2, 0},      // the window ends: A asks Redis, which forgot them
		{time.Minute, b, 0, 2, 0},      // B learns there are none left
		{time.Hour, b, 0, 2, 1},        // and from then on answers from its cache
		{time.Hour, a, 0, 3, 1},
	}
	for i, st := range steps {
		at.Store(int64(st.at))
		v := st.l.Check(k)
		if !v.Locked || v.RetryAfter != axes.Indefinite || v.Failures != st.failures {
			t.Errorf("step %d: %+v, want locked with %d failures", i, v, st.failures)
		}
		if got := [2]uint64{ss[0].Stats().RoundTripsSaved, ss[1].Stats().RoundTripsSaved}; got != [2]uint64{st.savedA, st.saveB} {
			t.Errorf("step %d: saved %v, want %v", i, got, [2]uint64{st.savedA, st.saveB})
		}
	}
}

// An attack: 10 locked clients each knock 1,000 times on one server, as
// refused logins (Fail) and as checks. Every knock after the first of each
// client is answered from the cache.
func TestLocalLocksAttack(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) {
			ls, ss := twoServers(t, cluster, axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.IP, axes.Username}}, Options{})
			keys := make([]axes.Key, 10)
			for i := range keys {
				keys[i] = axes.Key{IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), Username: fmt.Sprintf("user%d", i)}
				for range 3 {
					ls[0].Fail(keys[i])
				}
			}
			before := ss[1].Stats()
			refused := 0
			for n := range 1000 {
				for _, k := range keys {
					var v axes.Verdict
					if n%2 == 0 {
						v = ls[1].Fail(k)
					} else {
						v = ls[1].Check(k)
					}
					if v.Locked {
						refused++
					}
				}
			}
			st := ss[1].Stats()
			trips, saved := st.RoundTrips-before.RoundTrips, st.RoundTripsSaved-before.RoundTripsSaved
			t.Logf("10 locked clients x 1000 knocks: %d refused, %d round trips, %d answered from the cache", refused, trips, saved)
			if refused != 10000 || trips != 10 || saved != 9990 {
				t.Fatalf("refused %d, round trips %d, saved %d; want 10000, 10, 9990", refused, trips, saved)
			}
		})
	}
}

// An invalidation deletes the cache bucket by bucket. A decision whose
// reads overlap one sees some of the attempt's locks and not others; it
// must go to Redis instead of answering with the locks it happened to
// read (here the IP's, which ends sooner than the username's Redis
// reports). And a reply whose request was sent while an invalidation was
// under way does not fill the cache.
func TestLocalLocksInvalidationDuringRead(t *testing.T) {
	c := newClient(t)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var at atomic.Int64
	clock := func() time.Time { return now.Add(time.Duration(at.Load())) }
	s := mustNew(t, c, Options{Prefix: prefix(), UseRequestTime: true})
	ready(t, s)
	p := axes.Policy{Limit: 3, Cooloff: axes.Fixed(15 * time.Minute), LockoutBy: []axes.Fields{axes.IP, axes.Username}}
	l, err := axes.New(p, axes.WithSecret(secret), axes.WithStore(s), axes.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("192.0.2.61")
	for _, u := range []string{"a", "b", "c"} {
		l.Fail(axes.Key{IP: ip, Username: u}) // the IP locks until 15m
	}
	at.Store(int64(time.Minute))
	for _, a := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		l.Fail(axes.Key{IP: netip.MustParseAddr(a), Username: "victim"}) // the username until 16m
	}
	k := axes.Key{IP: ip, Username: "victim"}
	want := axes.Verdict{Locked: true, Failures: 3, Limit: 3, RetryAfter: 15 * time.Minute, By: axes.Username, Reason: axes.ReasonLockout}
	if v := l.Check(k); v != want { // from Redis; fills both locks
		t.Fatalf("Check = %+v, want %+v", v, want)
	}
	saved := s.Stats().RoundTripsSaved
	if v := l.Check(k); v != want || s.Stats().RoundTripsSaved != saved+1 {
		t.Fatalf("Check from the cache = %+v (saved %d → %d), want %+v", v, saved, s.Stats().RoundTripsSaved, want)
	}

	// The IP's lock is read; an invalidation then deletes the username's.
	s.near.afterGet = func(i int) {
		if i == 0 {
			s.near.afterGet = nil
			s.near.invalidate(nil, nil)
		}
	}
	saved = s.Stats().RoundTripsSaved
	if v := l.Check(k); v != want {
		t.Errorf("Check during an invalidation = %+v, want Redis's %+v", v, want)
	}
	if got := s.Stats().RoundTripsSaved; got != saved {
		t.Errorf("the cache answered from reads an invalidation overlapped (%d answers)", got-saved)
	}

	// While an invalidation is under way (begun, not finished), a request
	// sent fills nothing, and nothing is answered from the cache.
	s.near.invalidate(nil, nil)
	s.near.gen.Add(1) // as invalidate does first
	saved = s.Stats().RoundTripsSaved
	if v := l.Check(k); v != want {
		t.Errorf("Check = %+v, want %+v", v, want)
	}
	s.near.done.Add(1) // the invalidation ends
	if v := l.Check(k); v != want || s.Stats().RoundTripsSaved != saved {
		t.Errorf("Check = %+v, %d answered from the cache; want %+v from Redis: no fill under an invalidation", v, s.Stats().RoundTripsSaved-saved, want)
	}
	if v := l.Check(k); v != want || s.Stats().RoundTripsSaved != saved+1 {
		t.Errorf("Check = %+v, want %+v from the cache again", v, want)
	}

	// An invalidation (of nothing cached here) between the two puts of a
	// fill: the second is refused, and the first is taken back, so that
	// the cache does not answer with the IP's lock alone.
	s.near.invalidate(nil, nil)
	s.near.afterPut = func(i int) {
		if i == 0 {
			s.near.afterPut = nil
			s.near.invalidate(func(*nearEntry) bool { return false }, nil)
		}
	}
	if v := l.Check(k); v != want { // from Redis: the fill is cut in two
		t.Errorf("Check = %+v, want %+v", v, want)
	}
	saved = s.Stats().RoundTripsSaved
	if v := l.Check(k); v != want || s.Stats().RoundTripsSaved != saved {
		t.Errorf("Check after a fill cut in two = %+v, %d answered from the cache; want %+v from Redis", v, s.Stats().RoundTripsSaved-saved, want)
	}
}
