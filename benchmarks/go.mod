module github.com/axes-go/axes/benchmarks

go 1.26.0

require (
	github.com/axes-go/axes v0.1.0
	github.com/axes-go/axes/redisstore v0.1.0
	github.com/hashicorp/golang-lru/v2 v2.0.7
	github.com/maypok86/otter/v2 v2.4.0
	github.com/patrickmn/go-cache v2.1.0+incompatible
	github.com/redis/go-redis/v9 v9.23.0
	github.com/sethvargo/go-limiter v0.7.1
	github.com/throttled/throttled/v2 v2.15.0
	github.com/ulule/limiter/v3 v3.11.2
	golang.org/x/time v0.16.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/hashicorp/golang-lru v0.5.4 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

// For development outside the workspace (GOWORK=off) only: builds that use
// this module as a dependency ignore replace directives and take the root at
// the version required above (see RELEASING.md).
replace (
	github.com/axes-go/axes => ..
	github.com/axes-go/axes/redisstore => ../redisstore
)
