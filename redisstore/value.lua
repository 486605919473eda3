-- The value of a dimension key, which the scripts share: a string of
-- VAL_FMT's numbers (little-endian) followed by the strings whose lengths
-- they give, in their order. The numbers: the state (Failures, Pending,
-- Level, Gen, LastFail, LastBegin and LockEnd, instants in ms, -1 for an
-- indefinite lock end), the key's expiry on the server's clock (ms; the
-- footprint count reads it instead of asking PTTL), the dimension's Fields,
-- 1 when the identity of the current lock follows, then the lengths of the
-- strings: the IP and username field digests (16 bytes each, or none;
-- ResetField compares them), the identity (IP, username, user agent), and
-- the undo token and snapshot (SNAP_FMT, the state before) of a
-- SpreadSlots attempt. One GET reads a key, and one SET with PX writes it
-- and its TTL. Go reads the same format (value.go).
local VAL_FMT = '<HHBdddddBBBBBHHBB'
local VAL_LEN = 56
local SNAP_FMT = '<HHBdddd'
