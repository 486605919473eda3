package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// backend is where the lockouts are: a process's admin API or Redis.
type backend interface {
	lockouts(ctx context.Context) ([]lockout, error)
	stats(ctx context.Context) ([]figure, error)
	reset(ctx context.Context, t target) (int, error)
}

// lockout is one current lock, as the admin API's /api/lockouts lists it.
type lockout struct {
	IP         string     `json:"ip"`
	Username   string     `json:"username"`
	UserAgent  string     `json:"user_agent"`
	By         string     `json:"by"`
	Failures   int        `json:"failures"`
	Until      *time.Time `json:"until"`       // null for a lock with no end
	RetryAfter *int64     `json:"retry_after"` // seconds left; null for no end
}

// figure is one named number of stats, in the order shown.
type figure struct {
	Name  string
	Value any
}

// target is what a reset forgets: an IP, a username, both, or all.
type target struct {
	ip       *netip.Addr
	username *string
	all      bool
}

func (t target) String() string {
	switch {
	case t.all:
		return "everything"
	case t.ip != nil && t.username != nil:
		return fmt.Sprintf("IP %s with username %q", t.ip, *t.username)
	case t.ip != nil:
		return "IP " + t.ip.String()
	}
	return fmt.Sprintf("username %q", *t.username)
}

func subFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("axesctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseSub(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	return nil
}

func cmdLockouts(ctx context.Context, b backend, args []string, stdout, stderr io.Writer) error {
	fs := subFlags("lockouts", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseSub(fs, args); err != nil {
		return err
	}
	los, err := b.lockouts(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if los == nil {
			los = []lockout{}
		}
		return writeJSON(stdout, struct {
			Count    int       `json:"count"`
			Lockouts []lockout `json:"lockouts"`
		}{len(los), los})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BY\tIP\tUSERNAME\tFAILURES\tTIME LEFT\tUNTIL")
	for _, lo := range los {
		left, until := "indefinite", "-"
		if lo.RetryAfter != nil {
			left = (time.Duration(*lo.RetryAfter) * time.Second).String()
		}
		if lo.Until != nil {
			until = lo.Until.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", lo.By, orDash(lo.IP), orDash(printable(lo.Username)), lo.Failures, left, until)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d lockout(s)\n", len(los))
	return nil
}

func cmdReset(ctx context.Context, b backend, args []string, stdout, stderr io.Writer) error {
	fs := subFlags("reset", stderr)
	ip := fs.String("ip", "", "forget the state of this IP (every dimension that counts it)")
	user := fs.String("username", "", "forget the state of this username; with -ip, only what that IP and username count together or alone")
	all := fs.Bool("all", false, "forget everything")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseSub(fs, args); err != nil {
		return err
	}
	var t target
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["ip"] {
		a, err := netip.ParseAddr(strings.TrimSpace(*ip))
		if err != nil {
			return usagef("-ip %q is not an IP address", *ip)
		}
		a = a.Unmap().WithZone("")
		t.ip = &a
	}
	if set["username"] {
		t.username = user
	}
	t.all = *all
	switch {
	case t.all && (t.ip != nil || t.username != nil):
		return usagef("-all excludes -ip and -username")
	case !t.all && t.ip == nil && t.username == nil:
		return usagef("reset needs -ip, -username, both, or -all")
	}
	n, err := b.reset(ctx, t)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, struct {
			Reset int `json:"reset"`
		}{n})
	}
	fmt.Fprintf(stdout, "reset %s: %d entr%s forgotten\n", t, n, plural(n, "y", "ies"))
	return nil
}

func cmdStats(ctx context.Context, b backend, args []string, stdout, stderr io.Writer) error {
	fs := subFlags("stats", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseSub(fs, args); err != nil {
		return err
	}
	figs, err := b.stats(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		var sb strings.Builder
		sb.WriteString("{")
		for i, f := range figs {
			if i > 0 {
				sb.WriteString(",")
			}
			k, _ := json.Marshal(f.Name)
			v, _ := json.Marshal(f.Value)
			sb.Write(k)
			sb.WriteString(":")
			sb.Write(v)
		}
		sb.WriteString("}\n")
		_, err := io.WriteString(stdout, sb.String())
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, f := range figs {
		fmt.Fprintf(tw, "%s\t%v\n", f.Name, f.Value)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printable quotes a value that holds control or non-printing characters,
// so that a username chosen by an attacker cannot rewrite the terminal.
func printable(s string) string {
	for _, r := range s {
		if !strconv.IsPrint(r) || r == '\t' {
			return strconv.Quote(s)
		}
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
