package redisstore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/redis/go-redis/v9"
)

// startServerWith starts a throwaway redis-server with extra arguments.
func startServerWith(t *testing.T, args ...string) *server {
	t.Helper()
	srv := startServer(t, 0)
	c := redis.NewClient(&redis.Options{Addr: srv.addr(), ContextTimeoutEnabled: true})
	defer c.Close()
	for i := 0; i+1 < len(args); i += 2 {
		if err := c.ConfigSet(context.Background(), args[i], args[i+1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

// TestEvictingPolicies checks that New refuses, or warns about, every
// maxmemory-policy that may evict: every axes key has a TTL, so volatile-*
// evicts lockout keys as allkeys-* does.
func TestEvictingPolicies(t *testing.T) {
	srv := startServerWith(t)
	c := redis.NewClient(&redis.Options{Addr: srv.addr(), ContextTimeoutEnabled: true})
	defer c.Close()
	ctx := context.Background()
	for _, p := range []string{"volatile-lru", "volatile-ttl", "volatile-lfu", "volatile-random", "allkeys-lru", "allkeys-lfu", "allkeys-random", "noeviction"} {
		if err := c.ConfigSet(ctx, "maxmemory-policy", p).Err(); err != nil {
			t.Fatal(err)
		}
		_, err := New(c, Options{RefuseEvictingPolicy: true, Logger: quiet})
		if p == "noeviction" {
			if err != nil {
				t.Errorf("%s refused: %v", p, err)
			}
		} else if !errors.Is(err, errEvicting) || !strings.HasPrefix(err.Error(), "redisstore:") {
			t.Errorf("%s with RefuseEvictingPolicy: %v, want a refusal", p, err)
		}
		var log bytes.Buffer
		s, err := New(c, Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Errorf("%s without RefuseEvictingPolicy: %v", p, err)
			continue
		}
		s.Close()
		warned := strings.Contains(log.String(), "maxmemory-policy")
		if warned != (p != "noeviction") {
			t.Errorf("%s: warned %v; log %q", p, warned, log.String())
		}
	}
}

// info returns a field of INFO memory.
func info(t *testing.T, c *redis.Client, field string) int64 {
	t.Helper()
	s, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in INFO", field)
	return 0
}

// TestSprayWithinBudget sprays distinct keys at a Redis with a small
// maxmemory and noeviction. The store keeps its footprint within MaxKeys,
// so no decision meets an out-of-memory error (FailClosed would refuse
// it), the locks made before the spray stay locked, and a key first seen
// during the spray, kept in the sketch, still gets at most Limit guesses.
func TestSprayWithinBudget(t *testing.T) {
	const maxmemory = 4 << 20
	srv := startServerWith(t, "maxmemory", strconv.Itoa(maxmemory), "maxmemory-policy", "noeviction")
	c := redis.NewClient(&redis.Options{Addr: srv.addr(), ContextTimeoutEnabled: true})
	defer c.Close()
	base := info(t, c, "used_memory")
	s, err := New(c, Options{OnFailure: FailClosed, Timeout: 5 * time.Second, MaxKeys: 4000, SketchWidth: 4096, RefuseEvictingPolicy: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	p := axes.Policy{Limit: 3, Cooloff: axes.Fixed(time.Hour), LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}}
	l := axes.Must(axes.New(p, axes.WithSecret(secret), axes.WithStore(s)))
	defer l.Close()
	key := func(set, i int) axes.Key {
		return axes.Key{IP: netip.AddrFrom4([4]byte{byte(10 + set), byte(i >> 16), byte(i >> 8), byte(i)}), Username: "user" + strconv.Itoa(i)}
	}
	const locks = 100
	for i := range locks {
		for range 3 {
			l.Fail(key(0, i))
		}
		if v := l.Check(key(0, i)); !v.Locked {
			t.Fatalf("lock %d before the spray: %+v", i, v)
		}
	}

	const spray = 12000
	var unavailable atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > spray {
					return
				}
				if v := l.Fail(key(1, i)); v.Reason == axes.ReasonUnavailable {
					unavailable.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	used := info(t, c, "used_memory")
	st := s.Stats()
	t.Logf("%d keys sprayed (%d dimensions): used_memory %d KiB of maxmemory %d KiB (%d KiB before), %d dimension decisions in the sketch",
		spray, 2*spray, used>>10, maxmemory>>10, base>>10, st.Sketched)
	if n := unavailable.Load(); n != 0 || st.Errors != 0 {
		t.Errorf("%d decisions refused as unavailable, %d store errors, during the spray", n, st.Errors)
	}
	if st.Sketched == 0 {
		t.Error("the spray never reached the budget")
	}
	kept := 0
	for i := range locks {
		v := l.Check(key(0, i))
		if v.Locked && v.Reason == axes.ReasonLockout {
			kept++
		}
	}
	t.Logf("%d of %d locks made before the spray kept", kept, locks)
	if kept != locks {
		t.Errorf("%d of %d locks kept after the spray", kept, locks)
	}
	// A key first seen now: at most Limit guesses, by Fail and by Begin.
	guesses := 0
	for range 10 {
		if v := l.Check(key(2, 1)); v.Locked {
			break
		}
		guesses++
		if v := l.Fail(key(2, 1)); v.Reason == axes.ReasonUnavailable {
			t.Fatalf("fresh key refused as unavailable: %+v", v)
		}
	}
	admitted := 0
	for range 10 {
		a := l.Begin(key(2, 2))
		if a.Allowed() {
			admitted++
			a.Fail()
		} else if a.Verdict().Reason == axes.ReasonUnavailable {
			t.Fatalf("fresh key refused as unavailable: %+v", a.Verdict())
		}
	}
	if guesses > p.Limit || admitted > p.Limit {
		t.Errorf("a fresh key got %d guesses by Fail and %d by Begin, more than the limit %d", guesses, admitted, p.Limit)
	}
	if st := s.Stats(); st.Errors != 0 {
		t.Errorf("store errors %+v", st)
	}
	if used := info(t, c, "used_memory"); used >= maxmemory {
		t.Errorf("used_memory %d reached maxmemory %d", used, maxmemory)
	}
}
