package axes

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestChallengeAtValidation(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		want string // "" for valid
	}{
		{Policy{Limit: 5, ChallengeAt: 4}, ""},
		{Policy{ChallengeAt: 2}, ""}, // default Limit 3
		{Policy{Limit: 5, ChallengeAt: 5}, "ChallengeAt (5) must be below Limit (5)"},
		{Policy{ChallengeAt: 3}, "ChallengeAt (3) must be below Limit (3)"},
		{Policy{Limit: 5, ChallengeAt: -1}, "ChallengeAt must not be negative"},
		{Policy{LimitFunc: func(Key) int { return 2 }, ChallengeAt: 10}, ""},
		{Policy{LimitFunc: func(Key) int { return 2 }, ChallengeAt: MaxFailures}, "below MaxFailures"},
	} {
		_, err := New(tc.p)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ChallengeAt %d Limit %d: %v", tc.p.ChallengeAt, tc.p.Limit, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "axes: ")):
			t.Errorf("ChallengeAt %d Limit %d: error %v, want %q", tc.p.ChallengeAt, tc.p.Limit, err, tc.want)
		}
	}
}

// From ChallengeAt failures an attempt without a passed challenge is
// refused and counts nothing; with one it is admitted, its failures count,
// and the limit still locks; the lock comes before the challenge.
func TestChallengeFlow(t *testing.T) {
	l, c := newTest(t, Policy{Limit: 4, ChallengeAt: 2, LockoutBy: []Fields{IP, Username}})
	k := Key{IP: ipN(1), Username: "alice"}
	for i := range 2 {
		a := l.Begin(k)
		if !a.Allowed() {
			t.Fatalf("attempt %d refused: %+v", i, a.Verdict())
		}
		if v := a.Fail(); v.Challenge != (i == 1) {
			t.Fatalf("failure %d: Challenge %v", i+1, v.Challenge)
		}
	}
	if v := l.Check(k); !v.Challenge || v.Locked {
		t.Fatalf("Check at ChallengeAt: %+v", v)
	}
	for range 3 {
		a := l.Begin(k)
		if v := a.Verdict(); a.Allowed() || v.Reason != ReasonChallenge || !v.Challenge || !v.Locked || v.RetryAfter != 0 || v.Failures != 2 {
			t.Fatalf("Begin without a challenge: %+v", v)
		}
		if v := l.Fail(k); v.Reason != ReasonChallenge || v.Failures != 2 {
			t.Fatalf("Fail without a challenge: %+v", v)
		}
	}
	if st := l.Stats(); st.Failures != 2 || st.Refused != 0 {
		t.Fatalf("challenge refusals counted: %+v", st)
	}
	// Another username from the same IP: the IP dimension asks for it.
	if v := l.Fail(Key{IP: ipN(1), Username: "bob"}); v.Reason != ReasonChallenge {
		t.Fatalf("other username, same IP: %+v", v)
	}
	a := l.BeginPassed(k)
	if !a.Allowed() {
		t.Fatalf("BeginPassed refused: %+v", a.Verdict())
	}
	if v := a.Fail(); v.Locked || v.Failures != 3 || !v.Challenge {
		t.Fatalf("challenged failure: %+v", v)
	}
	if v := l.FailPassed(k); !v.Locked || v.Reason != ReasonLockout || v.Challenge || v.Failures != 4 {
		t.Fatalf("challenged failure at the limit: %+v", v)
	}
	if a := l.Begin(k); a.Verdict().Reason != ReasonLockout || a.Verdict().Challenge {
		v := a.Verdict()
		t.Fatalf("locked: %+v", v)
	}
	// After the lock and the window, nothing is asked.
	c.Set(15 * time.Minute)
	if a := l.Begin(k); !a.Allowed() || a.Verdict().Challenge {
		t.Fatalf("after the window: %+v", a.Verdict())
	}
}

// A succeeded attempt forgets nothing unless ResetOnSuccess: the challenge
// is still asked for.
func TestChallengeSurvivesSuccess(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 5, ChallengeAt: 1})
	k := Key{IP: ipN(2)}
	l.Fail(k)
	a := l.BeginPassed(k)
	a.Succeed()
	if a := l.Begin(k); a.Verdict().Reason != ReasonChallenge {
		t.Fatalf("after a success: %+v", a.Verdict())
	}
	l2, _ := newTest(t, Policy{Limit: 5, ChallengeAt: 1, ResetOnSuccess: true})
	l2.Fail(k)
	a = l2.BeginPassed(k)
	a.Succeed()
	if a := l2.Begin(k); !a.Allowed() {
		t.Fatalf("after a success under ResetOnSuccess: %+v", a.Verdict())
	}
}

// Under LimitFunc an attempt asks for a challenge from min(ChallengeAt,
// its limit-1) failures, and not at all when its limit is 1.
func TestChallengeAtUnderLimitFunc(t *testing.T) {
	l, _ := newTest(t, Policy{ChallengeAt: 3, LimitFunc: func(k Key) int {
		return map[string]int{"one": 1, "two": 2, "ten": 10}[k.Username]
	}, LockoutBy: []Fields{Username}})
	for _, tc := range []struct {
		user string
		at   int // failures from which a challenge is asked; 0 for never
	}{{"one", 0}, {"two", 1}, {"ten", 3}} {
		k := Key{Username: tc.user}
		for i := range 12 {
			a := l.Begin(k)
			v := a.Verdict()
			want := tc.at > 0 && i >= tc.at
			if got := v.Reason == ReasonChallenge; got != want {
				t.Fatalf("%s after %d failures: %+v, want challenge %v", tc.user, i, v, want)
			}
			if v.Locked && v.Reason != ReasonChallenge {
				break
			}
			a.Cancel()
			if v := l.FailPassed(k); v.Locked {
				break
			}
		}
	}
}

// Racing Begins without a challenge: reservations in flight count toward
// ChallengeAt, so exactly ChallengeAt of them are admitted.
func TestChallengeUnderRace(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 10, ChallengeAt: 3, LockoutBy: []Fields{IP, Username}})
	k := Key{IP: ipN(3), Username: "victim"}
	for round := range 20 {
		var admitted, challenged atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				a := l.Begin(k)
				if a.Allowed() {
					admitted.Add(1)
					a.Fail()
				} else if a.Verdict().Reason == ReasonChallenge {
					challenged.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if admitted.Load() != 3 || challenged.Load() != 197 {
			t.Fatalf("round %d: %d admitted, %d challenged; want 3 and 197", round, admitted.Load(), challenged.Load())
		}
		l.Reset(k)
	}
}

// ObserveOnly asks for no challenge.
func TestChallengeObserveOnly(t *testing.T) {
	l, _ := newTest(t, Policy{Limit: 3, ChallengeAt: 1, ObserveOnly: true})
	k := Key{IP: ipN(4)}
	for range 5 {
		if v := l.Fail(k); v.Locked || v.Challenge {
			t.Fatalf("observe-only: %+v", v)
		}
	}
}
