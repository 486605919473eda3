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
	"github.com/axes-go/axes/store"
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

// TestSketchRule runs the rule on dimensions that all live in the sketch
// (a budget too small for any key), in both layouts: with a wide sketch
// and a handful of keys the cells do not meet, so the answers are the
// exact store's.
func TestSketchRule(t *testing.T) {
	for _, tc := range []struct {
		name   string
		c      func(t *testing.T) redis.UniversalClient
		spread bool
	}{
		{"standalone", func(t *testing.T) redis.UniversalClient { return newClient(t) }, false},
		{"cluster", func(t *testing.T) redis.UniversalClient { return newCluster(t) }, false},
		{"cluster-spread", func(t *testing.T) redis.UniversalClient { return newCluster(t) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			s := mustNew(t, tc.c(t), Options{MaxKeys: 1, SketchWidth: 1 << 16, SpreadSlots: tc.spread, UseRequestTime: true, Timeout: 5 * time.Second})
			p := axes.Policy{Limit: 3, Cooloff: axes.Fixed(time.Hour), LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}}
			l := axes.Must(axes.New(p, axes.WithSecret(secret), axes.WithStore(s), axes.WithClock(func() time.Time { return now })))
			defer l.Close()
			k := func(i byte) axes.Key { return axes.Key{IP: netip.AddrFrom4([4]byte{192, 0, 2, i}), Username: "u"} }

			// Fail: the limit-th failure locks, for the cooloff.
			for i := 1; i <= 3; i++ {
				v := l.Fail(k(1))
				if v.Failures != i || v.Locked != (i == 3) {
					t.Fatalf("failure %d: %+v", i, v)
				}
			}
			if v := l.Check(k(1)); !v.Locked || v.RetryAfter != time.Hour {
				t.Fatalf("locked key: %+v", v)
			}
			now = now.Add(time.Hour)
			if v := l.Check(k(1)); v.Locked {
				t.Fatalf("after the cooloff: %+v", v)
			}

			// Reservations: Limit in flight, a success gives one back, a
			// settled failure counts.
			var held []axes.Attempt
			for range 3 {
				a := l.Begin(k(2))
				if !a.Allowed() {
					t.Fatalf("reservation %d refused: %+v", len(held), a.Verdict())
				}
				held = append(held, a)
			}
			if a := l.Begin(k(2)); a.Allowed() || a.Verdict().Reason != axes.ReasonBusy {
				t.Fatalf("a fourth reservation: %+v, want busy", a.Verdict())
			}
			held[0].Succeed()
			a := l.Begin(k(2))
			if !a.Allowed() {
				t.Fatalf("reservation after a success refused: %+v", a.Verdict())
			}
			held[0] = a
			for i, a := range held {
				v := a.Fail()
				if v.Locked != (i == 2) {
					t.Fatalf("settled failure %d: %+v", i, v)
				}
			}
			if v := l.Check(k(2)); !v.Locked || v.Failures != 3 {
				t.Fatalf("after 3 settled failures: %+v", v)
			}

			// Forgetting: failures older than the window are gone.
			l.Fail(k(3))
			l.Fail(k(3))
			now = now.Add(time.Hour)
			if v := l.Check(k(3)); v.Failures != 0 {
				t.Fatalf("after the window: %+v", v)
			}
			if st := s.Stats(); st.Sketched == 0 || st.Errors != 0 {
				t.Errorf("stats %+v, want sketched dimensions and no errors", st)
			}
		})
	}
}

// TestBudgetCount checks the footprint count against the keys a mixed
// workload leaves: every dimension key counts one, every index set one
// plus one per member, and resets give their units back.
func TestBudgetCount(t *testing.T) {
	c := newClient(t)
	o := Options{Prefix: prefix(), Timeout: 5 * time.Second}
	s := mustNew(t, c, o)
	p := axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.IP, axes.Username, axes.IP | axes.Username}, ResetOnSuccess: true}
	l := axes.Must(axes.New(p, axes.WithSecret(secret), axes.WithStore(s)))
	defer l.Close()
	for i := range 60 {
		k := axes.Key{IP: netip.AddrFrom4([4]byte{10, 9, 0, byte(i % 7)}), Username: "u" + strconv.Itoa(i%5)}
		switch i % 4 {
		case 0:
			a := l.Begin(k)
			a.Fail()
		case 1:
			a := l.Begin(k)
			a.Succeed()
		case 2:
			l.Fail(k)
		case 3:
			l.Begin(k)
		}
	}
	l.ResetUsername("u1")
	l.ResetIP(netip.AddrFrom4([4]byte{10, 9, 0, 2}))
	ctx := context.Background()
	keys, err := c.Keys(ctx, globEscape(o.Prefix)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, s.tag):
			want++
		case strings.HasPrefix(k, s.root+"i:"), strings.HasPrefix(k, s.root+"u:"):
			want += 1 + int(c.SCard(ctx, k).Val())
		}
	}
	bk := s.budgetKeys(axes.Digest{})
	got, _ := c.HGet(ctx, bk[0], "n").Int()
	if got != want || want < 10 {
		t.Errorf("budget counts %d units, the keys hold %d", got, want)
	}
}

// columns returns d's sketch column in each of the 4 rows: the bits of the
// digest that the script reads from the key's last 32 characters (cellOff
// in script.lua).
func columns(d axes.Digest, width int) [4]uint64 {
	w := uint64(width)
	return [4]uint64{
		(d.Lo & 0xffffffff) % w,
		(d.Lo >> 32) % w,
		(d.Hi & 0xffffffff) % w,
		((d.Hi >> 32) & 0xffffff) % w,
	}
}

// TestSketchColumns checks where the script puts a dimension in the
// sketch: in each row, at the column its digest gives (columns), for
// digests whose every part is non-zero, and in both layouts (under
// SpreadSlots the key carries a shard tag before the digest).
func TestSketchColumns(t *testing.T) {
	for _, spread := range []bool{false, true} {
		t.Run(map[bool]string{false: "one-slot", true: "spread"}[spread], func(t *testing.T) {
			var c redis.UniversalClient
			if spread {
				c = newCluster(t)
			} else {
				c = newClient(t)
			}
			const width = 3000 // not a power of two: every bit of a column counts
			s := mustNew(t, c, Options{MaxKeys: 1, SketchWidth: width, SpreadSlots: spread, UseRequestTime: true, Timeout: 5 * time.Second})
			ctx := context.Background()
			rule := &store.Rule{Limit: 5, Window: time.Hour, Cooloff: time.Hour}
			fail := func(d axes.Digest) *store.Request {
				return &store.Request{Op: store.OpFail, Now: time.UnixMilli(1_700_000_000_000), Rule: rule,
					Dims: []store.Dim{{Fields: axes.IP, Digest: d}}}
			}
			for i, d := range []axes.Digest{{Hi: 0xfedc_ba98_7654_3210, Lo: 0x0123_4567_89ab_cdef}, {Hi: 0x00ab_cdef_0000_0fff, Lo: 0xffff_ffff_0000_0001}} {
				// The budget takes one key (the first failure of each
				// test's filler); d goes to the sketch.
				if err := s.apply(ctx, fail(axes.Digest{Hi: uint64(i) + 1, Lo: 77})); err != nil {
					t.Fatal(err)
				}
				req := fail(d)
				if err := s.apply(ctx, req); err != nil {
					t.Fatal(err)
				}
				if !req.Dims[0].Outcome.Counted {
					t.Fatalf("digest %v: not counted: %+v", d, req.Dims[0].Outcome)
				}
				sk := s.budgetKeys(d)[2]
				// (Under SpreadSlots each shard's sketch is SketchWidth/256 wide.)
				col := columns(d, s.width)
				for r := range 4 {
					off := (r*s.width + int(col[r])) * 192
					v, err := c.BitField(ctx, sk, "GET", "u16", off).Result()
					if err != nil {
						t.Fatal(err)
					}
					if len(v) != 1 || v[0] != 1 {
						t.Errorf("digest %v row %d: the cell at column %d holds %v failures, want 1", d, r+1, col[r], v)
					}
				}
			}
			if st := s.Stats(); st.Sketched < 2 {
				t.Errorf("stats %+v: want the digests in the sketch", st)
			}
		})
	}
}
