package axes

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/axes-go/axes/store"
	"time"
)

func init() { countCacheServes = true }

func lockoutKey(lo Lockout) string { return fmt.Sprint(lo.Digest, lo.By) }
func sortLockouts(los []Lockout) []Lockout {
	sort.Slice(los, func(i, j int) bool { return lockoutKey(los[i]) < lockoutKey(los[j]) })
	return los
}
func lcIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}) }
func lcUser(i int) string   { return fmt.Sprint("user", i) }
func lcKey(r *rand.Rand, nip, nuser int) Key {
	return Key{IP: lcIP(r.IntN(nip)), Username: lcUser(r.IntN(nuser))}
}

// TestLockCacheLockstep runs random operations, keys, clock moves and
// policies on a limiter with the lock cache and on one without it, and
// compares every verdict, the events, the counters and the lockouts.
func TestLockCacheLockstep(t *testing.T) {
	for _, pc := range lockstepPolicies() {
		t.Run(pc.name, func(t *testing.T) {
			served := int64(0)
			for seed := range uint64(6) {
				served += lockstep(t, pc.p, seed)
			}
			if served == 0 && !pc.p.ObserveOnly {
				t.Error("the lock cache served nothing")
			}
		})
	}
}

// lockstepPolicies are the policies of the lockstep tests.
func lockstepPolicies() []struct {
	name string
	p    Policy
} {
	return []struct {
		name string
		p    Policy
	}{
		{"fixed", Policy{Limit: 3, Cooloff: Fixed(10 * time.Minute), Window: 5 * time.Minute}},
		{"forever", Policy{Limit: 3, Cooloff: Forever, Window: 5 * time.Minute}},
		{"forever-long-window", Policy{Limit: 2, Cooloff: Forever, Window: time.Hour}},
		{"tiers", Policy{Limit: 2, Cooloff: Tiers{{Failures: 2, Cooloff: 5 * time.Minute}, {Failures: 4, Cooloff: time.Hour}, {Failures: 6, Cooloff: Indefinite}}, Window: 2 * time.Hour}},
		{"backoff", Policy{Limit: 2, Cooloff: Backoff{Base: time.Minute, Factor: 3, Max: time.Hour, Decay: 2 * time.Hour}, Window: 10 * time.Minute}},
		{"extend", Policy{Limit: 3, Cooloff: Fixed(10 * time.Minute), Window: 20 * time.Minute, ExtendLockOnRefused: true}},
		{"observe", Policy{Limit: 2, ObserveOnly: true, Window: 10 * time.Minute}},
		{"challenge", Policy{Limit: 4, ChallengeAt: 2, Cooloff: Fixed(10 * time.Minute), Window: 30 * time.Minute}},
		{"two-dims-reset-on-success", Policy{Limit: 3, LockoutBy: []Fields{IP, IP | Username}, Cooloff: Fixed(5 * time.Minute), Window: 10 * time.Minute, ResetOnSuccess: true}},
		{"limit-func", Policy{Limit: 3, LimitFunc: func(k Key) int { return 2 + len(k.Username)%3 }, Cooloff: Fixed(7 * time.Minute), Window: 5 * time.Minute}},
	}
}

func lockstep(t *testing.T, p Policy, seed uint64) int64 {
	t.Helper()
	return lockstepEvents(t, p, seed, true)
}

// lockstepEvents is lockstep, with the limiters' events compared when
// events is set and no OnEvent otherwise (the lean paths of a limiter
// without events).
func lockstepEvents(t *testing.T, p Policy, seed uint64, events bool) int64 {
	t.Helper()
	clock := &fakeClock{}
	var evs [2][]Event
	mk := func(i int) *Limiter {
		q := p
		if events {
			q.OnEvent = func(e Event) {
				e.Count = 0 // how many entries a reset found depends on sweeps
				evs[i] = append(evs[i], e)
			}
		}
		return Must(New(q, WithClock(clock.Now), WithMaxEntries(512), WithSecret([]byte("0123456789abcdef0123456789abcdef"))))
	}
	a, b := mk(0), mk(1)
	b.mem.noLockCache = true
	// Which expired entries the incremental sweep finds first depends on
	// the count of writes, and refusals answered from the cache are not
	// writes; a swept entry's timed-out reservations are not counted.
	a.mem.noSweepStep, b.mem.noSweepStep = true, true
	r := rand.New(rand.NewPCG(seed, 7))
	type pend struct {
		a, b  Attempt
		begun time.Time
	}
	var pending []pend
	for step := range 4000 {
		k := lcKey(r, 6, 6)
		what := ""
		var va, vb any
		switch op := r.IntN(100); {
		case op < 30:
			what, va, vb = "Fail", a.Fail(k), b.Fail(k)
		case op < 34:
			what, va, vb = "FailPassed", a.FailPassed(k), b.FailPassed(k)
		case op < 50:
			what, va, vb = "Locked", a.Locked(k), b.Locked(k)
		case op < 60:
			what, va, vb = "Check", a.Check(k), b.Check(k)
		case op < 68:
			x, y := a.Begin(k), b.Begin(k)
			what, va, vb = "Begin", x.Verdict(), y.Verdict()
			if x.Allowed() {
				pending = append(pending, pend{x, y, clock.Now()})
			}
		case op < 76:
			if len(pending) > 0 {
				i := r.IntN(len(pending))
				pa := pending[i]
				pending = append(pending[:i], pending[i+1:]...)
				if clock.Now().Sub(pa.begun) > 2*time.Minute {
					break // its entry may have been forgotten and made anew (see apply)
				}
				switch r.IntN(3) {
				case 0:
					what, va, vb = "Settle", pa.a.Fail(), pa.b.Fail()
				case 1:
					pa.a.Succeed()
					pa.b.Succeed()
				default:
					pa.a.Cancel()
					pa.b.Cancel()
				}
			}
		case op < 79:
			a.Success(k)
			b.Success(k)
		case op < 81:
			a.Reset(k)
			b.Reset(k)
			pending = nil
		case op < 82:
			a.ResetIP(k.IP)
			b.ResetIP(k.IP)
			pending = nil
		case op < 83:
			a.ResetUsername(k.Username)
			b.ResetUsername(k.Username)
			pending = nil
		case op < 84:
			if r.IntN(4) == 0 {
				a.ResetAll()
				b.ResetAll()
				pending = nil
			}
		case op < 96:
			clockAdd(clock, time.Duration(r.IntN(90))*time.Second)
		case op < 98:
			clockAdd(clock, time.Duration(r.IntN(120))*time.Minute)
		default:
			clockAdd(clock, -time.Duration(r.IntN(20))*time.Second) // a clock stepping back a little
		}
		if !reflect.DeepEqual(va, vb) {
			t.Fatalf("seed %d step %d: %s(%v): with the cache %+v, without %+v", seed, step, what, k, va, vb)
		}
		if !reflect.DeepEqual(evs[0], evs[1]) {
			t.Fatalf("seed %d step %d: %s(%v): events differ:\n%+v\n%+v", seed, step, what, k, evs[0], evs[1])
		}
		evs[0], evs[1] = evs[0][:0], evs[1][:0]
		sa, sb := a.Stats(), b.Stats()
		if sa.Failures != sb.Failures || sa.Lockouts != sb.Lockouts || sa.Refused != sb.Refused || sa.Successes != sb.Successes || sa.Resets != sb.Resets {
			t.Fatalf("seed %d step %d: %s: stats differ: %+v, %+v", seed, step, what, sa, sb)
		}
		if step%50 == 0 {
			la, lb := sortLockouts(a.Lockouts()), sortLockouts(b.Lockouts())
			if !reflect.DeepEqual(la, lb) {
				t.Fatalf("seed %d step %d: lockouts differ:\n%+v\n%+v", seed, step, la, lb)
			}
		}
	}
	if b.mem.cacheServes.Load() != 0 {
		t.Errorf("seed %d: the limiter without the cache served from it", seed)
	}
	return a.mem.cacheServes.Load()
}

// TestLockCacheNeverMissesALock races Fail calls that start locks against
// Locked readers: once the Fail that locks a key has returned, no reader
// may answer that the key is not locked.
func TestLockCacheNeverMissesALock(t *testing.T) {
	clock := &fakeClock{}
	l := Must(New(Policy{Limit: 2, Cooloff: Fixed(time.Hour)}, WithClock(clock.Now)))
	const keys = 2000
	var lockedAt [keys]atomic.Bool // set once the locking Fail returned
	var wg sync.WaitGroup
	var bad atomic.Int64
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := r.IntN(keys)
				// Read the flag first: if it was set, the lock had started
				// before this Locked began.
				was := lockedAt[i].Load()
				if !l.Locked(Key{IP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}) && was {
					bad.Add(1)
				}
			}
		}()
	}
	for i := range keys {
		k := Key{IP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}
		l.Fail(k)
		if !l.Fail(k).Locked {
			t.Fatalf("key %d did not lock", i)
		}
		lockedAt[i].Store(true)
		if !l.Locked(k) {
			t.Fatalf("key %d: Locked false right after the locking Fail", i)
		}
	}
	close(stop)
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d Locked calls answered not locked after the lock had started", n)
	}
	if l.mem.cacheServes.Load() == 0 {
		t.Fatal("the lock cache served nothing")
	}
}

// TestLockCacheResets checks that every kind of reset takes effect on the
// cached answer at once.
func TestLockCacheResets(t *testing.T) {
	clock := &fakeClock{}
	l := Must(New(Policy{Limit: 1, Cooloff: Forever, LockoutBy: []Fields{IP, Username}}, WithClock(clock.Now)))
	k := Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice"}
	// Another lock in the same counters of the filter of locked digests,
	// so that the filter cannot answer "not locked" for k by itself.
	var dims [8]store.Dim
	for i := range l.digestsOf(&k, &dims) {
		l.mem.filter[l.mem.filterIndex(dims[i].Digest)].Add(1)
	}
	lock := func() {
		t.Helper()
		l.Fail(k)
		for range 3 {
			if !l.Locked(k) || !l.Check(k).Locked || !l.Fail(k).Locked {
				t.Fatal("not locked")
			}
		}
		if l.mem.cacheServes.Load() == 0 {
			t.Fatal("the lock cache served nothing")
		}
	}
	for _, reset := range []struct {
		name string
		f    func()
	}{
		{"Reset", func() { l.Reset(k) }},
		{"ResetAll", func() { l.ResetAll() }},
		{"ResetClient", func() { l.ResetClient(k.IP, k.Username) }},
		{"ResetIP+ResetUsername", func() { l.ResetIP(k.IP); l.ResetUsername(k.Username) }},
		{"ResetLockout", func() {
			for _, lo := range l.Lockouts() {
				l.ResetLockout(lo)
			}
		}},
	} {
		lock()
		reset.f()
		if l.Locked(k) || l.Check(k).Locked {
			t.Fatalf("%s: still locked", reset.name)
		}
		if v := l.Fail(k); !v.Locked || v.Failures != 1 {
			t.Fatalf("%s: the first failure after the reset: %+v", reset.name, v)
		}
		l.Reset(k)
	}
}

// TestLockCacheForeverWindow: under Forever a lock has no end but its
// failures are forgotten after the window; the cached answer follows.
func TestLockCacheForeverWindow(t *testing.T) {
	clock := &fakeClock{}
	l := Must(New(Policy{Limit: 2, Cooloff: Forever, Window: time.Minute}, WithClock(clock.Now)))
	k := Key{IP: netip.MustParseAddr("192.0.2.1")}
	l.Fail(k)
	l.Fail(k)
	if v := l.Check(k); !v.Locked || v.Failures != 2 {
		t.Fatalf("%+v", v)
	}
	clockAdd(clock, time.Minute+time.Second)
	for range 3 {
		if v := l.Check(k); !v.Locked || v.Failures != 0 || v.RetryAfter != Indefinite {
			t.Fatalf("after the window: %+v", v)
		}
	}
}

func clockAdd(c *fakeClock, d time.Duration) { c.now.Add(int64(d)) }

// A lock that holds no identity (the identity budget spent) is refused
// from the cache to a Check, where the identity plays no part, so that the
// locked clients of a large attack are not all sent to the shard's mutex;
// a refused Fail on it goes to the store, which records the identity once
// the budget allows, as it would without the cache.
func TestLockCacheAnonymousLock(t *testing.T) {
	clock := &fakeClock{}
	l := Must(New(Policy{Limit: 2, Cooloff: Fixed(time.Hour)}, WithClock(clock.Now), WithMaxEntries(256)))
	ua := string(make([]byte, MaxIdentityBytes))
	key := func(i int) Key {
		return Key{IP: netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), Username: lcUser(i), UserAgent: ua}
	}
	anon := -1
	for i := range 200 {
		l.Fail(key(i))
		l.Fail(key(i))
		if l.mem.idBytes.Load()+int64(identityCost(packIdentity(&store.Identity{UserAgent: ua}))) > int64(l.mem.idBudget) && anon < 0 {
			anon = i + 1 // the budget cannot take another identity
		}
	}
	if anon < 0 || anon >= 200 {
		t.Fatalf("the identity budget was not spent (anon = %d)", anon)
	}
	k := key(anon)
	if !l.Locked(k) {
		t.Fatal("not locked")
	}
	served := l.mem.cacheServes.Load()
	want := l.Check(k)
	if !want.Locked || l.mem.cacheServes.Load() != served+1 {
		t.Fatalf("Check of a lock without identity: %+v, served from the cache %d times; want locked, once", want, l.mem.cacheServes.Load()-served)
	}
	if !l.Locked(k) || l.mem.cacheServes.Load() != served+2 {
		t.Fatal("Locked of a lock without identity was not answered from the cache")
	}
	if v := l.Fail(k); !v.Locked || l.mem.cacheServes.Load() != served+2 {
		t.Fatalf("refused Fail on a lock without identity: %+v, served from the cache: %v", v, l.mem.cacheServes.Load() != served+2)
	}
	if n := len(l.Lockouts()); n != 200 {
		t.Fatalf("%d lockouts, want 200", n)
	}
}
