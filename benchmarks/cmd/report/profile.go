package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Where axes spends its time: each parallel workload runs once more for
// axes alone under the CPU profiler, and the flat samples of every
// function are summed by what the function does. The shares show how much
// of a call is the physical floor of any limiter (reading the clock,
// hashing the key, finding the key's memory, taking a lock) and how much is
// axes' own work (policy, eviction, bookkeeping).

// Profile is the flat CPU samples of one workload, summed by category.
type Profile struct {
	Workload string
	Total    float64            // seconds of samples
	ByCat    map[string]float64 // seconds of samples by category
}

// categories in report order, each with the name patterns that place a
// function in it; a function goes to the first category one of whose
// patterns it contains. Functions no pattern matches are axes' policy and
// bookkeeping, or the runtime's.
var categories = []struct {
	name     string
	patterns []string
}{
	// netip.AddrFrom4: the driver builds each key's address (axes calls it
	// only to list lockouts).
	{"benchmark driver", []string{"testing.", "axes-go/axes/benchmarks.", "math/rand/v2.(*Zipf)", "net/netip.AddrFrom4"}},
	{"clock", []string{"runtime.nanotime", "runtime.walltime", "time.Now", "time.Since", "time.Time.", "time.runtimeNano",
		"time.subMono", "time.runtimeIsBubbled", "(*timeline)", "instantOf", "vdso"}},
	{"lock (shard mutex)", []string{"sync.(*Mutex)", "internal/sync.", "sync.runtime_", "runtime.procyield", "runtime.lock"}},
	{"hash (key digests)", []string{"xxhash", "(*hasher)", "Digest", "encodeIP", "canonicalIP", "fieldsOf", "(*fieldSet)", "axes.shortHash", "axes.mum"}},
	{"table probe and lock cache", []string{"(*shard).find", "(*shard).place", "matchH2", "matchEmpty", "matchFull", "peekLock", "mayBeLocked", "lockedFromCache", "cachedAt", "cacheSet", "filterIndex", "lockEntryOf", "axes.lockEntry]).Load", "fastrange", "axes.h2",
		// The loads of the filter's words and the lock cache's entries,
		// where the profile names the atomic type's method.
		"sync/atomic.(*Uint32).Load", "sync/atomic.(*Uint64).Load", "cacheDrop"}},
	{"eviction and sketch", []string{"makeRoom", "evict", "(*sketch)", "(*cell)", "fold", "sweep", "rehash", "resize", "(*memStore).remove", "expired", "overflow", "eachFull", "lockedOrReserved", "raise"}},
	{"runtime (GC, scheduler)", []string{"runtime."}},
	{"policy, verdict and bookkeeping", []string{""}},
}

// category returns the category of the function fn.
func category(fn string) string {
	for _, c := range categories {
		for _, p := range c.patterns {
			if strings.Contains(fn, p) {
				return c.name
			}
		}
	}
	return categories[len(categories)-1].name
}

// parseTop reads the output of `go tool pprof -top` and returns the flat
// seconds of samples by category and their total.
func parseTop(text string) (map[string]float64, float64, error) {
	by := map[string]float64{}
	total := 0.0
	sc := bufio.NewScanner(strings.NewReader(text))
	inTable := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && f[0] == "flat" && f[1] == "flat%" {
			inTable = true
			continue
		}
		if !inTable || len(f) < 6 {
			continue
		}
		sec, err := seconds(f[0])
		if err != nil {
			return nil, 0, fmt.Errorf("pprof line %q: %v", sc.Text(), err)
		}
		by[category(f[5])] += sec
		total += sec
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	if !inTable {
		return nil, 0, fmt.Errorf("no table in the pprof output")
	}
	return by, total, nil
}

// seconds parses a pprof duration such as "1.20s", "350ms" or "0".
func seconds(s string) (float64, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "ms"):
		s, mult = strings.TrimSuffix(s, "ms"), 1e-3
	case strings.HasSuffix(s, "us"), strings.HasSuffix(s, "µs"):
		s, mult = strings.TrimSuffix(strings.TrimSuffix(s, "us"), "µs"), 1e-6
	case strings.HasSuffix(s, "ns"):
		s, mult = strings.TrimSuffix(s, "ns"), 1e-9
	case strings.HasSuffix(s, "s"):
		s = strings.TrimSuffix(s, "s")
	}
	v, err := strconv.ParseFloat(s, 64)
	return v * mult, err
}

// profileWorkloads profiles axes on each parallel workload, in dir, with
// the given -benchtime for the spray and the others.
func profileWorkloads(dir, benchtime string, sprayOps int) ([]Profile, []string, error) {
	var out []Profile
	var cmds []string
	for _, w := range parallel {
		bt := benchtime
		if w.name == "FailSpray" {
			bt = fmt.Sprintf("%dx", sprayOps)
		}
		prof := filepath.Join(dir, w.name+".prof")
		bin := filepath.Join(dir, "benchmarks.test")
		args := []string{"test", "-run", "^$", "-bench", "^Benchmark" + w.name + "$", "-benchtime", bt,
			"-cpuprofile", prof, "-o", bin, "-args", "-subjects=^axes$"}
		cmds = append(cmds, "go "+strings.Join(quote(args), " "))
		if _, err := goCmd(os.Stderr, args...); err != nil {
			return nil, nil, fmt.Errorf("go %s: %v", strings.Join(args, " "), err)
		}
		// Only the timed loops' samples: the benchmarks label them (runTimed).
		top, err := goCmd(io.Discard, "tool", "pprof", "-top", "-nodefraction=0", "-nodecount=100000", "-tagfocus=phase=timed", bin, prof)
		if err != nil {
			return nil, nil, fmt.Errorf("pprof %s: %v", prof, err)
		}
		by, total, err := parseTop(string(top))
		if err != nil {
			return nil, nil, fmt.Errorf("pprof %s: %v", prof, err)
		}
		out = append(out, Profile{Workload: w.name, Total: total, ByCat: by})
	}
	return out, cmds, nil
}

// profileMarkdown renders the breakdown: for each workload, the share of
// axes' CPU time in each category and the CPU nanoseconds per operation it
// stands for (the share of the median ns/op times GOMAXPROCS: the parallel
// workloads keep every core busy).
func profileMarkdown(r *Results, env Env, ps []Profile) string {
	if len(ps) == 0 {
		return ""
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("\n## Where axes spends its time\n\n")
	p("Each parallel workload ran once more for axes alone under the CPU profiler; the flat samples of every ")
	p("function are summed by what the function does; the samples of the timed loop alone (labelled phase=timed), ")
	p("not of the workload's setup. Each cell is the share of axes' CPU time and, in brackets, ")
	p("the CPU ns per operation it stands for (the share of the median ns/op above × GOMAXPROCS %d). ", env.Procs)
	p("The clock, the hash and the table probe (one dependent cache miss for a key not in cache) are the floor of ")
	p("any limiter that keys by a client and keeps time; the lock is the floor of one that writes; the benchmark driver ")
	p("(drawing the key, the loop) is paid by every subject alike. The last two rows sum the floor and what remains.\n\n")
	p("| category |")
	for _, pr := range ps {
		p(" %s |", pr.Workload)
	}
	p("\n| --- |%s\n", strings.Repeat(" ---: |", len(ps)))
	// A row per category, then the floor summed and what remains: axes'
	// own work.
	type row struct {
		name string
		in   func(cat string) bool
	}
	var rows []row
	for _, c := range categories {
		rows = append(rows, row{c.name, func(cat string) bool { return cat == c.name }})
	}
	rows = append(rows,
		row{"**the floor** (driver, clock, lock, hash, table probe)", isFloor},
		row{"**axes' own work** (the rest)", func(c string) bool { return !isFloor(c) }})
	for _, rw := range rows {
		p("| %s |", rw.name)
		for _, pr := range ps {
			share := pr.share(rw.in)
			if ns, ok := r.Get(pr.Workload, subjectAxes, "ns/op"); ok {
				p(" %.0f%% (%s) |", share*100, num(share*ns*float64(max(env.Procs, 1))))
			} else {
				p(" %.0f%% |", share*100)
			}
		}
		p("\n")
	}
	// Against the 2× target: the floor alone, in ns/op.
	p("\nThe floor in ns/op (its share of axes' ns/op) against the target of half the fastest peer's ns/op:\n\n")
	for _, pr := range ps {
		ns, ok := r.Get(pr.Workload, subjectAxes, "ns/op")
		best, bestName := fastestPeer(r, pr.Workload)
		if !ok || bestName == "" {
			continue
		}
		floor := pr.share(isFloor) * ns
		verdict := "below the target: axes' own work is what stands between"
		if floor > best/2 {
			verdict = "above the target: the floor alone misses it"
		}
		p("- %s: floor %s of axes' %s ns/op; target ≤ %s (%s %s): %s.\n", pr.Workload, num(floor), num(ns), num(best/2), bestName, num(best), verdict)
	}
	return b.String()
}

// floorCategories are the categories of the physical floor of a limiter
// that keys by a client, keeps time and writes: the driver's own cost, which
// every subject pays, the clock, the lock, the key's hash and finding its
// memory.
var floorCategories = map[string]bool{
	"benchmark driver": true, "clock": true, "lock (shard mutex)": true,
	"hash (key digests)": true, "table probe and lock cache": true,
}

func isFloor(cat string) bool { return floorCategories[cat] }

// share returns the share of the profile's samples in the categories in
// selects, summed in the order of categories.
func (p Profile) share(in func(cat string) bool) float64 {
	if p.Total <= 0 {
		return 0
	}
	sum := 0.0
	for _, c := range categories { // in their order: a sum in map order may round differently from run to run
		if in(c.name) {
			sum += p.ByCat[c.name]
		}
	}
	return sum / p.Total
}
