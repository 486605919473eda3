// Package benchmarks runs the same login-protection workloads on axes and on
// other Go rate limiters and caches, each adapted to one small contract:
// count failed attempts per key, and report the key locked once it reaches
// the limit, until the window has passed.
//
// It is its own module so that its dependencies never reach users of axes.
// The benchmarks are in bench_test.go; `go run ./cmd/report` runs them all and
// writes RESULTS.md and chart.svg. See README.md.
package benchmarks
