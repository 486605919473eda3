package axesgrpc_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesgrpc"
	"github.com/axes-go/axes/axeshttp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// fixedClock makes the examples' output independent of the time they run.
func fixedClock() time.Time { return time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC) }

// LoginRequest stands for the generated request message of a login method.
type LoginRequest struct{ Username, Password string }

// username finds the username in the requests of the protected methods.
func username(ctx context.Context, req any) string {
	if r, ok := req.(*LoginRequest); ok {
		return r.Username
	}
	return ""
}

// call runs one call of /auth.v1.Auth/Login through the interceptor, as a
// gRPC server would for a client at addr sending md, and prints its status.
func call(ic *axesgrpc.Interceptor, handler grpc.UnaryHandler, addr string, req *LoginRequest, md ...string) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr))})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(md...))
	_, err := ic.Unary(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/auth.v1.Auth/Login"}, handler)
	st := status.Convert(err)
	fmt.Print(st.Code())
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			fmt.Print(" retry in ", ri.GetRetryDelay().AsDuration())
		}
	}
	fmt.Println()
}

// The interceptor in front of a login method: three failures lock the
// username for 15 minutes, and a locked client never reaches the password
// check, even with the right password. The handler reports nothing: the
// status it returns settles each attempt.
func ExampleNew() {
	lim := axes.Must(axes.New(axes.Policy{
		Limit:     3,
		LockoutBy: []axes.Fields{axes.Username},
		Cooloff:   axes.Fixed(15 * time.Minute),
	}, axes.WithClock(fixedClock)))
	defer lim.Close()

	ic := axesgrpc.Must(axesgrpc.New(lim,
		axesgrpc.Methods("/auth.v1.Auth/Login"),
		axesgrpc.WithUsername(username)))
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(ic.Unary),
		grpc.ChainStreamInterceptor(ic.Stream))
	defer srv.Stop()
	// authpb.RegisterAuthServer(srv, ...); srv.Serve(listener)

	checks := 0
	login := func(ctx context.Context, req any) (any, error) {
		checks++
		r := req.(*LoginRequest)
		if r.Username != "alice" || r.Password != "s3cret" {
			return nil, status.Error(codes.Unauthenticated, "wrong username or password")
		}
		return "welcome", nil
	}
	for _, pass := range []string{"123456", "password", "qwerty", "s3cret"} {
		call(ic, login, "192.0.2.1:50000", &LoginRequest{Username: "alice", Password: pass})
	}
	fmt.Println("password checks:", checks)
	// Output:
	// Unauthenticated
	// Unauthenticated
	// Unauthenticated
	// ResourceExhausted retry in 15m0s
	// password checks: 3
}

// A handler reports the outcome itself with Failed and Succeeded, and
// answers the failure that locks the client with LockoutError.
func ExampleFailed() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 2, Cooloff: axes.Fixed(time.Minute)}, axes.WithClock(fixedClock)))
	defer lim.Close()
	ic := axesgrpc.Must(axesgrpc.New(lim, axesgrpc.WithUsername(username)))

	login := func(ctx context.Context, req any) (any, error) {
		r := req.(*LoginRequest)
		if r.Password != "s3cret" {
			if v := axesgrpc.Failed(ctx); v.Locked {
				return nil, axesgrpc.LockoutError(v)
			}
			return nil, status.Error(codes.Unauthenticated, "wrong username or password")
		}
		axesgrpc.Succeeded(ctx)
		return "welcome", nil
	}
	call(ic, login, "192.0.2.1:50000", &LoginRequest{Username: "alice", Password: "s3cret"})
	call(ic, login, "192.0.2.1:50000", &LoginRequest{Username: "alice", Password: "guess"})
	call(ic, login, "192.0.2.1:50000", &LoginRequest{Username: "alice", Password: "guess"})
	fmt.Println(lim.Stats().Failures, "failures,", lim.Stats().Successes, "success")
	// Output:
	// OK
	// Unauthenticated
	// ResourceExhausted retry in 1m0s
	// 2 failures, 1 success
}

// Behind a proxy that writes x-forwarded-for, the client IP is read from
// the metadata, but only on calls that come from the proxy: a client that
// connects directly and sends x-forwarded-for itself is counted under its
// own address.
func ExampleWithProxies() {
	lim := axes.Must(axes.New(axes.Policy{
		Limit: 3,
		OnEvent: func(e axes.Event) {
			if e.Kind == axes.EventFailure {
				fmt.Println("failure counted for", e.Key.IP)
			}
		},
	}, axes.WithClock(fixedClock)))
	defer lim.Close()
	ic := axesgrpc.Must(axesgrpc.New(lim, axesgrpc.WithProxies(axeshttp.Proxies{
		Header:  "X-Forwarded-For",
		Trusted: axes.MustParseIPSet("10.0.0.0/8"),
	})))

	fail := func(context.Context, any) (any, error) {
		return nil, status.Error(codes.Unauthenticated, "wrong username or password")
	}
	call(ic, fail, "10.0.0.5:41000", nil, "x-forwarded-for", "203.0.113.7")
	call(ic, fail, "198.51.100.9:52000", nil, "x-forwarded-for", "203.0.113.7")
	// Output:
	// failure counted for 203.0.113.7
	// Unauthenticated
	// failure counted for 198.51.100.9
	// Unauthenticated
}

// The status of a refusal: its code, and the time left in a RetryInfo
// detail, absent for a lock with no end.
func ExampleLockoutError() {
	for _, v := range []axes.Verdict{
		{Locked: true, Reason: axes.ReasonLockout, RetryAfter: 90 * time.Second},
		{Locked: true, Reason: axes.ReasonDenied, RetryAfter: axes.Indefinite},
	} {
		st := status.Convert(axesgrpc.LockoutError(v))
		fmt.Print(st.Code(), ": ", st.Message())
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				fmt.Print(", retry in ", ri.GetRetryDelay().AsDuration())
			}
		}
		fmt.Println()
	}
	// Output:
	// ResourceExhausted: too many failed login attempts, retry in 1m30s
	// ResourceExhausted: too many failed login attempts
}

// The username of a call can come from its metadata instead of its
// request message; calls, streams included, are then reserved before the
// handler runs.
func ExampleWithMetadataUsername() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 1, LockoutBy: []axes.Fields{axes.Username}}, axes.WithClock(fixedClock)))
	defer lim.Close()
	ic := axesgrpc.Must(axesgrpc.New(lim, axesgrpc.WithMetadataUsername(func(ctx context.Context) string {
		if v := metadata.ValueFromIncomingContext(ctx, "x-username"); len(v) == 1 {
			return v[0]
		}
		return ""
	})))

	fail := func(context.Context, any) (any, error) {
		return nil, status.Error(codes.Unauthenticated, "wrong username or password")
	}
	call(ic, fail, "192.0.2.1:50000", nil, "x-username", "alice")
	call(ic, fail, "192.0.2.2:50000", nil, "x-username", "alice")
	call(ic, fail, "192.0.2.2:50000", nil, "x-username", "bob")
	// Output:
	// Unauthenticated
	// ResourceExhausted retry in 15m0s
	// Unauthenticated
}
