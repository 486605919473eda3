package axesgrpc

import (
	"context"
	"errors"
	"net/http"
	"net/netip"

	"github.com/axes-go/axes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Interceptor protects gRPC login methods with an axes.Limiter. Its Unary
// and Stream methods are the server interceptors; install them with
// grpc.ChainUnaryInterceptor(ic.Unary) and grpc.ChainStreamInterceptor(
// ic.Stream). Create one with New (the zero Interceptor has no limiter and
// is not usable). An Interceptor is immutable and safe for concurrent use.
type Interceptor struct {
	lim *axes.Limiter
	c   config
}

// New returns an Interceptor that protects calls with lim, configured by
// opts, or an error prefixed "axes:" if lim is nil or an option is invalid.
func New(lim *axes.Limiter, opts ...Option) (*Interceptor, error) {
	if lim == nil {
		return nil, errors.New("axes: axesgrpc.New needs a Limiter")
	}
	c := config{challengeCode: DefaultChallengeCode} // failures nil: every code but OK is a failure
	for _, o := range opts {
		o(&c)
	}
	if c.username != nil && c.mdUsername != nil {
		c.errs = append(c.errs, errors.New("axes: WithUsername and WithMetadataUsername exclude each other"))
	}
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	c.errs = nil
	return &Interceptor{lim: lim, c: c}, nil
}

// Must returns ic, or panics if err is not nil. It is meant for examples and
// tests: axesgrpc.Must(axesgrpc.New(lim)).
func Must(ic *Interceptor, err error) *Interceptor {
	if err != nil {
		panic(err)
	}
	return ic
}

// Unary is a grpc.UnaryServerInterceptor. For a protected method it
// reserves the attempt of the call (the username from WithUsername's
// function of req, or WithMetadataUsername's), answers a refused attempt
// with LockoutError (or, for want of a challenge, the challenge status of
// ChallengeCode; see ChallengePassed) without calling handler, and otherwise calls handler
// with a context that Failed and Succeeded report through, then settles the
// attempt from the returned status unless the handler reported. A handler
// that panics settles as a failure, and the panic goes on.
func (ic *Interceptor) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	if !ic.protects(info.FullMethod) {
		return handler(ctx, req)
	}
	var name string
	switch {
	case ic.c.username != nil:
		name = ic.c.username(ctx, req)
	case ic.c.mdUsername != nil:
		name = ic.c.mdUsername(ctx)
	}
	st := &attemptState{a: ic.begin(ctx, ic.key(ctx, name), req), begun: true, ctx: context.WithoutCancel(ctx)}
	if !st.a.Allowed() {
		return nil, ic.refusal(st.a.Verdict())
	}
	completed := false
	defer func() {
		// Reached on return, panic and runtime.Goexit alike; a panic is not
		// recovered, so it goes on with its own stack.
		if !completed {
			st.settle(outcomeFailure)
		}
	}()
	resp, err = handler(context.WithValue(ctx, stateKey{}, st), req)
	completed = true
	st.settle(ic.outcome(err))
	return resp, err
}

// Stream is a grpc.StreamServerInterceptor. For a protected method it
// reserves the attempt of the call before calling handler, or, with
// WithUsername, when the handler receives the first message (see
// WithUsername). A refused attempt ends the call with LockoutError, or
// the challenge status as in Unary; an admitted one is settled as in Unary. The handler reports through
// Failed(stream.Context()) and Succeeded(stream.Context()).
//
// An admitted attempt counts as a failure if it is still unsettled after
// the limiter's reserve timeout (axes.WithReserveTimeout), so a handler of
// a long-lived stream should report Failed or Succeeded as soon as the
// login is decided rather than leave it to the status the stream ends
// with.
func (ic *Interceptor) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !ic.protects(info.FullMethod) {
		return handler(srv, ss)
	}
	ctx := ss.Context()
	st := &attemptState{}
	if ic.c.username == nil {
		var name string
		if ic.c.mdUsername != nil {
			name = ic.c.mdUsername(ctx)
		}
		st.a, st.begun, st.ctx = ic.begin(ctx, ic.key(ctx, name), nil), true, context.WithoutCancel(ctx)
		if !st.a.Allowed() {
			return ic.refusal(st.a.Verdict())
		}
	}
	ws := &serverStream{ServerStream: ss, ctx: context.WithValue(ctx, stateKey{}, st), ic: ic, st: st}
	completed := false
	defer func() {
		if !completed {
			st.settle(outcomeFailure)
		}
	}()
	err := handler(srv, ws)
	completed = true
	if refusal := st.refused(); refusal != nil {
		return refusal
	}
	st.settle(ic.outcome(err))
	return err
}

// serverStream gives the handler the context Failed and Succeeded report
// through and, with WithUsername, reserves the attempt at the first
// message received.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
	ic  *Interceptor
	st  *attemptState
	got bool // a message was received; only the RecvMsg goroutine uses it
}

func (s *serverStream) Context() context.Context { return s.ctx }

func (s *serverStream) RecvMsg(m any) error {
	if err := s.st.refused(); err != nil {
		return err
	}
	if s.got || s.ic.c.username == nil {
		return s.ServerStream.RecvMsg(m)
	}
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	s.got = true
	ctx := s.ServerStream.Context()
	a := s.ic.begin(ctx, s.ic.key(ctx, s.ic.c.username(ctx, m)), m)
	return s.st.begin(ctx, a, s.ic.refusal(a.Verdict()))
}

func (s *serverStream) SendMsg(m any) error {
	if err := s.st.refused(); err != nil {
		return err
	}
	return s.ServerStream.SendMsg(m)
}

func (ic *Interceptor) protects(fullMethod string) bool {
	return ic.c.methods == nil || ic.c.methods[fullMethod]
}

// outcome classifies the error a handler returned.
func (ic *Interceptor) outcome(err error) outcome {
	code := status.Code(err)
	switch {
	case code == codes.OK:
		return outcomeSuccess
	case ic.c.failures == nil || ic.c.failures[code]:
		return outcomeFailure
	default:
		return outcomeNone
	}
}

// key builds the attempt of a call: client IP, username, user agent and,
// with WithDevice, the trusted device.
func (ic *Interceptor) key(ctx context.Context, name string) axes.Key {
	var ua string
	if v := metadata.ValueFromIncomingContext(ctx, "user-agent"); len(v) > 0 {
		ua = v[0]
	}
	k := axes.Key{IP: ic.clientIP(ctx), Username: name, UserAgent: ua}
	if ic.c.device != nil {
		k.Device = ic.c.device(ctx, name)
	}
	return k
}

// clientIP returns the peer address of the call, or the address a trusted
// proxy wrote into the metadata. It is the invalid zero netip.Addr when the
// peer is not an IP address (a Unix socket, an in-memory listener) and no
// trusted entry applies.
func (ic *Interceptor) clientIP(ctx context.Context) netip.Addr {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return netip.Addr{}
	}
	r := http.Request{RemoteAddr: p.Addr.String()}
	if ic.c.mdKey != "" {
		if v := metadata.ValueFromIncomingContext(ctx, ic.c.mdKey); len(v) > 0 {
			r.Header = http.Header{ic.c.header: v}
		}
	}
	return ic.c.resolver.ClientIP(&r)
}
