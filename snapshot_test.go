package axes

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/axes-go/axes/store"
	"hash/crc32"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var snapSecret = []byte("snapshot-test-secret-0123456789")

func snapPolicy() Policy {
	return Policy{
		Limit:     4,
		LockoutBy: []Fields{IP, Username, IP | UserAgent},
		Cooloff:   Backoff{Base: time.Minute, Max: time.Hour, Decay: 2 * time.Hour},
		Window:    10 * time.Minute,
	}
}

// TestSnapshotRoundTrip runs random operations, snapshots, restores into a
// fresh limiter with the same secret, then continues on both with the same
// operations: every verdict must match.
func TestSnapshotRoundTrip(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 99))
		c := &fakeClock{}
		c.Set(time.Duration(r.IntN(1000)) * time.Second)
		a, err := New(snapPolicy(), WithClock(c.Now), WithSecret(snapSecret))
		require.NoError(t, err)
		key := func() Key {
			return Key{IP: ipN(r.IntN(20)), Username: []string{"ann", "Bob", "cy", ""}[r.IntN(4)], UserAgent: []string{"x", "y"}[r.IntN(2)]}
		}
		step := func(ls ...*Limiter) {
			k := key()
			op := r.IntN(10)
			c.Set(time.Duration(c.now.Load()) + time.Duration(r.IntN(90))*time.Second)
			var vs []Verdict
			for _, l := range ls {
				switch {
				case op < 6:
					vs = append(vs, l.Fail(k))
				case op < 8:
					vs = append(vs, l.Check(k))
				case op < 9:
					at := l.Begin(k)
					vs = append(vs, at.Verdict())
				default:
					l.Success(k)
					vs = append(vs, l.Check(k))
				}
			}
			for i := 1; i < len(vs); i++ {
				require.Equal(t, vs[0], vs[i], "seed %d: verdicts differ after restore for %+v", seed, k)
			}
		}
		for range 300 {
			step(a)
		}
		var buf bytes.Buffer
		require.NoError(t, a.Snapshot(&buf))
		b, err := New(snapPolicy(), WithClock(c.Now), WithSecret(snapSecret))
		require.NoError(t, err)
		require.NoError(t, b.Restore(bytes.NewReader(buf.Bytes())))
		assert.Equal(t, len(a.Lockouts()), len(b.Lockouts()), "seed %d", seed)
		assert.Equal(t, a.Lockouts(), b.Lockouts(), "seed %d", seed)
		for range 300 {
			step(a, b)
		}
	}
}

func TestSnapshotDropsExpiredAndIdentities(t *testing.T) {
	c := &fakeClock{}
	a := Must(New(Policy{Limit: 2}, WithClock(c.Now), WithSecret(snapSecret)))
	a.Fail(Key{IP: ipN(1), Username: "alice"})
	a.Fail(Key{IP: ipN(1), Username: "alice"}) // locked
	a.Fail(Key{IP: ipN(2), Username: "bob"})
	var with, without bytes.Buffer
	require.NoError(t, a.Snapshot(&with))
	require.NoError(t, a.Snapshot(&without, WithoutIdentities()))
	assert.Contains(t, with.String(), "alice")
	assert.NotContains(t, without.String(), "alice")
	assert.NotContains(t, with.String(), "bob", "identities are kept for locks only")

	c.Set(16 * time.Minute) // everything has expired
	b := Must(New(Policy{Limit: 2}, WithClock(c.Now), WithSecret(snapSecret)))
	require.NoError(t, b.Restore(&with))
	assert.Equal(t, 0, b.Stats().Entries)

	c.Set(5 * time.Minute)
	b2 := Must(New(Policy{Limit: 2}, WithClock(c.Now), WithSecret(snapSecret)))
	require.NoError(t, b2.Restore(&without))
	assert.True(t, b2.Locked(Key{IP: ipN(1)}))
	lo := b2.Lockouts()
	require.Len(t, lo, 1)
	assert.Equal(t, "", lo[0].Username)
	assert.Equal(t, 10*time.Minute, b2.Check(Key{IP: ipN(1)}).RetryAfter)
}

func TestRestoreRejectsBadInput(t *testing.T) {
	c := &fakeClock{}
	a := Must(New(Policy{LockoutBy: []Fields{IP, Username}}, WithClock(c.Now), WithSecret(snapSecret)))
	for i := range 50 {
		a.Fail(Key{IP: ipN(i % 7), Username: strings.Repeat("u", i)})
	}
	var buf bytes.Buffer
	require.NoError(t, a.Snapshot(&buf))
	good := buf.Bytes()
	fresh := func() *Limiter {
		return Must(New(Policy{LockoutBy: []Fields{IP, Username}}, WithClock(c.Now), WithSecret(snapSecret)))
	}
	// Every truncation fails.
	for n := 0; n < len(good); n += 1 + n/8 {
		l := fresh()
		require.Error(t, l.Restore(bytes.NewReader(good[:n])), "truncated at %d", n)
		assert.Equal(t, 0, l.Stats().Entries, "a failed restore loaded entries")
	}
	// Every flipped bit fails.
	for i := 0; i < len(good); i += 1 + i/16 {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x10
		require.Error(t, fresh().Restore(bytes.NewReader(bad)), "bit flipped at %d", i)
	}
	// Trailing data, another secret, another version.
	require.Error(t, fresh().Restore(bytes.NewReader(append(append([]byte(nil), good...), 0))))
	other := Must(New(Policy{}, WithSecret([]byte("another-secret-0123456789"))))
	assert.True(t, errors.Is(other.Restore(bytes.NewReader(good)), ErrSnapshotSecret))
	v2 := append([]byte(nil), good...)
	binary.LittleEndian.PutUint16(v2[8:], 2)
	fixCRC(v2)
	err := fresh().Restore(bytes.NewReader(v2))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "version 2")
	// An absurd count with a valid checksum still fails without a huge
	// allocation.
	huge := append([]byte(nil), good[:snapHeaderLen]...)
	binary.LittleEndian.PutUint64(huge[40:], 1<<62)
	huge = binary.LittleEndian.AppendUint32(huge, 0)
	fixCRC(huge)
	allocs := testing.AllocsPerRun(1, func() { require.Error(t, fresh().Restore(bytes.NewReader(huge))) })
	assert.Less(t, allocs, 2000.0)
	// Garbage.
	require.Error(t, fresh().Restore(strings.NewReader("not a snapshot at all, not at all, no, not at all, really not one")))
	// A store that cannot snapshot.
	s, _ := store.NewMemory(10, store.Rule{})
	viaIface := Must(New(Policy{}, WithStore(struct{ store.Store }{s})))
	require.Error(t, viaIface.Snapshot(&bytes.Buffer{}))
	require.Error(t, viaIface.Restore(bytes.NewReader(good)))
}

func fixCRC(b []byte) {
	n := len(b) - 4
	binary.LittleEndian.PutUint32(b[n:], crc32.Checksum(b[:n], crc32.MakeTable(crc32.Castagnoli)))
}

func FuzzRestore(f *testing.F) {
	c := &fakeClock{}
	a := Must(New(Policy{Limit: 1, LockoutBy: []Fields{IP, Username}}, WithClock(c.Now), WithSecret(snapSecret)))
	a.Fail(Key{IP: netip.MustParseAddr("2001:db8::1"), Username: "ann", UserAgent: "ua"})
	a.Fail(Key{IP: ipN(3), Username: "bob"})
	var buf bytes.Buffer
	if err := a.Snapshot(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(snapMagic))
	f.Add(buf.Bytes()[:snapHeaderLen])
	f.Fuzz(func(t *testing.T, data []byte) {
		l := Must(New(Policy{Limit: 1, LockoutBy: []Fields{IP, Username}}, WithClock(c.Now), WithSecret(snapSecret), WithMaxEntries(64)))
		err := l.Restore(bytes.NewReader(data))
		if err != nil {
			assert.Equal(t, 0, l.Stats().Entries)
			return
		}
		// A snapshot that loads can be written and read again.
		var out bytes.Buffer
		require.NoError(t, l.Snapshot(&out))
		require.NoError(t, Must(New(Policy{Limit: 1, LockoutBy: []Fields{IP, Username}}, WithClock(c.Now), WithSecret(snapSecret))).Restore(&out))
		l.Lockouts()
	})
}
