# Helpers for the --etcd end-to-end tests (SPEC 9): a real etcd cluster per
# test and several "hosts" on it, each a kstatefs daemon with its own
# mountpoint, all on the same key prefix.  Load with `load etcd_helpers`
# (it loads helpers and ../tools/etcd_cluster).
#
#   ks_etcd_start N        fails the test if etcd is not installed; starts an
#                          N-member cluster on free loopback ports
#                          (ETCD_ENDPOINTS) and picks a key prefix of this
#                          test's own ($KS_ETCD_PREFIX); teardown stops it
#   ks_mount_host NAME ARGS...
#                          mounts kstatefs ARGS at $BATS_TEST_TMPDIR/host.NAME,
#                          like ks_mount (foreground daemon, log, sanitizer
#                          options); sets $HOST_NAME to the mountpoint
#   ks_host NAME [ARGS...] ks_mount_host NAME --etcd $ETCD_ENDPOINTS
#                          --etcd-prefix $KS_ETCD_PREFIX ARGS...
#   ks_unmount_host NAME   unmounts NAME like ks_unmount: fails if the daemon
#                          had died, exited non-zero or logged a sanitizer
#                          report (NAME can be mounted again afterwards)
#   ks_host_pid NAME, ks_host_log NAME
#   ks_stat_value MNT KEY  the value of KEY in MNT/.stats
#   etcd_key_value KEY     the exact bytes of KEY in etcd on stdout; status 1
#                          if there is no such key
#   etcd_key_exists KEY    status 0 if KEY is in etcd
#   watch_version FILE OUT inotifywait -m -e modify FILE >OUT, in place
#   read_events MNT OUT    cat MNT/.events >OUT, the file open
#
# Teardown (ks_etcd_teardown, the default teardown of a file that loads
# this) kills ks_bg processes, unmounts every host and $MNT, then stops the
# cluster by PID; it fails the test if any daemon misbehaved.

load helpers
load ../tools/etcd_cluster

declare -gA KS_HOST_PID=() KS_HOST_MNT=() KS_HOST_LOG=()
KS_ETCD_PREFIX=
: "${KSTATE:=$KS_ROOT/build/client/kstate}"

ks_etcd_start() {
	# scripts/setup installs them: missing, they fail the test
	command -v etcd >/dev/null && command -v etcdctl >/dev/null || {
		echo "etcd-server and etcd-client are not installed" >&2
		return 1
	}
	KS_ETCD_PREFIX=/kstatefs-test/$$.$BATS_TEST_NUMBER.$RANDOM/
	etcd_cluster_start "${1:-1}"
}

ks_mount_host() {
	local name=$1
	shift
	local KS_MNT=$BATS_TEST_TMPDIR/host.$name MNT KS_PID KS_LOG
	if [ -n "${KS_HOST_PID[$name]:-}" ]; then
		echo "host $name is mounted already"
		return 1
	fi
	ks_mount "$@" || return 1
	KS_HOST_PID[$name]=$KS_PID
	KS_HOST_MNT[$name]=$MNT
	KS_HOST_LOG[$name]=$KS_LOG
	declare -g "HOST_$name=$MNT"
}

ks_host() {
	local name=$1
	shift
	ks_mount_host "$name" --etcd "$ETCD_ENDPOINTS" \
		--etcd-prefix "$KS_ETCD_PREFIX" "$@"
}

ks_unmount_host() {
	local name=$1
	local MNT=${KS_HOST_MNT[$name]:-} KS_PID=${KS_HOST_PID[$name]:-}
	local KS_LOG=${KS_HOST_LOG[$name]:-}
	[ -n "$KS_PID" ] || return 0
	unset "KS_HOST_PID[$name]"
	if ! ks_unmount; then
		echo "(that was host $name)"
		return 1
	fi
}

ks_host_pid() {
	echo "${KS_HOST_PID[$1]:-}"
}

ks_host_log() {
	echo "${KS_HOST_LOG[$1]:-}"
}

ks_etcd_teardown() {
	local bad=0 name
	ks_teardown || bad=1
	for name in "${!KS_HOST_PID[@]}"; do
		ks_unmount_host "$name" || bad=1
	done
	etcd_cluster_stop || bad=1
	return $bad
}

teardown() {
	ks_etcd_teardown
}

# ks_stat_value MNT KEY
ks_stat_value() {
	awk -v k="$2" '$1 == k { print $2; found = 1 } END { exit !found }' \
		"$1/.stats"
}

# ks_stat_is MNT KEY VALUE: for wait_for.
ks_stat_is() {
	[ "$(ks_stat_value "$1" "$2")" = "$3" ]
}

# ks_version_is STATE N: STATE/version reads N (for wait_for).
ks_version_is() {
	[ "$(cat "$1/version" 2>/dev/null)" = "$2" ]
}

# ks_data_is STATE TEXT: STATE/data holds exactly TEXT (for wait_for).
ks_data_is() {
	[ "$(od -An -c <"$1/data" 2>/dev/null)" = "$(printf %s "$2" | od -An -c)" ]
}

# ks_gone PATH: stat says ENOENT (for wait_for).
ks_gone() {
	[ "$(ks_errno stat "$1")" = ENOENT ]
}

etcd_key_value() {
	etcdctl --endpoints="$ETCD_ENDPOINTS" --command-timeout=10s \
		get "$1" -w json | python3 -c '
import base64, json, sys
kvs = json.load(sys.stdin).get("kvs") or []
if not kvs:
    sys.exit(1)
sys.stdout.buffer.write(base64.b64decode(kvs[0].get("value", "")))
'
}

etcd_key_exists() {
	etcd_key_value "$1" >/dev/null
}

# kstate ARGS...: the kstate command, bounded.
kstate() {
	[ -x "$KSTATE" ] || {
		echo "kstate not found: $KSTATE"
		return 1
	}
	timeout 60 "$KSTATE" "$@"
}

# watch_version FILE OUT: inotifywait -m -e modify FILE in the background,
# one line per event in OUT; returns once the watch is in place.
watch_version() {
	local err=$2.err
	: >"$2"
	ks_bg inotifywait -m -e modify --format '%e' "$1" >"$2" 2>"$err"
	wait_for 20 grep -q 'Watches established' "$err" || {
		cat "$err"
		return 1
	}
}

# read_events MNT OUT: cat MNT/.events >OUT in the background; returns once
# it has the file open (a reader sees the events after its open only).
read_events() {
	local mnt=$1 n
	n=$(ks_stat_value "$mnt" event_readers) || return 1
	ks_bg cat "$mnt/.events" >"$2"
	wait_for 20 eval '[ "$(ks_stat_value "$mnt" event_readers)" -gt "$n" ]'
}

# nlines FILE
nlines() {
	wc -l <"$1"
}
