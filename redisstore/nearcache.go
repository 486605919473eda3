package redisstore

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
	"github.com/redis/go-redis/v9"
)

// Local locks: the lock ends Redis reported, kept in a bounded local cache
// so that a client known to be locked is refused without a round trip, and
// the invalidation channel that makes every reset reach every server's
// cache.
//
// Timeline. An entry's instants are nanoseconds on the cache's timeline:
// under UseRequestTime the script's (the request's Unix milliseconds, as
// the script reads them), so that the cache computes exactly the Remaining
// the script would; otherwise the store's monotonic clock (time.Since
// base). A lock end on the monotonic clock is the instant the request was
// sent plus the Remaining of the reply, less 1/1024 of it for the drift of
// the two clocks: the script ran after the request was sent, so the end is
// never later than the lock's true end, whatever the round trip took. The
// store's observed clock offset is not used: it is a lower bound of the
// server's clock, which would place the end later than it is (a client
// refused after its lock ended). An entry can therefore only end early,
// and an ended entry sends the next decision to Redis.
//
// Why a cached lock end is never later than Redis's. The cache serves only
// decisions whose rule has Extend false, and fills only from them. Redis
// moves a lock end in three ways: a lock starts (only when the dimension
// is not locked, so never under a cached lock), a refused attempt extends
// it (Extend, or the write-back of an outage lock: both only push it
// later, by max) and a reset deletes it. Later ends leave the cached end a
// lower bound; resets publish an invalidation. So the cache may refuse for
// less time than Redis would, never for more, except between a reset and
// the delivery of its invalidation.
//
// Failures. A cached answer carries the failures Redis reported with the
// lock. Redis forgets them Window after the last failure, which the reply
// does not tell; the entry keeps them only while they cannot have been
// forgotten (failUntil), and a decision for which any of the attempt's
// dimensions holds a lock whose failures are no longer known goes to
// Redis. They are known:
//   - for the whole lock when the reply reported none (while locked
//     without Extend nothing counts, so none come back);
//   - for the whole lock when the lock cannot outlast Window: a lock starts
//     no later than the last failure, so the failures outlive every lock no
//     longer than Window. The longest lock comes from the attempt's rule
//     (Cooloff, MaxCooloff under back-off, the longest tier); Forever and
//     Backoff jitter have no bound, and a lock longer than Window leaves
//     its failures known until end - longest + Window;
//   - until Window after the reply when the reply counted a failure (the
//     last failure is then the reply's instant).
//
// What is not exact. A dimension of a served attempt that the cache does
// not hold is reported unlocked with no failures: the attempt is refused
// all the same (Fail, Begin) or reported locked (Check), but Verdict's
// RetryAfter and Failures are those of the cached dimensions. The
// failures that settles of reservations (Settle as a failure, or a
// reservation timing out) add to a locked dimension on another server are
// seen at its next decision on Redis; the reservations time out in Redis
// at the same instants whether or not the cache answered.

// nearWays is the associativity of the cache: a digest may sit in any of
// the nearWays slots of its bucket.
const nearWays = 8

// nearStripes is the number of mutexes guarding the buckets.
const nearStripes = 64

// nearPing is how long the listener waits for a message before pinging,
// and for the pong before it drops the cache and subscribes again.
const nearPing = time.Second

// nearEntry is one cached lock. It takes 72 bytes.
type nearEntry struct {
	d, ipKey, userKey axes.Digest // the dimension and its field keys (zero if none)
	end               int64       // lock end on the cache's timeline; math.MaxInt64 for none
	failUntil         int64       // failures known until then
	failures          int32
}

// nearCache is a set-associative array of locks, keyed by digest. Digests
// are keyed by the limiter's secret, so a client cannot choose its bucket.
type nearCache struct {
	mask    uint64      // buckets - 1
	slots   []nearEntry // nearWays per bucket; guarded by the bucket's stripe
	stripes [nearStripes]struct {
		sync.Mutex
		_ [56]byte // a cache line each, so that stripes do not contend through false sharing
	}
	// gen is bumped by every invalidation before it deletes anything, and
	// done after it has: a fill from a request sent under another
	// generation is dropped, so that no reply sent before a reset
	// repopulates the cache after it, and neither an answer nor a fill
	// overlaps an invalidation (see stable).
	gen   atomic.Uint64
	done  atomic.Uint64
	ready atomic.Bool // subscribed: invalidations are being received

	beforeFill func()      // tests: called after a reply, before it fills the cache
	afterGet   func(i int) // tests: called after serveNear reads dimension i
	afterPut   func(i int) // tests: called after fillNear caches dimension i
}

func newNearCache(size int) *nearCache {
	n := 1
	for n < size {
		n <<= 1
	}
	n = max(n, nearWays*nearStripes)
	return &nearCache{mask: uint64(n/nearWays - 1), slots: make([]nearEntry, n)}
}

func (c *nearCache) bucket(d axes.Digest) (*sync.Mutex, []nearEntry) {
	b := d.Lo & c.mask
	return &c.stripes[b%nearStripes].Mutex, c.slots[b*nearWays : (b+1)*nearWays]
}

// get returns d's entry, if any.
func (c *nearCache) get(d axes.Digest) (nearEntry, bool) {
	mu, b := c.bucket(d)
	mu.Lock()
	defer mu.Unlock()
	for i := range b {
		if b[i].d == d {
			return b[i], true
		}
	}
	return nearEntry{}, false
}

// put stores e if no invalidation happened since generation gen, replacing
// d's entry unless that one ends later, or else the bucket's entry of
// least use (the first whose lock or known failures end soonest).
func (c *nearCache) put(e nearEntry, gen uint64) {
	mu, b := c.bucket(e.d)
	mu.Lock()
	defer mu.Unlock()
	if c.gen.Load() != gen || !c.ready.Load() {
		return
	}
	victim := 0
	for i := range b {
		if b[i].d == e.d {
			if b[i].end <= e.end || b[i].failUntil < e.failUntil {
				b[i] = e
			}
			return
		}
		if min(b[i].end, b[i].failUntil) < min(b[victim].end, b[victim].failUntil) {
			victim = i
		}
	}
	b[victim] = e
}

// drop deletes d's entry, if any.
func (c *nearCache) drop(d axes.Digest) {
	mu, b := c.bucket(d)
	mu.Lock()
	for i := range b {
		if b[i].d == d {
			b[i] = nearEntry{}
		}
	}
	mu.Unlock()
}

// invalidate bumps the generation and deletes the entries that match: a
// digest, every dimension with a field key, or all (match nil).
func (c *nearCache) invalidate(match func(*nearEntry) bool, digests []axes.Digest) {
	c.gen.Add(1)
	defer c.done.Add(1)
	if digests != nil {
		for _, d := range digests {
			c.drop(d)
		}
		return
	}
	for s := range c.stripes {
		c.stripes[s].Lock()
		for b := uint64(s); b <= c.mask; b += nearStripes {
			for i := b * nearWays; i < (b+1)*nearWays; i++ {
				if match == nil || match(&c.slots[i]) {
					c.slots[i] = nearEntry{}
				}
			}
		}
		c.stripes[s].Unlock()
	}
}

// stable returns the generation and whether no invalidation is under way.
// An invalidation deletes bucket by bucket: a decision that read or filled
// the cache while one was half done could see some of an attempt's locks
// and not others, and answer with a lock other than the one Redis reports
// (another dimension, a shorter RetryAfter). So the cache answers only
// from reads that began and ended under one stable generation, and fills
// only from requests sent under one.
func (c *nearCache) stable() (uint64, bool) {
	d := c.done.Load() // before gen: equal means none started and unfinished
	g := c.gen.Load()
	return g, d == g
}

// nearTicket is what a decision notes before it goes to Redis, for the
// fill after the reply.
type nearTicket struct {
	gen uint64
	at  int64 // the request's instant on the cache's timeline
	ok  bool
}

// nearNow returns the current instant on the cache's timeline, or false
// when the request's time is out of its range.
func (s *Store) nearNow(req *store.Request) (int64, bool) {
	if !s.o.UseRequestTime {
		return int64(time.Since(s.base)), true
	}
	ms := max(req.Now.UnixMilli(), 0)
	if ms > math.MaxInt64/int64(time.Millisecond)/2 {
		return 0, false
	}
	return ms * int64(time.Millisecond), true
}

// serveNear answers req from the cache if it can: see the comment at the
// top of this file. It reports whether it did.
func (s *Store) serveNear(req *store.Request) bool {
	c := s.near
	if c == nil || req.Rule.Extend || len(req.Dims) == 0 || len(req.Dims) > 8 || !c.ready.Load() {
		return false
	}
	if req.Op != store.OpCheck && req.Op != store.OpFail && req.Op != store.OpBegin {
		return false
	}
	now, ok := s.nearNow(req)
	if !ok {
		return false
	}
	gen, ok := c.stable()
	if !ok {
		return false
	}
	var outs [8]store.Outcome
	hit := false
	for i := range req.Dims {
		e, ok := c.get(req.Dims[i].Digest)
		if c.afterGet != nil {
			c.afterGet(i)
		}
		if !ok || now >= e.end {
			continue
		}
		if now >= e.failUntil {
			return false // locked, with failures Redis may have forgotten
		}
		o := store.Outcome{Locked: true, Failures: int(e.failures), Remaining: axes.Indefinite}
		if e.end != math.MaxInt64 {
			o.Remaining = time.Duration(e.end - now)
		}
		outs[i], hit = o, true
	}
	if !hit || c.gen.Load() != gen {
		return false // nothing cached, or an invalidation ran during the reads
	}
	refused := req.Op != store.OpCheck
	for i := range req.Dims {
		outs[i].Refused = refused
		req.Dims[i].Outcome = outs[i]
	}
	s.n.saved.Add(1)
	return true
}

// nearTicket notes the generation and instant before req goes to Redis.
func (s *Store) nearTicket(req *store.Request) nearTicket {
	if s.near == nil || req.Rule.Extend || req.Op == store.OpReset {
		return nearTicket{}
	}
	at, ok := s.nearNow(req)
	gen, stable := s.near.stable()
	return nearTicket{gen: gen, at: at, ok: ok && stable}
}

// fillNear caches the locks of Redis's reply to req, and drops the
// entries of dimensions Redis reported unlocked.
func (s *Store) fillNear(req *store.Request, t nearTicket) {
	if !t.ok {
		return
	}
	c := s.near
	if c.beforeFill != nil {
		c.beforeFill()
	}
	for i := range req.Dims {
		d := &req.Dims[i]
		o := &d.Outcome
		if !o.Locked {
			if e, ok := c.get(d.Digest); ok && e.end > t.at {
				c.drop(d.Digest)
			}
			continue
		}
		e := nearEntry{d: d.Digest, end: math.MaxInt64, failures: int32(o.Failures)}
		if d.Fields&axes.IP != 0 {
			e.ipKey = d.IPKey
		}
		if d.Fields&axes.Username != 0 {
			e.userKey = d.UserKey
		}
		if old, ok := c.get(d.Digest); ok {
			// A read (Check) carries no index keys: keep those a write
			// brought, which field resets match.
			if e.ipKey.IsZero() {
				e.ipKey = old.ipKey
			}
			if e.userKey.IsZero() {
				e.userKey = old.userKey
			}
		}
		if o.Remaining != axes.Indefinite {
			rem := o.Remaining
			if !s.o.UseRequestTime {
				rem -= rem >> 10
			}
			e.end = satAddNS(t.at, int64(rem))
		}
		if d.Kind != store.KindCount && req.Rule.Spray.Limit > 0 {
			// A spray dimension keeps its failures under its own rule
			// (Spray.Window, Spray.Cooloff), as the script does.
			kr := req.Rule.ForKind(d.Kind)
			e.failUntil = s.failuresKnown(&kr, o, t.at, e.end)
		} else {
			e.failUntil = s.failuresKnown(req.Rule, o, t.at, e.end)
		}
		c.put(e, t.gen)
		if c.afterPut != nil {
			c.afterPut(i)
		}
	}
	if c.gen.Load() != t.gen {
		// An invalidation came between two puts, which it refused after
		// the first: take back the ones it let in, so that the cache
		// holds all of the reply's locks or none.
		for i := range req.Dims {
			if req.Dims[i].Outcome.Locked {
				c.drop(req.Dims[i].Digest)
			}
		}
	}
}

// failuresKnown returns until when the failures o reports cannot have
// been forgotten, for a lock that ends at end (see the top of the file).
func (s *Store) failuresKnown(r *store.Rule, o *store.Outcome, at, end int64) int64 {
	if o.Failures == 0 {
		return end
	}
	known := int64(math.MinInt64)
	if o.Counted && o.TimedOut == 0 {
		known = satAddNS(at, int64(r.Window))
	}
	if longest := longestLock(r); longest != axes.Indefinite && end != math.MaxInt64 {
		if longest <= r.Window {
			return end
		}
		// The script rounds a lock's duration up to the millisecond.
		known = max(known, end-int64(longest)-int64(time.Millisecond)+int64(r.Window))
	}
	return min(known, end)
}

// longestLock returns the longest lock r can start, or Indefinite when
// there is no bound (Forever, back-off without a cap, jitter).
func longestLock(r *store.Rule) time.Duration {
	if r.JitterScale != 0 && r.JitterScale != 1 {
		return axes.Indefinite
	}
	if len(r.Tiers) > 0 {
		var d time.Duration
		for _, t := range r.Tiers {
			d = max(d, t.Cooloff)
		}
		return d
	}
	if r.Factor > 1 {
		if r.MaxCooloff <= 0 {
			return axes.Indefinite
		}
		return max(r.Cooloff, r.MaxCooloff)
	}
	return r.Cooloff
}

func satAddNS(t, d int64) int64 {
	if d > math.MaxInt64-1-t {
		return math.MaxInt64 - 1
	}
	return t + d
}

// Invalidation messages: "a" (everything), "d" and the digests of the
// dimensions reset (32 hexadecimal digits each), "i" or "u" and the
// digest of an IP or a username whose dimensions were reset.

// channel returns the invalidation channel, beside the store's keys.
func (s *Store) channel() string { return s.root + "locks" }

// publishReset drops what msg names from this store's cache and publishes
// it to every server's, after the reset it describes has been applied in
// Redis. Stores publish even without a cache of their own, for the others.
func (s *Store) publishReset(ctx context.Context, msg string) error {
	if s.near != nil {
		s.applyInvalidation(msg)
	}
	return s.c.Publish(ctx, s.channel(), msg).Err()
}

// digestsMessage returns the message of a reset of dims.
func digestsMessage(dims []store.Dim) string {
	var b strings.Builder
	b.Grow(1 + 32*len(dims))
	b.WriteByte('d')
	for i := range dims {
		b.WriteString(dims[i].Digest.String())
	}
	return b.String()
}

// fieldMessage returns the message of a reset of field f with key k.
func fieldMessage(f axes.Fields, k axes.Digest) string {
	if f == axes.IP {
		return "i" + k.String()
	}
	return "u" + k.String()
}

// applyInvalidation drops what msg names from the cache; a message it
// cannot read drops everything.
func (s *Store) applyInvalidation(msg string) {
	c := s.near
	if len(msg) > 0 && (msg[0] == 'i' || msg[0] == 'u') && len(msg) == 33 {
		if k, err := store.ParseDigest(msg[1:]); err == nil {
			// An entry whose index key is unknown (learned from reads
			// alone) may be of that field: it goes too.
			if msg[0] == 'i' {
				c.invalidate(func(e *nearEntry) bool { return e.ipKey == k || e.ipKey.IsZero() }, nil)
			} else {
				c.invalidate(func(e *nearEntry) bool { return e.userKey == k || e.userKey.IsZero() }, nil)
			}
			return
		}
	}
	if len(msg) > 1 && msg[0] == 'd' && (len(msg)-1)%32 == 0 {
		ds := make([]axes.Digest, 0, (len(msg)-1)/32)
		for p := 1; p < len(msg); p += 32 {
			d, err := store.ParseDigest(msg[p : p+32])
			if err != nil {
				ds = nil
				break
			}
			ds = append(ds, d)
		}
		if ds != nil {
			c.invalidate(nil, ds)
			return
		}
	}
	c.invalidate(nil, nil)
}

// listen receives the invalidations until the store closes. The cache
// serves only while the subscription is confirmed: when the connection
// fails, or a ping goes unanswered for nearPing, the cache is dropped
// whole and waits for the next confirmation (go-redis resubscribes on a
// new connection), since messages may have been missed in between.
func (s *Store) listen() {
	defer s.wg.Done()
	ctx := context.Background()
	ps := s.c.Subscribe(ctx, s.channel())
	s.nearPS.Store(ps)
	pinged, warned := false, false
	lost := func() {
		if s.near.ready.Swap(false) {
			s.n.invalidations.Add(1)
		}
		s.near.invalidate(nil, nil)
	}
	for {
		msg, err := ps.ReceiveTimeout(ctx, nearPing)
		select {
		case <-s.stop:
			ps.Close()
			return
		default:
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = true
				if ps.Ping(ctx) == nil {
					continue
				}
			}
			lost()
			if !warned {
				warned = true
				s.log.Warn("redisstore: the lock invalidation channel is unavailable; locks are not served locally until it is back", "err", err)
			}
			if pinged {
				// No pong: the connection may be dead without an error.
				pinged = false
				ps.Close()
				ps = s.c.Subscribe(ctx, s.channel())
				s.nearPS.Store(ps)
			}
			select {
			case <-s.stop:
				ps.Close()
				return
			case <-time.After(s.o.ProbeInterval):
			}
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.near.invalidate(nil, nil)
				s.near.ready.Store(true)
				warned = false
			}
		case *redis.Message:
			s.applyInvalidation(m.Payload)
			s.n.invalidations.Add(1)
		}
	}
}

// closeNear interrupts the listener; Close then waits for it.
func (s *Store) closeNear() {
	if ps := s.nearPS.Load(); ps != nil {
		ps.Close()
	}
}
