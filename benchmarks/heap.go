package benchmarks

import (
	"math"
	"runtime"
)

// LiveHeap collects garbage and returns the bytes of live heap objects.
// Some peers free their memory only after a finalizer has stopped their
// cleanup goroutine, which takes more than one collection, so it collects
// until the heap stops shrinking (at most five times).
func LiveHeap() uint64 {
	var ms runtime.MemStats
	prev := uint64(math.MaxUint64)
	for range 5 {
		runtime.GC()
		runtime.Gosched() // let finalizers and the goroutines they stop run
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc >= prev-prev/100 {
			return min(ms.HeapAlloc, prev)
		}
		prev = ms.HeapAlloc
	}
	return prev
}

// HeapPerKey builds a subject, records one failure for each of n distinct
// keys (each with a freshly allocated key string, as a server would pass),
// and returns the growth of the live heap, construction included, divided by
// n.
func HeapPerKey(m Maker, c Config, n int) (float64, error) {
	before := LiveHeap()
	s, err := m.New(c)
	if err != nil {
		return 0, err
	}
	for i := range n {
		s.Fail(FreshKey(uint32(i), c.By))
	}
	after := LiveHeap()
	runtime.KeepAlive(s)
	s.Close()
	return float64(int64(after)-int64(before)) / float64(n), nil
}

// SprayResult is the live heap seen while n distinct keys were sprayed at
// one subject.
type SprayResult struct {
	// Peak is the largest live heap growth over the start, in bytes, at any
	// checkpoint.
	Peak uint64
	// AtCap is the growth at the first checkpoint at or after the cap (or
	// after a tenth of the keys when there is no cap).
	AtCap uint64
	// Half is the growth at the fifth checkpoint, half way through.
	Half uint64
	// Final is the growth after the last key.
	Final uint64
	// Checkpoints holds the growth at each of the ten checkpoints.
	Checkpoints []uint64
}

// Spray records one failure for each of n distinct keys and samples the live
// heap at ten checkpoints (a full collection each). Keys are fresh strings,
// as in HeapPerKey.
func Spray(m Maker, c Config, n int) (SprayResult, error) {
	var r SprayResult
	before := LiveHeap()
	s, err := m.New(c)
	if err != nil {
		return r, err
	}
	step := max(n/10, 1)
	capAt := step
	if m.Capped && c.MaxKeys > 0 {
		capAt = (c.MaxKeys + step - 1) / step * step
	}
	for i := range n {
		s.Fail(FreshKey(uint32(i), c.By))
		if j := i + 1; j%step == 0 || j == n {
			g := uint64(max(int64(LiveHeap())-int64(before), 0))
			r.Peak = max(r.Peak, g)
			if j == capAt || (r.AtCap == 0 && j > capAt) {
				r.AtCap = g
			}
			r.Final = g
			r.Checkpoints = append(r.Checkpoints, g)
			if len(r.Checkpoints) == 5 {
				r.Half = g
			}
		}
	}
	runtime.KeepAlive(s)
	s.Close()
	return r, nil
}
