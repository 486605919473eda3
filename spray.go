package axes

import (
	"fmt"
	"time"

	"github.com/axes-go/axes/store"
)

// Password-spray detection: one address trying many usernames, each of
// which may see a single failure, so that no per-username or per-IP count
// of the policy's own stops it unless its limit is low.

// Spray configures password-spray detection (Policy.Spray): a client IP
// (grouped by Policy.IPv6Prefix, so an IPv6 /64 by default) at whose
// failed attempts Limit distinct usernames have failed within Window is
// locked for Cooloff, whatever the policy's own Limit. A large NAT can then
// have a high per-IP Limit while a sprayer is stopped after a few names.
// The zero Spray is off and costs nothing.
//
// Structure: for each IP, the set of usernames that failed from it, kept
// exactly as one store entry per (IP, username) pair that remembers its
// failures for Window (and never locks), and one entry per IP that counts
// a failure only when the pair's entry remembers none: a username new to
// the IP. Both are ordinary entries of the store, apart from the policy's
// own dimensions by their digests. A locked IP's attempts are refused
// before anything is counted, so one IP holds at most Limit pair entries,
// plus one per Cooloff while its count is remembered (Window longer than
// Cooloff). The count is exact; under storage pressure (see
// WithMaxEntries) a pair entry the store cannot keep counts its username
// as new again: the IP is over-counted, never under-counted.
//
// Repeated failures of one username from the IP count once; a success
// does not forget a spray (ResetOnSuccess does not apply to it); Begin
// reserves in the IP's count for a new username, so racing Begins of new
// usernames cannot pass Limit together. A username merely in flight is
// still new (its attempt may be cancelled or succeed): a second Begin of
// it reserves in the count too, and only its first failure counts there.
// Under ExtendLockOnRefused a
// refused attempt pushes the end of the spray lock but counts no new
// username. Under ObserveOnly the count goes on and Verdict.WouldLock
// reports its limit, but nothing locks. ChallengeAt does not apply to the
// spray count. Attempts without a valid IP (the unknown-address bucket)
// are not counted for spraying.
//
// A spray lock answers every attempt from the IP with Reason ReasonSpray,
// By IP, Limit the spray Limit and Failures the usernames counted; it is
// listed by Lockouts (By IP) and lifted by ResetIP, which also forgets the
// IP's usernames; ResetUsername forgets the username's pair entries.
type Spray struct {
	// Limit is the number of distinct usernames failed from one IP within
	// Window at which the IP locks. 0 turns detection off. At most
	// MaxFailures.
	Limit int

	// Window is how long a username's failure from an IP, and the IP's
	// count, is remembered after the IP's last counted failure. Default
	// one hour.
	Window time.Duration

	// Cooloff is how long a spray lock lasts. Default one hour. With a
	// Window longer than Cooloff, an IP whose count is still remembered
	// when its lock ends is locked again by its next new username.
	Cooloff time.Duration
}

// Defaults of Spray.
const (
	defaultSprayWindow  = time.Hour
	defaultSprayCooloff = time.Hour
)

// resolve validates s and returns it with its defaults, as a store keeps
// it; the zero Spray stays zero. dims is the number of LockoutBy
// combinations.
func (s Spray) resolve(dims int) (store.Spray, error) {
	if s == (Spray{}) {
		return store.Spray{}, nil
	}
	switch {
	case s.Limit < 0 || s.Limit > MaxFailures:
		return store.Spray{}, fmt.Errorf("axes: Spray.Limit must be in 0..%d, got %d", MaxFailures, s.Limit)
	case s.Limit == 0:
		return store.Spray{}, fmt.Errorf("axes: Spray has a Window or Cooloff but no Limit")
	case s.Window < 0:
		return store.Spray{}, fmt.Errorf("axes: Spray.Window must not be negative, got %v", s.Window)
	case s.Cooloff < 0:
		return store.Spray{}, fmt.Errorf("axes: Spray.Cooloff must not be negative, got %v", s.Cooloff)
	case dims > maxDims-2:
		return store.Spray{}, fmt.Errorf("axes: with Spray, LockoutBy may hold at most %d combinations, got %d", maxDims-2, dims)
	}
	out := store.Spray{Limit: s.Limit, Window: s.Window, Cooloff: s.Cooloff}
	if out.Window == 0 {
		out.Window = defaultSprayWindow
	}
	if out.Cooloff == 0 {
		out.Cooloff = defaultSprayCooloff
	}
	return out, nil
}

// maxDims is the most dimensions one attempt has.
const maxDims = 8

// sprayDigest is the digest of the spray dimension of kind k
// (store.KindMember: the IP and username; store.KindSpray: the IP) under
// its own tag, so that it never meets a LockoutBy dimension. A verified
// device does not join it: spraying counts usernames.
func (h *hasher) sprayDigest(k store.Kind, fs *fieldSet) Digest {
	w := [5]uint64{tagSpray | uint64(k)<<8 | uint64(fs.ip.fam)<<16, fs.ip.hi, fs.ip.lo}
	n := 3
	if k == store.KindMember {
		w[3], w[4] = fs.user.Hi, fs.user.Lo
		n = 5
	}
	return h.mix(w[:n])
}

// sprayDims appends the two spray dimensions of an attempt with fields fs
// to dims[:n] and returns the new count, when the policy detects spraying
// and the attempt has a valid IP. ipKey is the IP's index key (zero when
// the caller needs none).
func (l *Limiter) sprayDims(dims *[8]store.Dim, n int, fs *fieldSet, ipKey Digest, index bool) int {
	if !fs.pfx.IsValid() {
		return n
	}
	dims[n] = store.Dim{Fields: IP | Username, Kind: store.KindMember, Digest: l.h.sprayDigest(store.KindMember, fs)}
	dims[n+1] = store.Dim{Fields: IP, Kind: store.KindSpray, Digest: l.h.sprayDigest(store.KindSpray, fs)}
	if index {
		dims[n].IPKey, dims[n].UserKey = ipKey, fs.user
		dims[n+1].IPKey = ipKey
	}
	return n + 2
}

// sprayKind is the kind of dimension i of an attempt of l: the LockoutBy
// dimensions come first, then the spray member and the spray count.
func (l *Limiter) sprayKind(i int) store.Kind {
	if i < len(l.dims) {
		return store.KindCount
	}
	return store.KindMember + store.Kind(i-len(l.dims))
}
