package main

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the command's worker processes,
// which the command starts by running its own executable again.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "-worker" {
		if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString("loadtest worker: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestOneCell runs one short cell (standalone Redis, one process, the lock
// cache on) and checks that the table reports decisions and sane figures.
func TestOneCell(t *testing.T) {
	addr := envOr("AXES_REDIS_ADDR", "127.0.0.1:6390")
	if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
		msg := "Redis at " + addr + " is not reachable (" + err.Error() + "); run .ci/redis.sh start"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	} else {
		c.Close()
	}
	var out bytes.Buffer
	err := run([]string{"-duration", "1s", "-procs", "1", "-clients", "8", "-topology", "standalone", "-cache", "on", "-addr", addr}, strings.NewReader(""), &out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header, a rule and one row, got:\n%s", out.String())
	}
	var cols []string
	for _, f := range strings.Split(lines[2], "|") {
		cols = append(cols, strings.TrimSpace(f))
	}
	// | topology | cache | N × M | decisions/s | users | users p50 / p99 | attacks p50 / p99 | CPU | trips | cached | errors |
	if len(cols) != 13 || cols[1] != "standalone" || cols[2] != "on" || cols[3] != "1 × 8" {
		t.Fatalf("unexpected row %q", lines[2])
	}
	num := func(s string) float64 {
		t.Helper()
		f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil {
			t.Fatalf("column %q in %q: %v", s, lines[2], err)
		}
		return f
	}
	if d, u := num(cols[4]), num(cols[5]); d <= 0 || u <= 0 || u > d {
		t.Errorf("decisions/s %v, of which users %v", d, u)
	}
	for _, pair := range cols[6:8] {
		p50, p99, ok := strings.Cut(pair, " / ")
		if !ok || num(p50) > num(p99) || num(p99) > 1e6 {
			t.Errorf("latencies %q: want p50 <= p99 under a second", pair)
		}
	}
	if cpu := num(cols[8]); cpu < 0 || cpu > 1e5 {
		t.Errorf("Redis CPU %v µs per decision", cpu)
	}
	if trips := num(cols[9]); trips <= 0 || trips > 2 {
		t.Errorf("%v round trips per decision", trips)
	}
	if cached := num(cols[10]); cached <= 0 || cached >= 100 {
		t.Errorf("%v%% from the cache: the attacks should be refused from it, the users not", cached)
	}
	if num(cols[11]) != 0 {
		t.Errorf("%s errors", cols[11])
	}
}
