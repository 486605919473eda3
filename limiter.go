package axes

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/axes-go/axes/store"
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
	lazyClock   bool      // decisions pass a zero Now to mem, which reads the time itself (see now)
	closeOnce   sync.Once

	// The counters are written on every decision; the padding keeps them
	// off the cache lines of the read-mostly fields above.
	_      [64]byte
	counts counters
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
	if r.Spray.Limit > 0 {
		l.needIP, l.needUser = true, true
	}
	if l.store == nil {
		l.mem = newMemStore(c.maxEntries, c.clock().Add(-epochMargin), r.Rule)
		l.store = l.mem
		// On time.Now the store reads the monotonic clock alone for the
		// decisions that need no reading of their own (no events).
		l.mem.monotonic = !c.clockSet
		l.lazyClock = l.mem.monotonic && l.onEvent == nil
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

// Fail records a failed attempt of k and returns the verdict: locked when
// the failure reaches the limit in any dimension, or when k was already
// locked (then the attempt is refused and, with ExtendLockOnRefused, counted
// and extends the lock).
func (l *Limiter) Fail(k Key) Verdict {
	return l.direct(context.Background(), store.OpFail, &k)
}

// FailContext is Fail with the caller's context, which a networked store
// gives up on when it is done (the memory store ignores it).
func (l *Limiter) FailContext(ctx context.Context, k Key) Verdict {
	return l.direct(ctx, store.OpFail, &k)
}

// Check returns the verdict for k without counting anything.
func (l *Limiter) Check(k Key) Verdict {
	return l.direct(context.Background(), store.OpCheck, &k)
}

// CheckContext is Check with the caller's context.
func (l *Limiter) CheckContext(ctx context.Context, k Key) Verdict {
	return l.direct(ctx, store.OpCheck, &k)
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
	var fs fieldSet
	l.fieldsOf(&k, &fs)
	var ds [8]Digest
	maybe := l.mem == nil
	for i, f := range l.dims {
		ds[i] = l.h.dimensionDigest(f, &fs)
		maybe = maybe || l.mem.mayBeLocked(ds[i])
	}
	if !maybe && l.rule.Spray.Limit > 0 && fs.pfx.IsValid() {
		maybe = l.mem.mayBeLocked(l.h.sprayDigest(store.KindSpray, &fs))
	}
	if !maybe {
		return false // the common answer: no store.Dim built
	}
	if l.mem != nil && l.rule.Spray.Limit == 0 && l.mem.lockedFromCache(ds[:len(l.dims)], l.now) {
		// A Check answered from the lock cache counts nothing and emits
		// no event (see cached): the answer alone is enough.
		return true
	}
	var dims [8]store.Dim
	n := len(l.dims)
	for i, f := range l.dims {
		dims[i] = store.Dim{Fields: f, Digest: ds[i]}
	}
	if l.rule.Spray.Limit > 0 {
		n = l.sprayDims(&dims, n, &fs, Digest{}, false)
	}
	if v, ok := l.cached(store.OpCheck, &k, dims[:n]); ok {
		return v.Locked
	}
	return l.directDigested(ctx, store.OpCheck, &k, false, &fs, &dims, n).Locked
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
		l.direct(ctx, store.OpSuccess, &k)
		return
	}
	if r, _ := l.listed(&k); r == listRefused {
		return
	}
	l.counts.stripe().successes.Add(1)
	if l.onEvent != nil {
		l.onEvent(Event{Kind: EventSuccess, Time: l.clock(), Key: k, Limit: l.rule.Limit})
	}
}

// Reset forgets every dimension of k: its failures, lock and back-off
// level.
func (l *Limiter) Reset(k Key) {
	l.direct(context.Background(), store.OpReset, &k)
}

// ResetContext is Reset with the caller's context.
func (l *Limiter) ResetContext(ctx context.Context, k Key) {
	l.direct(ctx, store.OpReset, &k)
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

func (l *Limiter) refusedByList(k *Key, r Reason) {
	l.counts.stripe().refused.Add(1)
	if l.onEvent != nil {
		l.onEvent(Event{Kind: EventRefused, Time: l.clock(), Key: *k, By: IP, Reason: r, Limit: l.rule.Limit})
	}
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
		l.counts.stripe().storeErrors.Add(1)
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
		l.counts.stripe().storeErrors.Add(1)
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
		l.counts.stripe().storeErrors.Add(1)
	}
	l.resetEvent(Key{}, n)
	return n, err
}

func (l *Limiter) resetEvent(k Key, n int) {
	l.counts.stripe().resets.Add(1)
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
	n := l.digestsOf(&k, &dims)
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
		l.counts.stripe().storeErrors.Add(1)
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

// Close closes the store. It is idempotent; the limiter must not be used
// after it.
func (l *Limiter) Close() error {
	var err error
	l.closeOnce.Do(func() {
		err = l.store.Close()
	})
	return err
}
