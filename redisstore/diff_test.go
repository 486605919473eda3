package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// The differential test runs random sequences of operations, instants and
// policies through store.Rule.Apply on Go States and through the script on
// Redis, and compares every stored state and every outcome after every
// operation.
//
// The comparison is at the store's resolution. The sequences' instants and
// durations are whole milliseconds; a lock duration Go computes (back-off,
// jitter) may not be, and the script keeps it rounded up to the
// millisecond, which decides "now < LockEnd" alike at every millisecond
// instant. Instants and durations saturate at maxMS (142,000 years) in the
// script and at maxFinite (292 years) in Go: instants are compared as Go
// reads the store's (fromMS), and the sequences end in 2191. Exact
// generations wrap at 2^31 in the script and at 2^32 in Go: the Go model
// keeps them modulo 2^31. A state the store deletes (State.IsZero) is
// gone: the Go model forgets it too.

const (
	diffSequences = 300
	diffOps       = 30
)

// diffSeed returns the seed of the test's sequences: AXES_DIFF_SEED, or a
// fixed one.
func diffSeed(t *testing.T) uint64 {
	if v := os.Getenv("AXES_DIFF_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("AXES_DIFF_SEED: %v", err)
		}
		return n
	}
	return 20240601
}

func TestDifferentialStandalone(t *testing.T) {
	t.Parallel()
	differential(t, newClient(t), false)
}

// TestDifferentialEval runs the script by EVALSHA, as the store does
// where Redis has no functions (before 7.0), and where fresh reads every
// key before it writes.
func TestDifferentialEval(t *testing.T) {
	t.Parallel()
	differentialWith(t, newClient(t), false, func(s *Store) { s.fn.Store(false) })
}

func TestDifferentialCluster(t *testing.T) {
	t.Parallel()
	differential(t, newCluster(t), false)
}

func TestDifferentialClusterSpread(t *testing.T) {
	t.Parallel()
	differential(t, newCluster(t), true)
}

func differential(t *testing.T, c redis.UniversalClient, spread bool) {
	differentialWith(t, c, spread, func(*Store) {})
}

// differentialWith runs the differential test on a store that setup
// changes.
func differentialWith(t *testing.T, c redis.UniversalClient, spread bool, setup func(*Store)) {
	s := mustNew(t, c, Options{UseRequestTime: true, SpreadSlots: spread, MaxKeys: 1 << 40,
		Timeout: 10 * time.Second})
	setup(s)
	seed := diffSeed(t)
	ops := 0
	for seq := range uint64(diffSequences) {
		ops += diffSequence(t, s, seed, seq)
		if t.Failed() {
			return
		}
	}
	t.Logf("%d sequences, %d operations compared (seed %d)", diffSequences, ops, seed)
}

// diffApply applies req alone, or, with warm, in one script call after
// the first failure of a new client (two new keys): the script then knows
// the sketch empty and the budget's count, and writes the keys of a
// failure without reading them first (fresh), deleting them again if one
// turns out to exist.
func diffApply(ctx context.Context, s *Store, req *store.Request, warm bool, rng *rand.Rand) error {
	if !warm {
		return s.apply(ctx, req)
	}
	first := &store.Request{Op: store.OpFail, Now: req.Now, Rule: &store.Rule{Limit: 5, Window: time.Minute, Cooloff: time.Minute},
		Dims: []store.Dim{{Fields: axes.IP, Digest: axes.Digest{Hi: rng.Uint64(), Lo: rng.Uint64()}},
			{Fields: axes.Username, Digest: axes.Digest{Hi: rng.Uint64(), Lo: rng.Uint64()}}}}
	calls := []*call{
		{ctx: ctx, cmd: redis.NewCmd(ctx, s.applyCommand(ctx, first)...)},
		{ctx: ctx, cmd: redis.NewCmd(ctx, s.applyCommand(ctx, req)...)},
	}
	s.exec(calls)
	for i, r := range []*store.Request{first, req} {
		if err := calls[i].cmd.Err(); err != nil {
			return err
		}
		if _, err := parseReply(r.Op, calls[i].cmd.Val(), r.Dims, nil); err != nil {
			return err
		}
	}
	if !first.Dims[0].Outcome.Counted || first.Dims[0].Outcome.Failures != 1 {
		return fmt.Errorf("the first failure before the decision: %+v", first.Dims[0].Outcome)
	}
	return nil
}

// diffPolicy is the random policy of a sequence: a base Rule, and how each
// attempt varies it.
type diffPolicy struct {
	rule    store.Rule
	jitter  float64 // JitterScale drawn per attempt in [1-jitter, 1+jitter]
	perCall bool    // Cooloff drawn per attempt (as CooloffFunc)
	kind    string
}

func (p *diffPolicy) String() string {
	r := p.rule
	return fmt.Sprintf("%s: Limit %d Window %v Cooloff %v Factor %v Max %v jitter %v Decay %v Tiers %v Extend %v Observe %v ResetOnSuccess %v ReserveTimeout %v ChallengeAt %d Spray %+v",
		p.kind, r.Limit, r.Window, r.Cooloff, r.Factor, r.MaxCooloff, p.jitter, r.Decay, r.Tiers, r.Extend, r.ObserveOnly, r.ResetOnSuccess, r.ReserveTimeout, r.ChallengeAt, r.Spray)
}

var diffDurations = []time.Duration{
	time.Millisecond, 7 * time.Millisecond, 250 * time.Millisecond, time.Second, 1500 * time.Millisecond,
	10 * time.Second, time.Minute, 15 * time.Minute, time.Hour, 24 * time.Hour, 200 * 24 * time.Hour,
}

func pickDuration(rng *rand.Rand) time.Duration {
	if rng.IntN(4) == 0 {
		return time.Duration(1+rng.IntN(120_000)) * time.Millisecond
	}
	return diffDurations[rng.IntN(len(diffDurations))]
}

func randomPolicy(rng *rand.Rand) diffPolicy {
	var p diffPolicy
	r := &p.rule
	r.Limit = 1 + rng.IntN(5)
	if rng.IntN(20) == 0 {
		r.Limit = axes.MaxFailures - rng.IntN(2)
	}
	r.Window = pickDuration(rng)
	switch rng.IntN(5) {
	case 0:
		p.kind = "fixed"
		r.Cooloff = pickDuration(rng)
	case 1:
		p.kind = "backoff"
		r.Cooloff = pickDuration(rng)
		r.Factor = []float64{1, 1.1, 1.5, 2, 3, 1 + 3*rng.Float64()}[rng.IntN(6)]
		if rng.IntN(2) == 0 {
			r.MaxCooloff = r.Cooloff * time.Duration(1+rng.IntN(100))
		}
		p.jitter = []float64{0, 0, 0.1, 0.5, 0.99}[rng.IntN(5)]
		r.Decay = []time.Duration{24 * time.Hour, time.Second, pickDuration(rng)}[rng.IntN(3)]
	case 2:
		p.kind = "tiers"
		f := 0
		var longest time.Duration
		for range 1 + rng.IntN(3) {
			f += 1 + rng.IntN(3)
			d := pickDuration(rng)
			if rng.IntN(4) == 0 {
				d = axes.Indefinite
			} else {
				longest = max(longest, d)
			}
			r.Tiers = append(r.Tiers, store.Tier{Failures: f, Cooloff: d})
		}
		r.Cooloff = r.Tiers[0].Cooloff
		if rng.IntN(2) == 0 {
			r.Limit = r.Tiers[0].Failures
		}
		if r.Window <= longest {
			r.Window = longest + time.Duration(1+rng.IntN(1000))*time.Millisecond
		}
	case 3:
		p.kind = "forever"
		r.Cooloff = axes.Indefinite
	case 4:
		p.kind = "func"
		r.Cooloff = pickDuration(rng)
		p.perCall = true
	}
	r.Extend = rng.IntN(3) == 0
	r.ObserveOnly = rng.IntN(6) == 0
	r.ResetOnSuccess = rng.IntN(3) == 0
	r.ReserveTimeout = []time.Duration{0, time.Millisecond, time.Second, time.Minute, pickDuration(rng)}[rng.IntN(5)]
	if rng.IntN(2) == 0 {
		// Mostly below the limit, as axes.Policy has it; the transition is
		// defined (and compared) at and above it too.
		r.ChallengeAt = 1 + rng.IntN(min(r.Limit+1, 8))
	}
	if rng.IntN(3) == 0 {
		r.Spray = store.Spray{Limit: 1 + rng.IntN(4), Window: pickDuration(rng), Cooloff: pickDuration(rng)}
	}
	return p
}

// attempt returns the rule of one attempt.
func (p *diffPolicy) attempt(rng *rand.Rand) store.Rule {
	r := p.rule
	if p.jitter > 0 {
		r.JitterScale = 1 + p.jitter*(2*rng.Float64()-1)
	}
	r.Challenged = p.rule.ChallengeAt > 0 && rng.IntN(3) == 0
	if p.perCall && rng.IntN(2) == 0 {
		r.Cooloff = pickDuration(rng)
		if rng.IntN(8) == 0 {
			r.Cooloff = axes.Indefinite
		}
	}
	return r
}

// randomState returns a state to start a dimension from, with counts and
// levels near their saturation at times.
func randomState(rng *rand.Rand, now time.Duration) store.State {
	var s store.State
	pick := func(small, top int) int {
		if rng.IntN(4) == 0 {
			return top - rng.IntN(3)
		}
		return rng.IntN(small)
	}
	s.Failures = pick(7, axes.MaxFailures)
	s.Pending = pick(3, axes.MaxFailures)
	if rng.IntN(2) == 0 {
		s.Pending = 0
	}
	s.Level = pick(4, 255)
	if rng.IntN(5) == 0 {
		s.Level = 28 + rng.IntN(12)
	}
	if rng.IntN(3) == 0 {
		s.Gen = 1<<31 - 1 - uint32(rng.IntN(3))
	} else {
		s.Gen = uint32(rng.IntN(1000))
	}
	ago := func() time.Duration { return now - pickDuration(rng) }
	if s.Failures > 0 {
		s.LastFail = ago()
	}
	if s.Pending > 0 {
		s.LastBegin = ago()
	}
	switch rng.IntN(4) {
	case 0:
		s.LockEnd = axes.Indefinite
	case 1:
		s.LockEnd = now + pickDuration(rng)
	case 2:
		s.LockEnd = ago()
	}
	return s
}

// diffDim is one dimension of a sequence: its request Dim and its Go
// state.
type diffDim struct {
	dim   store.Dim
	state store.State
	// delta is the store's generation less Go's, modulo 2^31: a key the
	// store creates starts at a generation drawn at random, a Go
	// State at 0.
	delta uint32
}

// diffReservation is a Begin admitted in both: the dimensions and the
// store's generations (Go's are the same, less each dimension's delta).
type diffReservation struct {
	dims []int
	gens []uint32
}

const msNS = int64(time.Millisecond)

// diffEnd is the last instant of the sequences, in 2191: Go's instants
// end in 2262.
const diffEnd = 7_000_000_000_000 * time.Millisecond

// maxFinite is Go's longest finite lock (axes' own is not exported).
const maxFinite = axes.Indefinite - 1

// toMS converts a Go instant or duration to the store's milliseconds:
// rounded up, capped at maxMS, Indefinite as -1.
func toMS(d time.Duration) int64 {
	if d == axes.Indefinite {
		return msIndefinite
	}
	v := int64(d) / msNS
	if int64(d)%msNS != 0 {
		v++
	}
	return min(v, maxMS)
}

// storedStates reads the states the script keeps for keys, in one round
// trip.
func storedStates(ctx context.Context, c redis.UniversalClient, keys []string) ([]map[string]int64, error) {
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = pipe.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]map[string]int64, len(keys))
	for i, k := range keys {
		m := map[string]int64{"f": 0, "p": 0, "l": 0, "g": 0, "lf": 0, "lb": 0, "le": 0}
		if v := cmds[i].Val(); v != "" {
			kv, ok := decodeValue(v)
			if !ok {
				return nil, fmt.Errorf("key %s holds %q, not a dimension value", k, v)
			}
			m = map[string]int64{"f": int64(kv.failures), "p": int64(kv.pending), "l": int64(kv.level),
				"g": kv.gen, "lf": kv.lastFail, "lb": kv.lastBegin, "le": kv.lockEnd}
		}
		out[i] = m
	}
	return out, nil
}

// diffSequence runs one random sequence and returns the number of
// operations compared.
func diffSequence(t *testing.T, s *Store, seed, seq uint64) int {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, seq))
	p := randomPolicy(rng)
	if s.o.SpreadSlots {
		// The SpreadSlots layout does not take spray detection
		// (ErrSpraySpread).
		p.rule.Spray = store.Spray{}
	}
	now := time.Duration(1_700_000_000_000+rng.Int64N(1e9)) * time.Millisecond
	fields := []axes.Fields{axes.IP, axes.Username, axes.IP | axes.Username, axes.IP | axes.Username | axes.UserAgent}
	rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	dims := make([]diffDim, 1+rng.IntN(3))
	limiterLayout := false
	if p.rule.Spray.Limit > 0 {
		dims = make([]diffDim, 1+rng.IntN(4))
		// Half the sequences in the limiter's layout (the policy's
		// dimensions, then a member and a spray count), where a member's
		// failures and reservations decide what the count does.
		if limiterLayout = rng.IntN(2) == 0; limiterLayout {
			dims = make([]diffDim, 2+rng.IntN(3))
		}
	}
	var history []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d sequence %d\npolicy %s\nhistory:\n  %s\n%s", seed, seq, p.String(),
			strings.Join(history, "\n  "), fmt.Sprintf(format, args...))
	}
	for i := range dims {
		d := &dims[i]
		d.dim = store.Dim{Fields: fields[i], Digest: axes.Digest{Hi: rng.Uint64(), Lo: rng.Uint64()},
			IPKey: axes.Digest{Hi: rng.Uint64(), Lo: rng.Uint64()}, UserKey: axes.Digest{Hi: rng.Uint64(), Lo: rng.Uint64()}}
		if p.rule.Spray.Limit > 0 {
			// Any kind at any position: the limiter sends a member and a
			// spray dimension last, but the transition is defined (and
			// compared) for every mix.
			d.dim.Kind = store.Kind(rng.IntN(3))
			if limiterLayout {
				d.dim.Kind = store.Kind(max(i+2-len(dims), 0))
			}
		}
		if d.dim.Fields&axes.IP == 0 {
			d.dim.IPKey = axes.Digest{}
		}
		if d.dim.Fields&axes.Username == 0 {
			d.dim.UserKey = axes.Digest{}
		}
		if rng.IntN(3) == 0 {
			d.state = randomState(rng, now)
			if d.state.IsZero() {
				d.state = store.State{}
				continue
			}
			st := d.state
			err := s.c.Set(ctx, s.key(d.dim.Digest), encodeValue(keyValue{failures: st.Failures, pending: st.Pending,
				level: st.Level, gen: int64(st.Gen), lastFail: toMS(st.LastFail), lastBegin: toMS(st.LastBegin),
				lockEnd: toMS(st.LockEnd), fields: d.dim.Fields}), 0).Err()
			if err != nil {
				t.Fatal(err)
			}
			history = append(history, fmt.Sprintf("dimension %d starts at %+v", i, st))
		}
	}
	var reservations []diffReservation
	keys := make([]string, len(dims))
	for i := range dims {
		keys[i] = s.key(dims[i].dim.Digest)
	}
	for step := range diffOps {
		// The instant: the same, a little later, at or just before a
		// boundary of some dimension, or much later.
		var bounds []time.Duration
		for i := range dims {
			st := &dims[i].state
			kr := p.rule.ForKind(dims[i].dim.Kind)
			r := &kr
			if st.LockEnd != 0 && st.LockEnd != axes.Indefinite {
				bounds = append(bounds, st.LockEnd, st.LockEnd+r.Decay)
			}
			if st.Failures > 0 {
				bounds = append(bounds, st.LastFail+r.Window)
			}
			if st.Pending > 0 && r.ReserveTimeout > 0 {
				bounds = append(bounds, st.LastBegin+r.ReserveTimeout, st.LastBegin+r.ReserveTimeout+r.Window)
			}
		}
		bounds = slices.DeleteFunc(bounds, func(b time.Duration) bool { return b < 0 || b > diffEnd })
		switch k := rng.IntN(10); {
		case k < 2:
		case k < 5:
			now += time.Duration(rng.IntN(2000)) * time.Millisecond
		case k < 9 && len(bounds) > 0:
			b := time.Duration(toMS(bounds[rng.IntN(len(bounds))])) * time.Millisecond
			b -= time.Duration(rng.IntN(2)) * time.Millisecond
			now = max(now, b)
		default:
			now += pickDuration(rng) * time.Duration(1+rng.IntN(3))
		}
		now = min(now, diffEnd)

		// The operation and its dimensions.
		op := []store.Op{store.OpCheck, store.OpFail, store.OpFail, store.OpBegin, store.OpBegin,
			store.OpSettleFail, store.OpSettleSuccess, store.OpSuccess, store.OpCheck, store.OpReset}[rng.IntN(10)]
		if op == store.OpReset && rng.IntN(2) == 0 {
			op = store.OpFail
		}
		var idx []int
		var storeGens []uint32
		settle := op == store.OpSettleFail || op == store.OpSettleSuccess
		if settle && len(reservations) > 0 && rng.IntN(5) != 0 {
			res := reservations[rng.IntN(len(reservations))]
			idx = res.dims
			storeGens = append([]uint32(nil), res.gens...)
		} else {
			for i := range dims {
				// (The limiter sends every dimension but in settles.)
				if rng.IntN(4) != 0 || (limiterLayout && !settle) {
					idx = append(idx, i)
				}
			}
			if len(idx) == 0 {
				idx = append(idx, rng.IntN(len(dims)))
			}
			storeGens = make([]uint32, len(idx))
		}
		goGens := make([]uint32, len(idx))
		for j, i := range idx {
			goGens[j] = (storeGens[j] + genSketch - dims[i].delta) % genSketch
		}
		rule := p.attempt(rng)

		// Go.
		states := make([]store.State, len(idx))
		outs := make([]store.Outcome, len(idx))
		for j, i := range idx {
			states[j] = dims[i].state
		}
		before := append([]store.State(nil), states...)
		refused := false
		if op == store.OpReset {
			clear(states)
		} else {
			ds := make([]store.DimState, len(states))
			for j := range ds {
				ds[j] = store.DimState{Kind: dims[idx[j]].dim.Kind, State: states[j], Gen: goGens[j]}
			}
			refused = rule.Apply(op, ds, now)
			for j := range ds {
				states[j], goGens[j], outs[j] = ds[j].State, ds[j].Gen, ds[j].Outcome
			}
		}
		for j := range states {
			// The store keeps 31-bit generations, and forgets a zero
			// state.
			states[j].Gen %= genSketch
			goGens[j] %= genSketch
			if states[j].IsZero() {
				states[j] = store.State{}
			}
		}

		// The store.
		req := &store.Request{Op: op, Now: time.UnixMilli(int64(now / time.Millisecond)), Rule: &rule}
		for j, i := range idx {
			d := dims[i].dim
			d.Gen = storeGens[j]
			req.Dims = append(req.Dims, d)
		}
		warm := !s.o.SpreadSlots && op != store.OpReset && rng.IntN(2) == 0
		if err := diffApply(ctx, s, req, warm, rng); err != nil {
			t.Fatalf("seed %d sequence %d step %d: %v", seed, seq, step, err)
		}
		history = append(history, fmt.Sprintf("%d: %v dims %v gens go %v store %v at +%v (JitterScale %v Cooloff %v Challenged %v, after a first failure in the same call %v): refused %v",
			step, op, idx, goGens, storeGens, now-time.Duration(1_700_000_000_000)*time.Millisecond, rule.JitterScale, rule.Cooloff, rule.Challenged, warm, refused))

		// Compare.
		stored, err := storedStates(ctx, s.c, keys)
		if err != nil {
			t.Fatal(err)
		}
		for j, i := range idx {
			if before[j] == (store.State{}) && states[j] != (store.State{}) {
				dims[i].delta = (uint32(stored[i]["g"]) + genSketch - states[j].Gen) % genSketch
			}
			dims[i].state = states[j]
		}
		for j, i := range idx {
			o, g := req.Dims[j].Outcome, outs[j]
			want := g
			if g.Locked && g.Remaining != axes.Indefinite {
				want.Remaining = fromMS(toMS(now+g.Remaining) - toMS(now))
				if fromMS(toMS(now+g.Remaining)) == maxFinite {
					// Saturated in Go: the store's lock must end as late.
					want.Remaining = o.Remaining
					if fromMS(toMS(now)+int64(o.Remaining/time.Millisecond)) != maxFinite {
						want.Remaining = -1
					}
				}
			}
			if o != want {
				fail("step %d dimension %d: outcome\n  store %+v\n  go    %+v (from %+v to %+v)", step, i, o, g, before[j], states[j])
			}
			if op == store.OpBegin && !refused && req.Dims[j].Gen != (goGens[j]+dims[i].delta)%genSketch {
				fail("step %d dimension %d: Begin gave generation %d, go %d (delta %d)", step, i, req.Dims[j].Gen, goGens[j], dims[i].delta)
			}
		}
		// Every key the script wrote lives at least until Go's horizon of
		// its state (the one Horizon every store's expiry follows), or
		// Options.MaxTTL. Under a rule that varies per attempt (jitter, a
		// cooloff per call) the lock a timed-out reservation would start
		// depends on the attempt that finds it, so the TTL is checked
		// under uniform rules only.
		for j, i := range idx {
			if op == store.OpReset || states[j].IsZero() || p.jitter > 0 || p.perCall {
				continue
			}
			kr := rule.ForKind(dims[i].dim.Kind)
			h := kr.Horizon(states[j])
			want := s.o.MaxTTL
			if h != axes.Indefinite {
				want = min(want, fromMS(toMS(h)-toMS(now)))
			}
			ttl, err := s.c.PTTL(ctx, keys[i]).Result()
			if err != nil {
				t.Fatal(err)
			}
			if ttl == -1 {
				continue // no expiry: a state the test seeded, which a read leaves as it is
			}
			if ttl < want-5*time.Second { // slack for the time the check takes on a loaded machine
				fail("step %d dimension %d: key TTL %v, but Go's horizon of %+v is %v away", step, i, ttl, states[j], want)
			}
		}
		if op == store.OpBegin && !refused {
			gs := make([]uint32, len(idx))
			for j := range idx {
				gs[j] = req.Dims[j].Gen
			}
			reservations = append(reservations, diffReservation{dims: idx, gens: gs})
		}
		for i := range dims {
			got := stored[i]
			st := dims[i].state
			g := int64((st.Gen + dims[i].delta) % genSketch)
			if st == (store.State{}) {
				g = 0 // no key
			}
			want := map[string]int64{"f": int64(st.Failures), "p": int64(st.Pending), "l": int64(st.Level),
				"g": g, "lf": toMS(st.LastFail), "lb": toMS(st.LastBegin), "le": toMS(st.LockEnd)}
			for _, k := range []string{"f", "p", "l", "g", "lf", "lb", "le"} {
				if k == "lf" || k == "lb" || k == "le" {
					// Instants compare as Go reads them: saturated at maxFinite.
					if fromMS(got[k]) != fromMS(want[k]) {
						fail("step %d dimension %d: stored %v\n  want %v (go %+v)", step, i, got, want, st)
					}
					continue
				}
				if got[k] != want[k] {
					fail("step %d dimension %d: stored %v\n  want %v (go %+v)", step, i, got, want, st)
				}
			}
		}
	}
	for i := range dims {
		s.c.Del(ctx, s.key(dims[i].dim.Digest))
	}
	return diffOps
}
