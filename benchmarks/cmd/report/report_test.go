package main

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/axes-go/axes/benchmarks
cpu: Test CPU @ 1GHz
BenchmarkLockedZipf/keys=100k/by=ip/axes-2         	1000	       40.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkLockedZipf/keys=100k/by=ip/axes-2         	1000	       50.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkLockedZipf/keys=100k/by=ip/axes-2         	1000	       45.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkLockedZipf/keys=100k/by=ip/baseline-2     	1000	       60.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkLockedZipf/keys=100k/by=ip/otter-2        	1000	      100.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkLockedZipf/keys=100k/by=ip/go-cache-2     	1000	      200.0 ns/op	      16 B/op	       1 allocs/op
BenchmarkMixed/locked=90/fail=10/keys=1M/by=ip/axes-2  	1000	      90.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkMixed/locked=90/fail=10/keys=1M/by=ip/baseline-2	1000	      80.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkMixed/locked=90/fail=10/keys=1M/by=ip/otter-2	1000	     120.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkHeapPerKey/keys=1M/by=ip/axes-2           	       1	1000000 ns/op	        40.0 bytes/key
BenchmarkHeapPerKey/keys=1M/by=ip/otter-2          	       1	1000000 ns/op	       130.0 bytes/key
BenchmarkSprayHeap/keys=10M/cap=1M/by=ip/axes-2    	       1	1000000 ns/op	        38.0 atcap-MB	        39.0 half-MB	        39.2 final-MB	        40.0 peak-MB
BenchmarkSprayHeap/keys=10M/cap=1M/by=ip/go-cache-2	       1	1000000 ns/op	       100.0 atcap-MB	       500 half-MB	      1000 final-MB	      1000 peak-MB
BenchmarkSprayHeap/keys=10M/cap=1M/by=ip/axes-2
some log line
PASS
`

func TestParse(t *testing.T) {
	r, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if r.CPU != "Test CPU @ 1GHz" || r.GOOS != "linux" || r.Procs != 2 {
		t.Fatalf("header: %+v", r)
	}
	if got := strings.Join(r.Workloads, ","); got != "LockedZipf,Mixed,HeapPerKey,SprayHeap" {
		t.Fatalf("workloads %s", got)
	}
	if got := r.Params["Mixed"]; got != "locked=90/fail=10/keys=1M/by=ip" {
		t.Fatalf("params %q", got)
	}
	for _, c := range []struct {
		w, s, unit string
		want       float64
	}{
		{"LockedZipf", "axes", "ns/op", 45}, // median of 40, 50, 45
		{"LockedZipf", "go-cache", "allocs/op", 1},
		{"HeapPerKey", "otter", "bytes/key", 130},
		{"SprayHeap", "go-cache", "atcap-MB", 100},
	} {
		if got, ok := r.Get(c.w, c.s, c.unit); !ok || got != c.want {
			t.Errorf("%s/%s %s = %v, %v; want %v", c.w, c.s, c.unit, got, ok, c.want)
		}
	}
	if _, err := Parse(strings.NewReader("PASS\n")); err == nil {
		t.Error("output without results accepted")
	}
	if _, err := Parse(strings.NewReader("BenchmarkX-2 1 2.0 ns/op\n")); err == nil {
		t.Error("benchmark without a subject accepted")
	}
}

func TestTargets(t *testing.T) {
	r, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(Targets(r), "\n")
	for _, want := range []string{
		// fastest peer otter 100 ns/op; axes 45: 2.22× → met
		"LockedZipf: axes 45 ns/op, fastest peer otter 100 ns/op, axes is 2.22× its throughput (target ≥ 2×): **met**.",
		"LockedZipf: axes 45 ns/op vs baseline 60 ns/op (target: no slower): **met**.",
		// otter 120 vs axes 90: 1.33× → missed, needs ≤ 60 ns/op
		"Mixed: axes 90 ns/op, fastest peer otter 120 ns/op, axes is 1.33× its throughput (target ≥ 2×): **missed**: axes needs ≤ 60 ns/op, 1.50× faster than now.",
		"Mixed: axes 90 ns/op vs baseline 80 ns/op (target: no slower): **missed** by 1.12×.",
		"Memory: axes 40 bytes/key, least of the others otter 130 bytes/key (target: least): **met**.",
		"axes live heap 38 MB at the cap, 39 MB half way, 39.2 MB at the end, peak 40 MB (target: flat, at most 1% growth over the second half of the spray): **met**.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("targets lack %q; got:\n%s", want, got)
		}
	}
}

func TestMarkdownAndChart(t *testing.T) {
	r, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	env := Env{CPU: r.CPU, OS: "linux/amd64", Go: "go1.26.8", Procs: r.Procs, Date: "2025-03-01", Commands: []string{"go test"}}
	md := Markdown(r, env, sample)
	for _, want := range []string{
		"- CPU: Test CPU @ 1GHz, GOMAXPROCS 2 (linux/amd64)",
		"- Go: go1.26.8",
		"| **axes** | 45 | 0 | 0 | 1.00× |",
		"| go-cache | 200 | 1 | 16 | 4.44× |",
		"| otter | yes | 130 | 3.25× | – | – | – | – |",
		"| go-cache | none | – | – | 100 | 500 | 1000 | 1000 |",
		"![ns/op and memory per subject](chart.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	svg := Chart(r, env)
	d := xml.NewDecoder(strings.NewReader(svg))
	rects := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	// background + 4 LockedZipf + 3 Mixed + 2 heap + 2 spray bars
	if rects != 1+4+3+2+2 {
		t.Errorf("chart has %d rects", rects)
	}
	if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
		t.Error("chart has a non-finite number")
	}
}

func TestSummarySplice(t *testing.T) {
	r, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	sum := Summary(r, Env{CPU: "Test CPU", Procs: 2, Go: "go1.26.8", Date: "2025-03-01"})
	for _, want := range []string{
		"| subject | LockedZipf ns/op | Mixed ns/op | bytes/key | spray peak MB |",
		"| **axes** | 45 | 90 | 40 | 40 |",
		"| go-cache | 200 | – | – | 1000 |",
	} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	doc := "intro\n" + beginMarker + "\nold table\n" + endMarker + "\nrest\n"
	got, ok := splice(doc, "new\n")
	if !ok || got != "intro\n"+beginMarker+"\nnew\n"+endMarker+"\nrest\n" {
		t.Errorf("splice = %q, %v", got, ok)
	}
	if _, ok := splice("no markers", "x"); ok {
		t.Error("splice without markers reported success")
	}
}

const pprofTop = `File: benchmarks.test
Type: cpu
Duration: 4.18s, Total samples = 4s (95.69%)
Showing nodes accounting for 4s, 100% of 4s total
      flat  flat%   sum%        cum   cum%
     1.20s 30.00% 30.00%      1.20s 30.00%  runtime.nanotime (inline)
     800ms 20.00% 50.00%      800ms 20.00%  github.com/axes-go/axes.(*hasher).mix
     600ms 15.00% 65.00%      600ms 15.00%  github.com/axes-go/axes.(*shard).find
     400ms 10.00% 75.00%      400ms 10.00%  internal/sync.(*Mutex).Lock (inline)
     400ms 10.00% 85.00%      400ms 10.00%  github.com/axes-go/axes.(*sketch).estimate
     300ms  7.50% 92.50%      300ms  7.50%  github.com/axes-go/axes.(*memStore).apply
     200ms  5.00% 97.50%      3.9s  97.50%  github.com/axes-go/axes/benchmarks.(*axesSubject).Locked
     100ms  2.50%   100%      100ms  2.50%  runtime.mallocgc
         0     0%   100%      3.9s  97.50%  testing.(*B).RunParallel.func1
`

func TestProfileBreakdown(t *testing.T) {
	by, total, err := parseTop(pprofTop)
	if err != nil {
		t.Fatal(err)
	}
	if total != 4 {
		t.Errorf("total %v s, want 4", total)
	}
	want := map[string]float64{
		"clock": 1.2, "hash (key digests)": 0.8, "table probe and lock cache": 0.6, "lock (shard mutex)": 0.4,
		"eviction and sketch": 0.4, "policy, verdict and bookkeeping": 0.3, "benchmark driver": 0.2, "runtime (GC, scheduler)": 0.1,
	}
	for c, v := range want {
		if d := by[c] - v; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s: %v s, want %v", c, by[c], v)
		}
	}
	if _, _, err := parseTop("no table here\n"); err == nil {
		t.Error("parseTop accepted an output without a table")
	}
	r, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	env := Env{Procs: 2, Profiles: []Profile{{Workload: "LockedZipf", Total: total, ByCat: by}}}
	md := Markdown(r, env, sample)
	// 30% of the median 45 ns/op × 2 procs.
	if !strings.Contains(md, "| clock | 30% (27) |") || !strings.Contains(md, "## Where axes spends its time") {
		t.Errorf("markdown lacks the breakdown:\n%s", md)
	}
	// The floor: driver 0.2 + clock 1.2 + lock 0.4 + hash 0.8 + probe 0.6
	// of 4 s, 80%: 72 CPU ns, 36 ns/op against a target of otter's 100 / 2.
	for _, want := range []string{
		"| **the floor** (driver, clock, lock, hash, table probe) | 80% (72) |",
		"| **axes' own work** (the rest) | 20% (18) |",
		"- LockedZipf: floor 36 of axes' 45 ns/op; target ≤ 50 (otter 100): below the target",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestCategory places functions of real profiles: each in the category of
// what it does, the rest in axes' policy and bookkeeping.
func TestCategory(t *testing.T) {
	for fn, want := range map[string]string{
		"github.com/axes-go/axes.shortHash[go.shape.string]":                                 "hash (key digests)",
		"github.com/axes-go/axes.mum":                                                        "hash (key digests)",
		"github.com/axes-go/axes.canonicalIP":                                                "hash (key digests)",
		"github.com/axes-go/axes.(*hasher).usernameDigest":                                   "hash (key digests)",
		"time.runtimeNano":                                                                   "clock",
		"runtime.nanotime (inline)":                                                          "clock",
		"github.com/axes-go/axes.(*memStore).cacheSet":                                       "table probe and lock cache",
		"sync/atomic.(*Pointer[go.shape.[]github.com/axes-go/axes.lockEntry]).Load (inline)": "table probe and lock cache",
		"github.com/axes-go/axes.(*memStore).peekLock":                                       "table probe and lock cache",
		"math/rand/v2.(*Zipf).Uint64":                                                        "benchmark driver",
		"github.com/axes-go/axes/benchmarks.(*Keyset).Key":                                   "benchmark driver",
		"github.com/axes-go/axes.(*Limiter).cached":                                          "policy, verdict and bookkeeping",
		"github.com/axes-go/axes.(*memStore).apply":                                          "policy, verdict and bookkeeping",
		"runtime.mallocgc":                                                                   "runtime (GC, scheduler)",
		"net/netip.AddrFrom4":                                                                "benchmark driver",
		"time.subMono":                                                                       "clock",
		"time.runtimeIsBubbled":                                                              "clock",
		"sync/atomic.(*Uint32).Load":                                                         "table probe and lock cache",
		"github.com/axes-go/axes.cacheDrop":                                                  "table probe and lock cache",
		"github.com/axes-go/axes.(*cell).lockWrite":                                          "eviction and sketch",
	} {
		if got := category(fn); got != want {
			t.Errorf("category(%q) = %q, want %q", fn, got, want)
		}
	}
}
