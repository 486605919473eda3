#!/usr/bin/env bash
# Starts (or stops) the throwaway PostgreSQL server the axesaudit tests use:
# a cluster of its own in a temporary directory, listening on 127.0.0.1:5490
# only, with trust authentication for the postgres user, and a database
# named axes. `start` prints the env var the tests read:
#   AXES_POSTGRES_DSN=postgres://postgres@127.0.0.1:5490/axes?sslmode=disable
# Installs Debian's postgresql package if initdb and pg_ctl are missing.
# Both commands are idempotent: `start` reuses a server that already answers
# on the port, `stop` does nothing when none runs.
#
# usage: .ci/postgres.sh start|stop
set -euo pipefail

PORT=${AXES_POSTGRES_PORT:-5490}
DIR=${AXES_POSTGRES_DIR:-/tmp/axes-postgres}
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
# The server runs as the postgres user, who may not enter the caller's
# directory.
cd /
DB=axes
DSN="postgres://postgres@127.0.0.1:$PORT/$DB?sslmode=disable"

log() { echo "postgres.sh: $*" >&2; }

# bindir prints the directory holding initdb and pg_ctl, or nothing.
bindir() {
	local d
	# Debian keeps the server binaries out of PATH, one directory per major
	# version; take the newest.
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			echo "$d"
			return
		fi
	done
	if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
		dirname "$(command -v pg_ctl)"
	fi
}

install() {
	if [ -n "$(bindir)" ]; then
		return
	fi
	log "installing postgresql"
	local sudo=""
	if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
	# The package may start a system cluster on 5432; the tests do not use it.
	if [ -z "$(bindir)" ]; then
		log "initdb and pg_ctl not found after installing postgresql"
		exit 1
	fi
}

# as_owner runs a command as the cluster's owner: initdb and postgres refuse
# to run as root, so root runs them as the postgres user.
as_owner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

up() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; }

psql_() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }

start() {
	install
	BIN=$(bindir)
	if up; then
		log "port $PORT already answers; reusing it"
	else
		if [ ! -f "$DIR/data/PG_VERSION" ]; then
			rm -rf "$DIR"
			mkdir -p "$DIR"
			if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR"; fi
			chmod 700 "$DIR"
			as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust \
				--encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 || {
				cat "$DIR/initdb.log" >&2
				exit 1
			}
			# Loopback only, nothing durable: a test database that is thrown away.
			cat >>"$DIR/data/postgresql.conf" <<-EOF
				listen_addresses = '127.0.0.1'
				port = $PORT
				unix_socket_directories = '$DIR'
				fsync = off
				synchronous_commit = off
				full_page_writes = off
			EOF
			cat >"$DIR/data/pg_hba.conf" <<-EOF
				local all all trust
				host all all 127.0.0.1/32 trust
			EOF
		fi
		as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >/dev/null || {
			log "server did not start; log:"
			cat "$DIR/server.log" >&2 || true
			exit 1
		}
	fi
	for _ in $(seq 100); do
		if up; then break; fi
		sleep 0.1
	done
	if ! up; then
		log "server on port $PORT does not answer"
		exit 1
	fi
	if [ -z "$(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
		psql_ -d postgres -c "CREATE DATABASE $DB"
	fi
	echo "AXES_POSTGRES_DSN=$DSN"
}

stop() {
	BIN=$(bindir)
	if [ -n "$BIN" ] && [ -f "$DIR/data/postmaster.pid" ]; then
		as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null || true
	fi
	rm -rf "$DIR"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
