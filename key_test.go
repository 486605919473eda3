package axes

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testHasher() hasher { return newHasher([]byte("0123456789abcdef")) }

func dimDigest(h *hasher, f Fields, k Key) Digest {
	var fs fieldSet
	fs.pfx = canonicalIP(k.IP, 64)
	fs.ip = encodeIP(fs.pfx)
	fs.user = h.usernameDigest(k.Username)
	fs.ua = h.fieldDigest(tagUserAgent, k.UserAgent)
	return h.dimensionDigest(f, &fs)
}

func TestDigestsSeparateValues(t *testing.T) {
	h := testHasher()
	a := dimDigest(&h, IP|Username, Key{IP: netip.MustParseAddr("2.3.4.5"), Username: "bob1"})
	b := dimDigest(&h, IP|Username, Key{IP: netip.MustParseAddr("12.3.4.5"), Username: "bob"})
	assert.NotEqual(t, a, b)
	// The same values under another combination are another dimension.
	assert.NotEqual(t, dimDigest(&h, IP, Key{IP: netip.MustParseAddr("2.3.4.5")}),
		dimDigest(&h, IP|UserAgent, Key{IP: netip.MustParseAddr("2.3.4.5")}))
	// A username spelling an IP is not that IP.
	assert.NotEqual(t, h.fieldDigest(tagUsername, "2.3.4.5"), h.fieldDigest(tagUserAgent, "2.3.4.5"))
	// Empty is a value of its own, under each tag.
	assert.NotEqual(t, h.fieldDigest(tagUsername, ""), h.fieldDigest(tagUserAgent, ""))
	// Another secret gives other digests.
	h2 := newHasher([]byte("fedcba9876543210"))
	assert.NotEqual(t, a, dimDigest(&h2, IP|Username, Key{IP: netip.MustParseAddr("2.3.4.5"), Username: "bob1"}))
	// The same secret gives the same digests (servers sharing a store).
	h3 := testHasher()
	assert.Equal(t, a, dimDigest(&h3, IP|Username, Key{IP: netip.MustParseAddr("2.3.4.5"), Username: "bob1"}))
}

func TestDefaultNormalizeUsername(t *testing.T) {
	cases := map[string]string{
		"  Bob ":          "bob",
		"ÉLODIE":          "élodie",
		"bob":             "bob",
		"":                "",
		"\tA\x00B\n":      "a\x00b",
		"X\xffY":          "x\xffy",
		"İstanbul":        "istanbul",
		"ＡＢＣ":             "ａｂｃ",
		"a\xc3":           "a\xc3",
		"\u00a0Bob\u2003": "bob",
	}
	h := testHasher()
	for in, want := range cases {
		assert.Equal(t, want, DefaultNormalizeUsername(in), "%q", in)
		assert.Equal(t, h.fieldDigest(tagUsername, want), h.usernameDigest(in), "%q", in)
	}
	long := strings.Repeat("AbÇ", 200000)
	assert.Equal(t, h.fieldDigest(tagUsername, DefaultNormalizeUsername(long)), h.usernameDigest(long))
}

func TestCanonicalIP(t *testing.T) {
	cases := []struct {
		in   string
		bits int
		want string
	}{
		{"192.0.2.1", 64, "192.0.2.1/32"},
		{"::ffff:192.0.2.1", 64, "192.0.2.1/32"},
		{"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"},
		{"fe80::1%eth0", 128, "fe80::1/128"},
	}
	for _, c := range cases {
		got := canonicalIP(netip.MustParseAddr(c.in), c.bits)
		assert.Equal(t, c.want, got.String(), c.in)
	}
	assert.False(t, canonicalIP(netip.Addr{}, 64).IsValid())
	assert.NotEqual(t, encodeIP(netip.Prefix{}), encodeIP(canonicalIP(netip.IPv4Unspecified(), 64)))
	assert.NotEqual(t, encodeIP(canonicalIP(netip.IPv6Unspecified(), 64)), encodeIP(canonicalIP(netip.IPv4Unspecified(), 64)))
	// The same /64 under another grouping is another bucket.
	a := netip.MustParseAddr("2001:db8::")
	assert.NotEqual(t, encodeIP(canonicalIP(a, 64)), encodeIP(canonicalIP(a, 48)))
}

func FuzzKeyDigest(f *testing.F) {
	for _, s := range []string{"", "bob", " Bob ", "ÉLODIE", "\xff\xfe", "a\x00b", "İ", strings.Repeat("Z", 600), "2.3.4.5"} {
		f.Add(s, "ua", "192.0.2.1")
	}
	h := testHasher()
	f.Fuzz(func(t *testing.T, user, ua, ip string) {
		n := DefaultNormalizeUsername(user)
		require.Equal(t, h.fieldDigest(tagUsername, n), h.usernameDigest(user))
		require.Equal(t, n, DefaultNormalizeUsername(n), "normalising is idempotent")
		if utf8.ValidString(user) {
			require.True(t, utf8.ValidString(n))
		}
		addr, _ := netip.ParseAddr(ip)
		k := Key{IP: addr, Username: user, UserAgent: ua}
		for f := Fields(1); f <= allFields; f++ {
			d := dimDigest(&h, f, k)
			require.False(t, d.IsZero())
			require.Equal(t, d, dimDigest(&h, f, k))
		}
		if other := ua + "\x00"; DefaultNormalizeUsername(user) != DefaultNormalizeUsername(other) {
			require.NotEqual(t, dimDigest(&h, Username, Key{Username: user}), dimDigest(&h, Username, Key{Username: other}))
		}
	})
}

func FuzzCanonicalIP(f *testing.F) {
	f.Add([]byte{192, 0, 2, 1}, 64)
	f.Add([]byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 48)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1}, 128)
	f.Fuzz(func(t *testing.T, b []byte, bits int) {
		if bits < 1 || bits > 128 {
			bits = 1 + (bits%128+128)%128
		}
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			require.False(t, canonicalIP(a, bits).IsValid())
			return
		}
		p := canonicalIP(a, bits)
		require.True(t, p.IsValid())
		require.True(t, p.Contains(a.Unmap()), "%v does not contain %v", p, a)
		require.Equal(t, p, p.Masked())
		if a.Unmap().Is4() {
			require.Equal(t, 32, p.Bits())
		} else {
			require.Equal(t, bits, p.Bits())
		}
		require.Equal(t, p, canonicalIP(p.Addr(), bits), "grouping is idempotent")
		e := encodeIP(p)
		require.NotZero(t, e[0])
	})
}

// TestDigestSpread checks that sequential addresses give distinct digests
// whose low bits (shard choice) and filter bits spread evenly.
func TestDigestSpread(t *testing.T) {
	h := testHasher()
	const n = 1 << 18
	seen := make(map[Digest]struct{}, n)
	var shards [256]int
	var filter [1024]int
	for i := range n {
		d := dimDigest(&h, IP, Key{IP: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})})
		if _, dup := seen[d]; dup {
			t.Fatalf("digest collision at %d", i)
		}
		seen[d] = struct{}{}
		shards[d.Hi&255]++
		filter[(d.Lo<<17)>>54]++
	}
	for i, c := range shards {
		if c < n/256*8/10 || c > n/256*12/10 {
			t.Errorf("shard %d got %d of %d digests", i, c, n)
		}
	}
	for i, c := range filter {
		if c < n/1024*6/10 || c > n/1024*14/10 {
			t.Errorf("filter slot %d got %d of %d digests", i, c, n)
		}
	}
}
