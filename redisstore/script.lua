-- The apply script: axes.Rule.Apply, with Rule.Refresh and
-- Rule.LockDuration, transcribed to Lua (see script.go for what it does
-- around them: the footprint budget, the sketch, the deadline). It runs
-- after budget.lua, which defines G, snow (the server's TIME in ms) and the
-- footprint functions, and value.lua, the format of a dimension key. It is
-- loaded once as a function library (run is the function) or run whole by
-- EVAL (which calls run): nothing here may touch Redis, KEYS, ARGV or a
-- library such as struct or string before run starts a call.
--
-- The parts come in the order of the Go rule: satAdd, LockDuration and
-- scale, Refresh, startLock, count, then the storage (keys, sketch), then
-- Apply's cases and the outcome, then fast, the same for the common
-- failures and successes with less work, and the decisions of a call.
-- Each part names the Go function it mirrors; a change to one must be made
-- to the other (and to fast).
--
-- Every "local NAME = number" line of the constants section is shared
-- with Go: TestScriptConstants reads them from this file and compares
-- them with the Go values (axes.OpFail, axes.MaxFailures, the argument
-- and reply positions of store.go, ...).

-- Constants shared with Go --------------------------------------------------

-- Operations: axes.Op.
local OP_CHECK = 0
local OP_FAIL = 1
local OP_BEGIN = 2
local OP_SETTLE_FAIL = 3
local OP_SETTLE_SUCCESS = 4
local OP_SUCCESS = 5

-- axes.MaxFailures: counts and reservations saturate there.
local MAX_FAILURES = 65535
-- The back-off level saturates there (Rule.startLock).
local MAX_LEVEL = 255
-- axes.Indefinite, as a duration and as a lock end (ms in store.go).
local INDEFINITE = -1
-- Instants and durations saturate at 2^52-1 ms (maxMS in store.go), where
-- Lua's numbers are still exact.
local MAX_MS = 4503599627370495
-- Nanoseconds in a millisecond: Go computes back-off and jitter in
-- nanoseconds, the store keeps milliseconds rounded up.
local NS_PER_MS = 1000000
-- float64(maxFinite) in Go, in nanoseconds: 2^63.
local MAX_FINITE_NS = 9223372036854775808
-- time.Second in Rule.scale, in nanoseconds: the shortest jittered lock.
local MIN_JITTERED_NS = 1000000000
-- A generation with this bit set is a reservation held in the sketch;
-- exact generations wrap below it.
local GEN_SKETCH = 2147483648
-- Sketch cells keep 7-bit generations.
local GEN_CELL = 128

-- Phases (ARGV[ARG_PHASE]) and refusals elsewhere (ARGV[ARG_EXT]) of a
-- SpreadSlots attempt.
local PHASE_APPLY = 1
local PHASE_REDO = 2
local EXT_NONE = 0
local EXT_LOCKED = 1
local EXT_BUSY = 2
local EXT_CHALLENGE = 3

-- A call (see Protocol in script.go): KEYS are the budget keys and the
-- sketch, then every decision's dimension keys; ARGV[ARG_RULES] is the
-- number r of rules, the r packed rules follow, then one packed argument
-- per decision.
local ARG_RULES = 1
-- The rule's numbers (1-based; little-endian doubles).
local RULE_LIMIT = 1
local RULE_WINDOW = 2
local RULE_COOLOFF = 3
local RULE_FACTOR = 4
local RULE_MAX_COOLOFF = 5
local RULE_DECAY = 6
local RULE_EXTEND = 7
local RULE_OBSERVE = 8
local RULE_RESET_ON_SUCCESS = 9
local RULE_RESERVE_TIMEOUT = 10
local RULE_MAX_TTL = 11
local RULE_BUDGET = 12
local RULE_WIDTH = 13
local RULE_GRAIN = 14
local RULE_CHALLENGE_AT = 15
local RULE_SPRAY_LIMIT = 16
local RULE_SPRAY_WINDOW = 17
local RULE_SPRAY_COOLOFF = 18
local RULE_TIERS = 19
-- A decision's numbers, then DIM_NUMS per dimension at the DIM_ offsets,
-- then the bytes of the identity, the token and the field digests.
local NUM_RULE = 1
local NUM_OP = 2
local NUM_NOW = 3
local NUM_JITTER = 4
local NUM_PHASE = 5
local NUM_EXT = 6
local NUM_APPLIED = 7
local NUM_DEADLINE = 8
local NUM_CHALLENGED = 9
local NUM_IP = 10
local NUM_USER = 11
local NUM_UA = 12
local NUM_TOKEN = 13
local NUM_DIMS = 14
local NUM_SHAPE = 15
local DIM_GEN = 1
local DIM_FIELDS = 2
local DIM_IP_KEY = 3
local DIM_USER_KEY = 4
local DIM_KIND = 5
local DIM_NUMS = 5

-- Kinds of dimension (store.Kind) other than store.KindCount, which
-- every other value means.
local KIND_MEMBER = 1
local KIND_SPRAY = 2

-- KEYS positions: the budget hash and minutes (budget.lua), the sketch,
-- then the dimension keys from KEY_DIMS.
local KEY_SKETCH = 3
local KEY_DIMS = 4

-- Reply: REPLY_HEAD values, then REPLY_DIM values per dimension, at these
-- 0-based offsets; a dimension's flags are one number (see flags).
local REPLY_NOW = 0
local REPLY_REFUSED = 1
local REPLY_SERVER = 2
local REPLY_HEAD = 3
local REPLY_FAILURES = 0
local REPLY_REMAINING = 1
local REPLY_GEN = 2
local REPLY_TIMED_OUT = 3
local REPLY_FLAGS = 4
local REPLY_DIM = 5

-- Arguments -----------------------------------------------------------------

-- The decision being run: AB, the position of its argument, and KB, the
-- number of dimension keys of the decisions before it; then its arguments
-- (the decision loop at the end of the script sets them).
local AB, KB = 0, 0
local DEADLINE, op, now, LIMIT, WIN, COOL, FACTOR, MAXC, JS, DECAY
local EXTEND, OBS, ROS, RT, MAXTTL, CHAT, CHALLENGED, n
local phase, token, ext, applied1, MAXU, W, nt, tiers
local SK

-- The decision's argument and what it carries beyond its numbers: D.arg,
-- the argument; D.id, the position of its identity, of lengths D.idn;
-- D.n, its dimensions' numbers (dimension i's number k at
-- DIM_NUMS*(i-1) + k); D.ik[i], the position of dimension i's field
-- digests (adjacent); what load read of its key: D.ex[i] its expiry (nil
-- for none), D.oid[i] the identity kept with its lock (the lengths of IP,
-- username and user agent, then the bytes). The tables are reused by every
-- decision of the call. D.put is finish's put, for fast.
local D = {n = nil, ik = {}, idn = {}, ex = {}, oid = {}, fmt = {}, wfmt = VAL_FMT .. 'c0'}

-- dn returns the number k of dimension i.
local function dn(i, k)
  return D.n[DIM_NUMS * (i - 1) + k]
end

-- sub returns the n bytes of the decision's argument from position at.
local function sub(at, len)
  if len == 0 then return '' end
  return string.sub(D.arg, at, at + len - 1)
end

-- unpackRule returns the packed rule x as a table.
local function unpackRule(x)
  do
    local r
    local v = {struct.unpack('<' .. string.rep('d', #x / 8), x)}
    local t = {}
    for i = 1, v[RULE_TIERS] do t[i] = {v[RULE_TIERS + 2*i - 1], v[RULE_TIERS + 2*i]} end
    r = {limit = v[RULE_LIMIT], win = v[RULE_WINDOW], cool = v[RULE_COOLOFF], factor = v[RULE_FACTOR],
      maxc = v[RULE_MAX_COOLOFF], decay = v[RULE_DECAY], extend = v[RULE_EXTEND] == 1,
      obs = v[RULE_OBSERVE] == 1, ros = v[RULE_RESET_ON_SUCCESS] == 1, rt = v[RULE_RESERVE_TIMEOUT],
      maxttl = v[RULE_MAX_TTL], budget = v[RULE_BUDGET], width = v[RULE_WIDTH], grain = v[RULE_GRAIN],
      chat = v[RULE_CHALLENGE_AT], sprayLimit = v[RULE_SPRAY_LIMIT], sprayWin = v[RULE_SPRAY_WINDOW],
      sprayCool = v[RULE_SPRAY_COOLOFF], nt = v[RULE_TIERS], tiers = t}
    -- Failures under it may take the fast path.
    r.fast = r.sprayLimit <= 0 and r.chat <= 0
    return r
  end
end

-- The format of the decision's numbers: NUM_SHAPE doubles (TestScriptConstants).
local NUMS_FMT = '<ddddddddddddddd'
-- The numbers of a dimension's tail, before its field digests (tailNums).
local TAIL_LEN = 24

-- Spray detection (Rule.applySpray), in one table: the script's main
-- function is near Lua's limit of 200 locals. SPR.kind[i] is the kind of
-- dimension i (0 for store.KindCount, any unknown kind, and every kind
-- when spray detection is off, as Rule.Apply ignores them); SPR.B holds
-- the rule's own numbers; SPR.fresh reports that the attempt's username
-- is new to its IP: its member remembers no failure (a reservation there
-- does not count, since its attempt may be cancelled).
local SPR = {kind = {}, fresh = true, B = {}, cur = 0}

-- use makes the rule's numbers those of Rule.ForKind(k): the rule itself
-- for store.KindCount; for spray detection a fixed lock of SPR.cool at
-- SPR.limit (never for KIND_MEMBER), failures kept SPR.win, without
-- back-off, tiers, jitter or reset on success. Every per-dimension step
-- calls it first; SPR.cur is the kind whose numbers are in force.
function SPR.use(k)
  if k ~= KIND_MEMBER and k ~= KIND_SPRAY then k = 0 end
  if k == SPR.cur then return end
  SPR.cur = k
  local B = SPR.B
  if k == 0 then
    LIMIT, WIN, COOL, FACTOR, MAXC, JS, DECAY, OBS, ROS, nt =
      B[1], B[2], B[3], B[4], B[5], B[6], B[7], B[8], B[9], B[10]
  else
    LIMIT, WIN, COOL, FACTOR, MAXC, JS, DECAY, ROS, nt =
      SPR.limit, SPR.win, SPR.cool, 0, 0, 0, 0, false, 0
    OBS = B[8] or k == KIND_MEMBER
  end
end

-- skip reports whether dimension i takes no part in a failure or
-- reservation, or a settled failure counts nothing in: a KIND_SPRAY
-- dimension for a username that failed from the IP.
function SPR.skip(i)
  return SPR.kind[i] == KIND_SPRAY and not SPR.fresh
end

-- A state s has the fields of axes.State: f Failures, p Pending, l Level,
-- g Gen, lf LastFail, lb LastBegin, le LockEnd, all in milliseconds.

-- satAdd ----------------------------------------------------------------------

local function satadd(t, d)
  if d < 0 or d >= MAX_MS or t > MAX_MS - d then return MAX_MS end
  return t + d
end

-- State.LockedAt.
local function lockedAt(s, t)
  return s.le == INDEFINITE or (s.le ~= 0 and t < s.le)
end

-- Rule.LockDuration and Rule.scale ---------------------------------------------

-- idiv returns the quotient and remainder of the integers a >= 0 and
-- b > 0, both below 2^53.
local function idiv(a, b)
  local q = math.floor(a / b)
  local r = a - q * b
  if r < 0 then q, r = q - 1, r + b elseif r >= b then q, r = q + 1, r - b end
  return q, r
end

-- ceilms returns t nanoseconds (an integer below 2^63) in milliseconds,
-- rounded up and saturated at MAX_MS, exactly (TestCeilMS): a lock end
-- rounded up decides "now < end" as Go does for every whole-millisecond
-- now.
local function ceilms(t)
  local m, e = math.frexp(t)
  local k = e - 53
  local q, r
  if k <= 0 then
    q, r = idiv(t, NS_PER_MS)
  elseif k >= 6 then
    -- t = M*2^k and 10^6 = 2^6*15625.
    local a, b = idiv(m * 2^53, 15625)
    local c, d = idiv(b * 2^(k - 6), 15625)
    q, r = a * 2^(k - 6) + c, d
  else
    q, r = idiv(m * 2^53, 2^(6 - k) * 15625)
  end
  if r > 0 then q = q + 1 end
  return math.min(q, MAX_MS)
end

-- scale is Rule.scale on t nanoseconds (a float64 as Go has it); ms, if
-- not nil, is t in whole milliseconds. It returns milliseconds.
local function scale(t, ms)
  if JS == 0 or JS == 1 then
    if ms then return ms end
    return ceilms(t)
  end
  local f = t * JS
  if f >= MAX_FINITE_NS then return MAX_MS end
  if f < MIN_JITTERED_NS then return ceilms(MIN_JITTERED_NS) end
  return ceilms(math.floor(f))
end

-- lockdur is Rule.LockDuration, in milliseconds or INDEFINITE. Durations
-- reach the script in whole milliseconds (rounded up); the back-off and
-- the jitter are computed in nanoseconds, as Go computes them.
local function lockdur(level, failures)
  if nt > 0 then
    local d = tiers[1][2]
    for i = 1, nt do
      if failures >= tiers[i][1] then d = tiers[i][2] end
    end
    return d
  end
  local d = COOL
  if d == INDEFINITE then return d end
  if FACTOR <= 1 or level <= 1 then return scale(d * NS_PER_MS, d) end
  local f = d * NS_PER_MS * (FACTOR ^ (level - 1))
  if MAXC > 0 and f > MAXC * NS_PER_MS then return scale(MAXC * NS_PER_MS, MAXC) end
  if f >= MAX_FINITE_NS then return MAX_MS end
  return scale(math.floor(f), nil)
end

-- Rule.Refresh ----------------------------------------------------------------

local startLock

-- refresh applies the passage of time to s at t and returns whether a lock
-- started and how many reservations timed out into failures. gm is where
-- generations wrap.
local function refresh(s, t, gm)
  local started, timedOut = false, 0
  if s.p > 0 and RT > 0 and t >= satadd(s.lb, RT) then
    local at = satadd(s.lb, RT)
    timedOut = s.p
    if s.f > 0 and at >= satadd(s.lf, WIN) then s.f = 0 end
    s.f = math.min(s.f + s.p, MAX_FAILURES)
    s.p = 0
    s.g = (s.g + 1) % gm
    s.lf = math.max(s.lf, at)
    if not OBS and not lockedAt(s, at) and s.f >= LIMIT then
      startLock(s, at)
      started = lockedAt(s, t)
    end
  end
  if s.f > 0 and t >= satadd(s.lf, WIN) then s.f = 0 end
  if s.l > 0 and not lockedAt(s, t) and t >= satadd(s.le, DECAY) then s.l = 0 end
  if s.le ~= 0 and s.le ~= INDEFINITE and s.l == 0 and t >= s.le then s.le = 0 end
  return started, timedOut
end

-- Rule.startLock ----------------------------------------------------------------

startLock = function(s, at)
  s.l = math.min(s.l + 1, MAX_LEVEL)
  local d = lockdur(s.l, s.f)
  if d == INDEFINITE then s.le = INDEFINITE else s.le = satadd(at, d) end
end

-- Rule.count --------------------------------------------------------------------

local function count(s, t)
  s.f = math.min(s.f + 1, MAX_FAILURES)
  s.lf = math.max(s.lf, t)
end

-- Storage: the dimension keys -----------------------------------------------------

-- A dimension key holds its state and what goes with it in one string
-- (value.lua), written whole with its TTL by one SET; no index is written
-- beside it: a first failure creates its keys and nothing else.
-- The state of a key that does not exist, never written to.
local ZERO = {f = 0, p = 0, l = 0, g = 0, lf = 0, lb = 0, le = 0}
-- The microseconds of the server's TIME, for the generations of new keys.
local TM_US

local function same(a, b)
  return a.f == b.f and a.p == b.p and a.l == b.l and a.g == b.g and a.lf == b.lf and
    a.lb == b.lb and a.le == b.le
end

-- State.IsZero.
local function iszero(s)
  return s.f == 0 and s.p == 0 and s.l == 0 and s.le == 0
end

local function copy(s)
  return {f = s.f, p = s.p, l = s.l, g = s.g, lf = s.lf, lb = s.lb, le = s.le}
end

-- horizon returns the instant until which s must be remembered, or
-- INDEFINITE.
local function horizon(s)
  local h = 0
  if s.f > 0 then h = math.max(h, satadd(s.lf, WIN)) end
  if s.p > 0 then
    if RT <= 0 then return INDEFINITE end -- reservations that never time out, as Rule.Horizon
    local at = satadd(s.lb, RT)
    local f = s.f
    if f > 0 and at >= satadd(s.lf, WIN) then f = 0 end
    f = math.min(f + s.p, MAX_FAILURES)
    h = math.max(h, satadd(at, WIN))
    if not OBS and f >= LIMIT then
      local d = lockdur(math.min(s.l + 1, MAX_LEVEL), f)
      if d == INDEFINITE then return INDEFINITE end
      h = math.max(h, satadd(satadd(at, d), DECAY))
    end
  end
  if s.le == INDEFINITE then return INDEFINITE end
  if s.le ~= 0 then
    if s.l > 0 then h = math.max(h, satadd(s.le, DECAY)) else h = math.max(h, s.le) end
  end
  return h
end

-- Storage: the sketch ---------------------------------------------------------------

-- 4 rows of W cells of 192 bits; a lock end of T48 is INDEFINITE.
local T48 = 281474976710655
local CELL = {{'u16', 0, 'f'}, {'u16', 16, 'p'}, {'u8', 32, 'l'}, {'u7', 40, 'g'},
  {'u48', 48, 'lf'}, {'u48', 96, 'lb'}, {'u48', 144, 'le'}}
local sketchOn, sketchTouched

local readRows, writeRows
do
  -- cellOff returns the bit offset of dimension i's cell in row r. Its
  -- column is a part of its digest, whose 32 hexadecimal digits end its
  -- key: in rows 1 to 4, the low and high 32 bits of the digest's low
  -- half, the low 32 bits of its high half and the 24 above them (digits
  -- 25-32, 17-24, 9-16 and 3-8), modulo the width W.
  local from, len = {25, 17, 9, 3}, {8, 8, 8, 6}
  local function cellOff(r, i)
    local key = KEYS[KEY_DIMS - 1 + KB + i]
    local at = #key - 32 + from[r]
    local col = tonumber(string.sub(key, at, at + len[r] - 1), 16) % W
    return ((r - 1) * W + col) * 192
  end

  -- readRows returns the 4 cells of dimension i, refreshed at now; with
  -- empty, the cells of an empty sketch without reading it.
  readRows = function(i, empty)
    local rows = {}
    local v = nil
    if not empty and sketchOn then
      local args = {'BITFIELD_RO', SK}
      for r = 1, 4 do
        local o = cellOff(r, i)
        for _, c in ipairs(CELL) do
          args[#args + 1] = 'GET'
          args[#args + 1] = c[1]
          args[#args + 1] = o + c[2]
        end
      end
      v = redis.call(unpack(args))
    end
    for r = 1, 4 do
      local c = {f = 0, p = 0, l = 0, g = 0, lf = 0, lb = 0, le = 0}
      if v then
        for j, x in ipairs(CELL) do c[x[3]] = v[(r - 1) * 7 + j] end
        if c.le == T48 then c.le = INDEFINITE end
      end
      refresh(c, now, GEN_CELL)
      rows[r] = c
    end
    return rows
  end

  writeRows = function(i, rows)
    local args = {'BITFIELD', SK}
    for r = 1, 4 do
      local c = rows[r]
      local o = cellOff(r, i)
      local le = c.le
      if le == INDEFINITE or le >= T48 then le = T48 end
      local vals = {f = math.min(c.f, MAX_FAILURES), p = math.min(c.p, MAX_FAILURES), l = c.l,
        g = c.g % GEN_CELL, lf = math.min(c.lf, T48 - 1), lb = math.min(c.lb, T48 - 1), le = le}
      for _, x in ipairs(CELL) do
        args[#args + 1] = 'SET'
        args[#args + 1] = x[1]
        args[#args + 1] = o + x[2]
        args[#args + 1] = vals[x[3]]
      end
    end
    redis.call(unpack(args))
    sketchOn = true
    sketchTouched = true
  end
end

-- estimate is the state a key reads from its cells: the minimum of each
-- field (a lock end of INDEFINITE counting as the latest).
local function estimate(rows)
  local e = {f = rows[1].f, p = rows[1].p, l = rows[1].l, g = 0, lf = rows[1].lf,
    lb = rows[1].lb, le = rows[1].le}
  for r = 2, 4 do
    local c = rows[r]
    e.f = math.min(e.f, c.f)
    e.p = math.min(e.p, c.p)
    e.l = math.min(e.l, c.l)
    e.lf = math.min(e.lf, c.lf)
    e.lb = math.min(e.lb, c.lb)
    if e.le == INDEFINITE then e.le = c.le elseif c.le ~= INDEFINITE then e.le = math.min(e.le, c.le) end
  end
  return e
end

local mergeRows
do
  local function maxle(a, b)
    if a == INDEFINITE or b == INDEFINITE then return INDEFINITE end
    return math.max(a, b)
  end

  -- mergeRows raises every cell to the new state s (conservative update)
  -- and adds dp reservations to every cell, or, with dp < 0, takes one back
  -- from the cells in match.
  mergeRows = function(rows, s, dp, match)
    for r = 1, 4 do
      local c = rows[r]
      c.f = math.max(c.f, s.f)
      c.l = math.max(c.l, s.l)
      c.lf = math.max(c.lf, s.lf)
      c.le = maxle(c.le, s.le)
      if dp > 0 then
        -- The cell's reservations time out together, the reserve timeout
        -- after the first of them: never later than any one's own.
        if c.p == 0 then c.lb = s.lb end
        c.p = c.p + dp
      elseif dp < 0 and match[r] then
        c.p = c.p - 1
      end
    end
  end
end

local function packGens(rows)
  local g = 0
  for r = 4, 1, -1 do g = g * GEN_CELL + rows[r].g % GEN_CELL end
  return GEN_SKETCH + g
end

local function matches(rows, gen)
  local m, any = {}, false
  if gen < GEN_SKETCH then return m, false end
  local g = gen - GEN_SKETCH
  for r = 1, 4 do
    m[r] = rows[r].g == g % GEN_CELL and rows[r].p > 0
    any = any or m[r]
    g = math.floor(g / GEN_CELL)
  end
  return m, any
end

-- Loading the states --------------------------------------------------------------

-- mode[i]: 'x' an exact key (existing, or created by this call), 'e' a key
-- that does not exist, read from the sketch's estimate, 's' a reservation
-- held in the sketch, 'k' phase 2 of a failure or reservation that phase 1
-- kept in the sketch.
-- The tables by dimension are the call's, reused by each decision: a
-- decision sets every entry it reads.
local st, orig, raw, exists, ident, gens, out = {}, {}, {}, {}, {}, {}, {}
local raced, hadToken, mode, rows, match = {}, {}, {}, {}, {}
local isSettle, redo
local lockedBefore, applied = {}, {}

-- Rule.Apply ------------------------------------------------------------------------

-- clearOut resets out[i], the outcome of dimension i.
local function clearOut(i)
  local o = out[i]
  if o == nil then
    o = {}
    out[i] = o
  end
  o.started, o.counted, o.busy, o.challenge, o.timedOut = false, false, false, false, 0
end

local rule
do
  -- Rule.challengeDue: some dimension holds CHAT failures (for Begin,
  -- failures and reservations) and the attempt carries no passed challenge.
  local function challengeDue()
    if CHAT <= 0 or CHALLENGED or SPR.B[8] then return false end
    for i = 1, n do
      if SPR.kind[i] == 0 then
        local c = st[i].f
        if op == OP_BEGIN then c = c + st[i].p end
        if c >= CHAT then return true end
      end
    end
    return false
  end

  -- rule applies op to the states loaded (Rule.Apply's cases) and reports
  -- whether the attempt is refused.
  rule = function()
    local refused = false
    if redo and (raced[1] == 1 or mode[1] == 's' or mode[1] == 'k') then
      -- Not Apply: phase 2 of a SpreadSlots attempt whose dimension was
      -- written by another attempt since phase 1, or is held in the sketch.
      -- Take back this attempt's reservation, or its failure unless that
      -- failure started a lock (the sketch cannot take back a failure).
      for i = 1, n do
        SPR.use(SPR.kind[i])
        local s = st[i]
        clearOut(i)
        if mode[i] == 'x' then
          out[i].started, out[i].timedOut = refresh(s, now, GEN_SKETCH)
          out[i].counted = out[i].timedOut > 0
        end
        lockedBefore[i] = lockedAt(s, now)
        applied[i] = false
        if op == OP_BEGIN and s.g == gens[i] and s.p > 0 then
          s.p = s.p - 1
        elseif op == OP_FAIL and mode[i] == 'x' and s.f > 0 and not lockedAt(s, now) then
          s.f = s.f - 1
        end
      end
      refused = true
    else
      -- Refresh every dimension (the sketch's cells were refreshed as read).
      for i = 1, n do
        SPR.use(SPR.kind[i])
        clearOut(i)
        if mode[i] == 'x' then
          out[i].started, out[i].timedOut = refresh(st[i], now, GEN_SKETCH)
          out[i].counted = out[i].timedOut > 0
        end
        applied[i] = false
      end
      local locked = ext == EXT_LOCKED
      for i = 1, n do
        lockedBefore[i] = lockedAt(st[i], now)
        if lockedBefore[i] then locked = true end
        if SPR.kind[i] == KIND_MEMBER and st[i].f > 0 then SPR.fresh = false end
      end
      if op == OP_FAIL or op == OP_BEGIN then
        if locked then
          refused = true
          if EXTEND then
            for i = 1, n do
              SPR.use(SPR.kind[i])
              local s = st[i]
              if SPR.kind[i] == KIND_MEMBER then
                -- nothing: a refused attempt adds no username
              elseif SPR.kind[i] == KIND_SPRAY then
                if lockedAt(s, now) and s.le ~= INDEFINITE then
                  s.le = math.max(s.le, satadd(now, lockdur(math.max(s.l, 1), s.f)))
                end
              else
              count(s, now)
              out[i].counted = true
              if lockedAt(s, now) then
                if s.le ~= INDEFINITE then
                  local d = lockdur(math.max(s.l, 1), s.f)
                  if d == INDEFINITE then s.le = INDEFINITE else s.le = math.max(s.le, satadd(now, d)) end
                end
              elseif not OBS and s.f >= LIMIT then
                startLock(s, now)
                out[i].started = true
              end
              end
            end
          end
        elseif ext == EXT_CHALLENGE or challengeDue() then
          -- Refused, counting and reserving nothing: the client may come back
          -- with a passed challenge.
          refused = true
          for i = 1, n do out[i].challenge = true end
        elseif op == OP_BEGIN then
          if ext == EXT_BUSY then refused = true end
          for i = 1, n do
            SPR.use(SPR.kind[i])
            local s = st[i]
            if not OBS and not SPR.skip(i) and s.f + s.p >= LIMIT and not (s.f >= LIMIT and s.p == 0) then
              out[i].busy = true
              refused = true
            end
          end
          if not refused then
            for i = 1, n do
              if not SPR.skip(i) then
                local s = st[i]
                s.p = math.min(s.p + 1, MAX_FAILURES)
                s.lb = math.max(s.lb, now)
                gens[i] = s.g
                applied[i] = true
              end
            end
          end
        else
          for i = 1, n do
            if not SPR.skip(i) then
              SPR.use(SPR.kind[i])
              local s = st[i]
              count(s, now)
              out[i].counted = true
              applied[i] = true
              if not OBS and s.f >= LIMIT then
                startLock(s, now)
                out[i].started = true
              end
            end
          end
        end
      elseif op == OP_SETTLE_FAIL then
        for i = 1, n do
          SPR.use(SPR.kind[i])
          local s = st[i]
          if s.g == gens[i] and s.p > 0 then
            s.p = s.p - 1
            if not SPR.skip(i) then
              count(s, now)
              out[i].counted = true
              if not OBS and not lockedAt(s, now) and s.f >= LIMIT then
                startLock(s, now)
                out[i].started = true
              end
            end
          end
        end
      elseif op == OP_SETTLE_SUCCESS or op == OP_SUCCESS then
        for i = 1, n do
          SPR.use(SPR.kind[i])
          local s = st[i]
          if op == OP_SETTLE_SUCCESS and s.g == gens[i] and s.p > 0 then s.p = s.p - 1 end
          if ROS and not lockedAt(s, now) then
            s.f, s.l, s.le = 0, 0, 0
          end
        end
      end
    end
    return refused
  end
end

-- Outcome (the end of Rule.Apply), written back --------------------------------------

-- writeKey writes the state s of the decision's dimension i to key, whole
-- (value.lua), with a TTL that covers its horizon: with the attempt's
-- identity when oid is true, the identity oid (D.oid) when it is a table,
-- none when false; the undo token ut and snapshot u; ex0 is the key's
-- expiry before (nil for none), whose unit moves to the new expiry.
local function writeKey(key, i, s, oid, ut, u, ex0)
  local h = horizon(s)
  local ttl = MAXTTL
  if h ~= INDEFINITE then ttl = math.min(MAXTTL, math.max(h - now, 0) + 1000) end
  local ex = snow + ttl
  local idf, nip, nun, nua, ids = 0, 0, 0, 0, ''
  if oid == true then
    local idn = D.idn
    idf, nip, nun, nua = 1, idn[1], idn[2], idn[3]
    ids = sub(D.id, nip + nun + nua)
  elseif oid then
    idf, nip, nun, nua, ids = 1, oid[1], oid[2], oid[3], oid[4]
  end
  local ikn, ukn = dn(i, DIM_IP_KEY), dn(i, DIM_USER_KEY)
  local str = sub(D.ik[i], ikn + ukn)
  local meta = dn(i, DIM_FIELDS) + 256 * ((ikn > 0 and 1 or 0) + (ukn > 0 and 2 or 0) + 4 * idf)
  if idf == 1 or ut ~= '' then
    meta = meta + 2048 * (nip + 64 * (nun + 512 * (nua + 512 * (#ut + 64 * #u))))
    str = str .. ids .. ut .. u
  end
  redis.call('SET', key, struct.pack(D.wfmt, s.lf, s.lb, s.le, ex, s.f + 65536 * (s.p + 65536 * s.l), s.g,
    meta, str), 'PX', int(ttl))
  account(ex0, -1)
  account(ex, 1)
end

-- The reply being built (reused) and the formats of the replies, by their
-- number of values.
local REPLY = {fmt = {}, short = 'F'}

-- REPLY.head sets the reply's instant, refusal and server clock.
function REPLY.head(refused)
  REPLY[1 + REPLY_NOW], REPLY[1 + REPLY_REFUSED], REPLY[1 + REPLY_SERVER] = now, refused and 1 or 0, snow
end

-- REPLY.dim sets dimension i's values in the reply: failures, remaining
-- lock time, generation, whether its reservation timed out, and its
-- flags (flags).
function REPLY.dim(i, failures, remaining, gen, timedOut, fl)
  local r = 1 + REPLY_HEAD + REPLY_DIM*(i-1)
  REPLY[r + REPLY_FAILURES], REPLY[r + REPLY_REMAINING], REPLY[r + REPLY_GEN] = failures, remaining, gen
  REPLY[r + REPLY_TIMED_OUT], REPLY[r + REPLY_FLAGS] = timedOut, fl
end

-- flags returns a dimension's flags as one number, in the order Go reads
-- them (flag* in script.go): bit 0 locked, 1 started, 2 counted, 3 busy,
-- 4 locked before, 5 applied, 6 raced, 7 sketched, 8 challenge.
local function flags(a, b, c, d, e, f, g, h, k)
  return (a and 1 or 0) + (b and 2 or 0) + (c and 4 or 0) + (d and 8 or 0) + (e and 16 or 0) +
    (f and 32 or 0) + (g and 64 or 0) + (h and 128 or 0) + (k and 256 or 0)
end

-- The flags of a failure counted in a key that was not locked and did not
-- lock.
D.counted = flags(false, false, true, false, false, true, false, false, false)
-- What the first failures of new keys of a call share (freshPieces).
D.fresh = {}

local finish
do
  -- put writes the state s of dimension i back to its exact key: deleted
  -- when zero, else whole (value.lua), with the lock's identity, the undo
  -- snapshot and a TTL that covers its horizon, when anything changed.
  -- locked reports whether s is locked now; o is the dimension's outcome.
  local function put(i, s, o, locked)
    local key = KEYS[KEY_DIMS - 1 + KB + i]
    if iszero(s) then
      if exists[i] then
        redis.call('DEL', key)
        account(D.ex[i], -1)
      end
      return
    end
    local setId = locked and (o.started or not ident[i])
    local delId = (not locked) and ident[i]
    local spreadUndo = token ~= '' and applied[i]
    if exists[i] and same(s, orig[i]) and not (setId or delId or spreadUndo) then return end
    -- The identity: the attempt's when a lock starts or has none, the one
    -- kept while the lock lasts, none once it ended.
    local oid = false
    if setId then oid = true elseif ident[i] and not delId then oid = D.oid[i] end
    -- Any write but this attempt's voids the snapshot: an undo must not
    -- restore over it.
    local u = ''
    if spreadUndo then
      local r = raw[i]
      u = struct.pack(SNAP_FMT, r.f, r.p, r.l, r.g, r.lf, r.lb, r.le)
    end
    writeKey(key, i, s, oid, spreadUndo and token or '', u, D.ex[i])
  end

  -- finish writes dimension i's outcome: its state back (put), or into the
  -- sketch, and its values into the reply.
  D.put = put

  finish = function(i)
    SPR.use(SPR.kind[i])
    local s = st[i]
    local o = out[i]
    local locked = lockedAt(s, now)
    local remaining = 0
    if locked then
      if s.le == INDEFINITE then remaining = INDEFINITE else remaining = s.le - now end
    else
      o.started = false
    end
    local sketched = mode[i] == 's'
    local m = mode[i]
    if m == 'e' then
      if (op == OP_FAIL or op == OP_BEGIN) and not same(s, orig[i]) then
        if units() + 1 <= MAXU then
          m = 'x'
        elseif SPR.kind[i] == KIND_MEMBER then
          -- Not kept: the username counts as new again (over-counting).
          m = 'e'
        else
          local dp = 0
          if applied[i] and op == OP_BEGIN then dp = 1 end
          if not rows[i] then rows[i] = readRows(i, true) end
          mergeRows(rows[i], s, dp, nil)
          writeRows(i, rows[i])
          if dp > 0 then gens[i] = packGens(rows[i]) end
          sketched = true
        end
      end
    elseif m == 's' then
      local dp = 0
      if s.p < orig[i].p then dp = -1 end
      mergeRows(rows[i], s, dp, match[i])
      writeRows(i, rows[i])
    end
    if m == 'x' then put(i, s, o, locked) end
    REPLY.dim(i, s.f, remaining, gens[i], o.timedOut, flags(locked, o.started, o.counted, o.busy,
      lockedBefore[i], applied[i], raced[i] == 1, sketched, o.challenge))
  end
end

-- The decisions ------------------------------------------------------------------

-- late reports whether the j-th decision of the call starts past its
-- deadline: the first at the call's start, a later one (which starts after
-- the earlier ones ran) on the clock again.
local clock = {at = nil, slack = 25}
local function late(j)
  if DEADLINE <= 0 then return false end
  if snow > DEADLINE or j == 1 then return snow > DEADLINE end
  -- A later decision reads the clock again only when its deadline is
  -- near the last reading: far longer than a call runs (under 4 ms for
  -- its 32 decisions), clock.slack cannot pass between two readings.
  local at = clock.at or snow
  if DEADLINE - at > clock.slack then return false end
  local t = redis.call('TIME')
  at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  clock.at = at
  return at > DEADLINE
end

-- useRule sets the numbers of the decision's rule R, unless the decision
-- before had the same rule and nothing since changed them (SPR.use, under
-- spray detection).
local function useRule(R)
  if R ~= D.rule or SPR.cur ~= 0 then
    LIMIT, WIN, COOL, FACTOR, MAXC, DECAY = R.limit, R.win, R.cool, R.factor, R.maxc, R.decay
    EXTEND, OBS, ROS, RT, MAXTTL, CHAT = R.extend, R.obs, R.ros, R.rt, R.maxttl, R.chat
    MAXU, W, nt, tiers = R.budget, R.width, R.nt, R.tiers
    D.rule = R
  end
end

-- setArgs sets the rest of the decision's arguments: from R, its rule, c1
-- its challenge flag, lTok the length of its token, and D.arg.
local function setArgs(R, c1, lTok)
  CHALLENGED = c1 == 1
  applied1 = applied1 == 1
  local x = D.arg
  local at = 1 + 8 * NUM_SHAPE
  local f = D.fmt[n]
  if f == nil then
    f = '<' .. string.rep('d', DIM_NUMS * n)
    D.fmt[n] = f
  end
  D.n = {struct.unpack(f, x, at)}
  at = at + 8 * DIM_NUMS * n
  local idn = D.idn
  D.id = at
  at = at + idn[1] + idn[2] + idn[3]
  token = sub(at, lTok)
  at = at + lTok
  local d, ik = D.n, D.ik
  for i = 1, n do
    ik[i] = at + TAIL_LEN
    local b = DIM_NUMS * (i - 1)
    at = at + TAIL_LEN + d[b + DIM_IP_KEY] + d[b + DIM_USER_KEY]
  end
end

-- setSpray sets the spray detection of the decision's rule R (SPR).
local function setSpray(R)
  SPR.fresh = true
  SPR.limit, SPR.win, SPR.cool = R.sprayLimit, R.sprayWin, R.sprayCool
  for i = 1, n do
    local k = dn(i, DIM_KIND)
    if SPR.limit <= 0 or (k ~= KIND_MEMBER and k ~= KIND_SPRAY) then k = 0 end
    SPR.kind[i] = k
  end
  local B = SPR.B
  B[1], B[2], B[3], B[4], B[5], B[6], B[7], B[8], B[9], B[10] =
    LIMIT, WIN, COOL, FACTOR, MAXC, JS, DECAY, OBS, ROS, nt
  SPR.cur = 0
end

-- F holds fast's tables by dimension: the states (s), as read (o), whether
-- the key exists (x), whether it was locked before (l), a new key's
-- generation (g), and the outcome put reads (out).
-- F.v holds the keys' values when F.read (fresh read them); F.nx reports
-- that SET takes NX and GET together: in the function library (Redis 7),
-- not by EVALSHA (the fallback for Redis before 7.0).
local F = {s = {}, o = {}, x = {}, l = {}, g = {}, out = {}, v = {}, read = false, nx = false}

-- load reads the states of the decision's dimensions.
local function load()
  isSettle = op == OP_SETTLE_FAIL or op == OP_SETTLE_SUCCESS
  redo = phase == PHASE_REDO and applied1
  for i = 1, n do
    SPR.use(SPR.kind[i])
    local key = KEYS[KEY_DIMS - 1 + KB + i]
    gens[i] = dn(i, DIM_GEN)
    orig[i], rows[i], match[i] = nil, nil, nil
    local v = F.v[i]
    if not F.read then v = redis.call('GET', key) end
    local ut, u = '', ''
    if v then
      local lf, lb, le, ex, fpl, g, meta = struct.unpack(VAL_FMT, v)
      local f = fpl % 65536
      local p = (fpl - f) / 65536 % 65536
      local l = (fpl - f - 65536 * p) / 4294967296
      local id, nik, nuk, nip, nun, nua, nut, nu = 0, 0, 0, 0, 0, 0, 0, 0
      if meta >= META_PLAIN then
        local _
        _, nik, nuk, id, nip, nun, nua, nut, nu = valueMeta(meta)
      end
      -- (An expiry of 0: none known, as for a key that has no TTL.)
      if ex <= 0 then ex = nil end
      exists[i], ident[i], hadToken[i], D.ex[i] = true, id == 1, nut > 0, ex
      raw[i] = {f = f, p = p, l = l, g = g, lf = lf, lb = lb, le = le}
      local at = VAL_LEN + 1 + nik + nuk
      if id == 1 then D.oid[i] = {nip, nun, nua, string.sub(v, at, at + nip + nun + nua - 1)} end
      if nut > 0 then
        at = at + nip + nun + nua
        ut, u = string.sub(v, at, at + nut - 1), string.sub(v, at + nut, at + nut + nu - 1)
      end
    else
      exists[i], ident[i], hadToken[i], D.ex[i] = false, false, false, nil
      raw[i] = ZERO
    end
    raced[i] = 0
    if gens[i] >= GEN_SKETCH and (isSettle or redo) then
      -- A reservation held in the sketch: settle it there.
      mode[i] = 's'
      if sketchOn == nil then sketchOn = redis.call('EXISTS', SK) == 1 end
      rows[i] = readRows(i)
      st[i] = estimate(rows[i])
      local any
      match[i], any = matches(rows[i], gens[i])
      if any then
        st[i].g = gens[i]
        st[i].p = math.max(st[i].p, 1)
      else
        st[i].g = -1
      end
    elseif exists[i] then
      mode[i] = 'x'
      if redo then
        if ut == token and u ~= '' then
          local f, p, l, g, lf, lb, le = struct.unpack(SNAP_FMT, u)
          st[i] = {f = f, p = p, l = l, g = g, lf = lf, lb = lb, le = le}
        else
          raced[i] = 1
          st[i] = copy(raw[i])
        end
      else
        st[i] = copy(raw[i])
      end
      orig[i] = copy(raw[i])
    else
      if SPR.kind[i] == KIND_MEMBER then
        -- A spray member is not read from the sketch: one it holds by
        -- mistake would hide a new username.
        rows[i] = nil
        st[i] = {f = 0, p = 0, l = 0, g = 0, lf = 0, lb = 0, le = 0}
      else
        if sketchOn == nil then sketchOn = redis.call('EXISTS', SK) == 1 end
        if sketchOn then
          rows[i] = readRows(i)
          st[i] = estimate(rows[i])
        else
          -- An empty sketch estimates an empty state; its cells are made
          -- only if the state goes there.
          rows[i] = false
          st[i] = {f = 0, p = 0, l = 0, g = 0, lf = 0, lb = 0, le = 0}
        end
      end
      if redo then
        -- Phase 1 counted in the sketch, which cannot give a count back.
        mode[i] = 'k'
      else
        mode[i] = 'e'
        if op >= OP_SETTLE_FAIL then
          -- No reservation of a key that does not exist can be settled.
          st[i].g = -1
        else
          -- A new key starts at a generation drawn from the clock (as the
          -- memory store's start at a random one), so that a settle that
          -- arrives after its key was forgotten and made anew almost never
          -- matches a new reservation.
          st[i].g = (TM_US + 61 * i + AB) % 256 -- below 256: GEN_START in the tests
        end
      end
    end
    if orig[i] == nil then orig[i] = copy(st[i]) end
  end
end

-- The call's rules, by their position in ARGV (RULES[k]), and the rules
-- seen in this and earlier calls, by their packed bytes (RULES.seen, at
-- most 64 of them, nseen).
local RULES = {seen = {}, nseen = 0}

-- packReply returns the decision's reply, packed.
local function packReply()
  local m = REPLY_HEAD + REPLY_DIM * n
  local f = REPLY.fmt[m]
  if f == nil then
    f = '<' .. string.rep('d', m)
    REPLY.fmt[m] = f
  end
  return struct.pack(f, unpack(REPLY, 1, m))
end

-- fast is Rule.Apply and its outcome for a failure or a success in the
-- common case, as the general path (load, rule, finish) computes them,
-- with less work: the rule has no spray detection and no challenge, the
-- attempt no token, every key exists without reservations or is new with
-- an empty sketch (and, for a failure, room for it in the budget), and a
-- refused failure does not extend its lock. It returns the reply, or nil,
-- having written nothing, when the decision is not such a case.
local fast, fresh
do
  -- freshPieces returns D.fresh with the pieces of a new key's first failure
  -- at now under a rule of window win and MaxTTL maxttl, packed again when
  -- they change: the value's first numbers (mid: LastFail = now, LastBegin
  -- and LockEnd 0, the expiry; the dimension's tail follows them), the TTL,
  -- the footprint minute and the short reply (made when first needed).
  local function freshPieces(win, maxttl)
    local fr = D.fresh
    if fr.now ~= now or fr.win ~= win or fr.max ~= maxttl or fr.snow ~= snow or fr.G ~= G then
      local ttl = math.min(maxttl, math.max(satadd(now, win) - now, 0) + 1000)
      fr.now, fr.win, fr.max, fr.snow, fr.G, fr.ttl = now, win, maxttl, snow, G, int(ttl)
      fr.short = nil
      fr.mid = struct.pack('<dddd', now, 0, 0, snow + ttl)
      fr.min = math.ceil((snow + ttl) / G)
    end
    return fr
  end

  -- freshDone counts the footprint units of k new keys written with the
  -- pieces of fr (account(ex, 1) for each), and returns the short reply
  -- (REPLY.short, then the instant and the server's clock): every
  -- dimension counted its first failure, and is not locked; Go keeps the
  -- generations it sent.
  local function freshDone(fr, k)
    local pend = bud.pend
    pend[fr.min] = (pend[fr.min] or 0) + k
    pend.n = pend.n + k
    if bud.count ~= nil then bud.count = bud.count + k end
    if fr.short == nil then fr.short = REPLY.short .. struct.pack('<dd', now, snow) end
    return fr.short
  end

  fast = function()
    local locked, added = false, 0
    for i = 1, n do
      local s, o = F.s[i], F.o[i]
      if s == nil then
        s, o = {}, {}
        F.s[i], F.o[i] = s, o
      end
      local v = F.v[i]
      if not F.read then v = redis.call('GET', KEYS[KEY_DIMS - 1 + KB + i]) end
      if v then
        local lf, lb, le, ex, fpl, g, meta = struct.unpack(VAL_FMT, v)
        if fpl % 4294967296 >= 65536 then return nil end -- reservations
        local f = fpl % 65536
        local p, l = 0, (fpl - f) / 4294967296
        local id, nik, nuk, nip, nun, nua = 0, 0, 0, 0, 0, 0
        if meta >= META_PLAIN then
          local _
          _, nik, nuk, id, nip, nun, nua = valueMeta(meta)
        end
        s.f, s.p, s.l, s.g, s.lf, s.lb, s.le = f, p, l, g, lf, lb, le
        o.f, o.p, o.l, o.g, o.lf, o.lb, o.le = f, p, l, g, lf, lb, le
        if ex <= 0 then ex = nil end
        D.ex[i], F.x[i] = ex, true
        if id == 1 then
          local at = VAL_LEN + 1 + nik + nuk
          D.oid[i] = {nip, nun, nua, string.sub(v, at, at + nip + nun + nua - 1)}
        else
          D.oid[i] = false
        end
        refresh(s, now, GEN_SKETCH) -- (no reservation to time out)
      else
        if sketchOn == nil then sketchOn = redis.call('EXISTS', SK) == 1 end
        if sketchOn then return nil end
        -- As load: a new key's generation is drawn from the clock. (Its
        -- state, zero but for the generation, is set where it is needed.)
        D.ex[i], D.oid[i], F.x[i], F.l[i] = nil, false, false, false
        F.g[i] = (TM_US + 61 * i + AB) % 256
        added = added + 1
      end
      if F.x[i] then
        F.l[i] = lockedAt(s, now)
        if F.l[i] then locked = true end
      end
    end
    local fail = op == OP_FAIL
    if not fail then
      -- A success is never refused, and creates no key.
      locked = false
    elseif locked then
      if EXTEND then return nil end
    elseif added > 0 and units() + added > MAXU then
      return nil
    end
    REPLY.head(locked)
    local fresh = fail and not locked and (OBS or LIMIT > 1)
    -- Whether every dimension is a new key's first failure (the short reply).
    local short = fresh and n > 0
    -- The first failure of a new key, which starts no lock (count, the
    -- horizon, put and the reply), written out for the commonest case: its
    -- value is LastFail = now, LastBegin and LockEnd 0 and the expiry (the
    -- same for every such key of a call, freshPieces), then the dimension's
    -- tail as Go sent it (1 failure, a generation, the meta number, the
    -- field digests). Its footprint unit is counted after the loop.
    local fr, written = D.fresh, 0
    if fresh then fr = freshPieces(WIN, MAXTTL) end
    local d = D.n
    for i = 1, n do
      local s = F.s[i]
      local started = false
      if fresh and not F.x[i] then
        -- Its value: the pieces of fr, then the dimension's tail (its
        -- generation drawn by Go). (GET: nil, the key being new, costs less
        -- than OK, a table.)
        local b = DIM_NUMS * (i - 1)
        local v = fr.mid .. sub(D.ik[i] - TAIL_LEN, TAIL_LEN + d[b + DIM_IP_KEY] + d[b + DIM_USER_KEY])
        redis.call('SET', KEYS[KEY_DIMS - 1 + KB + i], v, 'PX', fr.ttl, 'GET')
        written = written + 1 -- (its reply is filled after the loop, when needed)
      else
      short = false
      if not F.x[i] then
        local g, o = F.g[i], F.o[i]
        s.f, s.p, s.l, s.g, s.lf, s.lb, s.le = 0, 0, 0, g, 0, 0, 0
        o.f, o.p, o.l, o.g, o.lf, o.lb, o.le = 0, 0, 0, g, 0, 0, 0
      end
      if not fail then
        if ROS and not lockedAt(s, now) then s.f, s.l, s.le = 0, 0, 0 end
      elseif not locked then
        count(s, now)
        if not OBS and s.f >= LIMIT then
          startLock(s, now)
          started = true
        end
      end
      local lk = lockedAt(s, now)
      local remaining = 0
      if lk then
        if s.le == INDEFINITE then remaining = INDEFINITE else remaining = s.le - now end
      else
        started = false
      end
      -- put, as finish calls it: for a key that exists, or a new one that
      -- changed.
      if F.x[i] or not same(s, F.o[i]) then
        exists[i], orig[i], ident[i], F.out.started = F.x[i], F.o[i], D.oid[i] ~= false, started
        D.put(i, s, F.out, lk)
      end
      local counted = fail and not locked
      REPLY.dim(i, s.f, remaining, dn(i, DIM_GEN), 0, flags(lk, started, counted, false, F.l[i], counted, false, false, false))
      end
    end
    if written > 0 then
      local r = freshDone(fr, written)
      if short then return r end
    end
    for i = 1, n do
      if fresh and not F.x[i] then REPLY.dim(i, 1, 0, d[DIM_NUMS * (i - 1) + DIM_GEN], 0, D.counted) end
    end
    return packReply()
  end

  -- fresh is fast for its commonest case, a failure whose every dimension
  -- is a new key (the first failure of a new client): if the rule does not
  -- lock at one failure, the sketch is empty, the budget has room and every
  -- key is new, it writes each key's first failure as fast does and
  -- returns the short reply. Otherwise it returns nil with every key as it
  -- was, and leaves their values in F.v for fast or load (F.read). It needs
  -- the decision's numbers, not setArgs: the rule R, op, now and the
  -- dimensions' tails.
  --
  -- It reads no key it writes: SET … NX GET writes a new key and answers
  -- nil, or answers the value of a key that exists and leaves it. The first
  -- key (the IP's, under the usual policies: the one most often known) is
  -- read first unless an earlier decision of the call already checked the
  -- sketch and the budget; a key that turns out to exist after others of
  -- the decision were written has them deleted again (they were new).
  -- Without SET … NX GET (F.nx) every key is read first.
  fresh = function(R)
    if n == 0 then return nil end
    local base, vs = KEY_DIMS - 1 + KB, F.v
    F.read = true
    -- (A shape below 0: too many dimensions to write from it.)
    local can = op == OP_FAIL and (R.obs or R.limit > 1) and D.shape >= 0
    local from = 1 -- the first key not read
    if not (can and F.nx and sketchOn == false and bud.count ~= nil) then
      vs[1], from = redis.call('GET', KEYS[base + 1]), 2
      can = can and not vs[1]
      if can and sketchOn == nil then sketchOn = redis.call('EXISTS', SK) == 1 end
      can = can and not sketchOn
    end
    can = can and units() + n <= R.budget
    if can and not F.nx then
      for i = from, n do
        vs[i] = redis.call('GET', KEYS[base + i])
        if vs[i] then can = false end
      end
      from = n + 1
    end
    if not can then
      for i = from, n do vs[i] = redis.call('GET', KEYS[base + i]) end
      return nil
    end
    local fr, x, idn, shape = freshPieces(R.win, R.maxttl), D.arg, D.idn, D.shape
    local mid, ttl = fr.mid, fr.ttl
    local at = 1 + 8 * (NUM_SHAPE + DIM_NUMS * n) + idn[1] + idn[2] + idn[3]
    local at1, e1
    for i = 1, n do
      -- The value: the pieces of fr, then the dimension's tail, of
      -- TAIL_LEN bytes and 0, 1 or 2 field digests (the shape's digit).
      local k = shape % 4
      shape = (shape - k) / 4
      local e = at + TAIL_LEN + 16 * k
      if i >= from then
        local v = redis.call('SET', KEYS[base + i], mid .. string.sub(x, at, e - 1), 'NX', 'PX', ttl, 'GET')
        if v then
          -- The key exists: delete the keys written before it, read the rest.
          vs[i] = v
          for j = from, i - 1 do
            redis.call('DEL', KEYS[base + j])
            vs[j] = false
          end
          for j = i + 1, n do vs[j] = redis.call('GET', KEYS[base + j]) end
          return nil
        end
      elseif from > n then
        -- Every key read and new. (GET: nil costs less than OK, a table.)
        redis.call('SET', KEYS[base + i], mid .. string.sub(x, at, e - 1), 'PX', ttl, 'GET')
      else
        at1, e1 = at, e
      end
      at = e
    end
    if at1 then
      -- The first key, read and new, once the others were.
      redis.call('SET', KEYS[base + 1], mid .. string.sub(x, at1, e1 - 1), 'PX', ttl, 'GET')
    end
    return freshDone(fr, n)
  end
end

-- decide runs the j-th decision of the call, whose argument is at AB and
-- whose keys follow the KB keys of the decisions before it, and returns its
-- reply: one Rule.Apply, in the order of the call, answered by its own
-- reply (or its own AXESLATE error); the call is one script, so each
-- decision is atomic as alone. (A function of its own: the script's main
-- function is near Lua's limits of 200 locals and 60 upvalues.)
local function decide(j)
  -- Arguments of the decision.
  local x = ARGV[AB]
  D.arg = x
  local ri, c1, lTok
  local idn = D.idn
  ri, op, now, JS, phase, ext, applied1, DEADLINE, c1, idn[1], idn[2], idn[3], lTok, n, D.shape =
    struct.unpack(NUMS_FMT, x)
  local R = RULES[ri]
  G = R.grain
  if late(j) then
    return redis.error_reply('AXESLATE the caller has given up on this call')
  end
  if now < 0 then now = snow end
  useRule(R)
  F.read = false
  local quick = R.fast and (op == OP_FAIL or op == OP_SUCCESS) and phase == PHASE_APPLY and lTok == 0
  if quick then
    local r = fresh(R)
    if r then return r end
  end
  setArgs(R, c1, lTok)
  if quick then
    local r = fast()
    if r then return r end
  end
  setSpray(R)
  load()

  -- Rule.Apply.
  local refused = rule()

  -- The outcome.
  REPLY.head(refused)
  for i = 1, n do finish(i) end
  return packReply()
end

-- run is the call: every decision in order, and the footprint count
-- written once; library is true in the function library.
local function run(keys, args, library)
  begin(keys, args)
  SK, TM_US = KEYS[KEY_SKETCH], bud.us
  F.nx = library == true
  sketchOn, sketchTouched = nil, false
  AB, KB, clock.at, D.rule, SPR.cur = 0, 0, nil, nil, 0
  D.fresh.now, D.fresh.short = nil, nil
  local replies = {}
  local nr = tonumber(ARGV[ARG_RULES])
  for k = 1, nr do
    -- A rule is unpacked once: the library keeps the tables of the last
    -- 64 rules it saw (by their packed bytes) across calls.
    local x = ARGV[ARG_RULES + k]
    local r = RULES.seen[x]
    if r == nil then
      r = unpackRule(x)
      if RULES.nseen >= 64 then RULES.seen, RULES.nseen = {}, 0 end
      RULES.seen[x], RULES.nseen = r, RULES.nseen + 1
    end
    RULES[k] = r
  end
  for j = 1, #ARGV - ARG_RULES - nr do
    AB = ARG_RULES + nr + j
    replies[j] = decide(j)
    KB = KB + n
  end
  if sketchTouched then redis.call('PEXPIRE', SK, MAXTTL) end
  budgetDone(MAXTTL)
  return replies
end
