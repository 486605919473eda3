package axesotel_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesmetrics/axesotel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func ExampleRegister() {
	// A ManualReader stands in for the exporter of a real application
	// (OTLP, Prometheus, stdout).
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	lim := axes.Must(axes.New(axes.Policy{Limit: 2}))
	defer lim.Close()
	if _, err := axesotel.Register(lim, mp); err != nil {
		panic(err)
	}

	k := axes.Key{IP: netip.MustParseAddr("203.0.113.7")}
	lim.Fail(k)
	lim.Fail(k) // locks

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(context.Background(), &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if s, ok := m.Data.(metricdata.Sum[float64]); ok && (m.Name == "axes.failures" || m.Name == "axes.lockouts") {
			fmt.Println(m.Name, m.Unit, s.DataPoints[0].Value)
		}
	}
	// Output:
	// axes.failures {failure} 2
	// axes.lockouts {lockout} 1
}
