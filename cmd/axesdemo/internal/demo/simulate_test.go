package demo

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/axes-go/axes"
)

func TestSimulate(t *testing.T) {
	var progress bytes.Buffer
	rep, err := Simulate(context.Background(), SimConfig{Addr: "127.0.0.1:0", Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, &progress)
}

// TestSimulateOnRedis runs the same attack on the Redis store, as
// `axesdemo -attack -redis addr` does, under a prefix of its own.
func TestSimulateOnRedis(t *testing.T) {
	addr := testRedisAddr(t)
	o := RedisOptions([]byte(DefaultSecret), true, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.Prefix = testPrefix()
	var progress bytes.Buffer
	rep, err := Simulate(context.Background(), SimConfig{Addr: "127.0.0.1:0", Store: testRedisStore(t, addr, o), Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, &progress)
}

// checkReport checks the figures of a simulation's report.
func checkReport(t *testing.T, rep *Report, progress *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	if _, err := rep.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s%s", progress.String(), out.String())

	limit := Policy().Limit
	if rep.Limit != limit {
		t.Errorf("report limit %d, policy limit %d", rep.Limit, limit)
	}

	// No guess beyond the limit reached the password check, in any
	// dimension.
	if len(rep.Check.Violations) > 0 {
		t.Errorf("limit breached:\n%s", strings.Join(rep.Check.Violations, "\n"))
	}
	if rep.Check.MaxPerCycle != limit {
		t.Errorf("most failed guesses in one lock cycle = %d, want exactly the limit %d", rep.Check.MaxPerCycle, limit)
	}

	// The legitimate users get in, the attackers do not.
	legit, ok := rep.Scenario(ScenarioLegit)
	if !ok || legit.Wanted == 0 || legit.Logins != legit.Wanted {
		t.Errorf("legitimate users: %+v, want every wanted login to succeed", legit)
	}
	if legit.Refused != 0 {
		t.Errorf("legitimate users were refused %d times", legit.Refused)
	}
	devices, ok := rep.Scenario(ScenarioDevices)
	if !ok || devices.Wanted == 0 || devices.Logins != devices.Wanted || devices.Refused != devices.Wanted {
		t.Errorf("trusted devices: %+v, want every usual browser signed in and every new one refused during the attack", devices)
	}
	if n := rep.Total.Logins - legit.Logins - devices.Logins; n != 0 {
		t.Errorf("attackers signed in %d times", n)
	}

	// Totals add up, per scenario and between the clients and the server.
	var sum ScenarioResult
	for _, s := range rep.Scenarios {
		if s.Sent != s.Checked+s.Refused+s.Errors {
			t.Errorf("%s: sent %d != checked %d + refused %d + errors %d", s.Name, s.Sent, s.Checked, s.Refused, s.Errors)
		}
		if s.Errors != 0 {
			t.Errorf("%s: %d errors", s.Name, s.Errors)
		}
		if s.Sent == 0 {
			t.Errorf("%s: sent nothing", s.Name)
		}
		sum.Sent += s.Sent
		sum.Checked += s.Checked
		sum.Refused += s.Refused
		sum.Logins += s.Logins
	}
	if sum.Sent != rep.Total.Sent || sum.Checked != rep.Total.Checked || sum.Refused != rep.Total.Refused || sum.Logins != rep.Total.Logins {
		t.Errorf("total %+v does not add up to %+v", rep.Total, sum)
	}
	srv := rep.Server
	if int(srv.Checks) != rep.Total.Checked {
		t.Errorf("server checked %d passwords, clients saw %d reach the check", srv.Checks, rep.Total.Checked)
	}
	if int(srv.Logins) != rep.Total.Logins || int(srv.Successes) != rep.Total.Logins {
		t.Errorf("server logins %d, limiter successes %d, clients %d", srv.Logins, srv.Successes, rep.Total.Logins)
	}
	if int(srv.Failures) != rep.Total.Checked-rep.Total.Logins {
		t.Errorf("limiter counted %d failures, clients saw %d wrong passwords", srv.Failures, rep.Total.Checked-rep.Total.Logins)
	}
	var refused uint64
	for _, n := range srv.RefusedBy {
		refused += n
	}
	if int(refused) != rep.Total.Refused {
		t.Errorf("server refused %d (%v), clients saw %d refusals", refused, srv.RefusedBy, rep.Total.Refused)
	}

	// Each scenario was stopped by the limiter, within its bound.
	stuffing, _ := rep.Scenario(ScenarioStuffing)
	if clients := stuffingBots + 1; stuffing.Checked > limit*clients || stuffing.Refused == 0 {
		t.Errorf("stuffing: %+v; want at most %d checks (%d clients × limit) and some refusals", stuffing, limit*clients, clients)
	}
	for _, name := range []string{ScenarioSpray, ScenarioSlow} {
		s, _ := rep.Scenario(name)
		if s.Refused == 0 || s.Checked >= s.Sent {
			t.Errorf("%s: %+v; want refusals", name, s)
		}
	}
	if srv.LockoutsBy[axes.IP] == 0 || srv.LockoutsBy[axes.Username] == 0 {
		t.Errorf("lockouts by dimension %v; want both ip and username", srv.LockoutsBy)
	}
	if rep.Simulated < sprayDuration+slowDuration {
		t.Errorf("simulated %v, want at least %v", rep.Simulated, sprayDuration+slowDuration)
	}
	if rep.P50 <= 0 || rep.P99 < rep.P50 {
		t.Errorf("latency p50 %v p99 %v", rep.P50, rep.P99)
	}
}
