#!/usr/bin/env bash
# Consumer check: fetch the published modules the way a user does, from a
# module proxy, before anything is tagged. It serves the working tree as
# $AXES_RELEASE_VERSION (default v0.1.0, the version the nested modules require
# of the root) of each published module from a file-system proxy, then, outside
# the workspace (GOWORK=off) and with an empty module cache:
#   - a new module runs `go get` of redisstore alone, then of the root, and its
#     `go mod tidy` finds every module at a version some go.mod requires (no
#     search for a module providing a package); it then runs a program that
#     uses axes, axeshttp and redisstore;
#   - `go install github.com/axes-go/axes/cmd/axesdemo@VERSION` succeeds (it is
#     refused if the command's go.mod has a replace directive) and the installed
#     demo runs its simulated attack;
#   - each workspace module without a replace directive (cmd/axesdemo) is tidy
#     against the provisional versions, apart from go.sum lines for them, which
#     can only be recorded once they are tagged (see RELEASING.md).
# Third-party modules come from the local module cache, then the usual proxy;
# only github.com/axes-go/axes/... skips the checksum database.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VERSION=${AXES_RELEASE_VERSION:-v0.1.0}
MOD=github.com/axes-go/axes
PUBLISHED=(. redisstore axesaudit axesgrpc axesmetrics cmd/axesdemo cmd/axesctl) # module directories users fetch

# Workspace modules, other than the root, that have no replace directive.
NOREPLACE=()
while read -r dir; do
	if [ "$dir" != "$REPO" ] && ! grep -q '^replace' "$dir/go.mod"; then NOREPLACE+=("$dir"); fi
done < <(go list -m -f '{{.Dir}}')

tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

# 1. The provisional proxy, built from the working tree.
(cd .ci/modproxy && GOWORK=off GOFLAGS=-mod=readonly \
	go run . -repo "$REPO" -out "$tmp/proxy" -version "$VERSION" "${PUBLISHED[@]}")

# 2. A consumer's environment: no workspace, a module cache of its own (so the
# provisional versions never enter the real cache), sums checked by the
# checksum database for everything but this repository's modules.
export GOPROXY="file://$tmp/proxy,file://$(go env GOMODCACHE)/cache/download,$(go env GOPROXY)"
export GOWORK=off GOMODCACHE="$tmp/modcache" GOBIN="$tmp/bin" GOFLAGS='-mod=mod -trimpath'
export GONOSUMDB=$MOD GOPRIVATE= GONOPROXY= GOTOOLCHAIN=local

mkdir "$tmp/consumer"
cd "$tmp/consumer"
go mod init example.com/consumer >/dev/null 2>&1
# One at a time, as users do: redisstore alone must bring a root it can use.
go get "$MOD/redisstore@$VERSION"
go get "$MOD@$VERSION"
go get "$MOD/axesgrpc@$VERSION" "$MOD/axesmetrics@$VERSION" "$MOD/axesaudit@$VERSION"
cat >main.go <<'GO'
package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/axes-go/axes"
	"github.com/axes-go/axes/axesaudit"
	"github.com/axes-go/axes/axesgrpc"
	"github.com/axes-go/axes/axeshttp"
	"github.com/axes-go/axes/axesmetrics"
	"github.com/axes-go/axes/axesmetrics/axesotel"
	"github.com/axes-go/axes/axesmetrics/axesprom"
	"github.com/axes-go/axes/redisstore"
	"github.com/axes-go/axes/store"
)

// The Redis store must satisfy the store interface, and the
// integrations must build against the released root.
var (
	_ store.Store                    = (*redisstore.Store)(nil)
	_ func(string) (*sql.DB, error)  = axesaudit.OpenSQLite
	_ axesmetrics.Observer           = (*axesprom.DecisionObserver)(nil)
	_ axesmetrics.Observer           = (*axesotel.DecisionObserver)(nil)
	_ func(*axes.Limiter, ...axesgrpc.Option) (*axesgrpc.Interceptor, error) = axesgrpc.New
)

func main() {
	lim := axes.Must(axes.New(axes.Policy{Limit: 2, Cooloff: axes.Backoff{Base: time.Minute}}))
	defer lim.Close()
	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized) // every password is wrong
	})
	h := axeshttp.Must(axeshttp.New(lim, axeshttp.WithUsername(axeshttp.FormField("username"))))(login)
	var codes []int
	for range 3 {
		req := httptest.NewRequest(http.MethodPost, "/login", nil)
		req.RemoteAddr = "203.0.113.7:4242"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		codes = append(codes, rec.Code)
	}
	fmt.Println(codes, lim.Locked(axes.Key{IP: netip.MustParseAddr("203.0.113.7")}))
}
GO
# Tidy finds every module at the version some go.mod requires: none of the
# repository's modules leaves an import to be resolved by a search for the
# latest version of whatever module provides it.
tidy=$(go mod tidy 2>&1) || { printf '%s\n' "$tidy"; exit 1; }
if printf '%s\n' "$tidy" | grep 'finding module for package'; then
	echo "go mod tidy in a consumer had to look up modules: a go.mod above is not tidy"; exit 1
fi
got=$(go run .)
want='[401 401 429] true'
if [ "$got" != "$want" ]; then
	echo "consumer program printed $got, want $want"; exit 1
fi
echo "consumer program: $got"

# 3. The demo, installed as users install it.
go install "$MOD/cmd/axesdemo@$VERSION"
report=$("$GOBIN/axesdemo" -attack) # the simulated attack, on a loopback port
printf '%s\n' "$report" | grep '^Limit held' || { printf '%s\n' "$report"; exit 1; }
go install "$MOD/cmd/axesctl@$VERSION"
usage=$("$GOBIN/axesctl" -h 2>&1) || { echo "axesctl -h failed: $usage"; exit 1; }
[[ $usage == usage:* ]] || { echo "axesctl -h printed no usage: $usage"; exit 1; }
echo "axesctl installed"

# 4. Workspace modules without a replace directive (cmd/axesdemo) resolve the
# root and redisstore through the provisional proxy: their go.mod must be
# tidy, and their go.sum may lack only the lines of the provisional versions.
# .ci/run checks the root and the modules with a replace directive.
for dir in "${NOREPLACE[@]}"; do
	cd "$dir"
	if diff=$(go mod tidy -diff); then
		diff=
	elif [ -z "$diff" ]; then
		echo "go mod tidy failed in $dir"; exit 1
	fi
	extra=$(printf '%s\n' "$diff" | grep -E '^[-+][^-+]' |
		grep -vE "^\+$MOD(/redisstore|/axesaudit)? $VERSION(/go\.mod)? h1:" || true)
	if [ -n "$extra" ]; then
		echo "$dir is not tidy:"; printf '%s\n' "$diff"; exit 1
	fi
	echo "${dir#"$REPO"/}: tidy"
done
