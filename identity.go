package axes

import (
	"net/netip"
	"unsafe"

	"github.com/axes-go/axes/store"
)

// The memory store keeps the identity of a current lock (for Lockouts and
// snapshots) packed in one string, within a budget: identities take at
// most identityBytesPerEntry bytes per entry of the cap, counted as
// identityCost. A lock that starts when the budget is spent is kept and
// listed all the same, by digest only.
//
// Packed form: family (0 unknown, 4, 6), prefix bits, username length
// (uint16, little-endian), the address (0, 4 or 16 bytes), the username,
// the user agent.

// identityBytesPerEntry is the identity budget per entry of the cap.
const identityBytesPerEntry = 64

// identityOverhead is what an identity costs beyond its packed bytes: its
// map entry, with the map's spare room, and the rounding of its
// allocation.
const identityOverhead = 96

// identityCost is what the packed identity p counts against the budget:
// an upper bound on the heap it holds.
func identityCost(p string) int { return packedCost(len(p)) }

func packedCost(n int) int { return n + n/8 + identityOverhead }

// packedLen returns the length of id packed.
func packedLen(id *store.Identity) int {
	n := 4 + len(truncate(id.Username)) + len(truncate(id.UserAgent))
	if id.IP.IsValid() {
		if id.IP.Addr().Is4() {
			n += 4
		} else {
			n += 16
		}
	}
	return n
}

// packIdentity returns id, cut to MaxIdentityBytes, as one new string, so
// that the store never retains the caller's (possibly huge) strings.
func packIdentity(id *store.Identity) string {
	u, ua := truncate(id.Username), truncate(id.UserAgent)
	b := make([]byte, 0, packedLen(id))
	var fam, nbits byte
	if id.IP.IsValid() {
		fam, nbits = 6, byte(id.IP.Bits())
		if id.IP.Addr().Is4() {
			fam = 4
		}
	}
	b = append(b, fam, nbits, byte(len(u)), byte(len(u)>>8))
	switch fam {
	case 4:
		a := id.IP.Addr().As4()
		b = append(b, a[:]...)
	case 6:
		a := id.IP.Addr().As16()
		b = append(b, a[:]...)
	}
	b = append(b, u...)
	b = append(b, ua...)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// unpackIdentity returns the identity packIdentity packed, with strings of
// its own. A malformed p (never stored) gives the zero store.Identity.
func unpackIdentity(p string) store.Identity {
	if len(p) < 4 {
		return store.Identity{}
	}
	fam, nbits, ul := p[0], int(p[1]), int(p[2])|int(p[3])<<8
	rest := p[4:]
	var id store.Identity
	switch fam {
	case 4:
		if len(rest) < 4 {
			return store.Identity{}
		}
		id.IP = netip.PrefixFrom(netip.AddrFrom4([4]byte([]byte(rest[:4]))), nbits)
		rest = rest[4:]
	case 6:
		if len(rest) < 16 {
			return store.Identity{}
		}
		id.IP = netip.PrefixFrom(netip.AddrFrom16([16]byte([]byte(rest[:16]))), nbits)
		rest = rest[16:]
	}
	if ul > len(rest) {
		return store.Identity{}
	}
	id.Username = string(rest[:ul])
	id.UserAgent = string(rest[ul:])
	return id
}

// setIdentity gives slot i of sh the identity id, within the budget, or
// no identity when the budget is spent. sh.mu must be held.
func (st *memStore) setIdentity(sh *shard, i int, id *store.Identity) {
	sl := &sh.slots[i]
	st.dropIdentity(sh, i)
	cost := packedCost(packedLen(id))
	if st.idBytes.Add(int64(cost)) > int64(st.idBudget) {
		st.idBytes.Add(-int64(cost))
		sh.idsOverBudget++
		return
	}
	sh.ids[sl.k] = packIdentity(id)
	sl.flags |= flagIdentity
}

// dropIdentity forgets the identity of slot i of sh, if any. sh.mu must be
// held.
func (st *memStore) dropIdentity(sh *shard, i int) {
	sl := &sh.slots[i]
	if sl.flags&flagIdentity == 0 {
		return
	}
	st.idBytes.Add(-int64(identityCost(sh.ids[sl.k])))
	delete(sh.ids, sl.k)
	sl.flags &^= flagIdentity
}

// Lockout is one current lock, as Lockouts lists it, with the client of the
// attempt that started it: its grouped IP, and its username and user agent
// as sent, cut to MaxIdentityBytes (empty, with only the digest, for a lock
// that started once the identity budget was spent).
type Lockout = store.Lockout

// MaxIdentityBytes bounds the username and user agent kept for each current
// lock.
const MaxIdentityBytes = store.MaxIdentityBytes

func truncate(s string) string {
	if len(s) <= MaxIdentityBytes {
		return s
	}
	// Cut at a rune boundary when the string is UTF-8.
	n := MaxIdentityBytes
	for n > MaxIdentityBytes-4 && n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
