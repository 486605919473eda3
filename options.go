package axes

import (
	"time"

	"github.com/axes-go/axes/store"
)

// Options of New: the clock, the entry cap, the digest secret, the store
// and the reserve timeout.

// Option configures New.
type Option func(*config)

type config struct {
	clock          func() time.Time
	clockSet       bool // WithClock was given
	maxEntries     int
	secret         []byte
	secretSet      bool
	store          store.Store
	reserveTimeout time.Duration
}

// WithClock makes the limiter read time from now instead of time.Now, for
// tests and simulations. The clock must be safe for concurrent use.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.clock, c.clockSet = now, true }
}

// WithMaxEntries caps the entries of the memory store (default 1<<20).
// Whatever clients send, the store's heap stays within about 130 bytes per
// entry of the cap (about 130 MB at the default): about 60 for the table,
// 4 for the sketch and the filter of locks, and at most 64 for the
// identities of current locks. A lock that starts once the identity budget
// is spent is enforced all the same and listed by digest only
// (Stats.IdentitiesOverBudget). BenchmarkMemoryWorstCase measures 120 bytes
// per entry for a store full of locks with 300-byte usernames and user
// agents.
//
// When the cap is reached, expired entries go first, then live unlocked
// entries with the fewest failures; locked and reserved entries are never
// evicted. Nothing is forgotten: an evicted entry's state folds into a
// fixed-size sketch, and a key that finds no slot because only locked or
// reserved entries remain is decided on the sketch and recorded there
// (Stats.Overflows, Stats.SketchDecisions). The sketch may over-count a key,
// never under-count it, so storage pressure never grants an extra guess;
// the README ("Under pressure") says how much it over-counts.
func WithMaxEntries(n int) Option { return func(c *config) { c.maxEntries = n } }

// WithSecret sets the key of the digests that identify dimensions. Without
// it a random secret is drawn per limiter, which is right for one process;
// several servers sharing one store (Redis) must all use the same secret,
// of at least 16 bytes.
func WithSecret(secret []byte) Option {
	return func(c *config) { c.secret = append([]byte(nil), secret...); c.secretSet = true }
}

// WithStore makes the limiter keep its state in s instead of the memory
// store. The limiter closes s in Close.
func WithStore(s store.Store) Option { return func(c *config) { c.store = s } }

// WithReserveTimeout sets how long a reservation from Begin may stay
// unsettled before it counts as a failure (default DefaultReserveTimeout).
// It should exceed the longest password check.
func WithReserveTimeout(d time.Duration) Option {
	return func(c *config) { c.reserveTimeout = d }
}
