package axeshttp

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/axes-go/axes"
)

// Challenge before lock (axes.Policy.ChallengeAt): how the middleware
// recognises a passed challenge, and how it answers an attempt that needs
// one.

// DefaultChallengeStatus is the status of the challenge response unless
// ChallengeStatus sets another: 401 Unauthorized.
const DefaultChallengeStatus = http.StatusUnauthorized

// challengeJSON is the body of the challenge response: machine-readable,
// the same for every client.
type challengeJSON struct {
	Error string `json:"error"`
}

// ChallengePassed names how a passed challenge is recognised: f reports
// whether request r proves that its client passed the application's
// challenge (a CAPTCHA or proof-of-work token it verifies, a code sent by
// e-mail). Under axes.Policy.ChallengeAt the middleware calls f only for
// an attempt the limiter refuses for want of a challenge (Reason
// axes.ReasonChallenge), and then reserves the attempt again with
// axes.Limiter.BeginPassed if f returns true: a proof is verified only
// when one is needed, once per attempt. f should accept a proof once (so
// that one solved challenge buys one attempt) and be safe for concurrent
// use. Without this option no proof is ever recognised: from ChallengeAt
// failures on, attempts get the challenge response until the failures are
// forgotten.
//
// The handler learns that the next attempt will need a challenge (to show
// it on the login page) from Verdict.Challenge, as returned by Failed.
func ChallengePassed(f func(r *http.Request) bool) Option {
	return func(c *config) {
		if f == nil {
			c.errs = append(c.errs, errors.New("axes: ChallengePassed(nil)"))
		}
		c.challengePassed = f
	}
}

// ChallengeStatus sets the status of the challenge response (default
// DefaultChallengeStatus). The response carries Cache-Control: no-store
// and the JSON body {"error":"challenge_required"}, whatever the request
// accepts, for the login page's script to show the challenge; the attempt
// does not reach the handler and is not counted.
func ChallengeStatus(code int) Option {
	return func(c *config) {
		if code < 400 || code > 599 {
			c.errs = append(c.errs, fmt.Errorf("axes: ChallengeStatus(%d) is not an error status", code))
		}
		c.challengeStatus = code
	}
}

// begin reserves the attempt of key, again with the proof of r when the
// limiter asks for a challenge and r carries a passed one.
func (m *middleware) begin(r *http.Request, key axes.Key) axes.Attempt {
	a := m.lim.BeginContext(r.Context(), key)
	if a.Verdict().Reason == axes.ReasonChallenge && m.c.challengePassed != nil && m.c.challengePassed(r) {
		a = m.lim.BeginPassedContext(r.Context(), key)
	}
	return a
}

// challenge writes the challenge response.
func (c *config) challenge(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(c.challengeStatus)
	writeJSON(w, challengeJSON{Error: "challenge_required"})
}
