// A throwaway module for CI's consumer check (.ci/consumer.sh): it is not part
// of the workspace and nothing imports it.
module modproxy

go 1.26.0

require golang.org/x/mod v0.43.0
