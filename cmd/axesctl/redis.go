package main

import (
	"context"
	"fmt"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/redisstore"
	"github.com/redis/go-redis/v9"
)

type redisConfig struct {
	addrs      []string
	prefix     string
	hashTag    string
	spread     bool
	secret     []byte
	ipv6Prefix int
	timeout    time.Duration
}

// redisBackend works on the keys that servers share through redisstore,
// with a Limiter of its own whose digests match theirs (same secret, same
// IPv6 grouping, the default username normaliser).
type redisBackend struct {
	c   redis.UniversalClient
	lim *axes.Limiter
}

func newRedisBackend(ctx context.Context, rc redisConfig) (*redisBackend, error) {
	if len(rc.secret) < 16 {
		return nil, usagef("the digest secret must have at least 16 bytes, as axes.WithSecret requires")
	}
	var c redis.UniversalClient
	if len(rc.addrs) > 1 {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.addrs, ContextTimeoutEnabled: true})
	} else {
		c = redis.NewClient(&redis.Options{Addr: rc.addrs[0], ContextTimeoutEnabled: true})
	}
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("redis %v: %w", rc.addrs, err)
	}
	st, err := redisstore.New(c, redisstore.Options{
		Prefix:      rc.prefix,
		HashTag:     rc.hashTag,
		SpreadSlots: rc.spread,
		Secret:      rc.secret,
		// An administrative command must act on Redis or say it failed:
		// never on a local fallback.
		OnFailure: redisstore.FailClosed,
		Timeout:   rc.timeout,
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	lim, err := axes.New(axes.Policy{
		// Every combination without the user agent, so that a reset of a
		// client forgets what any server's policy counts of it.
		LockoutBy:  []axes.Fields{axes.IP, axes.Username, axes.IP | axes.Username},
		IPv6Prefix: rc.ipv6Prefix,
	}, axes.WithStore(st), axes.WithSecret(rc.secret))
	if err != nil {
		st.Close()
		c.Close()
		return nil, err
	}
	return &redisBackend{c: c, lim: lim}, nil
}

func (b *redisBackend) Close() {
	b.lim.Close()
	b.c.Close()
}

func (b *redisBackend) lockouts(ctx context.Context) ([]lockout, error) {
	los, err := b.lim.LockoutsContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: listing the lockouts: %w", err)
	}
	now := time.Now()
	out := make([]lockout, 0, len(los))
	for _, lo := range los {
		v := lockout{Username: lo.Username, UserAgent: lo.UserAgent, By: lo.By.String(), Failures: lo.Failures}
		if lo.IP.IsValid() {
			v.IP = lo.IP.String()
			if lo.IP.IsSingleIP() {
				v.IP = lo.IP.Addr().String()
			}
		}
		if !lo.Until.IsZero() {
			until := lo.Until.UTC()
			s := max(int64((lo.Until.Sub(now)+time.Second-1)/time.Second), 0)
			v.Until, v.RetryAfter = &until, &s
		}
		out = append(out, v)
	}
	return out, nil
}

func (b *redisBackend) stats(ctx context.Context) ([]figure, error) {
	los, err := b.lockouts(ctx)
	if err != nil {
		return nil, err
	}
	by := map[string]int{}
	indefinite := 0
	for _, lo := range los {
		by[lo.By]++
		if lo.Until == nil {
			indefinite++
		}
	}
	figs := []figure{{"lockouts", len(los)}, {"indefinite", indefinite}}
	for _, f := range []axes.Fields{axes.IP, axes.Username, axes.UserAgent, axes.IP | axes.Username,
		axes.IP | axes.UserAgent, axes.Username | axes.UserAgent, axes.IP | axes.Username | axes.UserAgent} {
		if n := by[f.String()]; n > 0 {
			figs = append(figs, figure{"lockouts_by_" + f.String(), n})
		}
	}
	return figs, nil
}

func (b *redisBackend) reset(ctx context.Context, t target) (int, error) {
	var (
		n   int
		err error
	)
	switch {
	case t.all:
		n, err = b.lim.ResetAllContext(ctx)
	case t.ip != nil && t.username != nil:
		n, err = b.lim.ResetClientContext(ctx, *t.ip, *t.username)
	case t.ip != nil:
		n, err = b.lim.ResetIPContext(ctx, *t.ip)
	default:
		n, err = b.lim.ResetUsernameContext(ctx, *t.username)
	}
	if err != nil {
		return n, fmt.Errorf("redis: the reset failed: %w", err)
	}
	return n, nil
}
