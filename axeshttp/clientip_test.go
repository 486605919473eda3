package axeshttp

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/axes-go/axes"
)

func request(remote string, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/login", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func TestPeerIP(t *testing.T) {
	tests := []struct {
		remote string
		want   string
	}{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"[::ffff:192.0.2.9]:80", "192.0.2.9"},
		{"[fe80::1%eth0]:80", "fe80::1"},
		{"@", "invalid IP"},
		{"", "invalid IP"},
		{"example.com:80", "invalid IP"},
	}
	for _, tt := range tests {
		r := request(tt.remote)
		if got := PeerIP(r).String(); got != tt.want {
			t.Errorf("PeerIP(%q) = %s, want %s", tt.remote, got, tt.want)
		}
	}
}

func TestNewResolverErrors(t *testing.T) {
	trusted := axes.MustParseIPSet("10.0.0.0/8")
	bad := []Proxies{
		{Header: "X-Forwarded-For"},                    // trusted from anybody
		{Header: "X Forwarded"},                        // bad name
		{Header: "X-Forwarded-For", Hops: -1},          // negative
		{Header: "X-Forwarded-For", Hops: maxHops + 1}, // absurd
		{Hops: 1}, // no header
		{Header: "X-Real-IP", Hops: 1, Trusted: trusted},            // hops on a single header
		{Header: "CF-Connecting-IP"},                                // trusted from anybody
		{Header: "Forwarded"},                                       // trusted from anybody
		{Header: "Forwarded\r\nX-Evil", Trusted: trusted, Hops: 0},  // header injection
		{Header: "X-Forwarded-For:", Trusted: trusted, Hops: 0},     // colon
		{Header: "X-Forwarded-For", Trusted: trusted, Hops: 100000}, // absurd
	}
	for _, p := range bad {
		r, err := NewResolver(p)
		if err == nil || r != nil {
			t.Errorf("NewResolver(%+v) = %v, nil; want error", p, r)
			continue
		}
		if !strings.HasPrefix(err.Error(), "axes: ") {
			t.Errorf("error %q lacks the axes: prefix", err)
		}
	}
}

func TestClientIP(t *testing.T) {
	proxies := axes.MustParseIPSet("10.0.0.0/8", "2001:db8:ffff::/48", "::ffff:172.16.0.0/108")
	xff := MustResolver(Proxies{Header: "X-Forwarded-For", Trusted: proxies})
	fwd := MustResolver(Proxies{Header: "forwarded", Trusted: proxies})
	real := MustResolver(Proxies{Header: "X-Real-IP", Trusted: proxies})
	cf := MustResolver(Proxies{Header: "cf-connecting-ip", Trusted: proxies})
	hops2 := MustResolver(Proxies{Header: "X-Forwarded-For", Hops: 2})
	hops1Trusted := MustResolver(Proxies{Header: "X-Forwarded-For", Hops: 1, Trusted: proxies})
	fwdHops := MustResolver(Proxies{Header: "Forwarded", Hops: 1})
	peerOnly := MustResolver(Proxies{})
	var nilResolver *Resolver

	const peer, proxy = "198.51.100.7:5000", "10.1.1.1:5000"
	huge := strings.Repeat("203.0.113.9, ", 5000) + "198.51.100.99"
	hugeTrusted := strings.Repeat("10.9.9.9,", 5000) + "10.1.2.3"
	hugeFwd := strings.Repeat(`for="[2001:db8::9]:1";proto=https, `, 3000) + "for=198.51.100.99"

	tests := []struct {
		name   string
		r      *Resolver
		remote string
		header []string
		want   string
	}{
		{"no resolver", nilResolver, peer, []string{"X-Forwarded-For", "1.2.3.4"}, "198.51.100.7"},
		{"peer only ignores headers", peerOnly, proxy, []string{"X-Forwarded-For", "1.2.3.4", "X-Real-IP", "1.2.3.4"}, "10.1.1.1"},
		{"untrusted peer forging", xff, peer, []string{"X-Forwarded-For", "1.2.3.4"}, "198.51.100.7"},
		{"trusted peer, no header", xff, proxy, nil, "10.1.1.1"},
		{"one hop", xff, proxy, []string{"X-Forwarded-For", "203.0.113.5"}, "203.0.113.5"},
		{"prepended forgery is skipped", xff, proxy, []string{"X-Forwarded-For", "1.1.1.1, 2.2.2.2, 203.0.113.5"}, "203.0.113.5"},
		{"trusted hops skipped", xff, proxy, []string{"X-Forwarded-For", "1.1.1.1, 203.0.113.5, 10.2.2.2, 10.3.3.3"}, "203.0.113.5"},
		{"all trusted: leftmost", xff, proxy, []string{"X-Forwarded-For", "10.5.5.5, 10.6.6.6"}, "10.5.5.5"},
		{"multi-line, last line is nearest", xff, proxy, []string{"X-Forwarded-For", "1.1.1.1", "X-Forwarded-For", "203.0.113.5, 10.2.2.2"}, "203.0.113.5"},
		{"forged first line, proxy's own line", xff, proxy, []string{"X-Forwarded-For", "10.0.0.1, 9.9.9.9", "X-Forwarded-For", "203.0.113.5"}, "203.0.113.5"},
		{"garbage left of client ignored", xff, proxy, []string{"X-Forwarded-For", "<script>, ;;, 203.0.113.5"}, "203.0.113.5"},
		{"garbage right of client: peer", xff, proxy, []string{"X-Forwarded-For", "203.0.113.5, garbage"}, "10.1.1.1"},
		{"unknown: peer", xff, proxy, []string{"X-Forwarded-For", "unknown"}, "10.1.1.1"},
		{"unknown behind client ignored", xff, proxy, []string{"X-Forwarded-For", "unknown, 203.0.113.5"}, "203.0.113.5"},
		{"empty value: peer", xff, proxy, []string{"X-Forwarded-For", ""}, "10.1.1.1"},
		{"trailing comma: peer", xff, proxy, []string{"X-Forwarded-For", "203.0.113.5,"}, "10.1.1.1"},
		{"empty element: peer", xff, proxy, []string{"X-Forwarded-For", "203.0.113.5, ,10.2.2.2"}, "10.1.1.1"},
		{"ipv4 with port", xff, proxy, []string{"X-Forwarded-For", "203.0.113.5:4711"}, "203.0.113.5"},
		{"ipv6 bracketed with port", xff, proxy, []string{"X-Forwarded-For", "[2001:db8::5]:4711"}, "2001:db8::5"},
		{"ipv6 bare", xff, proxy, []string{"X-Forwarded-For", "2001:db8::5"}, "2001:db8::5"},
		{"ipv6 zone dropped", xff, proxy, []string{"X-Forwarded-For", "fe80::5%eth0"}, "fe80::5"},
		{"zone with colon: peer", xff, proxy, []string{"X-Forwarded-For", "::ffff:0:1%:"}, "10.1.1.1"},
		{"zone with colons, bracketed: peer", xff, proxy, []string{"X-Forwarded-For", "[fe80::1%a:b]:80"}, "10.1.1.1"},
		{"zone with slash: peer", xff, proxy, []string{"X-Forwarded-For", "fe80::1%eth0/64"}, "10.1.1.1"},
		{"zone with bracket: peer", xff, proxy, []string{"X-Forwarded-For", "fe80::1%[x"}, "10.1.1.1"},
		{"zone with closing bracket: peer", xff, proxy, []string{"X-Forwarded-For", "fe80::1%x]"}, "10.1.1.1"},
		{"forwarded zone with colon: peer", fwd, proxy, []string{"Forwarded", `for="[::ffff:0:1%:]"`}, "10.1.1.1"},
		{"hops zone with colon: peer", hops2, peer, []string{"X-Forwarded-For", "::ffff:0:1%:, 10.2.2.2"}, "198.51.100.7"},
		{"mapped unmapped", xff, proxy, []string{"X-Forwarded-For", "::ffff:203.0.113.5"}, "203.0.113.5"},
		{"mapped trusted hop skipped", xff, proxy, []string{"X-Forwarded-For", "203.0.113.5, ::ffff:10.2.2.2"}, "203.0.113.5"},
		{"mapped trusted prefix", xff, "[::ffff:172.16.0.9]:80", []string{"X-Forwarded-For", "203.0.113.5"}, "203.0.113.5"},
		{"ipv6 trusted peer", xff, "[2001:db8:ffff::1]:80", []string{"X-Forwarded-For", "203.0.113.5"}, "203.0.113.5"},
		{"port out of range", xff, proxy, []string{"X-Forwarded-For", "203.0.113.5:65536"}, "10.1.1.1"},
		{"port not numeric", xff, proxy, []string{"X-Forwarded-For", "203.0.113.5:http"}, "10.1.1.1"},
		{"empty port", xff, proxy, []string{"X-Forwarded-For", "203.0.113.5:"}, "10.1.1.1"},
		{"brackets around ipv4", xff, proxy, []string{"X-Forwarded-For", "[203.0.113.5]"}, "10.1.1.1"},
		{"unclosed bracket", xff, proxy, []string{"X-Forwarded-For", "[2001:db8::5"}, "10.1.1.1"},
		{"junk after bracket", xff, proxy, []string{"X-Forwarded-For", "[2001:db8::5]x"}, "10.1.1.1"},
		{"hostname", xff, proxy, []string{"X-Forwarded-For", "evil.example"}, "10.1.1.1"},
		{"leading zeros rejected", xff, proxy, []string{"X-Forwarded-For", "010.001.002.003"}, "10.1.1.1"},
		{"oversized list, client rightmost", xff, proxy, []string{"X-Forwarded-For", huge}, "198.51.100.99"},
		{"oversized list, all trusted", xff, proxy, []string{"X-Forwarded-For", hugeTrusted}, "10.9.9.9"},
		{"oversized entry", xff, proxy, []string{"X-Forwarded-For", strings.Repeat("1", 10000)}, "10.1.1.1"},
		{"NUL in entry", xff, proxy, []string{"X-Forwarded-For", "203.0.113.5\x00"}, "10.1.1.1"},

		{"forwarded simple", fwd, proxy, []string{"Forwarded", "for=203.0.113.5"}, "203.0.113.5"},
		{"forwarded case and params", fwd, proxy, []string{"Forwarded", `For="203.0.113.5:80";proto=https;by=10.1.1.1`}, "203.0.113.5"},
		{"forwarded ipv6", fwd, proxy, []string{"Forwarded", `for="[2001:db8:cafe::17]:4711"`}, "2001:db8:cafe::17"},
		{"forwarded obfuscated port", fwd, proxy, []string{"Forwarded", `for="[2001:db8:cafe::17]:_p0rt"`}, "2001:db8:cafe::17"},
		{"forwarded list", fwd, proxy, []string{"Forwarded", "for=1.1.1.1, for=203.0.113.5;proto=http, for=10.2.2.2"}, "203.0.113.5"},
		{"forwarded quoted comma", fwd, proxy, []string{"Forwarded", `for=203.0.113.5;ext="a,b;c", for=10.2.2.2`}, "203.0.113.5"},
		{"forwarded escaped quote", fwd, proxy, []string{"Forwarded", `for=203.0.113.5;ext="a\"b,", for=10.2.2.2`}, "203.0.113.5"},
		{"forwarded escaped for", fwd, proxy, []string{"Forwarded", `for="203.0.113.\5"`}, "203.0.113.5"},
		{"forwarded unknown", fwd, proxy, []string{"Forwarded", "for=unknown"}, "10.1.1.1"},
		{"forwarded obfuscated node", fwd, proxy, []string{"Forwarded", "for=_hidden"}, "10.1.1.1"},
		{"forwarded without for", fwd, proxy, []string{"Forwarded", "proto=https"}, "10.1.1.1"},
		{"forwarded duplicate for", fwd, proxy, []string{"Forwarded", "for=203.0.113.5;for=203.0.113.6"}, "10.1.1.1"},
		{"forwarded unterminated quote", fwd, proxy, []string{"Forwarded", `for="203.0.113.5`}, "10.1.1.1"},
		{"forwarded broken syntax", fwd, proxy, []string{"Forwarded", "for 203.0.113.5"}, "10.1.1.1"},
		{"forwarded bad after client", fwd, proxy, []string{"Forwarded", "for=203.0.113.5, for==="}, "10.1.1.1"},
		{"forwarded bad before client", fwd, proxy, []string{"Forwarded", "for===, for=203.0.113.5"}, "203.0.113.5"},
		{"forwarded client's open quote cannot swallow proxy's entry", fwd, proxy, []string{"Forwarded", `for="1.1.1.1, for=203.0.113.5`}, "203.0.113.5"},
		{"forwarded client's open quote before quoted entry", fwd, proxy, []string{"Forwarded", `x=", for="[2001:db8::5]:80"`}, "2001:db8::5"},
		{"forwarded client's backslashes", fwd, proxy, []string{"Forwarded", `x="\\\\\", for=203.0.113.5`}, "203.0.113.5"},
		{"forwarded escaped backslash at end of quote", fwd, proxy, []string{"Forwarded", `for=203.0.113.5;x="a\\", for=10.2.2.2`}, "203.0.113.5"},
		{"forwarded multi-line", fwd, proxy, []string{"Forwarded", "for=1.1.1.1", "Forwarded", "for=203.0.113.5"}, "203.0.113.5"},
		{"forwarded empty element", fwd, proxy, []string{"Forwarded", "for=203.0.113.5,,for=10.2.2.2"}, "10.1.1.1"},
		{"forwarded semicolons", fwd, proxy, []string{"Forwarded", ";;for=203.0.113.5;;"}, "203.0.113.5"},
		{"forwarded control char", fwd, proxy, []string{"Forwarded", "for=\"203.0.113.5\x01\""}, "10.1.1.1"},
		{"forwarded oversized", fwd, proxy, []string{"Forwarded", hugeFwd}, "198.51.100.99"},
		{"forwarded from untrusted peer", fwd, peer, []string{"Forwarded", "for=203.0.113.5"}, "198.51.100.7"},

		{"real-ip", real, proxy, []string{"X-Real-IP", "203.0.113.5"}, "203.0.113.5"},
		{"real-ip spaces", real, proxy, []string{"X-Real-IP", " 203.0.113.5 "}, "203.0.113.5"},
		{"real-ip from untrusted peer", real, peer, []string{"X-Real-IP", "203.0.113.5"}, "198.51.100.7"},
		{"real-ip two lines", real, proxy, []string{"X-Real-IP", "1.1.1.1", "X-Real-IP", "203.0.113.5"}, "10.1.1.1"},
		{"real-ip list", real, proxy, []string{"X-Real-IP", "1.1.1.1, 203.0.113.5"}, "10.1.1.1"},
		{"real-ip garbage", real, proxy, []string{"X-Real-IP", "garbage"}, "10.1.1.1"},
		{"cf header", cf, proxy, []string{"CF-Connecting-IP", "2001:db8::77"}, "2001:db8::77"},
		{"cf ignores xff", cf, proxy, []string{"X-Forwarded-For", "203.0.113.5"}, "10.1.1.1"},

		{"hops 2", hops2, peer, []string{"X-Forwarded-For", "1.1.1.1, 203.0.113.5, 10.2.2.2"}, "203.0.113.5"},
		{"hops 2 exact", hops2, peer, []string{"X-Forwarded-For", "203.0.113.5, 10.2.2.2"}, "203.0.113.5"},
		{"hops 2 too few", hops2, peer, []string{"X-Forwarded-For", "203.0.113.5"}, "198.51.100.7"},
		{"hops 2 bad chosen", hops2, peer, []string{"X-Forwarded-For", "unknown, 10.2.2.2"}, "198.51.100.7"},
		{"hops 2 bad nearer", hops2, peer, []string{"X-Forwarded-For", "203.0.113.5, x"}, "198.51.100.7"},
		{"hops 2 bad further ignored", hops2, peer, []string{"X-Forwarded-For", "x, 203.0.113.5, 10.2.2.2"}, "203.0.113.5"},
		{"hops 2 multi-line", hops2, peer, []string{"X-Forwarded-For", "1.1.1.1, 203.0.113.5", "X-Forwarded-For", "10.2.2.2"}, "203.0.113.5"},
		{"hops 2 oversized", hops2, peer, []string{"X-Forwarded-For", huge + ", 10.2.2.2"}, "198.51.100.99"},
		{"hops with trusted, untrusted peer", hops1Trusted, peer, []string{"X-Forwarded-For", "203.0.113.5"}, "198.51.100.7"},
		{"hops with trusted, trusted peer", hops1Trusted, proxy, []string{"X-Forwarded-For", "1.1.1.1, 203.0.113.5"}, "203.0.113.5"},
		{"forwarded hops", fwdHops, peer, []string{"Forwarded", "for=1.1.1.1, for=203.0.113.5"}, "203.0.113.5"},
		{"unparseable peer", xff, "@", []string{"X-Forwarded-For", "203.0.113.5"}, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.r.ClientIP(request(tt.remote, tt.header...))
			if got.String() != tt.want {
				t.Errorf("ClientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestClientIPNoAllocs checks that long headers are walked without
// allocating; TestEachVisitsEveryEntryOnce checks the walk is linear.
func TestClientIPNoAllocs(t *testing.T) {
	proxies := axes.MustParseIPSet("10.0.0.0/8")
	xff := MustResolver(Proxies{Header: "X-Forwarded-For", Trusted: proxies})
	fwd := MustResolver(Proxies{Header: "Forwarded", Trusted: proxies})
	hops := MustResolver(Proxies{Header: "X-Forwarded-For", Hops: 3})
	r1 := request("10.1.1.1:1", "X-Forwarded-For", strings.Repeat("10.2.2.2, ", 2000)+"203.0.113.5, 10.3.3.3")
	r2 := request("10.1.1.1:1", "Forwarded", strings.Repeat(`for="[2001:db8::1]:80";proto=https, `, 2000)+"for=10.3.3.3")
	r3 := request("10.1.1.1:1", "X-Forwarded-For", strings.Repeat("10.2.2.2, ", 2000)+"203.0.113.5, 10.3.3.3")
	for _, c := range []struct {
		r   *Resolver
		req *http.Request
	}{{xff, r1}, {fwd, r2}, {hops, r3}} {
		if n := testing.AllocsPerRun(20, func() { sinkAddr = c.r.ClientIP(c.req) }); n != 0 {
			t.Errorf("ClientIP allocated %v times, want 0", n)
		}
	}
}

var sinkAddr netip.Addr

func TestEachVisitsEveryEntryOnce(t *testing.T) {
	// Linear cost: each entry is parsed exactly once per pass.
	for _, n := range []int{1, 10, 1000, 10000} {
		h := strings.TrimSuffix(strings.Repeat("203.0.113.5,", n), ",")
		visits := 0
		eachReverse(kindXFF, []string{h}, func(netip.Addr, bool) bool { visits++; return true })
		if visits != n {
			t.Errorf("n=%d: %d visits", n, visits)
		}
		f := strings.TrimSuffix(strings.Repeat(`for="a,b";x=y,`, n), ",")
		visits = 0
		eachReverse(kindForwarded, []string{f}, func(netip.Addr, bool) bool { visits++; return true })
		if visits != n {
			t.Errorf("forwarded n=%d: %d visits", n, visits)
		}
	}
}

func BenchmarkClientIP(b *testing.B) {
	proxies := axes.MustParseIPSet("10.0.0.0/8")
	xff := MustResolver(Proxies{Header: "X-Forwarded-For", Trusted: proxies})
	fwd := MustResolver(Proxies{Header: "Forwarded", Trusted: proxies})
	cases := []struct {
		name string
		r    *Resolver
		req  *http.Request
	}{
		{"peer", nil, request("203.0.113.5:1")},
		{"xff=1", xff, request("10.1.1.1:1", "X-Forwarded-For", "203.0.113.5")},
		{"xff=3", xff, request("10.1.1.1:1", "X-Forwarded-For", "1.1.1.1, 203.0.113.5, 10.2.2.2")},
		{"xff=5000", xff, request("10.1.1.1:1", "X-Forwarded-For", strings.Repeat("1.1.1.1, ", 5000)+"203.0.113.5")},
		{"forwarded=1", fwd, request("10.1.1.1:1", "Forwarded", `for="[2001:db8::1]:80";proto=https`)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkAddr = c.r.ClientIP(c.req)
			}
		})
	}
}
