package benchmarks

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

var (
	// The defaults keep `go test -bench . -benchtime 1x` short; the report
	// runs with -heap.keys=1000000 -spray.keys=10000000 -spray.cap=1000000.
	heapKeys  = flag.Int("heap.keys", 100_000, "distinct keys tracked by BenchmarkHeapPerKey")
	sprayKeys = flag.Int("spray.keys", 200_000, "distinct keys sprayed by BenchmarkSprayHeap")
	sprayCap  = flag.Int("spray.cap", 20_000, "key cap of capped subjects in BenchmarkSprayHeap")
	// The report profiles axes alone with -subjects=axes.
	subjects = flag.String("subjects", "", "run only the subjects whose name matches this regular expression")
)

// makers returns the subjects that -subjects selects.
func makers(b *testing.B) []Maker {
	if *subjects == "" {
		return Makers
	}
	re, err := regexp.Compile(*subjects)
	if err != nil {
		b.Fatalf("-subjects: %v", err)
	}
	var out []Maker
	for _, m := range Makers {
		if re.MatchString(m.Name) {
			out = append(out, m)
		}
	}
	return out
}

const (
	trackedKeys = 100_000 // keys of the zipf workloads
	mixedKeys   = 1 << 20 // keys of the 90/10 workload (1,048,576)
	sprayPool   = 1 << 22 // distinct keys of BenchmarkFailSpray before it wraps
	seqLen      = 1 << 20 // length of a pre-generated index sequence
	zipfS       = 1.1     // zipf exponent of key popularity
)

// sink keeps results observable.
var sink atomic.Int64

// fixtures builds each key set and index sequence once per process.
var fixtures = struct {
	sync.Mutex
	keys map[string]*Keyset
	seqs map[string][]uint32
}{keys: map[string]*Keyset{}, seqs: map[string][]uint32{}}

func keyset(n int, by Dimension) *Keyset {
	fixtures.Lock()
	defer fixtures.Unlock()
	name := fmt.Sprint(n, by)
	ks := fixtures.keys[name]
	if ks == nil {
		ks = NewKeyset(n, by)
		fixtures.keys[name] = ks
	}
	return ks
}

func zipfSeq(n int) []uint32 {
	fixtures.Lock()
	defer fixtures.Unlock()
	name := fmt.Sprint(n)
	s := fixtures.seqs[name]
	if s == nil {
		s = ZipfIndexes(seqLen, n, zipfS, 42)
		fixtures.seqs[name] = s
	}
	return s
}

func newSubject(b *testing.B, m Maker, c Config) Subject {
	b.Helper()
	s, err := m.New(c)
	if err != nil {
		b.Fatalf("%s: %v", m.Name, err)
	}
	b.Cleanup(s.Close)
	return s
}

// runTimed runs body, a timed loop, with b.RunParallel under the
// profiler label phase=timed, which RunParallel's goroutines inherit: the
// report's profile keeps those samples alone, so that a workload's setup
// (filling and locking keys, generating them) does not count as its cost.
func runTimed(b *testing.B, body func(pb *testing.PB)) {
	pprof.Do(context.Background(), pprof.Labels(phaseLabel, phaseTimed), func(context.Context) {
		b.RunParallel(body)
	})
}

// The profiler label of timed loops (see runTimed).
const (
	phaseLabel = "phase"
	phaseTimed = "timed"
)

// start gives each RunParallel goroutine its own place in a sequence.
func start(next *atomic.Uint32) uint32 { return next.Add(1) * 0x9E3779B1 }

// BenchmarkLockedZipf: Locked on 100k tracked keys (1-4 failures each, every
// 16th key locked), key popularity zipf(1.1), keyed by IP.
func BenchmarkLockedZipf(b *testing.B) { benchLocked(b, 0) }

// BenchmarkLockedHot: the same with the 1,000 most popular keys locked
// (about two thirds of the calls): the attack case, where the clients
// that keep coming back are the ones locked out.
func BenchmarkLockedHot(b *testing.B) { benchLocked(b, hotKeys) }

// hotKeys is how many of the most popular keys BenchmarkLockedHot locks.
const hotKeys = 1000

// zipfRank is the key index of popularity rank r among n keys (see
// ZipfIndexes).
func zipfRank(r, n int) int { return int(uint64(r) * 2654435761 % uint64(n)) }

// benchLocked runs Locked on the tracked keys of BenchmarkLockedZipf, with
// the hot most popular keys locked too.
func benchLocked(b *testing.B, hot int) {
	ks, seq := keyset(trackedKeys, ByIP), zipfSeq(trackedKeys)
	c := Default()
	locked := make([]bool, ks.Len())
	for i := range locked {
		locked[i] = i%16 == 15
	}
	for r := range hot {
		locked[zipfRank(r, ks.Len())] = true
	}
	for _, m := range makers(b) {
		b.Run("keys=100k/by=ip/"+m.Name, func(b *testing.B) {
			s := newSubject(b, m, c)
			for i := range ks.Len() {
				n := 1 + i%4
				if locked[i] {
					n = c.Limit
				}
				for range n {
					s.Fail(ks.Key(i))
				}
			}
			if !s.Locked(ks.Key(15)) || s.Locked(ks.Key(14)) && !locked[14] {
				b.Fatalf("%s: tracked keys not in the expected state", m.Name)
			}
			if hot > 0 && !s.Locked(ks.Key(zipfRank(0, ks.Len()))) {
				b.Fatalf("%s: the most popular key is not locked", m.Name)
			}
			var next atomic.Uint32
			b.ReportAllocs()
			b.ResetTimer()
			runTimed(b, func(pb *testing.PB) {
				j, locked := start(&next), int64(0)
				for pb.Next() {
					if s.Locked(ks.Key(int(seq[j&(seqLen-1)]))) {
						locked++
					}
					j++
				}
				sink.Add(locked)
			})
		})
	}
}

// BenchmarkFailZipf: Fail on 100k usernames with zipf(1.1) popularity, from
// an empty limiter (popular names lock within the first few hundred calls).
func BenchmarkFailZipf(b *testing.B) {
	ks, seq := keyset(trackedKeys, ByUsername), zipfSeq(trackedKeys)
	c := Default()
	c.By = ByUsername
	for _, m := range makers(b) {
		b.Run("keys=100k/by=username/"+m.Name, func(b *testing.B) {
			s := newSubject(b, m, c)
			var next atomic.Uint32
			b.ReportAllocs()
			b.ResetTimer()
			runTimed(b, func(pb *testing.PB) {
				j, locked := start(&next), int64(0)
				for pb.Next() {
					if s.Fail(ks.Key(int(seq[j&(seqLen-1)]))) {
						locked++
					}
					j++
				}
				sink.Add(locked)
			})
		})
	}
}

// BenchmarkFailSpray: Fail on distinct IPs (each key is new), 1M-key cap
// where the subject has one. Keys come from a pool of 4M (2^22); a run of
// more operations than that wraps around to keys seen before.
func BenchmarkFailSpray(b *testing.B) {
	ks := keyset(sprayPool, ByIP)
	c := Default()
	for _, m := range makers(b) {
		b.Run("distinct/by=ip/cap=1M/"+m.Name, func(b *testing.B) {
			s := newSubject(b, m, c)
			var claimed atomic.Uint32
			b.ReportAllocs()
			b.ResetTimer()
			runTimed(b, func(pb *testing.PB) {
				const chunk = 256
				var j, end uint32
				locked := int64(0)
				for pb.Next() {
					if j == end {
						end = claimed.Add(chunk)
						j = end - chunk
					}
					if s.Fail(ks.Key(int(j & (sprayPool - 1)))) {
						locked++
					}
					j++
				}
				sink.Add(locked)
			})
		})
	}
}

// BenchmarkMixed: 90% Locked, 10% Fail, over 1M IPs with zipf(1.1)
// popularity, from an empty limiter.
func BenchmarkMixed(b *testing.B) {
	ks, seq := keyset(mixedKeys, ByIP), zipfSeq(mixedKeys)
	c := Default()
	for _, m := range makers(b) {
		b.Run("locked=90/fail=10/keys=1M/by=ip/"+m.Name, func(b *testing.B) {
			s := newSubject(b, m, c)
			var next atomic.Uint32
			b.ReportAllocs()
			b.ResetTimer()
			runTimed(b, func(pb *testing.PB) {
				j, locked := start(&next), int64(0)
				for pb.Next() {
					k := ks.Key(int(seq[j&(seqLen-1)]))
					var l bool
					if j%10 == 0 {
						l = s.Fail(k)
					} else {
						l = s.Locked(k)
					}
					if l {
						locked++
					}
					j++
				}
				sink.Add(locked)
			})
		})
	}
}

// BenchmarkHeapPerKey reports the live heap per tracked key after one failure
// on each of -heap.keys distinct IPs (1M-key cap where the subject has one).
// Run it with -benchtime 1x: every iteration measures the whole fill.
func BenchmarkHeapPerKey(b *testing.B) {
	c := Default()
	c.MaxKeys = max(c.MaxKeys, *heapKeys)
	for _, m := range makers(b) {
		b.Run(fmt.Sprintf("keys=%s/by=ip/%s", count(*heapKeys), m.Name), func(b *testing.B) {
			var sum float64
			for range b.N {
				per, err := HeapPerKey(m, c, *heapKeys)
				if err != nil {
					b.Fatal(err)
				}
				sum += per
			}
			b.ReportMetric(sum/float64(b.N), "bytes/key")
		})
	}
}

// BenchmarkSprayHeap reports the live heap while -spray.keys distinct IPs
// each fail once, with a -spray.cap key cap where the subject has one: its
// peak, its value once the cap is reached, and at the end. A flat heap has
// half ≈ final: no growth over the second half of the spray. Run it with
// -benchtime 1x.
func BenchmarkSprayHeap(b *testing.B) {
	c := Default()
	c.MaxKeys = *sprayCap
	for _, m := range makers(b) {
		b.Run(fmt.Sprintf("keys=%s/cap=%s/by=ip/%s", count(*sprayKeys), count(*sprayCap), m.Name), func(b *testing.B) {
			var r SprayResult
			for range b.N {
				var err error
				if r, err = Spray(m, c, *sprayKeys); err != nil {
					b.Fatal(err)
				}
			}
			const mb = 1 << 20
			cps := make([]string, len(r.Checkpoints))
			for i, g := range r.Checkpoints {
				cps[i] = fmt.Sprintf("%.1f", float64(g)/mb)
			}
			b.Logf("live heap growth (MB) at each tenth of the keys: %s", strings.Join(cps, " "))
			b.ReportMetric(float64(r.Peak)/mb, "peak-MB")
			b.ReportMetric(float64(r.AtCap)/mb, "atcap-MB")
			b.ReportMetric(float64(r.Half)/mb, "half-MB")
			b.ReportMetric(float64(r.Final)/mb, "final-MB")
		})
	}
}

// count formats 100000 as 100k and 1000000 as 1M.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
