package axeshttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/axes-go/axes"
)

// DefaultMaxBodyBytes is the default bound on the request body the
// middleware reads to find a username: 64 KiB, far more than any login form.
const DefaultMaxBodyBytes = 64 << 10

// An Option configures the middleware returned by New.
type Option func(*config)

type config struct {
	resolver    *Resolver
	username    Username
	maxBody     int64
	status      int
	lockout     func(http.ResponseWriter, *http.Request, axes.Verdict)
	alwaysJSON  bool
	success     func(int) bool
	passThrough []string
	rlName      string
	rlWindow    time.Duration
	devices     *Devices
	// challengePassed and challengeStatus: see challenge.go.
	challengePassed func(*http.Request) bool
	challengeStatus int
	errs            []error
}

// WithResolver sets how the client IP is found. The default is the socket
// peer only; see Proxies before trusting forwarding headers.
func WithResolver(r *Resolver) Option {
	return func(c *config) {
		if r == nil {
			c.errs = append(c.errs, errors.New("axes: WithResolver(nil)"))
		}
		c.resolver = r
	}
}

// WithUsername sets where the username of an attempt is found. The default
// is FormField("username"), as django-axes.
func WithUsername(u Username) Option {
	return func(c *config) {
		if err := u.validate(); err != nil {
			c.errs = append(c.errs, err)
		}
		c.username = u
	}
}

// MaxBodyBytes bounds the request body that FormField and JSONField read
// to find a username (default DefaultMaxBodyBytes). They read every counted
// request's body whole, whatever its method and content type; a request
// with a larger body is answered 413 Request Entity Too Large without
// reaching the handler or being counted. A url-encoded form body is also
// bound by net/http's own limit of 10 MB, whatever n is.
func MaxBodyBytes(n int64) Option {
	return func(c *config) {
		if n <= 0 {
			c.errs = append(c.errs, fmt.Errorf("axes: MaxBodyBytes(%d) must be positive", n))
		}
		c.maxBody = n
	}
}

// LockoutStatus sets the status of the lockout response (default 429 Too
// Many Requests). A refusal because the limiter's store failed
// (axes.ReasonUnavailable) is always answered 503 Service Unavailable.
func LockoutStatus(code int) Option {
	return func(c *config) {
		if code < 400 || code > 599 {
			c.errs = append(c.errs, fmt.Errorf("axes: LockoutStatus(%d) is not an error status", code))
		}
		c.status = code
	}
}

// LockoutJSON makes the default lockout response JSON whatever the request
// accepts, for APIs. Without it the response is JSON when the Accept header
// ranks JSON at least as high as HTML or, when Accept names neither (absent,
// or only "*/*"), when the request's body is JSON; HTML otherwise.
func LockoutJSON() Option { return func(c *config) { c.alwaysJSON = true } }

// LockoutHandler replaces the lockout response: h is called for every
// refused attempt with its verdict, and writes the whole response. It should
// not let the response depend on whether the username exists.
func LockoutHandler(h func(w http.ResponseWriter, r *http.Request, v axes.Verdict)) Option {
	return func(c *config) {
		if h == nil {
			c.errs = append(c.errs, errors.New("axes: LockoutHandler(nil)"))
		}
		c.lockout = h
	}
}

// SuccessStatus sets how a response status settles an attempt the handler
// did not report with Failed or Succeeded: success when f returns true,
// failure otherwise. The default counts 2xx and 3xx as success and
// everything else (401 and 403, but also 400 and 5xx) as failure, so that
// no kind of response gives an attacker a guess that is not counted.
func SuccessStatus(f func(status int) bool) Option {
	return func(c *config) {
		if f == nil {
			c.errs = append(c.errs, errors.New("axes: SuccessStatus(nil)"))
		}
		c.success = f
	}
}

// PassThrough sets the request methods that reach the handler unchecked and
// uncounted (default GET, HEAD and OPTIONS, which show a login form rather
// than submit one). PassThrough() with no methods counts every request.
//
// A pass-through request reaches the handler without a body, under
// FormField without the username field in its query, and under BasicAuth
// without its Authorization header, so that a handler
// registered without a method cannot check the credentials of
// GET /login?username=...&password=... (or of a JSON body sent with GET)
// uncounted: it reads an empty username. A login page that prefills the
// username must take it from another query parameter. Under UsernameFunc,
// or with no username, the middleware cannot know which fields carry a
// credential: register the handler for POST only ("POST /login" with
// http.ServeMux), or use PassThrough().
func PassThrough(methods ...string) Option {
	methods = append([]string{}, methods...)
	return func(c *config) { c.passThrough = methods }
}

// RateLimitFields makes responses carry the IETF RateLimit-Policy and
// RateLimit fields (draft-ietf-httpapi-ratelimit-headers) under the policy
// name: the limit as quota q, window w in seconds (omitted if 0), the
// attempts remaining r, and on a refusal the seconds t until the lock ends.
// Before the handler reports, r assumes the current attempt fails.
func RateLimitFields(name string, window time.Duration) Option {
	return func(c *config) {
		if !validHeaderName(name) {
			c.errs = append(c.errs, fmt.Errorf("axes: RateLimitFields name %q must be a token", name))
		}
		if window < 0 {
			c.errs = append(c.errs, fmt.Errorf("axes: RateLimitFields window %v is negative", window))
		}
		c.rlName, c.rlWindow = name, window
	}
}

// New returns middleware that protects login handlers with lim.
//
// For every request whose method is counted (see PassThrough) it builds the
// attempt's axes.Key from the client IP (see WithResolver), the username
// (see WithUsername) and the User-Agent header, and reserves the attempt
// with lim.Begin. A refused attempt gets the lockout response (see
// LockoutStatus and LockoutHandler), or under axes.Policy.ChallengeAt the
// challenge response (see ChallengePassed and ChallengeStatus), and never
// reaches the handler. An
// admitted one reaches it, and is settled when the handler calls Failed or
// Succeeded, or else from the response status when the handler returns (see
// SuccessStatus). A handler that panics settles as a failure, and the panic
// goes on.
//
// New returns an error prefixed "axes:" if lim is nil or an option is
// invalid.
func New(lim *axes.Limiter, opts ...Option) (func(http.Handler) http.Handler, error) {
	c := &config{
		username:        FormField("username"),
		maxBody:         DefaultMaxBodyBytes,
		status:          http.StatusTooManyRequests,
		success:         func(s int) bool { return s >= 200 && s < 400 },
		passThrough:     []string{http.MethodGet, http.MethodHead, http.MethodOptions},
		challengeStatus: DefaultChallengeStatus,
	}
	if lim == nil {
		return nil, errors.New("axes: axeshttp.New needs a Limiter")
	}
	for _, o := range opts {
		o(c)
	}
	if err := errors.Join(c.errs...); err != nil {
		return nil, err
	}
	if c.lockout == nil {
		c.lockout = c.defaultLockout
	}
	return func(next http.Handler) http.Handler {
		return &middleware{lim: lim, c: c, next: next}
	}, nil
}

// Must returns mw, or panics if err is not nil. It is meant for examples and
// tests: axeshttp.Must(axeshttp.New(lim)).
func Must(mw func(http.Handler) http.Handler, err error) func(http.Handler) http.Handler {
	if err != nil {
		panic(err)
	}
	return mw
}

type middleware struct {
	lim  *axes.Limiter
	c    *config
	next http.Handler
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, meth := range m.c.passThrough {
		if r.Method == meth {
			m.next.ServeHTTP(w, m.c.username.uncounted(r))
			return
		}
	}
	parsed := r.MultipartForm != nil
	name, err := m.c.username.extract(w, r, m.c.maxBody)
	if mf := r.MultipartForm; mf != nil && !parsed {
		// Files the middleware's parse spilled to disk are removed when
		// the request is done, even if the server cannot see this
		// request (a middleware before this one may have copied it).
		defer func() { _ = mf.RemoveAll() }()
	}
	if err != nil {
		var ref *refusal
		if !errors.As(err, &ref) {
			ref = errBroken
		}
		if ref.close {
			w.Header().Set("Connection", "close")
		}
		http.Error(w, ref.msg, ref.status)
		return
	}
	key := axes.Key{IP: m.c.resolver.ClientIP(r), Username: name, UserAgent: r.UserAgent()}
	if d := m.c.devices; d != nil {
		key.Device, _ = d.Verify(r, name)
	}
	// The reservation gives up with the request; its settle does not (see
	// attemptState.ctx).
	st := &attemptState{a: m.begin(r, key), ctx: context.WithoutCancel(r.Context())}
	if !st.a.Allowed() {
		v := st.a.Verdict()
		if v.Reason == axes.ReasonChallenge {
			m.c.challenge(w)
			return
		}
		m.c.rateLimit(w.Header(), v, false)
		m.c.lockout(w, r, v)
		return
	}
	rec := &recorder{ResponseWriter: w, c: m.c, st: st}
	if d := m.c.devices; d != nil {
		st.issue = func() {
			if rec.status == 0 { // the header can still take a cookie
				d.Issue(rec.ResponseWriter, name)
			}
		}
	}
	completed := false
	defer func() {
		// Reached on return, panic and runtime.Goexit alike; a panic is
		// not recovered, so it goes on with its own stack.
		if !completed {
			st.settle(false)
		}
	}()
	m.next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
	completed = true
	status := rec.status
	if status == 0 {
		status = http.StatusOK // what net/http sends for a handler that writes nothing
	}
	st.settle(m.c.success(status))
}

type stateKey struct{}

// attemptState is the outcome of one admitted attempt, shared by the
// middleware and the handler through the request context.
type attemptState struct {
	mu      sync.Mutex // protects a and settled
	a       axes.Attempt
	settled bool
	// ctx is the request's context without its cancellation: a client
	// that hangs up after its password was checked must not keep its
	// failure from being recorded.
	ctx context.Context
	// issue sets a device cookie on the response (see WithDevices); nil
	// without devices, and once called. Called with mu held.
	issue func()
}

// settle settles the attempt unless it already is, and returns its verdict.
func (s *attemptState) settle(success bool) axes.Verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	if success && !s.settled {
		s.issueDevice()
	}
	s.settled = true
	if success {
		s.a.SucceedContext(s.ctx)
	} else {
		s.a.FailContext(s.ctx)
	}
	return s.a.Verdict()
}

// pendingSuccess issues a device cookie for an attempt the handler has not
// reported, when the response is about to say it succeeded.
func (s *attemptState) pendingSuccess() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.settled {
		s.issueDevice()
	}
}

// issueDevice issues the attempt's device cookie once; s.mu must be held.
func (s *attemptState) issueDevice() {
	if s.issue != nil {
		s.issue()
		s.issue = nil
	}
}

// verdict returns the current verdict and whether the attempt is still
// pending.
func (s *attemptState) verdict() (v axes.Verdict, pending bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.a.Verdict(), !s.settled
}

// Failed reports that the login attempt of r, a request passed to a handler
// by the middleware, failed (a wrong password, an unknown user), and returns
// the verdict: Locked if this failure locked the client out, so the handler
// may say so. Only the first Failed or Succeeded of a request counts. Outside
// the middleware it does nothing and returns the zero Verdict.
func Failed(r *http.Request) axes.Verdict {
	if st, ok := r.Context().Value(stateKey{}).(*attemptState); ok {
		return st.settle(false)
	}
	return axes.Verdict{}
}

// Succeeded reports that the login attempt of r, a request passed to a
// handler by the middleware, succeeded. Only the first Failed or Succeeded of
// a request counts. Outside the middleware it does nothing.
func Succeeded(r *http.Request) {
	if st, ok := r.Context().Value(stateKey{}).(*attemptState); ok {
		st.settle(true)
	}
}

// recorder notes the status the handler sends, and adds the RateLimit
// fields just before the header is written.
type recorder struct {
	http.ResponseWriter
	c      *config
	st     *attemptState
	status int // first final status written; 0 if none yet
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		if w.c.devices != nil && w.c.success(code) {
			w.st.pendingSuccess()
		}
		w.status = code
		v, pending := w.st.verdict()
		w.c.rateLimit(w.Header(), v, pending)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush flushes the underlying writer if it can.
func (w *recorder) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// rateLimit sets the RateLimit fields for verdict v if they are enabled.
// pending says v is the verdict of an admitted attempt not settled yet,
// which counts as spent.
func (c *config) rateLimit(h http.Header, v axes.Verdict, pending bool) {
	if c.rlName == "" || v.Limit <= 0 {
		return
	}
	pol := `"` + c.rlName + `";q=` + strconv.Itoa(v.Limit)
	if c.rlWindow > 0 {
		pol += ";w=" + strconv.FormatInt(ceilSeconds(c.rlWindow), 10)
	}
	h.Set("RateLimit-Policy", pol)
	remaining := v.Limit - v.Failures
	if pending && !v.Locked {
		remaining--
	}
	if v.Locked {
		remaining = 0
	}
	rl := `"` + c.rlName + `";r=` + strconv.Itoa(max(remaining, 0))
	if v.Locked && v.RetryAfter != axes.Indefinite {
		rl += ";t=" + strconv.FormatInt(ceilSeconds(v.RetryAfter), 10)
	}
	h.Set("RateLimit", rl)
}

// ceilSeconds rounds d up to whole seconds, so that a client told to wait
// never comes back early.
func ceilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second != 0 {
		s++
	}
	return s
}
