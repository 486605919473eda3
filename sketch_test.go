package axes

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/axes-go/axes/store"
)

// TestSketchConcurrentFoldsNeverUnderCount: goroutines fold the states of
// a few keys into the sketch at once, so that each of their cells takes
// folds from several writers at the same time; afterwards every key's estimate is at
// least its own state in every field. A fold lost to a concurrent one
// (the cells have no lock in common) would leave some key under-counted.
// Estimates read concurrently with the folds must never panic or report
// less than what was folded before they began (checked on a key folded
// before the race).
func TestSketchConcurrentFoldsNeverUnderCount(t *testing.T) {
	const (
		writers = 8
		perW    = 20000
		keys    = 32 // digests drawn from a small pool: folds meet in the same cells
		window  = time.Hour
		decay   = time.Hour
	)
	now := 10 * time.Minute
	sk := newSketch(16) // 256 cells a row: every cell is shared by many keys
	type rec struct {
		d Digest
		s store.State
	}
	pinned := rec{Digest{Hi: 1, Lo: 2}, store.State{Failures: 3, LastFail: now, Level: 1, LockEnd: now + time.Minute}}
	sk.record(pinned.d, &pinned.s, now, window, decay)
	pool := make([]Digest, keys)
	for i := range pool {
		pool[i] = Digest{Hi: rand.Uint64(), Lo: rand.Uint64()}
	}
	recs := make([][]rec, writers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			est, ok := sk.estimate(pinned.d, now, window)
			if !ok || est.Failures < 3 || est.Level < 1 || est.LockEnd < pinned.s.LockEnd {
				t.Errorf("estimate of a key folded before the race = %+v, %v; want at least %+v", est, ok, pinned.s)
				return
			}
		}
	}()
	for w := range writers {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range perW {
				s := store.State{
					Failures: 1 + r.IntN(200),
					LastFail: now - time.Duration(r.IntN(300))*time.Second,
					Level:    r.IntN(4),
				}
				if r.IntN(4) == 0 {
					s.LockEnd = now + time.Duration(1+r.IntN(3600))*time.Second
				}
				d := pool[r.IntN(keys)]
				sk.record(d, &s, now, window, decay)
				recs[w] = append(recs[w], rec{d, s})
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	<-readerDone
	under := 0
	for _, rs := range recs {
		for _, r := range rs {
			est, ok := sk.estimate(r.d, now, window)
			if !ok || est.Failures < r.s.Failures || est.LastFail < r.s.LastFail || est.Level < r.s.Level || est.LockEnd < r.s.LockEnd {
				if under++; under <= 5 {
					t.Errorf("estimate %+v, %v; folded %+v", est, ok, r.s)
				}
			}
		}
	}
	if under > 0 {
		t.Errorf("%d of %d keys under-counted", under, writers*perW)
	}
}

// TestSketchCellWriterBit: a cell's writer bit excludes other writers:
// goroutines that each add one to a cell's failures many times, under
// the bit, lose none of their additions.
func TestSketchCellWriterBit(t *testing.T) {
	const writers, perW = 4, 10000
	var c cell
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perW {
				fails, level := cellFields(c.lockWrite())
				c.lastFail.Store(c.lastFail.Load() + 1)
				c.unlockWrite(fails+1, level)
			}
		}()
	}
	wg.Wait()
	fails, _ := cellFields(c.fl.Load())
	if want := writers * perW; int(fails) != want%(1<<16) || int(c.lastFail.Load()) != want {
		t.Errorf("after %d additions: failures %d (mod 2^16), lastFail %d; want %d, %d", want, fails, c.lastFail.Load(), want%(1<<16), want)
	}
	if c.fl.Load()&cellWriting != 0 {
		t.Error("the writer bit is still held")
	}
}
