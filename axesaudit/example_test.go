package axesaudit_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesaudit"
)

// A limiter whose events go to an audit trail in SQLite, and what an
// administrator finds there.
func Example() {
	dir, err := os.MkdirTemp("", "axesaudit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := axesaudit.OpenSQLite(filepath.Join(dir, "audit.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx := context.Background()
	trail, err := axesaudit.New(db, axesaudit.Config{
		Key: []byte("load me from a secret store, not from the source"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer trail.Close() // after the limiter: Close writes what is queued
	if err := trail.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	now := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	lim := axes.Must(axes.New(axes.Policy{
		Limit:   2,
		Cooloff: axes.Fixed(time.Hour),
		OnEvent: trail.Chain(nil), // or trail.Chain(axes.LogEvents(logger))
	}, axes.WithClock(func() time.Time { return now })))
	defer lim.Close()

	k := axes.Key{IP: netip.MustParseAddr("203.0.113.7"), Username: "alice", UserAgent: "curl/8.5"}
	for range 3 {
		lim.Fail(k) // two failures, then a refusal
		now = now.Add(time.Minute)
	}
	trail.Logout(axes.Key{Username: "bob"})

	if err := trail.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	records, err := trail.Query(ctx, axesaudit.Filter{Username: "Alice"})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range records {
		fmt.Println(r.Time.Format("15:04"), r.Kind, r.By, r.IP, r.Username, r.UserAgent)
	}
	attempts, err := trail.Attempts(ctx, axesaudit.Filter{IP: k.IP})
	if err != nil {
		log.Fatal(err)
	}
	a := attempts[0]
	fmt.Printf("%s %s: %d failures, %d refused, locked until %s\n",
		a.IP, a.Username, a.Failures, a.Refused, a.LockedUntil.Format("15:04"))
	fmt.Printf("%+v\n", trail.Stats())
	// Output:
	// 09:02 refused ip 203.0.*.* a*** curl/***
	// 09:01 lockout ip 203.0.*.* a*** curl/***
	// 09:01 failure ip 203.0.*.* a*** curl/***
	// 09:00 failure ip 203.0.*.* a*** curl/***
	// 203.0.*.* a***: 2 failures, 1 refused, locked until 10:01
	// {Written:5 Dropped:0 Errors:0 Queued:0}
}
