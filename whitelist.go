package axes

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// IPSet is an immutable set of IPv4 and IPv6 addresses and CIDR prefixes,
// used for Policy.NeverLockout, Policy.OnlyAllow and Policy.Deny. The zero
// IPSet is empty. Membership costs a binary search over merged ranges, so a
// list of thousands of prefixes is as cheap to consult as a short one.
// IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry.
type IPSet struct {
	v4 []span4
	v6 []span6
}

type span4 struct{ lo, hi uint32 }

type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) inc() (u128, bool) {
	lo := a.lo + 1
	hi := a.hi
	if lo == 0 {
		hi++
		if hi == 0 {
			return u128{}, false
		}
	}
	return u128{hi, lo}, true
}

type span6 struct{ lo, hi u128 }

// ParseIPSet parses addresses ("192.0.2.1", "2001:db8::1") and CIDR prefixes
// ("10.0.0.0/8", "2001:db8::/32"). Host bits of a prefix are ignored, as
// netip.Prefix.Masked does. Empty strings and anything else are errors.
func ParseIPSet(entries ...string) (IPSet, error) {
	var s IPSet
	for _, e := range entries {
		e = strings.TrimSpace(e)
		var p netip.Prefix
		if strings.Contains(e, "/") {
			q, err := netip.ParsePrefix(e)
			if err != nil {
				return IPSet{}, fmt.Errorf("axes: IP set entry %q: %w", e, err)
			}
			p = q
		} else {
			a, err := netip.ParseAddr(e)
			if err != nil {
				return IPSet{}, fmt.Errorf("axes: IP set entry %q: %w", e, err)
			}
			if a.Zone() != "" {
				return IPSet{}, fmt.Errorf("axes: IP set entry %q: zones are not allowed", e)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		s.add(p)
	}
	s.merge()
	return s, nil
}

// MustParseIPSet is like ParseIPSet but panics on error. It is meant for
// package-level variables and tests with constant entries.
func MustParseIPSet(entries ...string) IPSet {
	s, err := ParseIPSet(entries...)
	if err != nil {
		panic(err)
	}
	return s
}

func (s *IPSet) add(p netip.Prefix) {
	if p.Addr().Is4() {
		a := p.Addr().As4()
		lo := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
		s.v4 = append(s.v4, span4{lo, hi})
		return
	}
	lo := to128(p.Addr())
	hi := lo
	host := 128 - p.Bits()
	switch {
	case host >= 64:
		hi.lo = ^uint64(0)
		if host == 128 {
			hi.hi = ^uint64(0)
		} else {
			hi.hi |= uint64(1)<<(host-64) - 1
		}
	case host > 0:
		hi.lo |= uint64(1)<<host - 1
	}
	s.v6 = append(s.v6, span6{lo, hi})
}

func to128(a netip.Addr) u128 {
	b := a.As16()
	var x u128
	for i := 0; i < 8; i++ {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[8+i])
	}
	return x
}

// merge sorts the spans and joins overlapping and adjacent ones.
func (s *IPSet) merge() {
	slices.SortFunc(s.v4, func(a, b span4) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	out4 := s.v4[:0]
	for _, sp := range s.v4 {
		if n := len(out4); n > 0 && (sp.lo <= out4[n-1].hi || (out4[n-1].hi != ^uint32(0) && sp.lo == out4[n-1].hi+1)) {
			out4[n-1].hi = max(out4[n-1].hi, sp.hi)
			continue
		}
		out4 = append(out4, sp)
	}
	s.v4 = slices.Clip(out4)
	slices.SortFunc(s.v6, func(a, b span6) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		}
		return 0
	})
	out6 := s.v6[:0]
	for _, sp := range s.v6 {
		if n := len(out6); n > 0 {
			last := &out6[n-1]
			next, ok := last.hi.inc()
			if !ok || !next.less(sp.lo) { // sp.lo <= last.hi+1: overlapping or adjacent
				if last.hi.less(sp.hi) {
					last.hi = sp.hi
				}
				continue
			}
		}
		out6 = append(out6, sp)
	}
	s.v6 = slices.Clip(out6)
}

// Contains reports whether a is in the set. The zero Addr is in no set.
func (s IPSet) Contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		x := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		i, _ := slices.BinarySearchFunc(s.v4, x, func(sp span4, x uint32) int {
			switch {
			case sp.hi < x:
				return -1
			case sp.lo > x:
				return 1
			}
			return 0
		})
		return i < len(s.v4) && s.v4[i].lo <= x && x <= s.v4[i].hi
	}
	x := to128(a)
	i, _ := slices.BinarySearchFunc(s.v6, x, func(sp span6, x u128) int {
		switch {
		case sp.hi.less(x):
			return -1
		case x.less(sp.lo):
			return 1
		}
		return 0
	})
	return i < len(s.v6) && !x.less(s.v6[i].lo) && !s.v6[i].hi.less(x)
}

// IsEmpty reports whether the set holds no address.
func (s IPSet) IsEmpty() bool { return len(s.v4) == 0 && len(s.v6) == 0 }

// Len returns the number of merged address ranges in the set.
func (s IPSet) Len() int { return len(s.v4) + len(s.v6) }
