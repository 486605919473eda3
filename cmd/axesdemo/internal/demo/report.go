package demo

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/axes-go/axes"
)

// Report is the outcome of a simulated attack: what the clients saw, what
// the server counted, and whether the limit held.
type Report struct {
	Scenarios []ScenarioResult // per scenario, in the order they ran
	Total     ScenarioResult   // the sum of Scenarios, named "total"
	Server    Counts           // the server's own figures
	Limit     int              // the policy's limit
	Check     LimitCheck       // the ledger replayed against the policy
	P50, P99  time.Duration    // request latency percentiles, real time
	Simulated time.Duration    // simulated time that passed
	Elapsed   time.Duration    // real time the attack took
	Challenge *ChallengeResult // the challenge-before-lock run, if it ran
}

// Scenario returns the result of the named scenario, and whether it ran.
func (r *Report) Scenario(name string) (ScenarioResult, bool) {
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return ScenarioResult{}, false
}

// NewReport builds a Report from the attack's result, the server's figures
// and its ledger check.
func NewReport(res *AttackResult, counts Counts, limit int, check LimitCheck) *Report {
	r := &Report{
		Scenarios: res.Scenarios,
		Total:     ScenarioResult{Name: "total"},
		Server:    counts,
		Limit:     limit,
		Check:     check,
		Simulated: res.Simulated,
		Elapsed:   res.Elapsed,
	}
	for _, s := range res.Scenarios {
		r.Total.Sent += s.Sent
		r.Total.Checked += s.Checked
		r.Total.Refused += s.Refused
		r.Total.Errors += s.Errors
		r.Total.Logins += s.Logins
		r.Total.Wanted += s.Wanted
	}
	r.P50, r.P99 = percentile(res.Latencies, 0.50), percentile(res.Latencies, 0.99)
	return r
}

// percentile returns the p-quantile of ds (nearest rank), or 0 for none.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// WriteTo writes the report as text.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nAttack report: %v of simulated time in %v\n\n", r.Simulated, r.Elapsed.Round(time.Millisecond))
	const row = "%-20s %6v %22v %8v %7v %7v\n"
	fmt.Fprintf(&b, row, "scenario", "sent", "reached password check", "refused", "errors", "logins")
	for _, s := range append(slices.Clone(r.Scenarios), r.Total) {
		fmt.Fprintf(&b, row, s.Name, s.Sent, s.Checked, s.Refused, s.Errors, s.Logins)
	}

	b.WriteString("\nLockouts by dimension: ")
	b.WriteString(formatCounts(r.Server.LockoutsBy, func(f axes.Fields) string { return f.String() }))
	b.WriteString("\nRefused by reason:     ")
	b.WriteString(formatCounts(r.Server.RefusedBy, func(x axes.Reason) string { return x.String() }))
	fmt.Fprintf(&b, "\nPassword checks on the server: %d (%d successful)\n", r.Server.Checks, r.Server.Logins)
	legit, _ := r.Scenario(ScenarioLegit)
	fmt.Fprintf(&b, "Legitimate logins: %d of %d succeeded\n", legit.Logins, legit.Wanted)
	devices, _ := r.Scenario(ScenarioDevices)
	fmt.Fprintf(&b, "Trusted-device logins while bots held the username locked: %d of %d\n", devices.Logins, devices.Wanted)
	if names, ok := r.Scenario(ScenarioNames); ok {
		stops := make([]string, len(names.Stops))
		for i, n := range names.Stops {
			stops[i] = fmt.Sprint(n)
		}
		fmt.Fprintf(&b, "Username spray: %d addresses stopped after %s usernames each (refused for spraying: %d)\n",
			len(names.Stops), strings.Join(stops, ", "), r.Server.RefusedBy[axes.ReasonSpray])
	}
	r.writeChallenge(&b)
	attackerLogins := r.Total.Logins - legit.Logins - devices.Logins
	fmt.Fprintf(&b, "Attacker logins:   %d\n", attackerLogins)
	fmt.Fprintf(&b, "Latency: p50 %v, p99 %v over %d requests (loopback HTTP, real time)\n",
		roundLatency(r.P50), roundLatency(r.P99), r.Total.Sent-r.Total.Errors)
	if len(r.Check.Violations) == 0 {
		fmt.Fprintf(&b, "Limit held: at most %d failed guesses per IP or username reached the password check in any lock cycle (limit %d)\n",
			r.Check.MaxPerCycle, r.Limit)
	} else {
		fmt.Fprintf(&b, "LIMIT BREACHED: %d violations\n", len(r.Check.Violations))
		for i, v := range r.Check.Violations {
			if i == 10 {
				fmt.Fprintf(&b, "  ... and %d more\n", len(r.Check.Violations)-i)
				break
			}
			fmt.Fprintf(&b, "  %s\n", v)
		}
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func roundLatency(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(10 * time.Microsecond)
}

// formatCounts lists the non-zero counts of m as "name n, ...", in key order.
func formatCounts[K ~uint8](m map[K]uint64, name func(K) string) string {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", name(k), m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
