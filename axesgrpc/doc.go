// Package axesgrpc puts an axes.Limiter in front of gRPC login methods, as
// package axeshttp does for net/http handlers.
//
// New returns an Interceptor whose Unary and Stream methods are
// grpc.UnaryServerInterceptor and grpc.StreamServerInterceptor:
//
//	ic := axesgrpc.Must(axesgrpc.New(lim,
//		axesgrpc.Methods("/auth.v1.Auth/Login"),
//		axesgrpc.WithUsername(func(ctx context.Context, req any) string {
//			if r, ok := req.(*authpb.LoginRequest); ok {
//				return r.GetUsername()
//			}
//			return ""
//		})))
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(ic.Unary),
//		grpc.ChainStreamInterceptor(ic.Stream))
//
// For every call of a protected method the interceptor builds the attempt's
// axes.Key from the client IP (the peer address, or a forwarding entry of
// the metadata written by a trusted proxy: see WithProxies), the username
// (see WithUsername and WithMetadataUsername) and the user-agent metadata,
// and reserves the attempt with Limiter.Begin, so that however many calls
// race, at most the policy's limit reach the password check in a lock
// cycle. A refused call is answered with LockoutError's status
// (codes.ResourceExhausted and a RetryInfo detail) without reaching the
// handler. An admitted call is settled when the handler reports the outcome
// with Failed or Succeeded, or else from the status code it returns (see
// FailureCodes).
//
// Under axes.Policy.ChallengeAt a call that needs a challenge ends with the
// challenge status (codes.Unauthenticated and an ErrorInfo detail; see
// ChallengePassed, ChallengeCode and IsChallenge) unless ChallengePassed
// recognises a passed one. WithDevice marks a client the application
// trusts for its username (axes.Key.Device).
//
// Most applications protect only their login methods (Methods); the default
// protects every method the interceptor sees, which suits a server whose
// every call checks a credential, such as a game server's handshake.
package axesgrpc
