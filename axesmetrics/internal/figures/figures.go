// Package figures maps every field of axes.Stats to a metric, once, for
// both the Prometheus collector and the OpenTelemetry instruments.
package figures

import "github.com/axes-go/axes"

// Kind says how a figure behaves.
type Kind uint8

// The kinds of figure.
const (
	Counter Kind = iota // only grows (until the process restarts)
	Gauge               // goes up and down
)

// Figure is one metric read from axes.Stats.
type Figure struct {
	Field string // the axes.Stats field it reads, for the completeness test
	Kind  Kind
	Prom  string // Prometheus name, without namespace
	OTel  string // OpenTelemetry name, without the "axes." prefix
	Unit  string // UCUM unit for OpenTelemetry
	Help  string
	Attr  [2]string // one attribute (key, value) distinguishing figures of one name; empty if none
	Value func(*axes.Stats) float64
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// All lists the figures, every field of axes.Stats exactly once.
var All = []Figure{
	{"Entries", Gauge, "entries", "entries", "{entry}", "Entries the store holds now.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.Entries) }},
	{"Failures", Counter, "failures_total", "failures", "{failure}", "Failed attempts counted.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.Failures) }},
	{"Lockouts", Counter, "lockouts_total", "lockouts", "{lockout}", "Locks started, per dimension.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.Lockouts) }},
	{"Refused", Counter, "refused_total", "refusals", "{attempt}", "Attempts refused without reaching the password check.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.Refused) }},
	{"Successes", Counter, "successes_total", "successes", "{login}", "Successful logins recorded.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.Successes) }},
	{"Resets", Counter, "resets_total", "resets", "{reset}", "Reset, ResetIP, ResetUsername and ResetAll calls.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.Resets) }},
	{"EvictedExpired", Counter, "evictions_total", "evictions", "{entry}", "Entries evicted: expired ones held nothing worth keeping; pressure ones were live, evicted to make room under the entry cap.", [2]string{"reason", "expired"},
		func(s *axes.Stats) float64 { return float64(s.EvictedExpired) }},
	{"EvictedPressure", Counter, "evictions_total", "evictions", "{entry}", "Entries evicted: expired ones held nothing worth keeping; pressure ones were live, evicted to make room under the entry cap.", [2]string{"reason", "pressure"},
		func(s *axes.Stats) float64 { return float64(s.EvictedPressure) }},
	{"Overflows", Counter, "overflows_total", "overflows", "{key}", "Writes of keys that found no slot in the exact table (only locks remained), recorded in the sketch.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.Overflows) }},
	{"SketchFolds", Counter, "sketch_folds_total", "sketch.folds", "{entry}", "Live entries evicted under pressure whose counts folded into the store's sketch.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.SketchFolds) }},
	{"SketchDecisions", Counter, "sketch_decisions_total", "sketch.decisions", "{decision}", "Decisions made from the sketch's estimate, which may over-count: the store is under storage pressure.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.SketchDecisions) }},
	{"IdentitiesOverBudget", Counter, "identities_over_budget_total", "identities.over_budget", "{lock}", "Locks kept without their identity (listed by digest) because the identity budget was spent.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.IdentitiesOverBudget) }},
	{"StoreErrors", Counter, "store_errors_total", "store.errors", "{error}", "Store calls that failed.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.StoreErrors) }},
	{"Degraded", Gauge, "store_degraded", "store.degraded", "1", "1 while the store decides without its backend (a networked store's fallback), else 0.", [2]string{},
		func(s *axes.Stats) float64 { return b2f(s.Degraded) }},
	{"Degradations", Counter, "store_degradations_total", "store.degradations", "{degradation}", "Times the store lost its backend.", [2]string{},
		func(s *axes.Stats) float64 { return float64(s.Degradations) }},
}
