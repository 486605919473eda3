package axesprom_test

import (
	"fmt"
	"net/netip"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesmetrics"
	"github.com/axes-go/axes/axesmetrics/axesprom"
	"github.com/axes-go/axes/store"
	"github.com/prometheus/client_golang/prometheus"
)

func Example() {
	// The decision latency needs a timed store; a networked store such as
	// redisstore is where it tells something. The memory store stands in.
	obs := axesprom.NewDecisionObserver()
	mem, _ := store.NewMemory(1<<16, store.Rule{})
	lim := axes.Must(axes.New(axes.Policy{Limit: 2}, axes.WithStore(axesmetrics.InstrumentStore(mem, "memory", obs))))
	defer lim.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(axesprom.NewStatsCollector(lim), obs)
	// Serve reg with promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).

	k := axes.Key{IP: netip.MustParseAddr("203.0.113.7")}
	lim.Fail(k)
	lim.Fail(k) // locks
	lim.Fail(k) // refused

	families, _ := reg.Gather()
	for _, f := range families {
		for _, m := range f.Metric {
			switch {
			case m.Counter != nil && m.Counter.GetValue() > 0:
				fmt.Println(f.GetName(), m.Counter.GetValue())
			case m.Histogram != nil:
				fmt.Println(f.GetName(), "count", m.Histogram.GetSampleCount())
			}
		}
	}
	// Output:
	// axes_decision_duration_seconds count 3
	// axes_failures_total 2
	// axes_lockouts_total 1
	// axes_refused_total 1
}
