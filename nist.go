package axes

import "time"

// WindowForever as Policy.Window keeps failures until a success (under
// ResetOnSuccess) or a reset: time alone never forgets them. It is a
// century; redisstore keeps a key at most Options.MaxTTL after its last
// write (365 days by default), so raise MaxTTL to match.
const WindowForever = 100 * 365 * 24 * time.Hour

// NIST80063B returns the throttling rule of NIST SP 800-63B (rev. 3
// §5.2.2, rev. 4 §3.2.2): no more than 100 consecutive failed attempts on
// one account. Failures count by username alone, are never forgotten by
// time (WindowForever), are cleared for that account, and that account
// only, by a successful login (ResetOnSuccess), and the 100th consecutive
// failure locks the account until it is reset (Forever): by an
// administrator (Limiter.ResetUsername, the admin page, axesctl) or the
// application's account recovery.
//
// The guideline asks for this cap together with measures that keep the
// attacker far from it while sparing the subscriber: increasing waits and
// per-IP limits. Those belong in a second Limiter on the same attempt, by
// IP, with its own Backoff (see the example), so that a guesser is slowed
// by address long before an account reaches 100.
func NIST80063B() Policy {
	return Policy{
		Limit:          100,
		LockoutBy:      []Fields{Username},
		Window:         WindowForever,
		Cooloff:        Forever,
		ResetOnSuccess: true,
	}
}
