package demo

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/axes-go/axes/redisstore"
	"github.com/redis/go-redis/v9"
)

// The key prefixes of the demo on Redis. The simulation runs on its own
// clock, which Redis must not mix with real time, so it keeps its state
// apart.
const (
	RedisPrefix    = "axesdemo:"
	RedisSimPrefix = "axesdemo-sim:"
)

// RedisOptions returns the demo's redisstore options. Every process that
// shares lockouts through the store must use the same secret.
//
// With simulated set, the store uses the limiter's clock instead of Redis's
// (redisstore.Options.UseRequestTime), keeps its keys under RedisSimPrefix,
// and fails closed rather than fall back to a local store, so that a report
// shows what Redis decided. Otherwise it is the production default: Redis's
// clock, and a local fallback while Redis is unavailable.
func RedisOptions(secret []byte, simulated bool, logger *slog.Logger) redisstore.Options {
	o := redisstore.Options{Prefix: RedisPrefix, Secret: secret, Logger: logger}
	if simulated {
		o.Prefix = RedisSimPrefix
		o.UseRequestTime = true
		o.OnFailure = redisstore.FailClosed
		o.Timeout = time.Second
	}
	return o
}

// RedisStore connects to the Redis server at addr and returns the client
// (which the caller closes after the store) and a store on it with options o.
func RedisStore(ctx context.Context, addr string, o redisstore.Options) (*redis.Client, *redisstore.Store, error) {
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("axesdemo: Redis at %s: %w", addr, err)
	}
	st, err := redisstore.New(client, o)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return client, st, nil
}
