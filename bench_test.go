package axes

import (
	"fmt"
	"github.com/axes-go/axes/store"
	"math/rand"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of the hot paths on the memory store. Run them with
//
//	go test -run '^$' -bench . -cpu 1,2 -benchtime 2s .
//
// The parallel Locked benchmark at -cpu 1 and -cpu 2 shows how reads scale;
// heap-B/entry comes from BenchmarkMemoryPerEntry, and the bound for any
// input from BenchmarkMemoryWorstCase.

const benchKeys = 1 << 20 // tracked keys in the zipf workloads (1M)

// sink keeps results alive; parallel loops write it once, at their end.
var sink atomic.Bool

// zipfSeq returns n key indexes in [0, keys) with zipf popularity
// (s=1.1), generated once outside the timed loops.
func zipfSeq(n, keys int) []uint32 {
	r := rand.New(rand.NewSource(42))
	z := rand.NewZipf(r, 1.1, 1, uint64(keys-1))
	seq := make([]uint32, n)
	for i := range seq {
		seq[i] = uint32(z.Uint64())
	}
	return seq
}

var benchZipf = func() func() []uint32 {
	var seq []uint32
	return func() []uint32 {
		if seq == nil {
			seq = zipfSeq(1<<20, benchKeys)
		}
		return seq
	}
}()

func benchIP(i uint32) netip.Addr { return ipN(int(i)) }

// newBenchLimiter returns a limiter tracking benchKeys keys with one
// failure each, so that the zipf workloads hit existing entries.
func newBenchLimiter(b *testing.B, p Policy) *Limiter {
	b.Helper()
	dims := max(len(p.LockoutBy), 1)
	if p.Spray.Limit > 0 {
		dims += 2 // the spray entries of each IP: its username and its count
	}
	l := Must(New(p, WithMaxEntries(benchKeys*dims)))
	for i := range uint32(benchKeys) {
		l.Fail(Key{IP: benchIP(i), Username: "alice"})
	}
	return l
}

func reportOps(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "ops/s")
	}
}

// uncounted turns off, for the benchmark, the count of lock-cache answers
// that the tests keep (countCacheServes): one atomic counter written by
// every answer, which would make the cores contend.
func uncounted(b *testing.B) {
	was := countCacheServes
	countCacheServes = false
	b.Cleanup(func() { countCacheServes = was })
}

// runZipf runs op in parallel on keys drawn from the zipf sequence.
func runZipf(b *testing.B, op func(Key) bool) { runZipfOver(b, benchKeys, op) }

// runZipfOver is runZipf on the first keys keys alone: a drawn index is
// taken modulo keys.
func runZipfOver(b *testing.B, keys uint32, op func(Key) bool) {
	uncounted(b)
	seq := benchZipf()
	var off atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := off.Add(7919)
		locked := false // a local sink: writing a shared one every call would bounce its cache line
		for pb.Next() {
			i++
			locked = op(Key{IP: benchIP(seq[i&(1<<20-1)] % keys), Username: "alice"}) || locked
		}
		sink.Store(locked)
	})
	reportOps(b)
}

// BenchmarkLocked: parallel Locked over 1M tracked keys with zipf
// popularity, a policy of IP (limit 1000, so nothing locks).
func BenchmarkLocked(b *testing.B) {
	l := newBenchLimiter(b, Policy{Limit: 1000})
	runZipf(b, l.Locked)
}

// BenchmarkLockedUnderAttack: the same while 1% of the keys are locked.
func BenchmarkLockedUnderAttack(b *testing.B) {
	l := newBenchLimiter(b, Policy{Limit: 2})
	for i := uint32(0); i < benchKeys; i += 100 {
		l.Fail(Key{IP: benchIP(i), Username: "alice"})
	}
	runZipf(b, l.Locked)
}

// BenchmarkLockedAnswer: Locked on the locked clients of an attack alone:
// 16,384 of the 1M tracked keys locked, every call on one of them (zipf
// popularity), so that every answer is "locked", from the lock cache.
func BenchmarkLockedAnswer(b *testing.B) {
	const lockedKeys = 1 << 14
	l := newBenchLimiter(b, Policy{Limit: 2})
	for i := range uint32(lockedKeys) {
		l.Fail(Key{IP: benchIP(i), Username: "alice"})
	}
	for _, i := range benchZipf()[:1000] {
		if !l.Locked(Key{IP: benchIP(i % lockedKeys), Username: "alice"}) {
			b.Fatal("a key of the sequence is not locked")
		}
	}
	runZipfOver(b, lockedKeys, l.Locked)
}

// BenchmarkFail: parallel Fail over 1M tracked keys with zipf popularity.
func BenchmarkFail(b *testing.B) {
	for _, pc := range []struct {
		name string
		p    Policy
	}{
		{"by=ip", Policy{Limit: 1 << 15}},
		{"by=ip,ip+username", Policy{Limit: 1 << 15, LockoutBy: []Fields{IP, IP | Username}}},
	} {
		b.Run(pc.name, func(b *testing.B) {
			l := newBenchLimiter(b, pc.p)
			runZipf(b, func(k Key) bool { return l.Fail(k).Locked })
		})
	}
}

// BenchmarkFailSpray: BenchmarkFail's workload with password-spray
// detection off and on (two more dimensions per attempt: the IP's
// username entry and its spray count), so that its cost shows; a policy
// without Spray pays nothing for it.
func BenchmarkFailSpray(b *testing.B) {
	for _, pc := range []struct {
		name string
		p    Policy
	}{
		{"spray=off", Policy{Limit: 1 << 15}},
		{"spray=on", Policy{Limit: 1 << 15, Spray: Spray{Limit: 1 << 15}}},
	} {
		b.Run(pc.name, func(b *testing.B) {
			l := newBenchLimiter(b, pc.p)
			runZipf(b, func(k Key) bool { return l.Fail(k).Locked })
		})
	}
}

// BenchmarkFailDistinct: parallel Fail where every call is a new key (a
// spray), against a 1M cap, so the store inserts, sweeps and evicts.
func BenchmarkFailDistinct(b *testing.B) {
	l := Must(New(Policy{}, WithMaxEntries(benchKeys)))
	uncounted(b)
	var next atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		locked := false
		for pb.Next() {
			i := next.Add(1)
			locked = l.Fail(Key{IP: netip.AddrFrom4([4]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})}).Locked || locked
		}
		sink.Store(locked)
	})
	reportOps(b)
}

// BenchmarkFailAtCap: parallel Fail where every call is a new key, on a
// store already at its 1M cap after a spray of half as many keys again:
// every insert evicts, its estimate comes from a sketch that holds the
// evicted keys, and the evicted entry folds into it. Single failures are
// scarce there (the sketch starts fresh keys above one), which is the
// steady state of a long spray.
func BenchmarkFailAtCap(b *testing.B) {
	l := Must(New(Policy{Limit: 5}, WithMaxEntries(benchKeys)))
	uncounted(b)
	const sprayed = benchKeys + benchKeys/2
	for i := range uint32(sprayed) {
		l.Fail(Key{IP: benchIP(i)})
	}
	var next atomic.Uint32
	next.Store(sprayed)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		locked := false
		for pb.Next() {
			locked = l.Fail(Key{IP: benchIP(next.Add(1))}).Locked || locked
		}
		sink.Store(locked)
	})
	reportOps(b)
}

// BenchmarkBeginSettle: a reservation settled as a failure or a success,
// on existing keys with zipf popularity.
func BenchmarkBeginSettle(b *testing.B) {
	l := newBenchLimiter(b, Policy{Limit: 1 << 15})
	runZipf(b, func(k Key) bool {
		a := l.Begin(k)
		if k.IP.As4()[3]&1 == 0 {
			return a.Fail().Locked
		}
		a.Succeed()
		return false
	})
}

// BenchmarkMemoryPerEntry reports the heap bytes per tracked entry with
// 1M entries in a store capped at 1<<20.
func BenchmarkMemoryPerEntry(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			var perEntry float64
			for range b.N {
				perEntry = heapPerEntry(b, Policy{Limit: 100}, n, func(i int) Key { return Key{IP: benchIP(uint32(i))} })
			}
			b.ReportMetric(perEntry, "heap-B/entry")
		})
	}
}

// heapPerEntry returns the live heap bytes per entry of a limiter of
// policy p, capped at 1<<20, after one failure of key(i) for each i below
// n, each of which must make an entry.
func heapPerEntry(b *testing.B, p Policy, n int, key func(i int) Key) float64 {
	return heapPerKey(b, p, n, 1, key)
}

// heapPerKey is heapPerEntry for keys that make perKey entries each, and
// returns the live heap bytes per key.
func heapPerKey(b *testing.B, p Policy, n, perKey int, key func(i int) Key) float64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l := Must(New(p, WithMaxEntries(1<<20)))
	for i := range n {
		l.Fail(key(i))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := l.Stats().Entries; got != n*perKey {
		b.Fatalf("%d entries tracked, want %d", got, n*perKey)
	}
	perKeyB := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
	runtime.KeepAlive(l)
	return perKeyB
}

// BenchmarkMemoryPerKeySpray reports the heap bytes per client (an IP
// trying one username, by IP) with Policy.Spray off and on: spray
// detection adds the IP's entry for the username and its count of
// usernames, so three entries a client instead of one.
func BenchmarkMemoryPerKeySpray(b *testing.B) {
	const n = 300_000
	for _, spray := range []bool{false, true} {
		b.Run(fmt.Sprintf("spray=%v", spray), func(b *testing.B) {
			p, perKey := Policy{Limit: 100}, 1
			if spray {
				p.Spray, perKey = Spray{Limit: 100}, 3
			}
			var perKeyB float64
			for range b.N {
				perKeyB = heapPerKey(b, p, n, perKey, func(i int) Key {
					return Key{IP: benchIP(uint32(i)), Username: "user" + strconv.Itoa(i)}
				})
			}
			b.ReportMetric(perKeyB, "heap-B/client")
		})
	}
}

// BenchmarkMemoryWorstCase reports the heap bytes per entry of the cap
// (heapB/entry) for the worst input: a store capped at 1<<20 filled with
// locks, each with a 300-byte username and user agent (cut to
// MaxIdentityBytes) that Lockouts must show, then sprayed with as many keys
// again, which the sketch takes. WithMaxEntries documents the figure.
func BenchmarkMemoryWorstCase(b *testing.B) {
	const capN = 1 << 20
	long := strings.Repeat("x", 300)
	var perEntry float64
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		l := Must(New(Policy{Limit: 1, LockoutBy: []Fields{IP | Username}}, WithMaxEntries(capN)))
		for i := range 2 * capN {
			l.Fail(Key{IP: ipN(i), Username: long + strconv.Itoa(i), UserAgent: long})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := l.Stats().Entries; got != capN {
			b.Fatalf("%d entries tracked, want %d", got, capN)
		}
		perEntry = float64(after.HeapAlloc-before.HeapAlloc) / capN
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perEntry, "heapB/entry")
}

// BenchmarkDigest: the cost of deriving one dimension's digests from a key.
func BenchmarkDigest(b *testing.B) {
	l := Must(New(Policy{LockoutBy: []Fields{IP, IP | Username}}))
	k := Key{IP: benchIP(1), Username: "Alice@Example.com"}
	var dims [8]store.Dim
	b.ReportAllocs()
	for b.Loop() {
		l.digestsOf(&k, &dims)
	}
}

// The defences of Policy.ChallengeAt, Key.Device and NIST80063B, off and on,
// on one workload so that the figures compare:
//
//	go test -run '^$' -bench 'Defences' -count 3 -cpu 2 .
//
// defenceKeys distinct clients (IP and username each), visited uniformly,
// each with one failure before the timed loop; the loop adds at most a few
// dozen failures per key, so no key reaches a limit and every variant stays
// on its path.
const defenceKeys = 1 << 18

// defenceCase is one variant of BenchmarkDefences.
type defenceCase struct {
	name    string
	p       Policy
	devices bool // the keys carry a verified device
}

var defenceCases = []defenceCase{
	// plain: the policy without any of the defences.
	{"plain", Policy{Limit: 1 << 15, LockoutBy: []Fields{IP, Username}}, false},
	// challenge=below: ChallengeAt on, every attempt below it.
	{"challenge=below", Policy{Limit: 1 << 15, ChallengeAt: 1<<15 - 1, LockoutBy: []Fields{IP, Username}}, false},
	// challenge=asked: every attempt has reached ChallengeAt and carries no
	// proof, so it is refused with ReasonChallenge and counts nothing.
	{"challenge=asked", Policy{Limit: 1 << 15, ChallengeAt: 1, LockoutBy: []Fields{IP, Username}}, false},
	// devices: every key carries a verified device (the trusted path).
	{"devices", Policy{Limit: 1 << 15, LockoutBy: []Fields{IP, Username}}, true},
	// nist: the NIST80063B preset (by username, never forgotten, reset on
	// success, limit 100).
	{"nist", NIST80063B(), false},
	// spray: Policy.Spray on (two more dimensions per attempt: the IP's
	// username entry and its count of usernames); each client's IP tries
	// one username, so no IP reaches the spray limit.
	{"spray", Policy{Limit: 1 << 15, LockoutBy: []Fields{IP, Username}, Spray: Spray{Limit: 1 << 15}}, false},
}

// defenceKeySet returns the keys of the workload, built outside the timed
// loops.
func defenceKeySet(devices bool) []Key {
	ks := make([]Key, defenceKeys)
	for i := range ks {
		ks[i] = Key{IP: ipN(i), Username: "user" + strconv.Itoa(i)}
		if devices {
			ks[i].Device = "device" + strconv.Itoa(i)
		}
	}
	return ks
}

// BenchmarkDefences: parallel Fail, and Begin settled as a failure or a
// success, under each defenceCase. A policy that leaves a defence off
// must cost what plain costs.
func BenchmarkDefences(b *testing.B) {
	keySets := map[bool][]Key{}
	for _, op := range []string{"Fail", "BeginSettle"} {
		for _, c := range defenceCases {
			b.Run("op="+op+"/"+c.name, func(b *testing.B) {
				ks := keySets[c.devices]
				if ks == nil {
					ks = defenceKeySet(c.devices)
					keySets[c.devices] = ks
				}
				l := Must(New(c.p, WithMaxEntries(8*defenceKeys)))
				defer l.Close()
				for i := range ks {
					l.Fail(ks[i])
				}
				runtime.GC() // the garbage of earlier runs is not this one's cost
				uncounted(b)
				var off atomic.Uint32
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := off.Add(defenceKeys / 4)
					locked := false
					for pb.Next() {
						i++
						k := ks[i&(defenceKeys-1)]
						if op == "Fail" {
							locked = l.Fail(k).Locked || locked
							continue
						}
						a := l.Begin(k)
						if i&1 == 0 {
							locked = a.Fail().Locked || locked
						} else {
							a.Succeed()
						}
					}
					sink.Store(locked)
				})
				reportOps(b)
			})
		}
	}
}

// BenchmarkMemoryPerEntryDevices reports the heap bytes per tracked entry,
// as BenchmarkMemoryPerEntry, for entries counted by username, without and
// with a verified device: a device changes the digest of the dimension,
// not the size of its entry.
func BenchmarkMemoryPerEntryDevices(b *testing.B) {
	const n = 1_000_000
	for _, devices := range []bool{false, true} {
		b.Run(fmt.Sprintf("devices=%v", devices), func(b *testing.B) {
			var perEntry float64
			for range b.N {
				perEntry = heapPerEntry(b, Policy{Limit: 100, LockoutBy: []Fields{Username}}, n, func(i int) Key {
					k := Key{Username: "user" + strconv.Itoa(i)}
					if devices {
						k.Device = "device" + strconv.Itoa(i)
					}
					return k
				})
			}
			b.ReportMetric(perEntry, "heap-B/entry")
		})
	}
}

// BenchmarkTimelineNow: the memory store's reading of the current time,
// through time.Now and through the monotonic clock alone.
func BenchmarkTimelineNow(b *testing.B) {
	var tl timeline
	tl.start(time.Now().Add(-epochMargin), 0)
	b.Run("instant(time.Now())", func(b *testing.B) {
		var s time.Duration
		for b.Loop() {
			s += tl.instant(time.Now())
		}
		sink.Store(s > 0)
	})
	b.Run("instantNow", func(b *testing.B) {
		var s time.Duration
		for b.Loop() {
			s += tl.instantNow()
		}
		sink.Store(s > 0)
	})
}
