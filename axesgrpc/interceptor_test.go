package axesgrpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func byUser(ctx context.Context, req any) string {
	if r, ok := req.(*loginRequest); ok {
		return r.User
	}
	return ""
}

func userMetadata(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, "x-user"); len(v) > 0 {
		return v[0]
	}
	return ""
}

func wantCode(t *testing.T, step string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: got %v (%v), want %v", step, got, err, want)
	}
}

// A client that reaches the limit is refused with ResourceExhausted and a
// RetryInfo detail carrying the exact time left, and its calls no longer
// reach the handler, even with the right password, until the lock ends.
func TestLockoutRetryInfo(t *testing.T) {
	for _, kind := range []string{"unary", "stream"} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t, axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.Username}, Cooloff: axes.Fixed(15 * time.Minute)},
				WithUsername(byUser))
			conn := f.dial("")
			ctx := t.Context()
			call := func(user, pass string) error {
				if kind == "unary" {
					return login(ctx, conn, loginMethod, user, pass)
				}
				return loginStream(ctx, conn, user, pass)
			}
			steps := []struct {
				at         time.Time
				user, pass string
				code       codes.Code
				retry      time.Duration // RetryInfo delay; 0 for none
				checks     int32         // password checks so far
			}{
				{t0, "alice", "guess1", codes.Unauthenticated, 0, 1},
				{t0.Add(time.Minute), "alice", "guess2", codes.Unauthenticated, 0, 2},
				{t0.Add(2 * time.Minute), "alice", "guess3", codes.Unauthenticated, 0, 3}, // locks until t0+17m
				{t0.Add(2 * time.Minute), "alice", "s3cret", codes.ResourceExhausted, 15 * time.Minute, 3},
				{t0.Add(7*time.Minute + 250*time.Millisecond), "alice", "s3cret", codes.ResourceExhausted, 9*time.Minute + 59750*time.Millisecond, 3},
				{t0.Add(8 * time.Minute), "bob", "guess", codes.Unauthenticated, 0, 4},
				{t0.Add(17*time.Minute - time.Nanosecond), "alice", "s3cret", codes.ResourceExhausted, time.Nanosecond, 4},
				{t0.Add(17 * time.Minute), "alice", "s3cret", codes.OK, 0, 5},
			}
			for i, s := range steps {
				f.clk.Set(s.at)
				err := call(s.user, s.pass)
				wantCode(t, fmt.Sprintf("step %d", i), err, s.code)
				d, ok := retryDelay(err)
				if ok != (s.retry != 0) || d != s.retry {
					t.Fatalf("step %d: RetryInfo %v (present %v), want %v", i, d, ok, s.retry)
				}
				if got := f.svc.checks.Load(); got != s.checks {
					t.Fatalf("step %d: %d password checks, want %d", i, got, s.checks)
				}
			}
		})
	}
}

// Without a report from the handler, the status code settles the attempt:
// the failure codes count, OK is a success, and any other code releases
// the reservation without counting.
func TestStatusCodeOutcomes(t *testing.T) {
	plain := errors.New("database down")
	cases := []struct {
		name     string
		opts     []Option
		err      error
		failures uint64
		success  uint64
	}{
		{"unauthenticated", nil, status.Error(codes.Unauthenticated, "no"), 1, 0},
		{"permission denied", nil, status.Error(codes.PermissionDenied, "no"), 1, 0},
		{"wrapped unauthenticated", nil, fmt.Errorf("login: %w", status.Error(codes.Unauthenticated, "no")), 1, 0},
		{"ok", nil, nil, 0, 1},
		{"internal", nil, status.Error(codes.Internal, "oops"), 1, 0},
		{"unavailable", nil, status.Error(codes.Unavailable, "later"), 1, 0},
		{"plain error is Unknown", nil, plain, 1, 0},
		{"narrowed: internal releases", []Option{FailureCodes(codes.Unauthenticated)}, status.Error(codes.Internal, "oops"), 0, 0},
		{"narrowed: plain error releases", []Option{FailureCodes(codes.Unauthenticated)}, plain, 0, 0},
		{"custom failure code", []Option{FailureCodes(codes.InvalidArgument)}, status.Error(codes.InvalidArgument, "no"), 1, 0},
		{"custom codes replace the default", []Option{FailureCodes(codes.InvalidArgument)}, status.Error(codes.Unauthenticated, "no"), 0, 0},
		{"no failure codes", []Option{FailureCodes()}, status.Error(codes.Unauthenticated, "no"), 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Limit 1: a reservation left in flight would refuse the next
			// call as busy, and a counted failure locks it.
			f := newFixture(t, axes.Policy{Limit: 1}, c.opts...)
			f.svc.login = func(ctx context.Context, req *loginRequest) (*loginReply, error) {
				if c.err != nil {
					return nil, c.err
				}
				return &loginReply{}, nil
			}
			conn := f.dial("")
			want := status.Code(c.err)
			wantCode(t, "first", login(t.Context(), conn, loginMethod, "u", "p"), want)
			st := f.lim.Stats()
			if st.Failures != c.failures || st.Successes != c.success {
				t.Fatalf("failures %d successes %d, want %d %d", st.Failures, st.Successes, c.failures, c.success)
			}
			second := want
			if c.failures > 0 {
				second = codes.ResourceExhausted
			}
			wantCode(t, "second", login(t.Context(), conn, loginMethod, "u", "p"), second)
		})
	}
}

// What the handler reports with Failed or Succeeded overrides the status
// code, only the first report counts, and Failed returns the verdict that
// locks, which the handler can answer with LockoutError.
func TestHandlerReports(t *testing.T) {
	f := newFixture(t, axes.Policy{Limit: 3, Cooloff: axes.Fixed(time.Hour)})
	conn := f.dial("")
	var verdicts []axes.Verdict
	f.svc.login = func(ctx context.Context, req *loginRequest) (*loginReply, error) {
		switch req.Password {
		case "fail-but-ok":
			v := Failed(ctx)
			Succeeded(ctx) // too late: the first report counts
			verdicts = append(verdicts, v)
			return &loginReply{}, nil
		case "succeed-but-unauthenticated":
			Succeeded(ctx)
			Failed(ctx)
			return nil, status.Error(codes.Unauthenticated, "no")
		case "fail-and-say-so":
			v := Failed(ctx)
			verdicts = append(verdicts, v)
			if err := LockoutError(v); err != nil {
				return nil, err
			}
			return nil, status.Error(codes.Unauthenticated, "no")
		}
		return nil, status.Error(codes.Internal, "unexpected")
	}
	ctx := t.Context()
	wantCode(t, "fail-but-ok", login(ctx, conn, loginMethod, "u", "fail-but-ok"), codes.OK)
	wantCode(t, "succeed-but-unauthenticated", login(ctx, conn, loginMethod, "u", "succeed-but-unauthenticated"), codes.Unauthenticated)
	if st := f.lim.Stats(); st.Failures != 1 || st.Successes != 1 {
		t.Fatalf("failures %d successes %d, want 1 1", st.Failures, st.Successes)
	}
	wantCode(t, "second failure", login(ctx, conn, loginMethod, "u", "fail-and-say-so"), codes.Unauthenticated)
	err := login(ctx, conn, loginMethod, "u", "fail-and-say-so")
	wantCode(t, "third failure", err, codes.ResourceExhausted)
	if d, ok := retryDelay(err); !ok || d != time.Hour {
		t.Fatalf("third failure: RetryInfo %v %v, want 1h", d, ok)
	}
	if len(verdicts) != 3 || verdicts[0].Failures != 1 || verdicts[1].Locked || !verdicts[2].Locked || verdicts[2].RetryAfter != time.Hour {
		t.Fatalf("verdicts %+v", verdicts)
	}
	if calls := f.svc.calls.Load(); calls != 4 {
		t.Fatalf("%d handler calls, want 4", calls)
	}
	// Outside the interceptor the reports do nothing.
	if v := Failed(ctx); v != (axes.Verdict{}) {
		t.Fatalf("Failed outside a call: %+v", v)
	}
	Succeeded(ctx)
}

// Only the listed methods are protected: others are neither refused nor
// counted, and the handler's reports do nothing in them.
func TestMethods(t *testing.T) {
	f := newFixture(t, axes.Policy{Limit: 1}, Methods(loginMethod))
	conn := f.dial("")
	ctx := t.Context()
	var otherVerdict axes.Verdict
	f.svc.login = func(ctx context.Context, req *loginRequest) (*loginReply, error) {
		if req.Password == "other" {
			otherVerdict = Failed(ctx)
		}
		return nil, status.Error(codes.Unauthenticated, "no")
	}
	wantCode(t, "other", login(ctx, conn, otherMethod, "u", "other"), codes.Unauthenticated)
	if st := f.lim.Stats(); st.Failures != 0 || otherVerdict != (axes.Verdict{}) {
		t.Fatalf("unprotected method counted: %+v, verdict %+v", st, otherVerdict)
	}
	wantCode(t, "login", login(ctx, conn, loginMethod, "u", "p"), codes.Unauthenticated)
	wantCode(t, "login locked", login(ctx, conn, loginMethod, "u", "p"), codes.ResourceExhausted)
	wantCode(t, "other while locked", login(ctx, conn, otherMethod, "u", "p"), codes.Unauthenticated)
}

// The client IP is the peer address; forwarding metadata count only when
// the peer is a trusted proxy. A client that is not one cannot escape its
// lock by sending a new x-forwarded-for with every call.
func TestTrustedProxyMetadata(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.3:0"); err != nil {
		t.Skip("this system cannot use 127.0.0.2 and 127.0.0.3:", err)
	} else {
		ln.Close()
	}
	trusted := axes.MustParseIPSet("127.0.0.2/32")
	cases := []struct {
		name    string
		proxies *axeshttp.Proxies
		md      []string // key, value pairs
		proxy   string   // IP seen from the trusted peer 127.0.0.2
	}{
		{"no proxies", nil, []string{"x-forwarded-for", "203.0.113.7"}, "127.0.0.2"},
		{"x-forwarded-for", &axeshttp.Proxies{Header: "X-Forwarded-For", Trusted: trusted},
			[]string{"x-forwarded-for", "198.51.100.1, 203.0.113.7"}, "203.0.113.7"},
		{"x-forwarded-for in two entries", &axeshttp.Proxies{Header: "X-Forwarded-For", Trusted: trusted},
			[]string{"x-forwarded-for", "198.51.100.1", "x-forwarded-for", "203.0.113.7"}, "203.0.113.7"},
		{"forwarded", &axeshttp.Proxies{Header: "Forwarded", Trusted: trusted},
			[]string{"forwarded", `for="[2001:db8::7]:4711";proto=https`}, "2001:db8::7"},
		{"x-real-ip", &axeshttp.Proxies{Header: "X-Real-IP", Trusted: trusted},
			[]string{"x-real-ip", "203.0.113.7"}, "203.0.113.7"},
		{"hops", &axeshttp.Proxies{Header: "X-Forwarded-For", Trusted: trusted, Hops: 2},
			[]string{"x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.1"}, "203.0.113.7"},
		{"garbage from a trusted proxy", &axeshttp.Proxies{Header: "X-Forwarded-For", Trusted: trusted},
			[]string{"x-forwarded-for", "not an address"}, "127.0.0.2"},
		{"other header than configured", &axeshttp.Proxies{Header: "X-Real-IP", Trusted: trusted},
			[]string{"x-forwarded-for", "203.0.113.7"}, "127.0.0.2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var opts []Option
			if c.proxies != nil {
				opts = append(opts, WithProxies(*c.proxies))
			}
			f := newFixture(t, axes.Policy{Limit: 3}, opts...)
			proxy := f.dial("127.0.0.2", grpc.WithUserAgent("axestest/1.0"))
			client := f.dial("127.0.0.3")
			ctx := metadata.AppendToOutgoingContext(t.Context(), c.md...)
			wantCode(t, "via proxy", login(ctx, proxy, loginMethod, "u", "p"), codes.Unauthenticated)
			wantCode(t, "spoofed", login(ctx, client, loginMethod, "u", "p"), codes.Unauthenticated)
			ks := f.failureKeys()
			if len(ks) != 2 {
				t.Fatalf("%d failure events, want 2", len(ks))
			}
			if want := netip.MustParseAddr(c.proxy); ks[0].IP != want {
				t.Errorf("via trusted proxy: IP %v, want %v", ks[0].IP, want)
			}
			if !strings.HasPrefix(ks[0].UserAgent, "axestest/1.0 grpc-go/") {
				t.Errorf("user agent %q", ks[0].UserAgent)
			}
			if want := netip.MustParseAddr("127.0.0.3"); ks[1].IP != want {
				t.Errorf("from an untrusted peer: IP %v, want %v", ks[1].IP, want)
			}
		})
	}
	t.Run("rotating spoofed addresses", func(t *testing.T) {
		f := newFixture(t, axes.Policy{Limit: 3}, WithProxies(axeshttp.Proxies{Header: "X-Forwarded-For", Trusted: trusted}))
		client := f.dial("127.0.0.3")
		for i := range 5 {
			ctx := metadata.AppendToOutgoingContext(t.Context(), "x-forwarded-for", fmt.Sprintf("203.0.113.%d", i))
			want := codes.Unauthenticated
			if i >= 3 {
				want = codes.ResourceExhausted
			}
			wantCode(t, fmt.Sprintf("call %d", i), login(ctx, client, loginMethod, "alice", "guess"), want)
		}
		if got := f.svc.checks.Load(); got != 3 {
			t.Fatalf("%d password checks, want 3", got)
		}
	})
}

// However many calls of one username race, at most Limit reach the
// handler: each admitted call blocks until every call has either reached
// the handler or been refused, so all of them are in flight together.
func TestBurst(t *testing.T) {
	const n, limit = 50, 3
	for _, kind := range []string{"unary", "stream first message", "stream metadata"} {
		t.Run(kind, func(t *testing.T) {
			opts := []Option{WithUsername(byUser)}
			if kind == "stream metadata" {
				opts = []Option{WithMetadataUsername(userMetadata)}
			}
			f := newFixture(t, axes.Policy{Limit: limit, LockoutBy: []axes.Fields{axes.Username}}, opts...)
			var (
				mu               sync.Mutex
				cond             = sync.NewCond(&mu)
				arrived, refused int
			)
			settled := func(refusal bool) {
				mu.Lock()
				if refusal {
					refused++
				} else {
					arrived++
				}
				cond.Broadcast()
				for arrived+refused < n {
					cond.Wait()
				}
				mu.Unlock()
			}
			f.svc.login = func(ctx context.Context, req *loginRequest) (*loginReply, error) {
				settled(false)
				return nil, status.Error(codes.Unauthenticated, "no")
			}
			f.svc.stream = func(s grpc.ServerStream) error {
				var req loginRequest
				if err := s.RecvMsg(&req); err != nil {
					settled(true) // refused at the first message: the client will not count it
					return err
				}
				settled(false)
				return status.Error(codes.Unauthenticated, "no")
			}
			conn := f.dial("")
			ctx := metadata.AppendToOutgoingContext(t.Context(), "x-user", "alice")
			var wg sync.WaitGroup
			var codesSeen sync.Map
			for i := range n {
				wg.Go(func() {
					var err error
					if kind == "unary" {
						err = login(ctx, conn, loginMethod, "alice", fmt.Sprint("guess", i))
					} else {
						err = loginStream(ctx, conn, "alice", fmt.Sprint("guess", i))
					}
					code := status.Code(err)
					c, _ := codesSeen.LoadOrStore(code, new(atomic.Int32))
					c.(*atomic.Int32).Add(1)
					// A call refused before its handler ran reports here;
					// one refused inside the handler reported there.
					if code == codes.ResourceExhausted && kind != "stream first message" {
						settled(true)
					}
				})
			}
			wg.Wait()
			if arrived > limit || arrived < 1 || arrived+refused != n {
				t.Fatalf("%d calls reached the handler and %d were refused; want at most %d and %d in all", arrived, refused, limit, n)
			}
			var rex int32
			if c, ok := codesSeen.Load(codes.ResourceExhausted); ok {
				rex = c.(*atomic.Int32).Load()
			}
			if int(rex) != refused {
				t.Fatalf("%d ResourceExhausted answers for %d refusals", rex, refused)
			}
			if st := f.lim.Stats(); st.Failures != uint64(arrived) {
				t.Fatalf("%d failures counted for %d attempts", st.Failures, arrived)
			}
		})
	}
}

// With the username from the first message, a locked client's stream
// reaches the handler but never delivers that message: RecvMsg and SendMsg
// return the lockout, and the call ends with it whatever the handler
// returns.
func TestStreamFirstMessageRefusal(t *testing.T) {
	f := newFixture(t, axes.Policy{Limit: 1, LockoutBy: []axes.Fields{axes.Username}, Cooloff: axes.Fixed(time.Minute)},
		WithUsername(byUser))
	var recvErr, sendErr, againErr error
	var reports []axes.Verdict
	f.svc.stream = func(s grpc.ServerStream) error {
		reports = append(reports, Failed(s.Context())) // before the first message: nothing to report
		var req loginRequest
		if recvErr = s.RecvMsg(&req); recvErr != nil {
			sendErr = s.SendMsg(&loginReply{Message: "hello"})
			againErr = s.RecvMsg(&req)
			return nil // a handler that ignores the error
		}
		f.svc.checks.Add(1)
		return status.Error(codes.Unauthenticated, "no")
	}
	conn := f.dial("")
	ctx := t.Context()
	wantCode(t, "first", loginStream(ctx, conn, "alice", "guess"), codes.Unauthenticated)
	wantCode(t, "other user", loginStream(ctx, conn, "bob", "guess"), codes.Unauthenticated)
	f.clk.Set(t0.Add(20 * time.Second))
	err := loginStream(ctx, conn, "alice", "s3cret")
	wantCode(t, "locked", err, codes.ResourceExhausted)
	if d, ok := retryDelay(err); !ok || d != 40*time.Second {
		t.Fatalf("RetryInfo %v %v, want 40s", d, ok)
	}
	for name, e := range map[string]error{"RecvMsg": recvErr, "SendMsg": sendErr, "second RecvMsg": againErr} {
		wantCode(t, name, e, codes.ResourceExhausted)
	}
	if got := f.svc.checks.Load(); got != 2 {
		t.Fatalf("%d password checks, want 2", got)
	}
	for i, v := range reports {
		if v != (axes.Verdict{}) {
			t.Fatalf("report %d before the first message: %+v", i, v)
		}
	}
	// A stream that ends before any message reserves and counts nothing.
	cs, err := conn.NewStream(ctx, &authDesc.Streams[0], streamMethod)
	if err != nil {
		t.Fatal(err)
	}
	cs.CloseSend()
	wantCode(t, "empty stream", cs.RecvMsg(&loginReply{}), codes.OK)
	if st := f.lim.Stats(); st.Failures != 2 {
		t.Fatalf("%d failures, want 2", st.Failures)
	}
}

// With the username from the metadata, a locked client's stream never
// reaches the handler, and the handler reports through the stream's
// context.
func TestStreamMetadataUsername(t *testing.T) {
	f := newFixture(t, axes.Policy{Limit: 2, LockoutBy: []axes.Fields{axes.Username}}, WithMetadataUsername(userMetadata))
	f.svc.stream = func(s grpc.ServerStream) error {
		var req loginRequest
		if err := s.RecvMsg(&req); err != nil {
			return err
		}
		if req.Password == "s3cret" {
			Succeeded(s.Context())
			return status.Error(codes.Internal, "settled before this")
		}
		Failed(s.Context())
		return nil
	}
	conn := f.dial("")
	alice := metadata.AppendToOutgoingContext(t.Context(), "x-user", "alice")
	wantCode(t, "success", loginStream(alice, conn, "", "s3cret"), codes.Internal)
	wantCode(t, "failure 1", loginStream(alice, conn, "", "guess"), codes.OK)
	wantCode(t, "failure 2", loginStream(alice, conn, "", "guess"), codes.OK)
	wantCode(t, "locked", loginStream(alice, conn, "", "s3cret"), codes.ResourceExhausted)
	if calls := f.svc.calls.Load(); calls != 3 {
		t.Fatalf("%d handler calls, want 3", calls)
	}
	bob := metadata.AppendToOutgoingContext(t.Context(), "x-user", "bob")
	wantCode(t, "other user", loginStream(bob, conn, "", "s3cret"), codes.Internal)
	if st := f.lim.Stats(); st.Failures != 2 || st.Successes != 2 {
		t.Fatalf("failures %d successes %d, want 2 2", st.Failures, st.Successes)
	}
}

// A handler that panics settles its attempt as a failure; the panic goes
// on.
func TestPanicSettlesAsFailure(t *testing.T) {
	lim := axes.Must(axes.New(axes.Policy{Limit: 2}))
	defer lim.Close()
	ic := Must(New(lim))
	ctx := peer.NewContext(t.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5000}})
	func() {
		defer func() {
			if recover() != "boom" {
				t.Fatal("panic not passed on")
			}
		}()
		ic.Unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: loginMethod}, func(context.Context, any) (any, error) { panic("boom") })
	}()
	func() {
		defer func() {
			if recover() != "boom" {
				t.Fatal("panic not passed on")
			}
		}()
		ic.Stream(nil, fakeStream{ctx}, &grpc.StreamServerInfo{FullMethod: streamMethod}, func(any, grpc.ServerStream) error { panic("boom") })
	}()
	if st := lim.Stats(); st.Failures != 2 {
		t.Fatalf("%d failures, want 2", st.Failures)
	}
	if !lim.Locked(axes.Key{IP: netip.MustParseAddr("192.0.2.1")}) {
		t.Fatal("not locked")
	}
}

type fakeStream struct{ ctx context.Context }

func (s fakeStream) SetHeader(metadata.MD) error  { return nil }
func (s fakeStream) SendHeader(metadata.MD) error { return nil }
func (s fakeStream) SetTrailer(metadata.MD)       {}
func (s fakeStream) Context() context.Context     { return s.ctx }
func (s fakeStream) SendMsg(any) error            { return nil }
func (s fakeStream) RecvMsg(any) error            { return nil }

// A call whose peer is not an IP address (a Unix socket, or no peer at
// all) still counts, under the invalid address, and nothing panics.
func TestPeerWithoutIP(t *testing.T) {
	lim := axes.Must(axes.New(axes.Policy{Limit: 1}))
	defer lim.Close()
	ic := Must(New(lim, WithProxies(axeshttp.Proxies{Header: "X-Forwarded-For", Trusted: axes.MustParseIPSet("10.0.0.0/8")})))
	fail := func(context.Context, any) (any, error) { return nil, status.Error(codes.Unauthenticated, "no") }
	info := &grpc.UnaryServerInfo{FullMethod: loginMethod}
	unix := peer.NewContext(t.Context(), &peer.Peer{Addr: &net.UnixAddr{Name: "/run/app.sock", Net: "unix"}})
	unix = metadata.NewIncomingContext(unix, metadata.Pairs("x-forwarded-for", "203.0.113.7"))
	if _, err := ic.Unary(unix, nil, info, fail); status.Code(err) != codes.Unauthenticated {
		t.Fatal(err)
	}
	if _, err := ic.Unary(t.Context(), nil, info, fail); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("no peer: %v, want the lock of the invalid address", err)
	}
}

func TestLockoutError(t *testing.T) {
	if err := LockoutError(axes.Verdict{}); err != nil {
		t.Fatalf("not locked: %v", err)
	}
	cases := []struct {
		v     axes.Verdict
		code  codes.Code
		retry time.Duration // 0: no RetryInfo
	}{
		{axes.Verdict{Locked: true, Reason: axes.ReasonLockout, RetryAfter: 90 * time.Second}, codes.ResourceExhausted, 90 * time.Second},
		{axes.Verdict{Locked: true, Reason: axes.ReasonBusy, RetryAfter: axes.BusyRetryAfter}, codes.ResourceExhausted, axes.BusyRetryAfter},
		{axes.Verdict{Locked: true, Reason: axes.ReasonLockout, RetryAfter: axes.Indefinite}, codes.ResourceExhausted, 0},
		{axes.Verdict{Locked: true, Reason: axes.ReasonDenied, RetryAfter: axes.Indefinite}, codes.ResourceExhausted, 0},
		{axes.Verdict{Locked: true, Reason: axes.ReasonUnavailable, RetryAfter: axes.BusyRetryAfter}, codes.Unavailable, axes.BusyRetryAfter},
	}
	for _, c := range cases {
		err := LockoutError(c.v)
		wantCode(t, c.v.Reason.String(), err, c.code)
		if d, ok := retryDelay(err); ok != (c.retry != 0) || d != c.retry {
			t.Errorf("%v: RetryInfo %v %v, want %v", c.v.Reason, d, ok, c.retry)
		}
	}
}

// A denied IP is refused before the handler, with no RetryInfo.
func TestDeniedPeer(t *testing.T) {
	f := newFixture(t, axes.Policy{Deny: axes.MustParseIPSet("127.0.0.0/8")})
	err := login(t.Context(), f.dial(""), loginMethod, "alice", "s3cret")
	wantCode(t, "denied", err, codes.ResourceExhausted)
	if _, ok := retryDelay(err); ok || f.svc.calls.Load() != 0 {
		t.Fatalf("RetryInfo %v, %d handler calls", ok, f.svc.calls.Load())
	}
}

func TestNewErrors(t *testing.T) {
	lim := axes.Must(axes.New(axes.Policy{}))
	defer lim.Close()
	cases := []struct {
		name string
		lim  *axes.Limiter
		opts []Option
		want string
	}{
		{"nil limiter", nil, nil, "needs a Limiter"},
		{"nil username", lim, []Option{WithUsername(nil)}, "WithUsername(nil)"},
		{"nil metadata username", lim, []Option{WithMetadataUsername(nil)}, "WithMetadataUsername(nil)"},
		{"both usernames", lim, []Option{WithUsername(byUser), WithMetadataUsername(userMetadata)}, "exclude each other"},
		{"OK as failure", lim, []Option{FailureCodes(codes.Unauthenticated, codes.OK)}, "codes.OK"},
		{"no methods", lim, []Option{Methods()}, "protects nothing"},
		{"short method", lim, []Option{Methods("Login")}, `"Login" is not a full method name`},
		{"method without service", lim, []Option{Methods("//Login")}, "not a full method name"},
		{"method with three parts", lim, []Option{Methods("/a/b/c")}, "not a full method name"},
		{"untrusted header", lim, []Option{WithProxies(axeshttp.Proxies{Header: "X-Forwarded-For"})}, "trusted from anybody"},
	}
	for _, c := range cases {
		ic, err := New(c.lim, c.opts...)
		if err == nil || ic != nil || !strings.HasPrefix(err.Error(), "axes: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.want)
		}
	}
	if _, err := New(lim, Methods("/pkg.Auth/Login", "/pkg.Auth/Refresh"), FailureCodes(), WithProxies(axeshttp.Proxies{})); err != nil {
		t.Fatal(err)
	}
}
