// Package store is what a store of axes state implements, apart from the
// user API of package axes, as database/sql/driver is apart from
// database/sql.
//
// A Limiter computes the digests of an attempt's dimensions and the Rule of
// its policy for that attempt, then hands each decision to its Store in one
// Request: the operation, the instant, the rule and the dimensions. The store
// applies Rule.Apply, the one state transition of the policy, to the
// dimensions' States and writes each dimension's Outcome. Rule.Refresh
// applies the passage of time and Rule.Horizon says how long a State must be
// kept, so that every store expires what it holds alike.
//
// The in-memory store that a Limiter uses by default lives in package axes;
// module github.com/axes-go/axes/redisstore implements this interface on
// Redis, and package github.com/axes-go/axes/storetest is the conformance
// suite every store must pass.
package store
