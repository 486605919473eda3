package redisstore

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// Health: deciding without Redis (the failure modes, the local fallback
// and the locks it starts during an outage, written back on recovery),
// noticing that Redis is gone (fail) and back (probe), and the clock
// offset that turns a caller's deadline into one on the server's clock.

// localStore is the local fallback of FallbackLocal.
type localStore struct{ store.Store }

// makeLocal makes the local store, once, with the limiter's rule (that of
// the first decision) as the base of its sweeps.
func (s *Store) makeLocal(req *store.Request) {
	if s.local.Load() != nil {
		return
	}
	s.primed.Do(func() {
		m, err := store.NewMemory(s.o.LocalMaxEntries, *req.Rule)
		if err != nil {
			panic(err) // LocalMaxEntries was checked by New
		}
		s.local.Store(&localStore{m})
	})
}

// localOr returns the local store, or nil before the first decision and
// when the mode is not FallbackLocal.
func (s *Store) localOr() store.Store {
	if l := s.local.Load(); l != nil {
		return l.Store
	}
	return nil
}

// remember mirrors the locks Redis reported into the local store, so that
// they hold while Redis is unavailable.
func (s *Store) remember(req *store.Request) {
	for i := range req.Dims {
		d := &req.Dims[i]
		if !d.Outcome.Locked {
			continue
		}
		rem := d.Outcome.Remaining
		r := store.Rule{Limit: 1, Window: max(rem, time.Second), Cooloff: rem, ReserveTimeout: axes.DefaultReserveTimeout}
		one := []store.Dim{{Fields: d.Fields, Digest: d.Digest, IPKey: d.IPKey, UserKey: d.UserKey}}
		s.localOr().Apply(context.Background(), &store.Request{Op: store.OpFail, Now: req.Now, Rule: &r, Dims: one, Identity: req.Identity})
	}
}

// fallback decides req without Redis, by Options.OnFailure.
func (s *Store) fallback(req *store.Request) error {
	s.n.fallbacks.Add(1)
	switch s.o.OnFailure {
	case FallbackLocal:
		err := s.localOr().Apply(context.Background(), req)
		if err == nil {
			s.recordOutage(req)
		}
		return err
	case FailOpen:
		for i := range req.Dims {
			req.Dims[i].Outcome = store.Outcome{}
		}
		return nil
	}
	return errUnavailable
}

var errUnavailable = errors.New("redisstore: Redis is unavailable")

// recordOutage keeps the locks the local store started (or extended) for
// req, to write them to Redis on recovery.
func (s *Store) recordOutage(req *store.Request) {
	for i := range req.Dims {
		d := &req.Dims[i]
		o := &d.Outcome
		if !o.Locked {
			continue
		}
		var end time.Time
		if o.Remaining != axes.Indefinite {
			end = req.Now.Add(o.Remaining)
		}
		s.omu.Lock()
		old, ok := s.outage[d.Digest]
		if o.Started || ok {
			if ok && (old.end.IsZero() || (!end.IsZero() && old.end.After(end))) {
				end = old.end
			}
			if ok || len(s.outage) < s.o.LocalMaxEntries {
				id := req.Identity
				id.Username = strings.Clone(id.Username)
				id.UserAgent = strings.Clone(id.UserAgent)
				dim := store.Dim{Fields: d.Fields, Digest: d.Digest, IPKey: d.IPKey, UserKey: d.UserKey}
				if ok && dim.IPKey.IsZero() && dim.UserKey.IsZero() {
					// A read (Check) carries no index keys: keep those of
					// the write that recorded the lock, which resets match.
					dim.IPKey, dim.UserKey = old.dim.IPKey, old.dim.UserKey
				}
				s.outage[d.Digest] = outageLock{dim: dim, end: end, identity: id}
				s.pending.Store(int64(len(s.outage)))
			}
		}
		s.omu.Unlock()
	}
}

// flushOutage writes the locks started during an outage to Redis, each as
// a failure that starts or extends the dimension's lock to the same end.
// Concurrent decisions wait for it, so none is decided on Redis before
// the locks are there.
func (s *Store) flushOutage(now time.Time) error {
	s.omu.Lock()
	defer s.omu.Unlock()
	for k, ol := range s.outage {
		rem := axes.Indefinite
		win := time.Hour
		if !ol.end.IsZero() {
			rem = ol.end.Sub(now)
			win = max(rem, time.Second)
		}
		if rem <= 0 {
			delete(s.outage, k)
			continue
		}
		r := store.Rule{Limit: 1, Window: win, Cooloff: rem, Extend: true, ReserveTimeout: axes.DefaultReserveTimeout}
		req := store.Request{Op: store.OpFail, Now: now, Rule: &r, Dims: []store.Dim{ol.dim}, Identity: ol.identity}
		ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
		err := s.apply(ctx, &req)
		cancel()
		if err != nil {
			s.pending.Store(int64(len(s.outage)))
			return err
		}
		delete(s.outage, k)
		s.n.outageLocks.Add(1)
	}
	s.pending.Store(int64(len(s.outage)))
	return nil
}

// fail marks Redis unavailable and starts the probe.
func (s *Store) fail(err error) {
	s.mu.Lock()
	if s.closed || s.degraded.Load() {
		s.mu.Unlock()
		return
	}
	s.degraded.Store(true)
	s.n.degradations.Add(1)
	if !s.probing {
		s.probing = true
		s.wg.Add(1)
		go s.probe()
	}
	s.mu.Unlock()
	s.log.Warn("redisstore: Redis unavailable; deciding by "+s.o.OnFailure.String(), "err", err)
	if s.o.OnDegraded != nil {
		s.o.OnDegraded(err)
	}
}

// probe pings Redis with exponential back-off until it answers or the
// store closes.
func (s *Store) probe() {
	defer s.wg.Done()
	wait := s.o.ProbeInterval
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			s.mu.Lock()
			s.probing = false
			s.mu.Unlock()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
		err := s.ping(ctx)
		cancel()
		if err == nil {
			s.mu.Lock()
			s.probing = false
			closed := s.closed
			if !closed {
				s.degraded.Store(false)
				s.n.recoveries.Add(1)
			}
			s.mu.Unlock()
			if !closed {
				s.log.Info("redisstore: Redis available again")
				if s.o.OnRecovered != nil {
					s.o.OnRecovered()
				}
			}
			return
		}
		wait = min(wait*2, 32*s.o.ProbeInterval)
		t.Reset(wait)
	}
}

// ping asks every master for its TIME, and takes the offset of the
// servers' clocks from the replies.
func (s *Store) ping(ctx context.Context) error {
	var mu sync.Mutex
	lowest, seen := int64(math.MaxInt64), false
	ask := func(ctx context.Context, c redis.Cmdable) error {
		t, err := c.Time(ctx).Result()
		if err != nil {
			return err
		}
		off := t.UnixMilli() - s.mono()
		mu.Lock()
		lowest, seen = min(lowest, off), true
		mu.Unlock()
		return nil
	}
	var err error
	if c, ok := s.c.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return ask(ctx, c) })
	} else {
		err = ask(ctx, s.c)
	}
	if err == nil && seen {
		s.observe(lowest)
	}
	return err
}

// mono returns the milliseconds since s.base on the monotonic clock.
func (s *Store) mono() int64 { return time.Since(s.base).Milliseconds() }

// observe records off, a server's TIME minus mono() taken after its
// reply: a lower bound of the true offset, looser the longer the reply
// took. The store keeps the tightest bound seen, let down by 1ms a second
// so that a server clock set back is followed.
func (s *Store) observe(off int64) {
	now := s.mono()
	for {
		old := s.offset.Load()
		v := off
		if s.offsetOK.Load() {
			v = max(off, old-(now-s.offsetAt.Load())/1000)
		}
		if s.offset.CompareAndSwap(old, v) {
			s.offsetAt.Store(now)
			s.offsetOK.Store(true)
			return
		}
	}
}

// deadline returns the last instant, on the server's clock in
// milliseconds, at which a script may start for the caller waiting on ctx,
// or 0 if no offset has been observed yet: ctx's deadline less a fifth of
// the timeout, and early by the time the best observed reply took to
// arrive, so a script that starts before it started well before the store
// gave up.
func (s *Store) deadline(ctx context.Context) int64 {
	dl, ok := ctx.Deadline()
	if !ok || !s.offsetOK.Load() {
		return 0
	}
	return dl.Sub(s.base).Milliseconds() - int64(s.o.Timeout/deadlineMargin/time.Millisecond) + s.offset.Load()
}

// deadlineMargin keeps the last fifth of Options.Timeout for the reply: a
// script that starts later than that could not answer in time, and would
// take effect for a caller that has given up.
const deadlineMargin = 5
