package redisstore

import (
	"context"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// scriptConstants returns the "local NAME = number" lines of the
// constants section of script.lua.
func scriptConstants(t *testing.T) map[string]float64 {
	t.Helper()
	const begin, end = "-- Constants shared with Go", "-- Arguments ---"
	i, j := strings.Index(scriptLua, begin), strings.Index(scriptLua, end)
	if i < 0 || j < i {
		t.Fatalf("script.lua lacks the sections %q and %q", begin, end)
	}
	got := map[string]float64{}
	re := regexp.MustCompile(`(?m)^local ([A-Z][A-Z0-9_]*) = (-?[0-9]+)\s*$`)
	for _, m := range re.FindAllStringSubmatch(scriptLua[i:j], -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := got[m[1]]; dup {
			t.Errorf("script.lua declares %s twice", m[1])
		}
		got[m[1]] = v
	}
	// Every line of the section declares a constant or is a comment.
	for _, line := range strings.Split(scriptLua[i:j], "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "--") && !re.MatchString(line) {
			t.Errorf("script.lua: a line of the constants section is not a plain constant: %q", line)
		}
	}
	return got
}

// TestScriptConstants pins every number the script shares with Go: the
// operations, MaxFailures, the encoding of Indefinite, the saturation
// bounds, and the positions of the arguments and of the reply. It fails
// when either side changes one without the other.
func TestScriptConstants(t *testing.T) {
	want := map[string]float64{
		"OP_CHECK":          float64(store.OpCheck),
		"OP_FAIL":           float64(store.OpFail),
		"OP_BEGIN":          float64(store.OpBegin),
		"OP_SETTLE_FAIL":    float64(store.OpSettleFail),
		"OP_SETTLE_SUCCESS": float64(store.OpSettleSuccess),
		"OP_SUCCESS":        float64(store.OpSuccess),
		"MAX_FAILURES":      axes.MaxFailures,
		"MAX_LEVEL":         maxLevel,
		"INDEFINITE":        float64(ms(axes.Indefinite)),
		"MAX_MS":            maxMS,
		"NS_PER_MS":         float64(time.Millisecond),
		"MAX_FINITE_NS":     float64(axes.Indefinite - 1),
		"MIN_JITTERED_NS":   float64(time.Second),
		"GEN_SKETCH":        genSketch,
		"GEN_CELL":          128,

		"PHASE_APPLY": phaseApply, "PHASE_REDO": phaseRedo,
		"EXT_NONE": extNone, "EXT_LOCKED": extLocked, "EXT_BUSY": extBusy, "EXT_CHALLENGE": extChallenge,

		"ARG_OP": argOp, "ARG_NOW": argNow, "ARG_LIMIT": argLimit, "ARG_WINDOW": argWindow,
		"ARG_COOLOFF": argCooloff, "ARG_FACTOR": argFactor, "ARG_MAX_COOLOFF": argMaxCooloff,
		"ARG_JITTER": argJitter, "ARG_DECAY": argDecay, "ARG_EXTEND": argExtend,
		"ARG_OBSERVE": argObserve, "ARG_RESET_ON_SUCCESS": argResetOnSuccess,
		"ARG_RESERVE_TIMEOUT": argReserveTimeout, "ARG_MAX_TTL": argMaxTTL, "ARG_DIMS": argDims,
		"ARG_ID_IP": argIdentityIP, "ARG_ID_USER": argIdentityUser, "ARG_ID_UA": argIdentityUA,
		"ARG_PHASE": argPhase, "ARG_TOKEN": argToken, "ARG_EXT": argExt, "ARG_APPLIED": argApplied,
		"ARG_DEADLINE": argDeadline, "ARG_BUDGET": argBudget, "ARG_WIDTH": argWidth,
		"ARG_GRAIN": argGrain, "ARG_CHALLENGE_AT": argChallengeAt, "ARG_CHALLENGED": argChallenged,
		"ARG_SPRAY": argSpray,
		"ARG_TIERS": argTiers, "ARG_BATCH": argBatch,

		"DIM_ARGS": dimArgs, "DIM_GEN": dimGen, "DIM_FIELDS": dimFields,
		"DIM_IP_INDEX": dimIPIndex, "DIM_USER_INDEX": dimUserIndex, "DIM_IP_KEY": dimIPKey,
		"DIM_USER_KEY": dimUserKey, "DIM_KIND": dimKind, "DIM_COLUMNS": dimColumns,
		"KIND_MEMBER": float64(store.KindMember), "KIND_SPRAY": float64(store.KindSpray),

		"KEY_SKETCH": keySketch, "KEY_DIMS": keyDims,

		"REPLY_NOW": replyNow, "REPLY_REFUSED": replyRefused, "REPLY_SERVER": replyServer,
		"REPLY_HEAD": replyHead, "REPLY_FAILURES": replyFailures, "REPLY_LOCKED": replyLocked,
		"REPLY_STARTED": replyStarted, "REPLY_COUNTED": replyCounted, "REPLY_BUSY": replyBusy,
		"REPLY_REMAINING": replyRemaining, "REPLY_GEN": replyGen,
		"REPLY_LOCKED_BEFORE": replyLockedBefore, "REPLY_APPLIED": replyApplied,
		"REPLY_RACED": replyRaced, "REPLY_SKETCHED": replySketched,
		"REPLY_TIMED_OUT": replyTimedOut, "REPLY_CHALLENGE": replyChallenge, "REPLY_DIM": replyDim,
	}
	got := scriptConstants(t)
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("script.lua does not declare %s (Go: %v)", k, w)
		case g != w:
			t.Errorf("script.lua: %s = %v, Go has %v", k, g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("script.lua declares %s = %v, which no Go value pins", k, g)
		}
	}
	// The script names every position it reads.
	if m := regexp.MustCompile(`(ARGV|KEYS)\[[0-9]`).FindString(scriptLua); m != "" {
		t.Errorf("script.lua indexes %s...] by a number; name the position in the constants section", m)
	}
	if ms(axes.Indefinite) != msIndefinite || fromMS(msIndefinite) != axes.Indefinite {
		t.Errorf("Indefinite encodes as %d, want %d both ways", ms(axes.Indefinite), msIndefinite)
	}
	if maxMS != 1<<52-1 || float64(maxMS)+1 == float64(maxMS) {
		t.Errorf("maxMS %d is not exact in the script's numbers", maxMS)
	}
}

// TestScriptArguments checks that header and dimArgs put every value at
// the position the constants name.
func TestScriptArguments(t *testing.T) {
	s := &Store{o: Options{MaxTTL: 7 * time.Hour}, maxKeys: 1234, width: 77}
	r := store.Rule{Limit: 4, Window: 5 * time.Second, Cooloff: 6 * time.Second, Factor: 1.5,
		MaxCooloff: 8 * time.Second, JitterScale: 0.75, Decay: 9 * time.Second, Extend: true,
		ObserveOnly: false, ResetOnSuccess: true, ReserveTimeout: 13 * time.Second,
		ChallengeAt: 3, Challenged: true, Spray: store.Spray{Limit: 7, Window: 10 * time.Second, Cooloff: 11 * time.Second},
		Tiers: []store.Tier{{Failures: 2, Cooloff: time.Second}, {Failures: 5, Cooloff: axes.Indefinite}}}
	req := &store.Request{Op: store.OpSettleFail, Rule: &r,
		Identity: store.Identity{Username: "user", UserAgent: "agent"}}
	args := s.header(req, 42, 3, phaseRedo, "tok", extBusy, true, 99)
	at := func(pos int) any { return args[pos-1] }
	want := map[int]any{
		argOp: int(store.OpSettleFail), argNow: int64(42), argLimit: 4, argWindow: int64(5000),
		argCooloff: int64(6000), argFactor: 1.5, argMaxCooloff: int64(8000), argJitter: 0.75,
		argDecay: int64(9000), argExtend: "1", argObserve: "0", argResetOnSuccess: "1",
		argReserveTimeout: int64(13000), argMaxTTL: int64(7 * 3600 * 1000), argDims: 3,
		argIdentityIP: "", argIdentityUser: "user", argIdentityUA: "agent", argPhase: phaseRedo,
		argToken: "tok", argExt: extBusy, argApplied: "1", argDeadline: int64(99),
		argBudget: 1234, argWidth: 77, argGrain: budgetGrain, argChallengeAt: 3, argChallenged: "1", argTiers: 2,
		argSpray:     "7,10000,11000",
		argTiers + 1: 2, argTiers + 2: int64(1000), argTiers + 3: 5, argTiers + 4: int64(msIndefinite),
	}
	if len(args) != argTiers+4 {
		t.Fatalf("header has %d arguments, want %d", len(args), argTiers+4)
	}
	for pos, w := range want {
		if g := at(pos); g != w {
			t.Errorf("argument %d = %v (%T), want %v (%T)", pos, g, g, w, w)
		}
	}
	d := store.Dim{Fields: axes.IP | axes.Username, Gen: 17, Kind: store.KindMember,
		IPKey: axes.Digest{Hi: 1, Lo: 2}, UserKey: axes.Digest{Hi: 3, Lo: 4}, Digest: axes.Digest{Hi: 5, Lo: 6}}
	args, keys := s.dimArgs(nil, []string{"b", "bz", "s", "d"}, &d, false)
	if len(args) != dimArgs || len(keys) != 4 {
		t.Fatalf("dimArgs gave %d arguments and %d keys", len(args), len(keys))
	}
	c := s.columns(d.Digest)
	dwant := map[int]any{dimGen: uint32(17), dimFields: int(axes.IP | axes.Username), dimIPIndex: 0,
		dimUserIndex: 0, dimIPKey: d.IPKey.String(), dimUserKey: d.UserKey.String(),
		dimKind: int(store.KindMember), dimColumns: c[0], dimColumns + 1: c[1], dimColumns + 2: c[2], dimColumns + 3: c[3]}
	for off, w := range dwant {
		if g := args[off]; g != w {
			t.Errorf("dimension argument %d = %v (%T), want %v (%T)", off, g, g, w, w)
		}
	}
	_, keys = s.dimArgs(nil, []string{"b", "bz", "s", "d"}, &d, true)
	if len(keys) != 6 {
		t.Errorf("dimArgs with index sets gave keys %v", keys)
	}
}

// TestStaleSettleAfterForget settles, late, reservations whose keys timed
// out, were forgotten and made anew by another client's Begin: the late
// settle must not take the new reservation (a key starts at a generation
// drawn from the server's clock, not at 0, as a memory store entry starts
// at a random one). A few of the 20 may collide (1 in 256 each).
func TestStaleSettleAfterForget(t *testing.T) {
	s := mustNew(t, newClient(t), Options{UseRequestTime: true})
	ctx := context.Background()
	r := store.Rule{Limit: 2, Window: time.Minute, Cooloff: time.Minute, ReserveTimeout: time.Second}
	t0 := time.UnixMilli(1_700_000_000_000)
	do := func(op store.Op, at time.Duration, d *store.Dim) {
		t.Helper()
		req := &store.Request{Op: op, Now: t0.Add(at), Rule: &r, Dims: []store.Dim{*d}}
		if err := s.apply(ctx, req); err != nil {
			t.Fatal(err)
		}
		*d = req.Dims[0]
	}
	collisions := 0
	for k := range 20 {
		d := store.Dim{Fields: axes.IP, Digest: axes.Digest{Hi: uint64(k) + 1, Lo: 0xfeed}}
		do(store.OpBegin, 0, &d) // a handler that hangs
		stale := d.Gen
		do(store.OpCheck, 3*time.Minute, &d) // timed out, then forgotten: the key goes
		if n, _ := s.c.Exists(ctx, s.key(d.Digest)).Result(); n != 0 {
			t.Fatalf("key %d still exists after its state was forgotten", k)
		}
		do(store.OpBegin, 3*time.Minute, &d) // another client's reservation
		d.Gen = stale
		do(store.OpSettleSuccess, 3*time.Minute, &d) // the hung handler settles
		p, err := s.c.HGet(ctx, s.key(d.Digest), "p").Int()
		if err != nil && !errors.Is(err, redis.Nil) { // gone: nothing pending
			t.Fatal(err)
		}
		if p != 1 {
			collisions++
		}
	}
	if collisions > 3 {
		t.Errorf("%d of 20 late settles took a new reservation", collisions)
	}
}

// TestCeilMS runs the script's ceilms, which rounds Go's nanosecond lock
// durations up to the millisecond with Lua's doubles, on Redis and
// compares it with exact arithmetic, across the whole range of
// durations.
func TestCeilMS(t *testing.T) {
	c := newClient(t)
	i := strings.Index(scriptLua, "local function idiv(")
	j := strings.Index(scriptLua, "-- scale is Rule.scale")
	if i < 0 || j < i {
		t.Fatal("script.lua lacks idiv, ceilms or scale")
	}
	src := "local MAX_MS = " + strconv.FormatInt(maxMS, 10) + "\nlocal NS_PER_MS = 1000000\n" + scriptLua[i:j] +
		"local out = {}\nfor k, a in ipairs(ARGV) do out[k] = ceilms(tonumber(a)) end\nreturn out\n"
	rng := rand.New(rand.NewPCG(1, 2))
	var args []any
	var want []int64
	add := func(f float64) {
		f = math.Floor(f)
		b, _ := new(big.Float).SetFloat64(f).Int(nil)
		q, r := new(big.Int).QuoRem(b, big.NewInt(1e6), new(big.Int))
		if r.Sign() > 0 {
			q.Add(q, big.NewInt(1))
		}
		args = append(args, strconv.FormatFloat(f, 'f', -1, 64))
		want = append(want, min(q.Int64(), maxMS))
	}
	for _, f := range []float64{0, 1, 999999, 1e6, 1e6 + 1, 1 << 53, 1<<53 + 2, 1 << 60, 1<<63 - 1024} {
		add(f)
	}
	for range 3000 {
		add(math.Ldexp(rng.Float64(), rng.IntN(64)))
	}
	// Just above a whole millisecond, where a rounded division falls back
	// onto it.
	for range 1000 {
		ms := rng.Int64N(int64(axes.Indefinite/time.Millisecond)-1) + 1
		exact := new(big.Int).Mul(big.NewInt(ms), big.NewInt(1e6))
		f, _ := new(big.Float).SetInt(exact).Float64()
		if fb, _ := new(big.Float).SetFloat64(f).Int(nil); fb.Cmp(exact) <= 0 {
			f = math.Nextafter(f, math.Inf(1))
		}
		add(f)
	}
	got, err := c.Eval(context.Background(), src, nil, args...).Int64Slice()
	if err != nil {
		t.Fatal(err)
	}
	for k := range want {
		if got[k] != want[k] {
			t.Errorf("ceilms(%s) = %d, want %d", args[k], got[k], want[k])
		}
	}
}
