package axesaudit

import (
	"context"
	"fmt"
)

// The schema, one migration per version. A migration is never edited once
// released: a change is a new one. Type names in braces are the dialect's
// (see dialect.types).
var migrations = [][]string{
	1: {
		// The event log: one row per event, newest found through (at, id).
		`CREATE TABLE IF NOT EXISTS axes_audit_events (
			id {serial},
			at {time} NOT NULL,
			kind VARCHAR(16) NOT NULL,
			by_fields VARCHAR(32) NOT NULL,
			reason VARCHAR(16) NOT NULL,
			ip_h {bytes},
			username_h {bytes},
			user_agent_h {bytes},
			ip VARCHAR(64),
			username TEXT,
			user_agent TEXT,
			failures INTEGER NOT NULL,
			failure_limit INTEGER NOT NULL,
			until {time},
			reset_count BIGINT NOT NULL
		)`,
		`CREATE INDEX IF NOT EXISTS axes_audit_events_at ON axes_audit_events (at, id)`,
		`CREATE INDEX IF NOT EXISTS axes_audit_events_kind ON axes_audit_events (kind, at, id)`,
		`CREATE INDEX IF NOT EXISTS axes_audit_events_ip ON axes_audit_events (ip_h, at, id)`,
		`CREATE INDEX IF NOT EXISTS axes_audit_events_username ON axes_audit_events (username_h, at, id)`,
		`CREATE INDEX IF NOT EXISTS axes_audit_events_user_agent ON axes_audit_events (user_agent_h, at, id)`,
		// The attempts: one row per client (IP, username, user agent).
		`CREATE TABLE IF NOT EXISTS axes_audit_attempts (
			id {serial},
			client_h {bytes} NOT NULL UNIQUE,
			ip_h {bytes},
			username_h {bytes},
			user_agent_h {bytes},
			ip VARCHAR(64),
			username TEXT,
			user_agent TEXT,
			failures BIGINT NOT NULL,
			refused BIGINT NOT NULL,
			successes BIGINT NOT NULL,
			first_seen {time} NOT NULL,
			last_seen {time} NOT NULL,
			locked_until {time}
		)`,
		`CREATE INDEX IF NOT EXISTS axes_audit_attempts_seen ON axes_audit_attempts (last_seen, id)`,
		`CREATE INDEX IF NOT EXISTS axes_audit_attempts_ip ON axes_audit_attempts (ip_h, last_seen, id)`,
		`CREATE INDEX IF NOT EXISTS axes_audit_attempts_username ON axes_audit_attempts (username_h, last_seen, id)`,
		`CREATE INDEX IF NOT EXISTS axes_audit_attempts_user_agent ON axes_audit_attempts (user_agent_h, last_seen, id)`,
	},
}

// SchemaVersion is the version of the schema that Migrate creates.
const SchemaVersion = 1 // len(migrations) - 1, pinned by a test

// Migrate creates or upgrades the Trail's tables (axes_audit_events,
// axes_audit_attempts and axes_audit_schema, which records the version) in
// one transaction. It is idempotent: run it at every start. It fails if
// the database holds a newer schema than this package knows.
func (t *Trail) Migrate(ctx context.Context) error {
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("axes: audit migrate: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if t.d.migrateLock != "" {
		if _, err := tx.ExecContext(ctx, t.d.migrateLock); err != nil {
			return fmt.Errorf("axes: audit migrate: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, t.d.types(`CREATE TABLE IF NOT EXISTS axes_audit_schema (
		version INTEGER PRIMARY KEY,
		applied_at {time} NOT NULL
	)`)); err != nil {
		return fmt.Errorf("axes: audit migrate: %w", err)
	}
	var v int
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM axes_audit_schema").Scan(&v); err != nil {
		return fmt.Errorf("axes: audit migrate: %w", err)
	}
	if v > SchemaVersion {
		return fmt.Errorf("axes: audit schema is version %d, newer than this package's %d", v, SchemaVersion)
	}
	for n := v + 1; n <= SchemaVersion; n++ {
		for _, q := range migrations[n] {
			if _, err := tx.ExecContext(ctx, t.d.types(q)); err != nil {
				return fmt.Errorf("axes: audit migrate to version %d: %w", n, err)
			}
		}
		if _, err := tx.ExecContext(ctx, t.d.rebind("INSERT INTO axes_audit_schema (version, applied_at) VALUES (?, ?)"),
			n, t.d.timeArg(t.cfg.Clock())); err != nil {
			return fmt.Errorf("axes: audit migrate to version %d: %w", n, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("axes: audit migrate: %w", err)
	}
	return nil
}
