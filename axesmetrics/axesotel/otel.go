// Package axesotel exports an axes Limiter's figures and its store's
// decision latency as OpenTelemetry metrics.
//
// Register observes axes.Limiter.Stats at each collection as asynchronous
// instruments named in the semantic-convention style: axes.failures,
// axes.lockouts, axes.refusals and the other counters, axes.entries and
// axes.store.degraded as gauges, axes.evictions with the attribute
// axes.eviction.reason. NewDecisionObserver is an axesmetrics.Observer that
// records the histogram axes.decision.duration in seconds, with the
// attributes axes.operation and axes.store, and error.type when the call
// failed, for a store wrapped with axesmetrics.InstrumentStore.
package axesotel

import (
	"context"
	"errors"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesmetrics/internal/figures"
	"github.com/axes-go/axes/store"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ScopeName is the instrumentation scope of the meters this package makes.
const ScopeName = "github.com/axes-go/axes/axesmetrics/axesotel"

// Register creates asynchronous instruments for every figure of lim.Stats
// on a meter of mp, read once per collection, and returns the registration
// (Unregister stops the reading). attrs are added to every observation, for
// example the name of the limiter when a process has several.
func Register(lim *axes.Limiter, mp metric.MeterProvider, attrs ...attribute.KeyValue) (metric.Registration, error) {
	m := mp.Meter(ScopeName)
	type inst struct {
		f    *figures.Figure
		c    metric.Float64ObservableCounter
		g    metric.Float64ObservableGauge
		opts metric.ObserveOption
	}
	var insts []inst
	var observables []metric.Observable
	made := map[string]metric.Observable{}
	for i := range figures.All {
		f := &figures.All[i]
		kv := attrs
		if f.Attr[0] != "" {
			kv = append(append([]attribute.KeyValue(nil), attrs...), attribute.String("axes.eviction."+f.Attr[0], f.Attr[1]))
		}
		in := inst{f: f, opts: metric.WithAttributeSet(attribute.NewSet(kv...))}
		name := "axes." + f.OTel
		o, ok := made[name]
		var err error
		switch {
		case ok && f.Kind == figures.Counter:
			in.c = o.(metric.Float64ObservableCounter)
		case ok:
			in.g = o.(metric.Float64ObservableGauge)
		case f.Kind == figures.Counter:
			in.c, err = m.Float64ObservableCounter(name, metric.WithUnit(f.Unit), metric.WithDescription(f.Help))
			o = in.c
		default:
			in.g, err = m.Float64ObservableGauge(name, metric.WithUnit(f.Unit), metric.WithDescription(f.Help))
			o = in.g
		}
		if err != nil {
			return nil, err
		}
		if !ok {
			made[name] = o
			observables = append(observables, o)
		}
		insts = append(insts, in)
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := lim.Stats()
		for _, in := range insts {
			if in.c != nil {
				o.ObserveFloat64(in.c, in.f.Value(&s), in.opts)
			} else {
				o.ObserveFloat64(in.g, in.f.Value(&s), in.opts)
			}
		}
		return nil
	}, observables...)
}

// DecisionObserver records the duration of every call of an instrumented
// store in the histogram axes.decision.duration (seconds). It is an
// axesmetrics.Observer and safe for concurrent use.
type DecisionObserver struct {
	h     metric.Float64Histogram
	attrs []attribute.KeyValue
}

// DefaultBuckets are the explicit bucket boundaries of
// axes.decision.duration, in seconds: from 50 µs to 2.5 s.
var DefaultBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// NewDecisionObserver returns an observer recording on a meter of mp, to
// pass to axesmetrics.InstrumentStore. attrs are added to every
// observation.
func NewDecisionObserver(mp metric.MeterProvider, attrs ...attribute.KeyValue) (*DecisionObserver, error) {
	h, err := mp.Meter(ScopeName).Float64Histogram("axes.decision.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of the store calls that decide attempts."),
		metric.WithExplicitBucketBoundaries(DefaultBuckets...))
	if err != nil {
		return nil, err
	}
	return &DecisionObserver{h: h, attrs: attrs}, nil
}

// ObserveDecision records one store call. The error's type is reported as
// "store" (the store returned an error) or, when the call was cut short,
// "timeout" or "canceled".
func (o *DecisionObserver) ObserveDecision(op store.Op, storeName string, d time.Duration, err error) {
	var buf [8]attribute.KeyValue
	kv := append(buf[:0], o.attrs...)
	kv = append(kv, attribute.String("axes.operation", op.String()), attribute.String("axes.store", storeName))
	if err != nil {
		kv = append(kv, attribute.String("error.type", errorType(err)))
	}
	o.h.Record(context.Background(), d.Seconds(), metric.WithAttributes(kv...))
}

func errorType(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "store"
}
