package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// WAIT: under Options.WaitReplicas, the writes that may start a lock wait
// for replicas to acknowledge them, so that a failover does not lose them.

// startsLock reports whether op may start a lock (or count a failure that
// a later lock builds on): those are the writes WaitReplicas waits for.
func startsLock(op store.Op) bool {
	return op == store.OpFail || op == store.OpSettleFail || op == store.OpBegin
}

// decideWait sends the script call cmd of one decision (see decide) and,
// under WaitReplicas for an operation that may start a lock, WAIT
// pipelined behind it on the same connection.
func (s *Store) decideWait(ctx context.Context, op store.Op, cmd []any) (any, error) {
	if s.o.WaitReplicas == 0 || !startsLock(op) {
		return s.decide(ctx, cmd)
	}
	if s.skipWait() {
		s.n.unacked.Add(1)
		return s.decide(ctx, cmd)
	}
	return s.runWait(ctx, cmd)
}

// waitRetryEvery is how often, after a WAIT short of acknowledgements,
// one write waits again to learn whether the replicas are back; the
// others do not wait meanwhile.
const waitRetryEvery = 1000 // ms

// skipWait reports whether a write should not wait: after a WAIT short of
// acknowledgements (the master lost its replica, or a failover promoted
// one that has none yet), every write would wait out WaitTimeout; they
// skip WAIT instead, except one a second.
func (s *Store) skipWait() bool {
	retry := s.waitRetry.Load()
	if retry == 0 {
		return false
	}
	now := s.mono()
	if now < retry {
		return true
	}
	return !s.waitRetry.CompareAndSwap(retry, now+waitRetryEvery)
}

// runWait sends the script call cmd (FCALL or EVALSHA, key count, keys,
// arguments) and WAIT in one pipeline to the master of the call's first
// key: WAIT counts the replicas that acknowledged every write made before
// it on its connection, so it must follow the script on the script's own
// connection, which a pipeline on one node's client guarantees (a
// separate WAIT could take another connection from the pool, and a
// cluster client would send a keyless WAIT to any master). These calls do
// not join the batches of decide: each needs its own WAIT. When fewer
// replicas than WaitReplicas acknowledge in time, the script's verdict
// stands and Stats.Unacknowledged counts the write.
func (s *Store) runWait(ctx context.Context, cmd []any) (any, error) {
	key, _ := cmd[3].(string)
	c, err := s.nodeOf(ctx, key)
	if err != nil {
		return nil, err
	}
	loaded, moved := false, false
	for {
		s.n.trips.Add(1)
		pipe := c.Pipeline()
		ev := pipe.Do(ctx, cmd...)
		w := pipe.Do(ctx, "wait", s.o.WaitReplicas, s.waitTimeout(ctx).Milliseconds())
		_, _ = pipe.Exec(ctx)
		if err := ev.Err(); err != nil {
			if !loaded && missingScript(err) {
				loaded = true
				s.n.trips.Add(1)
				if err := s.loadApply(ctx); err != nil {
					return nil, err
				}
				s.retarget(cmd)
				continue
			}
			if cc, ok := s.c.(*redis.ClusterClient); ok && !moved && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") || redis.HasErrorPrefix(err, "READONLY")) {
				// The slot moved (a replica was promoted): the call did
				// not run; once more on the slot's new master, so that a
				// failover does not put the store in its outage mode.
				moved = true
				cc.ReloadState(ctx)
				if c, err = s.nodeOf(ctx, key); err != nil {
					return nil, err
				}
				continue
			}
			return nil, err
		}
		s.n.waited.Add(1)
		if n, err := w.Int64(); err != nil || n < int64(s.o.WaitReplicas) {
			s.n.unacked.Add(1)
			if s.waitRetry.Load() == 0 {
				s.waitRetry.CompareAndSwap(0, s.mono()+waitRetryEvery)
			}
		} else {
			s.waitRetry.Store(0)
		}
		return ev.Val(), nil
	}
}

// nodeOf returns the client of the master that holds key: the store's own
// client, unless it is a cluster client.
func (s *Store) nodeOf(ctx context.Context, key string) (*redis.Client, error) {
	switch c := s.c.(type) {
	case *redis.Client:
		return c, nil
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, key)
	}
	return nil, errWaitClient
}

var errWaitClient = errors.New("redisstore: WaitReplicas needs a *redis.Client (standalone or Sentinel) or a *redis.ClusterClient")

// waitTimeout returns WAIT's timeout: Options.WaitTimeout, shortened so
// that the reply arrives before ctx's deadline (less the fifth of
// Options.Timeout the script's own deadline keeps); at least 1ms, since 0
// would wait forever.
func (s *Store) waitTimeout(ctx context.Context) time.Duration {
	w := s.o.WaitTimeout
	if dl, ok := ctx.Deadline(); ok {
		w = min(w, time.Until(dl)-s.o.Timeout/deadlineMargin)
	}
	return max(w, time.Millisecond)
}

// checkWait checks WaitReplicas and WaitTimeout, and sets the default
// timeout.
func checkWait(c redis.UniversalClient, o *Options) error {
	if o.WaitReplicas < 0 {
		return fmt.Errorf("redisstore: WaitReplicas must not be negative, got %d", o.WaitReplicas)
	}
	if o.WaitTimeout < 0 {
		return fmt.Errorf("redisstore: WaitTimeout must be positive, got %v", o.WaitTimeout)
	}
	if o.WaitReplicas == 0 {
		return nil
	}
	if o.SpreadSlots {
		return errors.New("redisstore: WaitReplicas needs the one-slot layout, not SpreadSlots")
	}
	switch c.(type) {
	case *redis.Client, *redis.ClusterClient:
	default:
		return errWaitClient
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = o.Timeout / 4
	}
	o.WaitTimeout = min(o.WaitTimeout, o.Timeout)
	return nil
}
