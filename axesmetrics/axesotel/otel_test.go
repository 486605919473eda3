package axesotel_test

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesmetrics"
	"github.com/axes-go/axes/axesmetrics/axesotel"
	"github.com/axes-go/axes/store"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time { return time.Unix(1_700_000_000, 0).Add(time.Duration(c.ns.Load())) }

func collect(t *testing.T, r *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != axesotel.ScopeName {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// point returns the value of the data point of m whose attributes include
// want.
func point(t *testing.T, m metricdata.Metrics, want ...attribute.KeyValue) float64 {
	t.Helper()
	match := func(set attribute.Set) bool {
		for _, kv := range want {
			if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
				return false
			}
		}
		return true
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[float64]:
		if !d.IsMonotonic || d.Temporality != metricdata.CumulativeTemporality {
			t.Errorf("%s: not a cumulative monotonic sum", m.Name)
		}
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				return p.Value
			}
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				return p.Value
			}
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				return float64(p.Count)
			}
		}
	default:
		t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
	}
	t.Fatalf("%s: no point with %v", m.Name, want)
	return 0
}

func TestManualReader(t *testing.T) {
	var c clock
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	obs, err := axesotel.NewDecisionObserver(mp, attribute.String("limiter", "login"))
	if err != nil {
		t.Fatal(err)
	}
	mem, err := store.NewMemory(1000, store.Rule{})
	if err != nil {
		t.Fatal(err)
	}
	lim := axes.Must(axes.New(axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.IP, axes.Username}},
		axes.WithClock(c.now), axes.WithStore(axesmetrics.InstrumentStore(mem, "memory", obs))))
	defer lim.Close()
	reg, err := axesotel.Register(lim, mp, attribute.String("limiter", "login"))
	if err != nil {
		t.Fatal(err)
	}

	k := axes.Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice"}
	for range 4 {
		lim.Fail(k) // the third locks both dimensions, the fourth is refused
	}
	lim.Success(axes.Key{IP: netip.MustParseAddr("192.0.2.2"), Username: "bob"})

	got := collect(t, reader)
	login := attribute.String("limiter", "login")
	for _, w := range []struct {
		name string
		unit string
		attr []attribute.KeyValue
		v    float64
	}{
		{"axes.failures", "{failure}", nil, 3},
		{"axes.lockouts", "{lockout}", nil, 2},
		{"axes.refusals", "{attempt}", nil, 1},
		{"axes.successes", "{login}", nil, 1},
		{"axes.entries", "{entry}", nil, 2},
		{"axes.store.degraded", "1", nil, 0},
		{"axes.evictions", "{entry}", []attribute.KeyValue{attribute.String("axes.eviction.reason", "pressure")}, 0},
		{"axes.decision.duration", "s", []attribute.KeyValue{attribute.String("axes.operation", "fail"), attribute.String("axes.store", "memory")}, 4},
	} {
		m, ok := got[w.name]
		if !ok {
			t.Errorf("no metric %s", w.name)
			continue
		}
		if m.Unit != w.unit {
			t.Errorf("%s: unit %q, want %q", w.name, m.Unit, w.unit)
		}
		if v := point(t, m, append(w.attr, login)...); v != w.v {
			t.Errorf("%s%v = %v, want %v", w.name, w.attr, v, w.v)
		}
	}

	// After Unregister the figures are no longer observed.
	if err := reg.Unregister(); err != nil {
		t.Fatal(err)
	}
	got = collect(t, reader)
	if _, ok := got["axes.failures"]; ok {
		t.Error("axes.failures still observed after Unregister")
	}
}

func TestErrorType(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	obs, err := axesotel.NewDecisionObserver(mp)
	if err != nil {
		t.Fatal(err)
	}
	obs.ObserveDecision(store.OpBegin, "redis", time.Millisecond, context.DeadlineExceeded)
	obs.ObserveDecision(store.OpBegin, "redis", time.Millisecond, nil)
	m := collect(t, reader)["axes.decision.duration"]
	if n := point(t, m, attribute.String("error.type", "timeout")); n != 1 {
		t.Errorf("timeouts = %v", n)
	}
	h := m.Data.(metricdata.Histogram[float64])
	if len(h.DataPoints) != 2 {
		t.Errorf("%d series, want 2 (ok and timeout)", len(h.DataPoints))
	}
}
