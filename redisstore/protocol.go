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
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
)

// Protocol: the keys of a dimension, and the script's arguments and
// replies, at the positions script.go names and script.lua reads.

// key returns the dimension key of d: under SpreadSlots it carries the
// hash tag of d's shard.
func (s *Store) key(d axes.Digest) string {
	if s.o.SpreadSlots {
		return s.tag + s.shardTag(d) + d.String()
	}
	return digestKey(s.tag, d)
}

// digestKey returns prefix followed by the 32 hexadecimal digits of d, in
// one allocation.
func digestKey(prefix string, d axes.Digest) string {
	var b strings.Builder
	b.Grow(len(prefix) + 32)
	b.WriteString(prefix)
	var h [16]byte
	binary.BigEndian.PutUint64(h[:8], d.Hi)
	binary.BigEndian.PutUint64(h[8:], d.Lo)
	var x [32]byte
	hex.Encode(x[:], h[:])
	b.Write(x[:])
	return b.String()
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
	if !s.o.SpreadSlots {
		return s.bk
	}
	r := s.o.Prefix + s.shardTag(d)
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
		return digestKey(s.root+"i:", d)
	}
	return digestKey(s.root+"u:", d)
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

// ruleArgs are the script's arguments that come from a rule and the
// store's options, boxed once: the rule of the last decision is kept, and
// a decision under an equal rule copies them instead of boxing them again.
type ruleArgs struct {
	key   ruleKey
	tiers []store.Tier
	args  []any // argTiers + 2*len(tiers) values; the per-decision ones left nil
}

// ruleKey is a store.Rule without its tiers and its per-attempt fields
// (JitterScale, Challenged).
type ruleKey struct {
	limit                                         int
	window, cooloff, maxCooloff, decay, reserveTO time.Duration
	factor                                        float64
	extend, observe, resetOnSuccess               bool
	challengeAt                                   int
	spray                                         store.Spray
}

func keyOf(r *store.Rule) ruleKey {
	return ruleKey{limit: r.Limit, window: r.Window, cooloff: r.Cooloff, maxCooloff: r.MaxCooloff,
		decay: r.Decay, reserveTO: r.ReserveTimeout, factor: r.Factor, extend: r.Extend,
		observe: r.ObserveOnly, resetOnSuccess: r.ResetOnSuccess, challengeAt: r.ChallengeAt,
		spray: r.Spray}
}

// flag returns a script flag.
func flag(v bool) any {
	if v {
		return "1"
	}
	return "0"
}

// minusOne is -1 boxed once (the server's clock, Indefinite).
var minusOne any = int64(-1)

// ruleArgs returns the boxed rule arguments of r.
func (s *Store) ruleArgs(r *store.Rule) *ruleArgs {
	k := keyOf(r)
	if ra := s.rules.Load(); ra != nil && ra.key == k && slices.Equal(ra.tiers, r.Tiers) {
		return ra
	}
	factor := r.Factor
	if math.IsNaN(factor) {
		factor = 0
	}
	args := make([]any, argTiers, argTiers+2*len(r.Tiers))
	set := func(pos int, v any) { args[pos-1] = v }
	set(argLimit, r.Limit)
	set(argWindow, ms(r.Window))
	set(argCooloff, ms(r.Cooloff))
	set(argFactor, factor)
	set(argMaxCooloff, ms(r.MaxCooloff))
	set(argDecay, ms(r.Decay))
	set(argExtend, flag(r.Extend))
	set(argObserve, flag(r.ObserveOnly))
	set(argResetOnSuccess, flag(r.ResetOnSuccess))
	set(argReserveTimeout, ms(r.ReserveTimeout))
	set(argMaxTTL, ms(s.o.MaxTTL))
	set(argBudget, s.maxKeys)
	set(argWidth, s.width)
	set(argGrain, budgetGrain)
	set(argChallengeAt, r.ChallengeAt)
	set(argSpray, sprayArg(r.Spray))
	set(argTiers, len(r.Tiers))
	for _, t := range r.Tiers {
		args = append(args, t.Failures, ms(t.Cooloff))
	}
	ra := &ruleArgs{key: k, tiers: slices.Clone(r.Tiers), args: args}
	s.rules.Store(ra)
	return ra
}

// header returns the script's arguments up to the tiers, with room for
// extra more.
func (s *Store) header(req *store.Request, now int64, n int, phase int, token string, ext int, applied bool, deadline int64) []any {
	return s.headerCap(req, now, n, phase, token, ext, applied, deadline, dimArgs*n)
}

func (s *Store) headerCap(req *store.Request, now int64, n int, phase int, token string, ext int, applied bool, deadline int64, extra int) []any {
	r := req.Rule
	ra := s.ruleArgs(r)
	args := make([]any, len(ra.args), len(ra.args)+extra)
	copy(args, ra.args)
	set := func(pos int, v any) { args[pos-1] = v }
	id := req.Identity
	var ip any = ""
	if id.IP.IsValid() {
		ip = id.IP.String()
	}
	set(argOp, int(req.Op))
	if now == -1 {
		set(argNow, minusOne)
	} else {
		set(argNow, now)
	}
	set(argJitter, r.JitterScale)
	set(argDims, n)
	set(argIdentityIP, ip)
	set(argIdentityUser, id.Username)
	set(argIdentityUA, id.UserAgent)
	set(argPhase, phase)
	set(argToken, token)
	set(argExt, ext)
	set(argApplied, flag(applied))
	set(argDeadline, deadline)
	set(argChallenged, flag(r.Challenged))
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
	a[dimKind] = int(d.Kind)
	for r := range c {
		a[dimColumns+r] = boxColumn(c[r])
	}
	return append(args, a[:]...), keys
}

// boxedColumns holds the sketch columns of the default width boxed once,
// so that a decision does not allocate for each of its 4 per dimension.
var boxedColumns = sync.OnceValue(func() []any {
	b := make([]any, 1<<14)
	for i := range b {
		b[i] = uint64(i)
	}
	return b
})

// boxColumn returns the column v as an argument.
func boxColumn(v uint64) any {
	if b := boxedColumns(); v < uint64(len(b)) {
		return b[v]
	}
	return v
}

// dimInfo is what the script reports of one dimension beyond its Outcome.
type dimInfo struct {
	lockedBefore, applied, raced, sketched bool
	now, server                            int64 // the script's timeline and the server's TIME
}

// parseReply fills the outcomes of dims from a script reply (of one
// decision, alone or in the list of a call's replies) and, if info is not
// nil, the extra flags. It reports whether the script refused.
func parseReply(op store.Op, v any, dims []store.Dim, info []dimInfo) (bool, error) {
	if w, ok := v.([]any); ok && len(w) == 1 {
		// The reply of a call of one decision, not yet unwrapped.
		if err, ok := w[0].(error); ok {
			return false, err
		}
		v = w[0]
	}
	a, ok := v.([]any)
	if !ok || len(a) != replyHead+replyDim*len(dims) {
		return false, fmt.Errorf("redisstore: unexpected script reply %T of length %d", v, len(a))
	}
	for _, x := range a {
		if _, ok := x.(int64); !ok {
			return false, fmt.Errorf("redisstore: unexpected script reply element %T", x)
		}
	}
	iv := func(i int) int64 { return a[i].(int64) }
	refused := iv(replyRefused) == 1
	for i := range dims {
		at := replyHead + replyDim*i
		r := func(j int) int64 { return a[at+j].(int64) }
		o := &dims[i].Outcome
		*o = store.Outcome{
			Failures:  int(r(replyFailures)),
			Locked:    r(replyLocked) == 1,
			Started:   r(replyStarted) == 1,
			Counted:   r(replyCounted) == 1,
			Busy:      r(replyBusy) == 1,
			Refused:   refused,
			Challenge: r(replyChallenge) == 1,
			TimedOut:  int(r(replyTimedOut)),
			Reserved:  op == store.OpBegin && r(replyApplied) == 1,
		}
		if o.Locked {
			o.Remaining = fromMS(r(replyRemaining))
		}
		dims[i].Gen = uint32(r(replyGen))
		if info != nil {
			info[i] = dimInfo{lockedBefore: r(replyLockedBefore) == 1, applied: r(replyApplied) == 1,
				raced: r(replyRaced) == 1, sketched: r(replySketched) == 1,
				now: iv(replyNow), server: iv(replyServer)}
		}
	}
	return refused, nil
}

// sprayArg encodes sp for the script's argSpray.
func sprayArg(sp store.Spray) string {
	if sp.Limit <= 0 {
		return "0"
	}
	return strconv.Itoa(sp.Limit) + "," + strconv.FormatInt(ms(sp.Window), 10) + "," + strconv.FormatInt(ms(sp.Cooloff), 10)
}
