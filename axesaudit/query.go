package axesaudit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/axes-go/axes"
)

// DefaultLimit is the number of rows a search returns when Filter.Limit is
// 0, and MaxLimit the most it may ask for.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Filter selects the rows of a search. Zero fields select everything; the
// fields set must all match.
type Filter struct {
	// IP, Username and UserAgent match rows of that client, by the HMAC of
	// the raw value (the username normalised, values cut to
	// axes.MaxIdentityBytes, as when written).
	IP        netip.Addr
	Username  string
	UserAgent string

	// Kinds, if not empty, keeps the events of these kinds (Query only).
	Kinds []Kind

	// Since and Until bound the time: an event's time, an attempt's last
	// seen time; Since inclusive, Until exclusive.
	Since, Until time.Time

	// Limit is the most rows returned: DefaultLimit when 0, at most
	// MaxLimit.
	Limit int

	// Before continues a search after its last row: set it to the Cursor
	// of the last row returned to get the next page.
	Before Cursor
}

// Cursor is a position in a search's order, newest first. The zero Cursor
// is the start.
type Cursor struct {
	Time time.Time
	ID   int64
}

// Record is one row of the event log.
type Record struct {
	ID   int64
	Time time.Time // the limiter's time of the event
	Kind Kind
	// By is the dimension concerned (Failure, Lockout, Refused).
	By axes.Fields
	// Reason is why the attempt was refused (Refused).
	Reason axes.Reason
	// IP, Username and UserAgent are as stored: masked (192.0.*.*, "a***",
	// "curl/***"), or raw under Config.RawIdentity; "" when absent.
	IP, Username, UserAgent string
	// Failures and Limit are the dimension's remembered failures after the
	// event and the limit that applied (Failure, Lockout, Refused).
	Failures, Limit int
	// Until is when the lock ends (Lockout, Refused), Forever for no end.
	Until time.Time
	// Count is how many entries a Reset forgot.
	Count int64
}

// Cursor returns the position after r, for Filter.Before.
func (r Record) Cursor() Cursor { return Cursor{r.Time, r.ID} }

// Attempt is one row of the attempts table: what is recorded of one client
// (IP, username, user agent) since it was first seen, as django-axes'
// AccessAttempt.
type Attempt struct {
	ID int64
	// IP, Username and UserAgent are stored as in Record.
	IP, Username, UserAgent string
	// Failures counts failed logins (one per login, whatever the number of
	// dimensions counted), Refused the attempts refused before the password
	// check, Successes the successful logins. Resets do not clear them.
	Failures, Refused, Successes int64
	FirstSeen, LastSeen          time.Time
	// LockedUntil is the end of the latest lock recorded, Forever for no
	// end, zero when none was or a reset lifted it. A past time is a lock
	// that has ended.
	LockedUntil time.Time
}

// Cursor returns the position after a, for Filter.Before.
func (a Attempt) Cursor() Cursor { return Cursor{a.LastSeen, a.ID} }

// Query returns the events that f selects, newest first.
func (t *Trail) Query(ctx context.Context, f Filter) ([]Record, error) {
	where, args, limit, err := t.where(f, "at", true)
	if err != nil {
		return nil, err
	}
	q := `SELECT id, at, kind, by_fields, reason, ip, username, user_agent, failures, failure_limit, until, reset_count
		FROM axes_audit_events` + where + ` ORDER BY at DESC, id DESC LIMIT ?`
	rows, err := t.db.QueryContext(ctx, t.d.rebind(q), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("axes: audit query: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		var kind, by, reason string
		var ip, user, ua sql.NullString
		if err := rows.Scan(&r.ID, scanTime{&r.Time}, &kind, &by, &reason, &ip, &user, &ua,
			&r.Failures, &r.Limit, scanTime{&r.Until}, &r.Count); err != nil {
			return nil, fmt.Errorf("axes: audit query: %w", err)
		}
		r.Kind, r.By, r.Reason = parseKind(kind), parseFields(by), parseReason(reason)
		r.IP, r.Username, r.UserAgent = ip.String, user.String, ua.String
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("axes: audit query: %w", err)
	}
	return out, nil
}

// Attempts returns the attempts that f selects, most recently seen first.
// f.Kinds must be empty.
func (t *Trail) Attempts(ctx context.Context, f Filter) ([]Attempt, error) {
	if len(f.Kinds) > 0 {
		return nil, errors.New("axes: audit Attempts does not filter by Kinds")
	}
	where, args, limit, err := t.where(f, "last_seen", false)
	if err != nil {
		return nil, err
	}
	q := `SELECT id, ip, username, user_agent, failures, refused, successes, first_seen, last_seen, locked_until
		FROM axes_audit_attempts` + where + ` ORDER BY last_seen DESC, id DESC LIMIT ?`
	rows, err := t.db.QueryContext(ctx, t.d.rebind(q), append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("axes: audit attempts: %w", err)
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		var a Attempt
		var ip, user, ua sql.NullString
		if err := rows.Scan(&a.ID, &ip, &user, &ua, &a.Failures, &a.Refused, &a.Successes,
			scanTime{&a.FirstSeen}, scanTime{&a.LastSeen}, scanTime{&a.LockedUntil}); err != nil {
			return nil, fmt.Errorf("axes: audit attempts: %w", err)
		}
		a.IP, a.Username, a.UserAgent = ip.String, user.String, ua.String
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("axes: audit attempts: %w", err)
	}
	return out, nil
}

// where builds the WHERE clause of f over the time column tcol.
func (t *Trail) where(f Filter, tcol string, kinds bool) (string, []any, int, error) {
	limit := f.Limit
	switch {
	case limit < 0 || limit > MaxLimit:
		return "", nil, 0, fmt.Errorf("axes: audit Filter.Limit must be in 0..%d, got %d", MaxLimit, limit)
	case limit == 0:
		limit = DefaultLimit
	}
	h := t.id.hasher()
	var conds []string
	var args []any
	add := func(cond string, a ...any) {
		conds = append(conds, cond)
		args = append(args, a...)
	}
	if f.IP.IsValid() {
		add("ip_h = ?", h.ip(f.IP))
	}
	if f.Username != "" {
		add("username_h = ?", h.username(t.id.canonicalUsername(f.Username)))
	}
	if f.UserAgent != "" {
		add("user_agent_h = ?", h.userAgent(cut(f.UserAgent)))
	}
	if kinds && len(f.Kinds) > 0 {
		marks := make([]string, len(f.Kinds))
		for i, k := range f.Kinds {
			if k.String() == "unknown" {
				return "", nil, 0, fmt.Errorf("axes: audit Filter.Kinds holds an unknown kind %d", k)
			}
			marks[i] = "?"
			args = append(args, k.String())
		}
		conds = append(conds, "kind IN ("+strings.Join(marks, ", ")+")")
	}
	if !f.Since.IsZero() {
		add(tcol+" >= ?", t.d.timeArg(f.Since))
	}
	if !f.Until.IsZero() {
		add(tcol+" < ?", t.d.timeArg(f.Until))
	}
	if f.Before != (Cursor{}) {
		at := t.d.timeArg(f.Before.Time)
		add("("+tcol+" < ? OR ("+tcol+" = ? AND id < ?))", at, at, f.Before.ID)
	}
	if len(conds) == 0 {
		return "", args, limit, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, limit, nil
}

func parseFields(s string) axes.Fields {
	var f axes.Fields
	for _, p := range strings.Split(s, "+") {
		switch p {
		case "ip":
			f |= axes.IP
		case "username":
			f |= axes.Username
		case "user_agent":
			f |= axes.UserAgent
		}
	}
	return f
}

func parseReason(s string) axes.Reason {
	for r := axes.ReasonNone; r.String() != "unknown"; r++ {
		if r.String() == s {
			return r
		}
	}
	return axes.ReasonNone
}
