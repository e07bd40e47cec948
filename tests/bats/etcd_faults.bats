#!/usr/bin/env bats
# SPEC 9, faults: hosts on a 3-member etcd cluster while members stop, come
# back, or hang.  Losing a minority of members changes nothing for users;
# without a quorum commits fail after etcd_timeout (never hang) while reads
# go on from the local copy; a host that was cut off catches up, waking its
# watchers.  Every commit and wait is bounded by `timeout`.

load etcd_helpers

LAG=10

# elapsed_at_most START SECONDS WHAT
elapsed_at_most() {
	local took=$((SECONDS - $1))
	if [ "$took" -gt "$2" ]; then
		echo "$3 took ${took} s, more than $2 s"
		return 1
	fi
}

# a commit that must fail because etcd cannot be reached: with ETIMEDOUT or
# EIO, within etcd_timeout (2 s) and a generous margin, never hanging.
# expect_commit_fails STATE VALUE
expect_commit_fails() {
	local t0=$SECONDS
	run timeout 60 "$KSTATE" set "$1" "$2"
	elapsed_at_most "$t0" 15 "a failing kstate set"
	[ "$status" -ne 0 ] && [ "$status" -ne 124 ] || {
		echo "kstate set $1 with etcd unreachable: status $status; output: $output"
		return 1
	}
	[[ $output == *"timed out"* || $output == *"Input/output error"* ]] || {
		echo "kstate set $1: expected ETIMEDOUT or EIO, got: $output"
		return 1
	}
}

# expect_rename_fails OLD NEW: rename fails with ETIMEDOUT or EIO in time.
expect_rename_fails() {
	local t0=$SECONDS got
	got=$(ks_errno rename "$1" "$2")
	elapsed_at_most "$t0" 15 "a failing rename"
	[ "$got" = ETIMEDOUT ] || [ "$got" = EIO ] || {
		echo "rename $1 $2 with etcd unreachable: expected ETIMEDOUT or EIO, got '$got'"
		return 1
	}
}

@test "etcd faults: -o etcd=URL1,etcd=URL2: the second endpoint serves when the first stops" {
	ks_etcd_start 3
	local u1 u2 u3
	u1=$(etcd_member_url m1)
	u2=$(etcd_member_url m2)
	u3=$(etcd_member_url m3)
	ks_mount_host A -o "etcd=$u1,etcd=$u2,etcd_prefix=$KS_ETCD_PREFIX"
	ks_mount_host B --etcd "$u3" --etcd-prefix "$KS_ETCD_PREFIX"
	mkdir "$HOST_A/s"
	echo 1 >"$HOST_A/s/data"
	wait_for $LAG ks_version_is "$HOST_B/s" 1
	etcd_member_stop m1
	timeout 60 "$KSTATE" set "$HOST_A/s" 2
	assert_version "$HOST_A/s" 2
	wait_for $LAG ks_version_is "$HOST_B/s" 2
	echo 3 >"$HOST_B/s/data"
	wait_for $LAG ks_version_is "$HOST_A/s" 3
	assert_file "$HOST_A/s/data" '3\n'
	mkdir "$HOST_A/t"
	wait_for $LAG test -d "$HOST_B/t"
	wait_for $LAG ks_stat_is "$HOST_A" etcd_connected 1
}

@test "etcd faults: one member of three stopped: mkdir, commits and wake-ups across hosts go on" {
	ks_etcd_start 3
	ks_host A
	ks_host B
	local A=$HOST_A B=$HOST_B out=$BATS_TEST_TMPDIR/inotify ev=$BATS_TEST_TMPDIR/events
	mkdir "$A/s"
	wait_for $LAG test -d "$B/s"
	watch_version "$B/s/version" "$out"
	read_events "$B" "$ev"
	echo 1 >"$A/s/data"
	wait_for $LAG grep -qx 'commit s 1' "$ev"
	wait_for $LAG eval '[ "$(nlines "$out")" -gt 0 ]'
	# the first endpoint of both hosts goes away
	etcd_member_stop m1
	local before
	before=$(nlines "$out")
	timeout 60 mkdir "$A/t"
	wait_for $LAG test -d "$B/t"
	timeout 60 "$KSTATE" set "$A/s" 2
	assert_version "$A/s" 2
	wait_for $LAG eval '[ "$(nlines "$out")" -gt "$before" ]'
	wait_for $LAG grep -qx 'create t' "$ev"
	wait_for $LAG grep -qx 'commit s 2' "$ev"
	wait_for $LAG ks_version_is "$B/s" 2
	assert_file "$B/s/data" '2\n'
	# a transaction on B, a conflict-free commit
	timeout 60 touch "$B/s/T"
	echo 3 >"$B/s/T"
	timeout 60 mv "$B/s/T" "$B/s/data"
	wait_for $LAG ks_version_is "$A/s" 3
	# kstate wait on A wakes on B's commit
	local st=$BATS_TEST_TMPDIR/wait.status
	ks_bg sh -c '"$1" wait "$2" --after 3 --timeout 30 >/dev/null 2>&1; echo $? >"$3"' \
		sh "$KSTATE" "$A/s" "$st"
	sleep 0.5
	echo 4 >"$B/s/data"
	wait_for 30 test -s "$st"
	assert_eq "$(cat "$st")" 0 "kstate wait on A"
	assert_eq "$(ks_stat_value "$A" etcd_connected)" 1 "etcd_connected on A"
	assert_eq "$(ks_stat_value "$B" etcd_connected)" 1 "etcd_connected on B"
	# the member comes back: nothing changes
	etcd_member_start m1
	echo 5 >"$A/s/data"
	wait_for $LAG ks_version_is "$B/s" 5
}

@test "etcd faults: quorum lost: commits fail in time, reads go on; members back: commits work again, no remount" {
	ks_etcd_start 3
	ks_host A -o etcd_timeout=2
	ks_host B -o etcd_timeout=2
	local A=$HOST_A B=$HOST_B
	mkdir "$A/s"
	echo before >"$A/s/data"
	wait_for $LAG ks_version_is "$B/s" 1
	touch "$A/s/T"
	echo new >"$A/s/T"
	etcd_member_stop m2
	etcd_member_stop m3
	# commits fail, with ETIMEDOUT or EIO, within the timeout and a margin
	expect_commit_fails "$A/s" lost1
	expect_commit_fails "$B/s" lost2
	expect_rename_fails "$A/s/T" "$A/s/data"
	assert_file "$A/s/T" 'new\n'
	local t0=$SECONDS
	run timeout 60 sh -c "echo lost3 >'$B/s/data'"
	elapsed_at_most "$t0" 15 "a failing echo > data"
	[ "$status" -ne 124 ] || { echo "echo > data hung"; return 1; }
	t0=$SECONDS
	run timeout 60 mkdir "$A/new"
	elapsed_at_most "$t0" 15 "a failing mkdir"
	[ "$status" -ne 0 ] && [ "$status" -ne 124 ] || {
		echo "mkdir with etcd unreachable: status $status, $output"
		return 1
	}
	# reads go on from the local copy, on both hosts
	assert_file "$A/s/data" 'before\n'
	assert_version "$A/s" 1
	assert_file "$B/s/data" 'before\n'
	assert_version "$B/s" 1
	assert_eq "$(ls "$A")" s
	assert_eq "$(timeout 60 "$KSTATE" get "$B/s")" before
	wait_for 20 ks_stat_is "$A" etcd_connected 0
	wait_for 20 ks_stat_is "$B" etcd_connected 0
	# and it stays 0 while the quorum is lost, though the member left
	# still answers (and creates watches)
	local i
	for ((i = 0; i < 16; i++)); do
		assert_eq "$(ks_stat_value "$A" etcd_connected)" 0 "etcd_connected on A, sample $i"
		assert_eq "$(ks_stat_value "$B" etcd_connected)" 0 "etcd_connected on B, sample $i"
		sleep 0.25
	done
	# the mounts are alive
	ks_alive "$(ks_host_pid A)"
	ks_alive "$(ks_host_pid B)"
	timeout 20 mountpoint -q "$A"
	timeout 20 mountpoint -q "$B"
	# the members come back: the hosts reconnect by themselves
	etcd_member_start m2
	etcd_member_start m3
	wait_for 30 ks_stat_is "$A" etcd_connected 1
	wait_for 30 ks_stat_is "$B" etcd_connected 1
	timeout 60 "$KSTATE" set "$A/s" after
	assert_eq "$(cat "$A/s/data")" after
	# a failed commit may have been applied: the version says how many did
	local v
	v=$(cat "$A/s/version")
	[ "$v" -ge 2 ] && [ "$v" -le 5 ] || { echo "version after recovery: $v"; return 1; }
	wait_for $LAG ks_version_is "$B/s" "$v"
	assert_file "$B/s/data" 'after\n'
	# the transaction left by the failed mv: based on version 1, refused now
	assert_errno EAGAIN rename "$A/s/T" "$A/s/data"
	assert_file "$A/s/T" 'new\n'
	# and B commits too
	timeout 60 "$KSTATE" set "$B/s" last
	wait_for $LAG ks_version_is "$A/s" $((v + 1))
	assert_file "$A/s/data" 'last\n'
}

@test "etcd faults: a host cut off (its only member stopped) catches up when it is back" {
	ks_etcd_start 3
	local u1 u2 u3
	u1=$(etcd_member_url m1)
	u2=$(etcd_member_url m2)
	u3=$(etcd_member_url m3)
	ks_mount_host A --etcd "$u1,$u2" --etcd-prefix "$KS_ETCD_PREFIX"
	ks_mount_host B -o "etcd=$u3,etcd_prefix=$KS_ETCD_PREFIX,etcd_timeout=2"
	local A=$HOST_A B=$HOST_B out=$BATS_TEST_TMPDIR/inotify ev=$BATS_TEST_TMPDIR/events
	mkdir "$A/s" "$A/old"
	wait_for $LAG test -d "$B/old"
	watch_version "$B/s/version" "$out"
	read_events "$B" "$ev"
	echo 1 >"$A/s/data"
	wait_for $LAG grep -qx 'commit s 1' "$ev"
	wait_for $LAG ks_version_is "$B/s" 1
	# B's member goes away; A goes on with the other two
	etcd_member_stop m3
	wait_for 20 ks_stat_is "$B" etcd_connected 0
	echo 2 >"$A/s/data"
	echo 3 >"$A/s/data"
	mkdir "$A/n"
	echo hello >"$A/n/data"
	rmdir "$A/old"
	sleep 1
	# B knows nothing of it yet
	assert_version "$B/s" 1
	assert_file "$B/s/data" '1\n'
	local before
	before=$(nlines "$out")
	# its member comes back: B catches up, wakes its watchers
	etcd_member_start m3
	wait_for 20 ks_version_is "$B/s" 3
	assert_file "$B/s/data" '3\n'
	wait_for $LAG test -d "$B/n"
	wait_for $LAG ks_version_is "$B/n" 1
	assert_file "$B/n/data" 'hello\n'
	wait_for $LAG ks_gone "$B/old"
	wait_for $LAG eval '[ "$(nlines "$out")" -gt "$before" ]'
	wait_for $LAG grep -qx 'commit s 3' "$ev"
	wait_for $LAG grep -qx 'create n' "$ev"
	wait_for $LAG grep -qx 'commit n 1' "$ev"
	wait_for $LAG grep -qx 'delete old' "$ev"
	wait_for 20 ks_stat_is "$B" etcd_connected 1
	# and B commits again
	timeout 60 "$KSTATE" set "$B/s" 4
	wait_for $LAG ks_version_is "$A/s" 4
	assert_file "$A/s/data" '4\n'
}

@test "etcd faults: a hung member (SIGSTOP), the only one of a host: its commits fail in time; resumed, it catches up" {
	ks_etcd_start 3
	local u1 u2 u3
	u1=$(etcd_member_url m1)
	u2=$(etcd_member_url m2)
	u3=$(etcd_member_url m3)
	ks_mount_host A --etcd "$u1,$u2" --etcd-prefix "$KS_ETCD_PREFIX"
	ks_mount_host B --etcd "$u3" --etcd-prefix "$KS_ETCD_PREFIX" -o etcd_timeout=2
	local A=$HOST_A B=$HOST_B out=$BATS_TEST_TMPDIR/inotify
	mkdir "$A/s"
	echo 1 >"$A/s/data"
	wait_for $LAG ks_version_is "$B/s" 1
	watch_version "$B/s/version" "$out"
	etcd_member_pause m3
	expect_commit_fails "$B/s" hung
	assert_file "$B/s/data" '1\n'
	wait_for 20 ks_stat_is "$B" etcd_connected 0
	echo 2 >"$A/s/data"
	local before
	before=$(nlines "$out")
	etcd_member_resume m3
	wait_for 20 ks_version_is "$B/s" 2
	assert_file "$B/s/data" '2\n'
	wait_for $LAG eval '[ "$(nlines "$out")" -gt "$before" ]'
	wait_for 20 ks_stat_is "$B" etcd_connected 1
	timeout 60 "$KSTATE" set "$B/s" 3
	wait_for $LAG ks_version_is "$A/s" 3
	assert_file "$A/s/data" '3\n'
}

@test "etcd faults: a write to data whose endpoint hung goes to the next one; with every endpoint hung, close fails and the release does not send it again" {
	ks_etcd_start 3
	local u1 u2
	u1=$(etcd_member_url m1)
	u2=$(etcd_member_url m2)
	# 8 s: the hung first endpoint gets half, and the second still has
	# time for an election if the hung member was the leader
	ks_mount_host A --etcd "$u1,$u2" --etcd-prefix "$KS_ETCD_PREFIX" -o etcd_timeout=8
	local A=$HOST_A got v
	mkdir "$A/s"
	echo 1 >"$A/s/data"
	assert_version "$A/s" 1
	# m1 takes the request and never answers: the commit, compared with
	# version 1, goes to m2 and lands there once
	etcd_member_pause m1
	got=$(timeout 60 python3 "$KS_TOOLS/kserr.py" write "$A/s/data" wt 4)
	assert_eq "$got" OK "write with m1 hung and m2 up" || {
		etcd_member_resume m1
		return 1
	}
	assert_version "$A/s" 2
	[ "$(ks_stat_value "$A" etcd_resends)" -ge 1 ] || {
		etcd_member_resume m1
		echo "etcd_resends: $(ks_stat_value "$A" etcd_resends)"
		return 1
	}
	v=$(etcd_key_value "${KS_ETCD_PREFIX}.version/s")
	assert_eq "$v" 2 "the version in etcd" || {
		etcd_member_resume m1
		return 1
	}
	# resumed, m1 may still apply the copy it holds: its compare fails
	etcd_member_resume m1
	sleep 2
	v=$(etcd_key_value "${KS_ETCD_PREFIX}.version/s")
	assert_eq "$v" 2 "the version in etcd after m1 resumed"
	assert_version "$A/s" 2
	assert_file "$A/s/data" xxxx

	# both of A's endpoints hung: close fails with ETIMEDOUT (the
	# commit's fate unknown); the release that follows must not commit
	# the same writes again after close said so
	etcd_member_pause m1
	etcd_member_pause m2
	got=$(timeout 60 python3 "$KS_TOOLS/kserr.py" write "$A/s/data" wt 3)
	[[ $got == close:ETIMEDOUT || $got == close:EIO ]] || {
		etcd_member_resume m1
		etcd_member_resume m2
		echo "write with m1 and m2 hung: expected close:ETIMEDOUT or EIO, got '$got'"
		return 1
	}
	sleep 2
	assert_version "$A/s" 2
	assert_file "$A/s/data" xxxx
	# resumed, they may still apply the copies they hold: once at most
	etcd_member_resume m1
	etcd_member_resume m2
	sleep 3
	v=$(etcd_key_value "${KS_ETCD_PREFIX}.version/s")
	[ "$v" = 2 ] || [ "$v" = 3 ] || {
		echo "version $v in etcd: the failed write landed more than once"
		return 1
	}
	wait_for $LAG ks_version_is "$A/s" "$v"
}

@test "etcd faults: mv increments go on while the member a host talks to is killed (SIGKILL), one after another: none fails, none lost, none applied twice" {
	ks_etcd_start 3
	ks_host A -o etcd_timeout=20
	local A=$HOST_A log=$BATS_TEST_TMPDIR/incr.log stop=$BATS_TEST_TMPDIR/stop
	mkdir "$A/c"
	echo 0 >"$A/c/data"
	assert_version "$A/c" 1
	# the safe increment: a transaction T (O_RDWR|O_CREAT), read, write
	# +1, close, mv T data; EAGAIN: again.  One line per outcome:
	# "ok N" for an acknowledged increment to N, "fail STEP ERRNO" else.
	cat >"$BATS_TEST_TMPDIR/incr.py" <<-'EOF'
		import errno, os, sys
		state, log, stop = sys.argv[1:4]
		out = open(log, "w", buffering=1)
		t = os.path.join(state, "T")
		data = os.path.join(state, "data")
		while not os.path.exists(stop):
		    step = "open"
		    try:
		        fd = os.open(t, os.O_RDWR | os.O_CREAT, 0o600)
		        step = "read"
		        n = int(os.read(fd, 64).decode() or "0")
		        step = "write"
		        os.ftruncate(fd, 0)
		        os.lseek(fd, 0, os.SEEK_SET)
		        os.write(fd, b"%d\n" % (n + 1))
		        step = "close"
		        os.close(fd)
		        step = "mv"
		        os.rename(t, data)
		        out.write("ok %d\n" % (n + 1))
		    except OSError as e:
		        if e.errno != errno.EAGAIN:
		            out.write("fail %s %s\n" % (step, errno.errorcode.get(e.errno, e.errno)))
		        try:
		            os.unlink(t)
		        except OSError:
		            pass
		out.write("done\n")
	EOF
	: >"$log"
	ks_bg python3 "$BATS_TEST_TMPDIR/incr.py" "$A/c" "$log" "$stop"
	wait_for 20 grep -q '^ok' "$log"
	# the host starts with m1; each kill moves it on to the next member,
	# which is killed next; the killed one comes back before the next
	# kill, so a quorum stays up throughout
	local round m pid
	for round in 1 2; do
		for m in m1 m2 m3; do
			sleep 1
			pid=$(etcd_member_pid "$m")
			if [ -n "$pid" ]; then
				kill -KILL "$pid"
				wait "$pid" 2>/dev/null || true
			fi
			sleep 1.5
			etcd_member_start "$m"
		done
	done
	sleep 1
	touch "$stop"
	wait_for 60 grep -qx done "$log"
	local acks fails final
	acks=$(grep -c '^ok' "$log")
	fails=$(grep -c '^fail' "$log" || true)
	final=$(cat "$A/c/data")
	echo "acknowledged increments: $acks; failed: $fails; final: $final;" \
		"etcd_resends $(ks_stat_value "$A" etcd_resends);" \
		"etcd_failovers $(ks_stat_value "$A" etcd_failovers)"
	[ "$fails" -eq 0 ] || { grep '^fail' "$log" | sort | uniq -c; return 1; }
	# every acknowledged increment once: 1, 2, ... in order, and the
	# counter is the last of them, in etcd too
	awk '$1 == "ok" && $2 != ++n { print "increment " n " acknowledged as " $2; bad = 1 } END { exit bad }' "$log"
	assert_eq "$final" "$acks" "the counter"
	assert_version "$A/c" $((acks + 1))
	assert_eq "$(etcd_key_value "${KS_ETCD_PREFIX}c")" "$acks"
	assert_eq "$(etcd_key_value "${KS_ETCD_PREFIX}.version/c")" $((acks + 1))
}

@test "etcd faults: a cluster made anew (its data wiped) under a mounted host: the host sees its revision went back and reloads every state" {
	ks_etcd_start 1
	ks_host A -o etcd_timeout=2
	local A=$HOST_A i
	mkdir "$A/old"
	for ((i = 1; i <= 30; i++)); do
		echo "$i" >"$A/old/data"
	done
	etcd_member_stop m1
	rm -rf "${ETCD_CLUSTER_DIR:?}/m1.data"
	etcd_member_start m1
	# The new cluster's history is short: a few revisions.
	ks_host B
	local B=$HOST_B
	mkdir "$B/fresh"
	echo new >"$B/fresh/data"
	wait_for 30 test -d "$A/fresh"
	wait_for $LAG ks_gone "$A/old"
	wait_for $LAG ks_version_is "$A/fresh" 1
	assert_file "$A/fresh/data" 'new\n'
	assert_contains "$(cat "$(ks_host_log A)")" "revision went back"
	wait_for 20 ks_stat_is "$A" etcd_connected 1
	# A commits there, and B sees it.
	timeout 60 "$KSTATE" set "$A/fresh" again
	wait_for $LAG ks_version_is "$B/fresh" 2
	mkdir "$A/old"
	wait_for $LAG test -d "$B/old"
}

@test "etcd faults: a state whose version in etcd went back while the host was cut off (a restore) is made again from etcd at the reload" {
	ks_etcd_start 3
	local u1 u2 P=$KS_ETCD_PREFIX rev
	u1=$(etcd_member_url m1)
	u2=$(etcd_member_url m2)
	ks_mount_host A --etcd "$u1" --etcd-prefix "$P" -o etcd_timeout=2
	local A=$HOST_A i
	mkdir "$A/s" "$A/t"
	for ((i = 1; i <= 5; i++)); do
		echo "$i" >"$A/s/data"
	done
	echo keep >"$A/t/data"
	etcd_member_stop m1
	# What a restore with its revisions moved on leaves: s at an older
	# version, and history compacted past what A saw.
	etcdctl --endpoints="$u2" --command-timeout=10s put "${P}.version/s" 2 >/dev/null
	etcdctl --endpoints="$u2" --command-timeout=10s put "${P}s" restored >/dev/null
	rev=$(etcdctl --endpoints="$u2" endpoint status -w json |
		python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
	etcdctl --endpoints="$u2" --command-timeout=10s compact "$rev" >/dev/null
	etcd_member_start m1
	wait_for 30 ks_version_is "$A/s" 2
	assert_file "$A/s/data" 'restored'
	assert_file "$A/t/data" 'keep\n'
	assert_version "$A/t" 1
	# And A commits to it again.
	timeout 60 "$KSTATE" set "$A/s" after
	assert_version "$A/s" 3
}
