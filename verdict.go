package axes

import (
	"time"
)

// What a decision answers: a Verdict, and the Reason of a refusal.

// Reason says why a verdict refuses an attempt.
type Reason uint8

// The reasons of Verdict.Reason.
const (
	ReasonNone        Reason = iota // not refused
	ReasonLockout                   // a dimension reached its limit and is locked
	ReasonDenied                    // the client IP is in Policy.Deny
	ReasonNotAllowed                // Policy.OnlyAllow is set and the client IP is not in it
	ReasonBusy                      // Begin: every remaining attempt of a dimension is in flight
	ReasonUnavailable               // the store failed; the limiter refuses rather than guess
	ReasonChallenge                 // Policy.ChallengeAt is reached and the attempt carries no passed challenge
	ReasonSpray                     // the client IP is locked by Policy.Spray: too many usernames failed from it
)

var reasonNames = [...]string{"none", "lockout", "denied", "not_allowed", "busy", "unavailable", "challenge", "spray"}

// String returns the reason's name, such as "lockout".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// BusyRetryAfter is the RetryAfter of a ReasonBusy verdict: the attempts in
// flight settle within a password check.
const BusyRetryAfter = time.Second

// Verdict is the outcome of an attempt: a value, not an error.
type Verdict struct {
	// Locked reports whether the attempt is refused (see Reason).
	Locked bool
	// Failures is the highest remembered failure count among the attempt's
	// dimensions.
	Failures int
	// Limit is the limit that applied to the attempt.
	Limit int
	// RetryAfter is the time remaining until the attempt could be admitted:
	// 0 when not locked, Indefinite for a lock with no end, BusyRetryAfter
	// for ReasonBusy, 0 for ReasonChallenge (a client that passes a
	// challenge may try at once). Never negative.
	RetryAfter time.Duration
	// By is the dimension that locked (the one locked longest), or when
	// not locked the most-counted one; 0 when nothing is counted.
	By Fields
	// Reason says why the attempt is refused; ReasonNone if it is not.
	Reason Reason
	// WouldLock reports, under Policy.ObserveOnly, that dimension By has
	// reached the limit and would be locked.
	WouldLock bool
	// Challenge reports that, under Policy.ChallengeAt, the client must
	// pass a challenge to be admitted: the attempt itself was refused for
	// want of one (Reason ReasonChallenge, Locked), or, for an admitted or
	// counted attempt or a Check, its next attempt will need one (Failures
	// has reached ChallengeAt). A login page shows its challenge when
	// Challenge is set. Never set with ReasonLockout: a lock comes first.
	Challenge bool
}

func listVerdict(r Reason, limit int) Verdict {
	return Verdict{Locked: true, Limit: limit, Reason: r, RetryAfter: Indefinite, By: IP}
}

func until(now time.Time, remaining time.Duration) time.Time {
	if remaining == Indefinite || remaining <= 0 {
		return time.Time{}
	}
	return now.Add(remaining)
}
