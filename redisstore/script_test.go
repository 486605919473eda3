package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
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

		"ARG_RULES": argRules,

		"RULE_LIMIT": ruleLimit, "RULE_WINDOW": ruleWindow, "RULE_COOLOFF": ruleCooloff,
		"RULE_FACTOR": ruleFactor, "RULE_MAX_COOLOFF": ruleMaxCooloff, "RULE_DECAY": ruleDecay,
		"RULE_EXTEND": ruleExtend, "RULE_OBSERVE": ruleObserve, "RULE_RESET_ON_SUCCESS": ruleResetOnSuccess,
		"RULE_RESERVE_TIMEOUT": ruleReserveTimeout, "RULE_MAX_TTL": ruleMaxTTL, "RULE_BUDGET": ruleBudget,
		"RULE_WIDTH": ruleWidth, "RULE_GRAIN": ruleGrain, "RULE_CHALLENGE_AT": ruleChallengeAt,
		"RULE_SPRAY_LIMIT": ruleSprayLimit, "RULE_SPRAY_WINDOW": ruleSprayWindow,
		"RULE_SPRAY_COOLOFF": ruleSprayCooloff, "RULE_TIERS": ruleTiers,

		"NUM_RULE": numRule, "NUM_OP": numOp, "NUM_NOW": numNow, "NUM_JITTER": numJitter,
		"NUM_PHASE": numPhase, "NUM_EXT": numExt, "NUM_APPLIED": numApplied, "NUM_DEADLINE": numDeadline,
		"NUM_CHALLENGED": numChallenged, "NUM_IP": numIP, "NUM_USER": numUser, "NUM_UA": numUA,
		"NUM_TOKEN": numToken, "NUM_DIMS": numDims, "NUM_SHAPE": numShape,
		"DIM_GEN": dimGen, "DIM_FIELDS": dimFields, "DIM_KIND": dimKind,
		"DIM_IP_KEY": dimIPKey, "DIM_USER_KEY": dimUserKey, "DIM_NUMS": dimNums,
		"KIND_MEMBER": float64(store.KindMember), "KIND_SPRAY": float64(store.KindSpray),

		"KEY_SKETCH": keySketch, "KEY_DIMS": keyDims,

		"REPLY_NOW": replyNow, "REPLY_REFUSED": replyRefused, "REPLY_SERVER": replyServer,
		"REPLY_HEAD": replyHead, "REPLY_FAILURES": replyFailures, "REPLY_REMAINING": replyRemaining,
		"REPLY_GEN": replyGen, "REPLY_TIMED_OUT": replyTimedOut, "REPLY_FLAGS": replyFlags, "REPLY_DIM": replyDim,
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
	if !strings.Contains(scriptLua, "local NUMS_FMT = '<"+strings.Repeat("d", numShape)+"'\n") {
		t.Errorf("script.lua's NUMS_FMT does not read the %d numbers of a decision", numShape)
	}
	if !strings.Contains(scriptLua, "local TAIL_LEN = "+strconv.Itoa(8*tailNums)+"\n") {
		t.Errorf("script.lua's TAIL_LEN is not the length of %d numbers", tailNums)
	}
	if !strings.Contains(scriptLua, "local REPLY = {fmt = {}, short = '"+replyShort+"'}") {
		t.Errorf("script.lua's short reply does not start with %q", replyShort)
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

// TestScriptArguments checks that args puts every value at the position
// the constants name, packed as the script unpacks it.
func TestScriptArguments(t *testing.T) {
	s := &Store{o: Options{MaxTTL: 7 * time.Hour}, maxKeys: 1234, width: 77}
	r := store.Rule{Limit: 4, Window: 5 * time.Second, Cooloff: 6 * time.Second, Factor: 1.5,
		MaxCooloff: 8 * time.Second, JitterScale: 0.75, Decay: 9 * time.Second, Extend: true,
		ObserveOnly: false, ResetOnSuccess: true, ReserveTimeout: 13 * time.Second,
		ChallengeAt: 3, Challenged: true, Spray: store.Spray{Limit: 7, Window: 10 * time.Second, Cooloff: 11 * time.Second},
		Tiers: []store.Tier{{Failures: 2, Cooloff: time.Second}, {Failures: 5, Cooloff: axes.Indefinite}}}
	req := &store.Request{Op: store.OpSettleFail, Rule: &r,
		Identity: store.Identity{Username: "user", UserAgent: "agent"}}
	dims := []store.Dim{
		{Fields: axes.IP | axes.Username, Gen: 17, Kind: store.KindMember,
			IPKey: axes.Digest{Hi: 1, Lo: 2}, UserKey: axes.Digest{Hi: 3, Lo: 4}, Digest: axes.Digest{Hi: 5, Lo: 6}},
		{Fields: axes.UserAgent, Gen: 1 << 31, Digest: axes.Digest{Hi: 7, Lo: 8}},
	}
	req.Identity.IP = netip.MustParsePrefix("192.0.2.7/32")
	rule := s.ruleArgs(&r).arg
	arg := s.decision(req, dims, 42, phaseRedo, "tok", extBusy, true, 99)
	unpack := func(b []byte, n int) []float64 {
		t.Helper()
		if len(b) < 8*n {
			t.Fatalf("packed argument of %d bytes, want at least %d numbers", len(b), n)
		}
		f := make([]float64, n)
		for i := range f {
			f[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		return f
	}
	check := func(what string, got []float64, want map[int]float64) {
		t.Helper()
		for pos, w := range want {
			if g := got[pos-1]; g != w {
				t.Errorf("%s number %d = %v, want %v", what, pos, g, w)
			}
		}
	}
	rb := []byte(rule.(string))
	if len(rb) != 8*(ruleTiers+4) {
		t.Errorf("rule of %d bytes, want %d numbers", len(rb), ruleTiers+4)
	}
	check("rule", unpack(rb, ruleTiers+4), map[int]float64{
		ruleLimit: 4, ruleWindow: 5000, ruleCooloff: 6000, ruleFactor: 1.5, ruleMaxCooloff: 8000,
		ruleDecay: 9000, ruleExtend: 1, ruleObserve: 0, ruleResetOnSuccess: 1, ruleReserveTimeout: 13000,
		ruleMaxTTL: 7 * 3600 * 1000, ruleBudget: 1234, ruleWidth: 77, ruleGrain: budgetGrain,
		ruleChallengeAt: 3, ruleSprayLimit: 7, ruleSprayWindow: 10000, ruleSprayCooloff: 11000,
		ruleTiers: 2, ruleTiers + 1: 2, ruleTiers + 2: 1000, ruleTiers + 3: 5, ruleTiers + 4: msIndefinite,
	})
	nn := numShape + 2*dimNums
	d0, d1 := numShape, numShape+dimNums
	check("decision", unpack(arg, nn), map[int]float64{
		numRule: 1, numOp: float64(store.OpSettleFail), numNow: 42, numJitter: 0.75, numPhase: phaseRedo,
		numExt: extBusy, numApplied: 1, numDeadline: 99, numChallenged: 1, numIP: 12, numUser: 4, numUA: 5,
		numToken: 3, numDims: 2, numShape: 2 + 0*4,
		d0 + dimGen: 17, d0 + dimFields: float64(axes.IP | axes.Username), d0 + dimKind: float64(store.KindMember),
		d0 + dimIPKey: 16, d0 + dimUserKey: 16,
		d1 + dimGen: 1 << 31, d1 + dimFields: float64(axes.UserAgent), d1 + dimKind: 0,
		d1 + dimIPKey: 0, d1 + dimUserKey: 0,
	})
	want := "192.0.2.7/32" + "user" + "agent" + "tok"
	if g := string(arg[8*nn : 8*nn+len(want)]); g != want {
		t.Errorf("decision bytes %q, want %q", g, want)
	}
	// Each dimension's tail: one failure, a generation below 256, the meta
	// number of its fields and digests, then the digests.
	tails := arg[8*nn+len(want):]
	for i, d := range []struct {
		meta    float64
		digests string
	}{
		{float64(axes.IP|axes.Username) + 256*3, digestBytes(dims[0].IPKey) + digestBytes(dims[0].UserKey)},
		{float64(axes.UserAgent), ""},
	} {
		if len(tails) < 8*tailNums+len(d.digests) {
			t.Fatalf("dimension %d: tail of %d bytes", i, len(tails))
		}
		f := unpack(tails, tailNums)
		if f[0] != 1 || f[1] < 0 || f[1] > 255 || f[1] != math.Trunc(f[1]) || f[2] != d.meta {
			t.Errorf("dimension %d: tail numbers %v, want 1, a generation below 256, %v", i, f, d.meta)
		}
		if g := string(tails[8*tailNums : 8*tailNums+len(d.digests)]); g != d.digests {
			t.Errorf("dimension %d: tail digests %q, want %q", i, g, d.digests)
		}
		tails = tails[8*tailNums+len(d.digests):]
	}
	if len(tails) != 0 {
		t.Errorf("%d bytes after the tails", len(tails))
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
		v, err := s.c.Get(ctx, s.key(d.Digest)).Result()
		if err != nil && !errors.Is(err, redis.Nil) { // gone: nothing pending
			t.Fatal(err)
		}
		kv, _ := decodeValue(v)
		p := kv.pending
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

// TestReplyFlags runs the script's flags with each argument set in turn
// and checks the bit that parseReply reads for it.
func TestReplyFlags(t *testing.T) {
	c := newClient(t)
	i := strings.Index(scriptLua, "local function flags(")
	j := strings.Index(scriptLua[i:], "\nend\n")
	if i < 0 || j < 0 {
		t.Fatal("script.lua lacks flags")
	}
	src := scriptLua[i:i+j+5] + `
local out = {}
for k = 1, 9 do
  local a = {}
  for m = 1, 9 do a[m] = m == k end
  out[k] = flags(a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9])
end
return out
`
	got, err := c.Eval(context.Background(), src, nil).Int64Slice()
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{flagLocked, flagStarted, flagCounted, flagBusy, flagLockedBefore, flagApplied, flagRaced, flagSketched, flagChallenge}
	if !slices.Equal(got, want) {
		t.Errorf("flags, one argument at a time: %v, want %v", got, want)
	}
}

// TestFunctionRefused runs the store as users whose ACL refuses FUNCTION
// LOAD, or FCALL: it falls back to EVALSHA, and decides as before.
func TestFunctionRefused(t *testing.T) {
	admin := newClient(t)
	ctx := context.Background()
	for _, deny := range []string{"-function", "-fcall"} {
		t.Run(deny, func(t *testing.T) {
			user := "axes-test" + deny
			if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", deny).Err(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { admin.Do(context.Background(), "ACL", "DELUSER", user) })
			c := redis.NewClient(&redis.Options{Addr: standaloneAddr(), Username: user, Password: "pw", ContextTimeoutEnabled: true})
			t.Cleanup(func() { c.Close() })
			s := mustNew(t, c, Options{})
			if s.fn.Load() {
				t.Fatal("the store runs its script as a function, which the ACL refuses")
			}
			r := store.Rule{Limit: 2, Window: time.Minute, Cooloff: time.Minute}
			for i, want := range []bool{false, true} {
				req := &store.Request{Op: store.OpFail, Now: time.Now(), Rule: &r,
					Dims: []store.Dim{{Fields: axes.IP, Digest: axes.Digest{Hi: 77, Lo: uint64(len(deny))}}}}
				if err := s.apply(ctx, req); err != nil {
					t.Fatal(err)
				}
				if got := req.Dims[0].Outcome.Locked; got != want {
					t.Errorf("failure %d: locked %v, want %v", i+1, got, want)
				}
			}
		})
	}
}

// TestFreshDimensionShapes writes the first failures of new clients with
// many dimensions of every shape (no field digest, an IP's, a username's,
// both): each key must hold its own failure, fields and digests, also past
// maxShapeDims dimensions, where the decision's shape number cannot carry
// them and the script reads the lengths from the numbers.
func TestFreshDimensionShapes(t *testing.T) {
	s := mustNew(t, newClient(t), Options{UseRequestTime: true, Timeout: 10 * time.Second})
	ctx := context.Background()
	rule := &store.Rule{Limit: 5, Window: time.Hour, Cooloff: time.Hour}
	shapes := []axes.Fields{axes.UserAgent, axes.IP, axes.Username, axes.IP | axes.Username}
	for _, n := range []int{3, maxShapeDims, maxShapeDims + 4} {
		req := &store.Request{Op: store.OpFail, Now: time.UnixMilli(1_700_000_000_000), Rule: rule}
		for i := range n {
			f := shapes[(i+n)%len(shapes)]
			d := store.Dim{Fields: f, Digest: axes.Digest{Hi: uint64(n), Lo: uint64(i) + 1}}
			if f&axes.IP != 0 {
				d.IPKey = axes.Digest{Hi: uint64(n), Lo: 1000 + uint64(i)}
			}
			if f&axes.Username != 0 {
				d.UserKey = axes.Digest{Hi: uint64(n), Lo: 2000 + uint64(i)}
			}
			req.Dims = append(req.Dims, d)
		}
		if err := s.apply(ctx, req); err != nil {
			t.Fatalf("%d dimensions: %v", n, err)
		}
		for i, d := range req.Dims {
			v, err := s.c.Get(ctx, s.key(d.Digest)).Result()
			if err != nil {
				t.Fatalf("%d dimensions, dimension %d: %v", n, i, err)
			}
			kv, ok := decodeValue(v)
			want := keyValue{failures: 1, fields: d.Fields}
			if !d.IPKey.IsZero() {
				want.ipKey = digestBytes(d.IPKey)
			}
			if !d.UserKey.IsZero() {
				want.userKey = digestBytes(d.UserKey)
			}
			if !ok || kv.failures != 1 || kv.fields != want.fields || kv.ipKey != want.ipKey || kv.userKey != want.userKey ||
				kv.lastFail != 1_700_000_000_000 || kv.gen < 0 || kv.gen > 255 || len(v) != valueLen+len(want.ipKey)+len(want.userKey) {
				t.Errorf("%d dimensions, dimension %d: %+v (%v)", n, i, kv, ok)
			}
		}
	}
}
