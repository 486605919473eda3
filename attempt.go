package axes

import (
	"context"
	"time"

	"github.com/axes-go/axes/store"
)

// Attempt is a reservation made by Limiter.Begin: one attempt reserved in
// every dimension of a key. It is a plain value (Begin allocates nothing);
// settle it exactly once with Fail or Succeed, through a pointer, and do not
// copy it after settling. Settling twice, or settling a refused attempt, is
// a no-op.
type Attempt struct {
	l       *Limiter
	key     Key
	verdict Verdict
	state   uint8 // attemptRefused, attemptPending or attemptSettled
	n       uint8
	limit   int32
	jitter  float64
	cooloff int64
	fields  [8]Fields
	digests [8]Digest
	gens    [8]uint32
	ipKey   Digest
	userKey Digest
}

const (
	attemptRefused = iota
	attemptPending
	attemptSettled
)

// Begin reserves one attempt of k in every dimension, atomically on the
// memory store, before the password is checked. If the returned attempt is
// Allowed, check the password and settle with Fail or Succeed; if not,
// refuse the request without checking the password (Verdict says why and
// for how long).
//
// Guarantee: while a dimension is not locked, the number of admitted
// attempts that are either in flight or settled as failures never exceeds
// the limit, however many goroutines race; once a lock ends while its
// failures are still remembered (a Window longer than the lock), one
// attempt at a time is admitted and its failure locks again. A reservation
// not settled within the reserve timeout (WithReserveTimeout) counts as a
// failure, as if the handler had crashed mid-check.
func (l *Limiter) Begin(k Key) Attempt {
	return l.BeginContext(context.Background(), k)
}

// BeginContext is Begin with the caller's context, which a networked store
// gives up on when it is done: the attempt is then refused with
// ReasonUnavailable (the memory store ignores the context).
func (l *Limiter) BeginContext(ctx context.Context, k Key) Attempt {
	return l.begin(ctx, k, false)
}

// begin is BeginContext for an attempt that carries a passed challenge
// when passed is set (see Policy.ChallengeAt).
func (l *Limiter) begin(ctx context.Context, k Key, passed bool) Attempt {
	a := Attempt{l: l, key: k}
	if lr, reason := l.listed(&k); lr != listNone {
		if lr == listRefused {
			l.refusedByList(&k, reason)
			a.verdict = listVerdict(reason, l.rule.Limit)
		} else {
			a.verdict = Verdict{Limit: l.rule.Limit}
			a.state = attemptSettled // exempt: admitted, nothing to settle
		}
		return a
	}
	var fs fieldSet
	var dims [8]store.Dim
	n := l.digests(&k, &fs, &dims)
	if v, ok := l.cached(store.OpBegin, &k, dims[:n]); ok {
		a.verdict = v
		return a
	}
	var rule store.Rule
	now, id := l.prepareDigested(&rule, &dims, store.OpBegin, &k, &fs, true)
	rule.Challenged = passed
	req := store.Request{Op: store.OpBegin, Rule: &rule, Now: now, Dims: dims[:n], Identity: id}
	a.verdict = l.decide(ctx, &req, now, id, rule.Limit, store.OpBegin, &k)
	if a.verdict.Locked {
		return a
	}
	a.state = attemptPending
	if n == len(l.dims)+2 && !dims[n-1].Outcome.Reserved {
		n-- // the spray count took no reservation: its settle must not touch it
	}
	a.n = uint8(n)
	a.limit = int32(rule.Limit)
	a.jitter = rule.JitterScale
	a.cooloff = int64(rule.Cooloff)
	for i := range n {
		a.fields[i] = dims[i].Fields
		a.digests[i] = dims[i].Digest
		a.gens[i] = dims[i].Gen
		if dims[i].IPKey != (Digest{}) {
			a.ipKey = dims[i].IPKey
		}
		if dims[i].UserKey != (Digest{}) {
			a.userKey = dims[i].UserKey
		}
	}
	return a
}

// Allowed reports whether the attempt was admitted: the password may be
// checked.
func (a *Attempt) Allowed() bool { return a.l != nil && !a.verdict.Locked }

// Verdict returns the verdict of Begin, or of the settle once settled.
func (a *Attempt) Verdict() Verdict { return a.verdict }

// Fail settles the attempt as a failed login and returns the verdict,
// locked if this failure reached the limit.
func (a *Attempt) Fail() Verdict { return a.FailContext(context.Background()) }

// FailContext is Fail with the caller's context.
func (a *Attempt) FailContext(ctx context.Context) Verdict {
	if a.state != attemptPending {
		return a.verdict
	}
	a.verdict = a.settle(ctx, store.OpSettleFail)
	return a.verdict
}

// Succeed settles the attempt as a successful login.
func (a *Attempt) Succeed() { a.SucceedContext(context.Background()) }

// SucceedContext is Succeed with the caller's context.
func (a *Attempt) SucceedContext(ctx context.Context) {
	if a.state != attemptPending {
		return
	}
	a.verdict = a.settle(ctx, store.OpSettleSuccess)
}

// Cancel releases the reservation without an outcome, for a request whose
// password was never checked (its backend failed first). It counts nothing
// and, unlike Succeed, never resets anything under ResetOnSuccess. Never
// cancel after a failed check: that would give the client a free guess.
func (a *Attempt) Cancel() { a.CancelContext(context.Background()) }

// CancelContext is Cancel with the caller's context.
func (a *Attempt) CancelContext(ctx context.Context) {
	if a.state != attemptPending {
		return
	}
	a.verdict = a.settle(ctx, opCancel)
}

// opCancel is a settle that releases the reservation only: store.OpSettleSuccess
// under a rule without ResetOnSuccess, neither counted nor reported.
const opCancel = store.Op(255)

func (a *Attempt) settle(ctx context.Context, op store.Op) Verdict {
	a.state = attemptSettled
	l := a.l
	rule := l.rule
	report := op
	if op == opCancel {
		op, report = store.OpSettleSuccess, store.OpCheck
		rule.ResetOnSuccess = false
	}
	rule.Limit = int(a.limit)
	rule.ChallengeAt = challengeAt(rule.ChallengeAt, rule.Limit)
	rule.JitterScale = a.jitter
	rule.Cooloff = time.Duration(a.cooloff)
	var dims [8]store.Dim
	for i := range int(a.n) {
		d := &dims[i]
		d.Fields = a.fields[i]
		d.Digest = a.digests[i]
		d.Gen = a.gens[i]
		d.Kind = l.sprayKind(i)
		if d.Fields&IP != 0 {
			d.IPKey = a.ipKey
		}
		if d.Fields&Username != 0 {
			d.UserKey = a.userKey
		}
	}
	now, id := l.now(), l.identity(&a.key)
	req := store.Request{Op: op, Rule: &rule, Now: now, Dims: dims[:a.n], Identity: id}
	return l.decide(ctx, &req, now, id, rule.Limit, report, &a.key)
}
