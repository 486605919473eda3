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
// VAL_FMT, "<ddddddd".
const valueLen = 56

// decodeValue reads a dimension key's value; ok is false when v is not
// one.
func decodeValue(v string) (kv keyValue, ok bool) {
	if len(v) < valueLen {
		return kv, false
	}
	var n [7]int64
	for i := range n {
		n[i] = int64(math.Float64frombits(binary.LittleEndian.Uint64([]byte(v[8*i : 8*i+8]))))
	}
	kv.lastFail, kv.lastBegin, kv.lockEnd, kv.expiry = n[0], n[1], n[2], n[3]
	fpl := n[4]
	kv.failures, kv.pending, kv.level = int(fpl%65536), int(fpl/65536%65536), int(fpl/(1<<32))
	kv.gen = n[5]
	m := n[6]
	kv.fields = axes.Fields(m % 256)
	m /= 256
	flags := m % 8
	m /= 8
	kv.identity = flags&4 != 0
	var lens [7]int64
	lens[0], lens[1] = 16*(flags&1), 16*(flags>>1&1)
	for i, w := range []int64{64, 512, 512, 64, 64} {
		lens[2+i] = m % w
		m /= w
	}
	at := int64(valueLen)
	str := func(k int64) string {
		if at+k > int64(len(v)) {
			ok = false
			return ""
		}
		at += k
		return v[at-k : at]
	}
	ok = true
	kv.ipKey, kv.userKey = str(lens[0]), str(lens[1])
	kv.ip, kv.username, kv.userAgent = str(lens[2]), str(lens[3]), str(lens[4])
	kv.token, kv.snapshot = str(lens[5]), str(lens[6])
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
