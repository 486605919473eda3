package redisstore

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/redis/go-redis/v9"
)

// spreadLimiter returns a limiter on the cluster with SpreadSlots and a
// fake clock the test moves.
func spreadLimiter(t *testing.T, p axes.Policy) (*axes.Limiter, *time.Time) {
	t.Helper()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := mustNew(t, newCluster(t), Options{SpreadSlots: true, UseRequestTime: true, Timeout: 2 * time.Second})
	l := axes.Must(axes.New(p, axes.WithSecret(secret), axes.WithStore(s), axes.WithClock(func() time.Time { return now })))
	t.Cleanup(func() { l.Close() })
	return l, &now
}

// TestSpreadRefusedDoesNotCount checks Apply's rule across slots: an
// attempt refused because one dimension is locked counts in none of the
// others (the second round trip takes the count back), and under
// ExtendLockOnRefused counts in all of them.
func TestSpreadRefusedDoesNotCount(t *testing.T) {
	for _, extend := range []bool{false, true} {
		p := axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.Username, axes.IP}, ExtendLockOnRefused: extend}
		l, _ := spreadLimiter(t, p)
		ip := netip.MustParseAddr("192.0.2.1")
		for i := range 3 {
			l.Fail(axes.Key{IP: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), Username: "bob"})
		}
		// bob is locked; a new IP tries bob.
		v := l.Fail(axes.Key{IP: ip, Username: "bob"})
		if !v.Locked || v.By != axes.Username {
			t.Fatalf("extend=%v: %+v, want locked by username", extend, v)
		}
		got := l.Check(axes.Key{IP: ip, Username: "carol"})
		want := 0
		if extend {
			want = 1
		}
		if got.Failures != want {
			t.Errorf("extend=%v: the IP counted %d failures, want %d", extend, got.Failures, want)
		}
		if extend {
			continue // refused attempts count under extend
		}
		// Begin refused by the lock reserves nothing in the IP dimension.
		for range 5 {
			if a := l.Begin(axes.Key{IP: ip, Username: "bob"}); a.Allowed() {
				t.Fatalf("extend=%v: Begin admitted a locked username", extend)
			}
		}
		for i := range 3 {
			a := l.Begin(axes.Key{IP: ip, Username: "carol"})
			if !a.Allowed() {
				t.Fatalf("extend=%v: attempt %d for another user refused: %+v", extend, i, a.Verdict())
			}
			a.Succeed()
		}
	}
}

// TestSpreadReservationsBound races reservations across slots: per
// dimension atomicity still never admits more than the limit, and a
// lone client gets exactly the limit.
func TestSpreadReservationsBound(t *testing.T) {
	p := axes.Policy{Limit: 5, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}}
	l, _ := spreadLimiter(t, p)
	k := axes.Key{IP: netip.MustParseAddr("192.0.2.9"), Username: "x"}
	for round := range 3 {
		var mu sync.Mutex
		var held []axes.Attempt
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if a := l.Begin(k); a.Allowed() {
					mu.Lock()
					held = append(held, a)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(held) > 5 {
			t.Errorf("round %d: %d admitted, more than the limit", round, len(held))
		}
		for i := range held {
			held[i].Succeed()
		}
		// Sequentially, exactly the limit.
		n := 0
		for range 8 {
			if a := l.Begin(k); a.Allowed() {
				n++
				a.Fail()
			}
		}
		if n != 5 {
			t.Errorf("round %d: %d admitted one at a time, want 5", round, n)
		}
		l.ResetAll()
	}
}

// TestSpreadNoScriptCountsOnce flushes the script from one master between
// two decisions: the pipelined attempt finds it on some nodes and not on
// others, and each dimension must still count exactly once (the commands
// that ran are not run again).
func TestSpreadNoScriptCountsOnce(t *testing.T) {
	c := newCluster(t)
	p := axes.Policy{Limit: 100, LockoutBy: []axes.Fields{axes.IP, axes.Username, axes.IP | axes.Username}}
	l, _ := spreadLimiter(t, p)
	ctx := context.Background()
	for i := range 20 {
		k := axes.Key{IP: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), Username: "user" + strconv.Itoa(i)}
		l.Fail(k)               // loads the script everywhere
		var flushed atomic.Bool // ForEachMaster runs the masters at once
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if flushed.CompareAndSwap(false, true) {
				return m.ScriptFlush(ctx).Err()
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		v := l.Fail(k)
		if v.Failures != 2 {
			t.Fatalf("key %d: %+v after a script flush on one master, want 2 failures in every dimension", i, v)
		}
		if got := l.Check(k).Failures; got != 2 {
			t.Fatalf("key %d: check says %d failures, want 2", i, got)
		}
	}
}
