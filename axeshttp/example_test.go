package axeshttp_test

import (
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
)

// fixedClock makes the examples' output independent of the time they run.
func fixedClock() time.Time { return time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC) }

// post sends a login form to h from remote and prints the answer.
func post(h http.Handler, remote, user, password string, header ...string) {
	form := url.Values{"username": {user}, "password": {password}}
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = remote
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	fmt.Print(w.Code)
	if ra := w.Header().Get("Retry-After"); ra != "" {
		fmt.Print(" Retry-After: ", ra)
	}
	fmt.Println(" " + strings.TrimSpace(w.Body.String()))
}

// The middleware in front of a login handler: three failures lock the
// client's IP for 15 minutes, and a locked client never reaches the
// password check, even with the right password.
func ExampleNew() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 3, Cooloff: axes.Fixed(15 * time.Minute)},
		axes.WithClock(fixedClock)))
	defer lim.Close()

	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass := r.PostFormValue("username"), r.PostFormValue("password")
		if user == "alice" && subtle.ConstantTimeCompare([]byte(pass), []byte("s3cret")) == 1 {
			axeshttp.Succeeded(r)
			io.WriteString(w, "welcome")
			return
		}
		axeshttp.Failed(r)
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
	})

	mux := http.NewServeMux()
	mux.Handle("/login", axeshttp.Must(axeshttp.New(lim))(login))

	post(mux, "203.0.113.7:50001", "alice", "s3cret")
	for _, guess := range []string{"123456", "password", "qwerty"} {
		post(mux, "203.0.113.7:50002", "alice", guess)
	}
	post(mux, "203.0.113.7:50003", "alice", "s3cret", "Accept", "application/json")
	post(mux, "198.51.100.9:50004", "alice", "s3cret") // another client
	// Output:
	// 200 welcome
	// 401 wrong username or password
	// 401 wrong username or password
	// 401 wrong username or password
	// 429 Retry-After: 900 {"error":"locked_out","message":"Too many failed login attempts. Try again in 15 minutes.","retry_after":900}
	// 200 welcome
}

// Failed returns the verdict, so the handler can tell the client that this
// very failure locked it out.
func ExampleFailed() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 2, LockoutBy: []axes.Fields{axes.IP | axes.Username}},
		axes.WithClock(fixedClock)))
	defer lim.Close()

	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := axeshttp.Failed(r) // every password is wrong in this example
		if v.Locked {
			http.Error(w, fmt.Sprintf("locked for %v", v.RetryAfter), http.StatusTooManyRequests)
			return
		}
		http.Error(w, fmt.Sprintf("wrong password, %d attempt(s) left", v.Limit-v.Failures), http.StatusUnauthorized)
	})
	h := axeshttp.Must(axeshttp.New(lim))(login)
	post(h, "192.0.2.1:1", "bob", "a")
	post(h, "192.0.2.1:1", "bob", "b")
	post(h, "192.0.2.1:1", "carol", "c") // counted apart: IP and username together
	// Output:
	// 401 wrong password, 1 attempt(s) left
	// 429 locked for 15m0s
	// 401 wrong password, 1 attempt(s) left
}

// Behind a reverse proxy every request comes from the proxy's address. Name
// the proxies, and the client IP is read from the header they append; a
// header forged by a client, or sent by anybody but the proxies, is ignored.
func ExampleNewResolver() {
	proxies := axes.MustParseIPSet("10.0.0.0/8", "fd00::/8") // your proxies
	res := axeshttp.MustResolver(axeshttp.Proxies{Header: "X-Forwarded-For", Trusted: proxies})

	show := func(remote, xff string) {
		r := httptest.NewRequest(http.MethodPost, "/login", nil)
		r.RemoteAddr = remote
		r.Header.Set("X-Forwarded-For", xff)
		fmt.Println(res.ClientIP(r))
	}
	show("10.0.0.5:4711", "203.0.113.7")                       // the proxy saw 203.0.113.7
	show("10.0.0.5:4711", "1.2.3.4, 203.0.113.7")              // the client forged 1.2.3.4
	show("10.0.0.5:4711", "203.0.113.7, 10.0.0.9")             // two proxies
	show("198.51.100.9:4711", "1.2.3.4")                       // not from a proxy
	show("10.0.0.5:4711", "203.0.113.7, not-an-address")       // broken by a proxy: the peer
	show("10.0.0.5:4711", "[2001:db8::7]:443, [fd00::1]:8080") // ports and brackets
	// Output:
	// 203.0.113.7
	// 203.0.113.7
	// 203.0.113.7
	// 198.51.100.9
	// 10.0.0.5
	// 2001:db8::7
}

// A JSON login API, behind one load balancer that appends to
// X-Forwarded-For, counting by IP and by username.
func ExampleJSONField() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 1, LockoutBy: []axes.Fields{axes.IP, axes.Username}},
		axes.WithClock(fixedClock)))
	defer lim.Close()
	mw := axeshttp.Must(axeshttp.New(lim,
		axeshttp.WithUsername(axeshttp.JSONField("username")),
		axeshttp.WithResolver(axeshttp.MustResolver(axeshttp.Proxies{Header: "X-Forwarded-For", Hops: 1})),
	))
	api := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized) // no report: the status decides
	}))

	r := httptest.NewRequest(http.MethodPost, "/api/login", strings.NewReader(`{"username":"bob","password":"x"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	api.ServeHTTP(httptest.NewRecorder(), r)

	for _, l := range lim.Lockouts() {
		fmt.Println(l.By, l.IP, l.Username)
	}
	// Output:
	// ip 203.0.113.7/32 bob
	// username 203.0.113.7/32 bob
}

// A challenge before the lock: from the second failure on, the middleware
// answers 401 {"error":"challenge_required"} until the client sends a
// solved CAPTCHA (here the form field captcha=solved, which a real
// application verifies with its CAPTCHA provider). Passing the challenge
// forgets nothing: the fourth failure locks.
func ExampleChallengePassed() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 4, ChallengeAt: 2}, axes.WithClock(fixedClock)))
	defer lim.Close()

	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("password") == "s3cret" {
			axeshttp.Succeeded(r)
			io.WriteString(w, "welcome")
			return
		}
		v := axeshttp.Failed(r)
		if v.Challenge {
			w.Header().Set("X-Show-Captcha", "1") // the login page shows the CAPTCHA from now on
		}
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
	})
	solved := func(r *http.Request) bool { return r.PostFormValue("captcha") == "solved" }
	h := axeshttp.Must(axeshttp.New(lim, axeshttp.ChallengePassed(solved), axeshttp.LockoutJSON()))(login)

	try := func(password, captcha string) {
		form := url.Values{"username": {"alice"}, "password": {password}, "captcha": {captcha}}
		r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "203.0.113.7:50000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Get("X-Show-Captcha"), strings.TrimSpace(w.Body.String()))
	}
	try("123456", "")
	try("password", "") // the second failure: show the CAPTCHA
	try("s3cret", "")   // no CAPTCHA: not even the right password gets through
	try("qwerty", "solved")
	try("letmein", "solved") // the fourth failure locks
	try("s3cret", "solved")
	// Output:
	// 401  wrong username or password
	// 401 1 wrong username or password
	// 401  {"error":"challenge_required"}
	// 401 1 wrong username or password
	// 401  wrong username or password
	// 429  {"error":"locked_out","message":"Too many failed login attempts. Try again in 15 minutes.","retry_after":900}
}
