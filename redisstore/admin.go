package redisstore

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// scanBatch is the COUNT hint of the scans of ResetAll, Lockouts and, under
// SpreadSlots, ResetField.
const scanBatch = 1000

// adminContext bounds the scans of the administrative calls, which touch
// every key rather than one, within the caller's ctx.
func (s *Store) adminContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(100*s.o.Timeout, 10*time.Second))
}

// forEachNode runs fn on every node that holds keys: each master of a
// Cluster, each shard of a Ring, or the client itself.
func (s *Store) forEachNode(ctx context.Context, fn func(ctx context.Context, c redis.Cmdable) error) error {
	switch c := s.c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return fn(ctx, c) })
	case *redis.Ring:
		return c.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return fn(ctx, c) })
	}
	return fn(ctx, s.c)
}

// globEscape escapes the glob characters of a key prefix for SCAN MATCH.
func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// scan calls fn with every batch of keys matching pattern on every node.
// The nodes are scanned in parallel, but the calls of fn are serialised.
func (s *Store) scan(ctx context.Context, pattern string, fn func(ctx context.Context, c redis.Cmdable, keys []string) error) error {
	var mu sync.Mutex // serialises fn
	return s.forEachNode(ctx, func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, scanBatch).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				mu.Lock()
				err := fn(ctx, c, keys)
				mu.Unlock()
				if err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	})
}

// ResetField implements store.Store. It scans every dimension key (SCAN,
// COUNT 1000, on every master), reads each (pipelined GETs) and deletes,
// with a script that checks again, those that record k as their IP or
// username digest: a cost in proportion to all the keys, as the memory
// store's. (No index is kept per IP or username: it would cost every first
// failure two more writes.) The local fallback store forgets them too.
func (s *Store) ResetField(ctx context.Context, f axes.Fields, k axes.Digest) (int, error) {
	s.forgetOutage(func(ol *outageLock) bool {
		d := &ol.dim
		return d.Fields&f == 0 || (f == axes.IP && d.IPKey != k) || (f == axes.Username && d.UserKey != k)
	})
	if local := s.localOr(); local != nil {
		local.ResetField(ctx, f, k)
	}
	if f != axes.IP && f != axes.Username {
		return 0, nil
	}
	ctx, cancel := s.adminContext(ctx)
	defer cancel()
	field := "uk"
	if f == axes.IP {
		field = "ik"
	}
	want := digestBytes(k)
	total := 0
	err := s.scan(ctx, globEscape(s.tag)+"*", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		pipe := c.Pipeline()
		got := make([]*redis.StringCmd, len(keys))
		for i, key := range keys {
			got[i] = pipe.Get(ctx, key)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		var cmds []*redis.Cmd
		for i, key := range keys {
			kv, ok := decodeValue(got[i].Val())
			if !ok || (f == axes.IP && kv.ipKey != want) || (f == axes.Username && kv.userKey != want) {
				continue
			}
			bk := s.budgetKeys(parseDigest(key[len(s.tag):]))
			cmds = append(cmds, resetIfScript.Eval(ctx, pipe, []string{bk[0], bk[1], key}, budgetGrain, ms(s.o.MaxTTL), field, want))
		}
		if len(cmds) == 0 {
			return nil
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for _, c := range cmds {
			n, _ := c.Int()
			total += n
		}
		return nil
	})
	if err == nil {
		err = s.publishReset(ctx, fieldMessage(f, k))
	}
	if err != nil {
		s.n.errors.Add(1)
	}
	return total, err
}

// ResetAll implements store.Store: it scans every key under the prefix on
// every master (SCAN, COUNT 1000) and deletes it, returning how many
// dimension keys it deleted. The secret verifier is kept.
func (s *Store) ResetAll(ctx context.Context) (int, error) {
	s.forgetOutage(func(*outageLock) bool { return false })
	if local := s.localOr(); local != nil {
		local.ResetAll(ctx)
	}
	ctx, cancel := s.adminContext(ctx)
	defer cancel()
	verifier := s.root + "v"
	total := 0
	err := s.scan(ctx, globEscape(s.o.Prefix)+"*", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		pipe := c.Pipeline()
		var dels []*redis.IntCmd
		for _, key := range keys {
			if key == verifier {
				continue
			}
			cmd := pipe.Unlink(ctx, key)
			if strings.HasPrefix(key, s.tag) {
				dels = append(dels, cmd)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
		for _, c := range dels {
			total += int(c.Val())
		}
		return nil
	})
	if err == nil {
		err = s.publishReset(ctx, "a")
	}
	if err != nil {
		s.n.errors.Add(1)
	}
	return total, err
}

// Lockouts implements store.LockLister. It scans every dimension key (SCAN,
// COUNT 1000, on every master) and reads the locked ones: a cost in
// proportion to all the keys, meant for admin pages, not for every
// request. Lock ends are read on the server's clock (or now, under
// UseRequestTime) and reported on now's.
func (s *Store) Lockouts(ctx context.Context, now time.Time) ([]axes.Lockout, error) {
	ctx, cancel := s.adminContext(ctx)
	defer cancel()
	var out []axes.Lockout
	err := s.scan(ctx, globEscape(s.tag)+"*", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		nowMS := now.UnixMilli()
		if !s.o.UseRequestTime {
			t, err := c.Time(ctx).Result()
			if err != nil {
				return err
			}
			nowMS = t.UnixMilli()
		}
		pipe := c.Pipeline()
		cmds := make([]*redis.StringCmd, len(keys))
		for i, key := range keys {
			cmds[i] = pipe.Get(ctx, key)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return err
		}
		for i, cmd := range cmds {
			kv, ok := decodeValue(cmd.Val())
			le := kv.lockEnd
			if !ok || le == 0 || (le > 0 && le <= nowMS) {
				continue
			}
			lo := axes.Lockout{
				Username:  kv.username,
				UserAgent: kv.userAgent,
				Digest:    parseDigest(keys[i][len(s.tag):]),
				Failures:  kv.failures,
				By:        kv.fields,
			}
			if p, err := netip.ParsePrefix(kv.ip); err == nil {
				lo.IP = p
			}
			if le > 0 {
				lo.Until = now.Add(fromMS(le - nowMS))
			}
			out = append(out, lo)
		}
		return nil
	})
	if err != nil {
		s.n.errors.Add(1)
		return nil, err
	}
	return out, nil
}

// parseDigest reads the digest from the end of a dimension key, after
// its shard's hash tag under SpreadSlots.
func parseDigest(s string) axes.Digest {
	if i := strings.IndexByte(s, '}'); i >= 0 {
		s = s[i+1:]
	}
	d, err := store.ParseDigest(s)
	if err != nil {
		return axes.Digest{}
	}
	return d
}
