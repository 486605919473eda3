-- The value of a dimension key, which the scripts share: VAL_FMT's
-- numbers (little-endian doubles) followed by strings. The numbers: the
-- state's LastFail, LastBegin and LockEnd (instants in ms, -1 for an
-- indefinite lock end), the key's expiry on the server's clock (ms; the
-- footprint count reads it instead of asking PTTL), the state's Failures,
-- Pending and Level in one (f + 65536*(p + 65536*l)), its Gen, and the
-- meta number
-- (valueMeta): the dimension's Fields, whether the IP and username field
-- digests follow (16 bytes each; ResetField compares them), whether the
-- identity of the current lock follows, and the lengths of that identity
-- (IP, username, user agent) and of the undo token and snapshot (SNAP_FMT,
-- the state before) of a SpreadSlots attempt, the strings in that order.
-- A meta number below META_PLAIN has no identity and no token. One GET
-- reads a key, and one SET with PX writes it and its TTL. Go reads the
-- same format (value.go). (The instants come first: a new key's first
-- failure is the call's instants, then what Go sent for the dimension.)
local VAL_FMT = '<ddddddd'
local VAL_LEN = 56
local SNAP_FMT = '<HHBdddd'
local META_PLAIN = 1024

-- valueMeta splits a meta number: fields, then the lengths of the IP and
-- username field digests, 1 when the identity follows, and the lengths of
-- the IP, username, user agent, token and snapshot.
local function valueMeta(m)
  local f = m % 256
  m = (m - f) / 256
  local a = m % 8
  m = (m - a) / 8
  local nip = m % 64
  m = (m - nip) / 64
  local nun = m % 512
  m = (m - nun) / 512
  local nua = m % 512
  m = (m - nua) / 512
  local nut = m % 64
  return f, a % 2 * 16, math.floor(a / 2) % 2 * 16, math.floor(a / 4), nip, nun, nua, nut, (m - nut) / 64
end
