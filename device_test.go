package axes

import (
	"net/netip"
	"testing"
	"time"

	"github.com/axes-go/axes/store"
)

// TestDeviceLeavesDigestsUnchanged pins the digests of keys without a
// device to the values they had before devices existed (with the one-pass
// field digests of snapshot version 2), so that snapshots and the Redis
// layout stay valid.
func TestDeviceLeavesDigestsUnchanged(t *testing.T) {
	l, _ := newTest(t, Policy{LockoutBy: []Fields{IP, Username, IP | Username, Username | UserAgent}}, WithSecret([]byte("device-pin-secret-0123456789abcd")))
	keys := []Key{
		{IP: netip.MustParseAddr("192.0.2.1"), Username: "Alice", UserAgent: "ua"},
		{IP: netip.MustParseAddr("2001:db8::1"), Username: "bob"},
	}
	want := [][]string{
		{"0fd3eab9f4a3942fbe89db6e6a22ed58", "115285dc52d28134a377177ac1136ae8", "6b5275ddc557a12aaf80e6638e3b49c4", "2abbd7182d86bf4d00cedda008677a9f"},
		{"486c7a3e739070adf0e5965dae5a724f", "9e6a8c7634987e3f303377cf30cd656d", "b39dc21a51a4409797dd53cc3c1c57cc", "afa69360de57f05f8313647952c13370"},
	}
	for i, k := range keys {
		var dims [8]store.Dim
		n := l.digestsOf(&k, &dims)
		for j := range n {
			if got := dims[j].Digest.String(); got != want[i][j] {
				t.Errorf("key %d, %v: digest %s, want %s", i, dims[j].Fields, got, want[i][j])
			}
		}
	}
}

// TestDeviceDigests: a device changes exactly the dimensions that count
// the username, and each (username, device) pair is a dimension of its own.
func TestDeviceDigests(t *testing.T) {
	l, _ := newTest(t, Policy{LockoutBy: []Fields{IP, UserAgent, IP | UserAgent, Username, IP | Username, Username | UserAgent}})
	base := Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice", UserAgent: "ua"}
	digests := func(k Key) []store.Dim {
		var dims [8]store.Dim
		n := l.digestsOf(&k, &dims)
		return append([]store.Dim(nil), dims[:n]...)
	}
	with := func(user, dev string) Key { k := base; k.Username, k.Device = user, dev; return k }
	plain := digests(base)
	d1 := digests(with("alice", "d1"))
	d2 := digests(with("alice", "d2"))
	for i := range plain {
		counts := plain[i].Fields&Username != 0
		if got := d1[i].Digest == plain[i].Digest; got == counts {
			t.Errorf("%v: same digest with and without a device: %v, want %v", plain[i].Fields, got, !counts)
		}
		if got := d1[i].Digest == d2[i].Digest; got == counts {
			t.Errorf("%v: same digest for two devices: %v, want %v", plain[i].Fields, got, !counts)
		}
	}
	// The fields stay apart: neither the username nor the user agent
	// can spell a device, and the device joins the normalised username.
	pairs := [][2]Key{
		{with("alice", "d1"), with("alic", "ed1")},
		{with("alice", "d1"), with("alice", "")},
		{with("alice", "ua"), func() Key { k := with("alice", "d1"); k.UserAgent = "d1"; return k }()},
	}
	for _, p := range pairs {
		a, b := digests(p[0]), digests(p[1])
		for i := range a {
			if a[i].Fields&Username != 0 && a[i].Digest == b[i].Digest {
				t.Errorf("%v: %+v and %+v share the digest %v", a[i].Fields, p[0], p[1], a[i].Digest)
			}
		}
	}
	if a, b := digests(with(" Alice", "d1")), digests(with("alice", "d1")); a[3].Digest != b[3].Digest {
		t.Errorf("the device's username is not normalised: %v != %v", a[3].Digest, b[3].Digest)
	}
	// The index key of ResetUsername stays the username's own digest.
	var rule store.Rule
	var dims [8]store.Dim
	k := with("alice", "d1")
	l.prepare(&rule, &dims, store.OpFail, &k, true)
	want := l.h.usernameDigest("alice")
	if dims[3].UserKey != want {
		t.Errorf("UserKey with a device = %v, want the username's %v", dims[3].UserKey, want)
	}
}

// TestDeviceTrustedDuringAttack: bots lock a username; a device verified
// for it still gets in, has its own budget of guesses and locks on its
// own, and another device is not locked by it.
func TestDeviceTrustedDuringAttack(t *testing.T) {
	l, c := newTest(t, Policy{Limit: 3, LockoutBy: []Fields{Username}, Cooloff: Fixed(time.Hour)})
	bot := Key{IP: netip.MustParseAddr("203.0.113.9"), Username: "alice"}
	for i := range 3 {
		if v := l.Fail(bot); v.Locked != (i == 2) {
			t.Fatalf("bot failure %d: %+v", i+1, v)
		}
	}
	bot.IP = netip.MustParseAddr("198.51.100.7")
	if v := l.Fail(bot); !v.Locked || v.Failures != 3 {
		t.Fatalf("a bot from another IP: %+v, want locked", v)
	}
	user := Key{IP: netip.MustParseAddr("192.0.2.10"), Username: "Alice", Device: "d1"}
	if l.Locked(user) {
		t.Fatal("the trusted device is refused by the lock of the untrusted clients")
	}
	a := l.Begin(user)
	if !a.Allowed() {
		t.Fatalf("Begin on the trusted device refused: %+v", a.Verdict())
	}
	if v := a.Fail(); v.Locked || v.Failures != 1 {
		t.Fatalf("the trusted device's first failure: %+v, want 1 failure, not locked", v)
	}
	// A thief with the cookie gets that cookie's budget, no more.
	c.Set(time.Minute)
	for i := 2; i <= 3; i++ {
		if v := l.Fail(user); v.Failures != i || v.Locked != (i == 3) {
			t.Fatalf("trusted failure %d: %+v", i, v)
		}
	}
	if a := l.Begin(user); a.Allowed() {
		t.Fatal("the trusted device is admitted after its own Limit failures")
	}
	if v := l.Check(user); !v.Locked || v.RetryAfter != time.Hour || v.By != Username {
		t.Fatalf("the trusted device's lock: %+v", v)
	}
	d2 := user
	d2.Device = "d2"
	if a := l.Begin(d2); !a.Allowed() {
		t.Fatalf("device d2 refused by the lock of device d1: %+v", a.Verdict())
	} else {
		a.Succeed()
	}
	// The untrusted clients are still locked, as before.
	bot.Device = ""
	if !l.Locked(bot) || !l.Locked(Key{Username: "alice"}) {
		t.Fatal("the untrusted clients of alice are no longer locked")
	}
	// ResetUsername forgets the username's devices too.
	if n := l.ResetUsername("alice"); n != 2 {
		t.Errorf("ResetUsername forgot %d entries, want 2 (untrusted, d1)", n)
	}
	if l.Locked(user) || l.Locked(bot) {
		t.Error("locks remain after ResetUsername")
	}
}

// TestDeviceLeavesIPDimensions: a dimension that does not count the
// username counts a trusted device's attempts with everybody else's.
func TestDeviceLeavesIPDimensions(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 3, LockoutBy: []Fields{IP, IP | Username}})
	ip := netip.MustParseAddr("192.0.2.1")
	for _, name := range []string{"bob", "carol"} {
		l.Fail(Key{IP: ip, Username: name})
	}
	v := l.Fail(Key{IP: ip, Username: "alice", Device: "d1"})
	if !v.Locked || v.By != IP || v.Failures != 3 {
		t.Fatalf("the third failure from the IP, by a trusted device: %+v, want locked by ip", v)
	}
	if !l.Locked(Key{IP: ip, Username: "alice", Device: "d2"}) {
		t.Error("a trusted device is admitted from a locked IP")
	}
	// A policy without the username ignores devices altogether.
	l2, _ := newTest(t, Policy{Limit: 2, LockoutBy: []Fields{IP}})
	l2.Fail(Key{IP: ip, Username: "alice", Device: "d1"})
	if v := l2.Fail(Key{IP: ip, Username: "alice", Device: "d2"}); !v.Locked {
		t.Errorf("devices split an IP-only dimension: %+v", v)
	}
}
