#!/usr/bin/env bash
# Starts (or stops) Redis with replicas, for the failover tests and the WAIT
# benchmark of redisstore:
#   Sentinel: one primary, one replica and three sentinels (master name
#             "axes", down-after-milliseconds 500, failover-timeout 2000);
#   Cluster:  three masters, each with one replica (cluster-node-timeout
#             1000, replicas always allowed to take over).
# Every server is a redis-server process (sentinels are `redis-server
# --sentinel`), daemonized, with its files in DIR/<port>/ (redis.pid,
# redis.log). `start` prints the env vars with the addresses:
#   AXES_REDIS_SENTINEL=host:port,...   the three sentinels
#   AXES_REDIS_SENTINEL_MASTER=axes
#   AXES_REDIS_HA_CLUSTER=host:port,...  the six cluster nodes
#   AXES_REDIS_HA_DIR=DIR
# Ports (none collides with redis.sh's 6390 and 7390-7392) may be set with
#   AXES_HA_SENTINEL_PORTS="primary replica sentinel1 sentinel2 sentinel3"
#   AXES_HA_CLUSTER_PORTS="six ports"  (each port+10000 is its cluster bus)
# and AXES_HA_TOPOLOGY=sentinel|cluster|both (default both), so that a test
# can start a fresh topology of its own in a directory of its own, kill a
# primary, and stop it all. Installs redis-server from Debian's packages if
# it is missing.
#
# usage: .ci/redis-ha.sh start|stop [DIR]
set -euo pipefail

DIR=${2:-${AXES_REDIS_HA_DIR:-${TMPDIR:-/tmp}/axes-redis-ha}}
SENTINEL_PORTS=(${AXES_HA_SENTINEL_PORTS:-6490 6491 26490 26491 26492})
CLUSTER_PORTS=(${AXES_HA_CLUSTER_PORTS:-7490 7491 7492 7493 7494 7495})
TOPOLOGY=${AXES_HA_TOPOLOGY:-both}
MASTER=axes

log() { echo "redis-ha.sh: $*" >&2; }

# install: redis.sh's (Debian's redis-server if it is missing).
install() { "$(dirname "$0")/redis.sh" install; }

cli() { redis-cli -h 127.0.0.1 -p "$@"; }

# until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1s.
until_ok() {
	local n=$(($1 * 10)) what=$2
	shift 2
	for _ in $(seq "$n"); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	log "$what: not ready after ${n}00ms"
	for f in "$DIR"/*/redis.log; do
		echo "--- $f" >&2
		tail -n 20 "$f" >&2
	done
	return 1
}

up() { cli "$1" ping 2>/dev/null | grep -q PONG; }

server() { # port [extra args...]
	local port=$1
	shift
	if up "$port"; then
		log "port $port already answers; stop it first (or choose other ports)"
		return 1
	fi
	mkdir -p "$DIR/$port"
	rm -f "$DIR/$port/nodes.conf" "$DIR/$port/dump.rdb"
	redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
		--dir "$DIR/$port" --pidfile "$DIR/$port/redis.pid" --logfile "$DIR/$port/redis.log" \
		--save "" --appendonly no --maxmemory-policy noeviction \
		--repl-diskless-sync yes --repl-diskless-sync-delay 0 "$@"
	until_ok 10 "server on port $port" up "$port"
}

link_up() { cli "$1" info replication | grep -q 'master_link_status:up'; }

sentinel_ready() { # port: knows the two other sentinels and the replica
	local m
	m=$(cli "$1" sentinel master "$MASTER" | tr '\n' ' ')
	[[ $m == *"num-other-sentinels 2 "* && $m == *"num-slaves 1 "* ]]
}

start_sentinel() {
	local primary=${SENTINEL_PORTS[0]} replica=${SENTINEL_PORTS[1]}
	server "$primary"
	server "$replica" --replicaof 127.0.0.1 "$primary"
	for p in "${SENTINEL_PORTS[@]:2}"; do
		mkdir -p "$DIR/$p"
		cat >"$DIR/$p/sentinel.conf" <<EOF
port $p
bind 127.0.0.1
daemonize yes
dir $DIR/$p
pidfile $DIR/$p/redis.pid
logfile $DIR/$p/redis.log
sentinel resolve-hostnames no
sentinel monitor $MASTER 127.0.0.1 $primary 2
sentinel down-after-milliseconds $MASTER 500
sentinel failover-timeout $MASTER 2000
sentinel parallel-syncs $MASTER 1
EOF
		redis-server "$DIR/$p/sentinel.conf" --sentinel
	done
	until_ok 10 "replica of $primary" link_up "$replica"
	for p in "${SENTINEL_PORTS[@]:2}"; do
		until_ok 20 "sentinel on port $p" sentinel_ready "$p"
	done
	local s
	s=$(printf '127.0.0.1:%s,' "${SENTINEL_PORTS[@]:2}")
	echo "AXES_REDIS_SENTINEL=${s%,}"
	echo "AXES_REDIS_SENTINEL_MASTER=$MASTER"
}

cluster_ready() { # every node sees the state ok, three masters with a connected replica each
	for p in "${CLUSTER_PORTS[@]}"; do
		cli "$p" cluster info | grep -q 'cluster_state:ok' || return 1
		[ "$(cli "$p" cluster nodes | grep -c 'slave.* connected')" = 3 ] || return 1
	done
	for p in "${CLUSTER_PORTS[@]}"; do
		if cli "$p" role | head -1 | grep -q slave; then link_up "$p" || return 1; fi
	done
}

start_cluster() {
	for p in "${CLUSTER_PORTS[@]}"; do
		server "$p" --cluster-enabled yes --cluster-config-file nodes.conf \
			--cluster-node-timeout 1000 --cluster-replica-validity-factor 0
	done
	local addrs=()
	for p in "${CLUSTER_PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/cluster-create.log" 2>&1 || {
		cat "$DIR/cluster-create.log" >&2
		return 1
	}
	until_ok 30 "cluster" cluster_ready
	local cl
	cl=$(printf '127.0.0.1:%s,' "${CLUSTER_PORTS[@]}")
	echo "AXES_REDIS_HA_CLUSTER=${cl%,}"
}

start() {
	install
	mkdir -p "$DIR"
	case "$TOPOLOGY" in
	sentinel) start_sentinel ;;
	cluster) start_cluster ;;
	both) start_sentinel && start_cluster ;;
	*)
		log "unknown AXES_HA_TOPOLOGY $TOPOLOGY"
		return 2
		;;
	esac
	echo "AXES_REDIS_HA_DIR=$DIR"
}

stop() {
	[ -d "$DIR" ] || return 0
	for pidfile in "$DIR"/*/redis.pid; do
		[ -f "$pidfile" ] || continue
		local pid
		pid=$(cat "$pidfile")
		if kill "$pid" 2>/dev/null; then
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$pidfile"
	done
	rm -rf "$DIR"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
	echo "usage: $0 start|stop [DIR]" >&2
	exit 2
	;;
esac
