package axes

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/axes-go/axes/store"
)

// TestSketchConcurrentFoldsNeverUnderCount: goroutines fold the states of
// a few keys into the sketch at once, so that their cells take folds from
// several writers at the same time. Each writer's values only rise and
// differ from every other writer's, and right after each fold the writer
// checks that the key's estimate holds at least what it folded: a fold
// lost to a concurrent one (a writer storing what it computed from the
// cell before the other's fold) shows as an estimate below it. A reader
// meanwhile checks a key folded before the race, field by field.
func TestSketchConcurrentFoldsNeverUnderCount(t *testing.T) {
	const (
		writers = 8
		perW    = 8000 // writers*perW stays below MaxFailures: every value is distinct
		keys    = 32   // digests drawn from a small pool, so that folds meet in the same cells
		window  = 24 * time.Hour
		decay   = 24 * time.Hour
	)
	now := time.Hour
	sk := newSketch(16)
	pinned := struct {
		d Digest
		s store.State
	}{Digest{Hi: 1, Lo: 2}, store.State{Failures: 3, LastFail: now, Level: 1, LockEnd: now + time.Minute}}
	sk.record(pinned.d, &pinned.s, now, window, decay)
	pool := make([]Digest, keys)
	for i := range pool {
		pool[i] = Digest{Hi: rand.Uint64(), Lo: rand.Uint64()}
	}
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
			if !ok || est.Failures < 3 || est.LastFail < now || est.Level < 1 || est.LockEnd < pinned.s.LockEnd {
				t.Errorf("estimate of a key folded before the race = %+v, %v; want at least %+v", est, ok, pinned.s)
				return
			}
		}
	}()
	var mu sync.Mutex
	under := 0
	for w := range writers {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range perW {
				v := i*writers + w + 1 // rises for this writer, distinct from every other's
				s := store.State{
					Failures: v,
					LastFail: now + time.Duration(v)*time.Millisecond,
					Level:    r.IntN(4),
					LockEnd:  now + time.Duration(v)*time.Second,
				}
				d := pool[r.IntN(keys)]
				sk.record(d, &s, now, window, decay)
				est, ok := sk.estimate(d, now, window)
				if !ok || est.Failures < s.Failures || est.LastFail < s.LastFail.Truncate(time.Second) || est.Level < s.Level || est.LockEnd < s.LockEnd {
					mu.Lock()
					if under++; under <= 5 {
						t.Errorf("writer %d: estimate %+v, %v right after folding %+v", w, est, ok, s)
					}
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	<-readerDone
	if under > 0 {
		t.Errorf("%d of %d folds under-counted right after they were made", under, writers*perW)
	}
}

// TestSketchCellWriterBit: a cell's writer bit excludes other writers:
// goroutines that each add one to a cell's failures many times, under
// the bit, lose none of their additions.
func TestSketchCellWriterBit(t *testing.T) {
	const writers, perW = 4, 50000
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

// TestSketchDropsWhatExpired: a fold drops from a cell what has expired
// for every key of it, before it adds its own state: failures a window
// after the latest of them, a back-off level a decay after the latest
// lock end (and that lock end with it); what has not expired stays.
func TestSketchDropsWhatExpired(t *testing.T) {
	const window, decay = time.Minute, time.Hour
	d := Digest{Hi: 3, Lo: 4}
	t0 := time.Hour
	for _, c := range []struct {
		name       string
		first      store.State
		at         time.Duration // when the second fold comes
		second     store.State
		fails      int
		level      int
		lockEndSet bool
	}{
		{"failures expired", store.State{Failures: 5, LastFail: t0}, t0 + window, store.State{Failures: 1, LastFail: t0 + window}, 1, 0, false},
		{"failures live", store.State{Failures: 5, LastFail: t0}, t0 + window - time.Second, store.State{Failures: 1, LastFail: t0 + window - time.Second}, 5, 0, false},
		{"level decayed", store.State{Level: 2, LockEnd: t0}, t0 + decay, store.State{Failures: 1, LastFail: t0 + decay}, 1, 0, false},
		{"level kept", store.State{Level: 2, LockEnd: t0}, t0 + decay - time.Second, store.State{Failures: 1, LastFail: t0 + decay - time.Second}, 1, 2, true},
		{"lock current", store.State{Failures: 5, LastFail: t0 - window, LockEnd: t0 + window}, t0, store.State{Failures: 1, LastFail: t0}, 1, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			sk := newSketch(16)
			sk.record(d, &c.first, c.first.LastFail, window, decay)
			sk.record(d, &c.second, c.at, window, decay)
			est, _ := sk.estimate(d, c.at, window)
			if est.Failures != c.fails || est.Level != c.level || (est.LockEnd != 0) != c.lockEndSet {
				t.Errorf("estimate %+v; want %d failures, level %d, a lock end: %v", est, c.fails, c.level, c.lockEndSet)
			}
			for _, i := range sk.index(d) {
				if sk.cells[i].fl.Load()&cellWriting != 0 {
					t.Fatal("a writer bit is still held")
				}
			}
		})
	}
}
