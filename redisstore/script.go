package redisstore

import (
	_ "embed"

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
// sketch's); a new key starts at one drawn from the server's clock (below
// 256), so that a settle that arrives after its key was forgotten and made
// anew almost never matches a new reservation.
//
// Footprint. The keys and index set members the script creates are
// counted in the budget hash (KEYS[1]) by the minute in which they expire
// on the server's clock, and the minutes already past are dropped from the
// count (the sorted set KEYS[2] orders them). A dimension key that does
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
// Batches. A call carries one or more decisions (argBatch), run in order
// in the one script call, so that concurrent decisions pay the call's
// fixed cost (the call itself, the script's setup, the footprint count's
// reads and writes) once; each decision is still atomic, and answered
// with its own reply.
//
// KEYS of a decision: the budget hash, the budget minutes, the sketch,
// then the n dimension keys, then the index sets they join.
//
// ARGV of a decision: the arg* positions below, then the tiers as pairs (failures,
// cooloff), then per dimension dimArgs values at the dim* offsets. The
// reply: replyHead values at the reply* positions, then replyDim values
// per dimension at the reply* offsets. script.lua declares the same
// numbers; TestScriptConstants compares them.
var applySrc = budgetLua + scriptLua

//go:embed script.lua
var scriptLua string

//go:embed budget.lua
var budgetLua string

// argBatch is the position of the number of decisions m a call carries,
// followed by m pairs (the decision's number of keys, its number of
// arguments); each decision's keys and arguments follow the previous
// one's. The reply is the list of the decisions' replies, each a reply
// below or an error (AXESLATE).
const argBatch = 1

// one is the number of decisions of a call of one, boxed once.
var one any = 1

// The script's ARGV positions of a decision (1-based, from its first
// argument).
const (
	argOp             = 1  // store.Op
	argNow            = 2  // the request's instant (ms), or -1 for the server's TIME
	argLimit          = 3  // Rule.Limit
	argWindow         = 4  // Rule.Window (ms)
	argCooloff        = 5  // Rule.Cooloff (ms, -1 for Indefinite)
	argFactor         = 6  // Rule.Factor
	argMaxCooloff     = 7  // Rule.MaxCooloff (ms)
	argJitter         = 8  // Rule.JitterScale
	argDecay          = 9  // Rule.Decay (ms)
	argExtend         = 10 // Rule.Extend ("1" or "0", as every flag)
	argObserve        = 11 // Rule.ObserveOnly
	argResetOnSuccess = 12 // Rule.ResetOnSuccess
	argReserveTimeout = 13 // Rule.ReserveTimeout (ms)
	argMaxTTL         = 14 // Options.MaxTTL (ms)
	argDims           = 15 // the number of dimensions n
	argIdentityIP     = 16 // the identity of the attempt, kept with locks
	argIdentityUser   = 17
	argIdentityUA     = 18
	argPhase          = 19 // phaseApply, or phaseRedo for a spread attempt refused elsewhere
	argToken          = 20 // SpreadSlots undo token; "" for none
	argExt            = 21 // refused elsewhere: extNone, extLocked, extBusy, extChallenge
	argApplied        = 22 // phaseRedo: this dimension counted or reserved in phase 1
	argDeadline       = 23 // server ms; 0 for none
	argBudget         = 24 // units of the footprint budget
	argWidth          = 25 // sketch cells per row
	argGrain          = 26 // budget granularity (ms)
	argChallengeAt    = 27 // Rule.ChallengeAt; 0 for none
	argChallenged     = 28 // Rule.Challenged
	argSpray          = 29 // Rule.Spray as "limit,window,cooloff" (ms), "0" for off
	argTiers          = 30 // the number of tiers t, followed by t pairs
)

// The offsets of a dimension's arguments.
const (
	dimGen       = 0 // Dim.Gen
	dimFields    = 1 // Dim.Fields
	dimIPIndex   = 2 // KEYS position of the IP index set; 0 for none
	dimUserIndex = 3 // KEYS position of the username index set; 0 for none
	dimIPKey     = 4 // the IP field digest, kept under SpreadSlots; "" for none
	dimUserKey   = 5 // the username field digest, likewise
	dimKind      = 6 // Dim.Kind
	dimColumns   = 7 // the sketch column in each of the 4 rows
	dimArgs      = 11
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
	replyNow          = 0 // the script's instant (ms)
	replyRefused      = 1
	replyServer       = 2 // the server's TIME (ms)
	replyHead         = 3
	replyFailures     = 0
	replyLocked       = 1
	replyStarted      = 2
	replyCounted      = 3
	replyBusy         = 4
	replyRemaining    = 5 // ms, -1 for Indefinite
	replyGen          = 6
	replyLockedBefore = 7 // locked before the operation
	replyApplied      = 8 // counted or reserved by this call
	replyRaced        = 9 // phaseRedo found the dimension written since phase 1
	replySketched     = 10
	replyTimedOut     = 11 // Outcome.TimedOut
	replyChallenge    = 12 // Outcome.Challenge
	replyDim          = 13
)

// Numbers of the script that Go does not use but pins.
const (
	msIndefinite = -1      // axes.Indefinite as the script encodes it
	genSketch    = 1 << 31 // marks a generation held in the sketch
	maxLevel     = 255     // the back-off level saturates there
)

// resetIndexSrc forgets the dimension keys listed in the index set
// KEYS[3] (all in its slot) and the set itself, returning how many
// dimension keys existed. KEYS[1..2] and ARGV[1] are the budget.
var resetIndexSrc = budgetLua + `
G = tonumber(ARGV[1])
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  n = n + forget(k, false)
end
forget(KEYS[3], true)
budgetDone(tonumber(ARGV[2]))
return n
`

// resetIfSrc deletes KEYS[3] when its hash field ARGV[3] equals ARGV[4].
// KEYS[1..2] and ARGV[1..2] are the budget.
var resetIfSrc = budgetLua + `
G = tonumber(ARGV[1])
local d = 0
if redis.call('HGET', KEYS[3], ARGV[3]) == ARGV[4] then
  d = forget(KEYS[3], false)
end
budgetDone(tonumber(ARGV[2]))
return d
`

// deleteSrc deletes the dimension keys KEYS[3..] and their units.
// KEYS[1..2] and ARGV[1..2] are the budget.
var deleteSrc = budgetLua + `
G = tonumber(ARGV[1])
local d = 0
for i = 3, #KEYS do d = d + forget(KEYS[i], false) end
budgetDone(tonumber(ARGV[2]))
return d
`

var (
	applyScript      = redis.NewScript(applySrc)
	resetIndexScript = redis.NewScript(resetIndexSrc)
	resetIfScript    = redis.NewScript(resetIfSrc)
	deleteScript     = redis.NewScript(deleteSrc)

	applyHash = applyScript.Hash() // the SHA1 that EVALSHA names applyScript by

	applyHashArg any = applyHash // applyHash as an argument, boxed once
)
