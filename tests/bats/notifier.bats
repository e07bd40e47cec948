#!/usr/bin/env bats
# SPEC 4.2, "no lost wakeup", when the process that makes the daemon's
# inotify events dies: the daemon starts another, re-sends every wake-up
# that was owed, counts restarts in .stats (notifier_restarts), and names
# the child kstatefs-notify so that pidof / pgrep -x kstatefs find the
# daemon alone.

load helpers

setup() {
	ks_mount
	S=$MNT/s
	mkdir "$S"
}

# kill_child: kill -9 of the child; CHILD is its pid.
kill_child() {
	CHILD=$(wait_for 20 ks_notify_child >/dev/null && ks_notify_child) || {
		echo "no kstatefs-notify child of $KS_PID:"
		ps -o pid,ppid,comm,args --ppid "$KS_PID" || true
		return 1
	}
	kill -KILL "$CHILD"
}

# new_child OLD: waits for a child other than OLD, and prints it.
new_child() {
	local c deadline=$((SECONDS + 20))
	while [ "$SECONDS" -lt "$deadline" ]; do
		c=$(ks_notify_child) && [ "$c" != "$1" ] && { echo "$c"; return 0; }
		sleep 0.05
	done
	echo "no new kstatefs-notify child after $1 was killed" >&2
	return 1
}

restarts() {
	awk '$1 == "notifier_restarts" { print $2; found = 1 }
	     END { exit !found }' "$MNT/.stats"
}

# watch NAME: inotifywait -m -e modify on $S/version, one line per event
# in $BATS_TEST_TMPDIR/NAME; returns once the watch is in place.
watch() {
	local out=$BATS_TEST_TMPDIR/$1
	: >"$out"
	ks_bg inotifywait -m -e modify --format '%e' "$S/version" \
		>"$out" 2>"$out.err"
	wait_for 20 grep -q 'Watches established' "$out.err" || {
		cat "$out.err"
		return 1
	}
}

nevents() {
	wc -l <"$BATS_TEST_TMPDIR/$1"
}

# expect_event NAME BEFORE WHAT: NAME sees more than BEFORE events.
expect_event() {
	local deadline=$((SECONDS + 20))
	until [ "$(nevents "$1")" -gt "$2" ]; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "$1: no event within 20 s after $3 ($(nevents "$1") events)"
			return 1
		fi
		sleep 0.05
	done
}

@test "notifier: the child is kstatefs-notify; pidof and pgrep -x kstatefs find the daemon alone" {
	local child daemons
	child=$(wait_for 20 ks_notify_child >/dev/null && ks_notify_child)
	assert_eq "$(cat "/proc/$child/comm")" kstatefs-notify "the child's comm"
	assert_eq "$(tr '\0' '\n' <"/proc/$child/cmdline" | head -n 1)" \
		kstatefs-notify "the child's argv[0]"
	# Other kstatefs daemons may be running on this machine: look for ours
	# and its child only.
	daemons=" $(pidof kstatefs) "
	assert_contains "$daemons" " $KS_PID " "pidof kstatefs"
	[[ $daemons != *" $child "* ]] || {
		echo "pidof kstatefs lists the child $child: $daemons"
		return 1
	}
	daemons=" $(pgrep -x kstatefs | tr '\n' ' ') "
	assert_contains "$daemons" " $KS_PID " "pgrep -x kstatefs"
	[[ $daemons != *" $child "* ]] || {
		echo "pgrep -x kstatefs lists the child $child: $daemons"
		return 1
	}
	assert_eq "$(pidof kstatefs-notify | tr ' ' '\n' | grep -cx "$child")" 1 \
		"pidof kstatefs-notify"
	assert_eq "$(restarts)" 0 "notifier_restarts on a fresh mount"
}

@test "notifier: after kill -9 of the child, watchers old and new see commits" {
	local before child
	watch old
	before=$(nevents old)
	echo a >"$S/data"
	expect_event old "$before" "the first commit"

	kill_child
	child=$(new_child "$CHILD")
	watch new
	before=$(nevents old)
	echo b >"$S/data"
	expect_event old "$before" "a commit after the kill"
	expect_event new 0 "a commit after the kill"
	wait_for 20 eval '[ "$(restarts)" -ge 1 ]'
	assert_eq "$(restarts)" 1 "notifier_restarts after one kill"
	# The new child serves: its writes are the daemon's own (no EACCES).
	before=$(nevents new)
	echo c >"$S/data"
	expect_event new "$before" "a commit to the new child"
	assert_version "$S" 3
}

@test "notifier: a commit made at once after the kill still wakes a watcher" {
	local before i
	watch w
	for i in 1 2 3; do
		before=$(nevents w)
		kill_child
		# No waiting for the new child: the commit's wake-up is owed to
		# a child that is dead or not yet started.
		echo "$i" >"$S/data"
		expect_event w "$before" "commit $i made as the child died"
	done
	assert_version "$S" 3
}

@test "notifier: a wake-up the child had taken but not written when it died is sent again" {
	local before i
	watch w
	for i in 1 2 3; do
		CHILD=$(wait_for 20 ks_notify_child >/dev/null && ks_notify_child)
		# Stopped, the child takes no path from its socket: the commit's
		# path is sent to it and waits there when it dies.
		kill -STOP "$CHILD"
		before=$(nevents w)
		echo "$i" >"$S/data"
		sleep 0.2
		assert_eq "$(nevents w)" "$before" "an event from a stopped child"
		kill -KILL "$CHILD"
		expect_event w "$before" "commit $i owed by the child that died"
	done
	assert_version "$S" 3
}

@test "notifier: several kills in a row; notifier_restarts counts them" {
	local before i old=
	watch w
	for i in 1 2 3 4 5; do
		kill_child
		[ -z "$old" ] || [ "$CHILD" != "$old" ]
		old=$CHILD
		new_child "$CHILD" >/dev/null
		before=$(nevents w)
		echo "$i" >"$S/data"
		expect_event w "$before" "commit $i after kill $i"
	done
	wait_for 20 eval '[ "$(restarts)" -ge 5 ]'
	assert_eq "$(restarts)" 5 "notifier_restarts after five kills"
	assert_version "$S" 5
}

@test "notifier: a child that keeps dying is restarted later and later, never given up" {
	local i before
	watch w
	for i in 1 2 3 4 5 6 7 8; do
		kill_child
		new_child "$CHILD" >/dev/null
	done
	# Each child lived less than a second (the first perhaps not: it is
	# restarted at once): the delays doubled.
	grep -q 'starting another in 10 ms' "$KS_LOG"
	grep -q 'starting another in 640 ms' "$KS_LOG" || {
		grep 'inotify child' "$KS_LOG"
		return 1
	}
	before=$(nevents w)
	echo a >"$S/data"
	expect_event w "$before" "a commit after eight quick deaths"
	assert_eq "$(restarts)" 8 "notifier_restarts"
}

@test "notifier: kills during a burst of commits; an event follows the last one" {
	local n=400 final seen=$BATS_TEST_TMPDIR/seen
	echo 0 >"$S/data"
	: >"$seen"
	ks_bg bash -c '
		inotifywait -m -e modify "$1/version" 2>"$2.err" |
		while read -r _; do cat "$1/version"; done >"$2"' _ "$S" "$seen"
	wait_for 20 grep -q 'Watches established' "$seen.err"
	ks_py "$S" "$n" <<-'EOF' &
		s, n = sys.argv[1], int(sys.argv[2])
		for i in range(n):
		    fd = os.open(s + "/data", os.O_WRONLY | os.O_TRUNC)
		    os.write(fd, b"%d" % i)
		    os.close(fd)
	EOF
	local writer=$! kills=0
	while ks_alive "$writer"; do
		kill_child || break
		kills=$((kills + 1))
		new_child "$CHILD" >/dev/null || break
		sleep 0.1
	done
	wait "$writer"
	[ "$kills" -ge 1 ] || { echo "the burst ended before a kill"; return 1; }
	# One more kill with nothing left to commit: the last wake-up may be
	# owed to the child that dies here.
	kill_child
	final=$(ks_version "$S")
	assert_eq "$final" $((n + 1)) "version after the burst"
	if ! wait_for 20 eval '[ "$(tail -n 1 "$seen")" = "$final" ]'; then
		echo "the watcher's last read is $(tail -n 1 "$seen"), the version is $final"
		echo "($(wc -l <"$seen") reads, $kills kills)"
		return 1
	fi
}

@test "notifier: the daemon unmounts cleanly after its child was killed" {
	local child
	kill_child
	child=$(new_child "$CHILD")
	echo a >"$S/data"
	ks_unmount
	refute ks_is_mounted "$MNT"
	# The new child went with the daemon.
	refute ks_alive "$child"
}

# unmount_and_wait: fusermount3 -u $MNT must succeed the first time; then
# the mount must go and the daemon exit with status 0.
unmount_and_wait() {
	local pid=$KS_PID st=0
	fusermount3 -u "$MNT"
	KS_PID=
	wait_for 20 eval '! ks_is_mounted "$MNT"'
	wait_for 20 eval "! ks_alive $pid" || {
		echo "kstatefs $pid still running 20 s after the unmount"
		kill -KILL "$pid"
		return 1
	}
	wait "$pid" || st=$?
	assert_eq "$st" 0 "the daemon's exit status; log: $(cat "$KS_LOG")"
}

@test "notifier: a restarted child writes through a copy of the mount too: fusermount3 -u succeeds while it holds version open" {
	kill_child
	new_child "$CHILD" >/dev/null
	ks_hold_version "$S"
	[ "$NOTIFY_CHILD" != "$CHILD" ]
	unmount_and_wait
	refute ks_alive "$NOTIFY_CHILD"
	# Not restarted once the mount was gone.
	assert_eq "$(grep -c 'inotify child' "$KS_LOG")" 1 "children that died"
}

@test "notifier: a bind mount keeps events coming after the first mount is unmounted; its unmount ends the daemon" {
	local b=$BATS_TEST_TMPDIR/bind before pid=$KS_PID
	mkdir "$b"
	KS_DAEMON_MNTS+=("$b")
	mount --bind "$MNT" "$b"
	umount "$MNT"
	refute ks_is_mounted "$MNT"
	S=$b/s
	watch w
	before=$(nevents w)
	echo a >"$S/data"
	expect_event w "$before" "a commit through the bind mount"
	KS_PID=
	umount "$b"
	wait_for 20 eval "! ks_alive $pid" || {
		echo "kstatefs $pid still running 20 s after the last unmount"
		kill -KILL "$pid"
		return 1
	}
	wait "$pid"
}

@test "notifier: where the mount cannot be copied (open_tree refused), the child writes by full path; events come, the daemon exits at the unmount" {
	local w=$BATS_TEST_TMPDIR/noclone-kstatefs child before
	ks_unmount
	# As for a daemon without CAP_SYS_ADMIN: open_tree fails with EPERM.
	printf '#!/bin/sh\nexec python3 %q %q "$@"\n' \
		"$KS_TOOLS/noclone.py" "$KSTATEFS" >"$w"
	chmod +x "$w"
	KSTATEFS=$w ks_mount
	S=$MNT/s
	mkdir "$S"
	child=$(wait_for 20 ks_notify_child >/dev/null && ks_notify_child)
	# Its socket, and no copy of the mount.
	assert_eq "$(ls "/proc/$child/fd" | sort -n | tr '\n' ' ')" "0 1 2 3 " \
		"the child's descriptors"
	watch w
	before=$(nevents w)
	echo a >"$S/data"
	expect_event w "$before" "a commit"
	assert_eq "$(cat "$KS_LOG")" "" "the daemon's log"
	ks_unmount
}
