package redisstore

import (
	"context"
	_ "embed"
	"strings"

	"github.com/axes-go/axes"
	"github.com/redis/go-redis/v9"
)

// applyScript is store.Rule.Apply, with Rule.Refresh and Rule.LockDuration,
// transcribed to Lua (script.lua, after the footprint prelude budget.lua).
// It applies one operation to the dimension keys of one attempt (all of
// them in the default one-slot layout, one at a time under SpreadSlots)
// and writes each changed state back with a TTL that covers everything the
// state must still remember.
//
// Times are milliseconds on one timeline (the server's TIME, or the
// limiter's clock under UseRequestTime); -1 stands for Indefinite, both as
// a duration and as a lock end. Durations reach the script rounded up to
// whole milliseconds, and lock durations the script computes (back-off,
// jitter) are rounded up too, so that a lock never ends earlier than
// under Rule.Apply on the same millisecond instants; instants saturate at
// maxMS. Exact reservation generations wrap at 2^31 (the top bit marks the
// sketch's); a new key starts at one drawn at random below 256 (from the
// server's clock, or by Go for a first failure written from the
// dimension's tail), so that a settle that arrives after its key was
// forgotten and made anew almost never matches a new reservation.
//
// Footprint. The keys the script creates are counted in the budget hash
// (KEYS[1]) by the minute in which they expire on the server's clock, and
// the minutes already past are dropped from the count (the sorted set
// KEYS[2] orders them). A dimension key that does
// not exist and cannot be created within the budget falls into the sketch
// (KEYS[3]): a count-min sketch of 4 rows of cells, each cell holding
// failures, reservations, back-off level, reservation generation (7 bits),
// last failure, last reservation and lock end (192 bits, BITFIELD). A key
// that does not exist reads the sketch: the minimum over its 4 cells of
// every field, each cell having been refreshed like a state. Failures,
// levels, times and lock ends are written back by conservative update
// (each cell becomes at least the key's new state), reservations are
// added to and taken from every cell (a settle takes back only in the
// cells whose generation still matches): every cell is at least the state
// of every key that maps to it, so a key may be over-counted, never
// under-counted. A reservation in the sketch returns a generation with the
// top bit set and the 4 cells' generations in its low 28 bits.
//
// Deadline. The deadline argument is the last instant (server TIME,
// milliseconds) at which the caller still waits for the reply; a script
// that starts later does nothing and fails, so a call the store gave up on
// never takes effect when a stalled server wakes.
//
// Batches. A call carries one or more decisions, run in order in the
// one script call, so that concurrent decisions pay the call's fixed cost
// (the call itself, the script's setup, the footprint count's reads and
// writes) once; each decision is still atomic, and answered with its own
// reply.
//
// Protocol. Every item Redis receives costs it a parse, a copy and a Lua
// string, and every reply element a conversion: a decision travels as one
// packed argument and its dimension keys, and is answered by one packed
// reply, all numbers little-endian float64s (struct.unpack's "<d"), exact
// for every value sent (integers below 2^53, the rule's factor and the
// attempt's jitter as Go has them). A call's KEYS are the budget hash, the
// budget minutes and the sketch (up to keySketch), then the dimension keys
// of each decision in order (from keyDims); its ARGV are the number r of
// distinct rules (argRules), the r rules, each packed (rule*), then one
// argument per decision: its numbers (num*), dimNums numbers per dimension
// (dim*), then the bytes of the identity and the token, of the lengths the
// numbers give, then each dimension's tail: tailNums numbers and its field
// digests, the end of the value of its key's first failure (value.lua), so
// that the script writes a new key as a piece of its own and this. The reply
// is the list of the decisions' replies, each the packed numbers
// (reply*) or an error (AXESLATE). script.lua declares the same numbers;
// TestScriptConstants compares them.
var applySrc = evalPrelude + budgetLua + valueLua + scriptLua + "return run(KEYS, ARGV)\n"

// evalPrelude declares the call's KEYS and ARGV, which begin (budget.lua)
// sets, as the globals EVAL gives.
const evalPrelude = "local KEYS, ARGV = KEYS, ARGV\n"

//go:embed script.lua
var scriptLua string

//go:embed budget.lua
var budgetLua string

//go:embed value.lua
var valueLua string

// argRules is the position of the number of distinct rules of a call.
const argRules = 1

// one is 1 boxed once: the number of rules of a call of one decision.
var one any = 1

// A decision's numbers (1-based).
const (
	numRule       = 1  // the decision's rule, 1 to r
	numOp         = 2  // store.Op
	numNow        = 3  // the request's instant (ms), or -1 for the server's TIME
	numJitter     = 4  // Rule.JitterScale
	numPhase      = 5  // phaseApply, or phaseRedo for a spread attempt refused elsewhere
	numExt        = 6  // refused elsewhere: extNone, extLocked, extBusy, extChallenge
	numApplied    = 7  // phaseRedo: this dimension counted or reserved in phase 1
	numDeadline   = 8  // server ms; 0 for none
	numChallenged = 9  // Rule.Challenged
	numIP         = 10 // the lengths of the attempt's identity, kept with locks:
	numUser       = 11 // IP, username, user agent
	numUA         = 12
	numToken      = 13 // the length of the SpreadSlots undo token (0 for none)
	numDims       = 14 // the number of dimensions n
	numShape      = 15 // the number of field digests of each dimension i, times 4^(i-1), summed; -1 past maxShapeDims
)

// maxShapeDims is the most dimensions whose digits numShape carries: 4^26
// is 2^52, below float64's exact integers.
const maxShapeDims = 26

// The offsets of a dimension's numbers, after the decision's and the
// previous dimensions'.
const (
	dimGen     = 1 // Dim.Gen
	dimFields  = 2 // Dim.Fields
	dimIPKey   = 3 // the lengths of its IP and username field digests (0 for none)
	dimUserKey = 4
	dimKind    = 5 // Dim.Kind
	dimNums    = 5

	// The numbers of a dimension's tail (tailOne, a random generation and
	// the meta number), before its field digests.
	tailNums = 3
)

// The rule's numbers (1-based).
const (
	ruleLimit          = 1  // Rule.Limit
	ruleWindow         = 2  // Rule.Window (ms)
	ruleCooloff        = 3  // Rule.Cooloff (ms, -1 for Indefinite)
	ruleFactor         = 4  // Rule.Factor
	ruleMaxCooloff     = 5  // Rule.MaxCooloff (ms)
	ruleDecay          = 6  // Rule.Decay (ms)
	ruleExtend         = 7  // Rule.Extend (1 or 0, as every flag)
	ruleObserve        = 8  // Rule.ObserveOnly
	ruleResetOnSuccess = 9  // Rule.ResetOnSuccess
	ruleReserveTimeout = 10 // Rule.ReserveTimeout (ms)
	ruleMaxTTL         = 11 // Options.MaxTTL (ms)
	ruleBudget         = 12 // units of the footprint budget
	ruleWidth          = 13 // sketch cells per row
	ruleGrain          = 14 // budget granularity (ms)
	ruleChallengeAt    = 15 // Rule.ChallengeAt; 0 for none
	ruleSprayLimit     = 16 // Rule.Spray; 0 for off
	ruleSprayWindow    = 17 // (ms)
	ruleSprayCooloff   = 18 // (ms)
	ruleTiers          = 19 // the number of tiers t, followed by t pairs (failures, cooloff ms)
)

// The KEYS positions (1-based) of the sketch and the first dimension key.
const (
	keySketch = 3
	keyDims   = 4
)

// The phases and refusals of a SpreadSlots attempt.
const (
	phaseApply   = 1
	phaseRedo    = 2
	extNone      = 0
	extLocked    = 1
	extBusy      = 2
	extChallenge = 3
)

// The reply's positions (0-based): the head, then per dimension.
const (
	replyNow       = 0 // the script's instant (ms)
	replyRefused   = 1
	replyServer    = 2 // the server's TIME (ms)
	replyHead      = 3
	replyFailures  = 0
	replyRemaining = 1 // ms, -1 for Indefinite
	replyGen       = 2
	replyTimedOut  = 3 // Outcome.TimedOut
	replyFlags     = 4 // the flag* bits
	replyDim       = 5
)

// replyShort starts the short reply of a decision all of whose dimensions
// counted their first failure and are not locked (REPLY.short in
// script.lua), followed by the script's instant and the server's TIME.
const replyShort = "F"

// A dimension's flags in a reply (the order of flags in script.lua).
const (
	flagLocked       = 1 << iota
	flagStarted      // a lock started
	flagCounted      // a failure counted
	flagBusy         // Outcome.Busy
	flagLockedBefore // locked before the operation
	flagApplied      // counted or reserved by this call
	flagRaced        // phaseRedo found the dimension written since phase 1
	flagSketched     // kept in the sketch
	flagChallenge    // Outcome.Challenge
)

// Numbers of the script that Go does not use but pins.
const (
	msIndefinite = -1      // axes.Indefinite as the script encodes it
	genSketch    = 1 << 31 // marks a generation held in the sketch
	maxLevel     = 255     // the back-off level saturates there
)

// resetIfSrc deletes the dimension key KEYS[3] when it records the field
// digest ARGV[4] (16 bytes) for its IP (ARGV[3] "ik") or its username
// ("uk"). KEYS[1..2] and ARGV[1..2] are the budget.
var resetIfSrc = evalPrelude + budgetLua + valueLua + `
begin(KEYS, ARGV)
G = tonumber(ARGV[1])
local d = 0
local v = redis.call('GET', KEYS[3])
if v then
  local _, _, _, _, _, _, meta = struct.unpack(VAL_FMT, v)
  local _, nik, nuk = valueMeta(meta)
  local at, n = VAL_LEN + 1, nik
  if ARGV[3] == 'uk' then at, n = at + nik, nuk end
  if n > 0 and string.sub(v, at, at + n - 1) == ARGV[4] then d = forget(KEYS[3]) end
end
budgetDone(tonumber(ARGV[2]))
return d
`

// deleteSrc deletes the dimension keys KEYS[3..] and their units.
// KEYS[1..2] and ARGV[1..2] are the budget.
var deleteSrc = evalPrelude + budgetLua + `
begin(KEYS, ARGV)
G = tonumber(ARGV[1])
local d = 0
for i = 3, #KEYS do d = d + forget(KEYS[i]) end
budgetDone(tonumber(ARGV[2]))
return d
`

var (
	applyScript   = redis.NewScript(applySrc)
	resetIfScript = redis.NewScript(resetIfSrc)
	deleteScript  = redis.NewScript(deleteSrc)

	applyHash = applyScript.Hash() // the SHA1 that EVALSHA names applyScript by

	applyHashArg any = applyHash // applyHash as an argument, boxed once
)

// The apply script as a function library (Redis 7.0 and later), named by
// the script's hash so that servers of another version keep theirs. Run
// by EVALSHA, the script defines its constants and about 60 functions
// again on every call (about 280,000 instructions, as much as a first
// failure); loaded once as a library, a call (FCALL) only runs them.
var (
	fnName        = "axes_apply_" + applyHash[:16]
	fnNameArg any = fnName
	fnLibrary     = "#!lua name=axes_" + applyHash[:16] + "\nlocal KEYS, ARGV\n" + budgetLua + valueLua + scriptLua +
		"globals(true).register_function('" + fnName + "', function(keys, args) return run(keys, args, true) end)\n"
)

// missingScript reports whether err says that the apply script is not
// loaded on the node: the call did not run.
func missingScript(err error) bool {
	return redis.HasErrorPrefix(err, "NOSCRIPT") || strings.HasPrefix(err.Error(), "ERR Function not found")
}

// loadFunction loads the function library on every node that holds keys.
func (s *Store) loadFunction(ctx context.Context) error {
	return s.forEachNode(ctx, func(ctx context.Context, c redis.Cmdable) error {
		return c.FunctionLoadReplace(ctx, fnLibrary).Err()
	})
}

// evalMode makes the apply script run by EVALSHA from now on: FUNCTION
// LOAD failed where it had worked (a node of an older Redis, or an ACL
// changed).
func (s *Store) evalMode() {
	if s.fn.Swap(false) {
		s.log.Warn("redisstore: FUNCTION LOAD failed; the apply script runs by EVALSHA from now on")
	}
}

// loadApply loads the apply script where a call found it missing: the
// function library on every node, or the script, by EVALSHA.
func (s *Store) loadApply(ctx context.Context) error {
	if s.fn.Load() {
		if err := s.loadFunction(ctx); err == nil {
			return nil
		}
		s.evalMode()
	}
	return applyScript.Load(ctx, s.c).Err()
}

// retarget makes args, a call of the apply script (FCALL and EVALSHA take
// the same arguments after the first two), call it as the store runs it
// now.
func (s *Store) retarget(args []any) {
	if s.fn.Load() {
		args[0], args[1] = "fcall", fnNameArg
	} else {
		args[0], args[1] = "evalsha", applyHashArg
	}
}

// emptyCall returns a call of the apply function with no decision (it
// writes nothing): New checks with it that the server lets the store call
// its function.
func (s *Store) emptyCall() []any {
	bk := s.budgetKeys(axes.Digest{})
	return []any{"fcall", fnNameArg, keyDims - 1, bk[0], bk[1], bk[2], 0}
}
