package benchmarks

import (
	"hash/maphash"
	"math"
	"sync"
	"time"
)

var baselineMaker = Maker{
	Name:      "baseline",
	Desc:      "the floor: 64 mutex shards over map[string]counter, no cap, no policy",
	FakeClock: true,
	New: func(c Config) (Subject, error) {
		if err := c.validate(); err != nil {
			return nil, err
		}
		b := &baseline{
			seed:   maphash.MakeSeed(),
			limit:  uint32(c.Limit),
			window: int64(c.Window),
			now:    c.now(),
		}
		b.base = b.now()
		for i := range b.shards {
			b.shards[i].m = make(map[string]baselineEntry)
		}
		return b, nil
	},
}

const baselineShards = 64 // power of two: a shard is chosen by masking the hash

// baseline is the smallest design that does the job: a failure counter and
// the time of the last failure per key, in mutex-striped maps. Counts are
// forgotten a window after the last failure. It has no cap, no sweep, no
// lists and no digests; it exists to show how close axes comes to the floor.
type baseline struct {
	seed   maphash.Seed
	limit  uint32
	window int64
	now    func() time.Time
	base   time.Time
	shards [baselineShards]baselineShard
}

// baselineShard is padded to two 64-byte cache lines so that goroutines
// locking neighbouring shards do not invalidate each other's line.
type baselineShard struct {
	mu sync.Mutex // protects m
	m  map[string]baselineEntry
	_  [128 - 8 - 8]byte
}

type baselineEntry struct {
	n    uint32
	last int64 // nanoseconds since baseline.base (monotonic)
}

func (b *baseline) shard(s string) *baselineShard {
	return &b.shards[maphash.String(b.seed, s)&(baselineShards-1)]
}

// Fail counts a failure; the window restarts at every failure.
func (b *baseline) Fail(k Key) bool {
	now := int64(b.now().Sub(b.base))
	sh := b.shard(k.S)
	sh.mu.Lock()
	e := sh.m[k.S]
	if now-e.last >= b.window {
		e.n = 0
	}
	if e.n < math.MaxUint32 {
		e.n++
	}
	e.last = now
	sh.m[k.S] = e
	sh.mu.Unlock()
	return e.n >= b.limit
}

// Locked reads the clock only for a key at the limit.
func (b *baseline) Locked(k Key) bool {
	sh := b.shard(k.S)
	sh.mu.Lock()
	e, ok := sh.m[k.S]
	sh.mu.Unlock()
	if !ok || e.n < b.limit {
		return false
	}
	return int64(b.now().Sub(b.base))-e.last < b.window
}

// Close drops every entry.
func (b *baseline) Close() {
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		sh.m = make(map[string]baselineEntry)
		sh.mu.Unlock()
	}
}
