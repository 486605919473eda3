package axeshttp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/axes-go/axes"
)

// challengeSetup is a login handler behind the middleware under a policy
// that asks for a challenge from 2 failures and locks at 4. The handler
// counts its calls; a request passes the challenge with captcha=ok, and
// the proofs looked at are counted.
func challengeSetup(t *testing.T, opts ...Option) (h http.Handler, calls, proofs *atomic.Int64) {
	t.Helper()
	lim := newLimiter(t, axes.Policy{Limit: 4, ChallengeAt: 2}, newClock())
	calls, proofs = new(atomic.Int64), new(atomic.Int64)
	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.PostFormValue("password") == "right" {
			Succeeded(r)
			return
		}
		Failed(r)
		http.Error(w, "wrong", http.StatusUnauthorized)
	})
	opts = append([]Option{ChallengePassed(func(r *http.Request) bool {
		proofs.Add(1)
		return r.PostFormValue("captcha") == "ok"
	})}, opts...)
	return newMiddleware(t, lim, opts...)(login), calls, proofs
}

func postLogin(h http.Handler, password, captcha string) *httptest.ResponseRecorder {
	form := url.Values{"username": {"alice"}, "password": {password}}
	if captcha != "" {
		form.Set("captcha", captcha)
	}
	r := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "203.0.113.5:4000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestChallengeMiddleware(t *testing.T) {
	h, calls, proofs := challengeSetup(t)
	isChallenge := func(w *httptest.ResponseRecorder) bool {
		var body struct{ Error string }
		return w.Code == http.StatusUnauthorized && json.Unmarshal(w.Body.Bytes(), &body) == nil &&
			body.Error == "challenge_required" && w.Header().Get("Content-Type") == "application/json" &&
			w.Header().Get("Cache-Control") == "no-store"
	}
	for i := range 2 {
		if w := postLogin(h, "wrong", "ok"); w.Code != http.StatusUnauthorized || isChallenge(w) {
			t.Fatalf("failure %d: %d %q", i+1, w.Code, w.Body)
		}
	}
	if proofs.Load() != 0 {
		t.Fatalf("a proof was looked at %d times before one was needed", proofs.Load())
	}
	// From ChallengeAt: without a passed challenge, answered by the
	// middleware, never reaching the handler, even with the right password.
	for _, captcha := range []string{"", "bad"} {
		for _, pw := range []string{"wrong", "right"} {
			if w := postLogin(h, pw, captcha); !isChallenge(w) {
				t.Fatalf("captcha %q password %q: %d %q %v", captcha, pw, w.Code, w.Body, w.Header())
			}
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("the handler ran %d times, want 2", calls.Load())
	}
	// With a passed challenge: the handler runs and the failures count.
	for i := range 2 {
		if w := postLogin(h, "wrong", "ok"); w.Code != http.StatusUnauthorized || isChallenge(w) {
			t.Fatalf("challenged failure %d: %d %q", i+1, w.Code, w.Body)
		}
	}
	// The fourth failure locked: the lock comes first, proof or not.
	if w := postLogin(h, "right", "ok"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("locked: %d %q", w.Code, w.Body)
	}
	if calls.Load() != 4 {
		t.Fatalf("the handler ran %d times, want 4", calls.Load())
	}
}

func TestChallengeStatus(t *testing.T) {
	h, _, _ := challengeSetup(t, ChallengeStatus(http.StatusPreconditionRequired))
	postLogin(h, "wrong", "")
	postLogin(h, "wrong", "")
	if w := postLogin(h, "wrong", ""); w.Code != http.StatusPreconditionRequired || !strings.Contains(w.Body.String(), `"challenge_required"`) {
		t.Fatalf("challenge: %d %q", w.Code, w.Body)
	}
	lim := newLimiter(t, axes.Policy{}, newClock())
	for _, o := range []Option{ChallengeStatus(200), ChallengeStatus(600), ChallengePassed(nil)} {
		if _, err := New(lim, o); err == nil || !strings.HasPrefix(err.Error(), "axes: ") {
			t.Errorf("invalid option accepted: %v", err)
		}
	}
}
