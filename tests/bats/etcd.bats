#!/usr/bin/env bats
# SPEC 9: many hosts on one etcd.  Each test starts its own etcd (one
# member) and two or more kstatefs daemons ("hosts" A and B) on the same
# key prefix, each with its own mountpoint, and checks that sections 3-8
# hold across them.  A change made on one host is awaited on the other with
# wait_for (never a speed assertion).  Member failures: etcd_faults.bats.

load etcd_helpers

# Seconds a change on one host may take to show on another.
LAG=10

two_hosts() {
	ks_etcd_start 1
	ks_host A "$@"
	ks_host B "$@"
	A=$HOST_A
	B=$HOST_B
}

@test "etcd: no endpoint answers: exit 2 with a message, nothing mounted" {
	command -v etcd >/dev/null || skip "etcd-server is not installed"
	local port m=$BATS_TEST_TMPDIR/m env
	port=$(_etcd_free_ports 1)
	mkdir "$m"
	mapfile -t env < <(ks_san_env)
	# in the foreground
	run timeout 60 env "${env[@]}" "$KSTATEFS" -f \
		--etcd "http://127.0.0.1:$port" -o etcd_timeout=2 "$m"
	assert_eq "$status" 2 "kstatefs -f status; output: $output"
	[ -n "$output" ] || { echo "no message"; return 1; }
	refute ks_is_mounted "$m"
	# daemonizing, the way it is normally run: the status is the parent's
	run timeout 60 env "${env[@]}" "$KSTATEFS" \
		--etcd "http://127.0.0.1:$port" --etcd-prefix /x/ "$m"
	assert_eq "$status" 2 "kstatefs status; output: $output"
	[ -n "$output" ] || { echo "no message"; return 1; }
	refute ks_is_mounted "$m"
	refute ks_daemon_pid "$m"
	ks_sanitizer_check
}

@test "etcd: the -o etcd=URL,etcd_prefix=P form shares states with the --etcd form" {
	ks_etcd_start 1
	ks_mount_host A -o "etcd=$ETCD_ENDPOINTS,etcd_prefix=$KS_ETCD_PREFIX,etcd_timeout=5"
	ks_mount_host B --etcd "$ETCD_ENDPOINTS" --etcd-prefix "$KS_ETCD_PREFIX"
	mkdir "$HOST_A/s"
	echo hi >"$HOST_A/s/data"
	wait_for $LAG ks_version_is "$HOST_B/s" 1
	assert_file "$HOST_B/s/data" 'hi\n'
	# and the key is under the prefix given
	assert_eq "$(etcd_key_value "${KS_ETCD_PREFIX}s")" hi
	# another prefix is another namespace
	ks_mount_host C --etcd "$ETCD_ENDPOINTS" --etcd-prefix "${KS_ETCD_PREFIX%/}.other/"
	assert_eq "$(ls "$HOST_C")" "" "ls of a host on another prefix"
}

@test "etcd: mkdir on A appears on B, also after B looked the name up" {
	two_hosts
	# a negative lookup on B first (the kernel may cache it)
	assert_eq "$(ks_errno stat "$B/s")" ENOENT
	refute ls -d "$B/s" 2>/dev/null
	mkdir "$A/s"
	wait_for $LAG test -d "$B/s"
	wait_for $LAG eval '[ "$(ls "$B")" = s ]'
	assert_eq "$(stat -c %F "$B/s")" directory
	assert_version "$B/s" 0
	assert_file "$B/s/data" ''
	# B can use it at once
	echo fromb >"$B/s/data"
	wait_for $LAG ks_version_is "$A/s" 1
	assert_file "$A/s/data" 'fromb\n'
	# mkdir of the same name on B now: EEXIST
	assert_errno EEXIST mkdir "$B/s"
}

@test "etcd: rmdir on A: the state is gone on B (stat ENOENT, ls)" {
	two_hosts
	mkdir "$A/s" "$A/keep"
	wait_for $LAG test -d "$B/s"
	# B has it cached: looked up, listed, its files read
	stat "$B/s" >/dev/null
	cat "$B/s/version" >/dev/null
	ls "$B" >/dev/null
	rmdir "$A/s"
	wait_for $LAG ks_gone "$B/s"
	assert_eq "$(ks_errno stat "$B/s/data")" ENOENT
	assert_eq "$(ls "$B")" keep
	# the name is free again, on either host
	mkdir "$B/s"
	wait_for $LAG test -d "$A/s"
	assert_version "$A/s" 0
}

@test "etcd: mv OLD NEW on A: OLD gone on B, NEW with the same version and page" {
	two_hosts
	mkdir "$A/old"
	echo one >"$A/old/data"
	echo two >"$A/old/data"
	wait_for $LAG ks_version_is "$B/old" 2
	# B has OLD cached, and that NEW does not exist
	cat "$B/old/data" >/dev/null
	assert_eq "$(ks_errno stat "$B/new")" ENOENT
	mv "$A/old" "$A/new"
	wait_for $LAG ks_gone "$B/old"
	wait_for $LAG test -d "$B/new"
	assert_version "$B/new" 2
	assert_file "$B/new/data" 'two\n'
	assert_eq "$(ls "$B")" new
	# and it goes on from there on both hosts
	echo three >"$B/new/data"
	wait_for $LAG ks_version_is "$A/new" 3
	assert_file "$A/new/data" 'three\n'
	# mv onto an existing name: EEXIST, across hosts too
	mkdir "$B/other"
	wait_for $LAG test -d "$A/other"
	assert_errno EEXIST rename "$A/new" "$A/other"
}

# same_listing: A and B list the same states, within the lag.
same_listing() {
	wait_for $LAG eval '[ "$(ls "$A")" = "$(ls "$B")" ]' || {
		echo "A lists: $(ls "$A" | tr '\n' ' '); B lists: $(ls "$B" | tr '\n' ' ')"
		return 1
	}
}

@test "etcd: mv and rmdir on A while B commits to the state: the old name never comes back on A" {
	two_hosts
	local i pid
	for i in 1 2 3 4 5; do
		mkdir "$A/m$i" "$A/d$i"
		wait_for $LAG test -d "$B/m$i"
		wait_for $LAG test -d "$B/d$i"
		(
			for ((k = 0; k < 150; k++)); do
				echo "$k" >"$B/m$i/data" || true
				echo "$k" >"$B/d$i/data" || true
			done
		) 2>/dev/null &
		pid=$!
		sleep 0.3
		mv "$A/m$i" "$A/n$i"
		rmdir "$A/d$i"
		wait "$pid" || true
		same_listing || { echo "in round $i"; return 1; }
		[ ! -e "$A/m$i" ] || { echo "m$i came back on A"; return 1; }
		[ ! -e "$A/d$i" ] || { echo "d$i came back on A"; return 1; }
		# the renamed state is the same on both hosts
		wait_for $LAG eval '[ "$(cat "$A/n$i/version")" = "$(cat "$B/n$i/version")" ]' || {
			echo "n$i: version $(cat "$A/n$i/version") on A, $(cat "$B/n$i/version") on B"
			return 1
		}
		assert_eq "$(cat "$A/n$i/data")" "$(cat "$B/n$i/data")" "n$i's page on A and B"
	done
	assert_eq "$(sed -n 's/^states //p' "$A/.stats")" "$(sed -n 's/^states //p' "$B/.stats")" "states on A and B"
}

@test "etcd: mv of a state on A while B commits to it without pause: every mv succeeds" {
	two_hosts
	local i name=r0 stop=$BATS_TEST_TMPDIR/stop
	mkdir "$A/r0"
	wait_for $LAG test -d "$B/r0"
	# B commits to whatever name the state has now, flat out, from two
	# processes
	local writer='
import glob, os, sys
while not os.path.exists(sys.argv[2]):
    for d in glob.glob(sys.argv[1] + "/r*"):
        try:
            fd = os.open(d + "/data", os.O_WRONLY | os.O_TRUNC)
            os.write(fd, b"x\n")
            os.close(fd)
        except OSError:
            pass
'
	python3 -c "$writer" "$B" "$stop" &
	local pid=$!
	python3 -c "$writer" "$B" "$stop" &
	local pid2=$!
	sleep 0.5
	for ((i = 1; i <= 8; i++)); do
		mv "$A/$name" "$A/r$i" || {
			touch "$stop"
			wait "$pid" "$pid2" || true
			echo "mv $name r$i failed in round $i"
			return 1
		}
		name=r$i
		sleep 0.1
	done
	touch "$stop"
	wait "$pid" "$pid2" || true
	same_listing
	assert_eq "$(ls "$A")" r8
}

@test "etcd: chmod and chown of a state on A are seen on B" {
	two_hosts
	mkdir "$A/s"
	wait_for $LAG test -d "$B/s"
	stat "$B/s" "$B/s/data" "$B/s/version" >/dev/null
	chmod 700 "$A/s"
	wait_for $LAG eval '[ "$(stat -c %a "$B/s")" = 700 ]'
	chown 1234:5678 "$A/s"
	wait_for $LAG eval '[ "$(stat -c %u:%g "$B/s")" = 1234:5678 ]'
	chmod 755 "$B/s"
	wait_for $LAG eval '[ "$(stat -c %a "$A/s")" = 755 ]'
	assert_eq "$(stat -c %u:%g "$A/s")" 1234:5678
	# a commit on A does not undo B's chmod, nor the other way round
	echo x >"$A/s/data"
	wait_for $LAG ks_version_is "$B/s" 1
	assert_eq "$(stat -c %a "$B/s")" 755
	assert_eq "$(stat -c %a "$A/s")" 755
}

@test "etcd: transactions are private to their host: B does not list A's, rmdir on B does not wait for them" {
	two_hosts
	mkdir "$A/s"
	echo base >"$A/s/data"
	wait_for $LAG ks_version_is "$B/s" 1
	touch "$A/s/T"
	echo mine >"$A/s/T"
	mkdir "$A/.txn/M"
	echo also >"$A/.txn/M/s"
	assert_eq "$(ls "$B/s")" "$(printf 'data\nevery\nversion')"
	assert_eq "$(ls "$B/.txn")" ""
	# B removes the state while A has transactions on it
	rmdir "$B/s"
	wait_for $LAG ks_gone "$A/s/data"
	assert_eq "$(ks_errno stat "$A/s")" ENOENT
	# A's transactions that wrote cannot commit any more; they are
	# refused, not lost into another state (one that only read would be a
	# snapshot of the instant it began, which still stands)
	local got
	got=$(ks_errno rename "$A/s/T" "$A/s/data")
	[ "$got" != OK ] || { echo "mv T data of a deleted state succeeded"; return 1; }
	got=$(ks_errno rename "$A/.txn/M" "$A/.commit/M")
	[ "$got" != OK ] || { echo ".txn commit of a deleted state succeeded"; return 1; }
	# and it can be aborted as always
	rm -r "$A/.txn/M"
	[ ! -e "$A/.txn/M" ] || { echo ".txn/M still exists after rm -r"; return 1; }
	# a new state of the same name starts from nothing, on both hosts
	mkdir "$A/s"
	wait_for $LAG test -d "$B/s"
	assert_version "$B/s" 0
	assert_file "$B/s/data" ''
	assert_eq "$(ls "$A/s")" "$(printf 'data\nevery\nversion')"
}

@test "etcd: commits on A are seen on B with the same version; A reads its own writes at once" {
	two_hosts
	local S=$A/s
	mkdir "$S"
	# echo > data
	echo x >"$S/data"
	assert_file "$S/data" 'x\n'
	assert_version "$S" 1
	wait_for $LAG ks_version_is "$B/s" 1
	assert_file "$B/s/data" 'x\n'
	# a transaction file and mv
	echo y >"$S/T"
	mv "$S/T" "$S/data"
	assert_file "$S/data" 'y\n'
	assert_version "$S" 2
	[ ! -e "$S/T" ]
	wait_for $LAG ks_version_is "$B/s" 2
	assert_file "$B/s/data" 'y\n'
	# kstate set
	kstate set "$S" z
	assert_eq "$(cat "$S/data")" z
	assert_version "$S" 3
	wait_for $LAG ks_version_is "$B/s" 3
	assert_eq "$(kstate get "$B/s")" z
	# a blind commit on B goes on from B's copy: version 4 on both
	printf 'from b' >"$B/s/data"
	assert_version "$B/s" 4
	wait_for $LAG ks_version_is "$S" 4
	assert_file "$S/data" 'from b'
	# many commits in a row, each read back at once on A
	local i
	for i in 1 2 3 4 5 6 7 8; do
		echo "n$i" >"$S/T"
		mv "$S/T" "$S/data"
		assert_file "$S/data" "n$i\n"
		assert_version "$S" $((4 + i))
	done
	wait_for $LAG ks_version_is "$B/s" 12
	assert_file "$B/s/data" 'n8\n'
	# stat of data: the size of the latest page and the time of its
	# commit, the same on both hosts
	assert_eq "$(stat -c %s "$B/s/data")" 3 "size of data on B"
	assert_eq "$(stat -c %Y "$B/s/data")" "$(stat -c %Y "$S/data")" "mtime of data on B and A"
}

@test "etcd: a transaction begun on B fails with EAGAIN after a commit on A, and is left as it was" {
	two_hosts
	mkdir "$A/s"
	echo base >"$A/s/data"
	wait_for $LAG ks_version_is "$B/s" 1
	touch "$B/s/T"
	assert_file "$B/s/T" 'base\n'
	echo mine >"$B/s/T"
	# A commits; B's mv comes right after A's commit returned, whether or
	# not B has heard of it yet
	echo theirs >"$A/s/data"
	run mv "$B/s/T" "$B/s/data"
	assert_eq "$status" 1 "mv status; output: $output"
	assert_contains "$output" "Resource temporarily unavailable"
	assert_file "$B/s/T" 'mine\n'
	wait_for $LAG ks_version_is "$B/s" 2
	assert_file "$B/s/data" 'theirs\n'
	assert_file "$A/s/data" 'theirs\n'
	# still refused once B has seen the commit
	assert_errno EAGAIN rename "$B/s/T" "$B/s/data"
	assert_file "$B/s/T" 'mine\n'
	# a new transaction on B, based on the commit it saw, goes through
	rm "$B/s/T"
	touch "$B/s/U"
	echo again >"$B/s/U"
	mv "$B/s/U" "$B/s/data"
	assert_version "$B/s" 3
	wait_for $LAG ks_version_is "$A/s" 3
	assert_file "$A/s/data" 'again\n'
	# and the other way round
	touch "$A/s/V"
	echo late >"$B/s/data"
	assert_errno EAGAIN rename "$A/s/V" "$A/s/data"
	[ -e "$A/s/V" ]
	wait_for $LAG ks_version_is "$A/s" 4
	assert_file "$A/s/data" 'late\n'
}

@test "etcd: 4 processes on 2 hosts increment with the safe loop: no update lost" {
	two_hosts
	local n=50 pid st=0
	local -a pids=()
	mkdir "$A/counter"
	wait_for $LAG test -d "$B/counter"
	local loop='
		cd "$1" || exit 1
		for ((i = 0; i < $2; i++)); do
			tries=0
			until
				touch txn.$$ &&
				n=$(cat txn.$$) &&
				echo $((n + 1)) >txn.$$ &&
				mv txn.$$ data 2>/dev/null
			do
				rm -f txn.$$
				tries=$((tries + 1))
				[ $tries -lt 5000 ] || { echo "5000 conflicts in a row"; exit 1; }
			done
		done'
	for d in "$A" "$A" "$B" "$B"; do
		ks_bg timeout 300 bash -c "$loop" loop "$d/counter" "$n"
		pids+=($!)
	done
	for pid in "${pids[@]}"; do
		wait "$pid" || st=$?
	done
	assert_eq "$st" 0 "an increment loop failed"
	assert_file "$A/counter/data" "$((4 * n))\n"
	assert_version "$A/counter" $((4 * n))
	wait_for $LAG ks_version_is "$B/counter" $((4 * n))
	assert_file "$B/counter/data" "$((4 * n))\n"
	# no transaction file left on either host
	assert_eq "$(ls "$A/counter")" "$(printf 'data\nevery\nversion')"
	assert_eq "$(ls "$B/counter")" "$(printf 'data\nevery\nversion')"
}

@test "etcd: inotifywait and poll on B's version wake on a commit on A" {
	two_hosts
	mkdir "$A/s"
	wait_for $LAG test -d "$B/s"
	local out=$BATS_TEST_TMPDIR/inotify
	watch_version "$B/s/version" "$out"
	echo 1 >"$A/s/data"
	wait_for $LAG eval '[ "$(nlines "$out")" -gt 0 ]'
	local before
	before=$(nlines "$out")
	kstate set "$A/s" 2
	wait_for $LAG eval '[ "$(nlines "$out")" -gt "$before" ]'
	wait_for $LAG ks_version_is "$B/s" 2
	# poll: POLLPRI for a commit made before poll (after the read) and for
	# one made while poll waits
	ks_py "$B/s" "$A/s" <<-'EOF'
		b, a = sys.argv[1], sys.argv[2]
		import threading
		fd = os.open(b + "/version", os.O_RDONLY)
		check(read_at0(fd) == b"2\n", "B's version")
		commit(a, "3")
		p = select.poll()
		p.register(fd, select.POLLPRI)
		ev = p.poll(10000)
		check(ev and ev[0][1] & select.POLLPRI, "no POLLPRI on B within 10 s for a commit on A: %r" % ev)
		check(read_at0(fd) == b"3\n", "B's version after the wake-up")
		t = threading.Thread(target=lambda: (time.sleep(0.5), commit(a, "4")))
		t.start()
		ev = p.poll(10000)
		t.join()
		check(ev and ev[0][1] & select.POLLPRI, "no POLLPRI on B within 10 s while waiting: %r" % ev)
		check(read_at0(fd) == b"4\n", "B's version after the second wake-up")
		check(data(b) == b"4", "B's data %r" % data(b))
		os.close(fd)
	EOF
}

@test "etcd: B's .events shows A's mkdir, commits, mv and rmdir" {
	two_hosts
	mkdir "$A/pre"
	wait_for $LAG test -d "$B/pre"
	ks_py -m ksmount "$B" "$A" <<-'EOF'
		b, a = sys.argv[1], sys.argv[2]
		ev = EventReader(b)
		os.mkdir(a + "/s")
		check(ev.line(10, "create s") == "create s", "expected create s")
		write_file(a + "/s/data", "one")
		check(ev.line(10, "commit s 1") == "commit s 1", "expected commit s 1")
		write_file(a + "/s/data", "two")
		write_file(a + "/pre/data", "x")
		check(ev.lines(2, 10) == ["commit s 2", "commit pre 1"], "two commits in order")
		os.rmdir(a + "/pre")
		check(ev.line(10, "delete pre") == "delete pre", "expected delete pre")
		# a commit on B itself shows too, in order with A's
		write_file(b + "/s/data", "three")
		check(ev.line(10, "commit s 3") == "commit s 3", "expected commit s 3")
		# mv: the old name goes, the new one comes
		os.rename(a + "/s", a + "/t")
		check(ev.lines(2, 10) == ["delete s", "create t"], "mv s t")
		ev.quiet(0.5)
	EOF
}

@test "etcd: B's throttled view, kstate wait and kstate when wake on commits on A" {
	two_hosts
	mkdir "$A/s"
	wait_for $LAG test -d "$B/s"
	# a view on B moves, and ends on the latest version
	cat "$B/s/every/100ms/version" >/dev/null
	local i
	for i in 1 2 3; do
		echo "$i" >"$A/s/data"
	done
	wait_for $LAG eval '[ "$(cat "$B/s/every/100ms/version")" = 3 ]'
	assert_file "$B/s/every/100ms/data" '3\n'
	# kstate wait on B returns after A commits
	local out=$BATS_TEST_TMPDIR/wait.out st=$BATS_TEST_TMPDIR/wait.status
	ks_bg sh -c '"$1" wait "$2" --after 3 --timeout 20 >"$3" 2>&1; echo $? >"$4"' \
		sh "$KSTATE" "$B/s" "$out" "$st"
	sleep 0.5
	echo 4 >"$A/s/data"
	wait_for 20 test -s "$st"
	assert_eq "$(cat "$st")" 0 "kstate wait status; output: $(cat "$out")"
	assert_eq "$(cat "$out")" 4 "kstate wait output"
	# kstate when on B: the predicate becomes true by a commit on A
	out=$BATS_TEST_TMPDIR/when.out st=$BATS_TEST_TMPDIR/when.status
	ks_bg sh -c '"$1" when "$2" --timeout 20 -- grep -qx go >"$3" 2>&1; echo $? >"$4"' \
		sh "$KSTATE" "$B/s" "$out" "$st"
	sleep 0.5
	echo nogo >"$A/s/data"
	echo go >"$A/s/data"
	wait_for 20 test -s "$st"
	assert_eq "$(cat "$st")" 0 "kstate when status; output: $(cat "$out")"
	# kstate watch on B runs its command for A's commits, the last one
	# always
	out=$BATS_TEST_TMPDIR/watch.out
	: >"$out"
	ks_bg "$KSTATE" watch "$B/s" --max-rate 5 -- sh -c "cat >>'$out'; echo >>'$out'"
	wait_for 20 grep -qx go "$out"
	for i in w1 w2 w3 w4 last; do
		echo "$i" >"$A/s/data"
	done
	wait_for 20 eval '[ "$(grep -v "^$" "$out" | tail -n 1)" = last ]'
	# kstate wait on B with a timeout and no commit: status 1
	run kstate wait "$B/s" --timeout 1
	assert_eq "$status" 1 "kstate wait with nothing happening; output: $output"
}

@test "etcd: .txn bank transfers from A and B, audits on both always sum to the total" {
	two_hosts
	local nacc=5 bal=100 count=30 bank=$KS_TOOLS/workloads/bank.py
	local tmp=$BATS_TEST_TMPDIR st=0 pid i
	local -a writers=() auditors=()
	python3 "$bank" setup "$A" $nacc $bal
	for ((i = 0; i < nacc; i++)); do
		wait_for $LAG ks_version_is "$B/acct$i" 1
	done
	for h in A B; do
		local m=$A
		[ $h = B ] && m=$B
		ks_bg timeout 300 python3 "$bank" audit "$m" $nacc $((nacc * bal)) \
			"$tmp/stop" "$tmp/audit.$h" >"$tmp/audit.$h.out" 2>&1
		auditors+=($!)
		ks_bg timeout 300 python3 "$bank" transfer "$m" $nacc $count \
			"$tmp/log.$h" >"$tmp/transfer.$h.out" 2>&1
		writers+=($!)
	done
	for pid in "${writers[@]}"; do
		wait "$pid" || st=$?
	done
	touch "$tmp/stop"
	for pid in "${auditors[@]}"; do
		wait "$pid" || st=$?
	done
	if [ "$st" -ne 0 ]; then
		tail -n 5 "$tmp"/*.out
		return 1
	fi
	cat "$tmp"/*.out
	python3 "$bank" check "$A" $nacc $bal "$tmp/log.A" "$tmp/log.B"
	# B ends where A is
	for ((i = 0; i < nacc; i++)); do
		wait_for $LAG ks_version_is "$B/acct$i" "$(cat "$A/acct$i/version")"
		assert_eq "$(cat "$B/acct$i/data")" "$(cat "$A/acct$i/data")" "acct$i on B"
	done
	python3 "$bank" check "$B" $nacc $bal "$tmp/log.A" "$tmp/log.B"
}

@test "etcd: etcdctl get PREFIX+NAME prints the page; mv moves the key, rmdir removes it" {
	two_hosts
	local P=$KS_ETCD_PREFIX
	mkdir "$A/k"
	etcd_key_exists "${P}k"
	assert_eq "$(etcd_key_value "${P}k" | od -An -c)" "" "the key of a new state"
	echo hello >"$A/k/data"
	run etcdctl --endpoints="$ETCD_ENDPOINTS" get "${P}k" --print-value-only
	assert_eq "$status" 0
	assert_eq "$output" hello
	etcd_key_value "${P}k" >"$BATS_TEST_TMPDIR/v"
	assert_file "$BATS_TEST_TMPDIR/v" 'hello\n'
	# any bytes, exactly; a commit on B too
	wait_for $LAG ks_version_is "$B/k" 1
	printf 'a\0b\377\n\n' >"$B/k/data"
	wait_for $LAG ks_version_is "$A/k" 2
	etcd_key_value "${P}k" >"$BATS_TEST_TMPDIR/v"
	assert_file "$BATS_TEST_TMPDIR/v" 'a\0b\377\n\n'
	# mv moves the key and keeps the page
	mv "$A/k" "$A/k2"
	refute etcd_key_exists "${P}k"
	etcd_key_value "${P}k2" >"$BATS_TEST_TMPDIR/v"
	assert_file "$BATS_TEST_TMPDIR/v" 'a\0b\377\n\n'
	wait_for $LAG ks_version_is "$B/k2" 2
	# rmdir removes it
	rmdir "$B/k2"
	refute etcd_key_exists "${P}k2"
	# states that were never committed have their key too
	mkdir "$A/e1" "$B/e2"
	etcd_key_exists "${P}e1"
	etcd_key_exists "${P}e2"
}

@test "etcd: .stats says etcd_connected 1 and an etcd_revision that rises with commits" {
	two_hosts
	local ra rb r2 i
	# From the moment the mount is made (a health check run right after
	# mounting must not see 0): five fresh mounts, read at once.
	for i in 1 2 3 4 5; do
		ks_host C
		assert_eq "$(ks_stat_value "$HOST_C" etcd_connected)" 1 "etcd_connected right after mount $i"
		ks_unmount_host C
	done
	wait_for $LAG ks_stat_is "$A" etcd_connected 1
	wait_for $LAG ks_stat_is "$B" etcd_connected 1
	ra=$(ks_stat_value "$A" etcd_revision)
	rb=$(ks_stat_value "$B" etcd_revision)
	[[ $ra =~ ^[0-9]+$ ]] || { echo "etcd_revision on A: '$ra'"; return 1; }
	mkdir "$A/s"
	echo 1 >"$A/s/data"
	echo 2 >"$A/s/data"
	r2=$(ks_stat_value "$A" etcd_revision)
	[ "$r2" -gt "$ra" ] || { echo "etcd_revision on A went from $ra to $r2 over 3 changes"; return 1; }
	# B follows the revisions of A's commits
	wait_for $LAG ks_version_is "$B/s" 2
	wait_for $LAG eval '[ "$(ks_stat_value "$B" etcd_revision)" -ge "$r2" ]'
	[ "$(ks_stat_value "$B" etcd_revision)" -gt "$rb" ]
	# the revision etcd itself reports, at least
	local rev
	rev=$(etcdctl --endpoints="$ETCD_ENDPOINTS" endpoint status -w json |
		python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])')
	[ "$rev" -ge "$r2" ] || { echo "etcd is at revision $rev, A says $r2"; return 1; }
}

@test "etcd: unmount every host and mount again: names, pages and versions are kept" {
	two_hosts
	mkdir "$A/a" "$A/b" "$B/c" "$A/gone" "$A/old"
	echo one >"$A/a/data"
	echo two >"$A/a/data"
	wait_for $LAG test -d "$B/b"
	printf 'bee' >"$B/b/data"
	echo old >"$A/old/data"
	mv "$A/old" "$A/new"
	rmdir "$A/gone"
	wait_for $LAG test -d "$B/new"
	wait_for $LAG ks_version_is "$A/b" 1
	local want
	want=$(cd "$A" && for s in *; do echo "$s $(cat "$s/version") $(od -An -c "$s/data" | tr -s ' \n' ' ')"; done)
	ks_unmount_host A
	ks_unmount_host B
	ks_host A
	ks_host B
	local got
	for h in "$HOST_A" "$HOST_B"; do
		wait_for $LAG eval '[ "$(ls "$h" | wc -l)" -eq 4 ]'
		got=$(cd "$h" && for s in *; do echo "$s $(cat "$s/version") $(od -An -c "$s/data" | tr -s ' \n' ' ')"; done)
		assert_eq "$got" "$want" "states after the remount on $h"
	done
	# and they go on from there
	echo three >"$HOST_B/a/data"
	assert_version "$HOST_B/a" 3
	wait_for $LAG ks_version_is "$HOST_A/a" 3
}

@test "etcd: hosts with different max_size and max_states still share every state: the larger pages and the extra states are taken" {
	ks_etcd_start 1
	ks_host A -o max_size=8192
	ks_host B -o max_states=3
	local A=$HOST_A B=$HOST_B i
	mkdir "$A/big"
	head -c 6000 /dev/zero | tr '\0' x >"$A/big/data"
	wait_for $LAG ks_version_is "$B/big" 1
	assert_eq "$(stat -c %s "$B/big/data")" 6000 "the large page on B"
	assert_eq "$(head -c 6000 /dev/zero | tr '\0' x)" "$(cat "$B/big/data")" "its bytes on B"
	# B commits keep to B's own max_size.
	assert_contains "$(ks_errno write "$B/big/data" wa 1)" EFBIG
	for i in 1 2 3 4; do
		mkdir "$A/s$i"
	done
	wait_for $LAG test -d "$B/s4"
	assert_eq "$(ls "$B" | wc -l)" 5 "states listed on B"
	assert_errno ENOSPC mkdir "$B/mine"
	# A host mounted now takes them too.
	ks_host C
	assert_eq "$(stat -c %s "$HOST_C/big/data")" 6000 "the large page on C"
	ks_unmount_host C
}
