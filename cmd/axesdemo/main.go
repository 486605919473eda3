// Command axesdemo is a login server protected by axes, with a built-in
// attack simulation.
//
//	go run ./cmd/axesdemo            # serve the demo on 127.0.0.1:8080
//	go run ./cmd/axesdemo -attack    # serve it, attack it, print a report
//
// See the Demo section of the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/axes-go/axes/cmd/axesdemo/internal/demo"
	"github.com/axes-go/axes/store"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "axesdemo:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("axesdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address (with -attack the default is a free loopback port)")
	attack := fs.Bool("attack", false, "run the simulated attack against the server, print a report and exit")
	verbose := fs.Bool("v", false, "with -attack, log every lockout and refusal")
	redisAddr := fs.String("redis", "", "keep the limiter's state in the Redis server at this address (host:port), shared by every demo process using it")
	secretDefault := os.Getenv("AXESDEMO_SECRET")
	if secretDefault == "" {
		secretDefault = demo.DefaultSecret
	}
	secret := fs.String("secret", secretDefault, "digest secret (at least 16 bytes), shared by processes on one store; default $AXESDEMO_SECRET or a fixed demo value")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *attack && !flagSet(fs, "addr") {
		// The attack is over in a second; a free port keeps it from
		// clashing with a demo server already running on 8080.
		*addr = "127.0.0.1:0"
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	var store store.Store
	if *redisAddr != "" {
		o := demo.RedisOptions([]byte(*secret), *attack, logger)
		client, st, err := demo.RedisStore(ctx, *redisAddr, o)
		if err != nil {
			return err
		}
		defer client.Close()
		store = st
		fmt.Fprintf(stdout, "axesdemo: state in Redis at %s under %q; processes sharing it need the same -secret\n", *redisAddr, o.Prefix)
	}
	if *attack {
		cfg := demo.SimConfig{Addr: *addr, Store: store, Secret: []byte(*secret), Progress: stdout}
		if *verbose {
			cfg.Logger = logger
		}
		rep, err := demo.Simulate(ctx, cfg)
		if err != nil {
			return err
		}
		if _, err := rep.WriteTo(stdout); err != nil {
			return err
		}
		if len(rep.Check.Violations) > 0 {
			return errors.New("the limit was breached")
		}
		return nil
	}

	// The admin token comes from the environment rather than a flag, which
	// any user of the host could read in the process list.
	srv, err := demo.NewServer(demo.Config{Addr: *addr, Store: store, Secret: []byte(*secret), Logger: logger,
		AdminToken: os.Getenv("AXESDEMO_ADMIN_TOKEN")})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return errors.Join(err, srv.Shutdown(ctx))
	}
	fmt.Fprintf(stdout, "axesdemo: login page  %s/login\n", srv.URL())
	bearer := srv.AdminToken()
	if os.Getenv("AXESDEMO_ADMIN_TOKEN") == "" {
		fmt.Fprintf(stdout, "axesdemo: admin token %s (drawn at start; set $AXESDEMO_ADMIN_TOKEN to choose one)\n", bearer)
	} else {
		bearer = "$AXESDEMO_ADMIN_TOKEN"
		fmt.Fprintln(stdout, "axesdemo: admin token $AXESDEMO_ADMIN_TOKEN")
	}
	fmt.Fprintf(stdout, "axesdemo: admin page  %s/admin/ (any user name, the admin token as password)\n", srv.URL())
	fmt.Fprintf(stdout, "axesdemo: admin API   curl -H \"Authorization: Bearer %s\" %s/admin/api/lockouts\n", bearer, srv.URL())
	fmt.Fprintln(stdout, "axesdemo: accounts    alice, bob, carol, dave, erin (passwords on the login page); Ctrl-C stops")
	select {
	case <-ctx.Done():
	case <-waitChan(srv):
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(srv.Shutdown(shutCtx), srv.Wait())
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// waitChan returns a channel closed when srv stops serving.
func waitChan(srv *demo.Server) <-chan struct{} {
	done := make(chan struct{})
	go func() { _ = srv.Wait(); close(done) }()
	return done
}
