package axes_test

import (
	"fmt"
	"net/netip"

	"github.com/axes-go/axes"
)

// A challenge before the lock: from the second failure on, an attempt is
// admitted only with a solved CAPTCHA, and the fifth failure locks. Solving
// the CAPTCHA forgets nothing: the failures after it still lock at Limit.
func ExampleLimiter_BeginPassed() {
	c := newClock()
	lim := axes.Must(axes.New(axes.Policy{Limit: 5, ChallengeAt: 2}, axes.WithClock(c.Now)))
	defer lim.Close()
	k := axes.Key{IP: netip.MustParseAddr("203.0.113.9"), Username: "alice"}

	// try is one login whose password is wrong; solved says whether the
	// client sent a CAPTCHA the application verified.
	try := func(solved bool) {
		a := lim.Begin(k)
		if a.Verdict().Reason == axes.ReasonChallenge && solved {
			a = lim.BeginPassed(k) // the proof admits this attempt
		}
		if !a.Allowed() {
			v := a.Verdict()
			fmt.Printf("refused: %v (challenge %v)\n", v.Reason, v.Challenge)
			return
		}
		v := a.Fail()
		fmt.Printf("failures=%d show CAPTCHA=%v locked=%v\n", v.Failures, v.Challenge, v.Locked)
	}
	try(false)
	try(false)
	try(false) // the third attempt needs a CAPTCHA
	try(true)  // a solved CAPTCHA does not reset the count: it goes on from 2
	try(true)
	try(true) // the fifth failure locks, CAPTCHA or not
	try(true)
	// Output:
	// failures=1 show CAPTCHA=false locked=false
	// failures=2 show CAPTCHA=true locked=false
	// refused: challenge (challenge true)
	// failures=3 show CAPTCHA=true locked=false
	// failures=4 show CAPTCHA=true locked=false
	// failures=5 show CAPTCHA=false locked=true
	// refused: lockout (challenge false)
}
