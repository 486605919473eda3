// Package memhook lets package store construct the memory store, which
// lives in package axes (that imports store): axes sets New when it is
// initialised.
package memhook

// New returns a memory store (a store.Store) holding at most maxEntries
// entries, under rule (a store.Rule). It is nil until package axes is
// initialised.
var New func(maxEntries int, rule any) (any, error)
