package axesgrpc_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// A challenge before the lock: from the second failure on, a call is
// admitted only with a solved CAPTCHA, whose token the client sends in the
// x-captcha metadata; the fourth failure locks, CAPTCHA or not. The real
// user who solves the CAPTCHA gets in.
func ExampleChallengePassed() {
	lim := axes.Must(axes.New(axes.Policy{
		Limit:       4,
		ChallengeAt: 2,
		LockoutBy:   []axes.Fields{axes.Username},
	}, axes.WithClock(fixedClock)))
	defer lim.Close()

	solved := map[string]bool{} // tokens of solved CAPTCHAs, each good once
	passed := func(ctx context.Context, req any) bool {
		v := metadata.ValueFromIncomingContext(ctx, "x-captcha")
		if len(v) == 0 || !solved[v[0]] {
			return false
		}
		delete(solved, v[0])
		return true
	}
	ic := axesgrpc.Must(axesgrpc.New(lim,
		axesgrpc.Methods("/auth.v1.Auth/Login"),
		axesgrpc.WithUsername(username),
		axesgrpc.ChallengePassed(passed)))

	handler := func(ctx context.Context, req any) (any, error) {
		r := req.(*LoginRequest)
		if r.Username != "alice" || r.Password != "s3cret" {
			v := axesgrpc.Failed(ctx)
			return nil, status.Errorf(codes.Unauthenticated, "wrong password (CAPTCHA next: %v)", v.Challenge)
		}
		return "welcome", nil
	}
	try := func(user, password, token string) {
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.9:5000"))})
		ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("x-captcha", token))
		_, err := ic.Unary(ctx, &LoginRequest{Username: user, Password: password}, &grpc.UnaryServerInfo{FullMethod: "/auth.v1.Auth/Login"}, handler)
		switch {
		case err == nil:
			fmt.Println(user, "signed in")
		case axesgrpc.IsChallenge(err):
			fmt.Println(user, "asked for a CAPTCHA:", status.Code(err))
		default:
			fmt.Println(user, status.Code(err), status.Convert(err).Message())
		}
	}

	try("bob", "guess1", "")
	try("bob", "guess2", "")
	try("bob", "guess3", "") // a bot cannot solve the CAPTCHA
	solved["t1"], solved["t2"], solved["t3"] = true, true, true
	try("bob", "guess3", "t1")
	try("bob", "guess4", "t2") // the fourth failure locks
	try("bob", "guess5", "t3")

	try("alice", "typo", "")
	try("alice", "typo", "")
	try("alice", "s3cret", "")
	solved["a1"] = true
	try("alice", "s3cret", "a1")
	// Output:
	// bob Unauthenticated wrong password (CAPTCHA next: false)
	// bob Unauthenticated wrong password (CAPTCHA next: true)
	// bob asked for a CAPTCHA: Unauthenticated
	// bob Unauthenticated wrong password (CAPTCHA next: true)
	// bob Unauthenticated wrong password (CAPTCHA next: false)
	// bob ResourceExhausted too many failed login attempts
	// alice Unauthenticated wrong password (CAPTCHA next: false)
	// alice Unauthenticated wrong password (CAPTCHA next: true)
	// alice asked for a CAPTCHA: Unauthenticated
	// alice signed in
}
