package axesaudit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/axes-go/axes"
)

// Tags that keep the digests of different fields apart: a username that
// spells an IP never has that IP's digest.
const (
	tagIP        = 'i'
	tagUsername  = 'u'
	tagUserAgent = 'a'
	tagClient    = 'c'
)

// identity turns the identities of an event into what is stored: keyed
// digests for search, and display forms that are masked unless raw.
type identity struct {
	key       []byte
	raw       bool
	normalize func(string) string
}

// hasher computes the digests of one goroutine; it is not safe for
// concurrent use.
type hasher struct {
	id  *identity
	mac hash.Hash
	buf []byte
}

func (id *identity) hasher() *hasher {
	return &hasher{id: id, mac: hmac.New(sha256.New, id.key)}
}

func (h *hasher) sum(tag byte, v []byte) []byte {
	h.mac.Reset()
	h.buf = append(h.buf[:0], tag)
	h.buf = append(h.buf, v...)
	h.mac.Write(h.buf)
	return h.mac.Sum(nil)
}

// ip returns the digest of a, or nil for the zero address.
func (h *hasher) ip(a netip.Addr) []byte {
	if !a.IsValid() {
		return nil
	}
	return h.sum(tagIP, ipBytes(a))
}

// username returns the digest of the normalised name, or nil for "".
func (h *hasher) username(name string) []byte {
	if name == "" {
		return nil
	}
	return h.sum(tagUsername, []byte(name))
}

// userAgent returns the digest of ua, or nil for "".
func (h *hasher) userAgent(ua string) []byte {
	if ua == "" {
		return nil
	}
	return h.sum(tagUserAgent, []byte(ua))
}

// client returns the digest of the whole (IP, username, user agent)
// triple, each part length-prefixed, that keys the attempts table.
func (h *hasher) client(a netip.Addr, name, ua string) []byte {
	h.mac.Reset()
	var b []byte
	if a.IsValid() {
		b = ipBytes(a)
	}
	var n [5]byte
	n[0] = tagClient
	for _, p := range [...][]byte{b, []byte(name), []byte(ua)} {
		binary.BigEndian.PutUint32(n[1:], uint32(len(p)))
		h.mac.Write(n[:])
		h.mac.Write(p)
		n[0] = 0
	}
	return h.mac.Sum(nil)
}

func ipBytes(a netip.Addr) []byte { return a.Unmap().WithZone("").AsSlice() }

// canonicalUsername is the form of a username that is hashed and
// searched: cut to axes.MaxIdentityBytes, then normalised.
func (id *identity) canonicalUsername(name string) string {
	return id.normalize(cut(name))
}

// displayIP is the stored form of a: the address when raw, otherwise its
// first half as axes.LogEvents prints it (192.0.*.*, or the /64 of an IPv6
// address).
func (id *identity) displayIP(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap()
	if id.raw {
		return a.String()
	}
	if a.Is4() {
		b := a.As4()
		return strconv.Itoa(int(b[0])) + "." + strconv.Itoa(int(b[1])) + ".*.*"
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// displayUsername is the stored form of a username: as given when raw,
// otherwise its first character and "***".
func (id *identity) displayUsername(given, canonical string) string {
	if id.raw {
		return clean(given)
	}
	if canonical == "" {
		return ""
	}
	r, _ := utf8.DecodeRuneInString(canonical)
	if r == 0 || r == utf8.RuneError {
		r = '?'
	}
	return string(r) + "***"
}

// displayUserAgent is the stored form of a user agent: as given when raw,
// otherwise its product name (up to the first '/', space or '(', at most
// 16 bytes) and "/***", as in "Mozilla/***".
func (id *identity) displayUserAgent(ua string) string {
	if id.raw {
		return clean(ua)
	}
	if ua == "" {
		return ""
	}
	p := ua
	if i := strings.IndexAny(p, "/ ("); i >= 0 {
		p = p[:i]
	}
	p = clean(cutAt(p, 16))
	return p + "/***"
}

// cut shortens s to axes.MaxIdentityBytes, at a rune boundary when s is
// UTF-8 there, as the limiter does for the identities of its locks.
func cut(s string) string { return cutAt(s, axes.MaxIdentityBytes) }

func cutAt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	m := n
	for m > n-4 && m > 0 && !utf8.RuneStart(s[m]) {
		m--
	}
	if m == n-4 || m == 0 {
		m = n // not UTF-8 there: cut at the byte
	}
	return s[:m]
}

// clean makes s storable as text in every database: invalid UTF-8 and NUL
// bytes (which PostgreSQL refuses in text) become U+FFFD.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}
