//go:build race

package axeshttp

// raceEnabled reports whether the race detector is on: it allocates on
// its own, so allocation counts are not checked under it.
const raceEnabled = true
