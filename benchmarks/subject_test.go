package benchmarks

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func (c *fakeClock) Now() time.Time          { return t0.Add(time.Duration(c.ns.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func build(t *testing.T, m Maker, c Config) Subject {
	t.Helper()
	s, err := m.New(c)
	if err != nil {
		t.Fatalf("%s: %v", m.Name, err)
	}
	t.Cleanup(s.Close)
	return s
}

// step runs one operation and checks its answer.
type step struct {
	op   string // "fail" or "locked"
	key  int
	want bool
}

func run(t *testing.T, s Subject, ks *Keyset, steps []step) {
	t.Helper()
	for i, st := range steps {
		var got bool
		switch st.op {
		case "fail":
			got = s.Fail(ks.Key(st.key))
		case "locked":
			got = s.Locked(ks.Key(st.key))
		default:
			t.Fatalf("step %d: unknown op %q", i, st.op)
		}
		if got != st.want {
			t.Fatalf("step %d: %s(key %d) = %v, want %v", i, st.op, st.key, got, st.want)
		}
	}
}

// lockSteps fails key 0 up to the limit of 5, checking that it locks on the
// fifth failure exactly, and that key 1 is never touched.
var lockSteps = []step{
	{"locked", 0, false},
	{"fail", 0, false}, {"locked", 0, false},
	{"fail", 0, false},
	{"fail", 0, false},
	{"fail", 0, false}, {"locked", 0, false},
	{"fail", 0, true}, {"locked", 0, true},
	{"locked", 1, false},
	{"fail", 1, false}, {"locked", 1, false},
	{"locked", 0, true},
}

func TestEverySubjectLocksAtTheLimit(t *testing.T) {
	for _, by := range []Dimension{ByIP, ByUsername} {
		ks := NewKeyset(4, by)
		for _, m := range Makers {
			t.Run(by.String()+"/"+m.Name, func(t *testing.T) {
				c := Default()
				c.By = by
				var clk fakeClock
				c.Clock = clk.Now
				run(t, build(t, m, c), ks, lockSteps)
			})
		}
	}
}

func TestSubjectsWithAClockUnlockAfterTheWindow(t *testing.T) {
	ks := NewKeyset(4, ByIP)
	covered := 0
	for _, m := range Makers {
		if !m.FakeClock {
			continue
		}
		covered++
		t.Run(m.Name, func(t *testing.T) {
			c := Default()
			var clk fakeClock
			c.Clock = clk.Now
			s := build(t, m, c)
			run(t, s, ks, lockSteps)
			clk.Advance(c.Window + time.Second)
			run(t, s, ks, []step{
				{"locked", 0, false},
				{"fail", 0, false},
				{"locked", 0, false},
				{"locked", 1, false},
			})
		})
	}
	if covered < 5 {
		t.Fatalf("only %d subjects accept a clock; expected axes, baseline, throttled, x-time-rate and otter", covered)
	}
}

// TestConcurrentFailuresLock fails one key from several goroutines; every
// subject must end up locked. (Peers without an atomic get-or-add may lose a
// count when the key is created, so each goroutine fails twice the limit.)
func TestConcurrentFailuresLock(t *testing.T) {
	ks := NewKeyset(1, ByIP)
	for _, m := range Makers {
		t.Run(m.Name, func(t *testing.T) {
			c := Default()
			var clk fakeClock
			c.Clock = clk.Now
			s := build(t, m, c)
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for range 2 * c.Limit {
						s.Fail(ks.Key(0))
					}
				})
			}
			wg.Wait()
			if !s.Locked(ks.Key(0)) {
				t.Fatal("not locked after concurrent failures")
			}
		})
	}
}

func TestCappedSubjectsStayBounded(t *testing.T) {
	const keys, limit = 20_000, 2_000
	c := Default()
	c.MaxKeys = limit
	var clk fakeClock
	c.Clock = clk.Now
	for _, m := range Makers {
		if !m.Capped {
			continue
		}
		t.Run(m.Name, func(t *testing.T) {
			s := build(t, m, c)
			// Lock a key, then spray ten times the cap: a capped subject
			// must keep working. Within twice the cap it must not report
			// keys it never saw as locked; beyond, axes over-counts by
			// design (a full store fails closed, never open), and the
			// other subjects forget.
			ks := NewKeyset(keys, ByIP)
			for range c.Limit {
				s.Fail(ks.Key(0))
			}
			for i := 1; i < keys; i++ {
				if s.Fail(ks.Key(i)) && i < 2*limit {
					t.Fatalf("first failure of key %d reported locked within twice the cap", i)
				}
			}
			if m.Name == "axes" && !s.Locked(ks.Key(0)) {
				t.Error("the spray unlocked the locked key")
			}
		})
	}
}

func TestConfigIsValidated(t *testing.T) {
	bad := []Config{
		{Limit: 0, Window: time.Minute},
		{Limit: 5, Window: 0},
		{Limit: 5, Window: time.Minute, MaxKeys: -1},
	}
	for _, m := range Makers {
		for i, c := range bad {
			if s, err := m.New(c); err == nil {
				s.Close()
				t.Errorf("%s: config %d accepted", m.Name, i)
			}
		}
	}
}

func TestKeys(t *testing.T) {
	for _, by := range []Dimension{ByIP, ByUsername} {
		ks := NewKeyset(70_000, by)
		seen := make(map[string]bool, ks.Len())
		for i := range ks.Len() {
			k := ks.Key(i)
			if seen[k.S] {
				t.Fatalf("%v: key %d (%q) repeats", by, i, k.S)
			}
			seen[k.S] = true
			if f := FreshKey(uint32(i), by); f != k {
				t.Fatalf("%v: FreshKey(%d) = %v, Keyset has %v", by, i, f, k)
			}
		}
	}
	if got := NewKeyset(300, ByIP).Key(257); got.S != "10.0.1.1" || got.IP.String() != "10.0.1.1" {
		t.Fatalf("key 257 = %+v, want 10.0.1.1", got)
	}
	if got := NewKeyset(8, ByUsername).Key(7).S; got != "user7" {
		t.Fatalf("username key 7 = %q", got)
	}
}

func TestZipfIndexes(t *testing.T) {
	a := ZipfIndexes(1<<14, 1000, zipfS, 7)
	b := ZipfIndexes(1<<14, 1000, zipfS, 7)
	hits := make(map[uint32]int)
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed gave different sequences")
		}
		if a[i] >= 1000 {
			t.Fatalf("index %d out of range", a[i])
		}
		hits[a[i]]++
	}
	// Rank 0 maps to index 0; it must be the most popular by far.
	for k, n := range hits {
		if k != 0 && n >= hits[0] {
			t.Fatalf("index %d (%d hits) as popular as rank 0 (%d hits)", k, n, hits[0])
		}
	}
}

func TestAllocationFreeDriver(t *testing.T) {
	ks := NewKeyset(1000, ByIP)
	var k Key
	if n := testing.AllocsPerRun(100, func() { k = ks.Key(999) }); n != 0 {
		t.Fatalf("Keyset.Key allocates %v times", n)
	}
	_ = k
}
