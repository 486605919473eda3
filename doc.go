// Package axes stops brute-force, password-spraying and credential-stuffing
// attacks on logins from inside the process that checks the password. It
// counts failed attempts per client IP, username and user agent, alone or
// combined, locks a client out when it reaches a limit, lets it cool off on
// a fixed, escalating or tiered schedule, and honours allow and deny lists.
//
// # Limiter
//
// A [Limiter] is created from a [Policy] by [New]. The zero Policy is valid:
// three failures of one IP lock it for 15 minutes, as django-axes does.
// A [Key] names the client of one attempt: its IP, username and user agent.
// Policy.LockoutBy says which of them are counted, alone or together; an
// attempt is locked when any of its dimensions is.
//
// # Begin, or Locked and Fail
//
// Most callers want [Limiter.Begin]: it reserves the attempt before the
// password is checked and returns an [Attempt] to settle with Fail or
// Succeed, so that however many requests race, at most Policy.Limit reach
// the password check in each lock cycle. The plain pattern
//
//	if lim.Locked(k) { refuse }
//	if !passwordOK { lim.Fail(k) } else { lim.Success(k) }
//
// is simpler but lets a burst of parallel requests past the limit. Either
// way a refused attempt gets a [Verdict], whose RetryAfter is the time that
// remains of the lock. Outcomes are values; errors are only for broken
// configuration.
//
// # Policy
//
// A Policy sets the limit (or a func of the key), the dimensions, the
// [Cooloff] ([Fixed], [Forever], [Backoff], [Tiers] or a [CooloffFunc]), the
// Window after which failures are forgotten, whether a refused attempt
// extends the lock, whether a success forgets failures, observe-only mode,
// and CIDR lists of IPs that are never locked, alone allowed, or always
// refused. [Policy.OnEvent] receives failures, locks, refusals, successes
// and resets, for logging ([LogEvents]) or an audit trail.
//
// # Stores
//
// By default a Limiter keeps its state in memory: lock-striped shards of
// fixed-size entries, bounded by [WithMaxEntries], expiring without a
// background goroutine, allocation-free on the hot paths. Under storage
// pressure counts blur but are never forgotten: a key may be over-counted,
// never under-counted. [WithStore] puts the state elsewhere, such as on
// Redis with the module github.com/axes-go/axes/redisstore, so that many
// servers share one lockout state.
//
// # Snapshots
//
// [Limiter.Snapshot] writes the memory store's state in a versioned,
// checksummed format, and [Limiter.Restore] reads it back, so that locks
// survive a restart or a deploy.
//
// # HTTP
//
// The package github.com/axes-go/axes/axeshttp wraps a login handler in a
// middleware that finds the client IP safely behind proxies, reads the
// username the handler will read, refuses locked clients and settles each
// attempt from the handler's outcome. It also serves an admin API and page.
package axes
