package axes

import (
	"context"

	"github.com/axes-go/axes/store"
)

// Challenge before lock (Policy.ChallengeAt): the attempts that carry a
// passed challenge.
//
// The proof is an argument of the call, not a field of Key: a Key says who
// the client is, the proof says what this one attempt showed. The flow:
//
//	a := lim.Begin(k)
//	if a.Verdict().Reason == axes.ReasonChallenge {
//		if !challengeSolved(r) { ask for the challenge; return }
//		a = lim.BeginPassed(k) // the challenge is verified: try again
//	}
//	if !a.Allowed() { refuse; return }
//	check the password, then a.Fail() or a.Succeed()
//
// Verifying the challenge only once the limiter asks for it spares the
// verification (often a call to a CAPTCHA provider) on every other
// attempt. The limiter decides in the store's transition, atomically with
// the count, so that racing attempts cannot slip past ChallengeAt
// together: Begin counts reservations in flight toward it.

// BeginPassed is Begin for an attempt whose client has passed a challenge
// (see Policy.ChallengeAt): it is admitted from ChallengeAt failures on,
// until the limit locks. Verify the challenge before calling it, and let
// one passed challenge admit one attempt. Without ChallengeAt it is Begin.
func (l *Limiter) BeginPassed(k Key) Attempt {
	return l.begin(context.Background(), k, true)
}

// BeginPassedContext is BeginPassed with the caller's context.
func (l *Limiter) BeginPassedContext(ctx context.Context, k Key) Attempt {
	return l.begin(ctx, k, true)
}

// FailPassed is Fail for an attempt whose client has passed a challenge:
// the failure counts from ChallengeAt failures on, and locks at the limit.
// Under ChallengeAt a plain Fail from ChallengeAt failures on is refused
// with Reason ReasonChallenge and counts nothing (as a Fail while locked
// does), so an application on the plain API must check Check's
// Verdict.Challenge before the password and call FailPassed after a
// passed challenge. Without ChallengeAt it is Fail.
func (l *Limiter) FailPassed(k Key) Verdict {
	return l.directPassed(context.Background(), store.OpFail, &k, true)
}

// FailPassedContext is FailPassed with the caller's context.
func (l *Limiter) FailPassedContext(ctx context.Context, k Key) Verdict {
	return l.directPassed(ctx, store.OpFail, &k, true)
}
