package redisstore

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/axes-go/axes/storetest"
)

// TestSprayNotSpread checks that a policy with Spray on a SpreadSlots
// store is refused as unavailable, decision by decision, and leaves the
// store up: the spray count cannot be kept there.
func TestSprayNotSpread(t *testing.T) {
	s := mustNew(t, newCluster(t), Options{UseRequestTime: true, SpreadSlots: true})
	h := storetest.NewHarness(t, s, axes.Policy{Spray: axes.Spray{Limit: 3}})
	k := axes.Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice"}
	if v := h.L.Fail(k); !v.Locked || v.Reason != axes.ReasonUnavailable {
		t.Errorf("Fail = %+v, want refused as unavailable", v)
	}
	err := s.Apply(t.Context(), &store.Request{Op: store.OpCheck, Now: storetest.T0, Rule: &store.Rule{Limit: 3, Spray: store.Spray{Limit: 3}},
		Dims: []store.Dim{{Fields: axes.IP, Digest: axes.Digest{Hi: 1, Lo: 2}}}})
	if !errors.Is(err, ErrSpraySpread) {
		t.Errorf("Apply = %v, want ErrSpraySpread", err)
	}
	if s.Degraded() {
		t.Errorf("the store is degraded after a spray decision under SpreadSlots")
	}
}

// TestSprayLocalLockFailures checks that the local lock cache keeps a
// spray lock's usernames no longer than Redis does: Spray.Window, not the
// policy's Window, bounds when their count may have been forgotten.
func TestSprayLocalLockFailures(t *testing.T) {
	s := mustNew(t, newClient(t), Options{UseRequestTime: true, Prefix: prefix()})
	ready(t, s)
	h := storetest.NewHarness(t, s, axes.Policy{Limit: 100, Window: time.Hour, Cooloff: axes.Fixed(5 * time.Minute),
		Spray: axes.Spray{Limit: 2, Window: time.Minute, Cooloff: 10 * time.Minute}})
	ip := netip.MustParseAddr("192.0.2.77")
	h.L.Fail(axes.Key{IP: ip, Username: "a"})
	if v := h.L.Fail(axes.Key{IP: ip, Username: "b"}); v.Reason != axes.ReasonSpray || v.Failures != 2 {
		t.Fatalf("second username: %+v, want a spray lock with 2 usernames", v)
	}
	h.At(2 * time.Minute) // past Spray.Window: Redis forgets the usernames, the lock stays
	saved := s.Stats().RoundTripsSaved
	v := h.L.Check(axes.Key{IP: ip, Username: "c"})
	if v.Reason != axes.ReasonSpray || v.Failures != 0 {
		t.Errorf("after Spray.Window: %+v, want the spray lock with 0 usernames, as Redis says (cache answers: %d)",
			v, s.Stats().RoundTripsSaved-saved)
	}
}
