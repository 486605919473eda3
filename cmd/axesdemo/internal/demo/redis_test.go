package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes/redisstore"
	"github.com/redis/go-redis/v9"
)

// testRedisAddr returns the Redis server of the tests: AXES_REDIS_ADDR, or
// the one .ci/redis.sh starts. Without it the test skips, or fails under
// CI=true.
func testRedisAddr(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("AXES_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6390"
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		msg := "Redis at " + addr + " is not reachable (" + err.Error() + "); run .ci/redis.sh start, or set AXES_REDIS_ADDR"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return addr
}

// testPrefix returns a Redis key prefix no other test uses.
func testPrefix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "axesdemo-test-" + hex.EncodeToString(b[:]) + ":"
}

// testRedisStore returns a store of the demo on Redis under a prefix of its
// own, whose keys are deleted when the test ends.
func testRedisStore(t *testing.T, addr string, o redisstore.Options) *redisstore.Store {
	t.Helper()
	client, st, err := RedisStore(context.Background(), addr, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		iter := client.Scan(ctx, 0, o.Prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		client.Close()
	})
	return st
}

func TestRedisSharesLockouts(t *testing.T) {
	addr := testRedisAddr(t)
	o := RedisOptions([]byte(DefaultSecret), true, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.Prefix = testPrefix()

	// Two servers, as two demo processes, on one store and one clock.
	clock := NewClock(SimStart)
	a := testServer(t, clock, testRedisStore(t, addr, o), "")
	bsrv := testServer(t, clock, testRedisStore(t, addr, o), "")

	const ip = "203.0.113.77"
	limit := Policy().Limit
	for i := 1; i <= limit; i++ {
		if r := login(t, a, ip, "dave", "guess"); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d on server A: status %d", i, r.status)
		}
	}
	if r := login(t, bsrv, ip, "dave", "open-sesame-42"); r.status != http.StatusTooManyRequests {
		t.Errorf("server B, locked IP and username: status %d, want 429", r.status)
	}
	if r := login(t, bsrv, "198.51.100.3", "dave", "open-sesame-42"); r.status != http.StatusTooManyRequests {
		t.Errorf("server B, locked username from another IP: status %d, want 429", r.status)
	}
	if r := login(t, bsrv, "198.51.100.3", "erin", "blue-monday-1983"); r.status != http.StatusOK {
		t.Errorf("server B, someone else: status %d, want 200", r.status)
	}
	clock.Advance(5 * time.Minute)
	if r := login(t, bsrv, ip, "dave", "open-sesame-42"); r.status != http.StatusOK {
		t.Errorf("server B after the lock: status %d, want 200", r.status)
	}

	// A process with another secret is turned away, not silently apart.
	other := o
	other.Secret = []byte("another-secret-of-enough-bytes")
	client, st, err := RedisStore(context.Background(), addr, other)
	if err == nil {
		st.Close()
		client.Close()
	}
	if !errors.Is(err, redisstore.ErrSecretMismatch) {
		t.Errorf("store with another secret: err = %v, want ErrSecretMismatch", err)
	}
}

func TestRedisUnreachable(t *testing.T) {
	// Port 1 on loopback is closed: connecting fails at once.
	_, _, err := RedisStore(context.Background(), "127.0.0.1:1", RedisOptions([]byte(DefaultSecret), false, nil))
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("err = %v, want a connection error naming the address", err)
	}
}
