package axesmetrics_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesmetrics"
	"github.com/axes-go/axes/storetest"
)

type recorder struct {
	mu   sync.Mutex
	ops  map[axes.Op]int
	errs int
}

func (r *recorder) ObserveDecision(op axes.Op, store string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ops == nil {
		r.ops = map[axes.Op]int{}
	}
	if store != "memory" || d < 0 {
		panic("bad observation")
	}
	r.ops[op]++
	if err != nil {
		r.errs++
	}
}

// The instrumented store applies exactly the wrapped store's transitions.
func TestInstrumentedStoreConforms(t *testing.T) {
	var r recorder
	storetest.Run(t, func() axes.Store {
		m, err := axes.NewMemoryStore(1 << 12)
		if err != nil {
			t.Fatal(err)
		}
		return axesmetrics.InstrumentStore(m, "memory", &r)
	})
	if r.ops[axes.OpFail] == 0 || r.ops[axes.OpBegin] == 0 || r.ops[axes.OpCheck] == 0 || r.ops[axes.OpReset] == 0 {
		t.Errorf("observed %v; want fail, begin, check and reset calls", r.ops)
	}
}

// bare is a store with none of the optional abilities.
type bare struct{ err error }

func (b bare) Apply(*axes.Request) error                        { return b.err }
func (b bare) ResetField(axes.Fields, axes.Digest) (int, error) { return 0, b.err }
func (b bare) ResetAll() (int, error)                           { return 0, b.err }
func (b bare) Close() error                                     { return nil }

type lister struct{ bare }

func (lister) Lockouts(time.Time) ([]axes.Lockout, error) { return []axes.Lockout{{Failures: 9}}, nil }

type reporter struct{ bare }

func (reporter) StoreStats() axes.StoreStats { return axes.StoreStats{Entries: 5} }

type both struct{ lister }

func (both) StoreStats() axes.StoreStats { return axes.StoreStats{Entries: 6} }

// The wrapper keeps exactly the optional abilities of the wrapped store.
func TestInstrumentKeepsAbilities(t *testing.T) {
	for _, tc := range []struct {
		name          string
		s             axes.Store
		lists, stats  bool
		entries, fail int
	}{
		{"bare", bare{}, false, false, 0, 0},
		{"lister", lister{}, true, false, 0, 9},
		{"reporter", reporter{}, false, true, 5, 0},
		{"both", both{}, true, true, 6, 9},
	} {
		w := axesmetrics.InstrumentStore(tc.s, "x")
		ll, lists := w.(axes.LockLister)
		sr, stats := w.(axes.StatsReporter)
		if lists != tc.lists || stats != tc.stats {
			t.Errorf("%s: lists %v stats %v, want %v %v", tc.name, lists, stats, tc.lists, tc.stats)
			continue
		}
		if lists {
			lo, _ := ll.Lockouts(time.Time{})
			if len(lo) != 1 || lo[0].Failures != tc.fail {
				t.Errorf("%s: Lockouts = %v", tc.name, lo)
			}
		}
		if stats && sr.StoreStats().Entries != tc.entries {
			t.Errorf("%s: StoreStats = %+v", tc.name, sr.StoreStats())
		}
	}
}

// Errors reach the observer and the caller unchanged.
func TestInstrumentReportsErrors(t *testing.T) {
	boom := errors.New("boom")
	var got []error
	w := axesmetrics.InstrumentStore(bare{boom}, "redis", axesmetrics.ObserverFunc(func(op axes.Op, store string, d time.Duration, err error) {
		if store != "redis" {
			t.Errorf("store %q", store)
		}
		got = append(got, err)
	}))
	if err := w.Apply(&axes.Request{Op: axes.OpFail}); err != boom {
		t.Errorf("Apply = %v", err)
	}
	if _, err := w.ResetAll(); err != boom {
		t.Errorf("ResetAll = %v", err)
	}
	if _, err := w.ResetField(axes.IP, axes.Digest{}); err != boom {
		t.Errorf("ResetField = %v", err)
	}
	if len(got) != 3 || got[0] != boom || got[2] != boom {
		t.Errorf("observed %v", got)
	}
}
