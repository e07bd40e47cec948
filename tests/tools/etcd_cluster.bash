# Real etcd clusters for the tests: 1 or 3 (or N) members on free loopback
# ports, everything (data, logs, pids) in one directory.  Source it (bats:
# `load ../tools/etcd_cluster`), then:
#
#   etcd_cluster_start N [DIR]   starts members m1..mN with data in DIR
#                                (default: a new temp dir), waits until each
#                                is healthy, exports ETCD_CLUSTER_DIR and
#                                ETCD_ENDPOINTS (the client URLs, comma
#                                separated); returns non-zero on failure
#                                (with the members' log tails on stderr)
#   etcd_cluster_urls            prints the client URLs, comma separated
#   etcd_member_names            prints the member names, one a line
#   etcd_member_url NAME         prints NAME's client URL
#   etcd_member_pid NAME         prints NAME's PID (nothing if stopped)
#   etcd_member_stop NAME        stops NAME (SIGTERM, then SIGKILL after 5 s)
#   etcd_member_start NAME       starts NAME again (its data kept) and waits
#                                until it is healthy
#   etcd_member_pause NAME       SIGSTOP: running, silent (a hung member)
#   etcd_member_resume NAME      SIGCONT
#   etcd_cluster_stop            stops every member by PID and waits until
#                                they are gone; removes the directory if
#                                etcd_cluster_start made it
#   etcd_cluster_running         prints the PIDs of this cluster's etcds
#                                still alive (nothing when all are gone)
#
# Every process is found by the PID it was started with (DIR/NAME.pid), never
# by name: other etcds on the host (the Debian package runs one on 2379) are
# left alone.  Needs etcd, etcdctl (Debian etcd-server, etcd-client) and
# python3 (to find free ports).

: "${ETCD_CLUSTER_DIR:=}"
: "${ETCD_ENDPOINTS:=}"

# _etcd_free_ports N: N distinct loopback ports nobody listens on now.
_etcd_free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# _etcd_alive PID: the process exists and is not a zombie.
_etcd_alive() {
	local state
	[ -n "$1" ] || return 1
	state=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) ||
		return 1
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# _etcd_field NAME FIELD: client|peer URL of member NAME.
_etcd_field() {
	awk -v n="$1" -v f="$2" '$1 == n { print (f == "client" ? $2 : $3) }' \
		"$ETCD_CLUSTER_DIR/members"
}

etcd_member_names() {
	awk '{ print $1 }' "$ETCD_CLUSTER_DIR/members"
}

etcd_member_url() {
	_etcd_field "$1" client
}

etcd_cluster_urls() {
	awk '{ printf "%s%s", (NR > 1 ? "," : ""), $2 } END { print "" }' \
		"$ETCD_CLUSTER_DIR/members"
}

etcd_member_pid() {
	local pid
	pid=$(cat "$ETCD_CLUSTER_DIR/$1.pid" 2>/dev/null) || return 0
	if _etcd_alive "$pid"; then
		echo "$pid"
	fi
}

# _etcd_launch NAME: starts member NAME in the background.
_etcd_launch() {
	local name=$1 dir=$ETCD_CLUSTER_DIR client peer
	client=$(_etcd_field "$name" client)
	peer=$(_etcd_field "$name" peer)
	# fd 3 closed: bats waits for it, and etcd outlives the test's step.
	etcd --name "$name" --data-dir "$dir/$name.data" \
		--listen-client-urls "$client" --advertise-client-urls "$client" \
		--listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
		--initial-cluster "$(cat "$dir/cluster")" \
		--initial-cluster-state new \
		--initial-cluster-token "kstatefs-test-$$" \
		--logger zap --log-level warn \
		>>"$dir/$name.log" 2>&1 </dev/null 3>&- &
	echo $! >"$dir/$name.pid"
}

# _etcd_wait_healthy NAME...: until each answers a health check (20 s).
_etcd_wait_healthy() {
	local name i
	for name in "$@"; do
		for i in $(seq 1 80); do
			if ! _etcd_alive "$(cat "$ETCD_CLUSTER_DIR/$name.pid")"; then
				echo "etcd_cluster: $name exited" >&2
				tail -n 5 "$ETCD_CLUSTER_DIR/$name.log" >&2
				return 1
			fi
			if etcdctl --endpoints="$(etcd_member_url "$name")" \
				--command-timeout=1s endpoint health \
				>/dev/null 2>&1; then
				continue 2
			fi
			sleep 0.25
		done
		echo "etcd_cluster: $name not healthy after 20 s" >&2
		tail -n 5 "$ETCD_CLUSTER_DIR/$name.log" >&2
		return 1
	done
}

etcd_cluster_start() {
	local n=${1:-1} dir=${2:-} attempt i ports cluster name
	local -a p
	if [ -z "$dir" ]; then
		dir=$(mktemp -d "${TMPDIR:-/tmp}/kstatefs-etcd-cluster.XXXXXX") ||
			return 1
		touch "$dir/.made_by_etcd_cluster"
	fi
	mkdir -p "$dir" || return 1
	export ETCD_CLUSTER_DIR=$dir
	# A port taken between picking and binding makes a member exit: try
	# again with new ports, and new data.
	for attempt in 1 2 3; do
		ports=$(_etcd_free_ports $((2 * n))) || return 1
		read -r -a p <<<"$ports"
		: >"$dir/members"
		cluster=
		for ((i = 1; i <= n; i++)); do
			name=m$i
			echo "$name http://127.0.0.1:${p[2 * i - 2]} http://127.0.0.1:${p[2 * i - 1]}" \
				>>"$dir/members"
			cluster+="${cluster:+,}$name=http://127.0.0.1:${p[2 * i - 1]}"
		done
		echo "$cluster" >"$dir/cluster"
		for name in $(etcd_member_names); do
			rm -rf "${dir:?}/$name.data"
			_etcd_launch "$name"
		done
		# shellcheck disable=SC2046
		if _etcd_wait_healthy $(etcd_member_names); then
			ETCD_ENDPOINTS=$(etcd_cluster_urls)
			export ETCD_ENDPOINTS
			return 0
		fi
		_etcd_kill_all
	done
	return 1
}

etcd_member_stop() {
	local pid i
	pid=$(etcd_member_pid "$1")
	[ -n "$pid" ] || return 0
	kill -CONT "$pid" 2>/dev/null   # a paused member can't act on TERM
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 1 50); do
		_etcd_alive "$pid" || break
		sleep 0.1
	done
	if _etcd_alive "$pid"; then
		kill -KILL "$pid" 2>/dev/null
	fi
	# reap it if it is our child; otherwise its parent (or init) will
	wait "$pid" 2>/dev/null || true
	for i in $(seq 1 50); do
		_etcd_alive "$pid" || return 0
		sleep 0.1
	done
	echo "etcd_cluster: $1 (pid $pid) would not stop" >&2
	return 1
}

etcd_member_start() {
	[ -z "$(etcd_member_pid "$1")" ] || return 0
	_etcd_launch "$1"
	_etcd_wait_healthy "$1"
}

etcd_member_pause() {
	local pid
	pid=$(etcd_member_pid "$1")
	[ -n "$pid" ] && kill -STOP "$pid"
}

etcd_member_resume() {
	local pid
	pid=$(etcd_member_pid "$1")
	[ -n "$pid" ] && kill -CONT "$pid"
}

etcd_cluster_running() {
	local name pid
	[ -n "$ETCD_CLUSTER_DIR" ] && [ -f "$ETCD_CLUSTER_DIR/members" ] ||
		return 0
	for name in $(etcd_member_names); do
		pid=$(etcd_member_pid "$name")
		if [ -n "$pid" ]; then
			echo "$pid"
		fi
	done
}

_etcd_kill_all() {
	local name status=0
	for name in $(etcd_member_names); do
		etcd_member_stop "$name" || status=1
	done
	return $status
}

etcd_cluster_stop() {
	local status=0
	[ -n "$ETCD_CLUSTER_DIR" ] && [ -f "$ETCD_CLUSTER_DIR/members" ] ||
		return 0
	_etcd_kill_all || status=1
	if [ "$status" -eq 0 ] && [ -f "$ETCD_CLUSTER_DIR/.made_by_etcd_cluster" ]; then
		rm -rf "${ETCD_CLUSTER_DIR:?}"
		ETCD_CLUSTER_DIR=
	fi
	return $status
}
