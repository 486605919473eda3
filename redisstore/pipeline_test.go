package redisstore

import (
	"context"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// batchFixture is a store on a throwaway server, with the script loaded,
// and a limiter on it.
func batchFixture(t *testing.T) (*server, *redis.Client, *Store, *axes.Limiter) {
	t.Helper()
	srv := startServer(t, 0)
	c := redis.NewClient(&redis.Options{Addr: srv.addr(), ContextTimeoutEnabled: true, PoolSize: 16})
	t.Cleanup(func() { c.Close() })
	s, err := New(c, Options{NoLocalLocks: true, Timeout: 30 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	l := axes.Must(axes.New(axes.Policy{Limit: 100}, axes.WithSecret(secret), axes.WithStore(s)))
	t.Cleanup(func() { l.Close() })
	l.Fail(axes.Key{IP: netip.MustParseAddr("192.0.2.1")}) // loads the script
	return srv, c, s, l
}

// until polls the store's batcher until cond holds.
func until(t *testing.T, s *Store, what string, cond func(b *batcher) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s.batch.mu.Lock()
		ok := cond(&s.batch)
		s.batch.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime_Gosched()
	}
}

func batchKey(i int) axes.Key { return axes.Key{IP: netip.AddrFrom4([4]byte{10, 7, 0, byte(i)})} }

// TestBatchSharesRoundTrip holds Redis while two decisions are in flight,
// queues ten more, and checks that the ten leave in one round trip and
// each counts once.
func TestBatchSharesRoundTrip(t *testing.T) {
	srv, _, s, l := batchFixture(t)
	trips := s.Stats().RoundTrips
	srv.signal(syscall.SIGSTOP)
	done := make(chan struct{}, 12)
	for i := range 12 {
		go func() {
			l.Fail(batchKey(i))
			done <- struct{}{}
		}()
		if i == 1 {
			until(t, s, "two decisions in flight", func(b *batcher) bool { return b.flights == maxFlights })
		}
	}
	until(t, s, "ten decisions queued", func(b *batcher) bool { return len(b.queue) == 10 })
	srv.signal(syscall.SIGCONT)
	for range 12 {
		wait(t, "a decision", done)
	}
	if got := s.Stats().RoundTrips - trips; got != 3 {
		t.Errorf("12 decisions took %d round trips, want 3 (two alone, then ten together)", got)
	}
	for i := range 12 {
		if v := l.Check(batchKey(i)); v.Failures != 1 {
			t.Errorf("key %d: %d failures, want 1", i, v.Failures)
		}
	}
	until(t, s, "the flights to end", func(b *batcher) bool { return b.flights == 0 && len(b.queue) == 0 })
}

// TestBatchCallerGivesUp cancels a decision while it waits for a round
// trip: it returns at once, while Redis is still held, and its call is
// never sent.
func TestBatchCallerGivesUp(t *testing.T) {
	srv, _, s, l := batchFixture(t)
	srv.signal(syscall.SIGSTOP)
	done := make(chan struct{}, 3)
	for i := range 2 {
		go func() {
			l.Fail(batchKey(i))
			done <- struct{}{}
		}()
	}
	until(t, s, "two decisions in flight", func(b *batcher) bool { return b.flights == maxFlights })
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan struct{})
	go func() {
		l.FailContext(ctx, batchKey(2))
		close(gaveUp)
	}()
	until(t, s, "a decision queued", func(b *batcher) bool { return len(b.queue) == 1 })
	cancel()
	wait(t, "the cancelled decision", gaveUp)
	s.batch.mu.Lock()
	flights := s.batch.flights
	s.batch.mu.Unlock()
	if flights != maxFlights {
		t.Errorf("the cancelled decision returned after the round trips ahead of it ended")
	}
	srv.signal(syscall.SIGCONT)
	for range 2 {
		wait(t, "a decision", done)
	}
	until(t, s, "the flights to end", func(b *batcher) bool { return b.flights == 0 && len(b.queue) == 0 })
	if v := l.Check(batchKey(2)); v.Failures != 0 {
		t.Errorf("the cancelled decision counted %d failures, want 0 (never sent)", v.Failures)
	}
	if v := l.Check(batchKey(0)); v.Failures != 1 {
		t.Errorf("a decision in flight counted %d failures, want 1", v.Failures)
	}
}

// TestBatchReloadsScript sends a batch to a server that lost its scripts:
// the batch's decisions, merged into one script call, run once. As a
// function, the library is loaded again, then the call runs again; by
// EVALSHA, the call runs again with EVAL (which loads the script).
func TestBatchReloadsScript(t *testing.T) {
	for _, fn := range []bool{true, false} {
		t.Run(map[bool]string{true: "function", false: "evalsha"}[fn], func(t *testing.T) {
			_, c, s, _ := batchFixture(t)
			ctx := context.Background()
			if !s.fn.Load() {
				t.Fatal("the store does not run its script as a function on Redis 7")
			}
			s.fn.Store(fn)
			var err error
			if fn {
				err = c.FunctionFlush(ctx).Err()
			} else {
				err = c.ScriptFlush(ctx).Err()
			}
			if err != nil {
				t.Fatal(err)
			}
			rule := &store.Rule{Limit: 100, Window: time.Hour, Cooloff: time.Minute, ReserveTimeout: time.Minute}
			reqs := make([]*store.Request, 5)
			batch := make([]*call, len(reqs))
			for i := range reqs {
				reqs[i] = &store.Request{Op: store.OpFail, Now: time.Now(), Rule: rule,
					Dims: []store.Dim{{Fields: axes.IP, Digest: axes.Digest{Hi: uint64(i) + 1, Lo: 7}}}}
				batch[i] = &call{ctx: ctx, cmd: redis.NewCmd(ctx, s.applyCommand(ctx, reqs[i])...)}
			}
			if err := c.ConfigResetStat(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			trips := s.Stats().RoundTrips
			s.exec(batch)
			want, stats := uint64(2), []string{"cmdstat_eval:calls=1,", "cmdstat_evalsha:calls=1,"}
			if fn {
				want, stats = 3, []string{"cmdstat_function|load:calls=1,", "cmdstat_fcall:calls=2,"}
			}
			if got := s.Stats().RoundTrips - trips; got != want {
				t.Errorf("%d round trips, want %d (the batch, the load, the batch again)", got, want)
			}
			// The script's source crossed the network once, not once per
			// call: a batch reloaded after a failover must not carry 256
			// copies of it.
			info, err := c.Info(ctx, "commandstats").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range stats {
				if !strings.Contains(info, st) {
					t.Errorf("commandstats lack %s:\n%s", st, info)
				}
			}
			for i, b := range batch {
				if err := b.cmd.Err(); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if _, err := parseReply(reqs[i].Op, b.cmd.Val(), reqs[i].Dims, nil); err != nil {
					t.Fatal(err)
				}
				if f := reqs[i].Dims[0].Outcome.Failures; f != 1 {
					t.Errorf("call %d: %d failures, want 1", i, f)
				}
			}
		})
	}
}

// TestBatchMergedDecisions runs, in one merged script call, six failures
// on one key under Limit 3, the third of which arrives past its deadline:
// the others apply in order, each with its own reply (the fourth counted
// starts the lock, the last is refused), and the late one alone fails
// with AXESLATE, taking no effect.
func TestBatchMergedDecisions(t *testing.T) {
	_, c, s, _ := batchFixture(t)
	ctx := context.Background()
	rule := &store.Rule{Limit: 3, Window: time.Hour, Cooloff: time.Minute}
	const n = 6
	reqs := make([]*store.Request, n)
	batch := make([]*call, n)
	for i := range reqs {
		reqs[i] = &store.Request{Op: store.OpFail, Now: time.Now(), Rule: rule,
			Dims: []store.Dim{{Fields: axes.IP, Digest: axes.Digest{Hi: 42, Lo: 7}}}}
		args := s.applyCommand(ctx, reqs[i])
		if i == 2 {
			// The deadline, in the decision's packed argument (the
			// call's last).
			putNum(args[len(args)-1].([]byte), numDeadline, 1)
		}
		batch[i] = &call{ctx: ctx, cmd: redis.NewCmd(ctx, args...)}
	}
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	s.exec(batch)
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, "cmdstat_fcall:calls=1,") {
		t.Errorf("the batch ran other than as one function call:\n%s", info)
	}
	want := []struct {
		failures int
		locked   bool
		late     bool
	}{{1, false, false}, {2, false, false}, {0, false, true}, {3, true, false}, {3, true, false}, {3, true, false}}
	for i, b := range batch {
		w := want[i]
		err := b.cmd.Err()
		if w.late {
			if err == nil || !strings.HasPrefix(err.Error(), "AXESLATE") {
				t.Errorf("decision %d: error %v, want AXESLATE", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("decision %d: %v", i, err)
		}
		if _, err := parseReply(reqs[i].Op, b.cmd.Val(), reqs[i].Dims, nil); err != nil {
			t.Fatal(err)
		}
		o := reqs[i].Dims[0].Outcome
		if o.Failures != w.failures || o.Locked != w.locked {
			t.Errorf("decision %d: %d failures, locked %v; want %d, %v", i, o.Failures, o.Locked, w.failures, w.locked)
		}
	}
}

// TestFreshKeyExists runs, in one script call after a first failure (which
// checks the sketch and the budget), failures whose first key is new and
// whose second exists: the script writes the first key unread (SET … NX),
// meets the second, deletes the first again and decides on the general
// path. A locked second key refuses the failure and leaves no trace of the
// first; an unlocked one counts the failure in both, the first key created
// once. The footprint count ends at the keys that exist.
func TestFreshKeyExists(t *testing.T) {
	_, c, s, _ := batchFixture(t)
	ctx := context.Background()
	rule := &store.Rule{Limit: 3, Window: time.Hour, Cooloff: time.Hour}
	dim := func(hi uint64) store.Dim { return store.Dim{Fields: axes.IP, Digest: axes.Digest{Hi: hi, Lo: 99}} }
	fail := func(dims ...store.Dim) *store.Request {
		return &store.Request{Op: store.OpFail, Now: time.Now(), Rule: rule, Dims: dims}
	}
	// The existing keys: 101 locked (3 failures), 102 with one failure.
	for range 3 {
		if err := s.apply(ctx, fail(dim(101))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.apply(ctx, fail(dim(102))); err != nil {
		t.Fatal(err)
	}
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	units := func() int {
		t.Helper()
		n, err := c.HGet(ctx, s.bk[0], "n").Int()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := units()
	reqs := []*store.Request{
		fail(dim(1), dim(2)),   // two new keys: checks the sketch and the budget
		fail(dim(3), dim(101)), // 3 new, 101 locked: refused
		fail(dim(4), dim(102)), // 4 new, 102 at one failure: counted in both
	}
	batch := make([]*call, len(reqs))
	for i, r := range reqs {
		batch[i] = &call{ctx: ctx, cmd: redis.NewCmd(ctx, s.applyCommand(ctx, r)...)}
	}
	s.exec(batch)
	for i, b := range batch {
		if err := b.cmd.Err(); err != nil {
			t.Fatalf("decision %d: %v", i, err)
		}
		if _, err := parseReply(reqs[i].Op, b.cmd.Val(), reqs[i].Dims, nil); err != nil {
			t.Fatal(err)
		}
	}
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cmdstat_fcall:calls=1,", "cmdstat_del:calls=2,"} {
		if !strings.Contains(info, want) {
			t.Errorf("commandstats lack %q (the decisions in one call, each new first key deleted again):\n%s", want, info)
		}
	}
	type want struct {
		failures int
		locked   bool
	}
	for i, w := range [][]want{{{1, false}, {1, false}}, {{0, false}, {3, true}}, {{1, false}, {2, false}}} {
		for j, d := range reqs[i].Dims {
			if o := d.Outcome; o.Failures != w[j].failures || o.Locked != w[j].locked {
				t.Errorf("decision %d dimension %d: %d failures, locked %v; want %d, %v", i, j, o.Failures, o.Locked, w[j].failures, w[j].locked)
			}
		}
	}
	if n, err := c.Exists(ctx, s.key(dim(3).Digest)).Result(); err != nil || n != 0 {
		t.Errorf("the refused failure's new key exists (%d, %v)", n, err)
	}
	for _, hi := range []uint64{1, 2, 4, 102} {
		v, err := c.Get(ctx, s.key(dim(hi).Digest)).Result()
		if err != nil {
			t.Fatalf("key %d: %v", hi, err)
		}
		kv, ok := decodeValue(v)
		if !ok || kv.failures != map[uint64]int{1: 1, 2: 1, 4: 1, 102: 2}[hi] {
			t.Errorf("key %d: %+v, %v", hi, kv, ok)
		}
	}
	if got := units() - before; got != 3 {
		t.Errorf("the footprint count grew by %d, want 3 (keys 1, 2 and 4)", got)
	}
}
