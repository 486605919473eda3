package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesaudit"
)

// fillTrail writes failures 40 days and 1 day old into the trail at db.
func fillTrail(t *testing.T, db *sql.DB, dialect axesaudit.Dialect) {
	t.Helper()
	ctx := context.Background()
	trail, err := axesaudit.New(db, axesaudit.Config{Dialect: dialect, Key: []byte("audit test key, 16+ bytes")})
	if err != nil {
		t.Fatal(err)
	}
	if err := trail.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, age := range []time.Duration{40 * 24 * time.Hour, 40 * 24 * time.Hour, 24 * time.Hour} {
		trail.OnEvent(axes.Event{Kind: axes.EventFailure, Time: now.Add(-age), By: axes.IP, Failures: i + 1, Limit: 3,
			Key: axes.Key{IP: netip.MustParseAddr("192.0.2.1"), Username: "alice"}})
	}
	if err := trail.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := trail.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAuditPruneSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	db, err := axesaudit.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	fillTrail(t, db, axesaudit.SQLite)
	db.Close()

	r := ctl(nil, "audit-prune", "-db", "sqlite:"+path, "-older-than", "30d", "-json")
	var got struct {
		Deleted int64 `json:"deleted"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("%v %+v", err, r)
	}
	if got.Deleted < 2 {
		t.Errorf("deleted %d rows, want the two 40-day-old failures at least", got.Deleted)
	}
	r = ctl(nil, "audit-prune", "-db", "sqlite:"+path, "-older-than", "30d")
	if r.code != 0 || !strings.Contains(r.stdout, "deleted 0 audit rows") {
		t.Errorf("second prune: %+v", r)
	}
	db, _ = axesaudit.OpenSQLite(path)
	defer db.Close()
	trail, err := axesaudit.New(db, axesaudit.Config{Key: []byte("audit test key, 16+ bytes")})
	if err != nil {
		t.Fatal(err)
	}
	defer trail.Close()
	recs, err := trail.Query(context.Background(), axesaudit.Filter{Username: "alice"})
	if err != nil || len(recs) != 1 {
		t.Errorf("rows left: %d (%v), want the day-old failure", len(recs), err)
	}
}

func TestAuditPrunePostgres(t *testing.T) {
	dsn := os.Getenv("AXES_POSTGRES_DSN")
	if dsn == "" {
		msg := "AXES_POSTGRES_DSN is not set; run `export $(.ci/postgres.sh start)`"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fillTrail(t, db, axesaudit.Postgres)
	if r := ctl(nil, "audit-prune", "-db", dsn, "-older-than", "720h"); r.code != 0 || !strings.Contains(r.stdout, "deleted") {
		t.Errorf("%+v", r)
	}
}

func TestAuditPruneUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"audit-prune", "-older-than", "30d"}, "needs -db"},
		{[]string{"audit-prune", "-db", "mysql://x", "-older-than", "30d"}, "want sqlite"},
		{[]string{"audit-prune", "-db", "sqlite:/x"}, "needs -older-than"},
		{[]string{"audit-prune", "-db", "sqlite:/x", "-older-than", "-3d"}, "number of days"},
		{[]string{"audit-prune", "-db", "sqlite:/x", "-older-than", "soon"}, "want 30d"},
		{[]string{"-admin", "http://127.0.0.1:1", "audit-prune", "-db", "sqlite:/x", "-older-than", "1d"}, "not -admin"},
	} {
		r := ctl(nil, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", c.args, r.code, r.stderr, c.msg)
		}
	}
}
