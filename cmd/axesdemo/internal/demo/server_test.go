package demo

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/store"
)

// testServer starts a demo server on a free loopback port with the given
// clock and store, and stops it when the test ends.
func testServer(t *testing.T, clock *Clock, store store.Store, secret string) *Server {
	t.Helper()
	cfg := Config{Addr: "127.0.0.1:0", Now: clock.Now, Store: store, MaxLedger: 1000}
	if secret != "" {
		cfg.Secret = []byte(secret)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return srv
}

type response struct {
	status int
	header http.Header
	body   string
}

var noRedirects = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

// do sends a request and returns the whole response.
func do(t *testing.T, method, u string, body io.Reader, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

// login posts a login form as the client at ip.
func login(t *testing.T, srv *Server, ip, user, password string) response {
	t.Helper()
	form := url.Values{"username": {user}, "password": {password}}.Encode()
	return do(t, http.MethodPost, srv.URL()+"/login", strings.NewReader(form), map[string]string{
		"Content-Type":    "application/x-www-form-urlencoded",
		"X-Forwarded-For": ip,
	})
}

func TestPasswords(t *testing.T) {
	p := newPasswords(DemoAccounts)
	tests := []struct {
		user, password string
		want           bool
	}{
		{"alice", "correct-horse-battery", true},
		{" ALICE ", "correct-horse-battery", true},
		{"alice", "correct-horse-batter", false},
		{"alice", "", false},
		{"bob", "correct-horse-battery", false},
		{"mallory", "correct-horse-battery", false},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := p.check(tt.user, tt.password); got != tt.want {
			t.Errorf("check(%q, %q) = %v, want %v", tt.user, tt.password, got, tt.want)
		}
	}
}

func TestLoginPage(t *testing.T) {
	srv := testServer(t, NewClock(SimStart), nil, "")
	r := do(t, http.MethodGet, srv.URL()+"/", nil, nil)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
		t.Errorf("GET / = %d Location %q, want 303 to /login", r.status, r.header.Get("Location"))
	}
	r = do(t, http.MethodGet, srv.URL()+"/login", nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /login = %d", r.status)
	}
	for _, a := range DemoAccounts {
		if !strings.Contains(r.body, a.Username) || !strings.Contains(r.body, html.EscapeString(a.Password)) {
			t.Errorf("login page does not show account %s", a.Username)
		}
	}
	if srv.Counts().Checks != 0 {
		t.Errorf("showing the page counted a password check")
	}
}

// valueAttr is the form's echo of the username, the one place where two
// failure pages may differ.
var valueAttr = regexp.MustCompile(`value="[^"]*"`)

func TestUnknownUserLooksLikeWrongPassword(t *testing.T) {
	srv := testServer(t, NewClock(SimStart), nil, "")
	known := login(t, srv, "192.0.2.1", "bob", "wrong")
	unknown := login(t, srv, "192.0.2.2", "nobody", "wrong")
	if known.status != http.StatusUnauthorized || unknown.status != known.status {
		t.Errorf("status known %d, unknown %d; want both 401", known.status, unknown.status)
	}
	if valueAttr.ReplaceAllString(known.body, "") != valueAttr.ReplaceAllString(unknown.body, "") {
		t.Errorf("pages differ between a known and an unknown user")
	}
}

func TestLockoutAndRecovery(t *testing.T) {
	clock := NewClock(SimStart)
	srv := testServer(t, clock, nil, "")
	const ip = "203.0.113.5"
	limit := Policy().Limit
	for i := 1; i <= limit; i++ {
		r := login(t, srv, ip, "carol", "guess")
		if r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: status %d, want 401", i, r.status)
		}
		if locked := strings.Contains(r.body, "Too many failed attempts"); locked != (i == limit) {
			t.Errorf("failure %d: page says locked = %v", i, locked)
		}
	}
	// Locked now, even with the right password, and by IP for other users.
	for _, user := range []string{"carol", "alice"} {
		r := login(t, srv, ip, user, "tr0ub4dor&3")
		if r.status != http.StatusTooManyRequests {
			t.Fatalf("%s while locked: status %d, want 429", user, r.status)
		}
		if got := r.header.Get("Retry-After"); got != "300" {
			t.Errorf("Retry-After %q, want 300", got)
		}
		if !strings.Contains(r.header.Get("RateLimit"), "r=0") {
			t.Errorf("RateLimit %q, want r=0", r.header.Get("RateLimit"))
		}
	}
	// And by username from anywhere.
	if r := login(t, srv, "198.51.100.1", "carol", "tr0ub4dor&3"); r.status != http.StatusTooManyRequests {
		t.Errorf("carol from another IP while her username is locked: status %d, want 429", r.status)
	}

	// The admin lists the locks, to those who hold its token only, even
	// from loopback.
	bearer := map[string]string{"Authorization": "Bearer " + srv.AdminToken()}
	r := do(t, http.MethodGet, srv.URL()+"/admin/api/lockouts", nil, bearer)
	if r.status != http.StatusOK {
		t.Fatalf("admin API: status %d: %s", r.status, r.body)
	}
	var list struct{ Count int }
	if err := json.Unmarshal([]byte(r.body), &list); err != nil {
		t.Fatal(err)
	}
	if list.Count != 2 {
		t.Errorf("admin lists %d lockouts, want 2 (ip and username): %s", list.Count, r.body)
	}
	for _, h := range []map[string]string{nil, {"Authorization": "Bearer " + srv.AdminToken() + "x"}} {
		for _, path := range []string{"/admin/", "/admin/api/lockouts"} {
			if r := do(t, http.MethodGet, srv.URL()+path, nil, h); r.status != http.StatusUnauthorized || strings.Contains(r.body, ip) {
				t.Errorf("admin %s with %v: status %d, want 401: %s", path, h, r.status, r.body)
			}
		}
		post := map[string]string{"Content-Type": "application/json"}
		for k, v := range h {
			post[k] = v
		}
		if r := do(t, http.MethodPost, srv.URL()+"/admin/api/reset", strings.NewReader(`{"all":true}`), post); r.status != http.StatusUnauthorized || len(srv.Limiter().Lockouts()) != 2 {
			t.Errorf("admin reset with %v: status %d, want 401", h, r.status)
		}
	}
	basic := (&http.Request{Header: http.Header{}})
	basic.SetBasicAuth("admin", srv.AdminToken())
	if r := do(t, http.MethodGet, srv.URL()+"/admin/", nil, map[string]string{"Authorization": basic.Header.Get("Authorization")}); r.status != http.StatusOK || !strings.Contains(r.body, ip) {
		t.Errorf("admin page with the token: status %d, want 200", r.status)
	}

	// Five simulated minutes later the lock has ended.
	clock.Advance(5 * time.Minute)
	if r := login(t, srv, ip, "carol", "tr0ub4dor&3"); r.status != http.StatusOK || !strings.Contains(r.body, "Welcome, carol") {
		t.Errorf("after the lock: status %d, want 200 and a welcome", r.status)
	}
	c := srv.Counts()
	if c.Checks != uint64(limit)+1 || c.Logins != 1 || c.LockoutsBy[axes.IP] != 1 || c.LockoutsBy[axes.Username] != 1 {
		t.Errorf("counts %+v", c)
	}
	if check := CheckLedger(srv.Ledger(), srv.Policy()); len(check.Violations) > 0 {
		t.Errorf("violations: %q", check.Violations)
	}
}

func TestOversizedBodyIsRefused(t *testing.T) {
	srv := testServer(t, NewClock(SimStart), nil, "")
	body := "username=alice&password=" + strings.Repeat("x", 1<<20)
	r := do(t, http.MethodPost, srv.URL()+"/login", strings.NewReader(body), map[string]string{
		"Content-Type": "application/x-www-form-urlencoded",
	})
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MiB login form: status %d, want 413", r.status)
	}
	if c := srv.Counts(); c.Checks != 0 || c.Failures != 0 {
		t.Errorf("an oversized body was checked or counted: %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := NewServer(Config{Secret: []byte("short")}); err == nil {
		t.Error("a 5-byte secret was accepted")
	}
	if _, err := NewServer(Config{MaxLedger: -1}); err == nil {
		t.Error("a negative MaxLedger was accepted")
	}
	if _, err := NewServer(Config{AdminToken: "short"}); err == nil {
		t.Error("a 5-byte admin token was accepted")
	}
}

func TestRandomAdminToken(t *testing.T) {
	a := testServer(t, NewClock(SimStart), nil, "")
	b := testServer(t, NewClock(SimStart), nil, "")
	if len(a.AdminToken()) < 16 || a.AdminToken() == b.AdminToken() {
		t.Errorf("admin tokens %q and %q", a.AdminToken(), b.AdminToken())
	}
}
