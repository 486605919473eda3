package axes

import (
	"context"
	"net/netip"
	"time"

	"github.com/axes-go/axes/store"
)

// One decision pipeline for every operation: Fail, Check, Success and Reset
// (plain), Begin, and the settles of an Attempt prepare their request in
// one way (the attempt's rule, identity and digests, each computed once)
// and turn a store's failure into one verdict.

// prepare computes what op on k needs, each once: the attempt's own rule,
// in *rule (every operation but a reset gets it: even a Check may find
// reservations that timed out and start a lock), the digests of its
// dimensions, in *dims, with the index keys that writes need when index is
// set, and the instant and identity it returns (the IP is grouped once for
// the digests and the identity). The caller builds the store.Request from
// its own variables: a request built here, or one whose fields the calls
// below read, would move them all to the heap, since escape analysis does
// not tell a struct's fields apart.
func (l *Limiter) prepare(rule *store.Rule, dims *[8]store.Dim, op store.Op, k *Key, index bool) (now time.Time, id store.Identity, n int) {
	var fs fieldSet
	n = l.digests(k, &fs, dims)
	now, id = l.prepareDigested(rule, dims, op, k, &fs, index)
	return now, id, n
}

// digests computes the per-field inputs of k's digests in *fs and the
// digests of its dimensions in *dims, without index keys.
func (l *Limiter) digests(k *Key, fs *fieldSet, dims *[8]store.Dim) int {
	l.fieldsOf(k, fs)
	for i, f := range l.dims {
		dims[i] = store.Dim{Fields: f, Digest: l.h.dimensionDigest(f, fs)}
	}
	if l.rule.Spray.Limit > 0 {
		return l.sprayDims(dims, len(l.dims), fs, Digest{}, false)
	}
	return len(l.dims)
}

// prepareDigested is prepare for dims whose digests digests computed
// from fs.
func (l *Limiter) prepareDigested(rule *store.Rule, dims *[8]store.Dim, op store.Op, k *Key, fs *fieldSet, index bool) (now time.Time, id store.Identity) {
	if !l.needIP && k.IP.IsValid() {
		fs.pfx = canonicalIP(k.IP, l.v6bits) // for the identity alone
	}
	var ipKey Digest
	if index && l.needIP {
		ipKey = l.h.ipDigest(&fs.ip)
	}
	if index {
		for i, f := range l.dims {
			if f&IP != 0 {
				dims[i].IPKey = ipKey
			}
			if f&Username != 0 {
				dims[i].UserKey = fs.user
			}
		}
	}
	if index && l.rule.Spray.Limit > 0 && fs.pfx.IsValid() {
		// The spray member and count that digests appended (sprayDims).
		m := len(l.dims)
		dims[m].IPKey, dims[m].UserKey = ipKey, fs.user
		dims[m+1].IPKey = ipKey
	}
	if op != store.OpReset && (l.limitFunc != nil || l.cooloffFunc != nil || l.jitter > 0) {
		*rule = l.forAttempt(k)
	} else {
		*rule = l.rule // what forAttempt would return: no copy of a copy
	}
	if op != store.OpReset {
		id = identity(k, fs.pfx)
	}
	return l.now(), id
}

// now is the reading of a decision: the clock's, or zero when the memory
// store reads the time itself and no event needs the reading (lazyClock).
func (l *Limiter) now() time.Time {
	if l.lazyClock {
		return time.Time{}
	}
	return l.clock()
}

// cached answers op (OpCheck, OpFail or OpBegin) on k, whose digests are
// in dims, from the memory store's lock cache (lockcache.go) when every
// dimension is cached as locked: the store's transition would then change
// nothing, and the verdict, counters and events are finish's, as on the
// store's path. A Fail or Begin that extends the lock is never answered
// here.
func (l *Limiter) cached(op store.Op, k *Key, dims []store.Dim) (Verdict, bool) {
	if l.mem == nil || (op != store.OpCheck && l.rule.Extend) {
		return Verdict{}, false
	}
	// The entries first: the clock is read only for a client the cache
	// holds.
	var ends [8]uint64
	var fails [8]uint16
	for i := range dims {
		e, f, ok := l.mem.peekLock(dims[i].Digest, op == store.OpCheck)
		if !ok {
			return Verdict{}, false
		}
		ends[i], fails[i] = e, f
	}
	now := l.now()
	if l.isLean() {
		return l.leanCached(op, l.dims, ends[:len(dims)], fails[:len(dims)], now)
	}
	if !l.mem.fromCache(op, dims, ends[:len(dims)], fails[:len(dims)], now) {
		return Verdict{}, false
	}
	rule := &l.rule
	var r store.Rule
	if l.limitFunc != nil {
		r = l.forAttempt(k)
		rule = &r
	}
	req := store.Request{Op: op, Rule: rule, Now: now, Dims: dims}
	return l.finish(op, k, &req, now), true
}

// leanCached is cached for a limiter without events, limit function,
// observe mode or spray detection, whose dimensions all count failures:
// the verdict finish would build from the cached outcomes, built from the
// entries directly (a lock: the longest remaining one and its dimension,
// the most failures), and the refusal counted. fields, ends and fails are
// those of each dimension.
func (l *Limiter) leanCached(op store.Op, fields []Fields, ends []uint64, fails []uint16, now time.Time) (Verdict, bool) {
	st := l.mem
	if !st.tl.started() {
		return Verdict{}, false
	}
	t := st.instantOf(now)
	v := Verdict{Locked: true, Limit: l.rule.Limit, Reason: ReasonLockout}
	for i := range ends {
		rem, ok := cachedAt(ends[i], t)
		if !ok {
			return Verdict{}, false
		}
		if i == 0 || rem > v.RetryAfter {
			v.RetryAfter, v.By = rem, fields[i]
		}
		v.Failures = max(v.Failures, int(fails[i]))
	}
	if op != store.OpCheck {
		l.counts.stripe().refused.Add(1)
	}
	if countCacheServes {
		st.cacheServes.Add(1)
	}
	return v, true
}

// identity is who k is, as a store keeps it for the locks it starts; pfx
// is k's grouped IP.
func identity(k *Key, pfx netip.Prefix) store.Identity {
	id := store.Identity{Username: truncate(k.Username), UserAgent: truncate(k.UserAgent)}
	if k.IP.IsValid() {
		id.IP = pfx
	}
	return id
}

// identity is identity(k) with k's IP grouped here.
func (l *Limiter) identity(k *Key) store.Identity {
	var pfx netip.Prefix
	if k.IP.IsValid() {
		pfx = canonicalIP(k.IP, l.v6bits)
	}
	return identity(k, pfx)
}

// digestsOf returns the digests of k's dimensions, without index keys.
func (l *Limiter) digestsOf(k *Key, dims *[8]store.Dim) int {
	var fs fieldSet
	return l.digests(k, &fs, dims)
}

// fieldsOf computes the per-field inputs of k's digests, each once. A
// device counts only with the username (see Key.Device).
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
		// The device is kept apart from fs.user, which stays the
		// username's own digest: the index key of ResetUsername, which
		// forgets the username's devices too.
		if k.Device != "" {
			fs.dev = l.h.fieldDigest(tagDevice, k.Device)
			fs.device = true
		}
	}
	if l.needUA {
		fs.ua = l.h.fieldDigest(tagUserAgent, k.UserAgent)
	}
}

// decide hands req to the store and returns the verdict of report (the
// operation as counted and reported), or the unavailable verdict if the
// store failed. now and id repeat req.Now and req.Identity (see run).
func (l *Limiter) decide(ctx context.Context, req *store.Request, now time.Time, id store.Identity, limit int, report store.Op, k *Key) Verdict {
	if err := l.run(ctx, req, now, id); err != nil {
		return unavailable(limit)
	}
	return l.finish(report, k, req, now)
}

// unavailable is the verdict when the store could not decide: refused, for
// a second, so that no store failure admits a guess (a networked store's
// FailOpen mode decides otherwise before it gets here).
func unavailable(limit int) Verdict {
	return Verdict{Locked: true, Limit: limit, Reason: ReasonUnavailable, RetryAfter: BusyRetryAfter}
}

// direct runs one operation directly, without a reservation.
func (l *Limiter) direct(ctx context.Context, op store.Op, k *Key) Verdict {
	return l.directPassed(ctx, op, k, false)
}

// directPassed is direct for an attempt that carries a passed challenge
// when passed is set (see Policy.ChallengeAt).
func (l *Limiter) directPassed(ctx context.Context, op store.Op, k *Key, passed bool) Verdict {
	if lr, reason := l.listed(k); lr != listNone {
		if lr == listRefused {
			if op == store.OpFail {
				l.refusedByList(k, reason)
			}
			return listVerdict(reason, l.rule.Limit)
		}
		if op != store.OpReset {
			if op == store.OpSuccess {
				l.counts.stripe().successes.Add(1)
			}
			return Verdict{Limit: l.rule.Limit}
		}
	}
	var fs fieldSet
	var dims [8]store.Dim
	n := l.digests(k, &fs, &dims)
	if op == store.OpCheck || op == store.OpFail {
		if v, ok := l.cached(op, k, dims[:n]); ok {
			return v
		}
	}
	return l.directDigested(ctx, op, k, passed, &fs, &dims, n)
}

// isLean reports whether leanCached may answer for l: the memory store,
// and no events, limit function, observe mode or spray detection.
func (l *Limiter) isLean() bool {
	return l.mem != nil && l.onEvent == nil && l.limitFunc == nil && !l.rule.ObserveOnly && l.rule.Spray.Limit == 0
}

// directDigested is directPassed once k's digests are in dims.
func (l *Limiter) directDigested(ctx context.Context, op store.Op, k *Key, passed bool, fs *fieldSet, dims *[8]store.Dim, n int) Verdict {
	var rule store.Rule
	now, id := l.prepareDigested(&rule, dims, op, k, fs, op == store.OpFail)
	rule.Challenged = passed
	req := store.Request{Op: op, Rule: &rule, Now: now, Dims: dims[:n], Identity: id}
	return l.decide(ctx, &req, now, id, rule.Limit, op, k)
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
		l.counts.stripe().storeErrors.Add(1)
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
	challenge := false
	spray := -1 // the spray dimension, when it is the lock reported
	for i := range req.Dims {
		d := &req.Dims[i]
		o := &d.Outcome
		if d.Kind == store.KindMember {
			continue // a username's mark for spray detection: never reported
		}
		if d.Kind == store.KindCount {
			v.Failures = max(v.Failures, o.Failures)
		}
		if o.Locked {
			if o.Remaining > v.RetryAfter || !v.Locked {
				v.RetryAfter = o.Remaining
				v.By = d.Fields
				spray = -1
				if d.Kind == store.KindSpray {
					spray = i
				}
			}
			v.Locked = true
		}
		if d.Kind != store.KindCount {
			if req.Rule.ObserveOnly && o.Failures >= req.Rule.Spray.Limit {
				v.WouldLock = true
			}
			if o.Busy && busy < 0 {
				busy = i
			}
			continue
		}
		if o.Busy && busy < 0 {
			busy = i
		}
		challenge = challenge || o.Challenge
		if o.Failures > 0 && (most < 0 || o.Failures > req.Dims[most].Outcome.Failures) {
			most = i
		}
	}
	switch {
	case v.Locked && spray >= 0:
		v.Reason, v.Limit, v.Failures = ReasonSpray, req.Rule.Spray.Limit, req.Dims[spray].Outcome.Failures
		refused = req.Dims[0].Outcome.Refused
	case v.Locked:
		v.Reason = ReasonLockout
		// The failure that reaches the limit is answered with the lock but
		// was counted, not refused.
		refused = len(req.Dims) > 0 && req.Dims[0].Outcome.Refused
	case challenge:
		// Refused for want of a passed challenge: neither a failure nor a
		// refusal by a lock, so not counted as either.
		v.Locked, v.Reason, v.Challenge = true, ReasonChallenge, true
		if most >= 0 {
			v.By = req.Dims[most].Fields
		}
	case busy >= 0:
		v.Locked, v.Reason, v.RetryAfter, v.By = true, ReasonBusy, BusyRetryAfter, req.Dims[busy].Fields
		refused = true
	case most >= 0:
		v.By = req.Dims[most].Fields
		if req.Rule.ObserveOnly && v.Failures >= req.Rule.Limit {
			v.WouldLock = true
		}
	}
	if r := req.Rule; v.Reason != ReasonLockout && v.Reason != ReasonSpray && r.ChallengeAt > 0 && !r.ObserveOnly && v.Failures >= r.ChallengeAt {
		v.Challenge = true // the next attempt needs a passed challenge
	}
	if op == store.OpReset {
		v = Verdict{Limit: req.Rule.Limit}
	}
	// Counters and events.
	switch op {
	case store.OpFail, store.OpSettleFail:
		if !refused && !challenge {
			l.counts.stripe().failures.Add(1)
		}
	case store.OpSuccess, store.OpSettleSuccess:
		l.counts.stripe().successes.Add(1)
	case store.OpReset:
		l.counts.stripe().resets.Add(1)
	}
	if refused {
		l.counts.stripe().refused.Add(1)
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
		l.counts.stripe().failures.Add(uint64(timedOut))
	}
	if started > 0 {
		l.counts.stripe().lockouts.Add(uint64(started))
	}
	if l.onEvent == nil {
		return v
	}
	for i := range req.Dims {
		d := &req.Dims[i]
		o := &d.Outcome
		if d.Kind != store.KindCount {
			if o.Started && d.Kind == store.KindSpray {
				l.onEvent(Event{Kind: EventLockout, Time: now, Key: *k, By: d.Fields, Reason: ReasonSpray, Failures: o.Failures, Limit: req.Rule.Spray.Limit, Until: until(now, o.Remaining)})
			}
			continue // spray detection's counts are not failures of a dimension
		}
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
