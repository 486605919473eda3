package axeshttp

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"

	"github.com/axes-go/axes"
)

// Proxies describes the reverse proxies in front of the application and
// the forwarding header they write. The zero value trusts nobody: the client
// IP is the socket peer.
//
// A forwarding header is only as trustworthy as whoever wrote it. Anybody can
// send "X-Forwarded-For: 203.0.113.7"; only a proxy you run (or your CDN)
// appends the address it really saw. Proxies therefore names the proxies
// whose words count, either by address (Trusted) or by number (Hops), and the
// resolver reads the header right to left, from the hop nearest to the
// application towards the client, stopping at the first address that no
// trusted proxy would have written.
type Proxies struct {
	// Header is the forwarding header the trusted proxies write:
	// "X-Forwarded-For", "Forwarded" (RFC 7239), "X-Real-IP", or the name of
	// any other header holding a single IP literal, such as
	// "CF-Connecting-IP" or "True-Client-IP". Empty means none: the resolver
	// uses the socket peer only, whatever Trusted holds (and Hops must be 0).
	Header string

	// Trusted holds the addresses of the proxies, as axes.ParseIPSet parses
	// them ("10.0.0.0/8", "2001:db8::1"). A header is honoured only when the
	// socket peer is in the set; a list header (X-Forwarded-For, Forwarded)
	// is then read right to left, skipping entries in the set, and the first
	// entry outside it is the client. When every entry is trusted, the
	// leftmost one is the client. Membership costs a binary search, so
	// listing a CDN's hundreds of ranges is fine.
	Trusted axes.IPSet

	// Hops, when positive, selects the trusted-hop-count mode for list
	// headers: exactly Hops proxies sit in front of the application, each
	// appending one entry, so the client is the Hops-th entry from the right
	// (1: the rightmost). Use it when the proxies' addresses are not known,
	// as behind some cloud load balancers. If Trusted is also set, the socket
	// peer must be inside it. Hops is not allowed with a single-IP header.
	//
	// Without Trusted, this mode believes the header of whoever connects.
	// It is safe only when the network refuses every connection to the
	// application that does not come through the proxies (a firewall or
	// security group admitting the load balancer alone, a listener on a
	// private network): a client that reaches the application directly
	// writes the header itself and picks its address for every attempt.
	// Prefer Trusted whenever the proxies' addresses are known.
	Hops int
}

// maxHops bounds Proxies.Hops; no real deployment stacks more proxies.
const maxHops = 64

// Resolver determines the client IP address of a request from the socket
// peer and, when configured, a forwarding header written by trusted proxies.
//
// It never fails: on a missing, malformed or untrusted header it answers the
// socket peer. Its cost is linear in the size of the header and it does not
// allocate, however many entries a client crams into it. A Resolver is
// immutable and safe for concurrent use. The zero Resolver (and a nil one)
// answers the socket peer.
type Resolver struct {
	header  string // canonical header name; "" for peer only
	kind    headerKind
	trusted axes.IPSet
	hops    int
}

type headerKind uint8

const (
	kindSingle    headerKind = iota // one IP literal, one field line
	kindXFF                         // comma-separated IP literals
	kindForwarded                   // RFC 7239
)

// NewResolver validates p and returns a Resolver for it. It returns an
// error prefixed "axes:" for an invalid header name, Hops out of [0, 64],
// Hops without a Header or with a single-address header, and for a Header
// with neither Trusted nor Hops: such a header, list or single address,
// would be believed from anybody who connects.
func NewResolver(p Proxies) (*Resolver, error) {
	r := &Resolver{hops: p.Hops, trusted: p.Trusted}
	if p.Header != "" {
		if !validHeaderName(p.Header) {
			return nil, fmt.Errorf("axes: invalid forwarding header name %q", p.Header)
		}
		r.header = textproto.CanonicalMIMEHeaderKey(p.Header)
		switch r.header {
		case "X-Forwarded-For":
			r.kind = kindXFF
		case "Forwarded":
			r.kind = kindForwarded
		default:
			r.kind = kindSingle
		}
	}
	if p.Hops < 0 || p.Hops > maxHops {
		return nil, fmt.Errorf("axes: Proxies.Hops %d out of range [0, %d]", p.Hops, maxHops)
	}
	if p.Hops > 0 && r.header == "" {
		return nil, errors.New("axes: Proxies.Hops needs a Header")
	}
	if p.Hops > 0 && r.kind == kindSingle {
		return nil, fmt.Errorf("axes: Proxies.Hops cannot be used with the single-address header %s", r.header)
	}
	if r.header != "" && p.Hops == 0 && p.Trusted.IsEmpty() {
		return nil, fmt.Errorf("axes: header %s would be trusted from anybody: set Proxies.Trusted or Proxies.Hops", r.header)
	}
	return r, nil
}

// MustResolver is like NewResolver but panics on an invalid configuration.
// It is meant for tests and examples.
func MustResolver(p Proxies) *Resolver {
	r, err := NewResolver(p)
	if err != nil {
		panic(err)
	}
	return r
}

// ClientIP returns the client address of req: the socket peer, or an address
// written into the forwarding header by a trusted proxy. IPv4-mapped IPv6
// addresses are unmapped and zones dropped. If req.RemoteAddr is not an IP
// address (a Unix socket, say) and no trusted header applies, the result is
// the invalid zero netip.Addr.
func (r *Resolver) ClientIP(req *http.Request) netip.Addr {
	peer := PeerIP(req)
	if r == nil || r.header == "" || !peer.IsValid() {
		return peer
	}
	if !r.trusted.IsEmpty() && !r.trusted.Contains(peer) {
		return peer
	}
	lines := req.Header[r.header]
	if len(lines) == 0 {
		return peer
	}
	switch {
	case r.kind == kindSingle:
		if len(lines) != 1 {
			return peer // a client-sent copy next to the proxy's: ambiguous
		}
		a, ok := parseNode(trimOWS(lines[0]), false)
		if !ok {
			return peer
		}
		return a
	case r.hops > 0:
		return r.byHops(lines, peer)
	default:
		return r.byTrust(lines, peer)
	}
}

// PeerIP returns the address of the socket peer of req (req.RemoteAddr),
// unmapped and without zone, or the invalid zero netip.Addr if RemoteAddr is
// not an IP address.
func PeerIP(req *http.Request) netip.Addr {
	ra := req.RemoteAddr
	if ap, err := netip.ParseAddrPort(ra); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(ra); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// byTrust walks the entries right to left, skipping trusted addresses: the
// first untrusted one is the client; the leftmost one if all are trusted;
// the peer if an entry on the way is not a valid address.
func (r *Resolver) byTrust(lines []string, peer netip.Addr) netip.Addr {
	result := peer
	eachReverse(r.kind, lines, func(a netip.Addr, ok bool) bool {
		if !ok {
			result = peer
			return false
		}
		result = a
		return r.trusted.Contains(a)
	})
	return result
}

// byHops returns the hops-th entry from the right, provided it and every
// entry to its right are valid addresses; the peer otherwise.
func (r *Resolver) byHops(lines []string, peer netip.Addr) netip.Addr {
	result, n := peer, 0
	eachReverse(r.kind, lines, func(a netip.Addr, ok bool) bool {
		if !ok {
			return false
		}
		if n++; n == r.hops {
			result = a
			return false
		}
		return true
	})
	return result
}

// eachReverse calls f for the entries of the list header made of lines, from
// the right (the hop nearest to the application) to the left, with each
// entry's address and whether it is a valid IP literal, until f returns
// false. The parts of a header that proxies append are on the right, so
// whatever a client wrote on the left, however broken, cannot change how the
// proxies' entries are split. Empty list elements count as invalid entries:
// a proxy never writes them. The cost is linear in the bytes visited.
func eachReverse(kind headerKind, lines []string, f func(netip.Addr, bool) bool) {
	for li := len(lines) - 1; li >= 0; li-- {
		line := lines[li]
		for {
			var i int
			if kind == kindForwarded {
				i = lastForwardedComma(line)
			} else {
				i = strings.LastIndexByte(line, ',')
			}
			elem := line[i+1:]
			var (
				a  netip.Addr
				ok bool
			)
			if kind == kindForwarded {
				a, ok = forwardedFor(elem)
			} else {
				a, ok = parseNode(trimOWS(elem), false)
			}
			if !f(a, ok) {
				return
			}
			if i < 0 {
				break
			}
			line = line[:i]
		}
	}
}

// lastForwardedComma returns the index of the last comma of s that is not
// inside a quoted-string, or -1. It scans backwards; a quote is escaped when
// an odd number of backslashes precede it.
func lastForwardedComma(s string) int {
	inQuote := false
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case ',':
			if !inQuote {
				return i
			}
		case '"':
			if !inQuote {
				inQuote = true
				continue
			}
			bs := 0
			for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
				bs++
			}
			if bs%2 == 0 {
				inQuote = false
			}
		}
	}
	return -1
}

// forwardedFor parses one RFC 7239 forwarded-element (pairs separated by
// ';') and returns the address of its "for" node. An element with broken
// syntax, without exactly one "for" parameter, or whose node is not an IP
// literal ("unknown", "_hidden") is invalid.
func forwardedFor(s string) (netip.Addr, bool) {
	var (
		node string
		nFor int
	)
	for {
		s = trimOWS(s)
		if s == "" {
			break
		}
		if s[0] == ';' {
			s = s[1:]
			continue
		}
		var name, val string
		name, s = token(s)
		if name == "" || s == "" || s[0] != '=' {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s != "" && s[0] == '"' {
			var ok bool
			if val, s, ok = quotedString(s); !ok {
				return netip.Addr{}, false
			}
		} else if val, s = token(s); val == "" {
			return netip.Addr{}, false
		}
		if strings.EqualFold(name, "for") {
			nFor++
			node = val
		}
		s = trimOWS(s)
		if s != "" && s[0] != ';' {
			return netip.Addr{}, false
		}
	}
	if nFor != 1 {
		return netip.Addr{}, false
	}
	return parseNode(node, true)
}

// token splits the longest RFC 9110 token off the start of s.
func token(s string) (tok, rest string) {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// quotedString parses an RFC 9110 quoted-string at the start of s (s[0] is
// '"') and returns its unescaped value and the rest of s. It allocates only
// when the string holds escapes.
func quotedString(s string) (val, rest string, ok bool) {
	escaped := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			escaped = true
			i++
		case c == '"':
			val = s[1:i]
			if escaped {
				var b strings.Builder
				for j := 0; j < len(val); j++ {
					if val[j] == '\\' {
						j++
					}
					b.WriteByte(val[j])
				}
				val = b.String()
			}
			return val, s[i+1:], true
		case c < ' ' && c != '\t' || c == 0x7f:
			return "", "", false
		}
	}
	return "", "", false
}

// parseNode parses a node written by a proxy: an IP literal, optionally in
// brackets and optionally followed by a port ("192.0.2.1:8080",
// "[2001:db8::1]:443"). Zones are dropped and IPv4-mapped addresses
// unmapped; a zone holding ':', '/', '[' or ']' makes the node invalid. "unknown" and anything else that is not an address is invalid.
// In Forwarded, an obfuscated port ("_abc") is allowed.
func parseNode(s string, forwarded bool) (netip.Addr, bool) {
	if s == "" || len(s) > 100 {
		return netip.Addr{}, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return netip.Addr{}, false // also in zones, which netip would accept
		}
	}
	host, port := s, ""
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return netip.Addr{}, false
			}
			port = port[1:]
			if port == "" {
				return netip.Addr{}, false
			}
		}
		if !strings.Contains(host, ":") {
			return netip.Addr{}, false // brackets hold IPv6 only
		}
	} else if i := strings.IndexByte(s, ':'); i >= 0 && strings.IndexByte(s[i+1:], ':') < 0 {
		// Exactly one colon: IPv4 with a port.
		host, port = s[:i], s[i+1:]
		if port == "" {
			return netip.Addr{}, false
		}
	}
	if port != "" && !validPort(port, forwarded) {
		return netip.Addr{}, false
	}
	// netip accepts any bytes in a zone, but a zone holding address or
	// port syntax ("::ffff:0:1%:", "[fe80::1%a:b]:80") is no interface
	// name a proxy writes: it makes the split of address and port
	// ambiguous, so the entry is invalid rather than guessed at.
	if i := strings.IndexByte(host, '%'); i >= 0 && strings.ContainsAny(host[i+1:], ":/[]") {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func validPort(p string, forwarded bool) bool {
	if forwarded && p[0] == '_' {
		for i := 1; i < len(p); i++ {
			c := p[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
		return len(p) > 1
	}
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return s != ""
}
