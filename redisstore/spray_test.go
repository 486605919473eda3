package redisstore

import (
	"errors"
	"net/netip"
	"testing"

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
