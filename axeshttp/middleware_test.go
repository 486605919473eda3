package axeshttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newLimiter(t testing.TB, p axes.Policy, clk *fakeClock) *axes.Limiter {
	t.Helper()
	lim, err := axes.New(p, axes.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lim.Close() })
	return lim
}

func newMiddleware(t testing.TB, lim *axes.Limiter, opts ...Option) func(http.Handler) http.Handler {
	t.Helper()
	mw, err := New(lim, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

// login is a handler that accepts the password "right" and reports the
// outcome by status only.
var login = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.PostFormValue("password") == "right" {
		io.WriteString(w, "welcome")
		return
	}
	http.Error(w, "wrong username or password", http.StatusUnauthorized)
})

func postForm(remote string, vals url.Values, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(vals.Encode()))
	r.RemoteAddr = remote
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func creds(user, pass string) url.Values {
	return url.Values{"username": {user}, "password": {pass}}
}

func TestNewErrors(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{}, clk)
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	bad := [][]Option{
		{MaxBodyBytes(0)},
		{MaxBodyBytes(-1)},
		{LockoutStatus(200)},
		{LockoutStatus(600)},
		{LockoutHandler(nil)},
		{SuccessStatus(nil)},
		{WithResolver(nil)},
		{WithUsername(UsernameFunc(nil))},
		{WithUsername(JSONField(""))},
		{WithUsername(JSONField("-"))},
		{WithUsername(JSONField("user,string"))},
		{WithUsername(JSONField(`user"name`))},
		{WithUsername(JSONField(`user\name`))},
		{WithUsername(Username{kind: usernameJSON, field: "username"})}, // not built by JSONField
		{RateLimitFields("", time.Minute)},
		{RateLimitFields(`a"b`, time.Minute)},
		{RateLimitFields("login", -time.Second)},
	}
	for i, opts := range bad {
		mw, err := New(lim, opts...)
		if err == nil || mw != nil {
			t.Errorf("case %d: New succeeded", i)
			continue
		}
		if !strings.HasPrefix(err.Error(), "axes: ") {
			t.Errorf("case %d: error %q lacks the axes: prefix", i, err)
		}
	}
	for _, name := range []string{"username", "user name", "ユーザー名", "login-id", "e-mail@x"} {
		if _, err := New(lim, WithUsername(JSONField(name))); err != nil {
			t.Errorf("JSONField(%q): %v", name, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Must did not panic on an error")
		}
	}()
	Must(New(lim, MaxBodyBytes(0)))
}

// step is one request of a scripted sequence.
type step struct {
	user, pass string
	status     int    // want
	retry      string // want Retry-After
}

func runSteps(t *testing.T, h http.Handler, remote string, steps []step) {
	t.Helper()
	for i, s := range steps {
		w := serve(h, postForm(remote, creds(s.user, s.pass)))
		if w.Code != s.status || w.Header().Get("Retry-After") != s.retry {
			t.Fatalf("step %d (%s/%s): got %d Retry-After %q, want %d %q; body %q",
				i, s.user, s.pass, w.Code, w.Header().Get("Retry-After"), s.status, s.retry, w.Body)
		}
	}
}

func TestMiddlewareCountsByStatusAndLocks(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 3, Cooloff: axes.Fixed(15 * time.Minute)}, clk)
	h := newMiddleware(t, lim)(login)
	runSteps(t, h, "192.0.2.1:1000", []step{
		{"bob", "x", 401, ""},
		{"bob", "right", 200, ""}, // success does not reset by default
		{"bob", "y", 401, ""},
		{"bob", "z", 401, ""},        // third failure: locks
		{"bob", "right", 429, "900"}, // refused, even with the right password
	})
	// Another IP is not affected.
	runSteps(t, h, "192.0.2.2:1000", []step{{"bob", "right", 200, ""}})
	clk.Advance(14*time.Minute + 30*time.Second)
	runSteps(t, h, "192.0.2.1:1000", []step{{"bob", "right", 429, "30"}})
	clk.Advance(500 * time.Millisecond)
	runSteps(t, h, "192.0.2.1:1000", []step{{"bob", "right", 429, "30"}}) // rounded up
	clk.Advance(30 * time.Second)
	runSteps(t, h, "192.0.2.1:1000", []step{{"bob", "right", 200, ""}})
	st := lim.Stats()
	if st.Failures != 3 || st.Successes != 3 || st.Refused != 3 || st.Lockouts != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestMiddlewareReports(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 2}, clk)
	var verdicts []axes.Verdict
	h := newMiddleware(t, lim)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.PostFormValue("password") {
		case "right":
			Succeeded(r)
			Failed(r) // too late: the first report counts
			http.Error(w, "a 401 after a reported success is not a failure", http.StatusUnauthorized)
		default:
			v := Failed(r)
			verdicts = append(verdicts, v)
			Succeeded(r) // ignored
			if v.Locked {
				http.Error(w, "locked now", http.StatusTooManyRequests)
				return
			}
			io.WriteString(w, "200, but a reported failure")
		}
	}))
	runSteps(t, h, "192.0.2.1:1", []step{
		{"bob", "right", 401, ""},
		{"bob", "wrong", 200, ""},
		{"bob", "right", 401, ""},
		{"bob", "wrong", 429, ""}, // the handler's own answer to the locking failure
		{"bob", "right", 429, "900"},
	})
	if len(verdicts) != 2 || verdicts[0].Locked || verdicts[0].Failures != 1 || !verdicts[1].Locked || verdicts[1].RetryAfter != 15*time.Minute {
		t.Errorf("verdicts %+v", verdicts)
	}
	if st := lim.Stats(); st.Failures != 2 || st.Successes != 2 {
		t.Errorf("stats %+v", st)
	}

	// Outside the middleware the reports do nothing.
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	if v := Failed(r); v != (axes.Verdict{}) {
		t.Errorf("Failed outside the middleware = %+v", v)
	}
	Succeeded(r)
}

func TestMiddlewareStatusClassification(t *testing.T) {
	for _, tt := range []struct {
		status  int
		write   bool // write a body instead of WriteHeader
		fails   bool
		options []Option
	}{
		{status: 200, write: true},
		{status: 0}, // writes nothing: net/http sends 200
		{status: 204},
		{status: 302},
		{status: 401, fails: true},
		{status: 403, fails: true},
		{status: 400, fails: true},
		{status: 500, fails: true},
		{status: 500, options: []Option{SuccessStatus(func(s int) bool { return s != 401 })}},
		{status: 302, fails: true, options: []Option{SuccessStatus(func(s int) bool { return s == 200 })}},
	} {
		clk := newClock()
		lim := newLimiter(t, axes.Policy{Limit: 5}, clk)
		h := newMiddleware(t, lim, tt.options...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints) // informational: not the outcome
			switch {
			case tt.write:
				io.WriteString(w, "body")
			case tt.status != 0:
				w.WriteHeader(tt.status)
			}
		}))
		serve(h, postForm("192.0.2.1:1", creds("bob", "pw")))
		st := lim.Stats()
		if got := st.Failures == 1; got != tt.fails || st.Failures+st.Successes != 1 {
			t.Errorf("status %d: stats %+v, want failure %v", tt.status, st, tt.fails)
		}
	}
}

func TestMiddlewarePassThrough(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 1}, clk)
	h := newMiddleware(t, lim)(login)
	runSteps(t, h, "192.0.2.1:1", []step{{"bob", "x", 401, ""}, {"bob", "right", 429, "900"}})
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
		r := httptest.NewRequest(m, "/login", nil)
		r.RemoteAddr = "192.0.2.1:1"
		if w := serve(h, r); w.Code != 401 {
			t.Errorf("%s: got %d, want the handler's 401", m, w.Code)
		}
	}
	if st := lim.Stats(); st.Failures != 1 {
		t.Errorf("GET was counted: %+v", st)
	}

	// PassThrough() counts every method, GET with Basic auth included.
	lim2 := newLimiter(t, axes.Policy{Limit: 1, LockoutBy: []axes.Fields{axes.Username}}, clk)
	h2 := newMiddleware(t, lim2, PassThrough(), WithUsername(BasicAuth()))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.SetBasicAuth("carol", "pw")
	if w := serve(h2, r); w.Code != 401 {
		t.Fatalf("got %d", w.Code)
	}
	if w := serve(h2, r); w.Code != 429 {
		t.Fatalf("got %d, want 429", w.Code)
	}
	if l := lim2.Lockouts(); len(l) != 1 || l[0].Username != "carol" {
		t.Errorf("lockouts %+v", l)
	}
}

func TestMiddlewarePanicSettlesAsFailure(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 2}, clk)
	boom := errors.New("boom")
	h := newMiddleware(t, lim)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(boom)
	}))
	for i := range 2 {
		func() {
			defer func() {
				if p := recover(); p != boom {
					t.Errorf("attempt %d: recovered %v, want the handler's panic", i, p)
				}
			}()
			serve(h, postForm("192.0.2.1:1", creds("bob", "pw")))
		}()
	}
	if st := lim.Stats(); st.Failures != 2 || st.Lockouts != 1 {
		t.Errorf("stats %+v", st)
	}
	// Locked: the panicking handler is not reached any more.
	if w := serve(h, postForm("192.0.2.1:1", creds("bob", "pw"))); w.Code != 429 {
		t.Errorf("got %d", w.Code)
	}
}

func TestLockoutResponse(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 1, Cooloff: axes.Fixed(90 * time.Second)}, clk)
	h := newMiddleware(t, lim)(login)
	serve(h, postForm("192.0.2.1:1", creds("alice", "x")))
	clk.Advance(250 * time.Millisecond)

	html := serve(h, postForm("192.0.2.1:1", creds("alice", "right"), "Accept", "text/html,*/*;q=0.8"))
	if html.Code != 429 || html.Header().Get("Retry-After") != "90" ||
		html.Header().Get("Content-Type") != "text/html; charset=utf-8" ||
		html.Header().Get("Cache-Control") != "no-store" ||
		!strings.Contains(html.Body.String(), "Try again in 2 minutes.") {
		t.Errorf("HTML lockout: %d %v %q", html.Code, html.Header(), html.Body)
	}
	js := serve(h, postForm("192.0.2.1:1", creds("alice", "right"), "Accept", "application/json"))
	var body map[string]any
	if err := json.Unmarshal(js.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if js.Code != 429 || js.Header().Get("Content-Type") != "application/json" || body["error"] != "locked_out" || body["retry_after"] != 90.0 {
		t.Errorf("JSON lockout: %d %v %v", js.Code, js.Header(), body)
	}

	// Identical whether or not the username exists: only the time left
	// shapes the response.
	a := serve(h, postForm("192.0.2.1:1", creds("alice", "right")))
	b := serve(h, postForm("192.0.2.1:1", creds("no-such-user", "whatever")))
	if a.Code != b.Code || a.Body.String() != b.Body.String() || len(a.Header()) != len(b.Header()) {
		t.Errorf("responses differ:\n%d %v %q\n%d %v %q", a.Code, a.Header(), a.Body, b.Code, b.Header(), b.Body)
	}
	for k := range a.Header() {
		if a.Header().Get(k) != b.Header().Get(k) {
			t.Errorf("header %s differs: %q vs %q", k, a.Header().Get(k), b.Header().Get(k))
		}
	}
}

func TestLockoutResponseForever(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 1, Cooloff: axes.Forever}, clk)
	h := newMiddleware(t, lim, LockoutStatus(http.StatusForbidden))(login)
	serve(h, postForm("192.0.2.1:1", creds("bob", "x")))
	w := serve(h, postForm("192.0.2.1:1", creds("bob", "right"), "Accept", "application/json"))
	if w.Code != 403 || w.Header().Get("Retry-After") != "" || strings.Contains(w.Body.String(), "retry_after") {
		t.Errorf("got %d %v %q", w.Code, w.Header(), w.Body)
	}
}

func TestLockoutDenied(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Deny: axes.MustParseIPSet("192.0.2.0/24")}, clk)
	called := false
	h := newMiddleware(t, lim)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	w := serve(h, postForm("192.0.2.1:1", creds("bob", "x")))
	if called || w.Code != 429 || w.Header().Get("Retry-After") != "" {
		t.Errorf("denied IP: called %v, %d %v", called, w.Code, w.Header())
	}
}

// failingStore is a store.Store whose every call fails.
type failingStore struct{}

var errStore = errors.New("store down")

func (failingStore) Apply(context.Context, *store.Request) error { return errStore }
func (failingStore) ResetField(context.Context, store.Fields, store.Digest) (int, error) {
	return 0, errStore
}
func (failingStore) ResetAll(context.Context) (int, error) { return 0, errStore }
func (failingStore) Close() error                          { return nil }

func TestLockoutUnavailable(t *testing.T) {
	lim, err := axes.New(axes.Policy{}, axes.WithStore(failingStore{}))
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	h := newMiddleware(t, lim)(login)
	w := serve(h, postForm("192.0.2.1:1", creds("bob", "right"), "Accept", "application/json"))
	if w.Code != 503 || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), `"unavailable"`) {
		t.Errorf("got %d %v %q", w.Code, w.Header(), w.Body)
	}
}

func TestLockoutHandlerOption(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 1}, clk)
	var got axes.Verdict
	h := newMiddleware(t, lim, LockoutHandler(func(w http.ResponseWriter, r *http.Request, v axes.Verdict) {
		got = v
		http.Redirect(w, r, "/locked", http.StatusSeeOther)
	}))(login)
	serve(h, postForm("192.0.2.1:1", creds("bob", "x")))
	w := serve(h, postForm("192.0.2.1:1", creds("bob", "right")))
	if w.Code != 303 || w.Header().Get("Location") != "/locked" || !got.Locked || got.Reason != axes.ReasonLockout {
		t.Errorf("got %d %v, verdict %+v", w.Code, w.Header(), got)
	}
}

func TestMiddlewareBusy(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 1}, clk)
	entered, release := make(chan struct{}), make(chan struct{})
	h := newMiddleware(t, lim)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.WriteHeader(http.StatusUnauthorized)
	}))
	done := make(chan int)
	go func() { done <- serve(h, postForm("192.0.2.1:1", creds("bob", "x"))).Code }()
	<-entered
	// The only attempt allowed is in flight: the next one is refused.
	w := serve(h, postForm("192.0.2.1:1", creds("bob", "right")))
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Errorf("busy: got %d %v", w.Code, w.Header())
	}
	close(release)
	if code := <-done; code != 401 {
		t.Errorf("first attempt: %d", code)
	}
}

// TestMiddlewareRace: however many requests race, at most Limit reach the
// password check before the lock.
func TestMiddlewareRace(t *testing.T) {
	clk := newClock()
	const limit = 3
	lim := newLimiter(t, axes.Policy{Limit: limit}, clk)
	var checked atomic.Int32
	h := newMiddleware(t, lim)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checked.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() { serve(h, postForm("192.0.2.1:1", creds("bob", "x"))) })
	}
	wg.Wait()
	if n := checked.Load(); n < 1 || n > limit {
		t.Errorf("%d attempts reached the handler, want 1..%d", n, limit)
	}
}

func TestMiddlewareResolver(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 1}, clk)
	res := MustResolver(Proxies{Header: "X-Forwarded-For", Trusted: axes.MustParseIPSet("10.0.0.0/8")})
	h := newMiddleware(t, lim, WithResolver(res))(login)
	serve(h, postForm("10.0.0.1:1", creds("bob", "x"), "X-Forwarded-For", "6.6.6.6, 203.0.113.5"))
	// The same proxy with another client is not locked.
	if w := serve(h, postForm("10.0.0.1:1", creds("bob", "right"), "X-Forwarded-For", "203.0.113.6")); w.Code != 200 {
		t.Errorf("other client: %d", w.Code)
	}
	if w := serve(h, postForm("10.0.0.1:1", creds("bob", "right"), "X-Forwarded-For", "203.0.113.5")); w.Code != 429 {
		t.Errorf("locked client: %d", w.Code)
	}
	if l := lim.Lockouts(); len(l) != 1 || l[0].IP.Addr().String() != "203.0.113.5" {
		t.Errorf("lockouts %+v", l)
	}
}

func TestRateLimitFields(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{Limit: 3, Cooloff: axes.Fixed(time.Minute)}, clk)
	h := newMiddleware(t, lim, RateLimitFields("login", 15*time.Minute))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("password") == "report" {
			Failed(r)
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	want := []struct{ policy, rl string }{
		{`"login";q=3;w=900`, `"login";r=2`},
		{`"login";q=3;w=900`, `"login";r=1`},
		{`"login";q=3;w=900`, `"login";r=0;t=60`}, // reported before the header: the lock is known
		{`"login";q=3;w=900`, `"login";r=0;t=60`},
	}
	for i, wt := range want {
		pass := "x"
		if i == 2 {
			pass = "report"
		}
		w := serve(h, postForm("192.0.2.1:1", creds("bob", pass)))
		if w.Header().Get("RateLimit-Policy") != wt.policy || w.Header().Get("RateLimit") != wt.rl {
			t.Errorf("request %d: RateLimit-Policy %q RateLimit %q, want %q %q", i,
				w.Header().Get("RateLimit-Policy"), w.Header().Get("RateLimit"), wt.policy, wt.rl)
		}
	}
}

// TestUsernameMatchesFormValue: the username the middleware counts is the
// one the handler reads with FormValue and PostFormValue, and the body
// reaches the handler intact; a request on which they could disagree is
// answered 400 without reaching the handler.
func TestUsernameMatchesFormValue(t *testing.T) {
	mp := func(query string, fields ...string) (*http.Request, string) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for i := 0; i+1 < len(fields); i += 2 {
			mw.WriteField(fields[i], fields[i+1])
		}
		fw, _ := mw.CreateFormFile("username", "evil.txt")
		fw.Write([]byte("file-content"))
		mw.Close()
		r := httptest.NewRequest(http.MethodPost, "/login"+query, bytes.NewReader(buf.Bytes()))
		r.Header.Set("Content-Type", mw.FormDataContentType())
		return r, buf.String()
	}
	form := func(query, body string) (*http.Request, string) {
		r := httptest.NewRequest(http.MethodPost, "/login"+query, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		return r, body
	}
	cases := []struct {
		mk      func() (*http.Request, string)
		refused bool
	}{
		{func() (*http.Request, string) { return form("", "username=bob&password=x") }, false},
		{func() (*http.Request, string) { return form("", "username=bob&username=eve") }, true}, // a form decoder takes the last
		{func() (*http.Request, string) { return form("", "username=bob&username=bob") }, false},
		{func() (*http.Request, string) { return form("?username=bob", "username=bob") }, false},
		{func() (*http.Request, string) { return form("?username=eve", "username=bob") }, true},
		{func() (*http.Request, string) { return form("?username=eve", "password=x") }, true},
		{func() (*http.Request, string) { return form("", "username=a%ZZ&username=bob") }, true},
		{func() (*http.Request, string) { return form("", "username=b%C3%B6b;x=1") }, true},
		{func() (*http.Request, string) { return form("", "") }, false},
		{func() (*http.Request, string) { return mp("", "username", "bob") }, false},
		{func() (*http.Request, string) { return mp("?username=bob", "username", "bob") }, false},
		{func() (*http.Request, string) { return mp("?username=eve", "username", "bob") }, true},
		{func() (*http.Request, string) { return mp("", "password", "x") }, false},
		{func() (*http.Request, string) {
			r := httptest.NewRequest(http.MethodPost, "/login?username=q", strings.NewReader("username=body"))
			r.Header.Set("Content-Type", "text/plain")
			return r, "username=body"
		}, true},
		{func() (*http.Request, string) {
			r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("username=body"))
			r.Header.Set("Content-Type", "text/plain")
			return r, "username=body"
		}, false},
	}
	for i, c := range cases {
		r, body := c.mk()
		var counted string
		countedCalled, called := false, false
		var seenForm, seenPost, seenBody string
		lim := newLimiter(t, axes.Policy{LockoutBy: []axes.Fields{axes.Username}, Limit: 1,
			NormalizeUsername: func(s string) string { counted, countedCalled = s, true; return s }}, newClock())
		h := newMiddleware(t, lim)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			called = true
			b, _ := io.ReadAll(r.Body)
			seenBody = string(b)
			seenForm, seenPost = r.FormValue("username"), r.PostFormValue("username")
		}))
		w := serve(h, r)
		if c.refused {
			if w.Code != http.StatusBadRequest || called || countedCalled {
				t.Errorf("case %d: got %d, handler called %v, counted %v; want a 400 refusal", i, w.Code, called, countedCalled)
			}
			continue
		}
		if !called || counted != seenForm || counted != seenPost {
			t.Errorf("case %d: counted %q, handler's FormValue %q, PostFormValue %q (called %v, status %d)", i, counted, seenForm, seenPost, called, w.Code)
		}
		if seenBody != body {
			t.Errorf("case %d: handler read %q, want %q", i, seenBody, body)
		}
	}
}

// A JSON body that names the field twice, in any case, is refused: a
// struct decode takes the last key that matches case-insensitively, a map
// reader the exact one.
func TestJSONFieldRefusesRepeatedKey(t *testing.T) {
	jsonReq := func(body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	lim := newLimiter(t, axes.Policy{LockoutBy: []axes.Fields{axes.Username}, Limit: 1}, newClock())
	called := false
	h := newMiddleware(t, lim, WithUsername(JSONField("username")))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
	}))
	for _, body := range []string{
		`{"username":"a","USERNAME":"victim"}`,
		`{"username":"bob","username":null}`,
		`{"Username":"bob","password":"x","username":"eve"}`,
	} {
		called = false
		if w := serve(h, jsonReq(body)); w.Code != http.StatusBadRequest || called {
			t.Errorf("%s: %d, handler called %v; want 400", body, w.Code, called)
		}
	}
	if w := serve(h, jsonReq(`{"nested":{"username":"x"},"username":"bob"}`)); w.Code == http.StatusBadRequest || !called {
		t.Errorf("a nested key is not a repeat: %d", w.Code)
	}
}

func TestUsernameSources(t *testing.T) {
	jsonReq := func(body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	basic := httptest.NewRequest(http.MethodPost, "/login", nil)
	basic.SetBasicAuth("carol", "pw")
	header := httptest.NewRequest(http.MethodPost, "/login", nil)
	header.Header.Set("X-User", "dave")
	tests := []struct {
		src  Username
		req  *http.Request
		want string
	}{
		{JSONField("username"), jsonReq(`{"username":"bob","password":"x"}`), "bob"},
		{JSONField("username"), jsonReq(`{"Username":"bob"}`), "bob"},
		{JSONField("username"), jsonReq(`{"nested":{"username":"x"},"username":"bob"}`), "bob"},
		{JSONField("username"), jsonReq(`{"username":"b\u00f6b"}`), "böb"},
		{JSONField("username"), jsonReq(`null`), ""},
		{JSONField("username"), jsonReq(" {\"username\": \"bob\"}\n"), "bob"},
		{JSONField("username"), jsonReq(`{"USERNAME":"a","password":12}`), "a"}, // the handler's problem
		{BasicAuth(), basic, "carol"},
		{BasicAuth(), jsonReq(`{}`), ""},
		{UsernameFunc(func(r *http.Request) string { return r.Header.Get("X-User") }), header, "dave"},
		{Username{}, jsonReq(`{"username":"bob"}`), ""},
	}
	for i, tt := range tests {
		var counted string
		called := false
		lim := newLimiter(t, axes.Policy{LockoutBy: []axes.Fields{axes.Username}, Limit: 1,
			NormalizeUsername: func(s string) string { counted, called = s, true; return s }}, newClock())
		var body []byte
		h := newMiddleware(t, lim, WithUsername(tt.src))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ = io.ReadAll(r.Body)
		}))
		orig := ""
		if tt.req.Body != nil {
			b, _ := io.ReadAll(tt.req.Body)
			orig = string(b)
			tt.req.Body = io.NopCloser(strings.NewReader(orig))
		}
		serve(h, tt.req)
		if !called || counted != tt.want {
			t.Errorf("case %d: counted %q (called %v), want %q", i, counted, called, tt.want)
		}
		if string(body) != orig {
			t.Errorf("case %d: handler read %q, want %q", i, body, orig)
		}
	}
}

func TestBodyBound(t *testing.T) {
	clk := newClock()
	lim := newLimiter(t, axes.Policy{}, clk)
	called := false
	h := newMiddleware(t, lim, MaxBodyBytes(100))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
	}))
	big := "username=bob&pad=" + strings.Repeat("x", 200)

	// Known length.
	w := serve(h, postForm("192.0.2.1:1", nil))
	if w.Code != 200 || !called {
		t.Fatalf("empty body: %d", w.Code)
	}
	called = false
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(big))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if w := serve(h, r); w.Code != 413 || called {
		t.Errorf("oversized body: %d, handler called %v", w.Code, called)
	}
	// Unknown length (chunked): read up to the bound, then refused.
	r = httptest.NewRequest(http.MethodPost, "/login", io.MultiReader(strings.NewReader(big)))
	r.ContentLength = -1
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if w := serve(h, r); w.Code != 413 || called {
		t.Errorf("oversized chunked body: %d, handler called %v", w.Code, called)
	}
	// Exactly at the bound passes.
	exact := "username=bob&pad=" + strings.Repeat("x", 100-len("username=bob&pad="))
	r = httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(exact))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if w := serve(h, r); w.Code != 200 || !called {
		t.Errorf("body at the bound: %d", w.Code)
	}
	if st := lim.Stats(); st.Failures != 0 || st.Successes != 2 {
		t.Errorf("oversized bodies were counted: %+v", st)
	}
}

// TestBodyBrokenOff: a body that fails mid-way is answered 400, uncounted,
// without reaching the handler: the handler's parser would fail on it and
// could fall back to another username.
func TestBodyBrokenOff(t *testing.T) {
	lim := newLimiter(t, axes.Policy{}, newClock())
	broken := errors.New("connection reset")
	for _, u := range []Username{FormField("username"), JSONField("username")} {
		called := false
		h := newMiddleware(t, lim, WithUsername(u))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			called = true
		}))
		r := httptest.NewRequest(http.MethodPost, "/login", io.MultiReader(strings.NewReader("username=bob"), errReader{broken}))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if w := serve(h, r); w.Code != http.StatusBadRequest || called || w.Header().Get("Connection") != "close" {
			t.Errorf("%v: got %d %v, handler called %v", u.kind, w.Code, w.Header(), called)
		}
	}
	if st := lim.Stats(); st.Failures+st.Successes != 0 {
		t.Errorf("broken bodies were counted: %+v", st)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestWantsJSON(t *testing.T) {
	tests := []struct {
		accept, ctype string
		want          bool
	}{
		{"", "", false},
		{"", "application/json", true},
		{"", "application/problem+json; charset=utf-8", true},
		{"application/json", "", true},
		{"text/html", "application/json", false},
		{"*/*", "application/json", true}, // curl's and fetch()'s default is no preference
		{"*/*", "", false},
		{"*/*", "application/x-www-form-urlencoded", false},
		{"*/*;q=0.8, text/plain", "application/json", true},
		{"*/*, text/html;q=0.1", "application/json", false},
		{"text/html;q=0.5, application/json", "", true},
		{"text/html, application/json;q=0.9", "", false},
		{"application/json;q=0", "", false},
		{"application/json;q=bogus", "", false},
		{"APPLICATION/JSON", "", true},
		{"application/vnd.api+json", "", true},
		{strings.Repeat("text/plain, ", 5000) + "application/json", "", false}, // bounded scan
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		if tt.accept != "" {
			r.Header.Set("Accept", tt.accept)
		}
		if tt.ctype != "" {
			r.Header.Set("Content-Type", tt.ctype)
		}
		if got := wantsJSON(r); got != tt.want {
			t.Errorf("Accept %.40q Content-Type %q: %v, want %v", tt.accept, tt.ctype, got, tt.want)
		}
	}
}

func TestHumanSeconds(t *testing.T) {
	for s, want := range map[int64]string{1: "1 second", 59: "59 seconds", 60: "1 minute", 61: "2 minutes", 900: "15 minutes", 3600: "1 hour", 3601: "2 hours"} {
		if got := humanSeconds(s); got != want {
			t.Errorf("humanSeconds(%d) = %q, want %q", s, got, want)
		}
	}
}

func TestHumanWait(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{time.Millisecond, "1 second"},
		{time.Second, "1 second"},
		{1500 * time.Millisecond, "2 seconds"},
		{59*time.Second + time.Millisecond, "1 minute"},
		{time.Minute, "1 minute"},
		{time.Minute + 999*time.Millisecond, "1 minute"},
		{time.Minute + time.Second, "2 minutes"},
		{5 * time.Minute, "5 minutes"},
		{5*time.Minute + 700*time.Millisecond, "5 minutes"},
		{5*time.Minute + time.Second, "6 minutes"},
		{time.Hour + 300*time.Millisecond, "1 hour"},
		{90 * time.Minute, "2 hours"},
	} {
		if got := humanWait(tt.d); got != tt.want {
			t.Errorf("humanWait(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// TestLockoutMessageFiveMinutes: a 5-minute lock says "5 minutes", whether
// the request comes on a whole second of the clock or between two (then the
// lock, which ends on a whole second of the limiter's clock, has up to a
// second more to run: Retry-After counts it, rounded up; the words do not
// add a minute for it).
func TestLockoutMessageFiveMinutes(t *testing.T) {
	for _, tt := range []struct {
		offset time.Duration // of the clock from a whole second, after the limiter starts
		retry  string
	}{
		{0, "300"},
		{300 * time.Millisecond, "301"}, // 300.7 s left
		{999 * time.Millisecond, "301"}, // 300.001 s left
	} {
		clk := newClock()
		lim := newLimiter(t, axes.Policy{Limit: 1, Cooloff: axes.Fixed(5 * time.Minute)}, clk)
		clk.Advance(tt.offset)
		h := newMiddleware(t, lim)(login)
		serve(h, postForm("192.0.2.1:1", creds("bob", "x")))
		for _, accept := range []string{"text/html", "application/json"} {
			w := serve(h, postForm("192.0.2.1:1", creds("bob", "right"), "Accept", accept))
			if w.Code != 429 || w.Header().Get("Retry-After") != tt.retry || !strings.Contains(w.Body.String(), "Try again in 5 minutes.") {
				t.Errorf("offset %v, %s: got %d Retry-After %q, body %q; want Retry-After %s and 5 minutes",
					tt.offset, accept, w.Code, w.Header().Get("Retry-After"), w.Body, tt.retry)
			}
		}
	}
}

func TestRecorderFlushAndUnwrap(t *testing.T) {
	lim := newLimiter(t, axes.Policy{}, newClock())
	h := newMiddleware(t, lim)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush through the middleware: %v", err)
		}
		w.(http.Flusher).Flush()
	}))
	w := serve(h, postForm("192.0.2.1:1", creds("bob", "x")))
	if !w.Flushed || w.Code != 200 {
		t.Errorf("flushed %v code %d", w.Flushed, w.Code)
	}
	if st := lim.Stats(); st.Successes != 1 {
		t.Errorf("stats %+v", st)
	}
}

// BenchmarkMiddleware compares a form login through the middleware with
// the bare handler; the difference is the middleware's cost (body buffering,
// username parsing, Begin and settle).
func BenchmarkMiddleware(b *testing.B) {
	lim, err := axes.New(axes.Policy{Limit: 1 << 15})
	if err != nil {
		b.Fatal(err)
	}
	defer lim.Close()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sinkString = r.PostFormValue("username")
		Succeeded(r)
	})
	body := "username=bob&password=secret"
	for _, c := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", handler},
		{"axeshttp", Must(New(lim))(handler)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			w := httptest.NewRecorder()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.RemoteAddr = "192.0.2.1:1234"
				c.h.ServeHTTP(w, r)
			}
		})
	}
}

var sinkString string

func TestLockoutJSONOption(t *testing.T) {
	lim := axes.Must(axes.New(axes.Policy{Limit: 1}))
	defer lim.Close()
	h := Must(New(lim, LockoutJSON()))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	for i := range 2 {
		r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader("username=bob"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Accept", "text/html")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if i == 1 && (w.Code != http.StatusTooManyRequests || w.Header().Get("Content-Type") != "application/json") {
			t.Errorf("lockout: %d %q", w.Code, w.Header().Get("Content-Type"))
		}
	}
}
