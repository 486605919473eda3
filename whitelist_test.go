package axes

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestIPSet(t *testing.T) {
	s, err := ParseIPSet("10.0.0.0/8", "192.0.2.7", " 2001:db8::/32 ", "::ffff:198.51.100.0/120", "10.1.0.0/16", "0.0.0.0/0 ")
	if err != nil {
		t.Fatalf("ParseIPSet: %v", err)
	}
	for _, in := range []string{"10.2.3.4", "192.0.2.7", "2001:db8:ffff::1", "198.51.100.255", "::ffff:10.0.0.1", "8.8.8.8"} {
		if !s.Contains(netip.MustParseAddr(in)) {
			t.Errorf("Contains(%s) = false, want true", in)
		}
	}
	for _, in := range []string{"2001:db9::1", "::1"} {
		if s.Contains(netip.MustParseAddr(in)) {
			t.Errorf("Contains(%s) = true, want false", in)
		}
	}
	if s.Contains(netip.Addr{}) {
		t.Error("Contains(invalid Addr) = true, want false")
	}
	if (IPSet{}).Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("the zero IPSet contains 10.0.0.1")
	}
	if !(IPSet{}).IsEmpty() {
		t.Error("the zero IPSet: IsEmpty() = false, want true")
	}
	if got := s.Len(); got != 2 {
		t.Errorf("Len() = %d, want 2: 0.0.0.0/0 swallows the IPv4 entries", got)
	}

	all6 := MustParseIPSet("::/0")
	if !all6.Contains(netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")) {
		t.Error("::/0 does not contain ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	}
	adj := MustParseIPSet("10.0.0.0/25", "10.0.0.128/25", "2001:db8::/33", "2001:db8:8000::/33")
	if got := adj.Len(); got != 2 {
		t.Errorf("adjacent prefixes: Len() = %d, want 2 (adjacent prefixes merge)", got)
	}

	for _, bad := range []string{"", "10.0.0.0/33", "nonsense", "fe80::1%eth0", "1.2.3.4/-1"} {
		_, err := ParseIPSet(bad)
		if err == nil {
			t.Fatalf("ParseIPSet(%q): no error", bad)
		}
		if !strings.Contains(err.Error(), "axes: ") {
			t.Errorf("ParseIPSet(%q): error %q does not contain \"axes: \"", bad, err)
		}
	}
}

// TestIPSetMatchesLinearScan checks membership against a plain scan over
// many overlapping prefixes.
func TestIPSetMatchesLinearScan(t *testing.T) {
	var entries []string
	var prefixes []netip.Prefix
	seed := uint32(7)
	rnd := func() uint32 { seed = seed*1664525 + 1013904223; return seed }
	for i := range 500 {
		var p netip.Prefix
		if i%2 == 0 {
			a := netip.AddrFrom4([4]byte{byte(rnd() % 8), byte(rnd()), byte(rnd()), byte(rnd())})
			p = netip.PrefixFrom(a, 8+int(rnd()%25)).Masked()
		} else {
			var b [16]byte
			b[0], b[1], b[2] = 0x20, 0x01, byte(rnd()%4)
			b[3], b[7] = byte(rnd()), byte(rnd())
			p = netip.PrefixFrom(netip.AddrFrom16(b), 16+int(rnd()%113)).Masked()
		}
		entries = append(entries, p.String())
		prefixes = append(prefixes, p)
	}
	s := MustParseIPSet(entries...)
	for i := range 20000 {
		var a netip.Addr
		if i%2 == 0 {
			a = netip.AddrFrom4([4]byte{byte(rnd() % 8), byte(rnd()), byte(rnd()), byte(rnd())})
		} else {
			var b [16]byte
			b[0], b[1], b[2] = 0x20, 0x01, byte(rnd()%4)
			b[3], b[7], b[15] = byte(rnd()), byte(rnd()), byte(rnd())
			a = netip.AddrFrom16(b)
		}
		want := false
		for _, p := range prefixes {
			if p.Contains(a) {
				want = true
				break
			}
		}
		if got := s.Contains(a); got != want {
			t.Fatalf("%v: Contains = %v, want %v", a, got, want)
		}
	}
}

func BenchmarkIPSetContains(b *testing.B) {
	var entries []string
	for i := range 1000 {
		entries = append(entries, fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
	}
	s := MustParseIPSet(entries...)
	a := netip.MustParseAddr("10.3.200.9")
	b.ReportAllocs()
	for b.Loop() {
		s.Contains(a)
	}
}
