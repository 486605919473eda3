package benchmarks

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/maypok86/otter/v2"
	gocache "github.com/patrickmn/go-cache"
	"github.com/sethvargo/go-limiter"
	"github.com/sethvargo/go-limiter/memorystore"
	"github.com/throttled/throttled/v2"
	"github.com/throttled/throttled/v2/store/memstore"
	ulule "github.com/ulule/limiter/v3"
	ululememory "github.com/ulule/limiter/v3/drivers/store/memory"
	"golang.org/x/time/rate"
)

// Each peer is used through its public API, the way its documentation
// suggests, with the same limit and window. Where a peer is a rate limiter
// rather than a failure counter, "locked" means "no attempt left now".

// ---- github.com/sethvargo/go-limiter/memorystore --------------------------

var goLimiterMaker = Maker{
	Name: "go-limiter",
	Desc: "sethvargo/go-limiter memorystore: a token bucket per key (Tokens=limit, Interval=window)",
	New: func(c Config) (Subject, error) {
		if err := c.validate(); err != nil {
			return nil, err
		}
		st, err := memorystore.New(&memorystore.Config{
			Tokens:        uint64(c.Limit),
			Interval:      c.Window,
			SweepInterval: c.Window,
			SweepMinTTL:   c.Window,
		})
		if err != nil {
			return nil, err
		}
		return &goLimiter{st: st}, nil
	},
}

type goLimiter struct{ st limiter.Store }

func (s *goLimiter) Fail(k Key) bool {
	_, remaining, _, ok, err := s.st.Take(context.Background(), k.S)
	return err != nil || !ok || remaining == 0
}

// Locked uses Get, which reports the tokens left at the last Take: the
// store refills a bucket only when it is taken from.
func (s *goLimiter) Locked(k Key) bool {
	tokens, remaining, err := s.st.Get(context.Background(), k.S)
	return err == nil && tokens > 0 && remaining == 0
}

func (s *goLimiter) Close() { _ = s.st.Close(context.Background()) }

// ---- github.com/ulule/limiter/v3, memory store ----------------------------

var ululeMaker = Maker{
	Name: "ulule",
	Desc: "ulule/limiter v3 memory store: a fixed-window counter per key (Rate{Limit, Period: window})",
	New: func(c Config) (Subject, error) {
		if err := c.validate(); err != nil {
			return nil, err
		}
		st := ululememory.NewStoreWithOptions(ulule.StoreOptions{
			Prefix:          ulule.DefaultPrefix,
			CleanUpInterval: ulule.DefaultCleanUpInterval,
		})
		return &ululeSubject{l: ulule.New(st, ulule.Rate{Period: c.Window, Limit: int64(c.Limit)})}, nil
	},
}

type ululeSubject struct{ l *ulule.Limiter }

func (s *ululeSubject) Fail(k Key) bool {
	lc, err := s.l.Get(context.Background(), k.S)
	return err != nil || lc.Remaining == 0
}

func (s *ululeSubject) Locked(k Key) bool {
	lc, err := s.l.Peek(context.Background(), k.S)
	return err == nil && lc.Remaining == 0
}

// Close has nothing to do: the store's cleaner stops when it is collected.
func (s *ululeSubject) Close() {}

// ---- github.com/throttled/throttled/v2, GCRA over memstore ----------------

var throttledMaker = Maker{
	Name:      "throttled",
	Desc:      "throttled/throttled v2: GCRA (PerDuration(limit, window), burst limit-1) over memstore with its LRU cap",
	Capped:    true,
	FakeClock: true,
	New: func(c Config) (Subject, error) {
		if err := c.validate(); err != nil {
			return nil, err
		}
		st, err := memstore.New(c.MaxKeys)
		if err != nil {
			return nil, err
		}
		if c.Clock != nil {
			st.SetTimeNow(c.Clock)
		}
		rl, err := throttled.NewGCRARateLimiterCtx(throttled.WrapStoreWithContext(st), throttled.RateQuota{
			MaxRate:  throttled.PerDuration(c.Limit, c.Window),
			MaxBurst: c.Limit - 1,
		})
		if err != nil {
			return nil, err
		}
		return &throttledSubject{rl: rl}, nil
	},
}

type throttledSubject struct{ rl *throttled.GCRARateLimiterCtx }

// Fail reports locked when the attempt was limited, when none is left, or
// when the store could not record it (the limiter gives up after 10
// compare-and-swap retries under contention).
func (s *throttledSubject) Fail(k Key) bool {
	limited, res, err := s.rl.RateLimitCtx(context.Background(), k.S, 1)
	return err != nil || limited || res.Remaining == 0
}

// Locked peeks with quantity 0, which the limiter documents as "no update";
// for an unknown key it still stores the key.
func (s *throttledSubject) Locked(k Key) bool {
	_, res, err := s.rl.RateLimitCtx(context.Background(), k.S, 0)
	return err == nil && res.RetryAfter >= 0
}

func (s *throttledSubject) Close() {}

// ---- golang.org/x/time/rate, one *rate.Limiter per key in a sync.Map ------

var rateMaker = Maker{
	Name:      "x-time-rate",
	Desc:      "golang.org/x/time/rate: a *rate.Limiter per key (burst limit, refill limit per window) in a sync.Map",
	FakeClock: true,
	New: func(c Config) (Subject, error) {
		if err := c.validate(); err != nil {
			return nil, err
		}
		return &rateSubject{
			every: rate.Every(c.Window / time.Duration(c.Limit)),
			burst: c.Limit,
			now:   c.now(),
		}, nil
	},
}

type rateSubject struct {
	m     sync.Map // string -> *rate.Limiter
	every rate.Limit
	burst int
	now   func() time.Time
}

func (s *rateSubject) Fail(k Key) bool {
	v, ok := s.m.Load(k.S)
	if !ok {
		v, _ = s.m.LoadOrStore(k.S, rate.NewLimiter(s.every, s.burst))
	}
	l := v.(*rate.Limiter)
	now := s.now()
	return !l.AllowN(now, 1) || l.TokensAt(now) < 1
}

func (s *rateSubject) Locked(k Key) bool {
	v, ok := s.m.Load(k.S)
	return ok && v.(*rate.Limiter).TokensAt(s.now()) < 1
}

func (s *rateSubject) Close() { s.m.Clear() }

// ---- github.com/patrickmn/go-cache counters -------------------------------

var goCacheMaker = Maker{
	Name: "go-cache",
	Desc: "patrickmn/go-cache: an int counter per key, expiring a window after the first failure",
	New: func(c Config) (Subject, error) {
		if err := c.validate(); err != nil {
			return nil, err
		}
		return &goCacheSubject{c: gocache.New(c.Window, time.Minute), limit: c.Limit}, nil
	},
}

type goCacheSubject struct {
	c     *gocache.Cache
	limit int
}

// Fail increments the counter, adding it when absent; if another goroutine
// adds it first, it increments that one.
func (s *goCacheSubject) Fail(k Key) bool {
	n, err := s.c.IncrementInt(k.S, 1)
	if err != nil {
		if s.c.Add(k.S, 1, gocache.DefaultExpiration) == nil {
			n = 1
		} else if n, err = s.c.IncrementInt(k.S, 1); err != nil {
			return true
		}
	}
	return n >= s.limit
}

func (s *goCacheSubject) Locked(k Key) bool {
	v, ok := s.c.Get(k.S)
	return ok && v.(int) >= s.limit
}

func (s *goCacheSubject) Close() { s.c.Flush() }

// ---- github.com/hashicorp/golang-lru/v2/expirable -------------------------

var lruMaker = Maker{
	Name:   "golang-lru",
	Desc:   "hashicorp/golang-lru/v2 expirable LRU (size cap, TTL window): an atomic counter per key",
	Capped: true,
	New: func(c Config) (Subject, error) {
		if err := c.validate(); err != nil {
			return nil, err
		}
		return &lruSubject{c: expirable.NewLRU[string, *atomic.Int32](c.MaxKeys, nil, c.Window), limit: int32(c.Limit)}, nil
	},
}

type lruSubject struct {
	c     *expirable.LRU[string, *atomic.Int32]
	limit int32
}

// Fail increments the key's counter, adding one when absent. Two goroutines
// adding the same new key at once can lose one count: the cache has no
// get-or-add. The TTL runs from the first failure.
func (s *lruSubject) Fail(k Key) bool {
	n, ok := s.c.Get(k.S)
	if !ok {
		n = new(atomic.Int32)
		s.c.Add(k.S, n)
	}
	return n.Add(1) >= s.limit
}

func (s *lruSubject) Locked(k Key) bool {
	n, ok := s.c.Get(k.S)
	return ok && n.Load() >= s.limit
}

// Close purges the cache. Its sweeper goroutine never exits (upstream: "done
// channel is never closed"), so the emptied cache itself stays reachable.
func (s *lruSubject) Close() { s.c.Purge() }

// ---- github.com/maypok86/otter/v2 counters --------------------------------

var otterMaker = Maker{
	Name:      "otter",
	Desc:      "maypok86/otter v2: an int32 counter per key via Compute (MaximumSize cap, ExpiryWriting window)",
	Capped:    true,
	FakeClock: true,
	New: func(c Config) (Subject, error) {
		if err := c.validate(); err != nil {
			return nil, err
		}
		o := &otter.Options[string, int32]{
			MaximumSize:      c.MaxKeys,
			ExpiryCalculator: otter.ExpiryWriting[string, int32](c.Window),
		}
		if c.Clock != nil {
			o.Clock = otterClock{c.Clock}
		}
		cache, err := otter.New(o)
		if err != nil {
			return nil, err
		}
		return &otterSubject{c: cache, limit: int32(c.Limit)}, nil
	},
}

// otterClock adapts an injected clock; it never ticks, so the cache expires
// entries lazily only.
type otterClock struct{ now func() time.Time }

func (c otterClock) NowNano() int64                      { return c.now().UnixNano() }
func (c otterClock) Tick(time.Duration) <-chan time.Time { return nil }

type otterSubject struct {
	c     *otter.Cache[string, int32]
	limit int32
}

func otterIncrement(old int32, _ bool) (int32, otter.ComputeOp) {
	if old < math.MaxInt32 {
		old++
	}
	return old, otter.WriteOp
}

func (s *otterSubject) Fail(k Key) bool {
	n, _ := s.c.Compute(k.S, otterIncrement)
	return n >= s.limit
}

func (s *otterSubject) Locked(k Key) bool {
	n, ok := s.c.GetIfPresent(k.S)
	return ok && n >= s.limit
}

func (s *otterSubject) Close() {
	s.c.InvalidateAll()
	s.c.StopAllGoroutines()
}
