package redisstore

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
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

// ruleArgs is the script's rule argument (argRule) of a rule and the
// store's options, packed and boxed once: the rule of the last decision is
// kept, and a decision under an equal rule reuses it.
type ruleArgs struct {
	key   ruleKey
	tiers []store.Tier
	arg   any // the packed numbers, as a string
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

// num returns a script flag as a number.
func num(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// putNum writes v at the 1-based position pos of the packed numbers b: a
// little-endian float64, as the script's struct.unpack reads "<d".
func putNum(b []byte, pos int, v float64) {
	binary.LittleEndian.PutUint64(b[8*(pos-1):], math.Float64bits(v))
}

// ruleArgs returns the packed rule argument of r.
func (s *Store) ruleArgs(r *store.Rule) *ruleArgs {
	k := keyOf(r)
	if ra := s.rules.Load(); ra != nil && ra.key == k && slices.Equal(ra.tiers, r.Tiers) {
		return ra
	}
	factor := r.Factor
	if math.IsNaN(factor) {
		factor = 0
	}
	b := make([]byte, 8*(ruleTiers+2*len(r.Tiers)))
	set := func(pos int, v float64) { putNum(b, pos, v) }
	set(ruleLimit, float64(r.Limit))
	set(ruleWindow, float64(ms(r.Window)))
	set(ruleCooloff, float64(ms(r.Cooloff)))
	set(ruleFactor, factor)
	set(ruleMaxCooloff, float64(ms(r.MaxCooloff)))
	set(ruleDecay, float64(ms(r.Decay)))
	set(ruleExtend, num(r.Extend))
	set(ruleObserve, num(r.ObserveOnly))
	set(ruleResetOnSuccess, num(r.ResetOnSuccess))
	set(ruleReserveTimeout, float64(ms(r.ReserveTimeout)))
	set(ruleMaxTTL, float64(ms(s.o.MaxTTL)))
	set(ruleBudget, float64(s.maxKeys))
	set(ruleWidth, float64(s.width))
	set(ruleGrain, budgetGrain)
	set(ruleChallengeAt, float64(r.ChallengeAt))
	if r.Spray.Limit > 0 {
		set(ruleSprayLimit, float64(r.Spray.Limit))
		set(ruleSprayWindow, float64(ms(r.Spray.Window)))
		set(ruleSprayCooloff, float64(ms(r.Spray.Cooloff)))
	}
	set(ruleTiers, float64(len(r.Tiers)))
	for i, t := range r.Tiers {
		set(ruleTiers+2*i+1, float64(t.Failures))
		set(ruleTiers+2*i+2, float64(ms(t.Cooloff)))
	}
	ra := &ruleArgs{key: k, tiers: slices.Clone(r.Tiers), arg: string(b)}
	s.rules.Store(ra)
	return ra
}

// decision returns the packed argument of a decision on dims under the
// call's first rule (merge renumbers it): its numbers, its dimensions'
// numbers, then its identity, its token and its dimensions' field
// digests (16 bytes each), in one allocation.
func (s *Store) decision(req *store.Request, dims []store.Dim, now int64, phase int, token string, ext int, applied bool, deadline int64) []byte {
	r := req.Rule
	n := len(dims)
	id := req.Identity
	var ipb [64]byte
	ip := ipb[:0]
	if id.IP.IsValid() {
		ip = id.IP.AppendTo(ip)
	}
	nn := 8 * (numShape + dimNums*n)
	size := nn + len(ip) + len(id.Username) + len(id.UserAgent) + len(token) + 8*tailNums*n
	// shape: the number of field digests of each dimension, in base 4;
	// -1 (none: the script reads the lengths from the numbers) past the
	// dimensions whose digits a float64 holds exactly.
	shape, digit := 0.0, 1.0
	for i := range dims {
		k := 0
		if dims[i].Fields&axes.IP != 0 && !dims[i].IPKey.IsZero() {
			k++
		}
		if dims[i].Fields&axes.Username != 0 && !dims[i].UserKey.IsZero() {
			k++
		}
		size += 16 * k
		shape += float64(k) * digit
		digit *= 4
	}
	if n > maxShapeDims {
		shape = -1
	}
	b := make([]byte, nn, size)
	set := func(pos int, v float64) { putNum(b, pos, v) }
	set(numRule, 1)
	set(numOp, float64(req.Op))
	set(numNow, float64(now))
	set(numJitter, r.JitterScale)
	set(numPhase, float64(phase))
	set(numExt, float64(ext))
	set(numApplied, num(applied))
	set(numDeadline, float64(deadline))
	set(numChallenged, num(r.Challenged))
	set(numIP, float64(len(ip)))
	set(numUser, float64(len(id.Username)))
	set(numUA, float64(len(id.UserAgent)))
	set(numToken, float64(len(token)))
	set(numDims, float64(n))
	set(numShape, shape)
	b = append(b, ip...)
	b = append(b, id.Username...)
	b = append(b, id.UserAgent...)
	b = append(b, token...)
	for i := range dims {
		d := &dims[i]
		at := numShape + dimNums*i
		set(at+dimGen, float64(d.Gen))
		set(at+dimFields, float64(d.Fields))
		set(at+dimKind, float64(d.Kind))
		// The dimension's tail: what follows a new key's first LastFail,
		// LastBegin, LockEnd and expiry in its value (value.lua): one
		// failure, a generation drawn at random (below 256, as the memory
		// store's new entries), the meta number, then the field digests.
		ik := d.Fields&axes.IP != 0 && !d.IPKey.IsZero()
		uk := d.Fields&axes.Username != 0 && !d.UserKey.IsZero()
		meta := float64(d.Fields) + 256*(num(ik)+2*num(uk))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(1))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(rand.Uint32()&255)))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(meta))
		if ik {
			b = appendDigest(b, d.IPKey)
			set(at+dimIPKey, 16)
		}
		if uk {
			b = appendDigest(b, d.UserKey)
			set(at+dimUserKey, 16)
		}
	}
	return b
}

// appendDigest appends the 16 bytes of d (big-endian Hi, then Lo), as a
// dimension key records its field digests.
func appendDigest(b []byte, d axes.Digest) []byte {
	b = binary.BigEndian.AppendUint64(b, d.Hi)
	return binary.BigEndian.AppendUint64(b, d.Lo)
}

func (s *Store) now(req *store.Request) int64 {
	if s.o.UseRequestTime {
		return max(req.Now.UnixMilli(), 0)
	}
	return -1
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
	a, ok := v.(string)
	if ok && len(a) == len(replyShort)+16 && a[:len(replyShort)] == replyShort {
		// Every dimension counted its first failure, and is not locked.
		f := func(i int) int64 {
			return int64(math.Float64frombits(binary.LittleEndian.Uint64([]byte(a[len(replyShort)+8*i : len(replyShort)+8*i+8]))))
		}
		for i := range dims {
			dims[i].Outcome = store.Outcome{Failures: 1, Counted: true}
			if info != nil {
				info[i] = dimInfo{applied: true, now: f(0), server: f(1)}
			}
		}
		return false, nil
	}
	if !ok || len(a) != 8*(replyHead+replyDim*len(dims)) {
		return false, fmt.Errorf("redisstore: unexpected script reply %T of %d bytes for %d dimensions", v, len(a), len(dims))
	}
	// The numbers are integers below 2^53 (TestScriptConstants).
	iv := func(i int) int64 {
		return int64(math.Float64frombits(binary.LittleEndian.Uint64([]byte(a[8*i : 8*i+8]))))
	}
	refused := iv(replyRefused) == 1
	for i := range dims {
		at := replyHead + replyDim*i
		r := func(j int) int64 { return iv(at + j) }
		f := r(replyFlags)
		o := &dims[i].Outcome
		*o = store.Outcome{
			Failures:  int(r(replyFailures)),
			Locked:    f&flagLocked != 0,
			Started:   f&flagStarted != 0,
			Counted:   f&flagCounted != 0,
			Busy:      f&flagBusy != 0,
			Refused:   refused,
			Challenge: f&flagChallenge != 0,
			TimedOut:  int(r(replyTimedOut)),
			Reserved:  op == store.OpBegin && f&flagApplied != 0,
		}
		if o.Locked {
			o.Remaining = fromMS(r(replyRemaining))
		}
		dims[i].Gen = uint32(r(replyGen))
		if info != nil {
			info[i] = dimInfo{lockedBefore: f&flagLockedBefore != 0, applied: f&flagApplied != 0,
				raced: f&flagRaced != 0, sketched: f&flagSketched != 0,
				now: iv(replyNow), server: iv(replyServer)}
		}
	}
	return refused, nil
}
