package redisstore

import (
	"testing"
	"time"

	"github.com/axes-go/axes/store"
	"github.com/axes-go/axes/storetest"
	"github.com/redis/go-redis/v9"
)

// conformanceTimeout is the Timeout of the conformance suites' stores:
// they check the policy's semantics, which a call past the default 100ms
// on a loaded machine (CI runs every package at once, under the race
// detector) would hand to the fallback store (failover_test.go and
// failure_test.go test that).
const conformanceTimeout = 5 * time.Second

func conformance(t *testing.T, c redis.UniversalClient, o Options) {
	o.UseRequestTime = true
	o.Timeout = conformanceTimeout
	storetest.Run(t, func() store.Store { return mustNew(t, c, o) })
}

func TestConformanceStandalone(t *testing.T) {
	conformance(t, newClient(t), Options{})
}

func TestConformanceCluster(t *testing.T) {
	conformance(t, newCluster(t), Options{})
}
