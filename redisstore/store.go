// Package redisstore keeps the state of axes limiters in Redis, so that
// every server behind a load balancer shares one count of failures and one
// set of locks. It works with any redis.UniversalClient: a standalone
// server, Sentinel or Cluster.
//
// Each decision is one round trip: Lua code (a function library loaded
// once and called with FCALL on Redis 7, a script run with EVALSHA
// otherwise; loaded again where a node lacks it) applies store.Rule.Apply
// to every dimension key of the attempt, on the server's clock (TIME), and
// writes each changed key back, whole, with a TTL that covers what it must
// remember. Concurrent decisions share round trips and calls. By
// default all keys share one hash tag, so the dimensions of one attempt are
// updated atomically together, even on Cluster (where axes state then lives
// in one slot); see Options.SpreadSlots for the other layout.
//
// The store budgets its own footprint (Options.MaxKeys): a dimension seen
// for the first time once the budget is spent is kept in a count-min
// sketch (Options.SketchWidth) that may over-count it, never under-count
// it, so that a spray of new keys cannot exhaust Redis's memory. Use
// maxmemory-policy noeviction: every other policy may evict lockout keys.
//
// Keys hold the limiter's keyed digests, never usernames or IPs (except
// the identity of current locks, for Lockouts): every server must use the
// same axes.WithSecret, and Options.Secret lets the store detect a server
// configured with another one.
package redisstore

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// Store is an store.Store on Redis. Create it with New; its methods are
// safe for concurrent use. It implements store.LockLister and
// store.StatsReporter.
type Store struct {
	c      redis.UniversalClient
	o      Options
	tag    string                     // key part before the digest, such as "axes:{axes}k:"
	bk     [3]string                  // the budget keys of the one-slot layout
	bkArgs [3]any                     // and as arguments, boxed once
	root   string                     // prefix and hash tag, such as "axes:{axes}"
	local  atomic.Pointer[localStore] // FallbackLocal's memory store, made by the first decision; nil before
	log    *slog.Logger
	primed sync.Once

	mu       sync.Mutex // protects degraded transitions and the probe
	degraded atomic.Bool
	probing  bool
	stop     chan struct{}
	wg       sync.WaitGroup
	closed   bool

	// base is the monotonic origin of offset; offset is the server's TIME
	// minus the milliseconds since base, a lower bound taken from replies
	// (see observe).
	base     time.Time
	offset   atomic.Int64
	offsetAt atomic.Int64 // mono() when offset was last set
	offsetOK atomic.Bool

	omu     sync.Mutex                 // protects outage
	outage  map[axes.Digest]outageLock // FallbackLocal: locks started while degraded
	pending atomic.Int64               // len(outage)

	maxKeys, width int // per shard

	rules atomic.Pointer[ruleArgs] // the boxed arguments of the last rule
	fn    atomic.Bool              // the apply script runs as a function (FCALL), not by EVALSHA
	batch batcher                  // the decisions waiting for a round trip

	near   *nearCache                   // local locks; nil under NoLocalLocks
	nearPS atomic.Pointer[redis.PubSub] // the invalidation subscription

	waitRetry atomic.Int64 // WaitReplicas: after a short WAIT, mono() when a write waits again; 0 if none was short

	n struct {
		degradations, recoveries, errors, fallbacks, trips, races, sketched, outageLocks atomic.Uint64
		saved, invalidations                                                             atomic.Uint64
		waited, unacked                                                                  atomic.Uint64
	}
}

// outageLock is a lock the local store started during an outage, to be
// written to Redis on recovery.
type outageLock struct {
	dim      store.Dim
	end      time.Time // on the limiter's clock; zero for a lock with no end
	identity store.Identity
}

// ErrSpraySpread is the error of every decision under axes.Policy.Spray on
// a store with Options.SpreadSlots (see there).
var ErrSpraySpread = errors.New("redisstore: axes.Policy.Spray needs the single-slot layout; turn Options.SpreadSlots off")

// ErrSecretMismatch is returned by New when Options.Secret does not match
// the verifier another server wrote under the same prefix.
var ErrSecretMismatch = errors.New("redisstore: Options.Secret differs from the secret of the servers already using this prefix; every server must share axes.WithSecret")

// New returns a Store on c. It checks the servers' maxmemory-policy and,
// when Options.Secret is set, the shared verifier; if Redis cannot be
// reached, it starts degraded (see Options.OnFailure) rather than fail.
func New(c redis.UniversalClient, o Options) (*Store, error) {
	if c == nil {
		return nil, errors.New("redisstore: New needs a client")
	}
	if o.Prefix == "" {
		o.Prefix = "axes:"
	}
	if o.HashTag == "" {
		o.HashTag = "axes"
	}
	if strings.ContainsAny(o.HashTag, "{}") {
		return nil, fmt.Errorf("redisstore: HashTag must not contain braces, got %q", o.HashTag)
	}
	if o.Timeout == 0 {
		o.Timeout = 100 * time.Millisecond
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("redisstore: Timeout must be positive, got %v", o.Timeout)
	}
	if o.OnFailure > FailOpen {
		return nil, fmt.Errorf("redisstore: unknown OnFailure %d", o.OnFailure)
	}
	if o.LocalMaxEntries == 0 {
		o.LocalMaxEntries = 1 << 16
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = 365 * 24 * time.Hour
	}
	if o.MaxTTL < time.Second {
		return nil, fmt.Errorf("redisstore: MaxTTL must be at least 1s, got %v", o.MaxTTL)
	}
	if o.ProbeInterval == 0 {
		o.ProbeInterval = 50 * time.Millisecond
	}
	if o.ProbeInterval < 0 {
		return nil, fmt.Errorf("redisstore: ProbeInterval must be positive, got %v", o.ProbeInterval)
	}
	if o.Secret != nil && len(o.Secret) < 16 {
		return nil, fmt.Errorf("redisstore: Secret needs at least 16 bytes, got %d", len(o.Secret))
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = 1 << 20
	}
	if o.MaxKeys < 0 {
		return nil, fmt.Errorf("redisstore: MaxKeys must be positive, got %d", o.MaxKeys)
	}
	if o.SketchWidth == 0 {
		o.SketchWidth = 1 << 14
	}
	if o.SketchWidth < 0 || o.SketchWidth > 1<<24 {
		return nil, fmt.Errorf("redisstore: SketchWidth must be in [1, 1<<24], got %d", o.SketchWidth)
	}
	if o.LocalLocksSize == 0 {
		o.LocalLocksSize = 1 << 14
	}
	if o.LocalLocksSize < 0 || o.LocalLocksSize > 1<<26 {
		return nil, fmt.Errorf("redisstore: LocalLocksSize must be in [1, 1<<26], got %d", o.LocalLocksSize)
	}
	if err := checkWait(c, &o); err != nil {
		return nil, err
	}
	if err := checkContextTimeouts(c); err != nil {
		return nil, err
	}
	s := &Store{c: c, o: o, log: o.Logger, stop: make(chan struct{}), base: time.Now(),
		outage: make(map[axes.Digest]outageLock), maxKeys: o.MaxKeys, width: o.SketchWidth}
	if o.SpreadSlots {
		s.maxKeys = o.MaxKeys / spreadShards
		s.width = max((o.SketchWidth+spreadShards-1)/spreadShards, 1)
	}
	if o.SpreadSlots {
		s.root = o.Prefix
		s.tag = o.Prefix + "k:"
	} else {
		s.root = o.Prefix + "{" + o.HashTag + "}"
		s.tag = s.root + "k:"
		s.bk = [3]string{s.root + "b", s.root + "bz", s.root + "s"}
		s.bkArgs = [3]any{s.bk[0], s.bk[1], s.bk[2]}
	}
	if o.OnFailure == FallbackLocal && o.LocalMaxEntries < 1 {
		return nil, fmt.Errorf("redisstore: LocalMaxEntries must be positive, got %d", o.LocalMaxEntries)
	}
	if err := s.startChecks(); err != nil {
		if errors.Is(err, ErrSecretMismatch) || errors.Is(err, errEvicting) {
			return nil, err
		}
		s.fail(err)
	}
	if !o.NoLocalLocks {
		s.near = newNearCache(o.LocalLocksSize)
		s.wg.Add(1)
		go s.listen()
	}
	return s, nil
}

// checkContextTimeouts refuses clients that ignore context deadlines, since
// the store could then wait for a hung server past Options.Timeout.
func checkContextTimeouts(c redis.UniversalClient) error {
	var ok bool
	switch c := c.(type) {
	case *redis.Client:
		ok = c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		ok = c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		ok = c.Options().ContextTimeoutEnabled
	default:
		return nil
	}
	if !ok {
		return errors.New("redisstore: the client must set ContextTimeoutEnabled: true, or calls could wait past Options.Timeout")
	}
	return nil
}

var errEvicting = errors.New("redisstore: maxmemory-policy may evict lockout keys")

// spreadShards is the number of hash tags under SpreadSlots; each has its
// own budget and sketch.
const spreadShards = 256

// budgetGrain is the granularity of the footprint count: units are counted
// by the minute in which they expire.
const budgetGrain = 60_000

// startChecks checks the eviction policy and the secret verifier.
func (s *Store) startChecks() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*s.o.Timeout)
	defer cancel()
	check := func(ctx context.Context, c *redis.Client) error {
		v, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
		if err != nil {
			var re redis.Error
			if errors.As(err, &re) {
				s.log.Warn("redisstore: cannot read maxmemory-policy; make sure Redis does not evict lockout keys", "addr", c.Options().Addr, "err", err)
				return nil
			}
			return err
		}
		if p := v["maxmemory-policy"]; p != "noeviction" {
			if s.o.RefuseEvictingPolicy {
				return fmt.Errorf("%w: %s has %s (use noeviction and size maxmemory for Options.MaxKeys)", errEvicting, c.Options().Addr, p)
			}
			s.log.Warn("redisstore: maxmemory-policy may evict lockout keys (every axes key has a TTL, so volatile-* evicts them too); use noeviction and size maxmemory for Options.MaxKeys", "addr", c.Options().Addr, "policy", p)
		}
		return nil
	}
	var err error
	switch c := s.c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, check)
	case *redis.Client:
		err = check(ctx, c)
	case *redis.Ring:
		err = c.ForEachShard(ctx, check)
	}
	if err != nil {
		return err
	}
	if err := s.ping(ctx); err != nil {
		return err
	}
	if err := s.loadFunction(ctx); err != nil {
		s.log.Info("redisstore: the apply script runs by EVALSHA: FUNCTION LOAD failed (Redis before 7.0, or an ACL without it)", "err", err)
	} else if err := s.c.Do(ctx, s.emptyCall()...).Err(); err != nil {
		s.log.Info("redisstore: the apply script runs by EVALSHA: FCALL failed (an ACL without it?)", "err", err)
	} else {
		s.fn.Store(true)
	}
	if s.o.Secret == nil {
		return nil
	}
	mac := hmac.New(sha256.New, s.o.Secret)
	mac.Write([]byte("axes redisstore verifier v1"))
	want := hex.EncodeToString(mac.Sum(nil))
	key := s.root + "v"
	if err := s.c.SetNX(ctx, key, want, s.o.MaxTTL).Err(); err != nil {
		return err
	}
	got, err := s.c.Get(ctx, key).Result()
	if err != nil {
		return err
	}
	if got != want {
		return ErrSecretMismatch
	}
	return s.c.PExpire(ctx, key, s.o.MaxTTL).Err()
}

// Apply implements store.Store.
func (s *Store) Apply(ctx context.Context, req *store.Request) error {
	if s.o.SpreadSlots && req.Op != store.OpReset && req.Rule != nil && req.Rule.Spray.Limit > 0 {
		s.n.errors.Add(1)
		return ErrSpraySpread
	}
	if s.o.OnFailure == FallbackLocal {
		s.makeLocal(req)
	}
	if req.Op == store.OpReset && s.pending.Load() > 0 {
		s.forgetOutage(func(ol *outageLock) bool {
			for i := range req.Dims {
				if req.Dims[i].Digest == ol.dim.Digest {
					return false
				}
			}
			return true
		})
	}
	if s.degraded.Load() {
		return s.fallback(req)
	}
	if s.serveNear(req) {
		return nil
	}
	ticket := s.nearTicket(req)
	if s.pending.Load() > 0 {
		if err := s.flushOutage(req.Now); err != nil {
			s.n.errors.Add(1)
			s.fail(err)
			return s.fallback(req)
		}
	}
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	err := s.apply(ctx, req)
	cancel()
	if err != nil {
		if caller.Err() != nil {
			// The caller gave up (a client hung up), not Redis: that
			// decision fails alone, and the store stays up, or one
			// client's hang-up would put every server in its outage mode.
			s.n.errors.Add(1)
			return caller.Err()
		}
		s.n.errors.Add(1)
		s.fail(err)
		return s.fallback(req)
	}
	s.fillNear(req, ticket)
	if s.o.OnFailure == FallbackLocal {
		s.remember(req)
	}
	return nil
}

// forgetOutage drops the locks of an outage that a reset forgot, so that
// they are not written back when Redis returns: keep reports whether a
// lock's dimension is still wanted.
func (s *Store) forgetOutage(keep func(ol *outageLock) bool) {
	s.omu.Lock()
	defer s.omu.Unlock()
	for k, ol := range s.outage {
		if !keep(&ol) {
			delete(s.outage, k)
		}
	}
	s.pending.Store(int64(len(s.outage)))
}

// Close stops the probe and waits for it. It does not close the client,
// which belongs to the caller. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	s.closeNear()
	s.wg.Wait()
	return nil
}

// Stats returns the store's figures.
func (s *Store) Stats() Stats {
	return Stats{
		Degraded:     s.degraded.Load(),
		Degradations: s.n.degradations.Load(),
		Recoveries:   s.n.recoveries.Load(),
		Errors:       s.n.errors.Load(),
		Fallbacks:    s.n.fallbacks.Load(),
		RoundTrips:   s.n.trips.Load(),
		UndoRaces:    s.n.races.Load(),
		Sketched:     s.n.sketched.Load(),
		OutageLocks:  s.n.outageLocks.Load(),

		RoundTripsSaved:    s.n.saved.Load(),
		CacheInvalidations: s.n.invalidations.Load(),

		Waited:         s.n.waited.Load(),
		Unacknowledged: s.n.unacked.Load(),
	}
}

// StoreStats implements store.StatsReporter, so that the limiter's Stats
// shows the degradation. Entries counts the local fallback store's entries
// only: counting Redis keys would need a scan. SketchDecisions adds the
// dimension decisions kept in Redis's sketch (Stats.Sketched).
func (s *Store) StoreStats() store.Stats {
	var st store.Stats
	if sr, ok := s.localOr().(store.StatsReporter); ok {
		st = sr.StoreStats()
	}
	st.Degraded = s.degraded.Load()
	st.Degradations = s.n.degradations.Load()
	st.SketchDecisions += s.n.sketched.Load()
	return st
}

// Degraded reports whether Redis is unavailable now.
func (s *Store) Degraded() bool { return s.degraded.Load() }

// apply runs req on Redis.
func (s *Store) apply(ctx context.Context, req *store.Request) error {
	if len(req.Dims) == 0 {
		return nil
	}
	if req.Op == store.OpReset {
		return s.reset(ctx, req)
	}
	if s.o.SpreadSlots && len(req.Dims) > 1 {
		return s.applySpread(ctx, req)
	}
	v, err := s.decideWait(ctx, req.Op, s.applyCommand(ctx, req))
	if err != nil {
		return err
	}
	n := len(req.Dims)
	var info [4]dimInfo
	var in []dimInfo
	if n <= len(info) {
		in = info[:n]
	} else {
		in = make([]dimInfo, n)
	}
	_, err = parseReply(req.Op, v, req.Dims, in)
	if err == nil {
		s.noteReply(in)
	}
	return err
}

// applyCommand returns the script call of req in the one-slot layout (or
// of a single dimension under SpreadSlots): FCALL and the function, or
// EVALSHA and the script's hash (retarget), the number of keys, the keys
// (the budget keys, then the dimension keys), the number of rules (one),
// the rule and the decision.
func (s *Store) applyCommand(ctx context.Context, req *store.Request) []any {
	n := len(req.Dims)
	cmd := make([]any, 3, 3+keyDims-1+n+3)
	cmd[2] = keyDims - 1 + n
	s.retarget(cmd)
	if s.o.SpreadSlots {
		bk := s.budgetKeys(req.Dims[0].Digest)
		cmd = append(cmd, bk[0], bk[1], bk[2])
	} else {
		cmd = append(cmd, s.bkArgs[:]...)
	}
	for i := range req.Dims {
		cmd = append(cmd, s.key(req.Dims[i].Digest))
	}
	return append(cmd, one, s.ruleArgs(req.Rule).arg,
		s.decision(req, req.Dims, s.now(req), phaseApply, "", extNone, false, s.deadline(ctx)))
}

// noteReply takes the clock offset from the server's TIME in a reply
// just received, and counts the dimensions kept in the sketch.
func (s *Store) noteReply(info []dimInfo) {
	if len(info) == 0 {
		return
	}
	s.observe(info[0].server - s.mono())
	for i := range info {
		if info[i].sketched {
			s.n.sketched.Add(1)
		}
	}
}

// pipeline runs the commands that fill adds in one round trip, loading the
// script and retrying once on NOSCRIPT.
func (s *Store) pipeline(ctx context.Context, fill func(redis.Pipeliner) []*redis.Cmd) ([]*redis.Cmd, error) {
	s.n.trips.Add(1)
	pipe := s.c.Pipeline()
	cmds := fill(pipe)
	_, err := pipe.Exec(ctx)
	if err == nil {
		return cmds, nil
	}
	noscript := false
	for _, c := range cmds {
		if e := c.Err(); e != nil {
			if !missingScript(e) {
				return nil, e
			}
			noscript = true
		}
	}
	if !noscript {
		return nil, err
	}
	s.n.trips.Add(1)
	if err := s.loadApply(ctx); err != nil {
		return nil, err
	}
	// The commands that ran have taken effect: run again only those that
	// found no script, or a spread attempt would count twice in the
	// dimensions whose node had it.
	for _, c := range cmds {
		if e := c.Err(); e == nil || !missingScript(e) {
			continue
		}
		s.n.trips.Add(1)
		s.retarget(c.Args())
		v, err := s.c.Do(ctx, c.Args()...).Result()
		if err != nil {
			return nil, err
		}
		c.SetErr(nil)
		c.SetVal(v)
	}
	return cmds, nil
}

// reset deletes the dimensions of req, and their units of the budget. It
// cannot take them out of the sketch.
func (s *Store) reset(ctx context.Context, req *store.Request) error {
	s.n.trips.Add(1)
	_, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i := range req.Dims {
			d := req.Dims[i].Digest
			bk := s.budgetKeys(d)
			deleteScript.Eval(ctx, pipe, []string{bk[0], bk[1], s.key(d)}, budgetGrain, ms(s.o.MaxTTL))
			req.Dims[i].Outcome = store.Outcome{}
		}
		return nil
	})
	if err == nil {
		s.n.trips.Add(1)
		err = s.publishReset(ctx, digestsMessage(req.Dims))
	}
	if local := s.localOr(); err == nil && local != nil {
		err = local.Apply(context.Background(), req)
	}
	return err
}
