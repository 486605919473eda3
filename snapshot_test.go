package axes

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/axes-go/axes/store"
	"hash/crc32"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
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
		if err != nil {
			t.Fatalf("New: %v", err)
		}
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
				if vs[i] != vs[0] {
					t.Fatalf("seed %d: verdicts differ after restore for %+v:\n got %+v\nwant %+v", seed, k, vs[i], vs[0])
				}
			}
		}
		for range 300 {
			step(a)
		}
		var buf bytes.Buffer
		if err := a.Snapshot(&buf); err != nil {
			t.Fatalf("seed %d: Snapshot: %v", seed, err)
		}
		b, err := New(snapPolicy(), WithClock(c.Now), WithSecret(snapSecret))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		if err := b.Restore(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("seed %d: Restore: %v", seed, err)
		}
		if want, got := len(a.Lockouts()), len(b.Lockouts()); got != want {
			t.Errorf("seed %d: %d lockouts after restore, want %d", seed, got, want)
		}
		if want, got := a.Lockouts(), b.Lockouts(); !reflect.DeepEqual(got, want) {
			t.Errorf("seed %d: lockouts after restore\n got %+v\nwant %+v", seed, got, want)
		}
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
	if err := a.Snapshot(&with); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if err := a.Snapshot(&without, WithoutIdentities()); err != nil {
		t.Fatalf("Snapshot(WithoutIdentities()): %v", err)
	}
	if !strings.Contains(with.String(), "alice") {
		t.Error("the snapshot lacks the locked username alice")
	}
	if strings.Contains(without.String(), "alice") {
		t.Error("the snapshot WithoutIdentities holds the username alice")
	}
	if strings.Contains(with.String(), "bob") {
		t.Error("the snapshot holds the unlocked username bob: identities are kept for locks only")
	}

	c.Set(16 * time.Minute) // everything has expired
	b := Must(New(Policy{Limit: 2}, WithClock(c.Now), WithSecret(snapSecret)))
	if err := b.Restore(&with); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := b.Stats().Entries; got != 0 {
		t.Errorf("Stats().Entries = %d after restoring expired entries, want 0", got)
	}

	c.Set(5 * time.Minute)
	b2 := Must(New(Policy{Limit: 2}, WithClock(c.Now), WithSecret(snapSecret)))
	if err := b2.Restore(&without); err != nil {
		t.Fatalf("Restore(WithoutIdentities snapshot): %v", err)
	}
	if !b2.Locked(Key{IP: ipN(1)}) {
		t.Error("the restored lock is not locked")
	}
	lo := b2.Lockouts()
	if len(lo) != 1 {
		t.Fatalf("%d lockouts after restore, want 1: %+v", len(lo), lo)
	}
	if lo[0].Username != "" {
		t.Errorf("restored lockout's Username = %q, want none", lo[0].Username)
	}
	if got := b2.Check(Key{IP: ipN(1)}).RetryAfter; got != 10*time.Minute {
		t.Errorf("RetryAfter after restore = %v, want %v", got, 10*time.Minute)
	}
}

func TestRestoreRejectsBadInput(t *testing.T) {
	c := &fakeClock{}
	a := Must(New(Policy{LockoutBy: []Fields{IP, Username}}, WithClock(c.Now), WithSecret(snapSecret)))
	for i := range 50 {
		a.Fail(Key{IP: ipN(i % 7), Username: strings.Repeat("u", i)})
	}
	var buf bytes.Buffer
	if err := a.Snapshot(&buf); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	good := buf.Bytes()
	fresh := func() *Limiter {
		return Must(New(Policy{LockoutBy: []Fields{IP, Username}}, WithClock(c.Now), WithSecret(snapSecret)))
	}
	// Every truncation fails.
	for n := 0; n < len(good); n += 1 + n/8 {
		l := fresh()
		if err := l.Restore(bytes.NewReader(good[:n])); err == nil {
			t.Fatalf("Restore of the snapshot truncated at %d: no error", n)
		}
		if got := l.Stats().Entries; got != 0 {
			t.Errorf("a failed restore (truncated at %d) loaded %d entries", n, got)
		}
	}
	// Every flipped bit fails.
	for i := 0; i < len(good); i += 1 + i/16 {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x10
		if err := fresh().Restore(bytes.NewReader(bad)); err == nil {
			t.Fatalf("Restore of the snapshot with a bit flipped at %d: no error", i)
		}
	}
	// Trailing data, another secret, another version.
	if err := fresh().Restore(bytes.NewReader(append(append([]byte(nil), good...), 0))); err == nil {
		t.Fatal("Restore of the snapshot with trailing data: no error")
	}
	other := Must(New(Policy{}, WithSecret([]byte("another-secret-0123456789"))))
	if err := other.Restore(bytes.NewReader(good)); !errors.Is(err, ErrSnapshotSecret) {
		t.Errorf("Restore under another secret: %v, want ErrSnapshotSecret", err)
	}
	for _, v := range []uint16{1, snapVersion + 1} { // version 1 digests differ
		bad := append([]byte(nil), good...)
		binary.LittleEndian.PutUint16(bad[8:], v)
		fixCRC(bad)
		err := fresh().Restore(bytes.NewReader(bad))
		if err == nil {
			t.Fatalf("Restore of a version %d snapshot: no error", v)
		}
		if want := fmt.Sprintf("version %d", v); !strings.Contains(err.Error(), want) {
			t.Errorf("Restore of a version %d snapshot: %q does not contain %q", v, err, want)
		}
	}
	// An absurd count with a valid checksum still fails without a huge
	// allocation.
	huge := append([]byte(nil), good[:snapHeaderLen]...)
	binary.LittleEndian.PutUint64(huge[40:], 1<<62)
	huge = binary.LittleEndian.AppendUint32(huge, 0)
	fixCRC(huge)
	allocs := testing.AllocsPerRun(1, func() {
		if err := fresh().Restore(bytes.NewReader(huge)); err == nil {
			t.Fatal("Restore of a snapshot counting 1<<62 entries: no error")
		}
	})
	if allocs >= 2000 {
		t.Errorf("Restore of a snapshot counting 1<<62 entries: %v allocations, want fewer than 2000", allocs)
	}
	// Garbage.
	if err := fresh().Restore(strings.NewReader("not a snapshot at all, not at all, no, not at all, really not one")); err == nil {
		t.Fatal("Restore of garbage: no error")
	}
	// A store that cannot snapshot.
	s, _ := store.NewMemory(10, store.Rule{})
	viaIface := Must(New(Policy{}, WithStore(struct{ store.Store }{s})))
	if err := viaIface.Snapshot(&bytes.Buffer{}); err == nil {
		t.Fatal("Snapshot of a store that cannot snapshot: no error")
	}
	if err := viaIface.Restore(bytes.NewReader(good)); err == nil {
		t.Fatal("Restore into a store that cannot snapshot: no error")
	}
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
			if got := l.Stats().Entries; got != 0 {
				t.Errorf("a failed restore (%v) loaded %d entries", err, got)
			}
			return
		}
		// A snapshot that loads can be written and read again.
		var out bytes.Buffer
		if err := l.Snapshot(&out); err != nil {
			t.Fatalf("Snapshot of a restored limiter: %v", err)
		}
		if err := Must(New(Policy{Limit: 1, LockoutBy: []Fields{IP, Username}}, WithClock(c.Now), WithSecret(snapSecret))).Restore(&out); err != nil {
			t.Fatalf("Restore of a restored limiter's snapshot: %v", err)
		}
		l.Lockouts()
	})
}
