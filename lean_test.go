package axes

import (
	"strings"
	"testing"
)

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

// TestUsernameDigestLowersWords checks the word-at-a-time lowering of
// ASCII usernames against the digest of their normal form, for every ASCII
// byte at every position of names of every short length, and around the
// short field's limit.
func TestUsernameDigestLowersWords(t *testing.T) {
	h := newHasher([]byte("lower-words-secret-0123456789abc"))
	for n := 1; n <= 17; n++ {
		for pos := range n {
			for c := range 128 {
				b := []byte("xQ9z@[`{AZaz09_-xyzw")[:n]
				b[pos] = byte(c)
				s := string(b)
				if got, want := h.usernameDigest(s), h.fieldDigest(tagUsername, DefaultNormalizeUsername(s)); got != want {
					t.Fatalf("%q: %v, want %v", s, got, want)
				}
			}
		}
	}
	for _, n := range []int{shortField - 1, shortField, shortField + 1} {
		s := strings.Repeat("Ab", n)[:n]
		if got, want := h.usernameDigest(s), h.fieldDigest(tagUsername, DefaultNormalizeUsername(s)); got != want {
			t.Fatalf("length %d: %v, want %v", n, got, want)
		}
		if got, want := h.usernameDigest(s+"É"), h.fieldDigest(tagUsername, DefaultNormalizeUsername(s+"É")); got != want {
			t.Fatalf("length %d and a non-ASCII letter: %v, want %v", n, got, want)
		}
	}
	if h.fieldDigest(tagUsername, "ab") == h.fieldDigest(tagUsername, "ab\x00") {
		t.Fatal("a zero byte at the end is the padding")
	}
}
