#!/usr/bin/env bash
# Starts (or stops) the Redis servers the redisstore tests use:
#   a standalone server on 127.0.0.1:6390 and
#   a three-master cluster on 127.0.0.1:7390, 7391 and 7392.
# The tests find them there by default; `start` prints the env vars that
# override those addresses (AXES_REDIS_ADDR, AXES_REDIS_CLUSTER).
# Installs redis-server from Debian's packages if it is missing.
#
# usage: .ci/redis.sh start|stop|install
set -euo pipefail

STANDALONE_PORT=${AXES_REDIS_PORT:-6390}
CLUSTER_PORTS=(${AXES_REDIS_CLUSTER_PORTS:-7390 7391 7392})
DIR=${AXES_REDIS_DIR:-${TMPDIR:-/tmp}/axes-redis}

log() { echo "redis.sh: $*" >&2; }

install() {
	if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
		return
	fi
	log "installing redis-server"
	local sudo=""
	if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
	# The package starts a system service on 6379; the tests do not use it.
}

up() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

wait_up() {
	for _ in $(seq 100); do
		if up "$1"; then return 0; fi
		sleep 0.1
	done
	log "server on port $1 did not start; log:"
	cat "$DIR/$1/redis.log" >&2 || true
	return 1
}

start_server() { # port [extra args...]
	local port=$1
	shift
	if up "$port"; then
		log "port $port already answers; reusing it"
		return
	fi
	mkdir -p "$DIR/$port"
	rm -f "$DIR/$port/nodes.conf" "$DIR/$port/dump.rdb"
	redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
		--dir "$DIR/$port" --pidfile "$DIR/$port/redis.pid" --logfile "$DIR/$port/redis.log" \
		--save "" --appendonly no --maxmemory-policy noeviction "$@"
	wait_up "$port"
}

start() {
	install
	start_server "$STANDALONE_PORT"
	for p in "${CLUSTER_PORTS[@]}"; do
		start_server "$p" --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000
	done
	local first=${CLUSTER_PORTS[0]}
	if ! redis-cli -p "$first" cluster info | grep -q 'cluster_state:ok'; then
		local addrs=()
		for p in "${CLUSTER_PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
		redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$DIR/cluster-create.log" 2>&1 || {
			cat "$DIR/cluster-create.log" >&2
			exit 1
		}
	fi
	for _ in $(seq 200); do
		local ok=1
		for p in "${CLUSTER_PORTS[@]}"; do
			redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0
		done
		if [ $ok = 1 ]; then break; fi
		sleep 0.1
	done
	if [ $ok != 1 ]; then
		log "cluster did not become ready"
		exit 1
	fi
	local cl
	cl=$(printf '127.0.0.1:%s,' "${CLUSTER_PORTS[@]}")
	echo "AXES_REDIS_ADDR=127.0.0.1:$STANDALONE_PORT"
	echo "AXES_REDIS_CLUSTER=${cl%,}"
}

stop() {
	for p in "$STANDALONE_PORT" "${CLUSTER_PORTS[@]}"; do
		local pidfile="$DIR/$p/redis.pid"
		if [ -f "$pidfile" ]; then
			local pid
			pid=$(cat "$pidfile")
			if kill "$pid" 2>/dev/null; then
				for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			fi
			rm -f "$pidfile"
		fi
	done
	rm -rf "$DIR"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
install) install ;;
*)
	echo "usage: $0 start|stop|install" >&2
	exit 2
	;;
esac
