package axes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"
)

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of Event.
const (
	EventFailure EventKind = iota + 1 // a failure was counted in dimension By
	EventLockout                      // dimension By became locked (once per lock)
	EventRefused                      // an attempt was refused without reaching the password check
	EventSuccess                      // a successful login was recorded
	EventReset                        // state was forgotten by Reset, ResetIP, ResetUsername or ResetAll
)

var eventNames = [...]string{"", "failure", "lockout", "refused", "success", "reset"}

// String returns the kind's name, such as "lockout".
func (k EventKind) String() string {
	if int(k) < len(eventNames) && k != 0 {
		return eventNames[k]
	}
	return "unknown"
}

// Event is one thing a Limiter did, passed to Policy.OnEvent after the
// store's locks are released.
type Event struct {
	Kind     EventKind
	Time     time.Time // the limiter's clock
	Key      Key       // the attempt's key as given (zero for ResetAll; only the reset field for ResetIP and ResetUsername)
	By       Fields    // the dimension concerned; for EventRefused the one that refused
	Reason   Reason    // for EventRefused: why; ReasonSpray for an EventLockout of Policy.Spray
	Failures int       // the dimension's remembered failures after the event
	Limit    int       // the limit that applied
	Until    time.Time // EventLockout and EventRefused: when the lock ends; zero for no end
	Count    int       // EventReset: how many entries were forgotten
}

// LogOption configures LogEvents.
type LogOption func(*logConfig)

type logConfig struct {
	level    slog.Level
	raw      bool
	failures bool
}

// LogRawIdentity makes LogEvents print usernames, IPs and user agents as
// they are instead of masked.
func LogRawIdentity() LogOption { return func(c *logConfig) { c.raw = true } }

// LogFailures makes LogEvents log every counted failure too; by default it
// logs lockouts, refusals, resets and nothing else.
func LogFailures() LogOption { return func(c *logConfig) { c.failures = true } }

// LogLevel sets the level of lockout and refusal records (default Warn;
// other kinds log at Info).
func LogLevel(l slog.Level) LogOption { return func(c *logConfig) { c.level = l } }

// LogEvents returns a Policy.OnEvent func that writes structured records to
// logger. By default usernames, IPs and user agents are masked (as
// django-axes does since 6.1): an IP keeps its first half (192.0.*.* or the
// first four IPv6 groups), a username and user agent become "sha256:" and the
// first 12 hex digits of their SHA-256, enough to correlate records without
// printing who. LogRawIdentity turns masking off.
func LogEvents(logger *slog.Logger, opts ...LogOption) func(Event) {
	c := logConfig{level: slog.LevelWarn}
	for _, o := range opts {
		o(&c)
	}
	return func(e Event) {
		level := slog.LevelInfo
		switch e.Kind {
		case EventFailure:
			if !c.failures {
				return
			}
		case EventLockout, EventRefused:
			level = c.level
		}
		ctx := context.Background()
		if !logger.Enabled(ctx, level) {
			return
		}
		attrs := make([]slog.Attr, 0, 10)
		attrs = append(attrs, slog.String("event", e.Kind.String()))
		if e.By != 0 {
			attrs = append(attrs, slog.String("by", e.By.String()))
		}
		if e.Key.IP.IsValid() {
			attrs = append(attrs, slog.String("ip", c.ip(e)))
		}
		if e.Key.Username != "" {
			attrs = append(attrs, slog.String("username", c.text(e.Key.Username)))
		}
		if e.Key.UserAgent != "" {
			attrs = append(attrs, slog.String("user_agent", c.text(e.Key.UserAgent)))
		}
		switch e.Kind {
		case EventFailure, EventLockout, EventRefused:
			attrs = append(attrs, slog.Int("failures", e.Failures), slog.Int("limit", e.Limit))
		case EventReset:
			attrs = append(attrs, slog.Int("count", e.Count))
		}
		if e.Kind == EventRefused {
			attrs = append(attrs, slog.String("reason", e.Reason.String()))
		}
		if e.Kind == EventLockout || e.Kind == EventRefused {
			if e.Until.IsZero() {
				attrs = append(attrs, slog.String("until", "indefinite"))
			} else {
				attrs = append(attrs, slog.Time("until", e.Until))
			}
		}
		logger.LogAttrs(ctx, level, "axes "+e.Kind.String(), attrs...)
	}
}

func (c *logConfig) text(s string) string {
	if c.raw {
		return truncate(s)
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

func (c *logConfig) ip(e Event) string {
	a := e.Key.IP.Unmap()
	if c.raw {
		return a.String()
	}
	if a.Is4() {
		b := a.As4()
		return itoa(b[0]) + "." + itoa(b[1]) + ".*.*"
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

func itoa(b byte) string {
	const digits = "0123456789"
	switch {
	case b >= 100:
		return string([]byte{digits[b/100], digits[b/10%10], digits[b%10]})
	case b >= 10:
		return string([]byte{digits[b/10], digits[b%10]})
	}
	return string([]byte{digits[b]})
}
