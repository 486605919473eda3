package demo

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axeshttp"
)

// Challenge before lock: a run of its own, against a second login server
// whose policy is the demo's with ChallengeAt. Bots guess one username;
// once it has ChallengeAt failures every further guess needs a CAPTCHA the
// bots cannot solve, so the username is never locked and its real user,
// who solves the CAPTCHA, signs in.

// ChallengeAt is the ChallengeAt of the challenge run's policy.
const ChallengeAt = 3

// The shape of the challenge run.
const (
	challengeBots   = 30 // bots, one address each
	challengePerBot = 4  // guesses each bot sends
	challengeHeader = "X-Captcha-Token"
)

// ChallengePolicy returns the policy of the challenge run: the demo's
// Policy with ChallengeAt.
func ChallengePolicy() axes.Policy {
	p := Policy()
	p.ChallengeAt = ChallengeAt
	return p
}

// ChallengeResult is what the challenge run's clients saw.
type ChallengeResult struct {
	ChallengeAt int // the policy's ChallengeAt
	Limit       int // the policy's limit
	Target      string
	BotGuesses  int    // login requests the bots sent
	BotAsked    int    // of them, refused for want of a challenge (401 challenge_required)
	BotChecked  int    // of them, reached the password check
	BotLocked   int    // of them, refused by a lock (429)
	Lockouts    uint64 // locks the server's limiter started
	BotLogins   int    // of them, signed in
	UserAsked   bool
	UserLogins  int // the real user's logins after solving the challenge
	UserWanted  int
	Errors      int // transport errors and unexpected answers
}

// captcha stands for a CAPTCHA provider: a client that solves a puzzle
// gets a token, which proves one passed challenge, once.
type captcha struct {
	mu     sync.Mutex
	tokens map[string]bool // protected by mu
}

// solve returns the token of a solved puzzle.
func (c *captcha) solve() string {
	t := rand.Text()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens[t] = true
	return t
}

// passed is the middleware's ChallengePassed: the request's token, once.
func (c *captcha) passed(r *http.Request) bool {
	t := r.Header.Get(challengeHeader)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tokens[t] {
		return false
	}
	delete(c.tokens, t)
	return true
}

// challengeOutcome is how the challenge server answered one request.
type challengeOutcome uint8

const (
	chError challengeOutcome = iota
	chWrong
	chLogin
	chAsked
	chLocked
)

// RunChallenge runs the challenge run on a login server of its own (memory
// store, clock now, listening on a free loopback port) and returns what its
// clients saw.
func RunChallenge(ctx context.Context, now func() time.Time, progress io.Writer) (ChallengeResult, error) {
	if progress == nil {
		progress = io.Discard
	}
	p := ChallengePolicy()
	res := ChallengeResult{ChallengeAt: p.ChallengeAt, Limit: p.Limit, Target: "erin"}
	lim, err := axes.New(p, axes.WithClock(now))
	if err != nil {
		return res, err
	}
	defer lim.Close()
	resolver, err := axeshttp.NewResolver(axeshttp.Proxies{Header: "X-Forwarded-For", Trusted: axes.MustParseIPSet("127.0.0.1", "::1")})
	if err != nil {
		return res, err
	}
	cp := &captcha{tokens: map[string]bool{}}
	protect, err := axeshttp.New(lim, axeshttp.WithResolver(resolver), axeshttp.ChallengePassed(cp.passed))
	if err != nil {
		return res, err
	}
	pw := newPasswords(DemoAccounts)
	mux := http.NewServeMux()
	mux.Handle("POST /login", protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxLoginBody)
		if pw.check(r.PostFormValue("username"), r.PostFormValue("password")) {
			axeshttp.Succeeded(r)
			w.WriteHeader(http.StatusOK)
			return
		}
		axeshttp.Failed(r)
		w.WriteHeader(http.StatusUnauthorized)
	})))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	loginAt := "http://" + ln.Addr().String() + "/login"

	send := func(ip netip.Addr, user, password, token string) challengeOutcome {
		form := url.Values{"username": {user}, "password": {password}}.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, loginAt, strings.NewReader(form))
		if err != nil {
			return chError
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", ip.String())
		req.Header.Set("User-Agent", browserUA)
		if token != "" {
			req.Header.Set(challengeHeader, token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return chError
		}
		defer resp.Body.Close()
		var body struct {
			Error string `json:"error"`
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return chLogin
		case http.StatusTooManyRequests:
			return chLocked
		case http.StatusUnauthorized:
			if resp.Header.Get("Content-Type") == "application/json" &&
				json.NewDecoder(io.LimitReader(resp.Body, 1<<10)).Decode(&body) == nil && body.Error == "challenge_required" {
				return chAsked
			}
			return chWrong
		}
		return chError
	}

	for b := range challengeBots {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + b)})
		for g := range challengePerBot {
			res.BotGuesses++
			switch send(ip, res.Target, fmt.Sprintf("guess-%d-%d", b, g), "") {
			case chAsked:
				res.BotAsked++
			case chWrong:
				res.BotChecked++
			case chLogin:
				res.BotChecked++
				res.BotLogins++
			case chLocked:
				res.BotLocked++
			default:
				res.Errors++
			}
		}
	}
	fmt.Fprintf(progress, "%-20s %d bots sent %d guesses for %s: %d reached the password check, %d were asked for a CAPTCHA they could not solve\n",
		"challenge", challengeBots, res.BotGuesses, res.Target, res.BotChecked, res.BotAsked)

	// The real user, from her usual address: asked for the CAPTCHA, she
	// solves it and signs in.
	user := netip.MustParseAddr("198.51.100.50")
	res.UserWanted++
	switch send(user, res.Target, "blue-monday-1983", "") {
	case chAsked:
		res.UserAsked = true
		if send(user, res.Target, "blue-monday-1983", cp.solve()) == chLogin {
			res.UserLogins++
		}
	case chLogin:
		res.UserLogins++
	}
	fmt.Fprintf(progress, "%-20s %s asked for a CAPTCHA: %v, signed in after solving it: %v\n", "challenge", res.Target, res.UserAsked, res.UserLogins == 1)
	res.Lockouts = lim.Stats().Lockouts
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.Errors > 0 {
		return res, errors.New("axesdemo: the challenge run had transport errors")
	}
	return res, nil
}

// writeChallenge writes the report's line for the challenge run, if it ran.
func (r *Report) writeChallenge(b *strings.Builder) {
	c := r.Challenge
	if c == nil {
		return
	}
	fmt.Fprintf(b, "Challenge before lock (ChallengeAt %d, limit %d): %d of %d bot guesses stopped by a CAPTCHA they could not solve, %d locks; the real user solved it and signed in: %d of %d\n",
		c.ChallengeAt, c.Limit, c.BotAsked, c.BotGuesses, c.Lockouts, c.UserLogins, c.UserWanted)
}
