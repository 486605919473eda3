package redisstore

import (
	"testing"

	"github.com/axes-go/axes/store"
	"github.com/axes-go/axes/storetest"
	"github.com/redis/go-redis/v9"
)

func conformance(t *testing.T, c redis.UniversalClient, o Options) {
	o.UseRequestTime = true
	storetest.Run(t, func() store.Store { return mustNew(t, c, o) })
}

func TestConformanceStandalone(t *testing.T) {
	conformance(t, newClient(t), Options{})
}

func TestConformanceCluster(t *testing.T) {
	conformance(t, newCluster(t), Options{})
}
