#!/usr/bin/env bats
# The etcd cluster helper (tests/tools/etcd_cluster.bash) that the --etcd
# tests build on: a 3-member cluster comes up, replicates, survives losing a
# member, takes it back, and goes away completely.

load ../tools/etcd_cluster

setup_file() {
	# scripts/setup installs them: missing, they are a failure, not a skip
	command -v etcd >/dev/null && command -v etcdctl >/dev/null || {
		echo "etcd-server and etcd-client are not installed" >&2
		return 1
	}
	etcd_cluster_start 3
}

teardown_file() {
	etcd_cluster_stop
}

@test "etcd_cluster: three members, each with its own client URL" {
	local urls
	urls=$(etcd_cluster_urls)
	[ "$urls" = "$ETCD_ENDPOINTS" ]
	[ "$(tr ',' '\n' <<<"$urls" | sort -u | wc -l)" -eq 3 ]
	[ "$(etcdctl --endpoints="$urls" member list | wc -l)" -eq 3 ]
	[ "$(etcd_cluster_running | wc -l)" -eq 3 ]
}

@test "etcd_cluster: a put on one member is read on another" {
	etcdctl --endpoints="$(etcd_member_url m1)" put /kstatefs/t hello
	run etcdctl --endpoints="$(etcd_member_url m3)" get --print-value-only /kstatefs/t
	[ "$status" -eq 0 ]
	[ "$output" = hello ]
}

@test "etcd_cluster: one member stopped, the other two go on; back, it catches up" {
	etcd_member_stop m2
	[ -z "$(etcd_member_pid m2)" ]
	[ "$(etcd_cluster_running | wc -l)" -eq 2 ]
	etcdctl --endpoints="$(etcd_member_url m1)" --command-timeout=5s put /kstatefs/t again
	run etcdctl --endpoints="$(etcd_member_url m3)" get --print-value-only /kstatefs/t
	[ "$output" = again ]
	etcd_member_start m2
	[ -n "$(etcd_member_pid m2)" ]
	value_becomes m2 again
}

# value_becomes MEMBER VALUE: a read of /kstatefs/t from MEMBER gives VALUE
# within 20 s (a member just started or resumed may answer with an error,
# or a warning on stderr, for a moment).
value_becomes() {
	local url out= i
	url=$(etcd_member_url "$1")
	for ((i = 0; i < 40; i++)); do
		out=$(etcdctl --endpoints="$url" --command-timeout=5s get \
			--print-value-only /kstatefs/t 2>/dev/null) &&
			[ "$out" = "$2" ] && return 0
		sleep 0.5
	done
	echo "$1 gives '$out', expected '$2'"
	return 1
}

@test "etcd_cluster: a paused member answers nothing, resumed it does" {
	etcd_member_pause m3
	run etcdctl --endpoints="$(etcd_member_url m3)" --command-timeout=1s get /kstatefs/t
	[ "$status" -ne 0 ]
	etcd_member_resume m3
	value_becomes m3 again
}

@test "etcd_cluster: stopping the cluster leaves no etcd running" {
	local pids dir=$ETCD_CLUSTER_DIR pid
	pids=$(etcd_cluster_running)
	[ "$(wc -w <<<"$pids")" -eq 3 ]
	etcd_cluster_stop
	for pid in $pids; do
		! _etcd_alive "$pid"
	done
	[ ! -d "$dir" ]
	# nothing of ours by name either (other etcds on the host, of other
	# tests running at the same time, are not ours to judge); a killed
	# member whose parent has gone is a zombie until init reaps it: dead,
	# not running
	for pid in $(pgrep -f -- "$dir"); do
		! _etcd_alive "$pid"
	done
}
