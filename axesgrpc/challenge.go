package axesgrpc

import (
	"context"
	"errors"

	"github.com/axes-go/axes"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Challenge before lock (axes.Policy.ChallengeAt): how the interceptor
// recognises a passed challenge, and how it answers a call that needs one.

// The challenge status: a call refused for want of a passed challenge
// (axes.ReasonChallenge) ends with DefaultChallengeCode, unless
// ChallengeCode sets another, and a google.rpc.ErrorInfo detail whose
// Reason is ChallengeReason and whose Domain is ErrorDomain, for a client
// to tell it from a wrong password and show its challenge.
const (
	DefaultChallengeCode = codes.Unauthenticated
	ChallengeReason      = "CHALLENGE_REQUIRED"
	ErrorDomain          = "github.com/axes-go/axes"
)

// ChallengePassed names how a passed challenge is recognised: f reports
// whether the call proves that its client passed the application's
// challenge (a CAPTCHA or proof-of-work token, a code sent by e-mail),
// typically from a token in the incoming metadata
// (metadata.ValueFromIncomingContext) or in the request message. req is
// the message WithUsername reads (the request of a unary call, the first
// message of a stream), or nil when the attempt is reserved before any
// message is read.
//
// Under axes.Policy.ChallengeAt the interceptor calls f only for an attempt
// the limiter refuses for want of a challenge (Reason
// axes.ReasonChallenge), and then reserves the attempt again with
// axes.Limiter.BeginPassed if f returns true: a proof is verified only when
// one is needed, once per attempt. f should accept a proof once (so that
// one solved challenge buys one attempt) and be safe for concurrent use.
// A passed challenge does not forget failures: the failures after it still
// lock at the limit. Without this option no proof is ever recognised: from
// ChallengeAt failures on, calls get the challenge status until the
// failures are forgotten.
//
// The handler learns that the next attempt will need a challenge (to ask
// the client for one) from Verdict.Challenge, as returned by Failed.
func ChallengePassed(f func(ctx context.Context, req any) bool) Option {
	return func(c *config) {
		if f == nil {
			c.errs = append(c.errs, errors.New("axes: ChallengePassed(nil)"))
		}
		c.challengePassed = f
	}
}

// ChallengeCode sets the code of the challenge status (default
// DefaultChallengeCode); its ErrorInfo detail is the same whatever the
// code. A call that gets it does not reach the handler and is not counted.
func ChallengeCode(code codes.Code) Option {
	return func(c *config) {
		if code == codes.OK || code > codes.Unauthenticated {
			c.errs = append(c.errs, errors.New("axes: ChallengeCode("+code.String()+") is not an error code"))
		}
		c.challengeCode = code
	}
}

// begin reserves the attempt of key, again with the proof of the call when
// the limiter asks for a challenge and the call carries a passed one.
func (ic *Interceptor) begin(ctx context.Context, key axes.Key, req any) axes.Attempt {
	a := ic.lim.BeginContext(ctx, key)
	if a.Verdict().Reason == axes.ReasonChallenge && ic.c.challengePassed != nil && ic.c.challengePassed(ctx, req) {
		a = ic.lim.BeginPassedContext(ctx, key)
	}
	return a
}

// refusal returns the status a refused attempt of this interceptor ends
// with, or nil if v is not refused.
func (ic *Interceptor) refusal(v axes.Verdict) error {
	if v.Locked && v.Reason == axes.ReasonChallenge {
		return challengeError(ic.c.challengeCode)
	}
	return LockoutError(v)
}

// challengeError returns the challenge status with code.
func challengeError(code codes.Code) error {
	st := status.New(code, "a challenge is required")
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ChallengeReason, Domain: ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// IsChallenge reports whether err is the challenge status: the call was
// refused until the client passes a challenge. A client uses it to show
// its challenge and try again with the proof.
func IsChallenge(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == ChallengeReason && ei.GetDomain() == ErrorDomain {
			return true
		}
	}
	return false
}
