package axesaudit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	"modernc.org/sqlite"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a clock the test moves.
type fakeClock struct{ now atomic.Int64 }

func (c *fakeClock) Now() time.Time               { return t0.Add(time.Duration(c.now.Load())) }
func (c *fakeClock) Set(d time.Duration)          { c.now.Store(int64(d)) }
func (c *fakeClock) At(d time.Duration) time.Time { return t0.Add(d) }

var testKey = []byte("0123456789abcdef0123456789abcdef")

// testDB is one database of the suite, fresh for one test.
type testDB struct {
	name    string
	dialect Dialect
	db      *sql.DB
	// path is the SQLite file; empty for PostgreSQL.
	path string
	// gate holds SQLite transactions at their start; nil for PostgreSQL.
	gate *gate
	// block makes the Trail's writes wait until release is called.
	block func(t *testing.T) (release func())
}

// eachDB runs f on a fresh SQLite file and, when AXES_POSTGRES_DSN is set,
// on a fresh schema of that PostgreSQL database.
func eachDB(t *testing.T, f func(t *testing.T, tdb *testDB)) {
	eachBackend(t, func(t *testing.T, open func(*testing.T) *testDB) { f(t, open(t)) })
}

// eachBackend runs f on each database, which it opens fresh with open.
func eachBackend(t *testing.T, f func(t *testing.T, open func(*testing.T) *testDB)) {
	t.Run("sqlite", func(t *testing.T) { f(t, openSQLite) })
	t.Run("postgres", func(t *testing.T) {
		openPostgres(t) // skips the test when there is no server
		f(t, openPostgres)
	})
}

func openSQLite(t *testing.T) *testDB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	g := &gate{}
	// The same DSN as OpenSQLite, through a connector whose transactions
	// can be held at their start.
	db, err := OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("closing the SQLite database: %v", err)
	}
	db = sql.OpenDB(gateConnector{dsn: path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate", g: g})
	t.Cleanup(func() { db.Close() })
	return &testDB{name: "sqlite", dialect: SQLite, db: db, path: path, gate: g, block: func(*testing.T) func() {
		g.block()
		return g.release
	}}
}

func openPostgres(t *testing.T) *testDB {
	t.Helper()
	dsn := os.Getenv("AXES_POSTGRES_DSN")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AXES_POSTGRES_DSN is not set (run .ci/postgres.sh start)")
		}
		t.Skip("AXES_POSTGRES_DSN is not set; start a server with .ci/postgres.sh start and export what it prints")
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("opening AXES_POSTGRES_DSN: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx := context.Background()
	if err := admin.PingContext(ctx); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at AXES_POSTGRES_DSN does not answer: %v", err)
		}
		t.Skipf("PostgreSQL at AXES_POSTGRES_DSN does not answer: %v", err)
	}
	// A schema per test, so that tests and parallel runs never meet.
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "axes_test_" + hex.EncodeToString(b[:])
	if _, err = admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("CREATE SCHEMA %s: %v", schema, err)
	}
	t.Cleanup(func() { admin.Exec("DROP SCHEMA " + schema + " CASCADE") })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parsing AXES_POSTGRES_DSN: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatalf("opening schema %s: %v", schema, err)
	}
	t.Cleanup(func() { db.Close() })
	return &testDB{name: "postgres", dialect: Postgres, db: db, block: func(t *testing.T) func() {
		// A transaction holding the events table makes every write of the
		// Trail wait inside the database.
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatalf("BeginTx: %v", err)
		}
		if _, err = tx.ExecContext(ctx, "LOCK TABLE axes_audit_events IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatalf("LOCK TABLE axes_audit_events: %v", err)
		}
		var once sync.Once
		return func() {
			once.Do(func() {
				if err := tx.Rollback(); err != nil {
					t.Fatalf("releasing the lock on axes_audit_events: %v", err)
				}
			})
		}
	}}
}

// newTrail returns a migrated Trail on tdb, closed at the end of the test.
func newTrail(t *testing.T, tdb *testDB, c Config) *Trail {
	t.Helper()
	c.Dialect = tdb.dialect
	if c.Key == nil && !c.RawIdentity {
		c.Key = testKey
	}
	tr, err := New(tdb.db, c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	if err := tr.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return tr
}

func flush(t *testing.T, tr *Trail) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := tr.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func count(t *testing.T, tdb *testDB, q string, args ...any) int {
	t.Helper()
	var n int
	d := &dialects[tdb.dialect]
	if err := tdb.db.QueryRow(d.rebind(q), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// writerGoroutines counts the goroutines running a Trail's writer.
// writerGoroutinesSettle returns writerGoroutines once it stops above
// want, or after a bounded number of scheduler rounds: a writer that Close
// has waited for may still be returning from its last deferred call.
func writerGoroutinesSettle(want int) int {
	n := writerGoroutines()
	for i := 0; i < 200 && n > want; i++ {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
		n = writerGoroutines()
	}
	return n
}

func writerGoroutines() int {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "axesaudit.(*Trail).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// gate holds transactions at their start while blocked.
type gate struct {
	mu      sync.Mutex
	ch      chan struct{} // nil when open; protected by mu
	waiting atomic.Int32
}

func (g *gate) block() {
	g.mu.Lock()
	g.ch = make(chan struct{})
	g.mu.Unlock()
}

func (g *gate) release() {
	g.mu.Lock()
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
	g.mu.Unlock()
}

func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.ch
	g.mu.Unlock()
	if ch == nil {
		return nil
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gateConnector opens modernc.org/sqlite connections whose BeginTx waits
// at the gate.
type gateConnector struct {
	dsn string
	g   *gate
}

func (c gateConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := (&sqlite.Driver{}).Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return gateConn{conn, c.g}, nil
}

func (c gateConnector) Driver() driver.Driver { return &sqlite.Driver{} }

type gateConn struct {
	driver.Conn
	g *gate
}

func (c gateConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if err := c.g.wait(ctx); err != nil {
		return nil, err
	}
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c gateConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, q, args)
}

func (c gateConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, q, args)
}

func (c gateConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
}
