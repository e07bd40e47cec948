#!/usr/bin/env bats
# SPEC 2: mounting, options, signals, exit status, the store.

load helpers

@test "--help prints usage and exits 0" {
	run timeout 20 "$KSTATEFS" --help
	assert_eq "$status" 0 "kstatefs --help status; output: $output"
	assert_contains "$output" "--store"
}

@test "--version prints the version and exits 0" {
	run timeout 20 "$KSTATEFS" --version
	assert_eq "$status" 0 "kstatefs --version status; output: $output"
	[[ "$output" =~ [0-9]+\.[0-9]+ ]] || {
		echo "no version number in: $output"
		return 1
	}
}

@test "an unknown option is a usage error: exit 1" {
	mkdir "$BATS_TEST_TMPDIR/m"
	run timeout 20 "$KSTATEFS" --no-such-option "$BATS_TEST_TMPDIR/m"
	assert_eq "$status" 1 "status; output: $output"
	[ -n "$output" ] || { echo "no message"; return 1; }
	refute ks_is_mounted "$BATS_TEST_TMPDIR/m"
}

@test "a second kstatefs on a live kstatefs mount: exit 2 and why, the first one untouched" {
	ks_mount
	mkdir "$MNT/s"
	run timeout 20 "$KSTATEFS" "$MNT"
	assert_eq "$status" 2 "status; output: $output"
	assert_contains "$output" "a kstatefs mount already"
	assert_eq "$(grep -c " $MNT fuse" /proc/mounts)" 1 "mounts at $MNT"
	[ -d "$MNT/s" ] || { echo "the first mount's state is hidden"; return 1; }
}

@test "an empty store (-o store= or --store '') is a usage error: exit 1" {
	mkdir "$BATS_TEST_TMPDIR/m"
	run timeout 20 "$KSTATEFS" -o store= "$BATS_TEST_TMPDIR/m"
	assert_eq "$status" 1 "-o store= status; output: $output"
	assert_contains "$output" "store"
	run timeout 20 "$KSTATEFS" --store '' "$BATS_TEST_TMPDIR/m"
	assert_eq "$status" 1 "--store '' status; output: $output"
	refute ks_is_mounted "$BATS_TEST_TMPDIR/m"
}

@test "a bad --sync value is a usage error: exit 1" {
	mkdir "$BATS_TEST_TMPDIR/m"
	run timeout 20 "$KSTATEFS" -f --sync sometimes "$BATS_TEST_TMPDIR/m"
	assert_eq "$status" 1 "status; output: $output"
	refute ks_is_mounted "$BATS_TEST_TMPDIR/m"
}

@test "a bad -o max_size value is a usage error: exit 1" {
	mkdir "$BATS_TEST_TMPDIR/m"
	local v
	for v in lots 0 -5 +5 ' 5' 4k 99999999999999999999; do
		run timeout 20 "$KSTATEFS" -f -o "max_size=$v" "$BATS_TEST_TMPDIR/m"
		assert_eq "$status" 1 "max_size='$v' status; output: $output"
		assert_contains "$output" "max_size"
	done
	run timeout 20 "$KSTATEFS" -f -o "root_mode= 755" "$BATS_TEST_TMPDIR/m"
	assert_eq "$status" 1 "root_mode=' 755' status; output: $output"
	refute ks_is_mounted "$BATS_TEST_TMPDIR/m"
}

@test "no mountpoint is a usage error: exit 1" {
	run timeout 20 "$KSTATEFS"
	assert_eq "$status" 1 "status; output: $output"
}

@test "a mountpoint that does not exist: exit 2" {
	run timeout 20 "$KSTATEFS" "$BATS_TEST_TMPDIR/no/such/dir"
	assert_eq "$status" 2 "status; output: $output"
	[ -n "$output" ] || { echo "no message"; return 1; }
}

@test "-f: mounts, serves, and fusermount3 -u ends it with status 0" {
	ks_mount
	mkdir "$MNT/s"
	echo hello >"$MNT/s/data"
	assert_file "$MNT/s/data" 'hello\n'
	ks_unmount
	refute ks_is_mounted "$MNT"
}

@test "without -f: returns once the mount is usable; fusermount3 -u ends the daemon" {
	local m=$BATS_TEST_TMPDIR/d pid
	mkdir "$m"
	KS_DAEMON_MNTS+=("$m")
	run env $(ks_san_env) timeout 20 "$KSTATEFS" "$m"
	assert_eq "$status" 0 "kstatefs status; output: $output"
	# Usable at once: no waiting, no retry.
	ks_is_mounted "$m"
	mountpoint -q "$m"
	mkdir "$m/s"
	echo 7 >"$m/s/data"
	assert_file "$m/s/data" '7\n'
	pid=$(ks_daemon_pid "$m")
	[ -n "$pid" ] || { echo "no kstatefs process serving $m"; return 1; }
	fusermount3 -u "$m"
	wait_for 20 eval "! ks_alive $pid"
	refute ks_is_mounted "$m"
	ks_sanitizer_check
}

@test "without -f: SIGTERM to the daemon unmounts cleanly" {
	local m=$BATS_TEST_TMPDIR/d pid
	mkdir "$m"
	KS_DAEMON_MNTS+=("$m")
	run env $(ks_san_env) timeout 20 "$KSTATEFS" "$m"
	assert_eq "$status" 0 "kstatefs status; output: $output"
	mkdir "$m/s"
	pid=$(ks_daemon_pid "$m")
	[ -n "$pid" ] || { echo "no kstatefs process serving $m"; return 1; }
	kill -TERM "$pid"
	wait_for 20 eval "! ks_alive $pid"
	wait_for 10 eval "! ks_is_mounted $m"
	ks_sanitizer_check
}

# signal_unmounts SIG: SIG to the -f daemon $KS_PID unmounts $MNT, and the
# daemon exits 0 with no sanitizer report.
signal_unmounts() {
	local pid=$KS_PID st=0
	KS_PID=
	KS_DAEMON_MNTS+=("$MNT")
	kill "-$1" "$pid"
	wait_for 20 eval "! ks_alive $pid"
	wait "$pid" || st=$?
	assert_eq "$st" 0 "exit status after SIG$1; log: $(cat "$KS_LOG")"
	wait_for 10 eval "! ks_is_mounted $MNT"
	ks_sanitizer_check "$KS_LOG"
}

@test "-f: SIGTERM unmounts cleanly and exits 0" {
	ks_mount
	mkdir "$MNT/s"
	signal_unmounts TERM
}

@test "-f: SIGTERM with readers waiting on .events and in poll: they are told, the daemon exits 0 and says nothing" {
	ks_mount
	mkdir "$MNT/s"
	local err=$BATS_TEST_TMPDIR/cat.err
	ks_bg cat "$MNT/.events" >/dev/null 2>"$err"
	ks_bg python3 -c '
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.read(fd, 64)
p = select.poll()
p.register(fd, select.POLLPRI)
p.poll(30000)' "$MNT/s/version"
	wait_for 20 eval '[ "$(sed -n "s/^event_readers //p" "$MNT/.stats")" = 1 ]'
	sleep 0.3
	signal_unmounts TERM
	if [ -s "$KS_LOG" ]; then
		echo "the daemon said at a clean exit: $(cat "$KS_LOG")"
		return 1
	fi
	wait_for 20 grep -q 'not connected' "$err"
}

@test "-f: SIGINT unmounts cleanly and exits 0" {
	ks_mount
	signal_unmounts INT
}

@test "without --store, states vanish at unmount" {
	ks_mount
	mkdir "$MNT/s"
	echo x >"$MNT/s/data"
	ks_unmount
	ks_mount
	run ls "$MNT"
	assert_eq "$output" "" "the root after a remount"
}

@test "the usual FUSE options are accepted: -d, -o allow_other" {
	ks_mount -d -o allow_other
	mkdir "$MNT/s"
	echo x >"$MNT/s/data"
	assert_file "$MNT/s/data" 'x\n'
}

@test "--store: created if missing; states, pages and versions survive a remount" {
	local store=$BATS_TEST_TMPDIR/store/sub
	ks_mount --store "$store"
	[ -d "$store" ]
	mkdir "$MNT/a" "$MNT/b" "$MNT/empty"
	echo one >"$MNT/a/data"
	echo two >"$MNT/a/data"
	printf 'bee' >"$MNT/b/data"
	ks_unmount
	ks_mount --store "$store"
	run ls "$MNT"
	assert_eq "$output" "$(printf 'a\nb\nempty')" "states after remount"
	assert_file "$MNT/a/data" 'two\n'
	assert_version "$MNT/a" 2
	assert_file "$MNT/b/data" 'bee'
	assert_version "$MNT/b" 1
	assert_file "$MNT/empty/data" ''
	assert_version "$MNT/empty" 0
}

@test "--store: deletes and renames survive a remount" {
	local store=$BATS_TEST_TMPDIR/store
	ks_mount --store "$store"
	mkdir "$MNT/a" "$MNT/b" "$MNT/c"
	echo A >"$MNT/a/data"
	echo C >"$MNT/c/data"
	rmdir "$MNT/b"
	mv "$MNT/c" "$MNT/d"
	ks_unmount
	ks_mount --store "$store"
	run ls "$MNT"
	assert_eq "$output" "$(printf 'a\nd')" "states after remount"
	assert_file "$MNT/d/data" 'C\n'
	assert_version "$MNT/d" 1
}

@test "--store: versions go on rising after a remount" {
	local store=$BATS_TEST_TMPDIR/store
	ks_mount --store "$store" --sync none
	mkdir "$MNT/s"
	for i in 1 2 3; do echo $i >"$MNT/s/data"; done
	ks_unmount
	ks_mount --store "$store" --sync none
	assert_version "$MNT/s" 3
	echo 4 >"$MNT/s/data"
	assert_version "$MNT/s" 4
	assert_file "$MNT/s/data" '4\n'
}

@test "--store: transactions are gone after a restart" {
	local store=$BATS_TEST_TMPDIR/store
	ks_mount --store "$store"
	mkdir "$MNT/s"
	echo base >"$MNT/s/data"
	echo pending >"$MNT/s/t"
	ks_unmount
	ks_mount --store "$store"
	[ ! -e "$MNT/s/t" ] || { echo "transaction t survived the restart"; return 1; }
	assert_file "$MNT/s/data" 'base\n'
	assert_version "$MNT/s" 1
}

@test "--store: a second daemon on the same store exits 2 naming the holder" {
	local store=$BATS_TEST_TMPDIR/store m2=$BATS_TEST_TMPDIR/m2
	ks_mount --store "$store"
	mkdir "$m2"
	KS_DAEMON_MNTS+=("$m2")
	run timeout 20 "$KSTATEFS" -f --store "$store" "$m2"
	assert_eq "$status" 2 "second kstatefs status; output: $output"
	refute ks_is_mounted "$m2"
	assert_contains "$output" "$KS_PID" "the message should name the holder (pid $KS_PID)"
	# The first one is unharmed.
	mkdir "$MNT/s"
	echo ok >"$MNT/s/data"
	assert_file "$MNT/s/data" 'ok\n'
}

@test "--store: a remount right after an unmount waits for the old daemon to let go of the store" {
	local store=$BATS_TEST_TMPDIR/store i
	ks_mount --store "$store"
	mkdir "$MNT/s"
	ks_unmount
	# a daemon still exiting, as under load: it holds the lock for 1 s more
	(
		flock -x 9
		touch "$BATS_TEST_TMPDIR/locked"
		sleep 1
	) 9>"$store/lock" &
	wait_for 20 test -e "$BATS_TEST_TMPDIR/locked"
	ks_mount --store "$store"
	assert_version "$MNT/s" 0
	ks_unmount
	# and as users do it: unmount, mount again at once, ten times
	for ((i = 1; i <= 10; i++)); do
		timeout 20 "$KSTATEFS" --store "$store" "$MNT" || {
			echo "round $i: the remount failed"
			return 1
		}
		echo "$i" >"$MNT/s/data"
		fusermount3 -u "$MNT"
	done
	ks_mount --store "$store"
	assert_file "$MNT/s/data" '10\n'
}

# ks_crash: kill -9 the daemon (no clean shutdown, no compaction at exit) and
# detach its mount.
ks_crash() {
	local pid=$KS_PID
	KS_PID=
	kill -KILL "$pid"
	wait "$pid" || true
	fusermount3 -u "$MNT" || fusermount3 -uz "$MNT"
}

# store_log STORE: the store file written last (the log being appended to).
store_log() {
	find "$1" -type f -size +0 -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-
}

@test "--store: a torn last record is dropped, the rest recovered" {
	local store=$BATS_TEST_TMPDIR/store f
	ks_mount --store "$store" --sync none
	mkdir "$MNT/s"
	for i in 1 2 3 4 5; do echo "value $i" >"$MNT/s/data"; done
	ks_crash
	# A crash in the middle of the next record: a partial record at the end.
	f=$(store_log "$store")
	[ -n "$f" ] || { echo "no file in the store"; return 1; }
	printf '\x17\x00\x00\x00\x42\x42' >>"$f"
	ks_mount --store "$store"
	assert_file "$MNT/s/data" 'value 5\n'
	assert_version "$MNT/s" 5
}

@test "--store: damage before the end stops the mount (exit 2) naming the file" {
	local store=$BATS_TEST_TMPDIR/store f size m2=$BATS_TEST_TMPDIR/m2 i
	local letters=({A..Z})
	# --sync full: every record is synced before the next is written, so
	# damage a third of the way in is damage to acknowledged records.
	# (With --sync none, the records since the last sync are one batch
	# that a power cut may tear anywhere: core/STORE.md.)
	ks_mount --store "$store"
	for i in $(seq 1 40); do
		mkdir "$MNT/s$i"
		head -c 200 /dev/zero | tr '\0' "${letters[i % 26]}" >"$MNT/s$i/data"
	done
	ks_crash
	f=$(store_log "$store")
	size=$(stat -c %s "$f")
	[ "$size" -gt 4000 ] || { echo "store file $f too small ($size)"; return 1; }
	# Flip a byte a third of the way into the records (the store writes
	# zeros ahead of its end): inside a record that many good ones follow.
	ks_py "$f" <<-'EOF'
		with open(sys.argv[1], "r+b") as f:
		    data = f.read()
		    off = len(data.rstrip(b"\0")) // 3
		    f.seek(off)
		    b = f.read(1)
		    f.seek(off)
		    f.write(bytes([b[0] ^ 0x5a]))
	EOF
	mkdir "$m2"
	KS_DAEMON_MNTS+=("$m2")
	run timeout 20 "$KSTATEFS" -f --store "$store" "$m2"
	assert_eq "$status" 2 "kstatefs on a damaged store; output: $output"
	refute ks_is_mounted "$m2"
	assert_contains "$output" "$(basename "$f")" "the message should name the damaged file"
}

@test "-o store=DIR,sync=none: the store options as -o options; a state survives a remount" {
	ks_mount -o "store=$BATS_TEST_TMPDIR/st,sync=none"
	mkdir "$MNT/kept"
	echo 42 >"$MNT/kept/data"
	ks_unmount
	[ -f "$BATS_TEST_TMPDIR/st/lock" ] || { echo "no store made"; return 1; }
	ks_mount -o "store=$BATS_TEST_TMPDIR/st"
	assert_file "$MNT/kept/data" '42\n'
	assert_version "$MNT/kept" 1
}

@test "SOURCE MOUNTPOINT -o OPTIONS, as mount(8) calls a helper" {
	mkdir "$BATS_TEST_TMPDIR/m"
	local -a env
	mapfile -t env < <(ks_san_env)
	run timeout 20 env "${env[@]}" "$KSTATEFS" kstatefs "$BATS_TEST_TMPDIR/m" \
		-o "store=$BATS_TEST_TMPDIR/st"
	assert_eq "$status" 0 "status; output: $output"
	KS_DAEMON_MNTS+=("$BATS_TEST_TMPDIR/m")
	ks_is_mounted "$BATS_TEST_TMPDIR/m"
	mkdir "$BATS_TEST_TMPDIR/m/s"
	echo x >"$BATS_TEST_TMPDIR/m/s/data"
	fusermount3 -u "$BATS_TEST_TMPDIR/m"
	[ -f "$BATS_TEST_TMPDIR/st/lock" ] || { echo "-o store= ignored"; return 1; }
}

@test "three arguments are a usage error: exit 1" {
	mkdir "$BATS_TEST_TMPDIR/m"
	run timeout 20 "$KSTATEFS" -f a b "$BATS_TEST_TMPDIR/m"
	assert_eq "$status" 1 "status; output: $output"
	refute ks_is_mounted "$BATS_TEST_TMPDIR/m"
}

@test "--etcd with --store is a usage error: exit 1, nothing mounted" {
	mkdir "$BATS_TEST_TMPDIR/m"
	run timeout 20 "$KSTATEFS" -f --etcd http://127.0.0.1:9 \
		--store "$BATS_TEST_TMPDIR/st" "$BATS_TEST_TMPDIR/m"
	assert_eq "$status" 1 "status; output: $output"
	assert_contains "$output" "exclude"
	refute ks_is_mounted "$BATS_TEST_TMPDIR/m"
	[ ! -e "$BATS_TEST_TMPDIR/st" ] || { echo "store made anyway"; return 1; }
}

@test "etcd_prefix or etcd_timeout without --etcd, or a bad timeout: exit 1" {
	mkdir "$BATS_TEST_TMPDIR/m"
	run timeout 20 "$KSTATEFS" -f -o etcd_prefix=/x/ "$BATS_TEST_TMPDIR/m"
	assert_eq "$status" 1 "status; output: $output"
	run timeout 20 "$KSTATEFS" -f --etcd http://127.0.0.1:9 \
		-o etcd_timeout=soon "$BATS_TEST_TMPDIR/m"
	assert_eq "$status" 1 "status; output: $output"
	run timeout 20 "$KSTATEFS" -f --etcd http://127.0.0.1:9 \
		-o max_size=2000000 "$BATS_TEST_TMPDIR/m"
	assert_eq "$status" 1 "status; output: $output"
	assert_contains "$output" "max_size"
	refute ks_is_mounted "$BATS_TEST_TMPDIR/m"
}

@test "--etcd endpoints that are not http(s)://HOST[:PORT] are a usage error: exit 1 at once, nothing mounted" {
	local e
	mkdir -p "$BATS_TEST_TMPDIR/m"
	for e in 127.0.0.1:2379 ftp://x http://127.0.0.1:9/v3 http:// "http://127.0.0.1:9,,http://127.0.0.1:8"; do
		run timeout 20 "$KSTATEFS" -f --etcd "$e" "$BATS_TEST_TMPDIR/m"
		assert_eq "$status" 1 "status for --etcd '$e'; output: $output" || return 1
		assert_contains "$output" "etcd"
	done
	refute ks_is_mounted "$BATS_TEST_TMPDIR/m"
}

@test "after kill -9 the dead mount must be unmounted first: the remount says so; after fusermount3 -u it mounts" {
	local store=$BATS_TEST_TMPDIR/store
	ks_mount --store "$store"
	mkdir "$MNT/s"
	echo kept >"$MNT/s/data"
	kill -KILL "$KS_PID"
	wait "$KS_PID" 2>/dev/null || true
	KS_PID=
	run timeout 20 "$KSTATEFS" --store "$store" "$MNT"
	assert_eq "$status" 2 "status; output: $output"
	assert_contains "$output" "Transport endpoint is not connected"
	assert_contains "$output" "fusermount3 -u $MNT"
	fusermount3 -u "$MNT"
	ks_mount --store "$store"
	assert_file "$MNT/s/data" 'kept\n'
}

@test "after kill -9 with a shell still inside the dead mount, a remount says so too (no mount stacked over it)" {
	local holder
	ks_mount
	mkdir "$MNT/s"
	# A process whose working directory is in the mount keeps the
	# root's attributes in the kernel: stat of the dead mount succeeds.
	(cd "$MNT/s" && exec sleep 60) &
	holder=$!
	sleep 0.3
	kill -KILL "$KS_PID"
	wait "$KS_PID" 2>/dev/null || true
	KS_PID=
	run timeout 20 "$KSTATEFS" "$MNT"
	kill "$holder"
	wait "$holder" 2>/dev/null || true
	assert_eq "$status" 2 "status; output: $output"
	assert_contains "$output" "Transport endpoint is not connected"
	assert_eq "$(grep -c " $MNT " /proc/mounts)" 1 "mounts at $MNT"
	fusermount3 -u "$MNT"
	ks_mount
	mkdir "$MNT/t"
}

# --- unmounting right after a commit --------------------------------------
#
# After every commit the daemon's kstatefs-notify child opens the state's
# version file, writes to it and closes it, for inotify (kstatefs(1),
# NOTES).  It does so through a copy of the mount of its own, so an
# unmount at that moment is not refused as busy; when the mount leaves the
# mount table the daemon ends the child, and with it the copy, and exits.

# unmount_now CMD...: CMD $MNT (fusermount3 -u, umount, umount -l) must
# succeed the first time; then the mount must be gone and the daemon
# $KS_PID must exit with status 0 within 20 s.
unmount_now() {
	local pid=$KS_PID out
	if ! out=$("$@" "$MNT" 2>&1); then
		echo "$* $MNT failed: $out"
		return 1
	fi
	KS_PID=
	if ! wait_for 20 eval '! ks_is_mounted "$MNT"'; then
		KS_PID=$pid
		return 1
	fi
	exits_cleanly "$pid" "$*"
}

# exits_cleanly PID WHAT: the daemon PID exits within 20 s of WHAT, with
# status 0 and no sanitizer report.
exits_cleanly() {
	local pid=$1 st=0
	if ! wait_for 20 eval "! ks_alive $pid"; then
		echo "kstatefs $pid still running 20 s after $2; log: $(cat "$KS_LOG")"
		kill -KILL "$pid"
		return 1
	fi
	wait "$pid" || st=$?
	assert_eq "$st" 0 "the daemon's exit status after $2; log: $(cat "$KS_LOG" "$BATS_TEST_TMPDIR"/sanitizer* 2>/dev/null)" &&
		ks_sanitizer_check "$KS_LOG"
}

@test "fusermount3 -u at once after a commit succeeds: 100 rounds, some with a watcher" {
	local i err=$BATS_TEST_TMPDIR/watch.err
	for ((i = 1; i <= 100; i++)); do
		ks_mount
		mkdir "$MNT/s"
		if ((i % 3 == 0)); then
			: >"$err"
			ks_bg inotifywait -m "$MNT/s" >/dev/null 2>"$err"
			wait_for 20 grep -q 'Watches established' "$err"
		fi
		echo "$i" >"$MNT/s/data"
		unmount_now fusermount3 -u || {
			echo "in round $i"
			return 1
		}
		ks_kill_bg || true
	done
	ks_sanitizer_check "$BATS_TEST_TMPDIR"/kstatefs.*.log
}

@test "fusermount3 -u while the notifier holds version open succeeds; the daemon then exits" {
	ks_mount
	mkdir "$MNT/s"
	ks_hold_version "$MNT/s"
	unmount_now fusermount3 -u
	refute ks_alive "$NOTIFY_CHILD"
}

@test "umount and umount -l while the notifier holds version open succeed; the daemon then exits" {
	local how
	for how in umount "umount -l"; do
		ks_mount
		mkdir "$MNT/s"
		ks_hold_version "$MNT/s"
		unmount_now $how || return 1
		refute ks_alive "$NOTIFY_CHILD"
		ks_kill_bg || true
	done
}

@test "after fusermount3 -u, umount or umount -l right after a commit the daemon exits" {
	local how
	for how in "fusermount3 -u" umount "umount -l"; do
		ks_mount
		mkdir "$MNT/s"
		echo 1 >"$MNT/s/data"
		unmount_now $how || return 1
	done
}

@test "umount -l with a file still open: the daemon serves it until it is closed, then exits" {
	local pid fd
	ks_mount
	mkdir "$MNT/s"
	echo a >"$MNT/s/data"
	pid=$KS_PID
	exec {fd}<"$MNT/s/data"
	umount -l "$MNT"
	refute ks_is_mounted "$MNT"
	sleep 0.5
	if ! ks_alive "$pid"; then
		exec {fd}<&-
		echo "the daemon exited with a file of its mount still open"
		return 1
	fi
	assert_eq "$(cat <&"$fd")" a "a read from the file left open"
	exec {fd}<&-
	KS_PID=
	# The kernel sends the RELEASE of that last file in the background
	# and drops it when the connection ends: the daemon frees the open
	# files it never heard released at exit, so even a sanitizer build
	# exits 0 with nothing leaked.
	exits_cleanly "$pid" "its last file closed"
}

@test "umount -l with files and a directory open: each still works, the daemon exits 0 once they are closed; 30 rounds" {
	local i pid f1 f2 f3 dfd
	# 30 rounds: the kernel may end the connection while a thread is
	# reading the last RELEASE off it (ECONNABORTED, about one round in
	# a hundred), which is a clean exit too.
	for ((i = 1; i <= 30; i++)); do
		ks_mount
		mkdir "$MNT/s"
		echo a >"$MNT/s/data"
		pid=$KS_PID
		exec {f1}<"$MNT/s/data" {f2}<"$MNT/s/version" {f3}<"$MNT/.events"
		exec {dfd}<"$MNT/s"
		umount -l "$MNT"
		refute ks_is_mounted "$MNT"
		assert_eq "$(cat <&"$f1")" a "a read from data left open"
		assert_eq "$(cat <&"$f2")" 1 "a read from version left open"
		assert_contains "$(ls /proc/self/fd/$dfd/)" data
		exec {f1}<&- {f2}<&- {f3}<&- {dfd}<&-
		KS_PID=
		exits_cleanly "$pid" "its last files closed (round $i)" || return 1
	done
}

@test "kill -9 while the notifier holds version open: fusermount3 -u succeeds at once, the child exits" {
	local pid
	ks_mount
	mkdir "$MNT/s"
	ks_hold_version "$MNT/s"
	pid=$KS_PID
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	KS_PID=
	fusermount3 -u "$MNT"
	refute ks_is_mounted "$MNT"
	wait_for 20 eval "! ks_alive $NOTIFY_CHILD"
}
