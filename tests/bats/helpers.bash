# Shared helpers for the kstatefs end-to-end tests.  Load with `load helpers`.
#
#   ks_mount [OPTIONS...]  mounts a fresh kstatefs at $MNT, the daemon in the
#                          foreground (-f) in the background of the test, its
#                          stderr in $KS_LOG; returns once the mount is usable
#   ks_unmount             fusermount3 -u, waits for the daemon, and fails if
#                          it had died before (a crash), exited non-zero, or
#                          logged a sanitizer report
#   ks_bg CMD...           runs CMD in the background in its own session;
#                          teardown kills what is still running
#   ks_hold_version STATE  commits, and returns while the daemon's
#                          kstatefs-notify child holds STATE/version open
#                          (for 3 s, under strace)
#   ks_errno OP ARGS...    one system call (tests/tools/kserr.py): prints OK
#                          or the errno name
#   ks_py [-m MODULE] [ARGS...]
#                          runs the Python test body on standard input, its
#                          sys.argv[1:] being ARGS, with everything of
#                          tests/tools/MODULE.py imported: kstest (the
#                          default; states, commits by another process) or
#                          ksmount (a whole mount: .txn/, views, .events,
#                          .stats); timeout $KS_PY_TIMEOUT (120 s)
#
# The binary is $KSTATEFS (default build/fs/kstatefs).  A test file that
# defines its own teardown must call ks_teardown.

KS_ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
: "${KSTATEFS:=$KS_ROOT/build/fs/kstatefs}"
case $KSTATEFS in
/*) ;;
*/*) KSTATEFS=$PWD/$KSTATEFS ;;
*) KSTATEFS=$(command -v "$KSTATEFS" || echo "$KSTATEFS") ;;
esac
KS_TOOLS=$KS_ROOT/tests/tools
export KS_TOOLS
: "${BATS_TEST_TIMEOUT:=600}"

KS_SANITIZER_RE='ERROR: AddressSanitizer|runtime error:|LeakSanitizer|ThreadSanitizer|SUMMARY: UndefinedBehaviorSanitizer'

KS_PID=
KS_LOG=
KS_NMOUNTS=0
KS_BG_PIDS=()
KS_DAEMON_MNTS=()

# --- small assertions ------------------------------------------------------

# assert_eq ACTUAL EXPECTED [WHAT]
assert_eq() {
	if [ "$1" != "$2" ]; then
		printf '%s\n  expected: %q\n       got: %q\n' "${3:-values differ}" "$2" "$1"
		return 1
	fi
}

# assert_contains HAYSTACK NEEDLE [WHAT]
assert_contains() {
	if [[ "$1" != *"$2"* ]]; then
		printf '%s\n  expected to contain: %q\n                 got: %q\n' \
			"${3:-missing text}" "$2" "$1"
		return 1
	fi
}

# assert_file PATH BYTES: the file holds exactly BYTES (printf %b escapes).
assert_file() {
	local want got
	want=$(printf '%b' "$2" | od -An -c | tr -s ' \n' ' ')
	got=$(od -An -c <"$1" | tr -s ' \n' ' ') || return 1
	if [ "$want" != "$got" ]; then
		printf '%s\n  expected bytes: %s\n       got bytes: %s\n' "$1" "$want" "$got"
		return 1
	fi
}

# assert_version STATE N: STATE/version reads "N\n".
assert_version() {
	assert_file "$1/version" "$2\n"
}

# assert_errno EXPECTED OP ARGS...: the call fails with errno EXPECTED.
assert_errno() {
	local want=$1 got
	shift
	got=$(ks_errno "$@")
	assert_eq "$got" "$want" "$* should give $want"
}

# refute COMMAND...: COMMAND must fail.  (A bare `! cmd` never fails a test.)
refute() {
	if "$@"; then
		echo "unexpectedly succeeded: $*"
		return 1
	fi
}

# wait_for SECONDS COMMAND...: polls until COMMAND succeeds.
wait_for() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "timed out waiting for: $*"
			return 1
		fi
		sleep 0.05
	done
}

ks_errno() {
	timeout 30 python3 "$KS_TOOLS/kserr.py" "$@"
}

ks_py() {
	local module=kstest
	if [ "${1-}" = -m ]; then
		module=$2
		shift 2
	fi
	timeout "${KS_PY_TIMEOUT:-120}" python3 "$KS_TOOLS/kspy.py" "$module" "$@"
}

# --- processes -------------------------------------------------------------

ks_bg() {
	setsid "$@" </dev/null 3>&- &
	KS_BG_PIDS+=($!)
}

ks_kill_bg() {
	local p
	for p in "${KS_BG_PIDS[@]}"; do
		kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
	done
	for p in "${KS_BG_PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	KS_BG_PIDS=()
	return 0
}

# ks_alive PID: the process exists and is not a zombie.
ks_alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
	[ -n "$st" ] && [ "$st" != Z ]
}

# ks_is_mounted DIR, without touching the file system (a hung daemon must
# not hang the test).
ks_is_mounted() {
	awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# The sanitizer options of the daemon: reports also go to files next to the
# log, so that a daemonized kstatefs (stderr on /dev/null) is checked too.
ks_san_env() {
	local base=$BATS_TEST_TMPDIR/sanitizer
	echo "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$base"
	echo "UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$base"
}

# ks_sanitizer_check LOG: fails (printing the reports) if LOG or any
# sanitizer log file of this test holds a report.
ks_sanitizer_check() {
	local f bad=0
	for f in "$@" "$BATS_TEST_TMPDIR"/sanitizer*; do
		[ -f "$f" ] || continue
		if grep -Eq "$KS_SANITIZER_RE" "$f"; then
			echo "sanitizer report in $f:"
			cat "$f"
			bad=1
		fi
	done
	return $bad
}

# --- mounting --------------------------------------------------------------

ks_mount() {
	if [ ! -x "$KSTATEFS" ]; then
		echo "kstatefs binary not found: $KSTATEFS"
		return 1
	fi
	MNT=${KS_MNT:-$BATS_TEST_TMPDIR/mnt}
	mkdir -p "$MNT"
	KS_NMOUNTS=$((KS_NMOUNTS + 1))
	KS_LOG=$BATS_TEST_TMPDIR/kstatefs.$KS_NMOUNTS.log
	local -a env
	mapfile -t env < <(ks_san_env)
	env "${env[@]}" "$KSTATEFS" -f "$@" "$MNT" </dev/null >"$KS_LOG" 2>&1 3>&- &
	KS_PID=$!
	local i
	for ((i = 0; i < 200; i++)); do
		if ks_is_mounted "$MNT" && timeout 10 mountpoint -q "$MNT"; then
			return 0
		fi
		if ! ks_alive "$KS_PID"; then
			local st=0
			wait "$KS_PID" || st=$?
			KS_PID=
			echo "kstatefs $* $MNT exited with status $st before mounting; log:"
			cat "$KS_LOG"
			return 1
		fi
		sleep 0.05
	done
	echo "kstatefs did not mount $MNT within 10 s; log:"
	cat "$KS_LOG"
	return 1
}

ks_unmount() {
	[ -n "$KS_PID" ] || return 0
	local bad=0 pid=$KS_PID i st=0
	KS_PID=
	cd / || true
	if ! ks_alive "$pid"; then
		echo "kstatefs died before the unmount"
		bad=1
	fi
	for ((i = 0; i < 100; i++)); do
		ks_is_mounted "$MNT" || break
		timeout 20 fusermount3 -u "$MNT" 2>/dev/null && break
		sleep 0.1
	done
	if ks_is_mounted "$MNT"; then
		echo "fusermount3 -u $MNT kept failing; detaching it"
		fusermount3 -u "$MNT"
		fusermount3 -uz "$MNT"
		bad=1
	fi
	for ((i = 0; i < 400; i++)); do
		ks_alive "$pid" || break
		sleep 0.05
	done
	if ks_alive "$pid"; then
		echo "kstatefs still running 20 s after the unmount; killing it"
		kill -KILL "$pid"
		bad=1
	fi
	wait "$pid" || st=$?
	if [ "$st" -ne 0 ]; then
		echo "kstatefs exited with status $st"
		bad=1
	fi
	ks_sanitizer_check "$KS_LOG" || bad=1
	if [ "$bad" -ne 0 ]; then
		echo "--- kstatefs log ($KS_LOG):"
		cat "$KS_LOG"
	fi
	return $bad
}

# ks_daemon_pid MNT: the pid of a daemonized kstatefs serving MNT.
ks_daemon_pid() {
	local p cmd
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		case $cmd in
		*kstatefs*" $1 "*) echo "${p#/proc/}"; return 0 ;;
		esac
	done
	return 1
}

ks_teardown() {
	local bad=0 m pid
	cd / || true
	ks_kill_bg
	ks_unmount || bad=1
	for m in "${KS_DAEMON_MNTS[@]}"; do
		pid=$(ks_daemon_pid "$m")
		if ks_is_mounted "$m"; then
			fusermount3 -u "$m" || fusermount3 -uz "$m"
		fi
		if [ -n "$pid" ]; then
			wait_for 20 eval "! ks_alive $pid" || kill -KILL "$pid"
		fi
	done
	KS_DAEMON_MNTS=()
	return $bad
}

teardown() {
	ks_teardown
}

# --- the notifier's child -------------------------------------------------

# ks_notify_child: the pid of the kstatefs-notify child of the daemon
# $KS_PID, once there is exactly one.
ks_notify_child() {
	local pids
	pids=$(pgrep -x -P "$KS_PID" kstatefs-notify) || return 1
	[ "$(wc -l <<<"$pids")" -eq 1 ] || return 1
	echo "$pids"
}

# ks_child_holds CHILD STATE: CHILD has STATE's version file open.
ks_child_holds() {
	local f
	for f in "/proc/$1/fd/"*; do
		case $(readlink "$f" 2>/dev/null) in
		*"/$(basename "$2")/version") return 0 ;;
		esac
	done
	return 1
}

# ks_traced PID: PID is being traced (strace has attached).
ks_traced() {
	awk '$1 == "TracerPid:" { t = $2 } END { exit !(t > 0) }' "/proc/$1/status"
}

# ks_hold_version STATE: commits to STATE and returns once the notifier's
# child holds STATE/version open for the commit's inotify write, which it
# then keeps open for 3 s more (its close(2) slowed down under strace).
# The child's pid is in NOTIFY_CHILD.  Without it an unmount meets that
# open file only by chance, a few times in a hundred.
ks_hold_version() {
	NOTIFY_CHILD=$(wait_for 20 ks_notify_child >/dev/null &&
		ks_notify_child) || {
		echo "no kstatefs-notify child of $KS_PID"
		return 1
	}
	ks_bg strace -qq -o /dev/null -e trace=close \
		-e inject=close:delay_enter=3000000 -p "$NOTIFY_CHILD"
	wait_for 20 ks_traced "$NOTIFY_CHILD" || return 1
	echo held >"$1/data"
	wait_for 20 ks_child_holds "$NOTIFY_CHILD" "$1" || {
		ls -l "/proc/$NOTIFY_CHILD/fd"
		return 1
	}
}

# --- states ----------------------------------------------------------------

# ks_state NAME: creates state NAME under $MNT and prints its path.
ks_state() {
	mkdir "$MNT/$1" && echo "$MNT/$1"
}

# ks_version STATE: the version as a number.
ks_version() {
	local v
	v=$(cat "$1/version") && echo "$v"
}
