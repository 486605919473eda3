package axesprom_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesmetrics"
	"github.com/axes-go/axes/axesmetrics/axesprom"
	"github.com/axes-go/axes/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time    { return time.Unix(1_700_000_000, 0).Add(time.Duration(c.ns.Load())) }
func key(ip, user string) axes.Key { return axes.Key{IP: netip.MustParseAddr(ip), Username: user} }
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// scrape fetches srv's /metrics over loopback and parses the text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

func value(t *testing.T, mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := mf[name]
	if !ok {
		t.Fatalf("no metric %s in the scrape", name)
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestScrapeStatsAndDecisionLatency(t *testing.T) {
	var c clock
	obs := axesprom.NewDecisionObserver(axesprom.ConstLabels(prometheus.Labels{"limiter": "login"}))
	mem := must(store.NewMemory(1000, store.Rule{}))
	lim := must(axes.New(axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.IP, axes.Username}},
		axes.WithClock(c.now), axes.WithStore(axesmetrics.InstrumentStore(mem, "memory", obs))))
	defer lim.Close()

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(axesprom.NewStatsCollector(lim, axesprom.ConstLabels(prometheus.Labels{"limiter": "login"})), obs)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()

	k := key("192.0.2.1", "alice")
	for range 3 {
		lim.Fail(k) // the third locks both dimensions
	}
	lim.Fail(k) // refused
	lim.Success(key("192.0.2.2", "bob"))
	lim.Check(k)
	lim.ResetUsername("alice")

	mf := scrape(t, srv.URL+"/metrics")
	want := []struct {
		name   string
		labels []string
		v      float64
	}{
		{"axes_failures_total", nil, 3},
		{"axes_lockouts_total", nil, 2},
		{"axes_refused_total", nil, 1},
		{"axes_successes_total", nil, 1},
		{"axes_resets_total", nil, 1},
		{"axes_entries", nil, 1}, // the IP's entry; the username's was reset
		{"axes_store_degraded", nil, 0},
		{"axes_evictions_total", []string{"reason", "expired"}, 0},
		{"axes_evictions_total", []string{"reason", "pressure"}, 0},
		{"axes_decision_duration_seconds", []string{"op", "fail", "store", "memory", "result", "ok"}, 4},
		{"axes_decision_duration_seconds", []string{"op", "check", "store", "memory", "result", "ok"}, 1},
		{"axes_decision_duration_seconds", []string{"op", "reset", "store", "memory", "result", "ok"}, 1},
	}
	for _, w := range want {
		if got := value(t, mf, w.name, w.labels...); got != w.v {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.v)
		}
	}
	for name, f := range mf {
		for _, m := range f.Metric {
			found := false
			for _, lp := range m.Label {
				found = found || (lp.GetName() == "limiter" && lp.GetValue() == "login")
			}
			if !found {
				t.Errorf("%s lacks the constant label", name)
			}
		}
	}
	if f := mf["axes_failures_total"]; f.GetType() != dto.MetricType_COUNTER {
		t.Errorf("axes_failures_total is a %v", f.GetType())
	}
	if f := mf["axes_entries"]; f.GetType() != dto.MetricType_GAUGE {
		t.Errorf("axes_entries is a %v", f.GetType())
	}
}

// The metric names follow Prometheus' conventions, as promlint checks them.
func TestLint(t *testing.T) {
	lim := must(axes.New(axes.Policy{}))
	defer lim.Close()
	obs := axesprom.NewDecisionObserver()
	obs.ObserveDecision(store.OpFail, "redis", time.Millisecond, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(axesprom.NewStatsCollector(lim), obs)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestErrorsAreLabelled(t *testing.T) {
	obs := axesprom.NewDecisionObserver(axesprom.Namespace("login"))
	obs.ObserveDecision(store.OpBegin, "redis", 3*time.Millisecond, errors.New("timeout"))
	obs.ObserveDecision(store.OpBegin, "redis", time.Millisecond, nil)
	want := `
# HELP login_decision_duration_seconds Duration of the store calls that decide attempts, by operation, store and result.
# TYPE login_decision_duration_seconds histogram
`
	if err := testutil.CollectAndCompare(obs, strings.NewReader(want+histogramLines()), "login_decision_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func histogramLines() string {
	series := func(result string, upTo float64) string {
		var b strings.Builder
		for _, le := range axesprom.DefaultBuckets {
			n := 0
			if le >= upTo {
				n = 1
			}
			b.WriteString(`login_decision_duration_seconds_bucket{op="begin",result="` + result + `",store="redis",le="` + model.SampleValue(le).String() + `"} ` + itoa(n) + "\n")
		}
		b.WriteString(`login_decision_duration_seconds_bucket{op="begin",result="` + result + `",store="redis",le="+Inf"} 1` + "\n")
		b.WriteString(`login_decision_duration_seconds_sum{op="begin",result="` + result + `",store="redis"} ` + model.SampleValue(upTo).String() + "\n")
		b.WriteString(`login_decision_duration_seconds_count{op="begin",result="` + result + `",store="redis"} 1` + "\n")
		return b.String()
	}
	return series("error", 0.003) + series("ok", 0.001)
}

func itoa(n int) string { return string(rune('0' + n)) }
