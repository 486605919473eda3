package redisstore

import (
	"context"
	"encoding/binary"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
)

// encodeValue is what the script writes for kv (value.lua), for the tests
// that set a key's state directly.
func encodeValue(kv keyValue) string {
	id, has := int64(0), func(s string) int64 {
		if s != "" {
			return 1
		}
		return 0
	}
	if kv.identity {
		id = 1
	}
	meta := int64(kv.fields) + 256*(has(kv.ipKey)+2*has(kv.userKey)+4*id) +
		2048*(int64(len(kv.ip))+64*(int64(len(kv.username))+512*(int64(len(kv.userAgent))+512*(int64(len(kv.token))+64*int64(len(kv.snapshot))))))
	var b []byte
	for _, x := range []int64{kv.lastFail, kv.lastBegin, kv.lockEnd, kv.expiry,
		int64(kv.failures) + 65536*(int64(kv.pending)+65536*int64(kv.level)), kv.gen, meta} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(x)))
	}
	for _, s := range []string{kv.ipKey, kv.userKey, kv.ip, kv.username, kv.userAgent, kv.token, kv.snapshot} {
		b = append(b, s...)
	}
	return string(b)
}

// TestValueFormat pins value.lua's format to decodeValue's, and reads what
// the script wrote for a lock: its state, fields, field digests and
// identity.
func TestValueFormat(t *testing.T) {
	m := regexp.MustCompile(`local VAL_FMT = '([^']*)'\nlocal VAL_LEN = ([0-9]+)\n`).FindStringSubmatch(valueLua)
	if m == nil {
		t.Fatal("value.lua lacks VAL_FMT and VAL_LEN")
	}
	if m[1] != "<ddddddd" || m[2] != strconv.Itoa(valueLen) {
		t.Fatalf("value.lua: VAL_FMT %q, VAL_LEN %s; decodeValue reads %q, %d", m[1], m[2], "<ddddddd", valueLen)
	}
	kv := keyValue{failures: 65535, pending: 3, level: 255, gen: 1<<31 + 5, lastFail: 1 << 52, lastBegin: 7,
		lockEnd: -1, expiry: 99, fields: axes.IP | axes.Username, identity: true, ipKey: "0123456789abcdef",
		userKey: "fedcba9876543210", ip: "192.0.2.0/24", username: "ü", userAgent: string(make([]byte, 256)),
		token: "tok", snapshot: "snap"}
	if got, ok := decodeValue(encodeValue(kv)); !ok || got != kv {
		t.Errorf("decodeValue(encodeValue(%+v)) = %+v, %v", kv, got, ok)
	}
	enc := encodeValue(kv)
	if _, ok := decodeValue(enc[:len(enc)-1]); ok {
		t.Error("decodeValue took a truncated value")
	}
	if _, ok := decodeValue("not a value"); ok {
		t.Error("decodeValue took a short string")
	}

	s := mustNew(t, newClient(t), Options{UseRequestTime: true})
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000)
	r := store.Rule{Limit: 1, Window: time.Minute, Cooloff: time.Hour}
	d := store.Dim{Fields: axes.IP | axes.Username, Digest: axes.Digest{Hi: 11, Lo: 12},
		IPKey: axes.Digest{Hi: 1, Lo: 2}, UserKey: axes.Digest{Hi: 3, Lo: 4}}
	id := store.Identity{IP: netip.MustParsePrefix("192.0.2.9/32"), Username: "alice", UserAgent: "agent/1"}
	req := &store.Request{Op: store.OpFail, Now: t0, Rule: &r, Dims: []store.Dim{d}, Identity: id}
	if err := s.apply(ctx, req); err != nil {
		t.Fatal(err)
	}
	v, err := s.c.Get(ctx, s.key(d.Digest)).Result()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeValue(v)
	ttl := s.c.PTTL(ctx, s.key(d.Digest)).Val()
	want := keyValue{failures: 1, level: 1, gen: got.gen, lastFail: t0.UnixMilli(), lockEnd: t0.Add(time.Hour).UnixMilli(),
		expiry: got.expiry, fields: d.Fields, identity: true, ipKey: digestBytes(d.IPKey), userKey: digestBytes(d.UserKey),
		ip: "192.0.2.9/32", username: "alice", userAgent: "agent/1"}
	if !ok || got != want {
		t.Errorf("the script wrote %+v (%v)\n  want %+v", got, ok, want)
	}
	// The expiry it records is the key's TTL on the server's clock.
	now, _ := s.c.Time(ctx).Result()
	if e := time.UnixMilli(got.expiry).Sub(now); e < ttl-time.Second || e > ttl+time.Second {
		t.Errorf("recorded expiry in %v, the key's TTL is %v", e, ttl)
	}
}

// TestLockIdentityOfNewLock: a lock records the identity of the attempt
// that started it, also on a key whose lock before had another one; and a
// lock's identity stays while it lasts.
func TestLockIdentityOfNewLock(t *testing.T) {
	s := mustNew(t, newClient(t), Options{UseRequestTime: true})
	ctx := context.Background()
	t0 := time.UnixMilli(1_700_000_000_000)
	r := store.Rule{Limit: 1, Window: time.Hour, Cooloff: time.Minute}
	d := store.Dim{Fields: axes.IP, Digest: axes.Digest{Hi: 21, Lo: 22}}
	fail := func(at time.Duration, user string) {
		t.Helper()
		req := &store.Request{Op: store.OpFail, Now: t0.Add(at), Rule: &r, Dims: []store.Dim{d},
			Identity: store.Identity{IP: netip.MustParsePrefix("192.0.2.1/32"), Username: user}}
		if err := s.apply(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	user := func() string {
		t.Helper()
		v, err := s.c.Get(ctx, s.key(d.Digest)).Result()
		if err != nil {
			t.Fatal(err)
		}
		kv, ok := decodeValue(v)
		if !ok || !kv.identity {
			t.Fatalf("the key keeps no identity: %+v", kv)
		}
		return kv.username
	}
	fail(0, "alice") // locks
	if u := user(); u != "alice" {
		t.Fatalf("first lock by %q, want alice", u)
	}
	fail(time.Second, "bob") // refused: the lock and its identity stay
	if u := user(); u != "alice" {
		t.Errorf("during the lock, identity %q, want alice", u)
	}
	fail(2*time.Minute, "carol") // the lock ended; this failure starts a new one
	if u := user(); u != "carol" {
		t.Errorf("the new lock's identity is %q, want carol", u)
	}
}
