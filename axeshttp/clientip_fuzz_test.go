package axeshttp

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/axes-go/axes"
)

// FuzzClientIP feeds hostile peers and forwarding headers to every kind of
// resolver. Properties: no panic; the answer is the peer, or the peer is a
// trusted proxy and the answer was written into the header; the
// X-Forwarded-For walk agrees with a plain split-based reference, which
// also refuses, by its own reading, an entry whose zone holds address or
// port syntax (':', '/', '[' or ']'); and a Forwarded header carrying the
// same entries gives the same answer.
func FuzzClientIP(f *testing.F) {
	seeds := []struct{ remote, header string }{
		{"10.1.1.1:80", "203.0.113.5"},
		{"10.1.1.1:80", "1.1.1.1, 203.0.113.5, 10.2.2.2"},
		{"10.1.1.1:80", "unknown, [2001:db8::1]:443, 10.9.9.9:80"},
		{"10.1.1.1:80", ",,,"},
		{"10.1.1.1:80", "fe80::1%eth0, ::ffff:10.0.0.1"},
		{"198.51.100.1:80", "203.0.113.5"},
		{"[::ffff:10.1.1.1]:80", "for=\"[2001:db8::1]:_x\";proto=https, for=203.0.113.5"},
		{"10.1.1.1:80", "for=\"a\\\"b, for=1.2.3.4"},
		{"10.1.1.1:80", "x=\", for=\"[2001:db8::5]:80\""},
		{"@", "203.0.113.5"},
		{"10.1.1.1:80", strings.Repeat("10.0.0.1,", 300) + "x"},
		{"10.1.1.1:80", "\x00\xff\"\\;=,"},
		{"10.1.1.1:80", "::ffff:0:1%:"},
		{"10.1.1.1:80", "203.0.113.5, [fe80::1%a:b]:80"},
		{"10.1.1.1:80", "fe80::1%x]"},
		{"10.1.1.1:80", "fe80::1%eth0/64, 10.2.2.2"},
		{"10.1.1.1:80", "[fe80::1%[]]"},
	}
	for _, s := range seeds {
		f.Add(s.remote, s.header)
	}
	trusted := axes.MustParseIPSet("10.0.0.0/8", "2001:db8::/32")
	xff := MustResolver(Proxies{Header: "X-Forwarded-For", Trusted: trusted})
	fwd := MustResolver(Proxies{Header: "Forwarded", Trusted: trusted})
	single := MustResolver(Proxies{Header: "X-Real-IP", Trusted: trusted})
	hops := MustResolver(Proxies{Header: "X-Forwarded-For", Hops: 2})
	p1, p2 := netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")
	isTrusted := func(a netip.Addr) bool { return p1.Contains(a) || p2.Contains(a) }

	f.Fuzz(func(t *testing.T, remote, header string) {
		peer := PeerIP(&http.Request{RemoteAddr: remote})
		lines := strings.Split(header, "\n")
		mk := func(name string, lines []string) *http.Request {
			return &http.Request{RemoteAddr: remote, Header: http.Header{name: lines}}
		}
		check := func(name string, r *Resolver, got netip.Addr, needTrustedPeer bool) {
			t.Helper()
			if got == peer {
				return
			}
			if needTrustedPeer && !isTrusted(peer) {
				t.Fatalf("%s: honoured a header from untrusted peer %v: got %v", name, peer, got)
			}
			if got.Is4() && !inHeader(header, got) {
				t.Fatalf("%s: %v is neither the peer %v nor in the header", name, got, peer)
			}
			if !got.IsValid() || got.Is4In6() || got.Zone() != "" {
				t.Fatalf("%s: returned unnormalised %v", name, got)
			}
		}

		gotXFF := xff.ClientIP(mk("X-Forwarded-For", lines))
		check("xff", xff, gotXFF, true)
		if want := referenceXFF(peer, lines, isTrusted); gotXFF != want {
			t.Fatalf("xff: got %v, reference %v", gotXFF, want)
		}
		check("forwarded", fwd, fwd.ClientIP(mk("Forwarded", lines)), true)
		check("single", single, single.ClientIP(mk("X-Real-IP", lines)), true)
		check("hops", hops, hops.ClientIP(mk("X-Forwarded-For", lines)), false)

		// The same entries as Forwarded elements must resolve alike.
		if !strings.ContainsAny(header, "\"\\_;=") {
			var fl []string
			for _, line := range lines {
				var elems []string
				for _, e := range strings.Split(line, ",") {
					elems = append(elems, `for="`+trimOWS(e)+`"`)
				}
				fl = append(fl, strings.Join(elems, ", "))
			}
			if got := fwd.ClientIP(mk("Forwarded", fl)); got != gotXFF {
				t.Fatalf("forwarded %q = %v, xff %q = %v", fl, got, lines, gotXFF)
			}
		}
	})
}

// inHeader reports whether header holds got, written as it is or as an
// IPv4-mapped IPv6 address (which resolvers unmap).
func inHeader(header string, got netip.Addr) bool {
	if strings.Contains(header, got.String()) {
		return true
	}
	for _, tok := range strings.FieldsFunc(header, func(r rune) bool { return strings.ContainsRune(" \t\n,;=\"[]", r) }) {
		if h, _, ok := strings.Cut(tok, "%"); ok {
			tok = h
		}
		if a, err := netip.ParseAddr(tok); err == nil && a.Unmap() == got {
			return true
		}
	}
	return false
}

// referenceXFF is the obvious, allocation-heavy form of the trusted walk.
func referenceXFF(peer netip.Addr, lines []string, trusted func(netip.Addr) bool) netip.Addr {
	if !peer.IsValid() || !trusted(peer) {
		return peer
	}
	var entries []string
	for _, l := range lines {
		entries = append(entries, strings.Split(l, ",")...)
	}
	result := peer
	for i := len(entries) - 1; i >= 0; i-- {
		e := strings.Trim(entries[i], " \t")
		if badZone(e) {
			return peer
		}
		a, ok := parseNode(e, false)
		if !ok {
			return peer
		}
		result = a
		if !trusted(a) {
			break
		}
	}
	return result
}

// badZone reports whether the entry e has a zone ("%..." up to the end, or
// up to the last ']' of a bracketed entry) that holds ':', '/', '[' or ']'.
func badZone(e string) bool {
	i := strings.IndexByte(e, '%')
	if i < 0 {
		return false
	}
	z := e[i+1:]
	if strings.HasPrefix(e, "[") {
		if j := strings.LastIndexByte(z, ']'); j >= 0 {
			z = z[:j]
		}
	}
	return strings.ContainsAny(z, ":/[]")
}
