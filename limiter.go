package axes

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/axes-go/axes/store"
	mrand "math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter counts failed login attempts and locks clients out, by the
// dimensions of its Policy. Create one with New; all methods are safe for
// concurrent use.
//
// Most callers want Begin: it reserves the attempt before the password is
// checked, so that however many requests race, at most Limit reach the check
// in each lock cycle. The plain pattern
//
//	if lim.Locked(k) { refuse }
//	if !passwordOK { lim.Fail(k) } else { lim.Success(k) }
//
// is simpler but weaker: requests that pass Locked together all reach the
// password check before any of their failures is counted, so a burst of N
// parallel requests can get up to N guesses past a limit.
type Limiter struct {
	rule        store.Rule
	jitter      float64 // Backoff.Jitter, drawn into each attempt's rule
	dims        []Fields
	needUser    bool
	needUA      bool
	needIP      bool
	h           hasher
	v6bits      int
	normalize   func(string) string
	limitFunc   func(Key) int
	cooloffFunc CooloffFunc
	never       IPSet
	only        IPSet
	deny        IPSet
	neverUser   func(Key) bool
	onEvent     func(Event)
	clock       func() time.Time
	store       store.Store
	mem         *memStore // the store, when it is the memory store
	closeOnce   sync.Once

	// The counters are written on every decision; the padding keeps them
	// off the cache lines of the read-mostly fields above.
	_ [64]byte
	n counters
}

// counters are striped: every decision adds to a stripe drawn at random,
// so that cores counting at once do not contend for one cache line.
// Stats sums the stripes.
type counters struct {
	s [16]counterStripe
}

type counterStripe struct {
	failures, lockouts, refused, successes, resets, storeErrors atomic.Uint64
	_                                                           [128 - 6*8]byte // a stripe per two cache lines
}

// c returns a stripe for the calling goroutine to add to.
func (n *counters) c() *counterStripe { return &n.s[mrand.Uint32()&15] }

func (n *counters) sum(f func(*counterStripe) *atomic.Uint64) uint64 {
	var t uint64
	for i := range n.s {
		t += f(&n.s[i]).Load()
	}
	return t
}

// Option configures New.
type Option func(*config)

type config struct {
	clock          func() time.Time
	maxEntries     int
	secret         []byte
	secretSet      bool
	store          store.Store
	reserveTimeout time.Duration
}

// WithClock makes the limiter read time from now instead of time.Now, for
// tests and simulations. The clock must be safe for concurrent use.
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

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

// New returns a Limiter for p, or an error prefixed "axes:" if p or an
// option is invalid.
func New(p Policy, opts ...Option) (*Limiter, error) {
	c := config{clock: time.Now, maxEntries: 1 << 20, reserveTimeout: DefaultReserveTimeout}
	for _, o := range opts {
		o(&c)
	}
	if c.clock == nil {
		return nil, errors.New("axes: WithClock needs a clock")
	}
	if c.maxEntries < 1 {
		return nil, fmt.Errorf("axes: WithMaxEntries must be positive, got %d", c.maxEntries)
	}
	if c.secretSet && len(c.secret) < 16 {
		return nil, fmt.Errorf("axes: WithSecret needs at least 16 bytes, got %d", len(c.secret))
	}
	if c.reserveTimeout <= 0 {
		return nil, fmt.Errorf("axes: WithReserveTimeout must be positive, got %v", c.reserveTimeout)
	}
	r, dims, err := p.rule()
	if err != nil {
		return nil, err
	}
	r.ReserveTimeout = c.reserveTimeout
	if !c.secretSet {
		c.secret = make([]byte, 32)
		rand.Read(c.secret)
	}
	l := &Limiter{
		rule:      r.Rule,
		jitter:    r.jitter,
		dims:      dims,
		h:         newHasher(c.secret),
		v6bits:    cmp.Or(p.IPv6Prefix, 64),
		normalize: p.NormalizeUsername,
		limitFunc: p.LimitFunc,
		never:     p.NeverLockout,
		only:      p.OnlyAllow,
		deny:      p.Deny,
		neverUser: p.NeverLockoutUser,
		onEvent:   p.OnEvent,
		clock:     c.clock,
		store:     c.store,
	}
	if f, ok := p.Cooloff.(CooloffFunc); ok {
		l.cooloffFunc = f
	}
	for _, f := range dims {
		l.needIP = l.needIP || f&IP != 0
		l.needUser = l.needUser || f&Username != 0
		l.needUA = l.needUA || f&UserAgent != 0
	}
	if l.store == nil {
		l.mem = newMemStore(c.maxEntries, c.clock().Add(-epochMargin), r.Rule)
		l.store = l.mem
	}
	return l, nil
}

// Must returns l, or panics if err is not nil. It is meant for tests,
// examples and package-level variables with constant policies.
func Must(l *Limiter, err error) *Limiter {
	if err != nil {
		panic(err)
	}
	return l
}

// Reason says why a verdict refuses an attempt.
type Reason uint8

// The reasons of Verdict.Reason.
const (
	ReasonNone        Reason = iota // not refused
	ReasonLockout                   // a dimension reached its limit and is locked
	ReasonDenied                    // the client IP is in Policy.Deny
	ReasonNotAllowed                // Policy.OnlyAllow is set and the client IP is not in it
	ReasonBusy                      // Begin: every remaining attempt of a dimension is in flight
	ReasonUnavailable               // the store failed; the limiter refuses rather than guess
)

var reasonNames = [...]string{"none", "lockout", "denied", "not_allowed", "busy", "unavailable"}

// String returns the reason's name, such as "lockout".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// BusyRetryAfter is the RetryAfter of a ReasonBusy verdict: the attempts in
// flight settle within a password check.
const BusyRetryAfter = time.Second

// Verdict is the outcome of an attempt: a value, not an error.
type Verdict struct {
	// Locked reports whether the attempt is refused (see Reason).
	Locked bool
	// Failures is the highest remembered failure count among the attempt's
	// dimensions.
	Failures int
	// Limit is the limit that applied to the attempt.
	Limit int
	// RetryAfter is the time remaining until the attempt could be admitted:
	// 0 when not locked, Indefinite for a lock with no end, BusyRetryAfter
	// for ReasonBusy. Never negative.
	RetryAfter time.Duration
	// By is the dimension that locked (the one locked longest), or when
	// not locked the most-counted one; 0 when nothing is counted.
	By Fields
	// Reason says why the attempt is refused; ReasonNone if it is not.
	Reason Reason
	// WouldLock reports, under Policy.ObserveOnly, that dimension By has
	// reached the limit and would be locked.
	WouldLock bool
}

// Fail records a failed attempt of k and returns the verdict: locked when
// the failure reaches the limit in any dimension, or when k was already
// locked (then the attempt is refused and, with ExtendLockOnRefused, counted
// and extends the lock).
func (l *Limiter) Fail(k Key) Verdict {
	return l.plain(context.Background(), store.OpFail, &k)
}

// FailContext is Fail with the caller's context, which a networked store
// gives up on when it is done (the memory store ignores it).
func (l *Limiter) FailContext(ctx context.Context, k Key) Verdict {
	return l.plain(ctx, store.OpFail, &k)
}

// Check returns the verdict for k without counting anything.
func (l *Limiter) Check(k Key) Verdict {
	return l.plain(context.Background(), store.OpCheck, &k)
}

// CheckContext is Check with the caller's context.
func (l *Limiter) CheckContext(ctx context.Context, k Key) Verdict {
	return l.plain(ctx, store.OpCheck, &k)
}

// Locked reports whether an attempt of k would be refused now. The common
// "no" answer on the memory store costs the key's digests and one atomic
// load per dimension: no lock and no clock read.
func (l *Limiter) Locked(k Key) bool {
	return l.LockedContext(context.Background(), k)
}

// LockedContext is Locked with the caller's context.
func (l *Limiter) LockedContext(ctx context.Context, k Key) bool {
	if r, _ := l.listed(&k); r != listNone {
		return r == listRefused
	}
	if l.mem != nil {
		var fs fieldSet
		l.fieldsOf(&k, &fs)
		maybe := false
		for _, f := range l.dims {
			if l.mem.mayBeLocked(l.h.dimensionDigest(f, &fs)) {
				maybe = true
				break
			}
		}
		if !maybe {
			return false
		}
	}
	return l.plain(ctx, store.OpCheck, &k).Locked
}

// Success records a successful login of k. Under ResetOnSuccess it forgets
// the failures and back-off level of each of k's dimensions that is not
// locked; otherwise it only counts and reports the success.
func (l *Limiter) Success(k Key) {
	l.SuccessContext(context.Background(), k)
}

// SuccessContext is Success with the caller's context.
func (l *Limiter) SuccessContext(ctx context.Context, k Key) {
	if l.rule.ResetOnSuccess {
		l.plain(ctx, store.OpSuccess, &k)
		return
	}
	if r, _ := l.listed(&k); r == listRefused {
		return
	}
	l.n.c().successes.Add(1)
	if l.onEvent != nil {
		l.onEvent(Event{Kind: EventSuccess, Time: l.clock(), Key: k, Limit: l.rule.Limit})
	}
}

// Reset forgets every dimension of k: its failures, lock and back-off
// level.
func (l *Limiter) Reset(k Key) {
	l.plain(context.Background(), store.OpReset, &k)
}

// ResetContext is Reset with the caller's context.
func (l *Limiter) ResetContext(ctx context.Context, k Key) {
	l.plain(ctx, store.OpReset, &k)
}

type listResult uint8

const (
	listNone listResult = iota
	listRefused
	listExempt
)

// listed applies the IP lists and the user exemption.
func (l *Limiter) listed(k *Key) (listResult, Reason) {
	if !l.deny.IsEmpty() && l.deny.Contains(k.IP) {
		return listRefused, ReasonDenied
	}
	if !l.only.IsEmpty() && !l.only.Contains(k.IP) {
		return listRefused, ReasonNotAllowed
	}
	if !l.never.IsEmpty() && l.never.Contains(k.IP) {
		return listExempt, ReasonNone
	}
	if l.neverUser != nil && l.neverUser(*k) {
		return listExempt, ReasonNone
	}
	return listNone, ReasonNone
}

// fieldsOf computes the per-field inputs of k's digests, each once.
func (l *Limiter) fieldsOf(k *Key, fs *fieldSet) {
	if l.needIP {
		fs.pfx = canonicalIP(k.IP, l.v6bits)
		fs.ip = encodeIP(fs.pfx)
	}
	if l.needUser {
		if l.normalize == nil {
			fs.user = l.h.usernameDigest(k.Username)
		} else {
			fs.user = l.h.fieldDigest(tagUsername, l.normalize(k.Username))
		}
	}
	if l.needUA {
		fs.ua = l.h.fieldDigest(tagUserAgent, k.UserAgent)
	}
}

// digests fills dims with the digests of k's dimensions and returns how
// many there are. With index it also fills the index keys that writes
// need.
func (l *Limiter) digests(k *Key, dims *[8]store.Dim, index bool) int {
	var fs fieldSet
	l.fieldsOf(k, &fs)
	var ipKey Digest
	if index && l.needIP {
		ipKey = l.h.ipDigest(&fs.ip)
	}
	for i, f := range l.dims {
		d := &dims[i]
		*d = store.Dim{Fields: f, Digest: l.h.dimensionDigest(f, &fs)}
		if index {
			if f&IP != 0 {
				d.IPKey = ipKey
			}
			if f&Username != 0 {
				d.UserKey = fs.user
			}
		}
	}
	return len(l.dims)
}

func (l *Limiter) identity(k *Key) store.Identity {
	id := store.Identity{Username: truncate(k.Username), UserAgent: truncate(k.UserAgent)}
	if k.IP.IsValid() {
		id.IP = canonicalIP(k.IP, l.v6bits)
	}
	return id
}

// plain runs one operation without a reservation.
func (l *Limiter) plain(ctx context.Context, op store.Op, k *Key) Verdict {
	if lr, reason := l.listed(k); lr != listNone {
		if lr == listRefused {
			if op == store.OpFail {
				l.refusedByList(k, reason)
			}
			return listVerdict(reason, l.rule.Limit)
		}
		if op != store.OpReset {
			if op == store.OpSuccess {
				l.n.c().successes.Add(1)
			}
			return Verdict{Limit: l.rule.Limit}
		}
	}
	// Every operation but a reset gets the attempt's own rule and identity:
	// even a Check may find reservations that timed out and start a lock.
	rule := l.rule
	var id store.Identity
	if op != store.OpReset {
		rule = l.forAttempt(k)
		id = l.identity(k)
	}
	var dims [8]store.Dim
	now := l.clock()
	req := store.Request{Op: op, Rule: &rule, Now: now, Identity: id}
	n := l.digests(k, &dims, op == store.OpFail)
	req.Dims = dims[:n]
	if err := l.run(ctx, &req, now, id); err != nil {
		return Verdict{Locked: true, Limit: rule.Limit, Reason: ReasonUnavailable, RetryAfter: BusyRetryAfter}
	}
	return l.finish(op, k, &req, now)
}

func listVerdict(r Reason, limit int) Verdict {
	return Verdict{Locked: true, Limit: limit, Reason: r, RetryAfter: Indefinite, By: IP}
}

func (l *Limiter) refusedByList(k *Key, r Reason) {
	l.n.c().refused.Add(1)
	if l.onEvent != nil {
		l.onEvent(Event{Kind: EventRefused, Time: l.clock(), Key: *k, By: IP, Reason: r, Limit: l.rule.Limit})
	}
}

// run hands req to the store. now and id repeat req.Now and req.Identity:
// the interface path takes them from here rather than from req, so that
// escape analysis keeps req, its store.Rule and its Dims on the caller's stack.
func (l *Limiter) run(ctx context.Context, req *store.Request, now time.Time, id store.Identity) error {
	if l.mem != nil {
		l.mem.apply(req)
		return nil
	}
	return l.runStore(ctx, req, now, id)
}

// runStore calls a store through the interface with a copy of the request
// on the heap.
//
//go:noinline
func (l *Limiter) runStore(ctx context.Context, req *store.Request, now time.Time, id store.Identity) error {
	rule := new(store.Rule)
	*rule = *req.Rule
	r := &store.Request{Op: req.Op, Now: now, Rule: rule, Identity: id, Dims: make([]store.Dim, len(req.Dims))}
	copy(r.Dims, req.Dims)
	err := l.store.Apply(ctx, r)
	if err != nil {
		l.n.c().storeErrors.Add(1)
		return err
	}
	copy(req.Dims, r.Dims)
	return nil
}

// finish builds the verdict of a completed request, counts it and emits
// its events.
func (l *Limiter) finish(op store.Op, k *Key, req *store.Request, now time.Time) Verdict {
	v := Verdict{Limit: req.Rule.Limit}
	refused := false
	busy := -1
	most := -1
	for i := range req.Dims {
		d := &req.Dims[i]
		o := &d.Outcome
		v.Failures = max(v.Failures, o.Failures)
		if o.Locked {
			v.Locked = true
			if o.Remaining > v.RetryAfter || v.By == 0 {
				v.RetryAfter = o.Remaining
				v.By = d.Fields
			}
		}
		if o.Busy && busy < 0 {
			busy = i
		}
		if o.Failures > 0 && (most < 0 || o.Failures > req.Dims[most].Outcome.Failures) {
			most = i
		}
	}
	switch {
	case v.Locked:
		v.Reason = ReasonLockout
		// The failure that reaches the limit is answered with the lock but
		// was counted, not refused.
		refused = len(req.Dims) > 0 && req.Dims[0].Outcome.Refused
	case busy >= 0:
		v.Locked, v.Reason, v.RetryAfter, v.By = true, ReasonBusy, BusyRetryAfter, req.Dims[busy].Fields
		refused = true
	case most >= 0:
		v.By = req.Dims[most].Fields
		if req.Rule.ObserveOnly && v.Failures >= req.Rule.Limit {
			v.WouldLock = true
		}
	}
	if op == store.OpReset {
		v = Verdict{Limit: req.Rule.Limit}
	}
	// Counters and events.
	switch op {
	case store.OpFail, store.OpSettleFail:
		if !refused {
			l.n.c().failures.Add(1)
		}
	case store.OpSuccess, store.OpSettleSuccess:
		l.n.c().successes.Add(1)
	case store.OpReset:
		l.n.c().resets.Add(1)
	}
	if refused {
		l.n.c().refused.Add(1)
	}
	started, timedOut := 0, 0
	for i := range req.Dims {
		if req.Dims[i].Outcome.Started {
			started++
		}
		timedOut = max(timedOut, req.Dims[i].Outcome.TimedOut)
	}
	if timedOut > 0 {
		// Reservations never settled count as the failures they became.
		l.n.c().failures.Add(uint64(timedOut))
	}
	if started > 0 {
		l.n.c().lockouts.Add(uint64(started))
	}
	if l.onEvent == nil {
		return v
	}
	for i := range req.Dims {
		d := &req.Dims[i]
		o := &d.Outcome
		if o.Counted {
			l.onEvent(Event{Kind: EventFailure, Time: now, Key: *k, By: d.Fields, Failures: o.Failures, Limit: v.Limit})
		}
		if o.Started {
			l.onEvent(Event{Kind: EventLockout, Time: now, Key: *k, By: d.Fields, Failures: o.Failures, Limit: v.Limit, Until: until(now, o.Remaining)})
		}
	}
	switch {
	case refused:
		l.onEvent(Event{Kind: EventRefused, Time: now, Key: *k, By: v.By, Reason: v.Reason, Failures: v.Failures, Limit: v.Limit, Until: until(now, v.RetryAfter)})
	case op == store.OpSuccess || op == store.OpSettleSuccess:
		l.onEvent(Event{Kind: EventSuccess, Time: now, Key: *k, Limit: v.Limit})
	case op == store.OpReset:
		l.onEvent(Event{Kind: EventReset, Time: now, Key: *k, Count: len(req.Dims)})
	}
	return v
}

func until(now time.Time, remaining time.Duration) time.Time {
	if remaining == Indefinite || remaining <= 0 {
		return time.Time{}
	}
	return now.Add(remaining)
}

// ResetIP forgets every entry whose dimension counts ip (grouped as the
// policy groups IPv6), for every combination, username and user agent, and
// returns how many it forgot. The memory store matches entries by a 32-bit
// tag of the IP, so in very rare cases it also forgets an unrelated entry
// that shares the tag; it never misses one.
func (l *Limiter) ResetIP(ip netip.Addr) int {
	n, _ := l.ResetIPContext(context.Background(), ip)
	return n
}

// ResetIPContext is ResetIP with the caller's context, and the store's
// error, if any.
func (l *Limiter) ResetIPContext(ctx context.Context, ip netip.Addr) (int, error) {
	b := encodeIP(canonicalIP(ip, l.v6bits))
	n, err := l.store.ResetField(ctx, IP, l.h.ipDigest(&b))
	if err != nil {
		l.n.c().storeErrors.Add(1)
	}
	l.resetEvent(Key{IP: ip}, n)
	return n, err
}

// ResetUsername forgets every entry whose dimension counts name (after
// normalisation), for every combination, IP and user agent, and returns how
// many it forgot. The same caveat on tags as ResetIP applies.
func (l *Limiter) ResetUsername(name string) int {
	n, _ := l.ResetUsernameContext(context.Background(), name)
	return n
}

// ResetUsernameContext is ResetUsername with the caller's context, and the
// store's error, if any.
func (l *Limiter) ResetUsernameContext(ctx context.Context, name string) (int, error) {
	var d Digest
	if l.normalize == nil {
		d = l.h.usernameDigest(name)
	} else {
		d = l.h.fieldDigest(tagUsername, l.normalize(name))
	}
	n, err := l.store.ResetField(ctx, Username, d)
	if err != nil {
		l.n.c().storeErrors.Add(1)
	}
	l.resetEvent(Key{Username: name}, n)
	return n, err
}

// ResetAll forgets everything and returns how many entries it forgot.
func (l *Limiter) ResetAll() int {
	n, _ := l.ResetAllContext(context.Background())
	return n
}

// ResetAllContext is ResetAll with the caller's context, and the store's
// error, if any.
func (l *Limiter) ResetAllContext(ctx context.Context) (int, error) {
	n, err := l.store.ResetAll(ctx)
	if err != nil {
		l.n.c().storeErrors.Add(1)
	}
	l.resetEvent(Key{}, n)
	return n, err
}

func (l *Limiter) resetEvent(k Key, n int) {
	l.n.c().resets.Add(1)
	if l.onEvent != nil {
		l.onEvent(Event{Kind: EventReset, Time: l.clock(), Key: k, Count: n})
	}
}

// ResetClient forgets what would refuse the next attempt of the client
// (ip, username): every dimension of the policy that counts the IP, the
// username or both, but not the user agent, keyed on them. Dimensions that
// count the user agent are kept, since their digests need it (ResetIP and
// ResetUsername forget those too). It returns how many dimensions it
// reset.
func (l *Limiter) ResetClient(ip netip.Addr, username string) int {
	n, _ := l.ResetClientContext(context.Background(), ip, username)
	return n
}

// ResetClientContext is ResetClient with the caller's context, and the
// store's error, if any.
func (l *Limiter) ResetClientContext(ctx context.Context, ip netip.Addr, username string) (int, error) {
	k := Key{IP: ip, Username: username}
	var dims [8]store.Dim
	n := l.digests(&k, &dims, false)
	j := 0
	for i := range n {
		if dims[i].Fields&UserAgent == 0 {
			dims[j] = dims[i]
			j++
		}
	}
	now := l.clock()
	rule := l.rule
	req := store.Request{Op: store.OpReset, Now: now, Rule: &rule, Dims: dims[:j]}
	if err := l.run(ctx, &req, now, store.Identity{}); err != nil {
		return 0, err
	}
	l.resetEvent(k, j)
	return j, nil
}

// ResetLockout lifts exactly the lock lo, as listed by Lockouts: it
// forgets dimension lo.By of that client, by its digest, and leaves the
// client's other dimensions as they are.
func (l *Limiter) ResetLockout(lo Lockout) {
	_ = l.ResetLockoutContext(context.Background(), lo)
}

// ResetLockoutContext is ResetLockout with the caller's context, and the
// store's error, if any.
func (l *Limiter) ResetLockoutContext(ctx context.Context, lo Lockout) error {
	dims := [1]store.Dim{{Fields: lo.By, Digest: lo.Digest}}
	now := l.clock()
	rule := l.rule
	req := store.Request{Op: store.OpReset, Now: now, Rule: &rule, Dims: dims[:]}
	if err := l.run(ctx, &req, now, store.Identity{}); err != nil {
		return err
	}
	l.resetEvent(Key{Username: lo.Username, UserAgent: lo.UserAgent, IP: lo.IP.Addr()}, 1)
	return nil
}

// Lockout is one current lock, as Lockouts lists it, with the client of the
// attempt that started it: its grouped IP, and its username and user agent
// as sent, cut to MaxIdentityBytes (empty, with only the digest, for a lock
// that started once the identity budget was spent).
type Lockout = store.Lockout

// MaxIdentityBytes bounds the username and user agent kept for each current
// lock.
const MaxIdentityBytes = store.MaxIdentityBytes

// Lockouts lists the current locks, soonest end first (locks with no end
// last), with who they are about as seen when each lock began. It returns
// nil if the store cannot list locks.
func (l *Limiter) Lockouts() []Lockout {
	out, _ := l.LockoutsContext(context.Background())
	return out
}

// LockoutsContext is Lockouts with the caller's context, and the store's
// error, if any.
func (l *Limiter) LockoutsContext(ctx context.Context) ([]Lockout, error) {
	ll, ok := l.store.(store.LockLister)
	if !ok {
		return nil, nil
	}
	out, err := ll.Lockouts(ctx, l.clock())
	if err != nil {
		l.n.c().storeErrors.Add(1)
		return nil, err
	}
	slices.SortFunc(out, func(a, b Lockout) int {
		switch {
		case a.Until.IsZero() != b.Until.IsZero():
			if a.Until.IsZero() {
				return 1
			}
			return -1
		case !a.Until.Equal(b.Until):
			return a.Until.Compare(b.Until)
		}
		if c := strings.Compare(a.Username, b.Username); c != 0 {
			return c
		}
		if c := a.IP.Addr().Compare(b.IP.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.By, b.By)
	})
	return out, nil
}

// Stats are a limiter's running figures, cheap to read every second.
// Failures counts failures the store recorded, exactly or, under storage
// pressure, in the memory store's sketch.
type Stats struct {
	Entries         int    // entries the store holds now
	Failures        uint64 // failed attempts counted
	Lockouts        uint64 // locks started (per dimension)
	Refused         uint64 // attempts refused without reaching the password check
	Successes       uint64 // successful logins recorded
	Resets          uint64 // Reset, ResetIP, ResetUsername and ResetAll calls
	EvictedExpired  uint64 // entries dropped because they held nothing worth keeping
	EvictedPressure uint64 // live entries evicted to make room under the entry cap
	Overflows       uint64 // writes of keys that found no slot (only locks remained), recorded in the sketch
	SketchFolds     uint64 // evicted live entries folded into the sketch
	SketchDecisions uint64 // decisions made from the sketch's estimate, which may over-count
	// IdentitiesOverBudget counts locks kept without their identity (listed
	// by digest) because the identity budget was spent.
	IdentitiesOverBudget uint64
	StoreErrors          uint64 // store calls that failed
	Degraded             bool   // the store is deciding without its backend now (redisstore)
	Degradations         uint64 // times the store lost its backend
}

// Stats returns the limiter's figures.
func (l *Limiter) Stats() Stats {
	s := Stats{
		Failures:    l.n.sum(func(c *counterStripe) *atomic.Uint64 { return &c.failures }),
		Lockouts:    l.n.sum(func(c *counterStripe) *atomic.Uint64 { return &c.lockouts }),
		Refused:     l.n.sum(func(c *counterStripe) *atomic.Uint64 { return &c.refused }),
		Successes:   l.n.sum(func(c *counterStripe) *atomic.Uint64 { return &c.successes }),
		Resets:      l.n.sum(func(c *counterStripe) *atomic.Uint64 { return &c.resets }),
		StoreErrors: l.n.sum(func(c *counterStripe) *atomic.Uint64 { return &c.storeErrors }),
	}
	if sr, ok := l.store.(store.StatsReporter); ok {
		ss := sr.StoreStats()
		s.Entries = ss.Entries
		s.EvictedExpired = ss.EvictedExpired
		s.EvictedPressure = ss.EvictedPressure
		s.Overflows = ss.Overflows
		s.SketchFolds = ss.SketchFolds
		s.SketchDecisions = ss.SketchDecisions
		s.IdentitiesOverBudget = ss.IdentitiesOverBudget
		s.Degraded = ss.Degraded
		s.Degradations = ss.Degradations
	}
	return s
}

// Close closes the store. It is idempotent; the limiter must not be used
// after it.
func (l *Limiter) Close() error {
	var err error
	l.closeOnce.Do(func() {
		err = l.store.Close()
	})
	return err
}
