// Package redisstore keeps the state of axes limiters in Redis, so that
// every server behind a load balancer shares one count of failures and one
// set of locks. It works with any redis.UniversalClient: a standalone
// server, Sentinel or Cluster.
//
// Each decision is one round trip: a Lua script (loaded once, run with
// EVALSHA and reloaded on NOSCRIPT) applies axes.Rule.Apply to every
// dimension key of the attempt, on the server's clock (TIME), and writes
// each changed key back with a TTL that covers what it must remember. By
// default all keys share one hash tag, so the dimensions of one attempt are
// updated atomically together, even on Cluster (where axes state then lives
// in one slot); see Options.SpreadSlots for the other layout.
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
	"encoding/binary"
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
	// the outage are not written to Redis when it recovers.
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

	// UseRequestTime makes the store use axes.Request.Now (the limiter's
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
	// is allkeys-*, which may evict lockout keys. By default New only logs
	// a warning. A server that refuses CONFIG (managed Redis) is logged
	// and accepted.
	RefuseEvictingPolicy bool

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
}

// Store is an axes.Store on Redis. Create it with New; its methods are
// safe for concurrent use. It implements axes.LockLister and
// axes.StatsReporter.
type Store struct {
	c      redis.UniversalClient
	o      Options
	tag    string // key part before the digest, such as "axes:{axes}d:"
	root   string // prefix and hash tag, such as "axes:{axes}"
	local  axes.Store
	log    *slog.Logger
	primed sync.Once

	mu       sync.Mutex // protects degraded transitions and the probe
	degraded atomic.Bool
	probing  bool
	stop     chan struct{}
	wg       sync.WaitGroup
	closed   bool

	n struct {
		degradations, recoveries, errors, fallbacks, trips, races atomic.Uint64
	}
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
	if err := checkContextTimeouts(c); err != nil {
		return nil, err
	}
	s := &Store{c: c, o: o, log: o.Logger, stop: make(chan struct{})}
	if o.SpreadSlots {
		s.root = o.Prefix
		s.tag = o.Prefix + "d:"
	} else {
		s.root = o.Prefix + "{" + o.HashTag + "}"
		s.tag = s.root + "d:"
	}
	if o.OnFailure == FallbackLocal {
		local, err := axes.NewMemoryStore(o.LocalMaxEntries)
		if err != nil {
			return nil, fmt.Errorf("redisstore: LocalMaxEntries: %w", err)
		}
		s.local = local
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
		if p := v["maxmemory-policy"]; strings.HasPrefix(p, "allkeys-") {
			if s.o.RefuseEvictingPolicy {
				return fmt.Errorf("%w: %s has %s (use volatile-* or noeviction)", errEvicting, c.Options().Addr, p)
			}
			s.log.Warn("redisstore: maxmemory-policy may evict lockout keys; use volatile-* or noeviction", "addr", c.Options().Addr, "policy", p)
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

// Apply implements axes.Store.
func (s *Store) Apply(req *axes.Request) error {
	if s.local != nil {
		s.primeLocal(req)
	}
	if s.degraded.Load() {
		return s.fallback(req)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	err := s.apply(ctx, req)
	cancel()
	if err != nil {
		s.n.errors.Add(1)
		s.fail(err)
		return s.fallback(req)
	}
	if s.local != nil {
		s.remember(req)
	}
	return nil
}

// primeLocal makes the local store take the limiter's rule as the base of
// its sweeps before any lock is mirrored into it.
func (s *Store) primeLocal(req *axes.Request) {
	s.primed.Do(func() {
		r := *req.Rule
		s.local.Apply(&axes.Request{Op: axes.OpCheck, Now: req.Now, Rule: &r, Dims: []axes.Dim{{Fields: axes.IP}}})
	})
}

// remember mirrors the locks Redis reported into the local store, so that
// they hold while Redis is unavailable.
func (s *Store) remember(req *axes.Request) {
	for i := range req.Dims {
		d := &req.Dims[i]
		if !d.Outcome.Locked {
			continue
		}
		rem := d.Outcome.Remaining
		r := axes.Rule{Limit: 1, Window: max(rem, time.Second), Cooloff: rem, ReserveTimeout: axes.DefaultReserveTimeout}
		one := []axes.Dim{{Fields: d.Fields, Digest: d.Digest, IPKey: d.IPKey, UserKey: d.UserKey}}
		s.local.Apply(&axes.Request{Op: axes.OpFail, Now: req.Now, Rule: &r, Dims: one, Identity: req.Identity})
	}
}

// fallback decides req without Redis, by Options.OnFailure.
func (s *Store) fallback(req *axes.Request) error {
	s.n.fallbacks.Add(1)
	switch s.o.OnFailure {
	case FallbackLocal:
		return s.local.Apply(req)
	case FailOpen:
		for i := range req.Dims {
			req.Dims[i].Outcome = axes.Outcome{}
		}
		return nil
	}
	return errUnavailable
}

var errUnavailable = errors.New("redisstore: Redis is unavailable")

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

func (s *Store) ping(ctx context.Context) error {
	if c, ok := s.c.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	}
	return s.c.Ping(ctx).Err()
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
	}
}

// StoreStats implements axes.StatsReporter, so that the limiter's Stats
// shows the degradation. Entries counts the local fallback store's entries
// only: counting Redis keys would need a scan.
func (s *Store) StoreStats() axes.StoreStats {
	var st axes.StoreStats
	if sr, ok := s.local.(axes.StatsReporter); ok {
		st = sr.StoreStats()
	}
	st.Degraded = s.degraded.Load()
	st.Degradations = s.n.degradations.Load()
	return st
}

// Degraded reports whether Redis is unavailable now.
func (s *Store) Degraded() bool { return s.degraded.Load() }

// key returns the dimension key of d.
func (s *Store) key(d axes.Digest) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], d.Hi)
	binary.BigEndian.PutUint64(b[8:], d.Lo)
	if s.o.SpreadSlots {
		return s.tag + "{" + hex.EncodeToString(b[:]) + "}"
	}
	return s.tag + hex.EncodeToString(b[:])
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
		return -1
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

// ruleArgs appends the script's arguments 3..14 and the tiers.
func (s *Store) header(req *axes.Request, now int64, n int, phase int, token string, ext int, applied bool) []any {
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
	args := make([]any, 0, 23+2*len(r.Tiers)+6*n)
	args = append(args, int(req.Op), now, r.Limit, ms(r.Window), ms(r.Cooloff), factor,
		ms(r.MaxCooloff), r.JitterScale, ms(r.Decay), b(r.Extend), b(r.ObserveOnly),
		b(r.ResetOnSuccess), ms(r.ReserveTimeout), ms(s.o.MaxTTL), n, ip, id.Username, id.UserAgent,
		phase, token, ext, b(applied), len(r.Tiers))
	for _, t := range r.Tiers {
		args = append(args, t.Failures, ms(t.Cooloff))
	}
	return args
}

func (s *Store) now(req *axes.Request) int64 {
	if s.o.UseRequestTime {
		return max(req.Now.UnixMilli(), 0)
	}
	return -1
}

// dimArgs appends the per-dimension arguments of d and returns the keys
// with its index sets appended.
func (s *Store) dimArgs(args []any, keys []string, d *axes.Dim, index bool) ([]any, []string) {
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
	return append(args, d.Gen, int(d.Fields), ipPos, userPos, ik, uk), keys
}

// apply runs req on Redis.
func (s *Store) apply(ctx context.Context, req *axes.Request) error {
	if len(req.Dims) == 0 {
		return nil
	}
	if req.Op == axes.OpReset {
		return s.reset(ctx, req)
	}
	if s.o.SpreadSlots && len(req.Dims) > 1 {
		return s.applySpread(ctx, req)
	}
	n := len(req.Dims)
	keys := make([]string, n, 3*n)
	for i := range req.Dims {
		keys[i] = s.key(req.Dims[i].Digest)
	}
	args := s.header(req, s.now(req), n, 1, "", 0, false)
	for i := range req.Dims {
		args, keys = s.dimArgs(args, keys, &req.Dims[i], !s.o.SpreadSlots)
	}
	s.n.trips.Add(1)
	v, err := s.run(ctx, applyScript, keys, args)
	if err != nil {
		return err
	}
	_, err = parseReply(v, req.Dims, nil)
	return err
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
	lockedBefore, applied, raced bool
	now                          int64
}

// parseReply fills the outcomes of dims from a script reply and, if info
// is not nil, the extra flags. It reports whether the script refused.
func parseReply(v any, dims []axes.Dim, info []dimInfo) (bool, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 2+10*len(dims) {
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
	refused := iv[1] == 1
	for i := range dims {
		r := iv[2+10*i:]
		o := &dims[i].Outcome
		*o = axes.Outcome{
			Failures: int(r[0]),
			Locked:   r[1] == 1,
			Started:  r[2] == 1,
			Counted:  r[3] == 1,
			Busy:     r[4] == 1,
			Refused:  refused,
		}
		if o.Locked {
			o.Remaining = fromMS(r[5])
		}
		dims[i].Gen = uint32(r[6])
		if info != nil {
			info[i] = dimInfo{lockedBefore: r[7] == 1, applied: r[8] == 1, raced: r[9] == 1, now: iv[0]}
		}
	}
	return refused, nil
}

// applySpread runs req dimension by dimension (SpreadSlots), pipelined,
// with a second round trip when one dimension refuses an attempt that
// another has already counted or reserved.
func (s *Store) applySpread(ctx context.Context, req *axes.Request) error {
	n := len(req.Dims)
	token := ""
	if req.Op == axes.OpFail || req.Op == axes.OpBegin {
		var b [12]byte
		rand.Read(b[:])
		token = hex.EncodeToString(b[:])
	}
	now := s.now(req)
	info := make([]dimInfo, n)
	call := func(pipe redis.Pipeliner, i int, phase, ext int, applied bool, now int64) *redis.Cmd {
		d := &req.Dims[i]
		args := s.header(req, now, 1, phase, token, ext, applied)
		args, keys := s.dimArgs(args, []string{s.key(d.Digest)}, d, false)
		return applyScript.EvalSha(ctx, pipe, keys, args...)
	}
	cmds, err := s.pipeline(ctx, func(pipe redis.Pipeliner) []*redis.Cmd {
		cmds := make([]*redis.Cmd, n)
		for i := range n {
			cmds[i] = call(pipe, i, 1, 0, false, now)
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
	if token == "" || !anyRefused {
		return nil
	}
	// Redo the dimensions that did not see the refusal.
	ext := 2
	if anyLocked {
		ext = 1
	}
	var redo []int
	for i := range n {
		switch {
		case info[i].applied:
			redo = append(redo, i)
		case ext == 1 && !info[i].lockedBefore && req.Rule.Extend:
			redo = append(redo, i)
		}
	}
	if len(redo) > 0 {
		cmds, err = s.pipeline(ctx, func(pipe redis.Pipeliner) []*redis.Cmd {
			cmds := make([]*redis.Cmd, len(redo))
			for j, i := range redo {
				cmds[j] = call(pipe, i, 2, ext, info[i].applied, info[i].now)
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
		}
	}
	for i := range req.Dims {
		req.Dims[i].Outcome.Refused = true
	}
	return nil
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

// reset deletes the dimensions of req.
func (s *Store) reset(ctx context.Context, req *axes.Request) error {
	s.n.trips.Add(1)
	_, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i := range req.Dims {
			pipe.Del(ctx, s.key(req.Dims[i].Digest))
			req.Dims[i].Outcome = axes.Outcome{}
		}
		return nil
	})
	if err == nil && s.local != nil {
		err = s.local.Apply(req)
	}
	return err
}
