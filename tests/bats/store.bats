#!/usr/bin/env bats
# SPEC 1 and 2: --store DIR and --sync: durable states on a real mount.

load helpers

setup() {
	STORE=$BATS_TEST_TMPDIR/store
	# The power-loss hook is for the tests that ask for it only.
	unset KSTATEFS_TEST_POWERLOSS
	# The writers start many times: no wrapper scripts in between.
	PYTHON=/usr/bin/python3
	[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
}

teardown() {
	ks_teardown
	local m
	for m in "$BATS_TEST_TMPDIR"/small; do
		if ks_is_mounted "$m"; then
			umount -l "$m" || true
		fi
	done
}

# The daemon is killed with SIGKILL; the dead mount is cleared away.  If a
# thread of the daemon was inside a request to its own mount (the notifier's
# write to version), the process cannot finish dying until the connection is
# aborted: umount -f does that.
ks_crash() {
	local pid=$KS_PID i
	KS_PID=
	kill -KILL "$pid"
	for ((i = 0; i < 40; i++)); do
		[ "$(awk '{print $3}' "/proc/$pid/task/"*/stat 2>/dev/null | grep -c D)" -eq 0 ] && break
		sleep 0.05
	done
	umount -f "$MNT" 2>/dev/null || true
	wait "$pid" || true
	ks_kill_bg || true
	fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
}

# A writer: commits to state $1 with mv, as fast as it can, forever, and
# after each commit that returned 0 writes the version it made to file $2.
# Page for version V of state S: "S V\n" then bytes that depend on both.
writer_script() {
	cat >"$BATS_TEST_TMPDIR/writer.py" <<-'EOF'
		import os, sys
		state, acked = sys.argv[1], sys.argv[2]
		name = os.path.basename(state)

		def page(v):
		    head = ("%s %d\n" % (name, v)).encode()
		    n = (v * 37) % 900
		    return head + bytes((v + i * 7 + len(name)) % 256 for i in range(n))

		try:
		    os.mkdir(state)
		except FileExistsError:
		    pass
		while True:
		    try:
		        with open(os.path.join(state, "version")) as f:
		            v = int(f.read())
		        break
		    except FileNotFoundError:
		        continue   # the same race, see below
		txn = os.path.join(state, "w.%d" % os.getpid())
		while True:
		    try:
		        with open(txn, "wb") as f:
		            f.write(page(v + 1))
		    except FileNotFoundError:
		        # A transient lookup race in the daemon, not the store's
		        # business here: try again.
		        continue
		    os.rename(txn, os.path.join(state, "data"))
		    v += 1
		    with open(acked + ".tmp", "w") as f:
		        f.write("%d\n" % v)
		    os.rename(acked + ".tmp", acked)
		    if not os.path.exists(acked + ".started"):
		        open(acked + ".started", "w").close()
	EOF
}

# check_states N: every state w0..wN-1 is at or past its acknowledged version
# with exactly the page of the version it is at.
check_states() {
	ks_py "$MNT" "$BATS_TEST_TMPDIR" "$1" <<-'EOF'
		mnt, tmp, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
		def page(name, v):
		    head = ("%s %d\n" % (name, v)).encode()
		    k = (v * 37) % 900
		    return head + bytes((v + i * 7 + len(name)) % 256 for i in range(k))
		for i in range(n):
		    name = "w%d" % i
		    try:
		        with open(os.path.join(tmp, "acked.%d" % i)) as f:
		            acked = int(f.read())
		    except FileNotFoundError:
		        acked = 0
		    state = os.path.join(mnt, name)
		    if not os.path.isdir(state):
		        if acked:
		            sys.exit("%s is gone, but version %d was acknowledged" % (name, acked))
		        continue
		    with open(os.path.join(state, "version")) as f:
		        v = int(f.read())
		    with open(os.path.join(state, "data"), "rb") as f:
		        got = f.read()
		    if v < acked:
		        sys.exit("%s at version %d, but %d was acknowledged" % (name, v, acked))
		    if v and got != page(name, v):
		        sys.exit("%s at version %d holds the wrong page (%d bytes)" % (name, v, len(got)))
		    print("%s: acknowledged %d, found %d" % (name, acked, v))
	EOF
}

# start_writers N: writers on states w0..wN-1, in the background; returns
# once each has made a commit.
start_writers() {
	local i
	writer_script
	rm -f "$BATS_TEST_TMPDIR"/acked.*.started
	for ((i = 0; i < $1; i++)); do
		ks_bg "$PYTHON" "$BATS_TEST_TMPDIR/writer.py" "$MNT/w$i" "$BATS_TEST_TMPDIR/acked.$i" 2>>"$BATS_TEST_TMPDIR/writers.log"
	done
	for ((i = 0; i < $1; i++)); do
		wait_for 30 test -e "$BATS_TEST_TMPDIR/acked.$i.started"
	done
}

make_states() {
	mkdir "$MNT/bin" "$MNT/empty" "$MNT/max" "$MNT/never" "$MNT/old" "$MNT/gone"
	printf 'x' >"$MNT/bin/data"
	python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 3)' >"$MNT/bin/data"
	echo something >"$MNT/empty/data"
	: >"$MNT/empty/data"
	head -c 4096 /dev/urandom >"$BATS_TEST_TMPDIR/max"
	cp "$BATS_TEST_TMPDIR/max" "$MNT/max/data"
	echo one >"$MNT/old/data"
	echo two >"$MNT/old/data"
	mv "$MNT/old" "$MNT/renamed"
	chmod 0600 "$MNT/renamed"
	echo bye >"$MNT/gone/data"
	rmdir "$MNT/gone"
}

check_made_states() {
	python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 3)' >"$BATS_TEST_TMPDIR/bin"
	cmp "$MNT/bin/data" "$BATS_TEST_TMPDIR/bin"
	assert_version "$MNT/bin" 2
	assert_file "$MNT/empty/data" ''
	assert_version "$MNT/empty" 2
	cmp "$MNT/max/data" "$BATS_TEST_TMPDIR/max"
	assert_version "$MNT/max" 1
	assert_file "$MNT/never/data" ''
	assert_version "$MNT/never" 0
	assert_file "$MNT/renamed/data" 'two\n'
	assert_version "$MNT/renamed" 2
	assert_eq "$(stat -c %a "$MNT/renamed")" 600 "mode of renamed"
	[ ! -e "$MNT/old" ]
	[ ! -e "$MNT/gone" ]
}

@test "states, versions and pages (binary, empty, max-size) survive unmount and remount" {
	ks_mount --store "$STORE"
	make_states
	ks_unmount
	ks_mount --store "$STORE"
	check_made_states
	# And again, with --sync none.
	echo three >"$MNT/renamed/data"
	ks_unmount
	ks_mount --store "$STORE" --sync none
	assert_file "$MNT/renamed/data" 'three\n'
	assert_version "$MNT/renamed" 3
	ks_unmount
}

@test "a store written with a larger max_size mounts under a smaller one: its pages are served (files, no mapping)" {
	local store=$BATS_TEST_TMPDIR/big
	: "${KSTATE:=$KS_ROOT/build/client/kstate}"
	ks_mount --store "$store" -o max_size=65536
	mkdir "$MNT/p" "$MNT/q"
	head -c 20000 /dev/urandom >"$BATS_TEST_TMPDIR/page"
	"$KSTATE" set "$MNT/p" <"$BATS_TEST_TMPDIR/page"
	echo small >"$MNT/q/data"
	ks_unmount
	ks_mount --store "$store"
	cmp "$BATS_TEST_TMPDIR/page" "$MNT/p/data"
	"$KSTATE" get "$MNT/p" | cmp - "$BATS_TEST_TMPDIR/page"
	assert_eq "$("$KSTATE" get "$MNT/q")" small
	assert_version "$MNT/p" 1
	# new commits keep to this mount's max_size
	assert_eq "$(ks_errno write "$MNT/p/data" wt 5000)" "write:EFBIG close:EFBIG" "a 5000-byte write"
	# an append, a patch in place: each would commit more than 4096
	assert_eq "$(ks_errno write "$MNT/p/data" wa 1)" close:EFBIG "an append"
	assert_eq "$(ks_errno write "$MNT/p/data" w 1 0)" close:EFBIG "a patch"
	cmp "$BATS_TEST_TMPDIR/page" "$MNT/p/data"
	assert_version "$MNT/p" 1
	echo now >"$MNT/p/data"
	assert_eq "$("$KSTATE" get "$MNT/p")" now
	ks_sanitizer_check "$KS_LOG"
}

@test "states survive kill -9 of the daemon and a remount" {
	ks_mount --store "$STORE"
	make_states
	ks_crash
	ks_mount --store "$STORE"
	check_made_states
	ks_unmount
}

@test "--sync none: what was acknowledged survives kill -9" {
	ks_mount --store "$STORE" --sync none
	make_states
	ks_crash
	ks_mount --store "$STORE" --sync none
	check_made_states
	ks_unmount
}

@test "kill loop: 10 rounds of SIGKILL under load, no acknowledged commit lost" {
	local round
	for ((round = 1; round <= 10; round++)); do
		ks_mount --store "$STORE"
		start_writers 4
		sleep "0.$((RANDOM % 10))"
		ks_crash
		ks_mount --store "$STORE"
		check_states 4
		# Transactions the writers left do not survive a restart.
		ks_unmount
	done
	# Something was committed at all.
	[ "$(cat "$BATS_TEST_TMPDIR/acked.0")" -gt 0 ]
}

@test "power-loss hook: with --sync full nothing acknowledged is lost" {
	export KSTATEFS_TEST_POWERLOSS=1
	local round
	for ((round = 1; round <= 3; round++)); do
		ks_mount --store "$STORE"
		start_writers 3
		sleep "0.$((RANDOM % 10))"
		ks_crash
		ks_mount --store "$STORE"
		check_states 3
		ks_unmount
	done
}

@test "power-loss hook: with --sync none, what was never synced is lost" {
	export KSTATEFS_TEST_POWERLOSS=1
	ks_mount --store "$STORE" --sync none
	mkdir "$MNT/kept"
	echo kept >"$MNT/kept/data"
	ks_unmount                       # a clean stop syncs
	ks_mount --store "$STORE" --sync none
	mkdir "$MNT/lost"
	echo lost >"$MNT/lost/data"
	echo changed >"$MNT/kept/data"
	ks_crash                         # a power cut: never synced
	ks_mount --store "$STORE"
	assert_file "$MNT/kept/data" 'kept\n'
	assert_version "$MNT/kept" 1
	[ ! -e "$MNT/lost" ]
	ks_unmount
}

@test "a second daemon on the same store is refused, naming the first" {
	ks_mount --store "$STORE"
	mkdir "$BATS_TEST_TMPDIR/mnt2"
	run timeout 20 "$KSTATEFS" -f --store "$STORE" "$BATS_TEST_TMPDIR/mnt2"
	assert_eq "$status" 2 "exit status"
	assert_contains "$output" "$STORE"
	assert_contains "$output" "process $KS_PID"
	ks_unmount
}

@test "a directory that is neither empty nor a store is refused (exit 2, left untouched); lost+found alone is empty" {
	local dir=$BATS_TEST_TMPDIR/etc-by-mistake
	mkdir "$dir"
	echo keep >"$dir/passwd"
	MNT=$BATS_TEST_TMPDIR/mnt
	mkdir -p "$MNT"
	run timeout 20 "$KSTATEFS" -f --store "$dir" "$MNT"
	assert_eq "$status" 2 "exit status; output: $output"
	assert_contains "$output" "not a kstatefs store"
	assert_contains "$output" "passwd"
	assert_eq "$(ls -A "$dir")" passwd "what the directory holds"
	refute ks_is_mounted "$MNT"
	# A file system of its own for the store: only lost+found in it.
	mkdir -p "$STORE/lost+found"
	ks_mount --store "$STORE"
	mkdir "$MNT/s"
	echo 1 >"$MNT/s/data"
	ks_unmount
	# A store with a file of the operator's beside it still mounts.
	echo "states of the build farm" >"$STORE/README"
	ks_mount --store "$STORE"
	assert_file "$MNT/s/data" '1\n'
}

@test "a damaged store refuses to mount: status 2, file and offset named" {
	ks_mount --store "$STORE"
	mkdir "$MNT/a"
	echo first >"$MNT/a/data"
	echo second >"$MNT/a/data"
	ks_unmount
	local log=$STORE/log.0000000000000001
	# The first record after the 52-byte segment header: flip a byte.
	printf '\x55' | dd of="$log" bs=1 seek=70 conv=notrunc status=none
	run timeout 20 "$KSTATEFS" -f --store "$STORE" "$BATS_TEST_TMPDIR/mnt"
	assert_eq "$status" 2 "exit status"
	assert_contains "$output" "$log"
	assert_contains "$output" "byte offset 52"
	ks_is_mounted "$BATS_TEST_TMPDIR/mnt" && return 1
	# Refusing changed nothing.
	run timeout 20 "$KSTATEFS" -f --store "$STORE" "$BATS_TEST_TMPDIR/mnt"
	assert_eq "$status" 2 "exit status, again"
}

@test "a torn last record is dropped; the commits before it stay" {
	ks_mount --store "$STORE"
	mkdir "$MNT/a"
	echo first >"$MNT/a/data"
	echo second >"$MNT/a/data"
	ks_unmount
	local log=$STORE/log.0000000000000001
	truncate -s -3 "$log"
	ks_mount --store "$STORE"
	assert_file "$MNT/a/data" 'first\n'
	assert_version "$MNT/a" 1
	echo third >"$MNT/a/data"
	ks_unmount
	ks_mount --store "$STORE"
	assert_file "$MNT/a/data" 'third\n'
	assert_version "$MNT/a" 2
	ks_unmount
}

@test "a full disk gives ENOSPC, keeps what was committed, and recovers" {
	local small=$BATS_TEST_TMPDIR/small
	mkdir -p "$small"
	mount -t tmpfs -o size=1m tmpfs "$small" || skip "cannot mount a tmpfs"
	ks_mount --store "$small/store"
	mkdir "$MNT/s"
	echo before >"$MNT/s/data"
	# Fill the disk, to the last byte.
	dd if=/dev/zero of="$small/filler" bs=4k status=none 2>/dev/null || true
	dd if=/dev/zero of="$small/filler" bs=1 oflag=append conv=notrunc status=none 2>/dev/null || true
	ks_py "$MNT/s" <<-'EOF'
		import errno, os, sys
		s = sys.argv[1]
		page = b"x" * 4096
		for i in range(200):
		    with open(os.path.join(s, "t"), "wb") as f:
		        f.write(page)
		    try:
		        os.rename(os.path.join(s, "t"), os.path.join(s, "data"))
		    except OSError as e:
		        if e.errno != errno.ENOSPC:
		            raise
		        os.unlink(os.path.join(s, "t"))
		        print("ENOSPC after %d commits" % i)
		        break
		else:
		    sys.exit("the disk never filled up")
		with open(os.path.join(s, "version")) as f:
		    print("at version", f.read().strip())
	EOF
	local v
	v=$(cat "$MNT/s/version")
	# Space again: commits work again.
	rm "$small/filler"
	echo after >"$MNT/s/data"
	assert_version "$MNT/s" $((v + 1))
	ks_unmount
	ks_mount --store "$small/store"
	assert_file "$MNT/s/data" 'after\n'
	assert_version "$MNT/s" $((v + 1))
	ks_unmount
	umount "$small"
}

@test "20,000 overwrites of a 4 KiB state: the store stays small, remounting is quick" {
	ks_mount --store "$STORE" --sync none
	mkdir "$MNT/hot"
	ks_py "$MNT/hot" <<-'EOF'
		s = sys.argv[1]
		for v in range(1, 20001):
		    page = (b"%d " % v) * 1024
		    with open(os.path.join(s, "data"), "wb") as f:
		        f.write(page[:4096])
	EOF
	assert_version "$MNT/hot" 20000
	ks_unmount
	local bytes
	bytes=$(du -sb --exclude=lock "$STORE" | cut -f1)
	echo "store: $bytes bytes"
	[ "$bytes" -lt 100000 ]
	local t0 t1
	t0=$(date +%s%N)
	ks_mount --store "$STORE"
	t1=$(date +%s%N)
	echo "remount: $(((t1 - t0) / 1000000)) ms"
	[ $(((t1 - t0) / 1000000)) -lt 1000 ]
	assert_version "$MNT/hot" 20000
	ks_unmount
}
