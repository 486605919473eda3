package redisstore

import (
	"encoding/binary"
	"math"

	"github.com/axes-go/axes"
)

// keyValue is the value of a dimension key (value.lua): the state and
// what goes with it. Go reads it for Lockouts and ResetField; only the
// script writes it.
type keyValue struct {
	failures, pending, level int
	gen, lastFail, lastBegin int64 // instants in ms
	lockEnd                  int64 // ms, -1 for an indefinite lock
	expiry                   int64 // the key's expiry on the server's clock (ms)
	fields                   axes.Fields
	identity                 bool // the identity of the current lock follows
	ipKey, userKey           string
	ip, username, userAgent  string
	token, snapshot          string
}

// valueLen is the length of a value's numbers (VAL_LEN in value.lua):
// VAL_FMT, "<HHBdddddBBBBBHHBB".
const valueLen = 56

// decodeValue reads a dimension key's value; ok is false when v is not
// one.
func decodeValue(v string) (kv keyValue, ok bool) {
	if len(v) < valueLen {
		return kv, false
	}
	at := 0
	u8 := func() int { at++; return int(v[at-1]) }
	u16 := func() int { at += 2; return int(v[at-2]) | int(v[at-1])<<8 }
	f64 := func() int64 {
		at += 8
		var x uint64
		for i := 1; i <= 8; i++ {
			x = x<<8 | uint64(v[at-i])
		}
		return int64(math.Float64frombits(x))
	}
	kv.failures, kv.pending, kv.level = u16(), u16(), u8()
	kv.gen, kv.lastFail, kv.lastBegin, kv.lockEnd, kv.expiry = f64(), f64(), f64(), f64(), f64()
	kv.fields = axes.Fields(u8())
	kv.identity = u8() == 1
	var n [7]int
	n[0], n[1], n[2], n[3], n[4], n[5], n[6] = u8(), u8(), u8(), u16(), u16(), u8(), u8()
	str := func(k int) string {
		if at+k > len(v) {
			ok = false
			return ""
		}
		at += k
		return v[at-k : at]
	}
	ok = true
	kv.ipKey, kv.userKey = str(n[0]), str(n[1])
	kv.ip, kv.username, kv.userAgent = str(n[2]), str(n[3]), str(n[4])
	kv.token, kv.snapshot = str(n[5]), str(n[6])
	return kv, ok
}

// digestBytes returns the 16 bytes of d that a dimension key records
// (appendDigest).
func digestBytes(d axes.Digest) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], d.Hi)
	binary.BigEndian.PutUint64(b[8:], d.Lo)
	return string(b[:])
}
