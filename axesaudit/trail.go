// Package axesaudit keeps the history of an axes.Limiter in a SQL database,
// as django-axes keeps its AccessAttempt, AccessLog and AccessFailureLog
// tables: an event log with one row per failure, lockout, refusal, success,
// reset and logout, and an attempts table with one row per client (IP,
// username, user agent) counting its failures, refusals and successes, when
// it was first and last seen and until when it was locked. Administrators
// search both by IP, username, user agent, kind and time (Trail.Query,
// Trail.Attempts); old rows go with Trail.DeleteOlderThan, and each
// username keeps at most Config.MaxRowsPerUsername failure rows.
//
// A Trail sits on Policy.OnEvent and never slows a login down: OnEvent only
// puts the event in a bounded queue, and one goroutine writes the queue in
// batches, one transaction each. When the database is slow or down and the
// queue is full, events are dropped and counted (Trail.Stats) rather than
// waited for.
//
// Identities are masked by default: the database holds a keyed HMAC-SHA256
// of each IP, username and user agent, to search by, and a display form
// that does not say who (192.0.*.*, "a***", "Mozilla/***"). Searching by a
// raw value computes the same HMAC. Config.RawIdentity stores them as they
// are.
//
// The database is SQLite (embedded, through modernc.org/sqlite: see
// OpenSQLite) or PostgreSQL (through any database/sql driver, such as
// github.com/jackc/pgx/v5/stdlib).
package axesaudit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/axes-go/axes"
)

// Kind says what a Record reports: the kinds of axes.Event, plus Logout.
type Kind uint8

// The kinds of Record. The first five have the values of the axes.EventKind
// of the same name.
const (
	Failure Kind = Kind(axes.EventFailure) // a failure was counted in one dimension
	Lockout Kind = Kind(axes.EventLockout) // a dimension became locked
	Refused Kind = Kind(axes.EventRefused) // an attempt was refused before the password check
	Success Kind = Kind(axes.EventSuccess) // a successful login
	Reset   Kind = Kind(axes.EventReset)   // state was forgotten by a reset
	Logout  Kind = 6                       // a logout, recorded by Trail.Logout
)

var kindNames = [...]string{"", "failure", "lockout", "refused", "success", "reset", "logout"}

// String returns the kind's name as stored, such as "lockout".
func (k Kind) String() string {
	if k != 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

func parseKind(s string) Kind {
	for i, n := range kindNames {
		if i > 0 && n == s {
			return Kind(i)
		}
	}
	return 0
}

// Forever is the LockedUntil of an attempt, and the Until of a record,
// whose lock has no end.
var Forever = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// Defaults of Config.
const (
	DefaultQueueSize          = 8192
	DefaultBatchSize          = 256
	DefaultMaxRowsPerUsername = 1000
	DefaultCloseTimeout       = 5 * time.Second

	// MaxBatchSize bounds Config.BatchSize, so that a batch's statements
	// stay within both databases' limits on bound parameters.
	MaxBatchSize = 1000
	// MinKeyBytes is the shortest Config.Key accepted.
	MinKeyBytes = 16
)

// Config configures a Trail. Zero fields take the defaults given on each.
type Config struct {
	// Dialect is the database's: SQLite (the zero value) or Postgres.
	Dialect Dialect

	// Key is the secret of the HMAC-SHA256 that identities are stored and
	// searched by, at least MinKeyBytes long. Keep it as you keep other
	// secrets, and keep it fixed: with another key, older rows are no
	// longer found by IP, username or user agent. Required unless
	// RawIdentity is set.
	Key []byte

	// RawIdentity stores IPs, usernames and user agents as they are (cut to
	// axes.MaxIdentityBytes) instead of masked. Search still goes through
	// the HMAC, of Key if set.
	RawIdentity bool

	// NormalizeUsername maps a username to the form that is hashed and
	// searched; use the limiter's Policy.NormalizeUsername. Default
	// axes.DefaultNormalizeUsername.
	NormalizeUsername func(string) string

	// QueueSize is how many events may wait for the writer (default
	// DefaultQueueSize). Each holds about 150 bytes plus its username and
	// user agent, at most axes.MaxIdentityBytes each.
	QueueSize int

	// BatchSize is the most events written in one transaction (default
	// DefaultBatchSize, at most MaxBatchSize).
	BatchSize int

	// MaxRowsPerUsername caps the failure, lockout and refused rows kept per
	// username (django-axes' AXES_ACCESS_FAILURE_LOG_PER_USER_LIMIT): each
	// batch deletes the oldest rows beyond the cap of every username it
	// wrote, at most BatchSize rows per username. Default
	// DefaultMaxRowsPerUsername; negative means no cap.
	MaxRowsPerUsername int

	// CloseTimeout is how long Close may spend writing what is queued
	// (default DefaultCloseTimeout). At the deadline the writer's database
	// calls are cancelled and what is left is dropped.
	CloseTimeout time.Duration

	// Clock is the time of Logout and DeleteOlderThan (default time.Now).
	// Events carry their limiter's time.
	Clock func() time.Time

	// OnError, if set, is called by the writer goroutine with each failed
	// batch write. It must not block for long: the queue waits meanwhile.
	OnError func(error)
}

// Trail writes the events of an axes.Limiter to a SQL database and
// searches them. Create it with New, call Migrate once, chain OnEvent into
// Policy.OnEvent, and Close it after the limiter. Its methods are safe for
// concurrent use.
type Trail struct {
	db       *sql.DB
	d        *dialect
	id       identity
	cfg      Config
	q        chan entry
	stop     chan struct{} // closed by Close
	done     chan struct{} // closed when the writer returns
	ctx      context.Context
	cancel   context.CancelFunc
	closing  sync.Once
	closeErr error

	// gate is read-locked by every enqueue and write-locked once by Close,
	// so that no event enters the queue after Close has begun: an enqueue
	// that cannot take it (Close holds it or waits for it) drops instead.
	gate   sync.RWMutex
	closed bool // protected by gate

	accepted atomic.Uint64 // events put in the queue
	written  atomic.Uint64 // of those, written
	lost     atomic.Uint64 // of those, dropped: a failed write or the Close deadline
	rejected atomic.Uint64 // events never queued: queue full or Trail closed
	errs     atomic.Uint64 // failed batch writes

	mu       sync.Mutex
	progress chan struct{} // closed and replaced after each batch; protected by mu
}

// entry is a queued event.
type entry struct {
	kind     Kind
	reason   axes.Reason
	by       axes.Fields
	at       time.Time
	key      axes.Key
	failures int
	limit    int
	count    int
	until    time.Time
}

// New returns a Trail writing to db, and starts its writer goroutine. It
// does not create the tables: call Migrate. The Trail does not close db.
func New(db *sql.DB, c Config) (*Trail, error) {
	if db == nil {
		return nil, errors.New("axes: audit trail needs a database")
	}
	if c.Dialect != SQLite && c.Dialect != Postgres {
		return nil, fmt.Errorf("axes: unknown audit Dialect %d", c.Dialect)
	}
	if len(c.Key) == 0 && !c.RawIdentity {
		return nil, errors.New("axes: audit trail needs a Key to mask identities, or RawIdentity to store them as they are")
	}
	if len(c.Key) > 0 && len(c.Key) < MinKeyBytes {
		return nil, fmt.Errorf("axes: audit Key must be at least %d bytes, got %d", MinKeyBytes, len(c.Key))
	}
	if c.QueueSize < 0 || c.BatchSize < 0 || c.CloseTimeout < 0 {
		return nil, errors.New("axes: audit QueueSize, BatchSize and CloseTimeout must not be negative")
	}
	if c.BatchSize > MaxBatchSize {
		return nil, fmt.Errorf("axes: audit BatchSize must be at most %d, got %d", MaxBatchSize, c.BatchSize)
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxRowsPerUsername == 0 {
		c.MaxRowsPerUsername = DefaultMaxRowsPerUsername
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.NormalizeUsername == nil {
		c.NormalizeUsername = axes.DefaultNormalizeUsername
	}
	c.Key = append([]byte(nil), c.Key...)
	t := &Trail{
		db:       db,
		d:        &dialects[c.Dialect],
		id:       identity{key: c.Key, raw: c.RawIdentity, normalize: c.NormalizeUsername},
		cfg:      c,
		q:        make(chan entry, c.QueueSize),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		progress: make(chan struct{}),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	go t.run()
	return t, nil
}

// OnEvent queues e for writing and returns at once; it never waits for the
// database. When the queue is full, or the Trail is closed, the event is
// dropped and counted in Stats.Dropped. Use it as Policy.OnEvent, or
// through Chain.
func (t *Trail) OnEvent(e axes.Event) {
	t.enqueue(entry{
		kind:     Kind(e.Kind),
		reason:   e.Reason,
		by:       e.By,
		at:       e.Time,
		key:      e.Key,
		failures: e.Failures,
		limit:    e.Limit,
		count:    e.Count,
		until:    e.Until,
	})
}

// Chain returns a Policy.OnEvent func that queues each event with OnEvent
// and then calls next, if not nil (such as axes.LogEvents).
func (t *Trail) Chain(next func(axes.Event)) func(axes.Event) {
	if next == nil {
		return t.OnEvent
	}
	return func(e axes.Event) {
		t.OnEvent(e)
		next(e)
	}
}

// Logout records a logout of k now, as OnEvent records events: axes has no
// logout event of its own (django-axes' AccessLog.logout_time).
func (t *Trail) Logout(k axes.Key) { t.LogoutAt(k, t.cfg.Clock()) }

// LogoutAt records a logout of k at time at.
func (t *Trail) LogoutAt(k axes.Key, at time.Time) {
	t.enqueue(entry{kind: Logout, at: at, key: k})
}

func (t *Trail) enqueue(e entry) {
	// A username or user agent is kept to its first MaxIdentityBytes,
	// copied only when longer, so that the queue's memory stays bounded
	// whatever the caller's strings hold.
	if len(e.key.Username) > axes.MaxIdentityBytes {
		e.key.Username = string([]byte(cut(e.key.Username)))
	}
	if len(e.key.UserAgent) > axes.MaxIdentityBytes {
		e.key.UserAgent = string([]byte(cut(e.key.UserAgent)))
	}
	if !t.gate.TryRLock() {
		t.rejected.Add(1) // Close is under way
		return
	}
	if t.closed {
		t.gate.RUnlock()
		t.rejected.Add(1)
		return
	}
	select {
	case t.q <- e:
		t.accepted.Add(1)
	default:
		t.rejected.Add(1)
	}
	t.gate.RUnlock()
}

// Stats counts what happened to the events given to a Trail.
type Stats struct {
	// Written counts events written to the database.
	Written uint64
	// Dropped counts events that were not and will not be written: the
	// queue was full, the Trail was closed, their batch failed, or the
	// Close deadline passed first.
	Dropped uint64
	// Errors counts failed batch writes; their events are in Dropped.
	Errors uint64
	// Queued is how many events wait to be written, including the batch
	// being written. Once the queue is idle, Written + Dropped is every
	// event given.
	Queued int
}

// Stats returns the Trail's counters.
func (t *Trail) Stats() Stats {
	w, l := t.written.Load(), t.lost.Load()
	s := Stats{Written: w, Dropped: l + t.rejected.Load(), Errors: t.errs.Load()}
	if a := t.accepted.Load(); a > w+l {
		s.Queued = int(a - w - l)
	}
	return s
}

// Flush waits until every event queued before the call is written or
// dropped, or ctx ends.
func (t *Trail) Flush(ctx context.Context) error {
	target := t.accepted.Load()
	for {
		t.mu.Lock()
		ch := t.progress
		t.mu.Unlock()
		if t.written.Load()+t.lost.Load() >= target {
			return nil
		}
		select {
		case <-ch:
		case <-t.done:
			// The writer is gone and Close has settled the queue.
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops taking events, writes what is queued within
// Config.CloseTimeout, stops the writer goroutine and waits for it. Events
// still queued at the deadline are dropped, and Close returns an error
// saying how many. Close does not close the database. Further calls return
// the first call's result.
func (t *Trail) Close() error {
	t.closing.Do(func() {
		t.gate.Lock()
		t.closed = true
		t.gate.Unlock()
		// From here no event enters the queue.
		lost := t.lost.Load()
		timer := time.AfterFunc(t.cfg.CloseTimeout, t.cancel)
		close(t.stop)
		<-t.done
		timer.Stop()
		late := t.ctx.Err() != nil
		t.cancel()
		switch n := t.lost.Load() - lost; {
		case n > 0 && late:
			t.closeErr = fmt.Errorf("axes: audit trail closed with %d events unwritten: %w", n, context.DeadlineExceeded)
		case n > 0:
			t.closeErr = fmt.Errorf("axes: audit trail closed with %d events unwritten: writes failed", n)
		}
	})
	return t.closeErr
}
