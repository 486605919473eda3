package redisstore

import (
	"context"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/redis/go-redis/v9"
)

// pausable is a store on a throwaway server that the test can pause with
// SIGSTOP, and channels that report the store's transitions.
type pausable struct {
	srv                 *server
	c                   *redis.Client
	s                   *Store
	degraded, recovered chan struct{}
}

func newPausable(t *testing.T, mode FailureMode) *pausable {
	t.Helper()
	p := &pausable{srv: startServer(t, 0), degraded: make(chan struct{}, 8), recovered: make(chan struct{}, 8)}
	p.c = redis.NewClient(&redis.Options{Addr: p.srv.addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { p.c.Close() })
	s, err := New(p.c, Options{
		OnFailure:   mode,
		Timeout:     100 * time.Millisecond,
		OnDegraded:  func(error) { p.degraded <- struct{}{} },
		OnRecovered: func() { p.recovered <- struct{}{} },
		Logger:      quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.s = s
	return p
}

// dimensionKeys returns how many dimension keys the server holds.
func (p *pausable) dimensionKeys(t *testing.T) int {
	t.Helper()
	keys, err := p.c.Keys(context.Background(), globEscape(p.s.tag)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// TestOutageLockWrittenBack starts a lock in the local fallback while
// Redis is paused, then resumes Redis: the lock must go on refusing, on
// this server and on any other, until it ends.
func TestOutageLockWrittenBack(t *testing.T) {
	p := newPausable(t, FallbackLocal)
	pol := axes.Policy{Limit: 3, Cooloff: axes.Fixed(time.Hour)}
	l := axes.Must(axes.New(pol, axes.WithSecret(secret), axes.WithStore(p.s)))
	defer l.Close()
	k := axes.Key{IP: netip.MustParseAddr("203.0.113.5")}
	l.Check(k) // loads the script, so that a late EVALSHA would run

	p.srv.signal(syscall.SIGSTOP)
	for i := range 3 {
		v := l.Fail(k)
		if i == 2 && (!v.Locked || v.Reason != axes.ReasonLockout) {
			t.Fatalf("third failure during the outage: %+v, want locked", v)
		}
	}
	wait(t, "degradation", p.degraded)
	p.srv.signal(syscall.SIGCONT)
	wait(t, "recovery", p.recovered)

	for i := range 3 {
		if v := l.Check(k); !v.Locked || v.Reason != axes.ReasonLockout {
			t.Fatalf("check %d after recovery: %+v, want the outage's lock", i, v)
		}
		if v := l.Fail(k); !v.Locked {
			t.Fatalf("guess %d after recovery admitted: %+v", i, v)
		}
	}
	if st := p.s.Stats(); st.OutageLocks != 1 || st.Degraded {
		t.Errorf("stats %+v, want 1 outage lock written back", st)
	}
	// Another server sees the lock in Redis, with about an hour left.
	c2 := redis.NewClient(&redis.Options{Addr: p.srv.addr(), ContextTimeoutEnabled: true})
	defer c2.Close()
	l2 := axes.Must(axes.New(pol, axes.WithSecret(secret), axes.WithStore(mustNew(t, c2, Options{Prefix: "axes:"}))))
	defer l2.Close()
	if v := l2.Check(k); !v.Locked || v.RetryAfter < 59*time.Minute || v.RetryAfter > time.Hour {
		t.Errorf("another server sees %+v, want locked for about an hour", v)
	}
}

// TestLateCallHasNoEffect makes a decision time out on a paused Redis,
// then resumes it: the command Redis then finds in its socket must do
// nothing, since the store gave up on it (and refused the attempt).
func TestLateCallHasNoEffect(t *testing.T) {
	p := newPausable(t, FailClosed)
	pol := axes.Policy{Limit: 1, Cooloff: axes.Fixed(time.Hour)}
	l := axes.Must(axes.New(pol, axes.WithSecret(secret), axes.WithStore(p.s)))
	defer l.Close()
	k := axes.Key{IP: netip.MustParseAddr("203.0.113.6")}
	l.Check(k) // loads the script, so that a late EVALSHA would run

	p.srv.signal(syscall.SIGSTOP)
	a := l.Begin(k)
	if a.Allowed() || a.Verdict().Reason != axes.ReasonUnavailable {
		t.Fatalf("Begin on a paused Redis: %+v, want refused as unavailable", a.Verdict())
	}
	wait(t, "degradation", p.degraded)
	p.srv.signal(syscall.SIGCONT)
	wait(t, "recovery", p.recovered)

	if n := p.dimensionKeys(t); n != 0 {
		t.Errorf("%d dimension keys after the late call, want none", n)
	}
	b := l.Begin(k)
	if !b.Allowed() {
		t.Fatalf("Begin after recovery: %+v, want allowed (no orphan reservation)", b.Verdict())
	}
	b.Succeed()
}

// TestResetDuringOutageStays resets a lock started during an outage before
// Redis returns: the reset must not be undone by the write-back.
func TestResetDuringOutageStays(t *testing.T) {
	p := newPausable(t, FallbackLocal)
	pol := axes.Policy{Limit: 3, Cooloff: axes.Fixed(time.Hour)}
	l := axes.Must(axes.New(pol, axes.WithSecret(secret), axes.WithStore(p.s)))
	defer l.Close()
	k := axes.Key{IP: netip.MustParseAddr("203.0.113.7")}
	l.Check(k)

	p.srv.signal(syscall.SIGSTOP)
	for range 3 {
		l.Fail(k)
	}
	wait(t, "degradation", p.degraded)
	if !l.Locked(k) { // a read of the lock, which must not lose its index keys
		t.Fatal("not locked during the outage")
	}
	l.ResetIP(k.IP) // the local store forgets it; Redis cannot be told
	p.srv.signal(syscall.SIGCONT)
	wait(t, "recovery", p.recovered)
	if v := l.Check(k); v.Locked {
		t.Fatalf("after recovery the reset lock came back: %+v", v)
	}
	if st := p.s.Stats(); st.OutageLocks != 0 {
		t.Errorf("stats %+v, want no outage lock written back", st)
	}
}

// TestHangUpKeepsStoreUp cancels a caller's context before its decision:
// that decision fails alone; the store does not degrade, and the failures
// Redis holds still count for the next attempt.
func TestHangUpKeepsStoreUp(t *testing.T) {
	for _, mode := range []FailureMode{FallbackLocal, FailOpen, FailClosed} {
		t.Run(mode.String(), func(t *testing.T) {
			s := mustNew(t, newClient(t), Options{OnFailure: mode})
			l := axes.Must(axes.New(axes.Policy{Limit: 2}, axes.WithSecret(secret), axes.WithStore(s)))
			defer l.Close()
			k := axes.Key{IP: netip.MustParseAddr("203.0.113.8")}
			l.Fail(k) // one failure in Redis
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // the client hung up
			a := l.BeginContext(ctx, k)
			if a.Allowed() || a.Verdict().Reason != axes.ReasonUnavailable {
				t.Fatalf("Begin with a cancelled context: %+v, want refused as unavailable", a.Verdict())
			}
			if st := s.Stats(); st.Degraded || st.Degradations != 0 {
				t.Fatalf("a hang-up degraded the store: %+v", st)
			}
			if v := l.Fail(k); !v.Locked || v.Failures != 2 {
				t.Errorf("next failure: %+v, want the second failure, locked", v)
			}
		})
	}
}
