-- The footprint count the scripts share: KEYS[1] is a hash of unit
-- counts by the minute (G ms) in which they expire, plus their total n;
-- KEYS[2] orders the minutes, so that minutes past are dropped from the
-- total. snow is the server's TIME in milliseconds. A call starts with
-- begin; the script then sets G from its arguments before any other call.
--
-- KEYS and ARGV are the call's (the prelude before this file declares
-- them): the code is loaded once as a function library, or run whole by
-- EVAL, and every per-call value is set by begin, never at load.
local G, BK, BZ, tm, snow

-- The globals the scripts use, as locals (upvalues): a function library's
-- global environment is an empty table that falls back on the real one
-- through a metamethod, on every access. begin sets them on every call
-- from globals(), which reads the globals (it is defined before the
-- locals that hide them); at load time they are not the call's. (Not
-- ipairs and pairs, rare: the main function has at most 200 locals.)
local function globals(loading)
  -- (Loading the library, only redis is there.)
  if loading then return redis end
  return redis, struct, string, math, tonumber, unpack
end
local redis, struct, string, math, tonumber, unpack
-- The budget's state in this call (one table: the apply script's main
-- function is near Lua's limit of 200 locals): touched, whether the
-- budget keys were written; count, the units counted (nil until read);
-- pend, the changes not yet written, units by minute (numeric keys) and
-- their sum n; ends, the budget keys' end (field x) once read; ints, the
-- integers formatted by int; us, the microseconds of TIME.
local bud

-- begin starts a call with its keys and arguments.
local function begin(keys, args)
  KEYS, ARGV = keys, args
  redis, struct, string, math, tonumber, unpack = globals()
  BK, BZ = KEYS[1], KEYS[2]
  tm = redis.call('TIME')
  local us = tonumber(tm[2])
  snow = tonumber(tm[1]) * 1000 + math.floor(us / 1000)
  bud = {touched = false, count = nil, pend = {n = 0}, ends = nil, ints = {}, us = us}
end

-- int returns the integer x as a command's argument: a number passed to
-- redis.call is formatted with %.17g, several times slower. The decisions
-- of a call repeat most of their numbers (instants, TTLs), formatted once.
local function int(x)
  local v = bud.ints[x]
  if v == nil then
    v = string.format('%d', x)
    bud.ints[x] = v
  end
  return v
end

-- expiry returns when key expires on the server's clock, or nil.
local function expiry(key)
  local t = redis.call('PTTL', key)
  if t < 0 then return nil end
  return snow + t
end

-- units returns the units counted now, dropping minutes past first. It
-- also reads the budget keys' end.
local function units()
  if bud.count == nil then
    local old = redis.call('ZRANGEBYSCORE', BZ, '-inf', int(snow), 'LIMIT', '0', '64')
    for _, id in ipairs(old) do
      local c = tonumber(redis.call('HGET', BK, id)) or 0
      if c ~= 0 then redis.call('HINCRBY', BK, 'n', -c) end
      redis.call('HDEL', BK, id)
      redis.call('ZREM', BZ, id)
      bud.touched = true
    end
    local v = redis.call('HMGET', BK, 'n', 'x')
    bud.count = (tonumber(v[1]) or 0) + bud.pend.n
    bud.ends = tonumber(v[2]) or 0
  end
  return bud.count
end

-- account adds k units (k < 0 removes) expiring at e (nil: none). The
-- changes are summed by minute and written once, by budgetDone: a key
-- rewritten within its minute of expiry costs no write to the budget.
local function account(e, k)
  if e == nil or k == 0 then return end
  local b = math.ceil(e / G)
  local pend = bud.pend
  pend[b] = (pend[b] or 0) + k
  pend.n = pend.n + k
  if bud.count ~= nil then bud.count = bud.count + k end
end

-- forget deletes key and its unit.
local function forget(key)
  local e = expiry(key)
  local d = redis.call('DEL', key)
  account(e, -d)
  return d
end

-- budgetDone writes the changes to the count. A minute's entry joins the
-- minutes' order when it appears; the budget keys' TTL is extended when
-- less than maxttl + G is left (their end is kept in the field x), and
-- the order's whenever it gains a minute.
local function budgetDone(maxttl)
  for b, k in pairs(bud.pend) do
    if b ~= 'n' and k ~= 0 then
      local id = string.format('%d', b)
      local c = redis.call('HINCRBY', BK, id, k)
      if c == 0 then
        redis.call('HDEL', BK, id)
        redis.call('ZREM', BZ, id)
      elseif c == k then
        redis.call('ZADD', BZ, b * G, id)
        bud.zadd = true
      end
      bud.touched = true
    end
  end
  if bud.pend.n ~= 0 then redis.call('HINCRBY', BK, 'n', bud.pend.n) end
  if bud.touched then
    if bud.ends == nil then bud.ends = tonumber(redis.call('HGET', BK, 'x')) or 0 end
    if bud.ends < snow + maxttl + G then
      local e = snow + maxttl + 2 * G
      redis.call('HSET', BK, 'x', e)
      redis.call('PEXPIRE', BK, maxttl + 2 * G)
      redis.call('PEXPIRE', BZ, maxttl + 2 * G)
    elseif bud.zadd then
      -- The minutes' order may have been emptied (deleted) and made anew.
      redis.call('PEXPIRE', BZ, maxttl + 2 * G)
    end
  end
end
