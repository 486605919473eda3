package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/axes-go/axes/axesaudit"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// cmdAuditPrune deletes audit rows older than an age, as django-axes'
// axes_reset_logs does.
func cmdAuditPrune(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := subFlags("audit-prune", stderr)
	dsn := fs.String("db", "", "the audit database: sqlite:PATH, or a postgres:// URL")
	olderThan := fs.String("older-than", "", "delete rows older than this: 30d, 12h, 90m")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseSub(fs, args); err != nil {
		return err
	}
	age, err := parseAge(*olderThan)
	if err != nil {
		return err
	}
	db, dialect, err := openAudit(*dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	// Deleting reads and writes no identity: the trail is opened with raw
	// identities only because no key is needed for it.
	trail, err := axesaudit.New(db, axesaudit.Config{Dialect: dialect, RawIdentity: true})
	if err != nil {
		return err
	}
	n, err := trail.DeleteOlderThan(ctx, age)
	if cerr := trail.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit database: %w", err)
	}
	if *asJSON {
		return writeJSON(stdout, struct {
			Deleted int64 `json:"deleted"`
		}{n})
	}
	fmt.Fprintf(stdout, "deleted %d audit row%s older than %s\n", n, plural(int(min(n, 2)), "", "s"), *olderThan)
	return nil
}

// parseAge reads an age in days ("30d") or as a Go duration ("12h").
func parseAge(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, usagef("audit-prune needs -older-than")
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*365 {
			return 0, usagef("-older-than %q: want a number of days such as 30d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, usagef("-older-than %q: want 30d, 12h or 90m", s)
		}
	}
	if d <= 0 {
		return 0, usagef("-older-than must be positive, got %q", s)
	}
	return d, nil
}

func openAudit(dsn string) (*sql.DB, axesaudit.Dialect, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return nil, 0, usagef("-db sqlite: needs a path")
		}
		db, err := axesaudit.OpenSQLite(path)
		return db, axesaudit.SQLite, err
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err := sql.Open("pgx", dsn)
		return db, axesaudit.Postgres, err
	case dsn == "":
		return nil, 0, usagef("audit-prune needs -db")
	}
	return nil, 0, usagef("-db: want sqlite:PATH or a postgres:// URL")
}
