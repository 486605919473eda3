package axes

import "testing"

// TestLockCacheLockstepLean is TestLockCacheLockstep for limiters without
// events, whose refusals and Locked answers take the lean paths of the
// lock cache: verdicts, counters and lockouts agree with a limiter
// without the cache.
func TestLockCacheLockstepLean(t *testing.T) {
	for _, pc := range lockstepPolicies() {
		t.Run(pc.name, func(t *testing.T) {
			served := int64(0)
			for seed := range uint64(6) {
				served += lockstepEvents(t, pc.p, seed, false)
			}
			if served == 0 && !pc.p.ObserveOnly {
				t.Error("the lock cache served nothing")
			}
		})
	}
}
