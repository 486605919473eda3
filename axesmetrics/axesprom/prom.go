// Package axesprom exports an axes Limiter's figures and its store's
// decision latency as Prometheus metrics.
//
// NewStatsCollector reads axes.Limiter.Stats at each scrape: counters such as
// axes_failures_total, axes_lockouts_total and axes_refused_total, and gauges
// such as axes_entries and axes_store_degraded. NewDecisionObserver is an
// axesmetrics.Observer that records the axes_decision_duration_seconds
// histogram, by operation, store and result, for a store wrapped with
// axesmetrics.InstrumentStore.
package axesprom

import (
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesmetrics/internal/figures"
	"github.com/axes-go/axes/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a collector or an observer.
type Option func(*config)

type config struct {
	namespace string
	labels    prometheus.Labels
	buckets   []float64
}

// Namespace sets the prefix of every metric name. Default "axes".
func Namespace(ns string) Option { return func(c *config) { c.namespace = ns } }

// ConstLabels adds labels to every metric, for example the name of the
// limiter when a process has several.
func ConstLabels(l prometheus.Labels) Option { return func(c *config) { c.labels = l } }

// Buckets sets the histogram buckets of the decision latency, in seconds.
// Default: from 50 µs to 2.5 s, which covers a local Redis and a slow one.
func Buckets(b []float64) Option { return func(c *config) { c.buckets = b } }

// DefaultBuckets are the decision-latency buckets used unless Buckets says
// otherwise, in seconds.
var DefaultBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func newConfig(opts []Option) config {
	c := config{namespace: "axes", buckets: DefaultBuckets}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// StatsCollector is a prometheus.Collector of a Limiter's Stats. It reads
// Stats once per scrape; it is safe for concurrent use.
type StatsCollector struct {
	lim   *axes.Limiter
	descs []*prometheus.Desc // one per figures.All entry
}

// NewStatsCollector returns a collector of lim's Stats. Register it with a
// prometheus.Registerer.
func NewStatsCollector(lim *axes.Limiter, opts ...Option) *StatsCollector {
	c := newConfig(opts)
	sc := &StatsCollector{lim: lim}
	byName := map[string]*prometheus.Desc{}
	for _, f := range figures.All {
		name := prometheus.BuildFQName(c.namespace, "", f.Prom)
		d, ok := byName[name]
		if !ok {
			var labels []string
			if f.Attr[0] != "" {
				labels = []string{f.Attr[0]}
			}
			d = prometheus.NewDesc(name, f.Help, labels, c.labels)
			byName[name] = d
		}
		sc.descs = append(sc.descs, d)
	}
	return sc
}

// Describe sends the descriptors of every metric the collector makes.
func (sc *StatsCollector) Describe(ch chan<- *prometheus.Desc) {
	seen := map[*prometheus.Desc]bool{}
	for _, d := range sc.descs {
		if !seen[d] {
			seen[d] = true
			ch <- d
		}
	}
}

// Collect reads the limiter's Stats and sends one metric per figure.
func (sc *StatsCollector) Collect(ch chan<- prometheus.Metric) {
	s := sc.lim.Stats()
	for i, f := range figures.All {
		vt := prometheus.CounterValue
		if f.Kind == figures.Gauge {
			vt = prometheus.GaugeValue
		}
		var labels []string
		if f.Attr[0] != "" {
			labels = []string{f.Attr[1]}
		}
		ch <- prometheus.MustNewConstMetric(sc.descs[i], vt, f.Value(&s), labels...)
	}
}

// DecisionObserver records the duration of every call of an instrumented
// store in the histogram <namespace>_decision_duration_seconds, labelled by
// operation ("fail", "begin", "check", …, "reset"), store (the name given to
// axesmetrics.InstrumentStore) and result ("ok" or "error"). It is an
// axesmetrics.Observer and a prometheus.Collector; it is safe for
// concurrent use.
type DecisionObserver struct {
	h *prometheus.HistogramVec
}

// NewDecisionObserver returns an observer to pass to
// axesmetrics.InstrumentStore and to register with a prometheus.Registerer.
func NewDecisionObserver(opts ...Option) *DecisionObserver {
	c := newConfig(opts)
	return &DecisionObserver{h: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace:   c.namespace,
		Name:        "decision_duration_seconds",
		Help:        "Duration of the store calls that decide attempts, by operation, store and result.",
		ConstLabels: c.labels,
		Buckets:     c.buckets,
	}, []string{"op", "store", "result"})}
}

// ObserveDecision records one store call.
func (o *DecisionObserver) ObserveDecision(op store.Op, storeName string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	o.h.WithLabelValues(op.String(), storeName, result).Observe(d.Seconds())
}

// Describe sends the histogram's descriptor.
func (o *DecisionObserver) Describe(ch chan<- *prometheus.Desc) { o.h.Describe(ch) }

// Collect sends the histogram's series.
func (o *DecisionObserver) Collect(ch chan<- prometheus.Metric) { o.h.Collect(ch) }

var (
	_ prometheus.Collector = (*StatsCollector)(nil)
	_ prometheus.Collector = (*DecisionObserver)(nil)
)
