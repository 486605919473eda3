package benchmarks

import (
	"fmt"
	"net/netip"
	"time"
)

// Key is one workload key in the two forms the subjects consume: S is the
// string every peer keys its map by (a dotted IPv4 address or a username), and
// IP is the same client as an address, which axes takes directly.
type Key struct {
	S  string
	IP netip.Addr
}

// Dimension says what a workload's keys are: client IPs or usernames.
type Dimension uint8

const (
	// ByIP keys are client IPv4 addresses.
	ByIP Dimension = iota
	// ByUsername keys are account names.
	ByUsername
)

// String returns "ip" or "username".
func (d Dimension) String() string {
	if d == ByUsername {
		return "username"
	}
	return "ip"
}

// Config is what every subject is built from, so that all of them enforce
// the same rule.
type Config struct {
	// Limit is the number of failures at which a key locks (the Limit-th
	// failure itself reports locked).
	Limit int
	// Window is how long failures (and the lock) last.
	Window time.Duration
	// MaxKeys caps the number of tracked keys for subjects that offer a cap;
	// 0 leaves them unbounded. Subjects without a cap ignore it.
	MaxKeys int
	// By is the dimension the keys belong to.
	By Dimension
	// Clock, when set, replaces time.Now for subjects that accept a clock
	// (see Maker.FakeClock). The others always read the wall clock.
	Clock func() time.Time
}

// Default returns the configuration all benchmarks use: 5 failures in a
// 15-minute window, keyed by IP, a 1M-key cap where a subject has one.
func Default() Config {
	return Config{Limit: 5, Window: 15 * time.Minute, MaxKeys: 1 << 20, By: ByIP}
}

func (c Config) validate() error {
	if c.Limit < 1 || c.Limit > 1<<20 {
		return fmt.Errorf("benchmarks: limit %d out of range", c.Limit)
	}
	if c.Window <= 0 {
		return fmt.Errorf("benchmarks: window %v must be positive", c.Window)
	}
	if c.MaxKeys < 0 {
		return fmt.Errorf("benchmarks: negative key cap %d", c.MaxKeys)
	}
	return nil
}

func (c Config) now() func() time.Time {
	if c.Clock != nil {
		return c.Clock
	}
	return time.Now
}

// Subject is one limiter adapted to "count failures per key, locked at the
// limit". All methods are safe for concurrent use.
type Subject interface {
	// Fail records a failed attempt for k and reports whether k is locked
	// now (the Limit-th failure reports true).
	Fail(k Key) bool
	// Locked reports whether k is locked, without counting an attempt.
	Locked(k Key) bool
	// Close releases the subject's goroutines and memory where it can.
	Close()
}

// Maker builds one kind of subject.
type Maker struct {
	// Name is short and safe in a benchmark name.
	Name string
	// Desc says which package and which mechanism the subject uses.
	Desc string
	// Capped reports whether the subject honours Config.MaxKeys.
	Capped bool
	// FakeClock reports whether the subject honours Config.Clock.
	FakeClock bool
	// New builds a subject; it returns an error for an invalid Config.
	New func(Config) (Subject, error)
}

// Makers lists every subject, axes first, then the baseline, then the peers.
var Makers = []Maker{
	axesMaker,
	baselineMaker,
	goLimiterMaker,
	ululeMaker,
	throttledMaker,
	rateMaker,
	goCacheMaker,
	lruMaker,
	otterMaker,
}

// Lookup returns the maker with the given name.
func Lookup(name string) (Maker, bool) {
	for _, m := range Makers {
		if m.Name == name {
			return m, true
		}
	}
	return Maker{}, false
}
