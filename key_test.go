package axes

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/axes-go/axes/store"
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
	if a == b {
		t.Errorf("2.3.4.5+bob1 and 12.3.4.5+bob share the digest %v", a)
	}
	// The same values under another combination are another dimension.
	if d := dimDigest(&h, IP, Key{IP: netip.MustParseAddr("2.3.4.5")}); d == dimDigest(&h, IP|UserAgent, Key{IP: netip.MustParseAddr("2.3.4.5")}) {
		t.Errorf("ip and ip+user_agent share the digest %v", d)
	}
	// A username spelling an IP is not that IP.
	if d := h.fieldDigest(tagUsername, "2.3.4.5"); d == h.fieldDigest(tagUserAgent, "2.3.4.5") {
		t.Errorf("%q as a username and as a user agent share the digest %v", "2.3.4.5", d)
	}
	// Empty is a value of its own, under each tag.
	if d := h.fieldDigest(tagUsername, ""); d == h.fieldDigest(tagUserAgent, "") {
		t.Errorf("the empty username and user agent share the digest %v", d)
	}
	// Another secret gives other digests.
	h2 := newHasher([]byte("fedcba9876543210"))
	if d := dimDigest(&h2, IP|Username, Key{IP: netip.MustParseAddr("2.3.4.5"), Username: "bob1"}); d == a {
		t.Errorf("another secret gives the same digest %v", d)
	}
	// The same secret gives the same digests (servers sharing a store).
	h3 := testHasher()
	if d := dimDigest(&h3, IP|Username, Key{IP: netip.MustParseAddr("2.3.4.5"), Username: "bob1"}); d != a {
		t.Errorf("the same secret: digest %v, want %v", d, a)
	}
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
		if got := DefaultNormalizeUsername(in); got != want {
			t.Errorf("DefaultNormalizeUsername(%q) = %q, want %q", in, got, want)
		}
		if got, wd := h.usernameDigest(in), h.fieldDigest(tagUsername, want); got != wd {
			t.Errorf("usernameDigest(%q) = %v, want the digest of %q, %v", in, got, want, wd)
		}
	}
	long := strings.Repeat("AbÇ", 200000)
	if got, want := h.usernameDigest(long), h.fieldDigest(tagUsername, DefaultNormalizeUsername(long)); got != want {
		t.Errorf("usernameDigest of a %d-byte username = %v, want the digest of its normal form, %v", len(long), got, want)
	}
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
		if got.String() != c.want {
			t.Errorf("canonicalIP(%s, %d) = %v, want %s", c.in, c.bits, got, c.want)
		}
	}
	if p := canonicalIP(netip.Addr{}, 64); p.IsValid() {
		t.Errorf("canonicalIP(invalid Addr) = %v, want an invalid Prefix", p)
	}
	if e := encodeIP(netip.Prefix{}); e == encodeIP(canonicalIP(netip.IPv4Unspecified(), 64)) {
		t.Errorf("the invalid Prefix and 0.0.0.0/32 share the encoding %x", e)
	}
	if e := encodeIP(canonicalIP(netip.IPv6Unspecified(), 64)); e == encodeIP(canonicalIP(netip.IPv4Unspecified(), 64)) {
		t.Errorf(":: and 0.0.0.0 share the encoding %x", e)
	}
	// The same /64 under another grouping is another bucket.
	a := netip.MustParseAddr("2001:db8::")
	if e := encodeIP(canonicalIP(a, 64)); e == encodeIP(canonicalIP(a, 48)) {
		t.Errorf("2001:db8::/64 and 2001:db8::/48 share the encoding %x", e)
	}
}

func FuzzKeyDigest(f *testing.F) {
	for _, s := range []string{"", "bob", " Bob ", "ÉLODIE", "\xff\xfe", "a\x00b", "İ", strings.Repeat("Z", 600), "2.3.4.5"} {
		f.Add(s, "ua", "192.0.2.1")
	}
	h := testHasher()
	f.Fuzz(func(t *testing.T, user, ua, ip string) {
		n := DefaultNormalizeUsername(user)
		if got, want := h.usernameDigest(user), h.fieldDigest(tagUsername, n); got != want {
			t.Fatalf("usernameDigest(%q) = %v, want the digest of its normal form %q, %v", user, got, n, want)
		}
		if nn := DefaultNormalizeUsername(n); nn != n {
			t.Fatalf("normalising is not idempotent: %q -> %q -> %q", user, n, nn)
		}
		if utf8.ValidString(user) && !utf8.ValidString(n) {
			t.Fatalf("valid UTF-8 %q normalised to invalid UTF-8 %q", user, n)
		}
		addr, _ := netip.ParseAddr(ip)
		k := Key{IP: addr, Username: user, UserAgent: ua}
		for f := Fields(1); f <= allFields; f++ {
			d := dimDigest(&h, f, k)
			if d.IsZero() {
				t.Fatalf("%v digest of %+v is zero", f, k)
			}
			if d2 := dimDigest(&h, f, k); d2 != d {
				t.Fatalf("%v digest of %+v: %v, then %v", f, k, d, d2)
			}
		}
		if other := ua + "\x00"; DefaultNormalizeUsername(user) != DefaultNormalizeUsername(other) {
			if d := dimDigest(&h, Username, Key{Username: user}); d == dimDigest(&h, Username, Key{Username: other}) {
				t.Fatalf("usernames %q and %q share the digest %v", user, other, d)
			}
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
			if p := canonicalIP(a, bits); p.IsValid() {
				t.Fatalf("canonicalIP(invalid Addr, %d) = %v, want an invalid Prefix", bits, p)
			}
			return
		}
		p := canonicalIP(a, bits)
		if !p.IsValid() {
			t.Fatalf("canonicalIP(%v, %d) is invalid", a, bits)
		}
		if !p.Contains(a.Unmap()) {
			t.Fatalf("%v does not contain %v", p, a)
		}
		if m := p.Masked(); p != m {
			t.Fatalf("canonicalIP(%v, %d) = %v, not masked (%v)", a, bits, p, m)
		}
		if a.Unmap().Is4() {
			if p.Bits() != 32 {
				t.Fatalf("canonicalIP(%v, %d) = %v, want 32 bits", a, bits, p)
			}
		} else if p.Bits() != bits {
			t.Fatalf("canonicalIP(%v, %d) = %v, want %d bits", a, bits, p, bits)
		}
		if p2 := canonicalIP(p.Addr(), bits); p2 != p {
			t.Fatalf("grouping is not idempotent: %v -> %v -> %v", a, p, p2)
		}
		e := encodeIP(p)
		if e.fam == 0 {
			t.Fatalf("encodeIP(%v) = %+v has family 0", p, e)
		}
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

// TestDigestsGolden pins the digests of IP dimensions under a fixed
// secret: Redis keys and snapshots are named by them, so a faster way to
// compute them must give the same values (these were computed by the
// earlier byte-wise encoding of the grouped address).
func TestDigestsGolden(t *testing.T) {
	h := newHasher([]byte("axes golden digests, fixed secret"))
	for _, g := range []struct {
		ip                 string
		v6bits             int
		ip1, ipUser, index uint64 // IP's Hi, IP|Username's Lo, the IP index key's Hi
		spray              uint64 // the spray count's Lo
	}{
		{"192.0.2.1", 64, 0x7e5a1f77f49e2538, 0xe517cb833b09cf55, 0x3496b62f8f36a5, 0x4932aaaab8ccae96},
		{"192.0.2.1", 128, 0x7e5a1f77f49e2538, 0xe517cb833b09cf55, 0x3496b62f8f36a5, 0x4932aaaab8ccae96},
		{"10.255.0.7", 64, 0x48524ac1300427f, 0x3c9f0230a86ab00b, 0xa59a35682973d625, 0xb7ae5cbe573c067d},
		{"10.255.0.7", 128, 0x48524ac1300427f, 0x3c9f0230a86ab00b, 0xa59a35682973d625, 0xb7ae5cbe573c067d},
		{"::ffff:198.51.100.9", 64, 0xa04a1f616f04c511, 0xa4b3252980cf8cb6, 0x1ba389926d07d92a, 0x2bb80b6ee20ba274},
		{"::ffff:198.51.100.9", 128, 0xa04a1f616f04c511, 0xa4b3252980cf8cb6, 0x1ba389926d07d92a, 0x2bb80b6ee20ba274},
		{"2001:db8::1", 64, 0x69fc72fd75b41fdc, 0x831232073dc64fe5, 0x132459730de30f1c, 0x902fde53c0cf1d73},
		{"2001:db8::1", 128, 0x346e52db21067e5, 0xfdeba591bc24f035, 0x22ccc53a093db5c3, 0x771329058ec02681},
		{"2001:db8:1:2:3:4:5:6", 64, 0x5a888f8cdaacc3f9, 0x752e2853811eddc3, 0x508e05e29f13179b, 0xd849b49f5b9b287a},
		{"2001:db8:1:2:3:4:5:6", 128, 0xdbf08aa5712ff7c, 0x9efc732624114701, 0x2befdbcd763a771f, 0xea269e42c16b5302},
		{"fe80::1%eth0", 64, 0x873b7ecca29786e4, 0x74a76d5d075cb051, 0xc54c41a9d6324a30, 0xadac5c34ef7fea4e},
		{"fe80::1%eth0", 128, 0x5a2624be38d384f7, 0xbe93e97c864fde0b, 0xee7e953dfc727dbd, 0xc8b246ada8057954},
		{"::", 64, 0x2da3319ad0a8c333, 0x38e97e9b6dd321c9, 0x9c9a872254b63af1, 0x7b372bd5201f3a55},
		{"::", 128, 0x776f90f8e00c4b15, 0x8ed5179979cdada8, 0x8e467ffd9ec1c74, 0x54254524d10e905f},
	} {
		var fs fieldSet
		fs.pfx = canonicalIP(netip.MustParseAddr(g.ip), g.v6bits)
		fs.ip = encodeIP(fs.pfx)
		fs.user = h.usernameDigest("alice")
		got := [4]uint64{h.dimensionDigest(IP, &fs).Hi, h.dimensionDigest(IP|Username, &fs).Lo,
			h.ipDigest(&fs.ip).Hi, h.sprayDigest(store.KindSpray, &fs).Lo}
		if want := [4]uint64{g.ip1, g.ipUser, g.index, g.spray}; got != want {
			t.Errorf("%s /%d: digests %#x, want %#x", g.ip, g.v6bits, got, want)
		}
	}
}
