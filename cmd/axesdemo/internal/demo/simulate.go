package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/axes-go/axes/store"
)

// SimStart is the simulated instant at which the attack begins.
var SimStart = time.Date(2025, time.March, 3, 9, 0, 0, 0, time.UTC)

// ledgerCap bounds the ledger of a simulation; the attack makes a few
// thousand records.
const ledgerCap = 1 << 16

// SimConfig configures Simulate.
type SimConfig struct {
	Addr        string       // listen address; default "127.0.0.1:8080"
	Store       store.Store  // nil: the memory store; otherwise it is emptied first (ResetAll)
	Secret      []byte       // default DefaultSecret
	Progress    io.Writer    // progress lines and the start banner; nil for none
	Logger      *slog.Logger // the limiter's lockouts, if set
	Concurrency int          // stuffing bots at once; default 16
}

// Simulate starts the demo server on a simulated clock, runs the attack
// against it over HTTP, stops the server and returns the report.
func Simulate(ctx context.Context, cfg SimConfig) (*Report, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	clock := NewClock(SimStart)
	srv, err := NewServer(Config{
		Addr:      cfg.Addr,
		Now:       clock.Now,
		Store:     cfg.Store,
		Secret:    cfg.Secret,
		Logger:    cfg.Logger,
		MaxLedger: ledgerCap,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Store != nil {
		// A shared store may hold the state of an earlier run, on the
		// same simulated timeline.
		srv.Limiter().ResetAll()
	}
	if err := srv.Start(); err != nil {
		return nil, errors.Join(err, srv.Shutdown(ctx))
	}
	fmt.Fprintf(cfg.Progress, "axesdemo: login server on %s/login (admin: %s/admin/), simulated clock from %s\n",
		srv.URL(), srv.URL(), SimStart.Format(time.RFC3339))
	res, err := RunAttack(ctx, AttackConfig{
		BaseURL:     srv.URL(),
		Clock:       clock,
		Progress:    cfg.Progress,
		Concurrency: cfg.Concurrency,
	})
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutCtx); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	counts := srv.Counts()
	if counts.LedgerDropped > 0 {
		return nil, fmt.Errorf("axesdemo: ledger full, %d records dropped", counts.LedgerDropped)
	}
	rep := NewReport(res, counts, srv.Policy().Limit, CheckLedger(srv.Ledger(), srv.Policy()))
	// Challenge before lock runs on a server of its own, with its own
	// clock and memory store.
	ch, err := RunChallenge(ctx, NewClock(SimStart).Now, cfg.Progress)
	if err != nil {
		return nil, err
	}
	rep.Challenge = &ch
	return rep, nil
}
