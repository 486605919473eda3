package benchmarks

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
)

// ipBase is the first client address of every key set: 10.0.0.0. Index i
// maps to ipBase+i, so up to 4,127,195,135 distinct addresses are available.
const ipBase = 10 << 24

// Keyset is a pre-generated set of n distinct keys. All key strings live in
// one backing string, so building a set of 1M keys costs two allocations and
// reading a key allocates nothing.
type Keyset struct {
	by  Dimension
	buf string   // every key string, back to back
	off []uint32 // key i is buf[off[i]:off[i+1]]
}

// NewKeyset generates n distinct keys of dimension by. IP keys are the dotted
// forms of 10.0.0.0+i; username keys are "user" followed by i in decimal.
func NewKeyset(n int, by Dimension) *Keyset {
	per := 13 // "10.255.255.255" is 14 bytes; most are shorter
	if by == ByUsername {
		per = 11
	}
	b := make([]byte, 0, n*per)
	off := make([]uint32, 1, n+1)
	for i := range n {
		b = appendKey(b, uint32(i), by)
		off = append(off, uint32(len(b)))
	}
	return &Keyset{by: by, buf: string(b), off: off}
}

// Len returns the number of keys.
func (ks *Keyset) Len() int { return len(ks.off) - 1 }

// Key returns key i; it does not allocate.
func (ks *Keyset) Key(i int) Key {
	return Key{S: ks.buf[ks.off[i]:ks.off[i+1]], IP: addrOf(uint32(i))}
}

// FreshKey returns key i of dimension by with a newly allocated string, as a
// server would hold after parsing a request; memory measurements use it so
// that a subject that keeps the key string is charged for it.
func FreshKey(i uint32, by Dimension) Key {
	var a [24]byte
	return Key{S: string(appendKey(a[:0], i, by)), IP: addrOf(i)}
}

func addrOf(i uint32) netip.Addr {
	v := ipBase + i
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func appendKey(b []byte, i uint32, by Dimension) []byte {
	if by == ByUsername {
		b = append(b, "user"...)
		return strconv.AppendUint(b, uint64(i), 10)
	}
	v := ipBase + i
	b = strconv.AppendUint(b, uint64(v>>24), 10)
	for shift := 16; shift >= 0; shift -= 8 {
		b = append(b, '.')
		b = strconv.AppendUint(b, uint64(byte(v>>shift)), 10)
	}
	return b
}

// ZipfIndexes returns count key indexes in [0, n) drawn from a Zipf
// distribution with exponent s (s > 1), from a fixed seed so that every
// subject sees the same sequence. Rank r maps to index r*p mod n for a large
// prime p, so popular keys are scattered over the key set rather than
// adjacent.
func ZipfIndexes(count, n int, s float64, seed uint64) []uint32 {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	z := rand.NewZipf(r, s, 1, uint64(n-1))
	const p = 2654435761 // prime; coprime with every n used here
	out := make([]uint32, count)
	for i := range out {
		out[i] = uint32(z.Uint64() * p % uint64(n))
	}
	return out
}
