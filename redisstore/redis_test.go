package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The tests find Redis at the addresses .ci/redis.sh starts, unless
// AXES_REDIS_ADDR (standalone) or AXES_REDIS_CLUSTER (comma-separated
// masters) say otherwise. Without Redis they skip, except under CI=true.
const (
	defaultAddr    = "127.0.0.1:6390"
	defaultCluster = "127.0.0.1:7390,127.0.0.1:7391,127.0.0.1:7392"
)

func standaloneAddr() string {
	if a := os.Getenv("AXES_REDIS_ADDR"); a != "" {
		return a
	}
	return defaultAddr
}

func clusterAddrs() []string {
	a := os.Getenv("AXES_REDIS_CLUSTER")
	if a == "" {
		a = defaultCluster
	}
	return strings.Split(a, ",")
}

// unavailable skips the test, or fails it when CI=true.
func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	msg := what + " is not reachable (" + err.Error() + "); run .ci/redis.sh start, or set AXES_REDIS_ADDR / AXES_REDIS_CLUSTER"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// reachable dials each address once per test binary, so that a missing
// Redis skips every test at once instead of each waiting out go-redis's
// dial retries.
var reachable = struct {
	sync.Mutex
	err map[string]error
}{err: map[string]error{}}

func probe(addrs []string) error {
	reachable.Lock()
	defer reachable.Unlock()
	for _, a := range addrs {
		err, seen := reachable.err[a]
		if !seen {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", a, time.Second); err == nil {
				c.Close()
			}
			reachable.err[a] = err
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// newClient returns a client of the standalone test server, skipping the
// test when there is none.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	if err := probe([]string{standaloneAddr()}); err != nil {
		unavailable(t, "Redis at "+standaloneAddr(), err)
	}
	c := redis.NewClient(&redis.Options{Addr: standaloneAddr(), ContextTimeoutEnabled: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		unavailable(t, "Redis at "+standaloneAddr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newCluster returns a client of the test cluster, skipping the test when
// there is none.
func newCluster(t testing.TB) *redis.ClusterClient {
	t.Helper()
	if err := probe(clusterAddrs()); err != nil {
		unavailable(t, "Redis Cluster at "+strings.Join(clusterAddrs(), ","), err)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: clusterAddrs(), ContextTimeoutEnabled: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.Ping(ctx).Err()
	if err == nil {
		var info string
		info, err = c.ClusterInfo(ctx).Result()
		if err == nil && !strings.Contains(info, "cluster_state:ok") {
			err = errClusterNotReady
		}
	}
	if err != nil {
		c.Close()
		unavailable(t, "Redis Cluster at "+strings.Join(clusterAddrs(), ","), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type testError string

func (e testError) Error() string { return string(e) }

const errClusterNotReady = testError("cluster_state is not ok")

// prefix returns a fresh key prefix, so that tests sharing a server never
// see each other's keys.
func prefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "axestest:" + hex.EncodeToString(b[:]) + ":"
}

// mustNew returns a store on c, closed at the end of the test.
func mustNew(t testing.TB, c redis.UniversalClient, o Options) *Store {
	t.Helper()
	if o.Prefix == "" {
		o.Prefix = prefix()
	}
	if o.Logger == nil {
		o.Logger = quiet
	}
	s, err := New(c, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			// A call past Timeout decides on the fallback, not on Redis:
			// say so, since a test's figures then differ.
			st := s.Stats()
			t.Logf("store stats: %d errors, %d fallbacks, %d degradations", st.Errors, st.Fallbacks, st.Degradations)
		}
		s.ResetAll(context.Background())
		s.Close()
	})
	return s
}

// quiet discards the store's log lines in tests.
var quiet = slog.New(slog.DiscardHandler)
