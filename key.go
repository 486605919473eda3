package axes

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/axes-go/axes/store"
	"github.com/cespare/xxhash/v2"
)

// Fields says which parts of a Key a dimension counts. Combine them with |:
// axes.IP|axes.Username counts each (IP, username) pair separately. Its
// String method gives names such as "ip+username".
type Fields = store.Fields

// The fields of a Key that a dimension can count.
const (
	IP        = store.IP        // the client IP, grouped by Policy.IPv6Prefix for IPv6
	Username  = store.Username  // the username, after Policy.NormalizeUsername
	UserAgent = store.UserAgent // the User-Agent header as sent

	allFields = IP | Username | UserAgent
)

// Digest is a keyed 128-bit digest of one dimension of a Key: the fields the
// dimension counts, each tagged and length-prefixed, hashed with the
// limiter's secret. Lockout.Digest names a lock by it (see
// Limiter.ResetLockout); its String form is 32 hexadecimal digits.
type Digest = store.Digest

// Key identifies the client of one login attempt. The zero IP is a valid
// value: every attempt whose address is unknown shares one "unknown address"
// bucket, distinct from every real address, so resolve the client IP before
// counting (see package axeshttp). Usernames and user agents may be any bytes,
// of any length; the limiter keeps only their digests (and, for current locks,
// a truncated copy for Lockouts).
type Key struct {
	IP        netip.Addr
	Username  string
	UserAgent string

	// Device is the identifier of a device the application has verified
	// as one that logged in as Username before (a device cookie, see
	// axeshttp.Devices); empty for an untrusted client. When it is set,
	// every dimension that counts the username counts (username, device)
	// instead: the device has its own failures and locks, apart from the
	// username's untrusted clients, so a lock that an attack on the
	// username starts does not refuse it, and it locks on its own after
	// Limit failures. Dimensions without the username are unchanged.
	//
	// SECURITY: set Device only from a credential the application has
	// verified itself (an authenticated, unexpired device cookie bound to
	// this username), never from anything a client sends as it is. A
	// client that could choose Device would get a fresh set of guesses
	// with every value it invents.
	Device string
}

// Field tags: each field is hashed under its own tag so that a username
// spelling an IP address never meets that address.
const (
	tagIP        = 'I'
	tagUsername  = 'U'
	tagUserAgent = 'A'
	tagDevice    = 'V'
	tagDimension = 'D'
	tagSpray     = 'S' // the dimensions of spray detection (spray.go)
)

// hasher derives digests from a limiter's secret. Its zero value is not
// usable; see newHasher.
type hasher struct {
	k [4]uint64 // seeds: k[0], k[1] for fields, k[2], k[3] for dimensions
}

func newHasher(secret []byte) hasher {
	var h hasher
	for i := range h.k {
		var d xxhash.Digest
		d.ResetWithSeed(0x9e3779b97f4a7c15 * uint64(i+1))
		d.Write([]byte("axes-go/seed/v1"))
		d.Write(secret)
		h.k[i] = d.Sum64()
	}
	return h
}

// ipBytes is the canonical 17-byte form of an address after grouping: a
// family byte (0 unknown, 4, or 6 plus the prefix bits) and the masked
// 16-byte address, kept as its two big-endian 64-bit halves, the words the
// digests absorb.
type ipBytes struct {
	fam    byte
	hi, lo uint64
}

// canonicalIP unmaps IPv4-mapped IPv6, drops zones and masks IPv6 to
// v6bits. It returns the grouped prefix (invalid for the zero address).
func canonicalIP(a netip.Addr, v6bits int) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, 32) // the common case: no zone, nothing to unmap
	}
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(v6bits) // v6bits is validated to 1..128
	return p
}

func encodeIP(p netip.Prefix) (b ipBytes) {
	if !p.IsValid() {
		return b // the unknown-address bucket: family 0
	}
	a := p.Addr()
	if a.Is4() {
		// As16 of an IPv4 address is its IPv4-mapped form, ::ffff:a.b.c.d.
		v := a.As4()
		b.fam = 4
		b.lo = 0xffff<<32 | uint64(binary.BigEndian.Uint32(v[:]))
		return b
	}
	b.fam = 0x80 | byte(p.Bits()) // 6 with bits; never collides with 4 or 0
	a16 := a.As16()
	b.hi, b.lo = binary.BigEndian.Uint64(a16[:8]), binary.BigEndian.Uint64(a16[8:])
	return b
}

// fieldDigest hashes one tagged, length-prefixed string field.
func (h *hasher) fieldDigest(tag byte, s string) Digest {
	if len(s) <= shortField {
		d, _ := shortHash(h, tag, s, false)
		return d
	}
	var hdr [9]byte
	hdr[0] = tag
	binary.LittleEndian.PutUint64(hdr[1:], uint64(len(s)))
	var d xxhash.Digest
	d.ResetWithSeed(h.k[0])
	d.Write(hdr[:])
	d.WriteString(s)
	hi := d.Sum64()
	d.ResetWithSeed(h.k[1])
	d.Write(hdr[:])
	d.WriteString(s)
	return Digest{Hi: hi, Lo: d.Sum64()}
}

// Fields of at most shortField bytes (most usernames and user agents) are
// hashed in one pass by shortHash; longer ones stream through seeded
// digests. Which way depends only on the field's length, so every path to
// a field's digest agrees.
const shortField = 128

// shortHash is the digest of the short field s under tag: a keyed
// multiply-mix with two independent lanes (as mix), absorbing the tag and
// length, then s in little-endian 64-bit words (the last one zero-padded:
// the length is absorbed, so the padding is unambiguous), each word into
// both lanes in the same pass. With lower it hashes s with ASCII letters
// lowered, eight bytes at a time, and fails (ok false) at the first byte
// that is not ASCII, which the caller lowers otherwise.
func shortHash[T string | []byte](h *hasher, tag byte, s T, lower bool) (d Digest, ok bool) {
	a, b := h.k[0]^mixP2, h.k[1]^mixP0
	ka, kb := h.k[2]|1, h.k[3]|1
	x := uint64(tag) | uint64(len(s))<<8
	a = mum(a^x^mixP1, ka^mixP3)
	b = mum(b^x^mixP3, kb^mixP1)
	for len(s) > 0 {
		var w uint64
		if len(s) >= 8 {
			w = uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
				uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
			s = s[8:]
		} else {
			for i := len(s) - 1; i >= 0; i-- {
				w = w<<8 | uint64(s[i])
			}
			s = s[:0]
		}
		if lower {
			const hi = 0x8080808080808080
			if w&hi != 0 {
				return Digest{}, false
			}
			// Each byte below 0x80: adding 0x3f sets its high bit from
			// 'A' on, adding 0x25 from '[' on, with no carry between bytes.
			w |= ((w + 0x3f3f3f3f3f3f3f3f) &^ (w + 0x2525252525252525) & hi) >> 2
		}
		a = mum(a^w^mixP0, ka^mixP1)
		b = mum(b^w^mixP2, kb^mixP3)
	}
	a = mum(a^mixP1, kb^mixP0)
	b = mum(b^mixP3, ka^mixP2)
	return Digest{Hi: a, Lo: b}, true
}

// usernameDigest hashes the default normal form of s (see
// DefaultNormalizeUsername) without building it.
func (h *hasher) usernameDigest(s string) Digest {
	if n := len(s); n == 0 || s[0] <= ' ' || s[0] >= utf8.RuneSelf || s[n-1] <= ' ' || s[n-1] >= utf8.RuneSelf {
		// Names that start and end with a visible ASCII byte (almost
		// all) have no white space to trim: ASCII white space is at most
		// ' ', and every other Unicode space starts with a byte of
		// 0x80 or more.
		s = strings.TrimSpace(s)
	}
	if len(s) <= shortField {
		// ASCII names (almost all) are lowered word by word while hashed.
		if d, ok := shortHash(h, tagUsername, s, true); ok {
			return d
		}
	}
	if !needsLower(s) {
		return h.fieldDigest(tagUsername, s)
	}
	ascii := isASCII(s)
	n := len(s)
	if !ascii {
		n = loweredLen(s)
	}
	if n <= shortField {
		var buf [shortField]byte
		out := buf[:0]
		for len(s) > 0 {
			var w int
			out, w = lowerNext(out, s)
			s = s[w:]
		}
		d, _ := shortHash(h, tagUsername, out, false)
		return d
	}
	var hdr [9]byte
	hdr[0] = tagUsername
	binary.LittleEndian.PutUint64(hdr[1:], uint64(n))
	var d0, d1 xxhash.Digest
	d0.ResetWithSeed(h.k[0])
	d1.ResetWithSeed(h.k[1])
	d0.Write(hdr[:])
	d1.Write(hdr[:])
	var buf [256]byte
	for len(s) > 0 {
		var out []byte
		if ascii {
			m := min(len(s), len(buf))
			for i := range m {
				c := s[i]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				buf[i] = c
			}
			out, s = buf[:m], s[m:]
		} else {
			out, s = lowerChunk(buf[:0], s)
		}
		d0.Write(out)
		d1.Write(out)
	}
	return Digest{Hi: d0.Sum64(), Lo: d1.Sum64()}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// needsLower reports whether lower-casing s could change it.
func needsLower(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return true
		}
	}
	return false
}

// lowerRune returns the lower-case form of the rune at the start of s and
// its width; invalid bytes are kept as they are (width 1, ok false) so that
// distinct invalid names stay distinct.
func lowerRune(s string) (r rune, width int, ok bool) {
	c := s[0]
	if c < utf8.RuneSelf {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		return rune(c), 1, true
	}
	r, width = utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && width == 1 {
		return 0, 1, false
	}
	return unicode.ToLower(r), width, true
}

// lowerNext appends the lower-case form of the rune at the start of s
// (non-empty) to dst and returns dst and the rune's width in s.
func lowerNext(dst []byte, s string) ([]byte, int) {
	r, w, ok := lowerRune(s)
	switch {
	case !ok:
		return append(dst, s[0]), 1
	case r < utf8.RuneSelf:
		return append(dst, byte(r)), w
	}
	return utf8.AppendRune(dst, r), w
}

func loweredLen(s string) int {
	n := 0
	for len(s) > 0 {
		r, w, ok := lowerRune(s)
		if ok {
			n += utf8.RuneLen(r)
		} else {
			n++
		}
		s = s[w:]
	}
	return n
}

// lowerChunk appends the lowered form of a prefix of s to dst, stopping
// before dst would outgrow its capacity, and returns the rest of s.
func lowerChunk(dst []byte, s string) ([]byte, string) {
	for len(s) > 0 && cap(dst)-len(dst) >= utf8.UTFMax {
		var w int
		dst, w = lowerNext(dst, s)
		s = s[w:]
	}
	return dst, s
}

// DefaultNormalizeUsername is the username normaliser used when
// Policy.NormalizeUsername is nil: it trims Unicode white space and maps
// letters to lower case (simple case mapping). Bytes that are not valid
// UTF-8 are kept as they are, so distinct invalid names stay distinct. The
// limiter applies it while hashing, without allocating.
func DefaultNormalizeUsername(s string) string {
	s = strings.TrimSpace(s)
	if !needsLower(s) {
		return s
	}
	b := make([]byte, 0, loweredLen(s))
	for len(s) > 0 {
		var w int
		b, w = lowerNext(b, s)
		s = s[w:]
	}
	return string(b)
}

// fieldSet holds the per-field digests of one Key, computed once and shared
// by every dimension that counts the field.
type fieldSet struct {
	ip     ipBytes
	user   Digest
	ua     Digest
	dev    Digest // of Key.Device, when device is set
	device bool   // Key.Device is not empty
	pfx    netip.Prefix
}

// dimensionDigest combines the fields of f into the dimension's digest.
// The inputs are of fixed size (the grouped IP, and the 128-bit digests of
// the variable-length fields), so they are absorbed as 64-bit words by a
// keyed multiply-mix with two independent lanes, much cheaper than hashing
// bytes; the field digests themselves come from seeded xxhash.
//
// A verified device (Key.Device) joins the username: a dimension that
// counts the username also absorbs the device's digest, under a flag of
// its own in the first word, so that (username, device) is counted apart
// from the username alone. A key without a device gets the same digest as
// before devices existed.
func (h *hasher) dimensionDigest(f Fields, fs *fieldSet) Digest {
	var w [9]uint64
	w[0] = tagDimension | uint64(f)<<8
	n := 1
	if f&IP != 0 {
		w[0] |= uint64(fs.ip.fam)<<16 | 1<<24
		w[1], w[2] = fs.ip.hi, fs.ip.lo
		n = 3
	}
	if f&Username != 0 {
		w[n], w[n+1] = fs.user.Hi, fs.user.Lo
		n += 2
		if fs.device {
			w[0] |= 1 << 25
			w[n], w[n+1] = fs.dev.Hi, fs.dev.Lo
			n += 2
		}
	}
	if f&UserAgent != 0 {
		w[n], w[n+1] = fs.ua.Hi, fs.ua.Lo
		n += 2
	}
	return h.mix(w[:n])
}

// Odd constants for the mixer (those of wyhash).
const (
	mixP0 = 0xa0761d6478bd642f
	mixP1 = 0xe7037ed1a0b428db
	mixP2 = 0x8ebc6af09c88c6e3
	mixP3 = 0x589965cc75374cc3
)

// mum multiplies a and b into 128 bits and folds the halves.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// mix absorbs words into two lanes keyed by the limiter's secret and
// returns them as a digest, never the zero digest (which marks empty slots
// in stores).
func (h *hasher) mix(words []uint64) Digest {
	a, b := h.k[2], h.k[3]
	ka, kb := h.k[0]|1, h.k[1]|1
	for _, x := range words {
		a = mum(a^x^mixP0, ka^mixP1)
		b = mum(b^x^mixP2, kb^mixP3)
	}
	n := uint64(len(words))
	a = mum(a^n^mixP1, kb^mixP0)
	b = mum(b^n^mixP3, ka^mixP2)
	if a == 0 && b == 0 {
		b = 1
	}
	return Digest{Hi: a, Lo: b}
}

// ipDigest is the digest of the IP field alone, used to index entries for
// ResetIP.
func (h *hasher) ipDigest(b *ipBytes) Digest {
	w := [3]uint64{tagIP | uint64(b.fam)<<16, b.hi, b.lo}
	return h.mix(w[:])
}
