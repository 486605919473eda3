package redisstore

import "github.com/redis/go-redis/v9"

// applyScript is axes.Rule.Apply, with Rule.Refresh and Rule.LockDuration,
// transcribed to Lua. It applies one operation to the dimension keys of
// one attempt (all of them in the default one-slot layout, one at a time
// under SpreadSlots) and writes each changed state back with a TTL that
// covers everything the state must still remember.
//
// Times are milliseconds on one timeline (the server's TIME, or the
// limiter's clock under UseRequestTime); -1 stands for Indefinite, both as
// a duration and as a lock end.
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
// top bit set and the 4 cells' generations in its low 28 bits; exact
// generations wrap at 2^31.
//
// Deadline. ARGV[23] is the last instant (server TIME, milliseconds) at
// which the caller still waits for the reply; a script that starts later
// does nothing and fails, so a call the store gave up on never takes
// effect when a stalled server wakes.
//
// KEYS: the budget hash, the budget minutes, the sketch, then the n
// dimension keys, then the index sets they join.
//
// ARGV (1-based):
//
//	1 op            2 now (-1: TIME) 3 limit       4 window
//	5 cooloff       6 factor         7 max cooloff 8 jitter scale
//	9 decay        10 extend        11 observe    12 reset on success
//	13 reserve timeout              14 max TTL    15 dimension count n
//	16 identity IP 17 username      18 user agent
//	19 phase (1: apply; 2: redo a spread attempt refused elsewhere)
//	20 undo token (spread mode; "" for none)
//	21 refused elsewhere (0 no, 1 locked, 2 busy)
//	22 applied in phase 1 (phase 2 only)
//	23 deadline (server ms; 0: none)
//	24 budget (units: keys and index set members)
//	25 sketch width (cells per row)
//	26 budget granularity (ms)
//	27 tier count t, then t pairs (failures, cooloff)
//	then per dimension 10 values: gen, fields, IP index key position (0:
//	none), username index key position, IP field digest, username field
//	digest (the last two stored for resets under SpreadSlots; "" if none),
//	and the dimension's sketch column in each of the 4 rows
//
// The reply is a flat array: now, refused, the server's TIME, then per
// dimension failures, locked, started, counted, busy, remaining, gen,
// locked before the operation, applied (counted or reserved by this call),
// raced (phase 2 found the dimension written since phase 1), sketched (the
// dimension was read from and written to the sketch).
const applySrc = `
local G = tonumber(ARGV[26])
` + budgetLua + `
local MAXF = 4503599627370495
local MAXFAIL = 65535
local T48 = 281474976710655
local GENFLAG = 2147483648
local DEADLINE = tonumber(ARGV[23])
if DEADLINE > 0 and snow > DEADLINE then
  return redis.error_reply('AXESLATE the caller has given up on this call')
end
local op = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
if now < 0 then now = snow end
local LIMIT = tonumber(ARGV[3])
local WIN = tonumber(ARGV[4])
local COOL = tonumber(ARGV[5])
local FACTOR = tonumber(ARGV[6])
local MAXC = tonumber(ARGV[7])
local JS = tonumber(ARGV[8])
local DECAY = tonumber(ARGV[9])
local EXTEND = ARGV[10] == '1'
local OBS = ARGV[11] == '1'
local ROS = ARGV[12] == '1'
local RT = tonumber(ARGV[13])
local MAXTTL = tonumber(ARGV[14])
local n = tonumber(ARGV[15])
local idIP, idUser, idUA = ARGV[16], ARGV[17], ARGV[18]
local phase = tonumber(ARGV[19])
local token = ARGV[20]
local ext = tonumber(ARGV[21])
local applied1 = ARGV[22] == '1'
local MAXU = tonumber(ARGV[24])
local W = tonumber(ARGV[25])
local nt = tonumber(ARGV[27])
local tiers = {}
for i = 1, nt do
  tiers[i] = {tonumber(ARGV[27 + 2*i - 1]), tonumber(ARGV[27 + 2*i])}
end
local base = 28 + 2*nt
local SK = KEYS[3]
local function satadd(t, d)
  if d < 0 or d >= MAXF or t > MAXF - d then return MAXF end
  return t + d
end

local function lockedAt(s, t)
  return s.le == -1 or (s.le ~= 0 and t < s.le)
end

local function scale(d)
  if JS == 0 or JS == 1 or d == -1 then return d end
  local f = d * JS
  if f >= MAXF then return MAXF end
  if f < 1000 then return 1000 end
  return math.floor(f)
end

local function lockdur(level, failures)
  if nt > 0 then
    local d = tiers[1][2]
    for i = 1, nt do
      if failures >= tiers[i][1] then d = tiers[i][2] end
    end
    return d
  end
  local d = COOL
  if d == -1 or FACTOR <= 1 or level <= 1 then return scale(d) end
  local f = d * (FACTOR ^ (level - 1))
  if MAXC > 0 and f > MAXC then return scale(MAXC) end
  if f >= MAXF then return MAXF end
  return scale(math.floor(f))
end

local function startLock(s, at)
  s.l = math.min(s.l + 1, 255)
  local d = lockdur(s.l, s.f)
  if d == -1 then s.le = -1 else s.le = satadd(at, d) end
end

local function refresh(s, t, gm)
  local started = false
  if s.p > 0 and RT > 0 and t >= satadd(s.lb, RT) then
    local at = satadd(s.lb, RT)
    if s.f > 0 and at >= satadd(s.lf, WIN) then s.f = 0 end
    s.f = math.min(s.f + s.p, MAXFAIL)
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
  if s.le ~= 0 and s.le ~= -1 and s.l == 0 and t >= s.le then s.le = 0 end
  return started
end

local function count(s, t)
  s.f = math.min(s.f + 1, MAXFAIL)
  s.lf = math.max(s.lf, t)
end

local FIELDS = {'f', 'p', 'l', 'g', 'lf', 'lb', 'le'}

local function parse(v)
  return {f = tonumber(v[1]) or 0, p = tonumber(v[2]) or 0, l = tonumber(v[3]) or 0,
    g = tonumber(v[4]) or 0, lf = tonumber(v[5]) or 0, lb = tonumber(v[6]) or 0,
    le = tonumber(v[7]) or 0}
end

local function same(a, b)
  for _, k in ipairs(FIELDS) do
    if a[k] ~= b[k] then return false end
  end
  return true
end

local function iszero(s)
  return s.f == 0 and s.p == 0 and s.l == 0 and s.le == 0
end

local function snapshot(s)
  return string.format('%d,%d,%d,%d,%d,%d,%d', s.f, s.p, s.l, s.g, s.lf, s.lb, s.le)
end

-- horizon returns the instant until which s must be remembered, or -1.
local function horizon(s)
  local h = 0
  if s.f > 0 then h = math.max(h, satadd(s.lf, WIN)) end
  if s.p > 0 then
    local at = satadd(s.lb, RT)
    local f = s.f
    if f > 0 and at >= satadd(s.lf, WIN) then f = 0 end
    f = math.min(f + s.p, MAXFAIL)
    h = math.max(h, satadd(at, WIN))
    if not OBS and f >= LIMIT then
      local d = lockdur(math.min(s.l + 1, 255), f)
      if d == -1 then return -1 end
      h = math.max(h, satadd(satadd(at, d), DECAY))
    end
  end
  if s.le == -1 then return -1 end
  if s.le ~= 0 then
    if s.l > 0 then h = math.max(h, satadd(s.le, DECAY)) else h = math.max(h, s.le) end
  end
  return h
end


-- The sketch: 4 rows of W cells of 192 bits.
local CELL = {{'u16', 0, 'f'}, {'u16', 16, 'p'}, {'u8', 32, 'l'}, {'u7', 40, 'g'},
  {'u48', 48, 'lf'}, {'u48', 96, 'lb'}, {'u48', 144, 'le'}}
local sketchOn = nil
local sketchTouched = false

local function cellOff(r, p)
  return ((r - 1) * W + tonumber(ARGV[p + 5 + r])) * 192
end

-- readRows returns the 4 cells of the dimension whose arguments start at
-- p, refreshed at now.
local function readRows(p)
  if sketchOn == nil then sketchOn = redis.call('EXISTS', SK) == 1 end
  local rows = {}
  local v = nil
  if sketchOn then
    local args = {'BITFIELD_RO', SK}
    for r = 1, 4 do
      local o = cellOff(r, p)
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
      if c.le == T48 then c.le = -1 end
    end
    refresh(c, now, 128)
    rows[r] = c
  end
  return rows
end

local function writeRows(p, rows)
  local args = {'BITFIELD', SK}
  for r = 1, 4 do
    local c = rows[r]
    local o = cellOff(r, p)
    local le = c.le
    if le == -1 or le >= T48 then le = T48 end
    local vals = {f = math.min(c.f, MAXFAIL), p = math.min(c.p, MAXFAIL), l = c.l, g = c.g % 128,
      lf = math.min(c.lf, T48 - 1), lb = math.min(c.lb, T48 - 1), le = le}
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

-- estimate is the state a key reads from its cells: the minimum of each
-- field (a lock end of -1 counting as the latest).
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
    if e.le == -1 then e.le = c.le elseif c.le ~= -1 then e.le = math.min(e.le, c.le) end
  end
  return e
end

local function maxle(a, b)
  if a == -1 or b == -1 then return -1 end
  return math.max(a, b)
end

-- mergeRows raises every cell to the new state s (conservative update)
-- and adds dp reservations to every cell, or, with dp < 0, takes one back
-- from the cells in match.
local function mergeRows(rows, s, dp, match)
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

local function packGens(rows)
  local g = 0
  for r = 4, 1, -1 do g = g * 128 + rows[r].g % 128 end
  return GENFLAG + g
end

local function matches(rows, gen)
  local m, any = {}, false
  if gen < GENFLAG then return m, false end
  local g = gen - GENFLAG
  for r = 1, 4 do
    m[r] = rows[r].g == g % 128 and rows[r].p > 0
    any = any or m[r]
    g = math.floor(g / 128)
  end
  return m, any
end

local function copy(s)
  return {f = s.f, p = s.p, l = s.l, g = s.g, lf = s.lf, lb = s.lb, le = s.le}
end

local st, orig, raw, exists, ident, gens, out = {}, {}, {}, {}, {}, {}, {}
local raced, hadToken, mode, rows, match = {}, {}, {}, {}, {}
for i = 1, n do
  local key = KEYS[3 + i]
  local p = base + 10*(i-1)
  gens[i] = tonumber(ARGV[p]) or 0
  local v = redis.call('HMGET', key, 'f', 'p', 'l', 'g', 'lf', 'lb', 'le', 'id', 'ut', 'u')
  exists[i] = v[1] ~= false or v[2] ~= false or v[3] ~= false or v[7] ~= false
  ident[i] = v[8] == '1'
  hadToken[i] = v[9] ~= false
  raw[i] = parse(v)
  raced[i] = 0
  local sketchGen = gens[i] >= GENFLAG and (op == 3 or op == 4 or (phase == 2 and applied1))
  if sketchGen then
    -- A reservation held in the sketch: settle it there.
    mode[i] = 's'
    rows[i] = readRows(p)
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
    if phase == 2 and applied1 then
      if v[9] == token and v[10] then
        local u = {}
        for x in string.gmatch(v[10], '[^,]+') do u[#u + 1] = x end
        st[i] = parse(u)
      else
        raced[i] = 1
        st[i] = parse(v)
      end
    else
      st[i] = parse(v)
    end
    orig[i] = parse(v)
  else
    rows[i] = readRows(p)
    st[i] = estimate(rows[i])
    if phase == 2 and applied1 then
      -- Phase 1 counted in the sketch, which cannot give a count back.
      mode[i] = 'k'
    else
      mode[i] = 'e'
      if op >= 3 then st[i].g = -1 end
    end
  end
  if orig[i] == nil then orig[i] = copy(st[i]) end
end

local refused = false
local lockedBefore, applied = {}, {}
if phase == 2 and applied1 and (raced[1] == 1 or mode[1] == 's' or mode[1] == 'k') then
  -- Written by another attempt since phase 1, or held in the sketch:
  -- take back this attempt's reservation, or its failure unless that
  -- failure started a lock (the sketch cannot take back a failure).
  for i = 1, n do
    local s = st[i]
    out[i] = {started = false, counted = false, busy = false}
    if mode[i] == 'x' then out[i].started = refresh(s, now, 2147483648) end
    lockedBefore[i] = lockedAt(s, now)
    applied[i] = false
    if op == 2 and s.g == gens[i] and s.p > 0 then
      s.p = s.p - 1
    elseif op == 1 and mode[i] == 'x' and s.f > 0 and not lockedAt(s, now) then
      s.f = s.f - 1
    end
  end
  refused = true
else
  for i = 1, n do
    out[i] = {started = mode[i] == 'x' and refresh(st[i], now, 2147483648), counted = false, busy = false}
    applied[i] = false
  end
  local locked = ext == 1
  for i = 1, n do
    lockedBefore[i] = lockedAt(st[i], now)
    if lockedBefore[i] then locked = true end
  end
  if op == 1 or op == 2 then
    if locked then
      refused = true
      if EXTEND then
        for i = 1, n do
          local s = st[i]
          count(s, now)
          out[i].counted = true
          if lockedAt(s, now) then
            if s.le ~= -1 then
              local d = lockdur(math.max(s.l, 1), s.f)
              if d == -1 then s.le = -1 else s.le = math.max(s.le, satadd(now, d)) end
            end
          elseif not OBS and s.f >= LIMIT then
            startLock(s, now)
            out[i].started = true
          end
        end
      end
    elseif op == 2 then
      if ext == 2 then refused = true end
      for i = 1, n do
        local s = st[i]
        if not OBS and s.f + s.p >= LIMIT and not (s.f >= LIMIT and s.p == 0) then
          out[i].busy = true
          refused = true
        end
      end
      if not refused then
        for i = 1, n do
          local s = st[i]
          s.p = math.min(s.p + 1, MAXFAIL)
          s.lb = math.max(s.lb, now)
          gens[i] = s.g
          applied[i] = true
        end
      end
    else
      for i = 1, n do
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
  elseif op == 3 then
    for i = 1, n do
      local s = st[i]
      if s.g == gens[i] and s.p > 0 then
        s.p = s.p - 1
        count(s, now)
        out[i].counted = true
        if not OBS and not lockedAt(s, now) and s.f >= LIMIT then
          startLock(s, now)
          out[i].started = true
        end
      end
    end
  elseif op == 4 or op == 5 then
    for i = 1, n do
      local s = st[i]
      if op == 4 and s.g == gens[i] and s.p > 0 then s.p = s.p - 1 end
      if ROS and not lockedAt(s, now) then
        s.f, s.l, s.le = 0, 0, 0
      end
    end
  end
end

local reply = {now, refused and 1 or 0, snow}
for i = 1, n do
  local s = st[i]
  local o = out[i]
  local p = base + 10*(i-1)
  local fields = tonumber(ARGV[p + 1])
  local locked = lockedAt(s, now)
  local remaining = 0
  if locked then
    if s.le == -1 then remaining = -1 else remaining = s.le - now end
  else
    o.started = false
  end
  local key = KEYS[3 + i]
  local sketched = mode[i] == 's'
  local m = mode[i]
  if m == 'e' then
    if (op == 1 or op == 2) and not same(s, orig[i]) then
      local need = 1
      if tonumber(ARGV[p + 2]) > 0 then need = need + 2 end
      if tonumber(ARGV[p + 3]) > 0 then need = need + 2 end
      if units() + need <= MAXU then
        m = 'x'
      else
        local dp = 0
        if applied[i] and op == 2 then dp = 1 end
        mergeRows(rows[i], s, dp, nil)
        writeRows(p, rows[i])
        if dp > 0 then gens[i] = packGens(rows[i]) end
        sketched = true
      end
    end
  elseif m == 's' then
    local dp = 0
    if s.p < orig[i].p then dp = -1 end
    mergeRows(rows[i], s, dp, match[i])
    writeRows(p, rows[i])
  end
  if m == 'x' and iszero(s) then
    if exists[i] then
      local e0 = expiry(key)
      redis.call('DEL', key)
      account(e0, -1)
    end
  elseif m == 'x' then
    local setId = locked and (o.started or not ident[i])
    local delId = (not locked) and ident[i]
    local spreadUndo = token ~= '' and applied[i]
    if exists[i] == false or not same(s, orig[i]) or setId or delId or spreadUndo then
      local e0 = nil
      if exists[i] then e0 = expiry(key) end
      redis.call('HSET', key, 'f', s.f, 'p', s.p, 'l', s.l, 'g', s.g,
        'lf', s.lf, 'lb', s.lb, 'le', s.le, 'fd', fields)
      if ARGV[p + 4] ~= '' then redis.call('HSET', key, 'ik', ARGV[p + 4]) end
      if ARGV[p + 5] ~= '' then redis.call('HSET', key, 'uk', ARGV[p + 5]) end
      if spreadUndo then
        redis.call('HSET', key, 'ut', token, 'u', snapshot(raw[i]))
      elseif hadToken[i] then
        -- Any other write voids the snapshot: an undo must not restore
        -- over it.
        redis.call('HDEL', key, 'ut', 'u')
      end
      if setId then
        redis.call('HSET', key, 'id', '1', 'ip', idIP, 'un', idUser, 'ua', idUA)
      elseif delId then
        redis.call('HDEL', key, 'id', 'ip', 'un', 'ua')
      end
      local h = horizon(s)
      local ttl = MAXTTL
      if h ~= -1 then ttl = math.min(MAXTTL, math.max(h - now, 0) + 1000) end
      redis.call('PEXPIRE', key, ttl)
      account(e0, -1)
      account(snow + ttl, 1)
      for _, q in ipairs({tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3])}) do
        if q > 0 then index(KEYS[q], key, ttl) end
      end
    end
  end
  reply[#reply + 1] = s.f
  reply[#reply + 1] = locked and 1 or 0
  reply[#reply + 1] = o.started and 1 or 0
  reply[#reply + 1] = o.counted and 1 or 0
  reply[#reply + 1] = o.busy and 1 or 0
  reply[#reply + 1] = remaining
  reply[#reply + 1] = gens[i]
  reply[#reply + 1] = lockedBefore[i] and 1 or 0
  reply[#reply + 1] = applied[i] and 1 or 0
  reply[#reply + 1] = raced[i]
  reply[#reply + 1] = sketched and 1 or 0
end
if sketchTouched then redis.call('PEXPIRE', SK, MAXTTL) end
budgetDone(MAXTTL)
return reply
`

// budgetLua is the footprint count the scripts share: KEYS[1] is a hash
// of unit counts by the minute (G ms, set before) in which they expire, plus
// their total n; KEYS[2] orders the minutes, so that minutes past are
// dropped from the total. snow is the server's TIME in milliseconds.
const budgetLua = `
local BK, BZ = KEYS[1], KEYS[2]
local tm = redis.call('TIME')
local snow = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local budgetTouched = false
local unitCount = nil

-- expiry returns when key expires on the server's clock, or nil.
local function expiry(key)
  local t = redis.call('PTTL', key)
  if t < 0 then return nil end
  return snow + t
end

-- units returns the units counted now, dropping minutes past first.
local function units()
  if unitCount == nil then
    local old = redis.call('ZRANGEBYSCORE', BZ, '-inf', snow, 'LIMIT', 0, 64)
    for _, id in ipairs(old) do
      local c = tonumber(redis.call('HGET', BK, id)) or 0
      if c ~= 0 then redis.call('HINCRBY', BK, 'n', -c) end
      redis.call('HDEL', BK, id)
      redis.call('ZREM', BZ, id)
      budgetTouched = true
    end
    unitCount = tonumber(redis.call('HGET', BK, 'n')) or 0
  end
  return unitCount
end

-- account adds k units (k < 0 removes) expiring at e (nil: none).
local function account(e, k)
  if e == nil or k == 0 then return end
  local b = math.ceil(e / G)
  local id = string.format('%d', b)
  local c = redis.call('HINCRBY', BK, id, k)
  redis.call('HINCRBY', BK, 'n', k)
  if c == 0 then
    redis.call('HDEL', BK, id)
    redis.call('ZREM', BZ, id)
  else
    redis.call('ZADD', BZ, b * G, id)
  end
  if unitCount ~= nil then unitCount = unitCount + k end
  budgetTouched = true
end

-- index adds member to the index set idx, whose TTL must cover ttl,
-- drops up to two members whose keys are gone, and counts the set (one
-- unit, plus one per member) in the minute it expires.
local function index(idx, member, ttl)
  local e0 = expiry(idx)
  local c0 = 0
  if e0 then c0 = redis.call('SCARD', idx) end
  redis.call('SADD', idx, member)
  if e0 then
    for _, m in ipairs(redis.call('SRANDMEMBER', idx, 2)) do
      if m ~= member and redis.call('EXISTS', m) == 0 then redis.call('SREM', idx, m) end
    end
  end
  if redis.call('PTTL', idx) < ttl then redis.call('PEXPIRE', idx, ttl) end
  if e0 then account(e0, -(c0 + 1)) end
  account(expiry(idx), redis.call('SCARD', idx) + 1)
end

-- forget deletes key, an index set if set, and its units.
local function forget(key, set)
  local e = expiry(key)
  local k = 1
  if set and e then k = k + redis.call('SCARD', key) end
  local d = redis.call('DEL', key)
  account(e, -k)
  return d
end

local function budgetDone(maxttl)
  if budgetTouched then
    redis.call('PEXPIRE', BK, maxttl + 2 * G)
    redis.call('PEXPIRE', BZ, maxttl + 2 * G)
  end
end
`

// resetIndexSrc forgets the dimension keys listed in the index set
// KEYS[3] (all in its slot) and the set itself, returning how many
// dimension keys existed. KEYS[1..2] and ARGV[1] are the budget.
const resetIndexSrc = `
local G = tonumber(ARGV[1])
` + budgetLua + `
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
const resetIfSrc = `
local G = tonumber(ARGV[1])
` + budgetLua + `
local d = 0
if redis.call('HGET', KEYS[3], ARGV[3]) == ARGV[4] then
  d = forget(KEYS[3], false)
end
budgetDone(tonumber(ARGV[2]))
return d
`

// deleteSrc deletes the dimension keys KEYS[3..] and their units.
// KEYS[1..2] and ARGV[1..2] are the budget.
const deleteSrc = `
local G = tonumber(ARGV[1])
` + budgetLua + `
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
)
