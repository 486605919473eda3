package axesmetrics_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/axes-go/axes/axesmetrics"
	"github.com/axes-go/axes/store"
	"github.com/axes-go/axes/storetest"
)

type recorder struct {
	mu   sync.Mutex
	ops  map[store.Op]int
	errs int
}

func (r *recorder) ObserveDecision(op store.Op, storeName string, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ops == nil {
		r.ops = map[store.Op]int{}
	}
	if storeName != "memory" || d < 0 {
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
	storetest.Run(t, func() store.Store {
		m, err := store.NewMemory(1<<12, store.Rule{})
		if err != nil {
			t.Fatal(err)
		}
		return axesmetrics.InstrumentStore(m, "memory", &r)
	})
	if r.ops[store.OpFail] == 0 || r.ops[store.OpBegin] == 0 || r.ops[store.OpCheck] == 0 || r.ops[store.OpReset] == 0 {
		t.Errorf("observed %v; want fail, begin, check and reset calls", r.ops)
	}
}

// bare is a store with none of the optional abilities.
type bare struct{ err error }

func (b bare) Apply(context.Context, *store.Request) error                         { return b.err }
func (b bare) ResetField(context.Context, store.Fields, store.Digest) (int, error) { return 0, b.err }
func (b bare) ResetAll(context.Context) (int, error)                               { return 0, b.err }
func (b bare) Close() error                                                        { return nil }

type lister struct{ bare }

func (lister) Lockouts(context.Context, time.Time) ([]store.Lockout, error) {
	return []store.Lockout{{Failures: 9}}, nil
}

type reporter struct{ bare }

func (reporter) StoreStats() store.Stats { return store.Stats{Entries: 5} }

type both struct{ lister }

func (both) StoreStats() store.Stats { return store.Stats{Entries: 6} }

// The wrapper keeps exactly the optional abilities of the wrapped store.
func TestInstrumentKeepsAbilities(t *testing.T) {
	for _, tc := range []struct {
		name          string
		s             store.Store
		lists, stats  bool
		entries, fail int
	}{
		{"bare", bare{}, false, false, 0, 0},
		{"lister", lister{}, true, false, 0, 9},
		{"reporter", reporter{}, false, true, 5, 0},
		{"both", both{}, true, true, 6, 9},
	} {
		w := axesmetrics.InstrumentStore(tc.s, "x")
		ll, lists := w.(store.LockLister)
		sr, stats := w.(store.StatsReporter)
		if lists != tc.lists || stats != tc.stats {
			t.Errorf("%s: lists %v stats %v, want %v %v", tc.name, lists, stats, tc.lists, tc.stats)
			continue
		}
		if lists {
			lo, _ := ll.Lockouts(context.Background(), time.Time{})
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
	w := axesmetrics.InstrumentStore(bare{boom}, "redis", axesmetrics.ObserverFunc(func(op store.Op, storeName string, d time.Duration, err error) {
		if storeName != "redis" {
			t.Errorf("store %q", storeName)
		}
		got = append(got, err)
	}))
	if err := w.Apply(context.Background(), &store.Request{Op: store.OpFail}); err != boom {
		t.Errorf("Apply = %v", err)
	}
	if _, err := w.ResetAll(context.Background()); err != boom {
		t.Errorf("ResetAll = %v", err)
	}
	if _, err := w.ResetField(context.Background(), store.IP, store.Digest{}); err != boom {
		t.Errorf("ResetField = %v", err)
	}
	if len(got) != 3 || got[0] != boom || got[2] != boom {
		t.Errorf("observed %v", got)
	}
}
