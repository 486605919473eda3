package axesgrpc

import (
	"github.com/axes-go/axes"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// LockoutError returns the status error the interceptors answer a refused
// attempt with, and that a handler may return after Failed locked the
// client; nil if v is not locked.
//
// The code is codes.ResourceExhausted, or codes.Unavailable when the
// limiter's store failed (axes.ReasonUnavailable). A RetryInfo detail
// (google.rpc.RetryInfo) carries v.RetryAfter, the exact time remaining
// until the client may try again; a lock with no end (axes.Indefinite:
// a Forever cooloff, a denied or not-allowed IP) has no RetryInfo, which
// tells a client not to retry by itself. The message does not depend on
// the username, so that it does not tell whether an account exists.
//
// A verdict refused for want of a passed challenge (axes.ReasonChallenge)
// gets the challenge status instead: DefaultChallengeCode with an
// ErrorInfo detail (see ChallengeReason and IsChallenge), and no RetryInfo,
// since waiting does not help.
func LockoutError(v axes.Verdict) error {
	if !v.Locked {
		return nil
	}
	if v.Reason == axes.ReasonChallenge {
		return challengeError(DefaultChallengeCode)
	}
	st := status.New(codes.ResourceExhausted, "too many failed login attempts")
	if v.Reason == axes.ReasonUnavailable {
		st = status.New(codes.Unavailable, "login is temporarily unavailable")
	}
	if v.RetryAfter == axes.Indefinite {
		return st.Err()
	}
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(v.RetryAfter)}); err == nil {
		st = d
	}
	return st.Err()
}
