// Package redisstore keeps the state of axes limiters in Redis, so that
// every server behind a load balancer shares one count of failures and one
// set of locks. It works with any redis.UniversalClient: a standalone
// server, Sentinel or Cluster.
//
// Each decision is one round trip: a Lua script (loaded once, run with
// EVALSHA and reloaded on NOSCRIPT) applies store.Rule.Apply to every
// dimension key of the attempt, on the server's clock (TIME), and writes
// each changed key back with a TTL that covers what it must remember. By
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
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// FailureMode says what a Store does when Redis errors or does not answer
// within Options.Timeout.
type FailureMode uint8

// The failure modes of Options.OnFailure.
const (
	// FallbackLocal answers from a local memory store while Redis is
	// unavailable. The local store keeps the locks this server has seen
	// Redis report, so that clients known to be locked stay locked, and it
	// counts the failures of the outage by itself. Locks that start during
	// the outage (up to LocalMaxEntries of them) are written to Redis when
	// it answers again, before any other decision, so that they keep
	// refusing until they end, on every server.
	FallbackLocal FailureMode = iota
	// FailClosed returns an error: the limiter refuses every attempt with
	// axes.ReasonUnavailable until Redis recovers.
	FailClosed
	// FailOpen reports every dimension unlocked and counts nothing until
	// Redis recovers: logins go on unprotected.
	FailOpen
)

var modeNames = [...]string{"fallback-local", "fail-closed", "fail-open"}

// String returns the mode's name, such as "fallback-local".
func (m FailureMode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "FailureMode(" + strconv.Itoa(int(m)) + ")"
}

// Options configures New. The zero Options is valid: keys under "axes:" in
// one hash slot, the server's clock, a 100ms timeout, FallbackLocal.
type Options struct {
	// Prefix starts every key. Default "axes:".
	Prefix string

	// HashTag is the Redis Cluster hash tag shared by every key (without
	// braces), so that one script can update all the dimensions of an
	// attempt. Default "axes". Ignored under SpreadSlots.
	HashTag string

	// SpreadSlots gives every dimension key its own hash tag, spreading
	// axes state over all the slots of a Cluster. Each dimension is then
	// its own script call, pipelined in one round trip, and atomic only by
	// itself: when one dimension of an attempt refuses it (locked or busy)
	// while another has already counted or reserved it, a second round
	// trip undoes that in the other dimensions, unless another attempt
	// wrote them in between (counted in Stats.UndoRaces). ResetIP,
	// ResetUsername and Lockouts then scan every key.
	SpreadSlots bool

	// UseRequestTime makes the store use store.Request.Now (the limiter's
	// clock) instead of the Redis server's TIME. Use it with fake clocks
	// (tests, simulations) or when the servers' clocks are trusted more
	// than Redis's; all servers sharing a prefix must agree.
	UseRequestTime bool

	// Timeout bounds every call to Redis; no call waits longer. Default
	// 100ms. The client must honour contexts (ContextTimeoutEnabled).
	Timeout time.Duration

	// OnFailure says what happens while Redis is unavailable. Default
	// FallbackLocal.
	OnFailure FailureMode

	// LocalMaxEntries caps the fallback memory store. Default 1<<16.
	LocalMaxEntries int

	// Secret, if set, must be the secret given to axes.WithSecret. New
	// writes a verifier derived from it next to the keys and refuses to
	// start when another server wrote a different one: servers with
	// different secrets would count in separate keys without noticing.
	Secret []byte

	// RefuseEvictingPolicy makes New fail when a server's maxmemory-policy
	// is not noeviction. Every axes key has a TTL, so volatile-* policies
	// evict lockout keys as allkeys-* do. By default New only logs a
	// warning. A server that refuses CONFIG (managed Redis) is logged and
	// accepted.
	RefuseEvictingPolicy bool

	// MaxKeys is the footprint budget: how many keys and index set members
	// the store may hold in Redis (each dimension key counts one; with the
	// default layout each index set counts one plus one per member). A
	// dimension seen for the first time while the budget is spent is kept
	// in the sketch instead (see SketchWidth), so that a spray of new keys
	// cannot exhaust Redis's memory; keys already held stay exact. Units
	// are counted by the minute in which they expire, so a key is counted
	// until at most a minute after it expired. Under SpreadSlots each of
	// the 256 shards gets MaxKeys/256 (rounded down). Default 1<<20.
	MaxKeys int

	// SketchWidth is the number of cells in each of the sketch's 4 rows
	// (24 bytes a cell, so the default takes 1.5 MiB). The sketch keeps the
	// dimensions the budget cannot: a count-min sketch whose cells hold
	// failures, reservations, the last failure and the lock end, so that a
	// dimension in it may be over-counted (it shares its cells with others)
	// but never under-counted. Wider means fewer false lockouts when a
	// spray fills the budget. Under SpreadSlots each shard gets
	// SketchWidth/256 cells a row. Default 1<<14.
	SketchWidth int

	// MaxTTL bounds the TTL of every key. A lock with no end (axes.Forever)
	// is kept this long. Default 365 days.
	MaxTTL time.Duration

	// ProbeInterval is the first wait before probing Redis after a
	// failure; it doubles up to 32 times itself. Default 50ms.
	ProbeInterval time.Duration

	// Logger receives warnings (eviction policy, degradation). Default
	// slog.Default().
	Logger *slog.Logger

	// OnDegraded, if set, is called once when Redis becomes unavailable,
	// with the error, and OnRecovered when it answers again. They run on
	// the goroutine that noticed, outside any lock.
	OnDegraded  func(err error)
	OnRecovered func()
}

// Stats are the store's own figures.
type Stats struct {
	Degraded     bool   // Redis is unavailable now
	Degradations uint64 // times Redis became unavailable
	Recoveries   uint64 // times it answered again
	Errors       uint64 // Redis calls that failed or timed out
	Fallbacks    uint64 // decisions made without Redis (by OnFailure)
	RoundTrips   uint64 // round trips made for decisions
	UndoRaces    uint64 // SpreadSlots: undos skipped because a dimension was written in between
	Sketched     uint64 // dimension decisions kept in the sketch because the budget was spent
	OutageLocks  uint64 // locks started during an outage and written to Redis on recovery
}

// Store is an store.Store on Redis. Create it with New; its methods are
// safe for concurrent use. It implements store.LockLister and
// store.StatsReporter.
type Store struct {
	c      redis.UniversalClient
	o      Options
	tag    string                     // key part before the digest, such as "axes:{axes}d:"
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

	n struct {
		degradations, recoveries, errors, fallbacks, trips, races, sketched, outageLocks atomic.Uint64
	}
}

// outageLock is a lock the local store started during an outage, to be
// written to Redis on recovery.
type outageLock struct {
	dim      store.Dim
	end      time.Time // on the limiter's clock; zero for a lock with no end
	identity store.Identity
}

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
		s.tag = o.Prefix + "d:"
	} else {
		s.root = o.Prefix + "{" + o.HashTag + "}"
		s.tag = s.root + "d:"
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
	if s.o.OnFailure == FallbackLocal {
		s.makeLocal(req)
	}
	if s.degraded.Load() {
		return s.fallback(req)
	}
	if s.pending.Load() > 0 {
		if err := s.flushOutage(req.Now); err != nil {
			s.n.errors.Add(1)
			s.fail(err)
			return s.fallback(req)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	err := s.apply(ctx, req)
	cancel()
	if err != nil {
		s.n.errors.Add(1)
		s.fail(err)
		return s.fallback(req)
	}
	if s.o.OnFailure == FallbackLocal {
		s.remember(req)
	}
	return nil
}

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

// key returns the dimension key of d: under SpreadSlots it carries the
// hash tag of d's shard.
func (s *Store) key(d axes.Digest) string {
	if s.o.SpreadSlots {
		return s.tag + s.shardTag(d) + d.String()
	}
	return s.tag + d.String()
}

// shardTag returns the hash tag of d's shard under SpreadSlots, such as
// "{3f}".
func (s *Store) shardTag(d axes.Digest) string {
	const digits = "0123456789abcdef"
	b := byte(d.Hi >> 56)
	return string([]byte{'{', digits[b>>4], digits[b&15], '}'})
}

// budgetKeys returns the budget hash, the budget minutes and the sketch
// in the slot of d's key.
func (s *Store) budgetKeys(d axes.Digest) [3]string {
	r := s.root
	if s.o.SpreadSlots {
		r = s.o.Prefix + s.shardTag(d)
	}
	return [3]string{r + "b", r + "bz", r + "s"}
}

// columns returns d's sketch cell in each of the 4 rows.
func (s *Store) columns(d axes.Digest) [4]uint64 {
	w := uint64(s.width)
	return [4]uint64{
		(d.Lo & 0xffffffff) % w,
		(d.Lo >> 32) % w,
		(d.Hi & 0xffffffff) % w,
		((d.Hi >> 32) & 0xffffff) % w,
	}
}

// indexKey returns the index set of field f with digest d (one-slot
// layout only).
func (s *Store) indexKey(f axes.Fields, d axes.Digest) string {
	if f == axes.IP {
		return s.root + "i:" + d.String()
	}
	return s.root + "u:" + d.String()
}

// ms converts a duration to whole milliseconds, rounding up; Indefinite
// becomes -1 and huge values saturate.
func ms(d time.Duration) int64 {
	switch {
	case d == axes.Indefinite:
		return msIndefinite
	case d <= 0:
		return 0
	case d/time.Millisecond >= maxMS:
		return maxMS
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// maxMS is the script's saturation bound (2^52-1 ms, about 142,000 years).
const maxMS = 1<<52 - 1

func fromMS(v int64) time.Duration {
	switch {
	case v < 0:
		return axes.Indefinite
	case v >= int64(axes.Indefinite/time.Millisecond):
		return axes.Indefinite - 1
	}
	return time.Duration(v) * time.Millisecond
}

// header returns the script's arguments up to the tiers.
func (s *Store) header(req *store.Request, now int64, n int, phase int, token string, ext int, applied bool, deadline int64) []any {
	r := req.Rule
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	factor := r.Factor
	if math.IsNaN(factor) {
		factor = 0
	}
	id := req.Identity
	ip := ""
	if id.IP.IsValid() {
		ip = id.IP.String()
	}
	args := make([]any, argTiers, argTiers+2*len(r.Tiers)+dimArgs*n)
	set := func(pos int, v any) { args[pos-1] = v }
	set(argOp, int(req.Op))
	set(argNow, now)
	set(argLimit, r.Limit)
	set(argWindow, ms(r.Window))
	set(argCooloff, ms(r.Cooloff))
	set(argFactor, factor)
	set(argMaxCooloff, ms(r.MaxCooloff))
	set(argJitter, r.JitterScale)
	set(argDecay, ms(r.Decay))
	set(argExtend, b(r.Extend))
	set(argObserve, b(r.ObserveOnly))
	set(argResetOnSuccess, b(r.ResetOnSuccess))
	set(argReserveTimeout, ms(r.ReserveTimeout))
	set(argMaxTTL, ms(s.o.MaxTTL))
	set(argDims, n)
	set(argIdentityIP, ip)
	set(argIdentityUser, id.Username)
	set(argIdentityUA, id.UserAgent)
	set(argPhase, phase)
	set(argToken, token)
	set(argExt, ext)
	set(argApplied, b(applied))
	set(argDeadline, deadline)
	set(argBudget, s.maxKeys)
	set(argWidth, s.width)
	set(argGrain, budgetGrain)
	set(argTiers, len(r.Tiers))
	for _, t := range r.Tiers {
		args = append(args, t.Failures, ms(t.Cooloff))
	}
	return args
}

func (s *Store) now(req *store.Request) int64 {
	if s.o.UseRequestTime {
		return max(req.Now.UnixMilli(), 0)
	}
	return -1
}

// dimArgs appends the per-dimension arguments of d and returns the keys
// with its index sets appended.
func (s *Store) dimArgs(args []any, keys []string, d *store.Dim, index bool) ([]any, []string) {
	ipPos, userPos := 0, 0
	ik, uk := "", ""
	if d.Fields&axes.IP != 0 && !d.IPKey.IsZero() {
		if index {
			keys = append(keys, s.indexKey(axes.IP, d.IPKey))
			ipPos = len(keys)
		} else {
			ik = d.IPKey.String()
		}
	}
	if d.Fields&axes.Username != 0 && !d.UserKey.IsZero() {
		if index {
			keys = append(keys, s.indexKey(axes.Username, d.UserKey))
			userPos = len(keys)
		} else {
			uk = d.UserKey.String()
		}
	}
	c := s.columns(d.Digest)
	var a [dimArgs]any
	a[dimGen] = d.Gen
	a[dimFields] = int(d.Fields)
	a[dimIPIndex] = ipPos
	a[dimUserIndex] = userPos
	a[dimIPKey] = ik
	a[dimUserKey] = uk
	for r := range c {
		a[dimColumns+r] = c[r]
	}
	return append(args, a[:]...), keys
}

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
	n := len(req.Dims)
	bk := s.budgetKeys(req.Dims[0].Digest)
	keys := make([]string, keyDims-1+n, keyDims-1+3*n)
	copy(keys, bk[:])
	for i := range req.Dims {
		keys[keyDims-1+i] = s.key(req.Dims[i].Digest)
	}
	args := s.header(req, s.now(req), n, phaseApply, "", extNone, false, s.deadline(ctx))
	for i := range req.Dims {
		args, keys = s.dimArgs(args, keys, &req.Dims[i], !s.o.SpreadSlots)
	}
	s.n.trips.Add(1)
	v, err := s.run(ctx, applyScript, keys, args)
	if err != nil {
		return err
	}
	info := make([]dimInfo, n)
	_, err = parseReply(v, req.Dims, info)
	if err == nil {
		s.noteReply(info)
	}
	return err
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

// run runs a script with EVALSHA, loading it on NOSCRIPT.
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args []any) (any, error) {
	v, err := sc.EvalSha(ctx, s.c, keys, args...).Result()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		s.n.trips.Add(1)
		v, err = sc.Eval(ctx, s.c, keys, args...).Result()
	}
	return v, err
}

// dimInfo is what the script reports of one dimension beyond its Outcome.
type dimInfo struct {
	lockedBefore, applied, raced, sketched bool
	now, server                            int64 // the script's timeline and the server's TIME
}

// parseReply fills the outcomes of dims from a script reply and, if info
// is not nil, the extra flags. It reports whether the script refused.
func parseReply(v any, dims []store.Dim, info []dimInfo) (bool, error) {
	a, ok := v.([]any)
	if !ok || len(a) != replyHead+replyDim*len(dims) {
		return false, fmt.Errorf("redisstore: unexpected script reply %T of length %d", v, len(a))
	}
	iv := make([]int64, len(a))
	for i, x := range a {
		n, ok := x.(int64)
		if !ok {
			return false, fmt.Errorf("redisstore: unexpected script reply element %T", x)
		}
		iv[i] = n
	}
	refused := iv[replyRefused] == 1
	for i := range dims {
		r := iv[replyHead+replyDim*i:]
		o := &dims[i].Outcome
		*o = store.Outcome{
			Failures: int(r[replyFailures]),
			Locked:   r[replyLocked] == 1,
			Started:  r[replyStarted] == 1,
			Counted:  r[replyCounted] == 1,
			Busy:     r[replyBusy] == 1,
			Refused:  refused,
			TimedOut: int(r[replyTimedOut]),
		}
		if o.Locked {
			o.Remaining = fromMS(r[replyRemaining])
		}
		dims[i].Gen = uint32(r[replyGen])
		if info != nil {
			info[i] = dimInfo{lockedBefore: r[replyLockedBefore] == 1, applied: r[replyApplied] == 1,
				raced: r[replyRaced] == 1, sketched: r[replySketched] == 1,
				now: iv[replyNow], server: iv[replyServer]}
		}
	}
	return refused, nil
}

// applySpread runs req dimension by dimension (SpreadSlots), pipelined,
// with a second round trip when one dimension refuses an attempt that
// another has already counted or reserved.
func (s *Store) applySpread(ctx context.Context, req *store.Request) error {
	n := len(req.Dims)
	token := ""
	if req.Op == store.OpFail || req.Op == store.OpBegin {
		var b [12]byte
		rand.Read(b[:])
		token = hex.EncodeToString(b[:])
	}
	now := s.now(req)
	info := make([]dimInfo, n)
	call := func(pipe redis.Pipeliner, i int, phase, ext int, applied bool, now int64) *redis.Cmd {
		d := &req.Dims[i]
		args := s.header(req, now, 1, phase, token, ext, applied, s.deadline(ctx))
		bk := s.budgetKeys(d.Digest)
		args, keys := s.dimArgs(args, []string{bk[0], bk[1], bk[2], s.key(d.Digest)}, d, false)
		return applyScript.EvalSha(ctx, pipe, keys, args...)
	}
	cmds, err := s.pipeline(ctx, func(pipe redis.Pipeliner) []*redis.Cmd {
		cmds := make([]*redis.Cmd, n)
		for i := range n {
			cmds[i] = call(pipe, i, phaseApply, extNone, false, now)
		}
		return cmds
	})
	if err != nil {
		return err
	}
	anyLocked, anyRefused := false, false
	for i, c := range cmds {
		refused, err := parseReply(c.Val(), req.Dims[i:i+1], info[i:i+1])
		if err != nil {
			return err
		}
		anyRefused = anyRefused || refused
		anyLocked = anyLocked || info[i].lockedBefore
	}
	s.noteSpread(info)
	if token == "" || !anyRefused {
		return nil
	}
	// Redo the dimensions that did not see the refusal.
	ext := extBusy
	if anyLocked {
		ext = extLocked
		// As in Rule.Apply, a locked attempt is refused before any
		// dimension is found busy.
		for i := range req.Dims {
			req.Dims[i].Outcome.Busy = false
		}
	}
	var redo []int
	for i := range n {
		switch {
		case info[i].applied:
			redo = append(redo, i)
		case ext == extLocked && !info[i].lockedBefore && req.Rule.Extend:
			redo = append(redo, i)
		}
	}
	if len(redo) > 0 {
		cmds, err = s.pipeline(ctx, func(pipe redis.Pipeliner) []*redis.Cmd {
			cmds := make([]*redis.Cmd, len(redo))
			for j, i := range redo {
				cmds[j] = call(pipe, i, phaseRedo, ext, info[i].applied, info[i].now)
			}
			return cmds
		})
		if err != nil {
			return err
		}
		for j, i := range redo {
			var in [1]dimInfo
			if _, err := parseReply(cmds[j].Val(), req.Dims[i:i+1], in[:]); err != nil {
				return err
			}
			if in[0].raced {
				s.n.races.Add(1)
			}
			s.noteSpread(in[:])
		}
	}
	for i := range req.Dims {
		req.Dims[i].Outcome.Refused = true
	}
	return nil
}

// noteSpread is noteReply for the replies of a pipeline, possibly from
// several servers: it keeps the lowest offset.
func (s *Store) noteSpread(info []dimInfo) {
	if len(info) == 0 {
		return
	}
	lowest := info[0].server
	for i := range info {
		lowest = min(lowest, info[i].server)
		if info[i].sketched {
			s.n.sketched.Add(1)
		}
	}
	s.observe(lowest - s.mono())
}

// pipeline runs the commands that fill adds in one round trip, loading the
// script and retrying once on NOSCRIPT.
func (s *Store) pipeline(ctx context.Context, fill func(redis.Pipeliner) []*redis.Cmd) ([]*redis.Cmd, error) {
	for attempt := 0; ; attempt++ {
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
				if !redis.HasErrorPrefix(e, "NOSCRIPT") {
					return nil, e
				}
				noscript = true
			}
		}
		if !noscript || attempt > 0 {
			return nil, err
		}
		s.n.trips.Add(1)
		if err := applyScript.Load(ctx, s.c).Err(); err != nil {
			return nil, err
		}
	}
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
	if local := s.localOr(); err == nil && local != nil {
		err = local.Apply(context.Background(), req)
	}
	return err
}
