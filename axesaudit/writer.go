package axesaudit

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/axes-go/axes"
)

// run is the writer goroutine: it takes what is queued, up to a batch, and
// writes it in one transaction. It does not wait to fill a batch: events
// queue up while a write is under way, so batches grow with the load.
func (t *Trail) run() {
	defer close(t.done)
	w := &writer{t: t, h: t.id.hasher(), aggs: make(map[string]*attemptAgg)}
	batch := make([]entry, 0, t.cfg.BatchSize)
	for {
		select {
		case e := <-t.q:
			batch = t.fill(append(batch[:0], e))
			t.write(w, batch)
		case <-t.stop:
			t.drain(w, batch)
			return
		}
	}
}

// fill adds to batch what is queued, up to a batch, without waiting.
func (t *Trail) fill(batch []entry) []entry {
	for len(batch) < cap(batch) {
		select {
		case e := <-t.q:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// drain writes what is left in the queue after Close, until the queue is
// empty or the Close deadline cancels t.ctx; what is left then is dropped.
// No event enters the queue any more.
func (t *Trail) drain(w *writer, batch []entry) {
	for t.ctx.Err() == nil {
		batch = t.fill(batch[:0])
		if len(batch) == 0 {
			break
		}
		t.write(w, batch)
	}
	var n uint64
	for len(t.q) > 0 {
		<-t.q
		n++
	}
	t.lost.Add(n)
	t.signal()
}

// write writes one batch and counts the outcome.
func (t *Trail) write(w *writer, batch []entry) {
	err := w.write(t.ctx, batch)
	n := uint64(len(batch))
	if err != nil {
		t.errs.Add(1)
		t.lost.Add(n)
		if t.cfg.OnError != nil {
			t.cfg.OnError(fmt.Errorf("axes: audit: writing %d events: %w", n, err))
		}
	} else {
		t.written.Add(n)
	}
	t.signal()
}

// signal wakes the Flush calls waiting for progress.
func (t *Trail) signal() {
	t.mu.Lock()
	close(t.progress)
	t.progress = make(chan struct{})
	t.mu.Unlock()
}

// writer holds the writer goroutine's state between batches.
type writer struct {
	t    *Trail
	h    *hasher
	args []any
	aggs map[string]*attemptAgg // by client digest
	// group is the failed login that the last failure event belonged to:
	// the limiter emits one failure event per dimension of a login, one
	// after the other with the same time and key, and the attempts table
	// counts logins. An event of the same time and key and a dimension not
	// yet in the group belongs to the same login.
	group struct {
		at   time.Time
		key  axes.Key
		dims uint8 // bit 1<<Fields of each dimension seen
	}
}

// attemptAgg is what one batch adds to one row of the attempts table.
type attemptAgg struct {
	client, ipH, userH, uaH []byte
	ip, user, ua            string
	failures, refused, succ int64
	first, last             time.Time
	lockedUntil             time.Time // zero: no lock seen
}

// row is an event as stored.
type row struct {
	e               *entry
	ipH, userH, uaH []byte
	ip, user, ua    string
}

func (w *writer) write(ctx context.Context, batch []entry) error {
	t := w.t
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	rows := make([]row, len(batch))
	for i := range batch {
		e := &batch[i]
		name := t.id.canonicalUsername(e.key.Username)
		rows[i] = row{
			e:     e,
			ipH:   w.h.ip(e.key.IP),
			userH: w.h.username(name),
			uaH:   w.h.userAgent(e.key.UserAgent),
			ip:    t.id.displayIP(e.key.IP),
			user:  t.id.displayUsername(e.key.Username, name),
			ua:    t.id.displayUserAgent(e.key.UserAgent),
		}
	}
	if err := w.insertEvents(ctx, tx, rows); err != nil {
		return err
	}
	if err := w.attempts(ctx, tx, rows); err != nil {
		return err
	}
	if err := w.capUsernames(ctx, tx, rows); err != nil {
		return err
	}
	return tx.Commit()
}

// insertEvents inserts one row per event, several rows per statement.
func (w *writer) insertEvents(ctx context.Context, tx *sql.Tx, rows []row) error {
	d := w.t.d
	return w.insertChunks(ctx, tx, len(rows),
		"INSERT INTO axes_audit_events (at, kind, by_fields, reason, ip_h, username_h, user_agent_h, ip, username, user_agent, failures, failure_limit, until, reset_count) VALUES ",
		"(?,?,?,?,?,?,?,?,?,?,?,?,?,?)", "",
		func(i int) {
			r := &rows[i]
			e := r.e
			by, reason := "", ""
			if e.by != 0 {
				by = e.by.String()
			}
			var until any
			switch e.kind {
			case Refused:
				reason = e.reason.String()
				until = d.timeArg(orForever(e.until))
			case Lockout:
				until = d.timeArg(orForever(e.until))
			}
			w.args = append(w.args,
				d.timeArg(e.at), e.kind.String(), by, reason,
				nullBytes(r.ipH), nullBytes(r.userH), nullBytes(r.uaH),
				nullString(r.ip), nullString(r.user), nullString(r.ua),
				e.failures, e.limit, until, e.count)
		})
}

// insertChunks runs head, n tuples and tail as statements of at most 500
// tuples each; add appends the arguments of tuple i to w.args.
func (w *writer) insertChunks(ctx context.Context, tx *sql.Tx, n int, head, tuple, tail string, add func(i int)) error {
	const chunk = 500
	for lo := 0; lo < n; lo += chunk {
		hi := min(n, lo+chunk)
		var b strings.Builder
		b.WriteString(head)
		w.args = w.args[:0]
		for i := lo; i < hi; i++ {
			if i > lo {
				b.WriteByte(',')
			}
			b.WriteString(tuple)
			add(i)
		}
		b.WriteString(tail)
		if _, err := tx.ExecContext(ctx, w.t.d.rebind(b.String()), w.args...); err != nil {
			return err
		}
	}
	return nil
}

// attempts adds the batch to the attempts table: one upsert per client,
// and the resets in their place among them.
func (w *writer) attempts(ctx context.Context, tx *sql.Tx, rows []row) error {
	clear(w.aggs)
	for i := range rows {
		r := &rows[i]
		e := r.e
		switch e.kind {
		case Failure, Lockout, Refused, Success:
		case Reset:
			if err := w.flushAttempts(ctx, tx); err != nil {
				return err
			}
			if err := w.reset(ctx, tx, r); err != nil {
				return err
			}
			continue
		default:
			continue
		}
		name := w.t.id.canonicalUsername(e.key.Username)
		c := w.h.client(e.key.IP, name, e.key.UserAgent)
		a := w.aggs[string(c)]
		if a == nil {
			a = &attemptAgg{client: c, ipH: r.ipH, userH: r.userH, uaH: r.uaH, ip: r.ip, user: r.user, ua: r.ua, first: e.at, last: e.at}
			w.aggs[string(c)] = a
		}
		if e.at.Before(a.first) {
			a.first = e.at
		}
		if e.at.After(a.last) {
			a.last = e.at
		}
		switch e.kind {
		case Failure:
			g := &w.group
			dim := uint8(1) << (e.by & 7)
			if e.by != 0 && g.dims&dim == 0 && g.at.Equal(e.at) && g.key == e.key {
				g.dims |= dim // another dimension of the same login
			} else {
				g.at, g.key, g.dims = e.at, e.key, dim
				a.failures++
			}
		case Lockout:
			a.lock(orForever(e.until))
		case Refused:
			a.refused++
			if e.reason == axes.ReasonLockout {
				a.lock(orForever(e.until))
			}
		case Success:
			a.succ++
		}
	}
	return w.flushAttempts(ctx, tx)
}

func (a *attemptAgg) lock(until time.Time) {
	if until.After(a.lockedUntil) {
		a.lockedUntil = until
	}
}

// flushAttempts upserts the pending aggregates, in the order of their
// client digests so that concurrent writers to one database lock rows in
// the same order and cannot deadlock.
func (w *writer) flushAttempts(ctx context.Context, tx *sql.Tx) error {
	if len(w.aggs) == 0 {
		return nil
	}
	aggs := make([]*attemptAgg, 0, len(w.aggs))
	for _, a := range w.aggs {
		aggs = append(aggs, a)
	}
	clear(w.aggs)
	slices.SortFunc(aggs, func(x, y *attemptAgg) int { return bytes.Compare(x.client, y.client) })
	d := w.t.d
	return w.insertChunks(ctx, tx, len(aggs),
		"INSERT INTO axes_audit_attempts (client_h, ip_h, username_h, user_agent_h, ip, username, user_agent, failures, refused, successes, first_seen, last_seen, locked_until) VALUES ",
		"(?,?,?,?,?,?,?,?,?,?,?,?,?)", ` ON CONFLICT (client_h) DO UPDATE SET
			failures = axes_audit_attempts.failures + excluded.failures,
			refused = axes_audit_attempts.refused + excluded.refused,
			successes = axes_audit_attempts.successes + excluded.successes,
			first_seen = CASE WHEN excluded.first_seen < axes_audit_attempts.first_seen THEN excluded.first_seen ELSE axes_audit_attempts.first_seen END,
			last_seen = CASE WHEN excluded.last_seen > axes_audit_attempts.last_seen THEN excluded.last_seen ELSE axes_audit_attempts.last_seen END,
			locked_until = CASE WHEN axes_audit_attempts.locked_until IS NULL OR excluded.locked_until > axes_audit_attempts.locked_until THEN excluded.locked_until ELSE axes_audit_attempts.locked_until END`,
		func(i int) {
			a := aggs[i]
			var until any
			if !a.lockedUntil.IsZero() {
				until = d.timeArg(a.lockedUntil)
			}
			w.args = append(w.args, a.client, nullBytes(a.ipH), nullBytes(a.userH), nullBytes(a.uaH),
				nullString(a.ip), nullString(a.user), nullString(a.ua),
				a.failures, a.refused, a.succ, d.timeArg(a.first), d.timeArg(a.last), until)
		})
}

// reset clears the recorded lock of the attempts a reset event concerns:
// those matching every field its key holds (all of them for ResetAll).
func (w *writer) reset(ctx context.Context, tx *sql.Tx, r *row) error {
	q := "UPDATE axes_audit_attempts SET locked_until = NULL WHERE locked_until IS NOT NULL"
	w.args = w.args[:0]
	for _, c := range [...]struct {
		col string
		h   []byte
	}{{"ip_h", r.ipH}, {"username_h", r.userH}, {"user_agent_h", r.uaH}} {
		if c.h != nil {
			q += " AND " + c.col + " = ?"
			w.args = append(w.args, c.h)
		}
	}
	_, err := tx.ExecContext(ctx, w.t.d.rebind(q), w.args...)
	return err
}

// cappedKinds are the kinds that Config.MaxRowsPerUsername counts: those
// an attacker produces at will.
const cappedKinds = "'failure', 'lockout', 'refused'"

// capUsernames deletes, for each username of the batch, its oldest capped
// rows beyond Config.MaxRowsPerUsername: at most BatchSize rows each, which
// is at least what the batch added, so the excess never grows, and the
// work per username is bounded by the cap plus a batch.
func (w *writer) capUsernames(ctx context.Context, tx *sql.Tx, rows []row) error {
	limit := w.t.cfg.MaxRowsPerUsername
	if limit < 0 {
		return nil
	}
	var names [][]byte
	for i := range rows {
		r := &rows[i]
		switch r.e.kind {
		case Failure, Lockout, Refused:
			if r.userH != nil {
				names = append(names, r.userH)
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.SortFunc(names, bytes.Compare)
	names = slices.CompactFunc(names, bytes.Equal)
	// One statement per chunk of usernames, a UNION ALL of one bounded
	// subquery each: a round trip per chunk rather than per username.
	const chunk = 100 // SQLite allows 500 terms in a compound SELECT
	for len(names) > 0 {
		n := min(len(names), chunk)
		var b strings.Builder
		b.WriteString("DELETE FROM axes_audit_events WHERE id IN (")
		w.args = w.args[:0]
		for i, h := range names[:n] {
			if i > 0 {
				b.WriteString(" UNION ALL ")
			}
			fmt.Fprintf(&b, "SELECT id FROM (SELECT id FROM axes_audit_events WHERE username_h = ? AND kind IN (%s) ORDER BY at DESC, id DESC LIMIT ? OFFSET ?) AS u%d", cappedKinds, i)
			w.args = append(w.args, h, w.t.cfg.BatchSize, limit)
		}
		b.WriteByte(')')
		if _, err := tx.ExecContext(ctx, w.t.d.rebind(b.String()), w.args...); err != nil {
			return err
		}
		names = names[n:]
	}
	return nil
}

func orForever(t time.Time) time.Time {
	if t.IsZero() {
		return Forever
	}
	return t
}

// nullBytes and nullString bind an absent value as NULL.
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
