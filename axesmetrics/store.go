// Package axesmetrics times the decisions of an axes store, for the
// Prometheus collectors of package axesprom and the OpenTelemetry
// instruments of package axesotel.
//
// A Limiter's running figures (failures, locks, refusals, evictions,
// degradations) come from axes.Limiter.Stats and need nothing here. Decision
// latency needs a clock read around every store call, which the in-memory
// store's tens of nanoseconds do not warrant; it is worth it for a networked
// store, where a decision is a round trip. Wrap such a store with
// InstrumentStore before handing it to axes.WithStore:
//
//	obs := axesprom.NewDecisionObserver()
//	st := axesmetrics.InstrumentStore(redisStore, "redis", obs)
//	lim, err := axes.New(policy, axes.WithStore(st))
package axesmetrics

import (
	"context"
	"time"

	"github.com/axes-go/axes/store"
)

// Observer receives the duration of every call an instrumented store makes.
// It is called after the call returns, from the goroutine that made it, and
// must be safe for concurrent use and quick.
type Observer interface {
	// ObserveDecision reports one call: op is the operation (OpReset for
	// ResetField and ResetAll), store the name given to InstrumentStore,
	// d how long the call took, and err what it returned.
	ObserveDecision(op store.Op, storeName string, d time.Duration, err error)
}

// ObserverFunc adapts a func to Observer.
type ObserverFunc func(op store.Op, storeName string, d time.Duration, err error)

// ObserveDecision calls f.
func (f ObserverFunc) ObserveDecision(op store.Op, storeName string, d time.Duration, err error) {
	f(op, storeName, d, err)
}

// InstrumentStore returns a store that passes every call to s and reports
// its duration to each observer under the given store name. The result
// keeps s's optional abilities (store.LockLister and store.StatsReporter): a
// Limiter sees the same store, only timed. It applies exactly s's
// transitions; the storetest suite runs on it.
func InstrumentStore(s store.Store, name string, observers ...Observer) store.Store {
	t := timed{s: s, name: name, obs: observers, now: time.Now}
	ll, lists := s.(store.LockLister)
	sr, reports := s.(store.StatsReporter)
	switch {
	case lists && reports:
		return &listingReporting{timed: t, ll: ll, sr: sr}
	case lists:
		return &listing{timed: t, ll: ll}
	case reports:
		return &reporting{timed: t, sr: sr}
	}
	return &t
}

// timed is the instrumented store.
type timed struct {
	s    store.Store
	name string
	obs  []Observer
	now  func() time.Time // the clock that times calls; a var for tests
}

func (t *timed) observe(op store.Op, start time.Time, err error) {
	d := max(t.now().Sub(start), 0)
	for _, o := range t.obs {
		o.ObserveDecision(op, t.name, d, err)
	}
}

// Apply passes req to the wrapped store and reports its duration.
func (t *timed) Apply(ctx context.Context, req *store.Request) error {
	start := t.now()
	err := t.s.Apply(ctx, req)
	t.observe(req.Op, start, err)
	return err
}

// ResetField passes the reset to the wrapped store and reports its
// duration as OpReset.
func (t *timed) ResetField(ctx context.Context, f store.Fields, key store.Digest) (int, error) {
	start := t.now()
	n, err := t.s.ResetField(ctx, f, key)
	t.observe(store.OpReset, start, err)
	return n, err
}

// ResetAll passes the reset to the wrapped store and reports its duration
// as OpReset.
func (t *timed) ResetAll(ctx context.Context) (int, error) {
	start := t.now()
	n, err := t.s.ResetAll(ctx)
	t.observe(store.OpReset, start, err)
	return n, err
}

// Close closes the wrapped store.
func (t *timed) Close() error { return t.s.Close() }

type listing struct {
	timed
	ll store.LockLister
}

// Lockouts lists the wrapped store's locks.
func (l *listing) Lockouts(ctx context.Context, now time.Time) ([]store.Lockout, error) {
	return l.ll.Lockouts(ctx, now)
}

type reporting struct {
	timed
	sr store.StatsReporter
}

// StoreStats returns the wrapped store's figures.
func (r *reporting) StoreStats() store.Stats { return r.sr.StoreStats() }

type listingReporting struct {
	timed
	ll store.LockLister
	sr store.StatsReporter
}

// Lockouts lists the wrapped store's locks.
func (l *listingReporting) Lockouts(ctx context.Context, now time.Time) ([]store.Lockout, error) {
	return l.ll.Lockouts(ctx, now)
}

// StoreStats returns the wrapped store's figures.
func (l *listingReporting) StoreStats() store.Stats { return l.sr.StoreStats() }

var (
	_ store.Store         = (*timed)(nil)
	_ store.LockLister    = (*listing)(nil)
	_ store.StatsReporter = (*reporting)(nil)
	_ store.LockLister    = (*listingReporting)(nil)
	_ store.StatsReporter = (*listingReporting)(nil)
)
