// Command axesctl administers axes lockouts from a shell: it lists current
// lockouts, resets them by IP, by username, by both or all, and shows
// figures, either through a running process's admin API or directly on the
// Redis servers that many processes share; and it deletes old rows of an
// axesaudit trail. Its output suits scripts: a
// table for people, -json for programs, and exit codes 0 (done), 1 (the
// server or Redis failed) and 2 (bad usage).
//
// Usage:
//
//	axesctl -admin URL  COMMAND [flags]   # a process's admin (axeshttp.NewAdmin)
//	axesctl -redis ADDR COMMAND [flags]   # Redis shared through redisstore
//
// Commands:
//
//	lockouts [-json]                      list current lockouts
//	reset -ip IP | -username NAME | -ip IP -username NAME | -all
//	stats [-json]                         show figures
//	audit-prune -db DSN -older-than AGE   delete audit rows (axesaudit) older than AGE
//
// The admin token is read from $AXESCTL_ADMIN_TOKEN or the file named by
// -token-file; the digest secret that the servers give axes.WithSecret,
// needed on Redis, from $AXES_SECRET or -secret-file. Neither is taken as a
// flag value, which would show in the process list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError is bad usage: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const usage = `usage:
  axesctl -admin URL  COMMAND [flags]   through a process's admin API
  axesctl -redis ADDR COMMAND [flags]   on Redis shared through redisstore

commands:
  lockouts [-json]                              list current lockouts
  reset -ip IP | -username NAME | -ip IP -username NAME | -all
  stats [-json]                                 show figures
  audit-prune -db DSN -older-than AGE [-json]   delete axesaudit rows older than AGE
                                                (DSN: sqlite:PATH or postgres://...; AGE: 30d, 12h)

The admin token comes from $AXESCTL_ADMIN_TOKEN or -token-file; the digest
secret the servers share (axes.WithSecret) from $AXES_SECRET or -secret-file.
Exit codes: 0 done, 1 the server or Redis failed, 2 bad usage.

global flags:
`

// run is the whole command, apart from the process: it returns the exit
// code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	err := runErr(ctx, args, stdout, stderr, getenv)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "axesctl:", err)
		fmt.Fprintln(stderr, "run axesctl -h for usage")
		return exitUsage
	default:
		fmt.Fprintln(stderr, "axesctl:", err)
		return exitFail
	}
}

func runErr(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("axesctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	adminURL := fs.String("admin", "", "base URL of a process's admin (where axeshttp.NewAdmin is mounted)")
	tokenFile := fs.String("token-file", "", "file holding the admin token (default $AXESCTL_ADMIN_TOKEN)")
	redisAddr := fs.String("redis", "", "Redis address host:port; several, comma-separated, for a Cluster")
	prefix := fs.String("prefix", "", `redisstore key prefix (default "axes:")`)
	hashTag := fs.String("hash-tag", "", `redisstore hash tag (default "axes")`)
	spread := fs.Bool("spread-slots", false, "the servers use redisstore's SpreadSlots")
	secretFile := fs.String("secret-file", "", "file holding the digest secret (default $AXES_SECRET)")
	v6 := fs.Int("ipv6-prefix", 64, "the servers' Policy.IPv6Prefix")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return usagef("no command")
	}
	if fs.Arg(0) == "audit-prune" {
		if *adminURL != "" || *redisAddr != "" {
			return usagef("audit-prune works on the audit database: give -db, not -admin or -redis")
		}
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		return cmdAuditPrune(ctx, fs.Args()[1:], stdout, stderr)
	}
	if (*adminURL == "") == (*redisAddr == "") {
		return usagef("give exactly one of -admin and -redis")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var b backend
	if *adminURL != "" {
		token, err := secretFrom(*tokenFile, getenv("AXESCTL_ADMIN_TOKEN"), "admin token", "-token-file", "$AXESCTL_ADMIN_TOKEN")
		if err != nil {
			return err
		}
		ab, err := newAdminBackend(*adminURL, token)
		if err != nil {
			return err
		}
		b = ab
	} else {
		secret, err := secretFrom(*secretFile, getenv("AXES_SECRET"), "digest secret", "-secret-file", "$AXES_SECRET")
		if err != nil {
			return err
		}
		rb, err := newRedisBackend(ctx, redisConfig{
			addrs: strings.Split(*redisAddr, ","), prefix: *prefix, hashTag: *hashTag,
			spread: *spread, secret: []byte(secret), ipv6Prefix: *v6, timeout: *timeout,
		})
		if err != nil {
			return err
		}
		defer rb.Close()
		b = rb
	}

	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "lockouts":
		return cmdLockouts(ctx, b, rest, stdout, stderr)
	case "reset":
		return cmdReset(ctx, b, rest, stdout, stderr)
	case "stats":
		return cmdStats(ctx, b, rest, stdout, stderr)
	}
	return usagef("unknown command %q", cmd)
}

// secretFrom reads a secret from file, or else takes env; surrounding
// white space (a trailing newline) is dropped.
func secretFrom(file, env, what, flagName, envName string) (string, error) {
	s := env
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the %s: %w", what, err)
		}
		s = string(b)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", usagef("no %s: set %s or give %s", what, envName, flagName)
	}
	return s, nil
}
