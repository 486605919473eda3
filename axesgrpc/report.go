package axesgrpc

import (
	"context"
	"sync"

	"github.com/axes-go/axes"
)

type stateKey struct{}

type outcome uint8

const (
	outcomeNone outcome = iota // cancel the reservation
	outcomeFailure
	outcomeSuccess
)

// attemptState is the attempt of one call, shared by the interceptor, the
// stream's RecvMsg and the handler (through the context), possibly on
// different goroutines.
type attemptState struct {
	mu      sync.Mutex // protects every field
	a       axes.Attempt
	begun   bool  // a holds an attempt from Begin
	settled bool  // a was settled, or refused
	refusal error // the lockout status, once a stream's attempt is refused
	// ctx is the call's context without its cancellation, for the
	// settle: a client that hangs up after its password was checked must
	// not keep its failure from being recorded.
	ctx context.Context
}

// begin records the attempt a stream reserved at its first message, and
// returns refusal, the status of its verdict, if it is not allowed.
func (s *attemptState) begin(ctx context.Context, a axes.Attempt, refusal error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.a, s.begun, s.ctx = a, true, context.WithoutCancel(ctx)
	if !s.a.Allowed() {
		s.settled = true
		s.refusal = refusal
	}
	return s.refusal
}

// refused returns the lockout status of a refused stream, or nil.
func (s *attemptState) refused() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refusal
}

// settle settles the attempt with o unless it is settled or not begun, and
// returns its verdict.
func (s *attemptState) settle(o outcome) axes.Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.begun {
		return axes.Verdict{}
	}
	if !s.settled {
		s.settled = true
		switch o {
		case outcomeFailure:
			s.a.FailContext(s.ctx)
		case outcomeSuccess:
			s.a.SucceedContext(s.ctx)
		default:
			s.a.CancelContext(s.ctx)
		}
	}
	return s.a.Verdict()
}

// Failed reports that the login attempt of the call whose context is ctx
// failed (a wrong password, an unknown user), and returns the verdict:
// Locked if this failure locked the client out, so the handler may answer
// LockoutError(v). Pass the context the interceptor gave the handler (the
// handler's ctx, or stream.Context()). Only the first Failed or Succeeded of
// a call counts, and it takes precedence over the status the handler
// returns. Outside a protected call, or on a stream before the attempt is
// reserved (see WithUsername), it does nothing and returns the zero
// Verdict.
func Failed(ctx context.Context) axes.Verdict {
	if st, ok := ctx.Value(stateKey{}).(*attemptState); ok {
		return st.settle(outcomeFailure)
	}
	return axes.Verdict{}
}

// Succeeded reports that the login attempt of the call whose context is ctx
// succeeded. Only the first Failed or Succeeded of a call counts. Outside a
// protected call, or on a stream before the attempt is reserved, it does
// nothing.
func Succeeded(ctx context.Context) {
	if st, ok := ctx.Value(stateKey{}).(*attemptState); ok {
		st.settle(outcomeSuccess)
	}
}
