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
// KEYS: the n dimension keys, then the index sets they join.
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
//	23 tier count t, then t pairs (failures, cooloff)
//	then per dimension 6 values: gen, fields, IP index key position (0:
//	none), username index key position, IP field digest, username field
//	digest (the last two stored for resets under SpreadSlots; "" if none)
//
// The reply is a flat array: now, refused, then per dimension failures,
// locked, started, counted, busy, remaining, gen, locked before the
// operation, applied (counted or reserved by this call), raced (phase 2
// found the dimension written since phase 1).
const applySrc = `
local MAXF = 4503599627370495
local MAXFAIL = 65535
local op = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
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
local nt = tonumber(ARGV[23])
local tiers = {}
for i = 1, nt do
  tiers[i] = {tonumber(ARGV[23 + 2*i - 1]), tonumber(ARGV[23 + 2*i])}
end
local base = 24 + 2*nt

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

local function refresh(s, t)
  local started = false
  if s.p > 0 and RT > 0 and t >= satadd(s.lb, RT) then
    local at = satadd(s.lb, RT)
    if s.f > 0 and at >= satadd(s.lf, WIN) then s.f = 0 end
    s.f = math.min(s.f + s.p, MAXFAIL)
    s.p = 0
    s.g = (s.g + 1) % 4294967296
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

local st, orig, raw, exists, ident, gens, out = {}, {}, {}, {}, {}, {}, {}
local raced, hadToken = {}, {}
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 'f', 'p', 'l', 'g', 'lf', 'lb', 'le', 'id', 'ut', 'u')
  exists[i] = v[1] ~= false or v[2] ~= false or v[3] ~= false or v[7] ~= false
  ident[i] = v[8] == '1'
  hadToken[i] = v[9] ~= false
  raw[i] = parse(v)
  raced[i] = 0
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
  gens[i] = tonumber(ARGV[base + 6*(i-1)]) or 0
end

local refused = false
local lockedBefore, applied = {}, {}
if phase == 2 and applied1 and raced[1] == 1 then
  -- Written by another attempt since phase 1: take back this attempt's
  -- reservation, or its failure unless that failure started a lock.
  for i = 1, n do
    local s = st[i]
    out[i] = {started = refresh(s, now), counted = false, busy = false}
    lockedBefore[i] = lockedAt(s, now)
    applied[i] = false
    if op == 2 and s.g == gens[i] and s.p > 0 then
      s.p = s.p - 1
    elseif op == 1 and s.f > 0 and not lockedAt(s, now) then
      s.f = s.f - 1
    end
  end
  refused = true
else
  for i = 1, n do
    out[i] = {started = refresh(st[i], now), counted = false, busy = false}
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

local reply = {now, refused and 1 or 0}
for i = 1, n do
  local s = st[i]
  local o = out[i]
  local p = base + 6*(i-1)
  local fields = tonumber(ARGV[p + 1])
  local locked = lockedAt(s, now)
  local remaining = 0
  if locked then
    if s.le == -1 then remaining = -1 else remaining = s.le - now end
  else
    o.started = false
  end
  local key = KEYS[i]
  if iszero(s) then
    if exists[i] then redis.call('DEL', key) end
  else
    local setId = locked and (o.started or not ident[i])
    local delId = (not locked) and ident[i]
    local spreadUndo = token ~= '' and applied[i]
    if exists[i] == false or not same(s, orig[i]) or setId or delId or spreadUndo then
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
      for _, q in ipairs({tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3])}) do
        if q > 0 then
          local idx = KEYS[q]
          redis.call('SADD', idx, key)
          if redis.call('PTTL', idx) < ttl then redis.call('PEXPIRE', idx, ttl) end
        end
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
end
return reply
`

// resetIndexSrc forgets the dimension keys listed in the index set
// KEYS[1] (all in its slot) and the set itself, returning how many
// dimension keys existed.
const resetIndexSrc = `
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', k)
end
redis.call('DEL', KEYS[1])
return n
`

// resetIfSrc deletes KEYS[1] when its hash field ARGV[1] equals ARGV[2].
const resetIfSrc = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
`

var (
	applyScript      = redis.NewScript(applySrc)
	resetIndexScript = redis.NewScript(resetIndexSrc)
	resetIfScript    = redis.NewScript(resetIfSrc)
)
