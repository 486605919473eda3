-- The footprint count the scripts share: KEYS[1] is a hash of unit
-- counts by the minute (G ms) in which they expire, plus their total n;
-- KEYS[2] orders the minutes, so that minutes past are dropped from the
-- total. snow is the server's TIME in milliseconds. The script that
-- includes this prelude sets G from its arguments before any call.
local G
local BK, BZ = KEYS[1], KEYS[2]
local tm = redis.call('TIME')
local snow = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local budgetTouched = false
local unitCount = nil
-- The budget changes not yet written: units by minute (numeric keys),
-- and their sum n.
local pend = {n = 0}

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
    unitCount = (tonumber(redis.call('HGET', BK, 'n')) or 0) + pend.n
  end
  return unitCount
end

-- account adds k units (k < 0 removes) expiring at e (nil: none). The
-- changes are summed by minute and written once, by budgetDone: a key
-- rewritten within its minute of expiry costs no write to the budget.
local function account(e, k)
  if e == nil or k == 0 then return end
  local b = math.ceil(e / G)
  pend[b] = (pend[b] or 0) + k
  pend.n = pend.n + k
  if unitCount ~= nil then unitCount = unitCount + k end
end

-- index adds member to the index set idx, whose TTL must cover ttl,
-- drops up to two members whose keys are gone, and counts the set (one
-- unit, plus one per member) in the minute it expires.
local function index(idx, member, ttl)
  local e0 = expiry(idx)
  local c0 = 0
  if e0 then c0 = redis.call('SCARD', idx) end
  local c = c0 + redis.call('SADD', idx, member)
  if e0 then
    for _, m in ipairs(redis.call('SRANDMEMBER', idx, 2)) do
      if m ~= member and redis.call('EXISTS', m) == 0 then c = c - redis.call('SREM', idx, m) end
    end
  end
  -- Script time stands still: the set's TTL is still e0 - snow.
  local e = e0
  if e0 == nil or e0 - snow < ttl then
    redis.call('PEXPIRE', idx, ttl)
    e = snow + ttl
  end
  if e0 then account(e0, -(c0 + 1)) end
  account(e, c + 1)
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
  for b, k in pairs(pend) do
    if b ~= 'n' and k ~= 0 then
      local id = string.format('%d', b)
      if redis.call('HINCRBY', BK, id, k) == 0 then
        redis.call('HDEL', BK, id)
        redis.call('ZREM', BZ, id)
      else
        redis.call('ZADD', BZ, b * G, id)
      end
      budgetTouched = true
    end
  end
  if pend.n ~= 0 then redis.call('HINCRBY', BK, 'n', pend.n) end
  if budgetTouched then
    redis.call('PEXPIRE', BK, maxttl + 2 * G)
    redis.call('PEXPIRE', BZ, maxttl + 2 * G)
  end
end
