package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// tripCounter is a go-redis hook that counts round trips: one per command
// or pipeline the client sends.
type tripCounter struct{ n atomic.Uint64 }

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

const benchKeys = 1 << 12

func benchIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// benchLayouts are the deployments each benchmark runs on.
var benchLayouts = []struct {
	name    string
	cluster bool
	spread  bool
}{
	{"redis=standalone", false, false},
	{"redis=cluster", true, false},
	{"redis=cluster-spread", true, true},
}

// benchLimiter returns a limiter on a fresh prefix of the layout's server,
// and the round-trip counter of its client.
func benchLimiter(b *testing.B, cluster, spread bool, p axes.Policy) (*axes.Limiter, *tripCounter) {
	b.Helper()
	var c redis.UniversalClient
	if cluster {
		c = newCluster(b)
	} else {
		c = newClient(b)
	}
	trips := new(tripCounter)
	c.AddHook(trips)
	s := mustNew(b, c, Options{SpreadSlots: spread, Timeout: time.Second})
	l := axes.Must(axes.New(p, axes.WithSecret(secret), axes.WithStore(s)))
	b.Cleanup(func() { l.Close() })
	return l, trips
}

// report adds round trips per decision to the benchmark's figures.
func report(b *testing.B, trips *tripCounter, before uint64, decisions int) {
	b.ReportMetric(float64(trips.n.Load()-before)/float64(decisions), "round-trips/decision")
}

// BenchmarkFail: Fail on existing keys, by IP and by IP+username (two
// dimension keys per decision), one decision at a time (latency).
func BenchmarkFail(b *testing.B) {
	for _, lay := range benchLayouts {
		b.Run(lay.name+"/by=ip,ip+username", func(b *testing.B) {
			l, trips := benchLimiter(b, lay.cluster, lay.spread, axes.Policy{Limit: 1 << 15, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}})
			before := trips.n.Load()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				l.Fail(axes.Key{IP: benchIP(i % benchKeys), Username: "alice"})
			}
			report(b, trips, before, b.N)
		})
	}
}

// BenchmarkLocked: Locked on keys of which 1 in 16 is locked.
func BenchmarkLocked(b *testing.B) {
	for _, lay := range benchLayouts[:2] {
		b.Run(lay.name, func(b *testing.B) {
			l, trips := benchLimiter(b, lay.cluster, lay.spread, axes.Policy{Limit: 1})
			for i := 0; i < benchKeys; i += 16 {
				l.Fail(axes.Key{IP: benchIP(i)})
			}
			before := trips.n.Load()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				l.Locked(axes.Key{IP: benchIP(i % benchKeys)})
			}
			report(b, trips, before, b.N)
		})
	}
}

// BenchmarkBeginSettle: a reservation settled (alternately as a failure
// and a success) by IP and IP+username; two decisions per iteration.
func BenchmarkBeginSettle(b *testing.B) {
	for _, lay := range benchLayouts {
		b.Run(lay.name+"/by=ip,ip+username", func(b *testing.B) {
			l, trips := benchLimiter(b, lay.cluster, lay.spread, axes.Policy{Limit: 1 << 15, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}})
			before := trips.n.Load()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				a := l.Begin(axes.Key{IP: benchIP(i % benchKeys), Username: "alice"})
				if i&1 == 0 {
					a.Fail()
				} else {
					a.Succeed()
				}
			}
			report(b, trips, before, 2*b.N)
		})
	}
}

// BenchmarkFailParallel: BenchmarkFail's decisions from 64 concurrent
// callers (throughput).
func BenchmarkFailParallel(b *testing.B) {
	for _, lay := range benchLayouts {
		b.Run(lay.name+"/by=ip,ip+username/callers=64", func(b *testing.B) {
			l, trips := benchLimiter(b, lay.cluster, lay.spread, axes.Policy{Limit: 1 << 15, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}})
			before := trips.n.Load()
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(next.Add(1))
					l.Fail(axes.Key{IP: benchIP(i % benchKeys), Username: "alice"})
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
			report(b, trips, before, b.N)
		})
	}
}

// BenchmarkFirstFailure: the costliest decision for Redis, the first
// failure of a client never seen (its own IP and username: two new keys),
// from 64 concurrent callers, with the local lock cache off. Run against a
// server under callgrind, it gives Redis's instructions per decision.
// (The client number is in the address's first 64 bits: IPv6 is grouped
// by /64.)
func BenchmarkFirstFailure(b *testing.B) {
	for _, lay := range benchLayouts[:2] {
		b.Run(lay.name+"/by=ip,ip+username/callers=64", func(b *testing.B) {
			var c redis.UniversalClient
			if lay.cluster {
				c = newCluster(b)
			} else {
				c = newClient(b)
			}
			trips := new(tripCounter)
			c.AddHook(trips)
			s := mustNew(b, c, Options{NoLocalLocks: true, Timeout: 10 * time.Second})
			l := axes.Must(axes.New(axes.Policy{Limit: 5, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}},
				axes.WithSecret(secret), axes.WithStore(s)))
			b.Cleanup(func() { l.Close() })
			before := trips.n.Load()
			var next atomic.Int64
			next.Store(time.Now().UnixNano() & (1<<40 - 1)) // new clients on every run
			b.ReportAllocs()
			b.SetParallelism(max(64/runtime.GOMAXPROCS(0), 1))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					l.Fail(axes.Key{IP: netip.AddrFrom16([16]byte{0x20, 1, byte(i >> 40), byte(i >> 32), byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}),
						Username: "u" + strconv.FormatInt(i, 36)})
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
			report(b, trips, before, b.N)
		})
	}
}

// BenchmarkMergedCall: merged script calls of a fixed number of first
// failures (two new keys each), sent one call at a time, so that the
// Redis instructions per decision at each size can be counted (run the
// server under callgrind; instructions / decisions), as in the README's
// table. It reports ns/decision.
func BenchmarkMergedCall(b *testing.B) {
	for _, size := range []int{1, 4, 16, 32} {
		b.Run("decisions="+strconv.Itoa(size), func(b *testing.B) {
			c := newClient(b)
			s := mustNew(b, c, Options{NoLocalLocks: true, Timeout: 10 * time.Second})
			ctx := context.Background()
			rule := &store.Rule{Limit: 5, Window: time.Hour, Cooloff: time.Minute}
			k := uint64(time.Now().UnixNano())
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				calls := make([]*call, size)
				for i := range calls {
					k++
					req := &store.Request{Op: store.OpFail, Now: time.Now(), Rule: rule,
						Identity: store.Identity{IP: netip.PrefixFrom(benchIP(int(k)), 32), Username: "u"},
						Dims: []store.Dim{{Fields: axes.IP, Digest: axes.Digest{Hi: k, Lo: 1}, IPKey: axes.Digest{Hi: k, Lo: 2}},
							{Fields: axes.IP | axes.Username, Digest: axes.Digest{Hi: k, Lo: 3}, IPKey: axes.Digest{Hi: k, Lo: 2}, UserKey: axes.Digest{Hi: k, Lo: 4}}}}
					calls[i] = &call{ctx: ctx, cmd: redis.NewCmd(ctx, s.applyCommand(ctx, req)...)}
				}
				b.StartTimer()
				s.exec(calls)
				for _, c := range calls {
					if err := c.cmd.Err(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/decision")
		})
	}
}

// BenchmarkWait: Fail by IP and IP+username on the Sentinel setup of
// .ci/redis-ha.sh (AXES_REDIS_SENTINEL), without and with WaitReplicas 1:
// what waiting for the replica's acknowledgement costs per Fail. It skips
// when the setup is absent (fails under CI=true).
func BenchmarkWait(b *testing.B) {
	addrs := os.Getenv("AXES_REDIS_SENTINEL")
	if addrs == "" {
		unavailable(b, "Redis Sentinel (AXES_REDIS_SENTINEL)", errors.New("not set; run .ci/redis-ha.sh start"))
	}
	for _, wait := range []int{0, 1} {
		b.Run(fmt.Sprintf("redis=sentinel/wait=%d", wait), func(b *testing.B) {
			c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: cmp.Or(os.Getenv("AXES_REDIS_SENTINEL_MASTER"), "axes"),
				SentinelAddrs: strings.Split(addrs, ","), ContextTimeoutEnabled: true})
			b.Cleanup(func() { c.Close() })
			if err := c.Ping(context.Background()).Err(); err != nil {
				unavailable(b, "Redis Sentinel at "+addrs, err)
			}
			s := mustNew(b, c, Options{Timeout: time.Second, WaitReplicas: wait})
			l := axes.Must(axes.New(axes.Policy{Limit: 1 << 15, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}},
				axes.WithSecret(secret), axes.WithStore(s)))
			b.Cleanup(func() { l.Close() })
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				l.Fail(axes.Key{IP: benchIP(i % benchKeys), Username: "alice"})
			}
			b.StopTimer()
			if st := s.Stats(); wait > 0 && st.Waited == 0 {
				b.Fatalf("no write waited: %+v", st)
			} else {
				b.ReportMetric(float64(st.Unacknowledged), "unacknowledged")
			}
		})
	}
}
