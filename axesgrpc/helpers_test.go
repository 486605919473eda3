package axesgrpc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

// The tests run a hand-written service over a JSON codec, so that they need
// no generated code: the interceptors see the same calls as with protobuf.

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (jsonCodec) Name() string                       { return "json" }

func init() { encoding.RegisterCodec(jsonCodec{}) }

type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

type loginReply struct {
	Message string `json:"message"`
}

const (
	loginMethod  = "/axestest.Auth/Login"
	otherMethod  = "/axestest.Auth/Other"
	streamMethod = "/axestest.Auth/LoginStream"
)

// service is the test server: its handlers are set per test.
type service struct {
	login  func(ctx context.Context, req *loginRequest) (*loginReply, error)
	stream func(s grpc.ServerStream) error
	calls  atomic.Int32 // handler calls (unary or stream)
	checks atomic.Int32 // password checks by checkPassword
}

// checkPassword is the password check of the default handlers.
func (s *service) checkPassword(req *loginRequest) error {
	s.checks.Add(1)
	if req.User == "alice" && req.Password == "s3cret" {
		return nil
	}
	return status.Error(codes.Unauthenticated, "wrong username or password")
}

func unaryHandler(fullMethod string) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(loginRequest)
		if err := dec(in); err != nil {
			return nil, err
		}
		s := srv.(*service)
		h := func(ctx context.Context, req any) (any, error) {
			s.calls.Add(1)
			if s.login != nil {
				return s.login(ctx, req.(*loginRequest))
			}
			if err := s.checkPassword(req.(*loginRequest)); err != nil {
				return nil, err
			}
			return &loginReply{Message: "welcome"}, nil
		}
		if ic == nil {
			return h(ctx, in)
		}
		return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}, h)
	}
}

func streamHandler(srv any, ss grpc.ServerStream) error {
	s := srv.(*service)
	s.calls.Add(1)
	if s.stream != nil {
		return s.stream(ss)
	}
	var req loginRequest
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	if err := s.checkPassword(&req); err != nil {
		return err
	}
	return ss.SendMsg(&loginReply{Message: "welcome"})
}

var authDesc = grpc.ServiceDesc{
	ServiceName: "axestest.Auth",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Login", Handler: unaryHandler(loginMethod)},
		{MethodName: "Other", Handler: unaryHandler(otherMethod)},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "LoginStream", Handler: streamHandler, ServerStreams: true, ClientStreams: true},
	},
}

// fakeClock is an injected clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// fixture is a limiter, an interceptor and the test service served on a
// loopback TCP listener.
type fixture struct {
	t    *testing.T
	clk  *fakeClock
	lim  *axes.Limiter
	ic   *Interceptor
	svc  *service
	addr string

	mu     sync.Mutex
	events []axes.Event // protected by mu
}

func newFixture(t *testing.T, p axes.Policy, opts ...Option) *fixture {
	t.Helper()
	f := &fixture{t: t, clk: &fakeClock{now: t0}, svc: &service{}}
	if p.OnEvent == nil {
		p.OnEvent = func(e axes.Event) {
			f.mu.Lock()
			f.events = append(f.events, e)
			f.mu.Unlock()
		}
	}
	lim, err := axes.New(p, axes.WithClock(f.clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	f.lim = lim
	f.ic, err = New(lim, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(f.ic.Unary), grpc.ChainStreamInterceptor(f.ic.Stream))
	srv.RegisterService(&authDesc, f.svc)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	f.addr = ln.Addr().String()
	return f
}

// dial connects to the server, from source address from if not empty.
func (f *fixture) dial(from string, opts ...grpc.DialOption) *grpc.ClientConn {
	f.t.Helper()
	opts = append(opts,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.CallContentSubtype("json")))
	if from != "" {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	}
	conn, err := grpc.NewClient("passthrough:///"+f.addr, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	return conn
}

// failures returns the IPs, usernames and user agents of the failure
// events so far, one per counted attempt and dimension.
func (f *fixture) failureKeys() []axes.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ks []axes.Key
	for _, e := range f.events {
		if e.Kind == axes.EventFailure {
			ks = append(ks, e.Key)
		}
	}
	return ks
}

func login(ctx context.Context, conn *grpc.ClientConn, method, user, pass string) error {
	var reply loginReply
	return conn.Invoke(ctx, method, &loginRequest{User: user, Password: pass}, &reply)
}

// loginStream sends one login message on a new stream and returns the
// status the stream ends with.
func loginStream(ctx context.Context, conn *grpc.ClientConn, user, pass string) error {
	cs, err := conn.NewStream(ctx, &authDesc.Streams[0], streamMethod)
	if err != nil {
		return err
	}
	if err := cs.SendMsg(&loginRequest{User: user, Password: pass}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	var reply loginReply
	if err := cs.RecvMsg(&reply); errors.Is(err, io.EOF) {
		return nil // ended with OK and no reply
	} else if err != nil {
		return err
	}
	// A reply: the stream must then end cleanly.
	if err := cs.RecvMsg(&reply); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// retryDelay returns the delay of the RetryInfo detail of err, and whether
// it has one.
func retryDelay(err error) (time.Duration, bool) {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
