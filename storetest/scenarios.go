package storetest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
)

var (
	ip1 = Addr("192.0.2.1")
	ip2 = Addr("192.0.2.2")
	ip3 = Addr("192.0.2.3")
	ip4 = Addr("192.0.2.4")
	ip5 = Addr("192.0.2.5")
	kA  = axes.Key{IP: ip1, Username: "alice", UserAgent: "ua-1"}
	kB  = axes.Key{IP: ip2, Username: "bob", UserAgent: "ua-1"}
)

const (
	second = time.Second
	minute = time.Minute
)

func harness(t *testing.T, newStore func() store.Store, p axes.Policy, opts ...axes.Option) *Harness {
	return NewHarness(t, newStore(), p, opts...)
}

func init() {
	add("LimitAndCooloff", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{})
		h.Steps([]Step{
			{0, "fail", kA, V{Failures: 1, By: axes.IP}},
			{1 * minute, "fail", kA, V{Failures: 2}},
			{2 * minute, "locked", kA, V{Locked: false}},
			{2 * minute, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: 15 * minute, By: axes.IP}},
			{7 * minute, "check", kA, V{Locked: true, Failures: 3, RetryAfter: 10 * minute}},
			{7 * minute, "locked", kA, V{Locked: true}},
			{7 * minute, "check", kB, V{}},
			{7 * minute, "locked", kB, V{}},
			{7 * minute, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: 10 * minute}},
			{17*minute - second, "check", kA, V{Locked: true, Failures: 3, RetryAfter: second}},
			{17 * minute, "check", kA, V{}},
			{17 * minute, "locked", kA, V{}},
			{17 * minute, "fail", kA, V{Failures: 1}},
		})
	})
	add("InactivityWindow", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{Limit: 3, Cooloff: axes.Fixed(15 * minute)})
		h.Steps([]Step{
			{0, "fail", kA, V{Failures: 1}},
			{10 * minute, "fail", kA, V{Failures: 2}},
			{20 * minute, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
			{0, "fail", kB, V{Failures: 1}},
			{10 * minute, "fail", kB, V{Failures: 2}},
			{25*minute - second, "check", kB, V{Failures: 2}},
			{26 * minute, "fail", kB, V{Failures: 1}},
		})
		h2 := harness(t, ns, axes.Policy{Limit: 3, Cooloff: axes.Fixed(15 * minute), Window: time.Hour})
		h2.Steps([]Step{
			{0, "fail", kA, V{Failures: 1}},
			{50 * minute, "fail", kA, V{Failures: 2}},
			{100 * minute, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
			// The lock ends but the failures are remembered: the next
			// failure locks again.
			{115 * minute, "check", kA, V{Failures: 3}},
			{116 * minute, "fail", kA, V{Locked: true, Failures: 4, RetryAfter: 15 * minute}},
		})
	})
	add("RefusedAttempts", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{})
		h.Steps([]Step{
			{0, "fail", kA, V{Failures: 1}},
			{0, "fail", kA, V{Failures: 2}},
			{0, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
			{10 * minute, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: 5 * minute}},
			{15 * minute, "check", kA, V{}},
		})
		hx := harness(t, ns, axes.Policy{ExtendLockOnRefused: true})
		hx.Steps([]Step{
			{0, "fail", kA, V{Failures: 1}},
			{0, "fail", kA, V{Failures: 2}},
			{0, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
			{10 * minute, "fail", kA, V{Locked: true, Failures: 4, RetryAfter: 15 * minute}},
			{16 * minute, "check", kA, V{Locked: true, Failures: 4, RetryAfter: 9 * minute}},
			{25*minute - second, "locked", kA, V{Locked: true}},
			{25 * minute, "check", kA, V{}},
		})
	})
	add("OrAcrossDimensions", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{LockoutBy: []axes.Fields{axes.IP, axes.Username}})
		h.Steps([]Step{
			{0, "fail", axes.Key{IP: ip1, Username: "bob"}, V{Failures: 1}},
			{0, "fail", axes.Key{IP: ip2, Username: "bob"}, V{Failures: 2, By: axes.Username}},
			{0, "fail", axes.Key{IP: ip3, Username: "bob"}, V{Locked: true, Failures: 3, RetryAfter: 15 * minute, By: axes.Username}},
			{1 * minute, "check", axes.Key{IP: ip4, Username: "bob"}, V{Locked: true, Failures: 3, RetryAfter: 14 * minute, By: axes.Username}},
			{1 * minute, "check", axes.Key{IP: ip1, Username: "alice"}, V{Failures: 1}},
			{1 * minute, "fail", axes.Key{IP: ip5, Username: "u1"}, V{Failures: 1}},
			{1 * minute, "fail", axes.Key{IP: ip5, Username: "u2"}, V{Failures: 2, By: axes.IP}},
			{1 * minute, "fail", axes.Key{IP: ip5, Username: "u3"}, V{Locked: true, Failures: 3, RetryAfter: 15 * minute, By: axes.IP}},
			{1 * minute, "check", axes.Key{IP: ip5, Username: "u9"}, V{Locked: true, Failures: 3, RetryAfter: 15 * minute, By: axes.IP}},
		})
	})
	add("AndWithinCombination", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{LockoutBy: []axes.Fields{axes.IP | axes.Username}})
		bob1 := axes.Key{IP: ip1, Username: "bob"}
		h.Steps([]Step{
			{0, "fail", bob1, V{Failures: 1}},
			{0, "fail", bob1, V{Failures: 2}},
			{0, "fail", bob1, V{Locked: true, Failures: 3, RetryAfter: 15 * minute, By: axes.IP | axes.Username}},
			{0, "check", axes.Key{IP: ip2, Username: "bob"}, V{}},
			{0, "check", axes.Key{IP: ip1, Username: "alice"}, V{}},
			{0, "check", axes.Key{IP: ip1, Username: "bob", UserAgent: "other"}, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
		})
	})
	add("ResetOnSuccess", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{})
		h.Steps([]Step{
			{0, "fail", kA, V{Failures: 1}},
			{0, "fail", kA, V{Failures: 2}},
			{0, "success", kA, V{}},
			{0, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
		})
		hr := harness(t, ns, axes.Policy{ResetOnSuccess: true})
		hr.Steps([]Step{
			{0, "fail", kA, V{Failures: 1}},
			{0, "fail", kA, V{Failures: 2}},
			{0, "success", kA, V{}},
			{0, "fail", kA, V{Failures: 1}},
			{0, "fail", kA, V{Failures: 2}},
			{0, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
			// A success never lifts a current lock.
			{1 * minute, "success", kA, V{}},
			{1 * minute, "check", kA, V{Locked: true, Failures: 3, RetryAfter: 14 * minute}},
		})
	})
	add("NeverLockout", func(t *testing.T, ns func() store.Store) {
		p := axes.Policy{
			NeverLockout:     axes.MustParseIPSet("192.0.2.0/28", "2001:db8::/32"),
			NeverLockoutUser: func(k axes.Key) bool { return k.Username == "svc" },
			LockoutBy:        []axes.Fields{axes.IP, axes.Username},
		}
		h := harness(t, ns, p)
		var steps []Step
		for range 5 {
			steps = append(steps, Step{0, "fail", axes.Key{IP: ip1, Username: "x"}, V{}})
			steps = append(steps, Step{0, "fail", axes.Key{IP: Addr("::ffff:192.0.2.2"), Username: "x"}, V{}})
			steps = append(steps, Step{0, "fail", axes.Key{IP: Addr("198.51.100.7"), Username: "svc"}, V{}})
		}
		steps = append(steps,
			Step{0, "check", axes.Key{IP: Addr("198.51.100.7"), Username: "x"}, V{}},
			Step{0, "fail", axes.Key{IP: Addr("198.51.100.7"), Username: "x"}, V{Failures: 1}},
		)
		h.Steps(steps)
	})
	add("DenyAndOnlyAllow", func(t *testing.T, ns func() store.Store) {
		p := axes.Policy{
			Deny:         axes.MustParseIPSet("203.0.113.0/24"),
			OnlyAllow:    axes.MustParseIPSet("192.0.2.0/24", "203.0.113.0/24"),
			NeverLockout: axes.MustParseIPSet("203.0.113.9"),
		}
		h := harness(t, ns, p)
		denied := V{Locked: true, RetryAfter: axes.Indefinite, Reason: axes.ReasonDenied}
		h.Steps([]Step{
			{0, "fail", axes.Key{IP: Addr("203.0.113.9")}, denied},
			{0, "check", axes.Key{IP: Addr("203.0.113.9")}, denied},
			{0, "locked", axes.Key{IP: Addr("203.0.113.9")}, V{Locked: true}},
			{0, "check", axes.Key{IP: Addr("198.51.100.1")}, V{Locked: true, RetryAfter: axes.Indefinite, Reason: axes.ReasonNotAllowed}},
			{0, "locked", axes.Key{IP: Addr("198.51.100.1")}, V{Locked: true}},
			{0, "check", axes.Key{}, V{Locked: true, RetryAfter: axes.Indefinite, Reason: axes.ReasonNotAllowed}},
			{0, "fail", kA, V{Failures: 1}},
		})
	})
	add("ObserveOnly", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{ObserveOnly: true})
		h.Steps([]Step{
			{0, "fail", kA, V{Failures: 1}},
			{0, "fail", kA, V{Failures: 2}},
			{0, "fail", kA, V{Failures: 3, WouldLock: true, By: axes.IP}},
			{0, "fail", kA, V{Failures: 4, WouldLock: true}},
			{0, "check", kA, V{Failures: 4, WouldLock: true}},
			{0, "locked", kA, V{}},
		})
		a := h.L.Begin(kA)
		if !a.Allowed() {
			t.Errorf("ObserveOnly: Begin refused: %+v", a.Verdict())
		}
		a.Fail()
	})
	add("IPGrouping", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{})
		h.Steps([]Step{
			{0, "fail", axes.Key{IP: Addr("::ffff:192.0.2.1")}, V{Failures: 1}},
			{0, "fail", axes.Key{IP: ip1}, V{Failures: 2}},
			{0, "fail", axes.Key{IP: Addr("2001:db8::1")}, V{Failures: 1}},
			{0, "fail", axes.Key{IP: Addr("2001:db8::ffff:2")}, V{Failures: 2}},
			{0, "check", axes.Key{IP: Addr("2001:db8:0:1::1")}, V{}},
			{0, "fail", axes.Key{IP: Addr("fe80::1%eth0")}, V{Failures: 1}},
			{0, "fail", axes.Key{IP: Addr("fe80::1")}, V{Failures: 2}},
		})
		h128 := harness(t, ns, axes.Policy{IPv6Prefix: 128})
		h128.Steps([]Step{
			{0, "fail", axes.Key{IP: Addr("2001:db8::1")}, V{Failures: 1}},
			{0, "fail", axes.Key{IP: Addr("2001:db8::2")}, V{Failures: 1}},
		})
	})
	add("UnknownAddress", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{})
		h.Steps([]Step{
			{0, "fail", axes.Key{}, V{Failures: 1}},
			{0, "fail", axes.Key{Username: "x"}, V{Failures: 2}},
			{0, "fail", axes.Key{}, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
			{0, "check", axes.Key{IP: Addr("0.0.0.0")}, V{}},
			{0, "check", axes.Key{IP: Addr("::")}, V{}},
		})
	})
	add("UsernameNormalisation", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{LockoutBy: []axes.Fields{axes.Username}})
		h.Steps([]Step{
			{0, "fail", axes.Key{IP: ip1, Username: " Bob "}, V{Failures: 1}},
			{0, "fail", axes.Key{IP: ip2, Username: "BOB"}, V{Failures: 2}},
			{0, "fail", axes.Key{IP: ip3, Username: "bob\t"}, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
			{0, "fail", axes.Key{Username: "ÉLODIE"}, V{Failures: 1}},
			{0, "fail", axes.Key{Username: "élodie"}, V{Failures: 2}},
		})
		hc := harness(t, ns, axes.Policy{LockoutBy: []axes.Fields{axes.Username}, NormalizeUsername: func(s string) string { return s }})
		hc.Steps([]Step{
			{0, "fail", axes.Key{Username: "Bob"}, V{Failures: 1}},
			{0, "fail", axes.Key{Username: "bob"}, V{Failures: 1}},
		})
	})
	add("KeySeparation", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{LockoutBy: []axes.Fields{axes.IP | axes.Username}})
		h.Steps([]Step{
			{0, "fail", axes.Key{IP: Addr("2.3.4.5"), Username: "bob1"}, V{Failures: 1}},
			{0, "fail", axes.Key{IP: Addr("2.3.4.5"), Username: "bob1"}, V{Failures: 2}},
			{0, "check", axes.Key{IP: Addr("12.3.4.5"), Username: "bob"}, V{}},
			{0, "check", axes.Key{IP: Addr("2.3.4.5"), Username: "bob1", UserAgent: "x"}, V{Failures: 2}},
		})
		hu := harness(t, ns, axes.Policy{LockoutBy: []axes.Fields{axes.Username, axes.IP}})
		hu.Steps([]Step{
			{0, "fail", axes.Key{IP: Addr("9.9.9.1"), Username: "2.3.4.5"}, V{Failures: 1}},
			{0, "fail", axes.Key{IP: Addr("9.9.9.2"), Username: "2.3.4.5"}, V{Failures: 2}},
			{0, "fail", axes.Key{IP: Addr("9.9.9.3"), Username: "2.3.4.5"}, V{Locked: true, Failures: 3, RetryAfter: 15 * minute, By: axes.Username}},
			{0, "check", axes.Key{IP: Addr("2.3.4.5"), Username: "y"}, V{}},
			{0, "fail", axes.Key{IP: Addr("9.9.9.4"), Username: ""}, V{Failures: 1}},
			{0, "fail", axes.Key{IP: Addr("9.9.9.5"), Username: ""}, V{Failures: 2, By: axes.Username}},
			{0, "check", axes.Key{IP: Addr("9.9.9.6"), Username: "z"}, V{}},
			{0, "check", axes.Key{IP: Addr("9.9.9.6"), Username: " "}, V{Failures: 2}},
		})
		long := strings.Repeat("a", 1<<20)
		long2 := long[:len(long)-1] + "b"
		odd := "x\x00y\xff\xfe" + strings.Repeat("\x80", 300)
		hl := harness(t, ns, axes.Policy{LockoutBy: []axes.Fields{axes.Username | axes.UserAgent}})
		hl.Steps([]Step{
			{0, "fail", axes.Key{Username: long, UserAgent: odd}, V{Failures: 1}},
			{0, "fail", axes.Key{Username: long, UserAgent: odd}, V{Failures: 2}},
			{0, "fail", axes.Key{Username: long, UserAgent: odd}, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
			{0, "check", axes.Key{Username: long2, UserAgent: odd}, V{}},
			{0, "check", axes.Key{Username: long, UserAgent: odd[:len(odd)-1]}, V{}},
			{0, "check", axes.Key{Username: "x\x00y", UserAgent: odd}, V{}},
		})
		for _, lo := range hl.L.Lockouts() {
			if len(lo.Username) > axes.MaxIdentityBytes || len(lo.UserAgent) > axes.MaxIdentityBytes {
				t.Errorf("Lockouts keeps %d/%d bytes of identity, want at most %d", len(lo.Username), len(lo.UserAgent), axes.MaxIdentityBytes)
			}
		}
	})
	add("Backoff", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{Limit: 2, Cooloff: axes.Backoff{Base: minute, Factor: 2, Max: 5 * minute, Decay: time.Hour}})
		h.Steps([]Step{
			{0, "fail", kA, V{Failures: 1}},
			{0, "fail", kA, V{Locked: true, Failures: 2, RetryAfter: 1 * minute}},
			{1 * minute, "fail", kA, V{Failures: 1}},
			{1 * minute, "fail", kA, V{Locked: true, Failures: 2, RetryAfter: 2 * minute}},
			{3 * minute, "fail", kA, V{Failures: 1}},
			{3 * minute, "fail", kA, V{Locked: true, Failures: 2, RetryAfter: 4 * minute}},
			{7 * minute, "fail", kA, V{Failures: 1}},
			{7 * minute, "fail", kA, V{Locked: true, Failures: 2, RetryAfter: 5 * minute}},
			{12 * minute, "fail", kA, V{Failures: 1}},
			{12 * minute, "fail", kA, V{Locked: true, Failures: 2, RetryAfter: 5 * minute}},
			// An hour without a lock after the last one ends forgets the level.
			{17*minute + time.Hour, "fail", kA, V{Failures: 1}},
			{17*minute + time.Hour, "fail", kA, V{Locked: true, Failures: 2, RetryAfter: 1 * minute}},
		})
	})
	add("Tiers", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{Cooloff: axes.Tiers{{Failures: 3, Cooloff: minute}, {Failures: 5, Cooloff: 10 * minute}}})
		h.Steps([]Step{
			{0, "fail", kA, V{Failures: 1}},
			{0, "fail", kA, V{Failures: 2}},
			{0, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: minute}},
			{1 * minute, "check", kA, V{Failures: 3}},
			{1 * minute, "fail", kA, V{Locked: true, Failures: 4, RetryAfter: minute}},
			{2 * minute, "fail", kA, V{Locked: true, Failures: 5, RetryAfter: 10 * minute}},
			// The lock ends; the failures are remembered for the default
			// Window (24 hours here), so the next failure locks again.
			{12 * minute, "check", kA, V{Failures: 5}},
			{12 * minute, "fail", kA, V{Locked: true, Failures: 6, RetryAfter: 10 * minute}},
			{12*minute + 24*time.Hour - second, "check", kA, V{Failures: 6}},
			{12*minute + 24*time.Hour, "check", kA, V{}},
		})
	})
	add("TiersClimbedByPatientGuesser", func(t *testing.T, ns func() store.Store) {
		// A guesser who waits out every lock, then guesses again, climbs
		// every tier under the default Window, up to the last one.
		tables := []axes.Tiers{
			{{Failures: 3, Cooloff: minute}, {Failures: 6, Cooloff: axes.Indefinite}},
			{{Failures: 3, Cooloff: minute}, {Failures: 5, Cooloff: 10 * minute}, {Failures: 8, Cooloff: axes.Indefinite}},
			{{Failures: 2, Cooloff: time.Hour}, {Failures: 4, Cooloff: 12 * time.Hour}, {Failures: 6, Cooloff: 48 * time.Hour}, {Failures: 7, Cooloff: axes.Indefinite}},
			{{Failures: 5, Cooloff: 15 * minute}, {Failures: 10, Cooloff: 2 * time.Hour}},
		}
		for ti, tiers := range tables {
			for _, late := range []time.Duration{0, second, minute} {
				h := harness(t, ns, axes.Policy{Cooloff: tiers})
				k := axes.Key{IP: Addr(fmt.Sprintf("192.0.2.%d", 10+ti)), Username: "victim"}
				var at time.Duration
				last := tiers[len(tiers)-1]
				for guess := 1; guess <= last.Failures; guess++ {
					h.At(at)
					v := h.L.Fail(k)
					if v.Failures != guess {
						t.Fatalf("tiers %d, late %v: guess %d at %v counted as failure %d; the tiers were not climbed", ti, late, guess, at, v.Failures)
					}
					want := tierCooloff(tiers, guess)
					if guess < tiers[0].Failures {
						want = 0
					}
					if v.RetryAfter != want {
						t.Fatalf("tiers %d, late %v: guess %d locked for %v, want %v", ti, late, guess, v.RetryAfter, want)
					}
					if v.RetryAfter == axes.Indefinite {
						break
					}
					// Wait out the lock (or a second between guesses
					// below the first tier), arriving late by 'late'.
					at += max(v.RetryAfter, second) + late
				}
			}
		}
	})
	add("Forever", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{Cooloff: axes.Forever})
		h.Steps([]Step{
			{0, "fail", kA, V{Failures: 1}},
			{0, "fail", kA, V{Failures: 2}},
			{0, "fail", kA, V{Locked: true, Failures: 3, RetryAfter: axes.Indefinite}},
			{14 * minute, "check", kA, V{Locked: true, Failures: 3, RetryAfter: axes.Indefinite}},
			{1000 * time.Hour, "locked", kA, V{Locked: true}},
			{1000 * time.Hour, "reset", kA, V{}},
			{1000 * time.Hour, "check", kA, V{}},
		})
	})
	add("CooloffFuncAndLimitFunc", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{
			LockoutBy: []axes.Fields{axes.Username},
			Cooloff: axes.CooloffFunc(func(k axes.Key) time.Duration {
				if k.Username == "admin" {
					return time.Hour
				}
				return 0
			}),
			LimitFunc: func(k axes.Key) int {
				if k.Username == "admin" {
					return 2
				}
				return 3
			},
		})
		h.Steps([]Step{
			{0, "fail", axes.Key{Username: "admin"}, V{Failures: 1}},
			{0, "fail", axes.Key{Username: "admin"}, V{Locked: true, Failures: 2, RetryAfter: time.Hour}},
			{0, "fail", axes.Key{Username: "bob"}, V{Failures: 1}},
			{0, "fail", axes.Key{Username: "bob"}, V{Failures: 2}},
			{0, "fail", axes.Key{Username: "bob"}, V{Locked: true, Failures: 3, RetryAfter: 15 * minute}},
		})
	})
	add("Reservations", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{})
		a1, a2, a3 := h.L.Begin(kA), h.L.Begin(kA), h.L.Begin(kA)
		for i, a := range []*axes.Attempt{&a1, &a2, &a3} {
			if !a.Allowed() {
				t.Fatalf("attempt %d refused: %+v", i+1, a.Verdict())
			}
		}
		a4 := h.L.Begin(kA)
		Expect(t, "fourth in flight", a4.Verdict(), V{Locked: true, RetryAfter: axes.BusyRetryAfter, Reason: axes.ReasonBusy, By: axes.IP})
		a1.Succeed()
		a1.Succeed() // no-op
		a5 := h.L.Begin(kA)
		if !a5.Allowed() {
			t.Fatalf("slot freed by a success not reusable: %+v", a5.Verdict())
		}
		Expect(t, "a2 fails", a2.Fail(), V{Failures: 1})
		Expect(t, "a3 fails", a3.Fail(), V{Failures: 2})
		Expect(t, "a5 fails", a5.Fail(), V{Locked: true, Failures: 3, RetryAfter: 15 * minute})
		a5.Fail() // no-op
		Expect(t, "after double settle", h.L.Check(kA), V{Locked: true, Failures: 3, RetryAfter: 15 * minute})
		a4.Fail() // refused attempts have nothing to settle
		Expect(t, "refused settle", h.L.Check(kA), V{Locked: true, Failures: 3, RetryAfter: 15 * minute})
		a6 := h.L.Begin(kA)
		Expect(t, "begin while locked", a6.Verdict(), V{Locked: true, Failures: 3, RetryAfter: 15 * minute})

		// An unsettled reservation counts as a failure after the timeout.
		b1 := h.L.Begin(kB)
		h.At(axes.DefaultReserveTimeout - second)
		Expect(t, "before timeout", h.L.Check(kB), V{})
		h.At(axes.DefaultReserveTimeout + second)
		Expect(t, "after timeout", h.L.Check(kB), V{Failures: 1})
		b1.Fail()
		Expect(t, "late settle", h.L.Check(kB), V{Failures: 1})
		b2 := h.L.Begin(kB)
		b2.Succeed()
		Expect(t, "success", h.L.Check(kB), V{Failures: 1})
	})
	add("ReservationsTimeOutIntoLock", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{})
		for range 3 {
			if a := h.L.Begin(kA); !a.Allowed() {
				t.Fatal("refused")
			}
		}
		h.At(axes.DefaultReserveTimeout)
		Expect(t, "crashed handlers", h.L.Check(kA), V{Locked: true, Failures: 3, RetryAfter: 15 * minute})
	})
	add("ParallelReservations", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{Limit: 5, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username}})
		for round := range 3 {
			var admitted sync.WaitGroup
			var n, locks int64
			var mu sync.Mutex
			start := make(chan struct{})
			for range 100 {
				admitted.Add(1)
				go func() {
					defer admitted.Done()
					<-start
					a := h.L.Begin(kA)
					if a.Allowed() {
						v := a.Fail()
						mu.Lock()
						n++
						if v.Locked {
							locks++
						}
						mu.Unlock()
					}
				}()
			}
			close(start)
			admitted.Wait()
			if n != 5 || locks != 1 {
				t.Errorf("round %d: %d admitted, %d locked verdicts; want 5 and 1", round, n, locks)
			}
			h.L.ResetAll()
		}
	})
	add("Resets", func(t *testing.T, ns func() store.Store) {
		p := axes.Policy{Limit: 10, LockoutBy: []axes.Fields{axes.IP, axes.IP | axes.Username, axes.Username | axes.UserAgent, axes.IP | axes.UserAgent}}
		h := harness(t, ns, p)
		bob := axes.Key{IP: ip1, Username: "Bob", UserAgent: "ua"}
		alice := axes.Key{IP: ip1, Username: "alice", UserAgent: "ua"}
		carol := axes.Key{IP: ip2, Username: "bob", UserAgent: "ua"}
		h.L.Fail(bob)
		h.L.Fail(alice)
		h.L.Fail(carol)
		// Entries: IP ip1, ip2; IP|User (ip1,bob) (ip1,alice) (ip2,bob);
		// User|UA (bob,ua) (alice,ua); IP|UA (ip1,ua) (ip2,ua): 9.
		if n := h.L.ResetIP(Addr("::ffff:192.0.2.1")); n != 4 {
			t.Errorf("ResetIP cleared %d entries, want 4", n)
		}
		Expect(t, "bob after ResetIP", h.L.Check(bob), V{Failures: 2, By: axes.Username | axes.UserAgent})
		Expect(t, "carol after ResetIP", h.L.Check(carol), V{Failures: 2})
		if n := h.L.ResetUsername(" BOB"); n != 2 {
			t.Errorf("ResetUsername cleared %d entries, want 2", n)
		}
		Expect(t, "carol after ResetUsername", h.L.Check(carol), V{Failures: 1})
		h.L.Reset(carol)
		Expect(t, "carol after Reset", h.L.Check(carol), V{})
		Expect(t, "alice", h.L.Check(alice), V{Failures: 1, By: axes.Username | axes.UserAgent})
		if n := h.L.ResetAll(); n != 1 {
			t.Errorf("ResetAll cleared %d entries, want 1", n)
		}
		Expect(t, "alice after ResetAll", h.L.Check(alice), V{})
	})
	add("Lockouts", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{LockoutBy: []axes.Fields{axes.IP, axes.Username}})
		long := strings.Repeat("é", 300)
		h.L.Fail(axes.Key{IP: ip1, Username: "Bob", UserAgent: long})
		h.At(minute)
		h.L.Fail(axes.Key{IP: ip1, Username: "x"})
		h.L.Fail(axes.Key{IP: ip1, Username: "y"})
		h.At(2 * minute)
		got := h.L.Lockouts()
		if len(got) != 1 {
			t.Fatalf("Lockouts = %+v, want one", got)
		}
		lo := got[0]
		if lo.By != axes.IP || lo.IP.String() != "192.0.2.1/32" || lo.Failures != 3 || !lo.Until.Equal(T0.Add(16*minute)) || lo.Username != "y" {
			t.Errorf("Lockouts[0] = %+v", lo)
		}
		h.L.Fail(axes.Key{IP: ip2, Username: "Bob", UserAgent: long})
		h.L.Fail(axes.Key{IP: ip3, Username: "Bob", UserAgent: long})
		got = h.L.Lockouts()
		if len(got) != 2 || got[1].By != axes.Username || got[1].Username != "Bob" || got[1].IP.String() != "192.0.2.3/32" ||
			got[1].UserAgent != strings.Repeat("é", axes.MaxIdentityBytes/2) {
			t.Fatalf("Lockouts = %+v", got)
		}
		h.At(16 * minute)
		if got := h.L.Lockouts(); len(got) != 1 || got[0].By != axes.Username {
			t.Errorf("after the first lock ends: %+v", got)
		}
	})
	add("Events", func(t *testing.T, ns func() store.Store) {
		h := harness(t, ns, axes.Policy{LockoutBy: []axes.Fields{axes.IP, axes.Username}})
		h.L.Fail(kA)
		h.L.Fail(kA)
		h.Events()
		h.L.Fail(kA)
		h.L.Fail(kA)
		h.L.Success(kB)
		h.L.ResetIP(ip1)
		var kinds []string
		for _, e := range h.Events() {
			kinds = append(kinds, e.Kind.String()+":"+e.By.String())
		}
		want := "failure:ip lockout:ip failure:username lockout:username refused:ip success:none reset:none"
		if got := strings.Join(kinds, " "); got != want {
			t.Errorf("events:\n got %s\nwant %s", got, want)
		}
	})
}

// tierCooloff is the lock that failures remembered failures start under
// tiers: the highest tier reached, or the first.
func tierCooloff(tiers axes.Tiers, failures int) time.Duration {
	d := tiers[0].Cooloff
	for _, t := range tiers {
		if failures >= t.Failures {
			d = t.Cooloff
		}
	}
	return d
}

func init() {
	add("NIST80063B", func(t *testing.T, ns func() store.Store) {
		// The 100th consecutive failure of an account locks it, however
		// far apart the failures are; a success clears that account only.
		h := harness(t, ns, axes.NIST80063B())
		alice := axes.Key{IP: ip1, Username: "alice"}
		bob := axes.Key{IP: ip2, Username: "bob"}
		const spacing = 30 * 24 * time.Hour // a failure a month, for eight years
		var at time.Duration
		for i := 1; i <= 99; i++ {
			at += spacing
			h.At(at)
			if v := h.L.Fail(alice); v.Locked || v.Failures != i {
				t.Fatalf("failure %d, %v after the first: %+v", i, at, v)
			}
			if i == 50 {
				h.L.Fail(bob)
				h.L.Success(bob) // bob's success leaves alice's count alone
			}
		}
		h.Steps([]Step{
			{at + spacing, "fail", alice, V{Locked: true, Failures: 100, RetryAfter: axes.Indefinite, By: axes.Username}},
			{at + 2*spacing, "success", alice, V{}}, // a success never lifts a lock
			{at + 2*spacing, "locked", alice, V{Locked: true}},
			{at + 2*spacing, "check", bob, V{}},
		})
		// A success clears the count of that account only.
		carol := axes.Key{IP: ip3, Username: "carol"}
		dave := axes.Key{IP: ip3, Username: "dave"}
		for range 99 {
			h.L.Fail(carol)
			h.L.Fail(dave)
		}
		h.L.Success(carol)
		h.Steps([]Step{
			{at + 2*spacing, "fail", carol, V{Failures: 1}},
			{at + 2*spacing, "fail", dave, V{Locked: true, Failures: 100, RetryAfter: axes.Indefinite, By: axes.Username}},
		})
	})
}

func init() {
	add("DeviceCookies", func(t *testing.T, ns func() store.Store) {
		// A verified device counts the username's dimensions on its own:
		// bots locking the username do not refuse it, it locks after its
		// own Limit failures, and other devices and the IP dimension are
		// unaffected.
		h := harness(t, ns, axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.Username, axes.IP}, Cooloff: axes.Fixed(time.Hour)})
		bot1 := axes.Key{IP: ip1, Username: "alice"}
		bot2 := axes.Key{IP: ip2, Username: "Alice"}
		d1 := axes.Key{IP: ip3, Username: "alice", Device: "device-1"}
		d2 := axes.Key{IP: ip4, Username: "alice", Device: "device-2"}
		d1ip1 := axes.Key{IP: ip1, Username: "alice", Device: "device-1"}
		h.Steps([]Step{
			{0, "fail", bot1, V{Failures: 1}},
			{0, "fail", bot2, V{Failures: 2, By: axes.Username}},
			{0, "fail", bot1, V{Locked: true, Failures: 3, RetryAfter: time.Hour, By: axes.Username}},
			{minute, "locked", d1, V{}},
			{minute, "check", d1, V{}},
			{minute, "fail", d1, V{Failures: 1}},
			{minute, "fail", d1, V{Failures: 2, By: axes.Username}},
			{2 * minute, "fail", d1, V{Locked: true, Failures: 3, RetryAfter: time.Hour, By: axes.Username}},
			{3 * minute, "locked", d1, V{Locked: true}},
			{3 * minute, "check", d2, V{}},
			{3 * minute, "locked", bot2, V{Locked: true}},
			// The IP dimension is shared: ip1 holds bot1's two failures.
			{3 * minute, "check", axes.Key{IP: ip1, Username: "bob", Device: "device-3"}, V{Failures: 2, By: axes.IP}},
			{3 * minute, "success", d2, V{}},
			{3 * minute, "check", d2, V{}},
		})
		// ResetUsername forgets the username's devices too.
		if n := h.L.ResetUsername("alice"); n != 2 {
			t.Errorf("ResetUsername(alice) forgot %d entries, want 2 (untrusted, device-1)", n)
		}
		h.Steps([]Step{
			{3 * minute, "check", bot1, V{Failures: 2, By: axes.IP}},
			{3 * minute, "check", d1ip1, V{Failures: 2, By: axes.IP}},
			// d1's own IP still holds the lock d1's failures started.
			{3 * minute, "check", d1, V{Locked: true, Failures: 3, RetryAfter: time.Hour - minute, By: axes.IP}},
		})
	})
}

func init() {
	add("ChallengeBeforeLock", func(t *testing.T, ns func() store.Store) {
		// From ChallengeAt failures in any dimension an attempt without a
		// passed challenge is refused and counts nothing; with one it is
		// admitted and counts, and the limit still locks; a lock comes
		// before the challenge.
		h := harness(t, ns, axes.Policy{Limit: 4, ChallengeAt: 2, LockoutBy: []axes.Fields{axes.IP, axes.Username}})
		other := axes.Key{IP: ip1, Username: "carol"} // kA's IP, another username
		fail := func(at time.Duration, k axes.Key, passed bool, want V, challenge bool) {
			t.Helper()
			h.At(at)
			var v axes.Verdict
			if passed {
				v = h.L.FailPassed(k)
			} else {
				v = h.L.Fail(k)
			}
			Expect(t, fmt.Sprintf("fail(passed %v) at %v", passed, at), v, want)
			if v.Challenge != challenge {
				t.Errorf("fail(passed %v) at %v: Challenge %v, want %v", passed, at, v.Challenge, challenge)
			}
		}
		begin := func(at time.Duration, k axes.Key, passed bool, allowed bool, reason axes.Reason) *axes.Attempt {
			t.Helper()
			h.At(at)
			var a axes.Attempt
			if passed {
				a = h.L.BeginPassed(k)
			} else {
				a = h.L.Begin(k)
			}
			if a.Allowed() != allowed || a.Verdict().Reason != reason {
				t.Errorf("begin(passed %v) at %v: %+v, want allowed %v reason %v", passed, at, a.Verdict(), allowed, reason)
			}
			return &a
		}
		fail(0, kA, false, V{Failures: 1}, false)
		fail(minute, kA, false, V{Failures: 2}, true)
		// Refused for want of a challenge, in both dimensions, counting nothing.
		fail(2*minute, kA, false, V{Locked: true, Failures: 2, Reason: axes.ReasonChallenge}, true)
		fail(2*minute, other, false, V{Locked: true, Failures: 2, Reason: axes.ReasonChallenge}, true)
		begin(2*minute, kA, false, false, axes.ReasonChallenge)
		// With a passed challenge: admitted, counted.
		a := begin(3*minute, kA, true, true, axes.ReasonNone)
		Expect(t, "settle", a.Fail(), V{Failures: 3})
		// A reservation in flight counts toward ChallengeAt for Begin.
		b := begin(3*minute, kB, false, true, axes.ReasonNone)
		fail(3*minute, kB, false, V{Failures: 1}, false)
		begin(3*minute, kB, false, false, axes.ReasonChallenge)
		b.Cancel()
		// The limit locks, challenge or not; then the lock comes first.
		fail(4*minute, other, true, V{Locked: true, Failures: 4, RetryAfter: 15 * minute, Reason: axes.ReasonLockout}, false)
		fail(5*minute, kA, false, V{Locked: true, Failures: 4, RetryAfter: 14 * minute, Reason: axes.ReasonLockout}, false)
		begin(5*minute, kA, true, false, axes.ReasonLockout)
		if st := h.L.Stats(); st.Failures != 5 {
			t.Errorf("failures counted: %d, want 5 (challenge refusals count nothing)", st.Failures)
		}
	})
}
