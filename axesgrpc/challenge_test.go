package axesgrpc

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// captcha stands for a challenge provider: it hands out tokens, and a
// token proves one passed challenge, once.
type captcha struct {
	mu     sync.Mutex
	tokens map[string]bool // protected by mu
	asked  int             // calls of passed, protected by mu
	reqs   []any           // the req each call of passed saw, protected by mu
}

func (c *captcha) solve(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tokens == nil {
		c.tokens = map[string]bool{}
	}
	c.tokens[token] = true
}

// passed is the ChallengePassed function: the token in the x-captcha
// metadata, accepted once.
func (c *captcha) passed(ctx context.Context, req any) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked++
	c.reqs = append(c.reqs, req)
	v := metadata.ValueFromIncomingContext(ctx, "x-captcha")
	if len(v) == 0 || !c.tokens[v[0]] {
		return false
	}
	delete(c.tokens, v[0])
	return true
}

func wantChallenge(t *testing.T, step string, err error, code codes.Code) {
	t.Helper()
	wantCode(t, step, err, code)
	if !IsChallenge(err) {
		t.Fatalf("%s: %v is not the challenge status", step, err)
	}
	if _, ok := retryDelay(err); ok {
		t.Fatalf("%s: the challenge status has a RetryInfo", step)
	}
}

// Challenge before lock over gRPC: from ChallengeAt failures on, a call
// without a passed challenge is refused with the challenge status before
// the handler; a call with one reaches the password check; the challenge
// does not forget failures, so the limit still locks; and the real user who
// passes the challenge gets in.
func TestChallenge(t *testing.T) {
	for _, kind := range []string{"unary", "stream", "stream metadata username"} {
		t.Run(kind, func(t *testing.T) {
			ch := &captcha{}
			opts := []Option{ChallengePassed(ch.passed)}
			if kind == "stream metadata username" {
				opts = append(opts, WithMetadataUsername(userMetadata))
			} else {
				opts = append(opts, WithUsername(byUser))
			}
			f := newFixture(t, axes.Policy{Limit: 4, ChallengeAt: 2, LockoutBy: []axes.Fields{axes.Username}, Cooloff: axes.Fixed(time.Hour)}, opts...)
			conn := f.dial("")
			call := func(user, pass, token string) error {
				ctx := metadata.AppendToOutgoingContext(t.Context(), "x-user", user)
				if token != "" {
					ctx = metadata.AppendToOutgoingContext(ctx, "x-captcha", token)
				}
				if kind == "unary" {
					return login(ctx, conn, loginMethod, user, pass)
				}
				return loginStream(ctx, conn, user, pass)
			}
			wantCode(t, "failure 1", call("bob", "guess", ""), codes.Unauthenticated)
			wantCode(t, "failure 2", call("bob", "guess", ""), codes.Unauthenticated)
			if ch.asked != 0 {
				t.Fatalf("the challenge was verified %d times below ChallengeAt", ch.asked)
			}
			checks := f.svc.checks.Load()
			wantChallenge(t, "no proof", call("bob", "s3cret", ""), DefaultChallengeCode)
			wantChallenge(t, "unknown token", call("bob", "guess", "forged"), DefaultChallengeCode)
			if got := f.svc.checks.Load(); got != checks {
				t.Fatalf("%d password checks without a passed challenge", got-checks)
			}
			ch.solve("t1")
			wantCode(t, "failure 3 with proof", call("bob", "guess", "t1"), codes.Unauthenticated)
			if !IsChallenge(call("bob", "guess", "t1")) {
				t.Fatal("a token admitted a second attempt")
			}
			ch.solve("t2")
			wantCode(t, "failure 4 with proof", call("bob", "guess", "t2"), codes.Unauthenticated)
			ch.solve("t3")
			err := call("bob", "guess", "t3")
			wantCode(t, "locked despite the proof", err, codes.ResourceExhausted)
			if IsChallenge(err) {
				t.Fatal("a lock answered as a challenge")
			}
			if st := f.lim.Stats(); st.Failures != 4 {
				t.Fatalf("%d failures counted, want 4", st.Failures)
			}

			// The real user: two typos, then the challenge, then in.
			wantCode(t, "alice typo 1", call("alice", "typo", ""), codes.Unauthenticated)
			wantCode(t, "alice typo 2", call("alice", "typo", ""), codes.Unauthenticated)
			wantChallenge(t, "alice asked", call("alice", "s3cret", ""), DefaultChallengeCode)
			ch.solve("a1")
			wantCode(t, "alice with proof", call("alice", "s3cret", "a1"), codes.OK)

			ch.mu.Lock()
			defer ch.mu.Unlock()
			for i, req := range ch.reqs {
				_, isReq := req.(*loginRequest)
				if want := kind != "stream metadata username"; isReq != want {
					t.Fatalf("call %d of ChallengePassed got req %T, want a message: %v", i, req, want)
				}
			}
		})
	}
}

// ChallengeCode sets the code of the challenge status; its detail stays.
func TestChallengeCode(t *testing.T) {
	f := newFixture(t, axes.Policy{Limit: 3, ChallengeAt: 1, LockoutBy: []axes.Fields{axes.Username}},
		WithUsername(byUser), ChallengeCode(codes.FailedPrecondition))
	conn := f.dial("")
	wantCode(t, "failure", login(t.Context(), conn, loginMethod, "bob", "guess"), codes.Unauthenticated)
	wantChallenge(t, "challenge", login(t.Context(), conn, loginMethod, "bob", "guess"), codes.FailedPrecondition)
	if IsChallenge(status.Error(codes.Unauthenticated, "wrong username or password")) || IsChallenge(nil) {
		t.Fatal("IsChallenge of a plain status")
	}
}

// LockoutError of a verdict refused for want of a challenge is the
// challenge status, not a lockout with a zero RetryInfo.
func TestLockoutErrorChallenge(t *testing.T) {
	err := LockoutError(axes.Verdict{Locked: true, Reason: axes.ReasonChallenge, Challenge: true})
	wantChallenge(t, "challenge", err, DefaultChallengeCode)
	if strings.Contains(status.Convert(err).Message(), "too many") {
		t.Fatalf("message %q", status.Convert(err).Message())
	}
}

// A trusted device (WithDevice) signs in while bots hold its username
// locked; a forged device token is refused like the bots.
func TestDevice(t *testing.T) {
	devices := map[string]string{"dev-token-alice": "alice"} // token -> the username it was issued to
	device := func(ctx context.Context, username string) string {
		v := metadata.ValueFromIncomingContext(ctx, "x-device")
		if len(v) == 0 || devices[v[0]] != username {
			return ""
		}
		return "device-" + v[0]
	}
	f := newFixture(t, axes.Policy{Limit: 3, LockoutBy: []axes.Fields{axes.Username}, Cooloff: axes.Fixed(time.Hour)},
		WithUsername(byUser), WithDevice(device))
	bots, user := f.dial("127.0.0.2"), f.dial("127.0.0.3")
	for range 3 {
		wantCode(t, "bot", login(t.Context(), bots, loginMethod, "alice", "guess"), codes.Unauthenticated)
	}
	wantCode(t, "bots locked alice", login(t.Context(), bots, loginMethod, "alice", "s3cret"), codes.ResourceExhausted)
	wantCode(t, "new client", login(t.Context(), user, loginMethod, "alice", "s3cret"), codes.ResourceExhausted)
	forged := metadata.AppendToOutgoingContext(t.Context(), "x-device", "forged")
	wantCode(t, "forged device", login(forged, bots, loginMethod, "alice", "s3cret"), codes.ResourceExhausted)
	other := metadata.AppendToOutgoingContext(t.Context(), "x-device", "dev-token-alice")
	wantCode(t, "alice's token for bob", login(other, bots, loginMethod, "bob", "guess"), codes.Unauthenticated)
	trusted := metadata.AppendToOutgoingContext(t.Context(), "x-device", "dev-token-alice")
	wantCode(t, "trusted device", login(trusted, user, loginMethod, "alice", "s3cret"), codes.OK)
}

func TestChallengeOptionErrors(t *testing.T) {
	lim := axes.Must(axes.New(axes.Policy{}))
	defer lim.Close()
	for name, c := range map[string]struct {
		opt  Option
		want string
	}{
		"nil challenge": {ChallengePassed(nil), "ChallengePassed(nil)"},
		"OK challenge":  {ChallengeCode(codes.OK), "not an error code"},
		"bad code":      {ChallengeCode(codes.Code(99)), "not an error code"},
		"nil device":    {WithDevice(nil), "WithDevice(nil)"},
	} {
		if _, err := New(lim, c.opt); err == nil || !strings.HasPrefix(err.Error(), "axes: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", name, err, c.want)
		}
	}
}
