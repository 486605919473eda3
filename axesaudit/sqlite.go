package axesaudit

import (
	"database/sql"
	"errors"
	"strings"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// OpenSQLite opens (creating if needed) the SQLite database file at path
// through modernc.org/sqlite, a SQLite in pure Go, set up for a Trail:
// write-ahead logging, so that searches do not wait for the writer;
// transactions that take the write lock when they begin, so that writers
// queue instead of failing; and a 10-second wait for that lock. The
// caller closes the database.
func OpenSQLite(path string) (*sql.DB, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || path == ":memory:" {
		return nil, errors.New("axes: OpenSQLite needs a file path without '?' or '#' (an in-memory database is not shared between connections)")
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}
