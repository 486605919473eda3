package demo

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
)

func TestCheckLedger(t *testing.T) {
	p := Policy()
	t0 := SimStart
	ip := netip.MustParsePrefix("192.0.2.1/32")
	fail := func(at time.Duration, user string) Record {
		return Record{Kind: RecordCheck, At: t0.Add(at), IP: ip, Username: user}
	}
	lock := func(at, d time.Duration, by axes.Fields, user string) Record {
		return Record{Kind: RecordLockout, At: t0.Add(at), Until: t0.Add(at + d), By: by, IP: ip, Username: user}
	}
	users := func(n int, at time.Duration) []Record {
		var rs []Record
		for i := range n {
			rs = append(rs, fail(at, string(rune('a'+i))))
		}
		return rs
	}
	cat := func(parts ...[]Record) []Record {
		var rs []Record
		for _, p := range parts {
			rs = append(rs, p...)
		}
		return rs
	}
	tests := []struct {
		name    string
		recs    []Record
		max     int
		violate string // a substring of the first violation; "" for none
	}{
		{"limit then lock", cat(users(5, 0), []Record{lock(0, 5*time.Minute, axes.IP, "e")}), 5, ""},
		{"one over the limit", users(6, 0), 6, "over the limit"},
		{"check while locked", cat(users(5, 0), []Record{lock(0, 5*time.Minute, axes.IP, "e"), fail(time.Minute, "z")}), 6, "while"},
		{"one more after the lock, failures remembered", cat(users(5, 0),
			[]Record{lock(0, 5*time.Minute, axes.IP, "e"), fail(5*time.Minute, "y")}), 5, ""},
		{"two more after the lock, failures remembered", cat(users(5, 0),
			[]Record{lock(0, 5*time.Minute, axes.IP, "e"), fail(5*time.Minute, "y"), fail(5*time.Minute, "z")}), 6, "over the limit"},
		{"forgotten after the window", cat(users(4, 0), users(4, 20*time.Minute)), 4, ""},
		{"remembered within the window", cat(users(4, 0), users(4, 10*time.Minute)), 8, "over the limit"},
		{"successes do not count", cat(users(4, 0), []Record{{Kind: RecordCheck, At: t0, IP: ip, Username: "a", OK: true}}), 4, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckLedger(tt.recs, p)
			if got.MaxPerCycle != tt.max {
				t.Errorf("MaxPerCycle = %d, want %d", got.MaxPerCycle, tt.max)
			}
			switch {
			case tt.violate == "" && len(got.Violations) > 0:
				t.Errorf("unexpected violations: %q", got.Violations)
			case tt.violate != "" && (len(got.Violations) == 0 || !strings.Contains(got.Violations[0], tt.violate)):
				t.Errorf("violations %q, want one about %q", got.Violations, tt.violate)
			}
		})
	}
}
