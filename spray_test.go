package axes

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes/store"
)

func TestSprayPolicyValidation(t *testing.T) {
	all := []Fields{IP, Username, UserAgent, IP | Username, IP | UserAgent, Username | UserAgent, IP | Username | UserAgent}
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{Spray: Spray{Limit: -1}}, "Spray.Limit"},
		{Policy{Spray: Spray{Limit: MaxFailures + 1}}, "Spray.Limit"},
		{Policy{Spray: Spray{Window: time.Hour}}, "no Limit"},
		{Policy{Spray: Spray{Limit: 3, Window: -1}}, "Spray.Window"},
		{Policy{Spray: Spray{Limit: 3, Cooloff: -1}}, "Spray.Cooloff"},
		{Policy{Spray: Spray{Limit: 3}, LockoutBy: all}, "at most 6"},
	} {
		if _, err := New(tc.p); err == nil || !strings.HasPrefix(err.Error(), "axes: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error about %q", tc.p.Spray, err, tc.want)
		}
	}
	l, _ := newTest(t, Policy{Spray: Spray{Limit: 3}, LockoutBy: all[:6]})
	if got := l.rule.Spray; got != (store.Spray{Limit: 3, Window: time.Hour, Cooloff: time.Hour}) {
		t.Errorf("defaults: %+v", got)
	}
	off, _ := newTest(t, Policy{LockoutBy: all})
	if off.rule.Spray != (store.Spray{}) {
		t.Errorf("spray on without Spray: %+v", off.rule.Spray)
	}
}

// TestSprayBoundedPerIP sprays ten thousand usernames from one address:
// the store holds the IP's own dimension, its spray count and at most
// Spray.Limit usernames, since a locked IP's attempts count nothing.
func TestSprayBoundedPerIP(t *testing.T) {
	l, c := newTest(t, Policy{Limit: MaxFailures, Spray: Spray{Limit: 5, Window: time.Hour, Cooloff: 10 * time.Minute}})
	ip := netip.MustParseAddr("203.0.113.1")
	locked := 0
	for i := range 10000 {
		c.Set(time.Duration(i) * 100 * time.Millisecond) // 1000 s in all: within the Window
		if l.Fail(Key{IP: ip, Username: fmt.Sprintf("user%d", i)}).Reason == ReasonSpray {
			locked++
		}
	}
	// 5 names lock; one more per 10-minute lock end while the count is
	// remembered (at 600 s after the first lock).
	if e := l.Stats().Entries; e > 1+1+5+2 {
		t.Errorf("the store holds %d entries for one spraying IP, want at most %d", e, 1+1+5+2)
	}
	if locked < 9990 {
		t.Errorf("%d of 10000 sprayed attempts refused by the spray lock", locked)
	}
}

// TestSprayOutlivesBaseWindow checks that the memory store's sweep keeps
// spray entries for Spray.Window, not the policy's shorter Window: an
// entry dropped early would let the IP try its usernames anew.
func TestSprayOutlivesBaseWindow(t *testing.T) {
	l, c := newTest(t, Policy{Limit: 100, Window: time.Minute, Spray: Spray{Limit: 4, Window: 2 * time.Hour}}, WithMaxEntries(64), WithSecret(sprayTestSecret))
	ip := netip.MustParseAddr("203.0.113.2")
	for _, u := range []string{"a", "b", "c"} {
		l.Fail(Key{IP: ip, Username: u})
	}
	c.Set(30 * time.Minute)
	sweepAll(l)
	if v := l.Fail(Key{IP: ip, Username: "a"}); v.Locked {
		t.Fatalf("a username failed before counted as new after a sweep: %+v", v)
	}
	if v := l.Fail(Key{IP: ip, Username: "d"}); v.Reason != ReasonSpray {
		t.Fatalf("the fourth username: %+v, want a spray lock", v)
	}
	// A snapshot keeps the kinds: restored, the IP is still locked and its
	// usernames still known.
	var buf bytes.Buffer
	if err := l.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	l2, c2 := newTest(t, Policy{Limit: 100, Window: time.Minute, Spray: Spray{Limit: 4, Window: 2 * time.Hour}}, WithSecret(sprayTestSecret))
	c2.Set(30 * time.Minute)
	if err := l2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if v := l2.Check(Key{IP: ip, Username: "e"}); v.Reason != ReasonSpray {
		t.Errorf("restored: %+v, want the spray lock", v)
	}
	los := l2.Lockouts()
	if len(los) != 1 || los[0].By != IP {
		t.Errorf("restored Lockouts %+v, want the spray lock by ip", los)
	}
	// Lifting it by ResetLockout forgets the count alone: the usernames
	// are known (restored as spray entries, kept past a sweep), so they
	// do not count again; three new ones stay below the limit.
	l2.ResetLockout(los[0])
	c2.Set(31 * time.Minute)
	sweepAll(l2)
	for _, u := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		if v := l2.Fail(Key{IP: ip, Username: u}); v.Locked {
			t.Errorf("after ResetLockout, %s: %+v", u, v)
		}
	}
}

// sweepAll sweeps every shard of l's memory store, as the store does
// before it grows or evicts.
func sweepAll(l *Limiter) {
	now := l.mem.instant(l.clock())
	for i := range l.mem.shards {
		sh := &l.mem.shards[i]
		sh.mu.Lock()
		l.mem.sweep(sh, 0, len(sh.ctrl), now)
		sh.mu.Unlock()
	}
}

var sprayTestSecret = []byte("spray-test-secret-0123456789")

func TestSprayNoAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation allocates")
	}
	l, _ := newTest(t, Policy{Limit: 1 << 15, Spray: Spray{Limit: 1 << 15}})
	k := Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice"}
	l.Fail(k)
	for name, f := range map[string]func(){
		"Locked":     func() { sinkBool = l.Locked(k) },
		"Fail":       func() { sinkVerdict = l.Fail(k) },
		"Begin+Fail": func() { a := l.Begin(k); sinkVerdict = a.Fail() },
	} {
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s with Spray allocates %v times per call", name, n)
		}
	}
}

// TestSprayExtend: under ExtendLockOnRefused a refused attempt pushes the
// spray lock's end but adds no username.
func TestSprayExtend(t *testing.T) {
	l, c := newTest(t, Policy{Limit: 100, ExtendLockOnRefused: true, Spray: Spray{Limit: 2, Cooloff: 10 * time.Minute}})
	ip := netip.MustParseAddr("203.0.113.3")
	l.Fail(Key{IP: ip, Username: "a"})
	if v := l.Fail(Key{IP: ip, Username: "b"}); v.Reason != ReasonSpray || v.RetryAfter != 10*time.Minute {
		t.Fatalf("%+v", v)
	}
	c.Set(5 * time.Minute)
	if v := l.Fail(Key{IP: ip, Username: "c"}); v.Reason != ReasonSpray || v.RetryAfter != 10*time.Minute || v.Failures != 2 {
		t.Errorf("refused and extended: %+v, want 10m left and 2 usernames", v)
	}
	if n := l.Stats().Entries; n != 1+2+1 {
		t.Errorf("%d entries, want the IP, two usernames and the spray count", n)
	}
}

// TestSprayCountEvictedKeepsItsWindow evicts an IP's spray count under
// storage pressure half an hour after its only failure, with the policy's
// own Window (1 minute) long past and the spray Window (2 hours) not: the
// count folds into the sketch under the spray rule, so the sprayer's next
// usernames still lock at the limit. Folded under the policy's rule, the
// count would be forgotten at eviction, and an attacker who fills the
// table between usernames would never be stopped.
func TestSprayCountEvictedKeepsItsWindow(t *testing.T) {
	l, c := newTest(t, Policy{Limit: 100, Window: time.Minute, Spray: Spray{Limit: 3, Window: 2 * time.Hour}}, WithSecret(sprayTestSecret))
	k := Key{IP: netip.MustParseAddr("203.0.113.9"), Username: "a"}
	l.Fail(k)
	c.Set(30 * time.Minute)
	var fs fieldSet
	l.fieldsOf(&k, &fs)
	d := l.h.sprayDigest(store.KindSpray, &fs)
	st := l.mem
	sh := &st.shards[st.shardOf(d)]
	sh.mu.Lock()
	i := sh.find(toSlotKey(d), d)
	if i < 0 {
		sh.mu.Unlock()
		t.Fatal("the IP's spray count is not in the table")
	}
	st.fold(sh, &sh.slots[i], st.instant(l.clock()))
	st.remove(sh, i)
	sh.mu.Unlock()
	for _, u := range []string{"b", "c"} {
		k.Username = u
		v := l.Fail(k)
		if u == "c" && v.Reason != ReasonSpray {
			t.Fatalf("third username after the count was evicted: %+v, want a spray lock", v)
		}
	}
}
