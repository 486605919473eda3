package redisstore

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

var secret = []byte("redisstore-test-secret-0123456789")

// limiters returns n limiters with policy p, each with its own client and
// store (as n servers would have), sharing one prefix.
func limiters(t *testing.T, n int, cluster bool, p axes.Policy, o Options) ([]*axes.Limiter, []*Store) {
	t.Helper()
	o.Prefix = prefix()
	out := make([]*axes.Limiter, n)
	stores := make([]*Store, n)
	for i := range out {
		var c redis.UniversalClient
		if cluster {
			c = newCluster(t)
		} else {
			c = newClient(t)
		}
		s := mustNew(t, c, o)
		if s.near != nil {
			ready(t, s) // so that every reset reaches every cache
		}
		l, err := axes.New(p, axes.WithSecret(secret), axes.WithStore(s))
		if err != nil {
			t.Fatal(err)
		}
		out[i], stores[i] = l, s
	}
	return out, stores
}

// TestSharedReservations races 8 limiters (separate clients, as separate
// servers) × 200 goroutines on one key with limit 5: each round admits
// exactly 5, and their failures lock the key once.
func TestSharedReservations(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprintf("cluster=%v", cluster), func(t *testing.T) {
			p := axes.Policy{Limit: 5, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}}
			// A generous timeout: 1600 racing calls under the race detector
			// must not push a server into its fallback.
			ls, stores := limiters(t, 8, cluster, p, Options{Timeout: 20 * time.Second})
			k := axes.Key{IP: netip.MustParseAddr("198.51.100.7"), Username: "victim"}
			for round := range 3 {
				var mu sync.Mutex
				admitted, locked, unavailable := 0, 0, 0
				var wg sync.WaitGroup
				start := make(chan struct{})
				for _, l := range ls {
					for range 200 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							<-start
							a := l.Begin(k)
							if !a.Allowed() {
								if a.Verdict().Reason == axes.ReasonUnavailable {
									mu.Lock()
									unavailable++
									mu.Unlock()
								}
								return
							}
							v := a.Fail()
							mu.Lock()
							admitted++
							if v.Locked {
								locked++
							}
							mu.Unlock()
						}()
					}
				}
				close(start)
				wg.Wait()
				for i, s := range stores {
					if st := s.Stats(); st.Errors != 0 || st.Fallbacks != 0 {
						t.Fatalf("round %d: server %d degraded: %+v", round, i, st)
					}
				}
				if admitted != 5 || locked != 1 || unavailable != 0 {
					t.Errorf("round %d: %d admitted, %d locked verdicts, %d unavailable; want 5, 1, 0", round, admitted, locked, unavailable)
				}
				if v := ls[3].Check(k); !v.Locked || v.Reason != axes.ReasonLockout {
					t.Errorf("round %d: another server sees %+v, want locked", round, v)
				}
				inv := stores[5].Stats().CacheInvalidations
				ls[0].ResetIP(k.IP)
				// The reset reaches server 5's cache when its invalidation does.
				waitFor(t, "the invalidation", func() bool { return stores[5].Stats().CacheInvalidations > inv })
				if v := ls[5].Check(k); v.Locked || v.Failures != 0 {
					t.Errorf("round %d: after ResetIP another server sees %+v", round, v)
				}
			}
		})
	}
}

// TestTTLOnEveryKey runs a mixed workload and checks that no key is left
// without expiry.
func TestTTLOnEveryKey(t *testing.T) {
	for _, spread := range []bool{false, true} {
		t.Run(fmt.Sprintf("spread=%v", spread), func(t *testing.T) {
			c := newCluster(t)
			o := Options{Prefix: prefix(), SpreadSlots: spread, Secret: secret, Timeout: 2 * time.Second}
			s := mustNew(t, c, o)
			policies := []axes.Policy{
				{Limit: 3, LockoutBy: []axes.Fields{axes.IP, axes.Username, axes.IP | axes.Username | axes.UserAgent}, ExtendLockOnRefused: true},
				{Limit: 2, Cooloff: axes.Backoff{Base: time.Second, Max: time.Hour}, ResetOnSuccess: true},
				{Limit: 2, Cooloff: axes.Forever},
				{Cooloff: axes.Tiers{{Failures: 2, Cooloff: time.Minute}, {Failures: 4, Cooloff: axes.Indefinite}}},
			}
			for pi, p := range policies {
				l, err := axes.New(p, axes.WithSecret(secret), axes.WithStore(&noClose{s}))
				if err != nil {
					t.Fatal(err)
				}
				for i := range 40 {
					k := axes.Key{IP: netip.AddrFrom4([4]byte{10, byte(pi), 0, byte(i % 7)}), Username: fmt.Sprint("u", i%5), UserAgent: "ua"}
					switch i % 4 {
					case 0:
						a := l.Begin(k)
						a.Fail()
					case 1:
						a := l.Begin(k)
						a.Succeed()
					case 2:
						l.Fail(k)
					case 3:
						l.Begin(k) // left unsettled: must expire after the reserve timeout
					}
					l.Success(k)
				}
				l.ResetUsername("u1")
				l.ResetIP(netip.AddrFrom4([4]byte{10, byte(pi), 0, 2}))
			}
			ctx := context.Background()
			n := 0
			err := s.scan(ctx, globEscape(o.Prefix)+"*", func(ctx context.Context, c redis.Cmdable, keys []string) error {
				for _, k := range keys {
					ttl, err := c.PTTL(ctx, k).Result()
					if err != nil {
						return err
					}
					n++
					if ttl <= 0 {
						t.Errorf("key %s has PTTL %v", k, ttl)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n < 20 {
				t.Errorf("only %d keys after the workload", n)
			}
		})
	}
}

// noClose shares one store between limiters that each close their store.
type noClose struct{ store.Store }

func (noClose) Close() error { return nil }
