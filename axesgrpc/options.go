package axesgrpc

import (
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"strings"

	"github.com/axes-go/axes/axeshttp"
	"google.golang.org/grpc/codes"
)

// An Option configures the Interceptor returned by New.
type Option func(*config)

type config struct {
	resolver   *axeshttp.Resolver
	mdKey      string // metadata key of the forwarding header; "" for none
	header     string // its canonical HTTP name
	username   func(context.Context, any) string
	mdUsername func(context.Context) string
	failures   map[codes.Code]bool
	methods    map[string]bool // nil: every method
	device     func(context.Context, string) string
	// challengePassed recognises a passed challenge; nil: none is.
	challengePassed func(context.Context, any) bool
	challengeCode   codes.Code
	errs            []error
}

// WithProxies sets how the client IP is found, with the trust rules of
// axeshttp.Proxies. The default is the peer address only.
//
// gRPC metadata are the HTTP/2 header fields of the call, with lower-case
// keys, so a proxy in front of the server (Envoy, nginx, a cloud load
// balancer) writes its forwarding header into the metadata: p.Header
// "X-Forwarded-For" is read from the "x-forwarded-for" entries, "Forwarded"
// from "forwarded", "X-Real-IP" from "x-real-ip", and so on. The entries are
// honoured only as axeshttp.Resolver.ClientIP honours the header: when the
// peer is one of p.Trusted (or under p.Hops), reading right to left; from
// any other peer they are ignored, so a client cannot choose its IP by
// sending x-forwarded-for itself.
func WithProxies(p axeshttp.Proxies) Option {
	return func(c *config) {
		r, err := axeshttp.NewResolver(p)
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		c.resolver = r
		c.mdKey, c.header = "", ""
		if p.Header != "" {
			c.mdKey = strings.ToLower(p.Header)
			c.header = textproto.CanonicalMIMEHeaderKey(p.Header)
		}
	}
}

// WithUsername sets the username of an attempt as f of the request message:
// the request of a unary call, or the first message the handler receives on
// a stream. f must not modify req; it should return "" for messages that
// carry no username. A type switch serves several methods:
//
//	func(ctx context.Context, req any) string {
//		switch r := req.(type) {
//		case *authpb.LoginRequest:
//			return r.GetUsername()
//		case *authpb.OTPRequest:
//			return r.GetUser()
//		}
//		return ""
//	}
//
// On a stream the attempt is reserved when the handler receives its first
// message, so a locked client's stream does reach the handler, but its
// first RecvMsg returns the lockout status instead of the message (the
// handler never sees the credentials), later RecvMsg and SendMsg calls
// return it too, and the call ends with it whatever the handler returns.
// A stream whose handler returns without receiving a message reserves and
// counts nothing: for streams whose credentials are in the metadata, use
// WithMetadataUsername instead.
//
// The default is no username: every attempt has the empty username, and
// only the policy's IP and user-agent dimensions tell clients apart.
// WithUsername and WithMetadataUsername exclude each other.
func WithUsername(f func(ctx context.Context, req any) string) Option {
	return func(c *config) {
		if f == nil {
			c.errs = append(c.errs, errors.New("axes: WithUsername(nil)"))
		}
		c.username = f
	}
}

// WithMetadataUsername sets the username of an attempt as f of the call's
// context, before any message is read: f typically reads the incoming
// metadata (metadata.ValueFromIncomingContext) or the peer's TLS
// certificate. Both unary and stream calls are then reserved before the
// handler is called, and a locked client's call never reaches it.
func WithMetadataUsername(f func(ctx context.Context) string) Option {
	return func(c *config) {
		if f == nil {
			c.errs = append(c.errs, errors.New("axes: WithMetadataUsername(nil)"))
		}
		c.mdUsername = f
	}
}

// FailureCodes sets the status codes that settle an attempt the handler did
// not report with Failed or Succeeded as a failed login; codes.OK settles it
// as a success, and any other code settles nothing: the reservation is
// cancelled with axes.Attempt.Cancel, as for a call whose password was never
// checked. The default, without FailureCodes, counts every code but OK as a
// failure, as axeshttp counts every status but 2xx and 3xx: a handler that
// checks the password and then fails for another reason (Internal, Unknown
// for a plain Go error, Unavailable) cannot give away a free guess, at the
// price of counting calls that failed before the check. Narrow it, for
// example to FailureCodes(codes.Unauthenticated, codes.PermissionDenied),
// only in handlers that report Failed themselves wherever a guess was
// checked. FailureCodes() with no codes counts only what the handler
// reports.
func FailureCodes(cs ...codes.Code) Option {
	m := make(map[codes.Code]bool, len(cs))
	for _, code := range cs {
		m[code] = true
	}
	return func(c *config) {
		if m[codes.OK] {
			c.errs = append(c.errs, errors.New("axes: FailureCodes cannot hold codes.OK"))
		}
		c.failures = m
	}
}

// Methods sets the full method names ("/package.Service/Method", as in
// grpc.UnaryServerInfo.FullMethod) that the interceptor protects; calls of
// other methods pass through unchecked and uncounted, and Failed and
// Succeeded do nothing in them. The default protects every method, but most
// applications protect only their login methods: a limiter counts failed
// logins, and other methods would only add noise to its counts (or, under
// the default FailureCodes, count an authorisation refusal as a failed
// login).
func Methods(fullMethods ...string) Option {
	m := make(map[string]bool, len(fullMethods))
	var bad []string
	for _, fm := range fullMethods {
		if !validFullMethod(fm) {
			bad = append(bad, fm)
		}
		m[fm] = true
	}
	return func(c *config) {
		if len(fullMethods) == 0 {
			c.errs = append(c.errs, errors.New("axes: Methods() protects nothing"))
		}
		for _, fm := range bad {
			c.errs = append(c.errs, fmt.Errorf("axes: %q is not a full method name such as /pkg.Service/Method", fm))
		}
		c.methods = m
	}
}

// validFullMethod reports whether s has the form /service/method.
func validFullMethod(s string) bool {
	if len(s) < 4 || s[0] != '/' {
		return false
	}
	i := strings.IndexByte(s[1:], '/') + 1
	return i > 1 && i < len(s)-1 && strings.IndexByte(s[i+1:], '/') < 0
}

// WithDevice sets the trusted device of an attempt (axes.Key.Device) as f
// of the call's context and username: the identifier of a device token the
// application has verified for that username, typically one it issued
// after an earlier successful login and that the client sends in the
// metadata, or "" for an untrusted client. A trusted device is counted on
// its own (see axes.Key.Device), so a real user keeps signing in while
// bots hold the username locked.
//
// SECURITY: f must return a device only for a credential it has verified
// (a MAC or signature over the username and the device, checked in
// constant time, not expired) and bound to that username: a client that
// could choose the device would get a fresh set of guesses with each
// value. axeshttp.Devices issues and verifies such cookies for browsers;
// over gRPC, issuing and verifying the token is the application's.
//
// The default is no device: every attempt is untrusted.
func WithDevice(f func(ctx context.Context, username string) string) Option {
	return func(c *config) {
		if f == nil {
			c.errs = append(c.errs, errors.New("axes: WithDevice(nil)"))
		}
		c.device = f
	}
}
