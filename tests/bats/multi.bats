#!/usr/bin/env bats
# SPEC 5: transactions over several states: .txn/T, commit with
# `mv .txn/T .commit/`, abort with `rm -r .txn/T`.

load helpers

setup() {
	ks_mount
	mkdir "$MNT/a" "$MNT/b" "$MNT/c"
	echo A1 >"$MNT/a/data"
	echo B1 >"$MNT/b/data"
	echo C1 >"$MNT/c/data"
}

# commit_t T: mv .txn/T .commit/, as a user does; output in $output.
commit_t() {
	run timeout 20 mv "$MNT/.txn/$1" "$MNT/.commit/"
}

# expect_eagain: the last commit_t failed with EAGAIN.
expect_eagain() {
	if [ "$status" -eq 0 ]; then
		echo "the commit succeeded; expected EAGAIN"
		return 1
	fi
	assert_contains "$output" "Resource temporarily unavailable" "mv's message"
}

unchanged() {
	assert_file "$MNT/a/data" 'A1\n'
	assert_file "$MNT/b/data" 'B1\n'
	assert_file "$MNT/c/data" 'C1\n'
	assert_version "$MNT/a" 1
	assert_version "$MNT/b" 1
	assert_version "$MNT/c" 1
}

@test ".txn: mkdir .txn/T begins a transaction; .txn/T/NAME starts as NAME's data" {
	[ -d "$MNT/.txn" ] || { echo ".txn is not a directory"; return 1; }
	[ -d "$MNT/.commit" ] || { echo ".commit is not a directory"; return 1; }
	mkdir "$MNT/.txn/T"
	[ -d "$MNT/.txn/T" ] || { echo ".txn/T is not a directory"; return 1; }
	run ls "$MNT/.txn"
	assert_contains "$output" T "ls .txn"
	assert_file "$MNT/.txn/T/a" 'A1\n'
	assert_file "$MNT/.txn/T/b" 'B1\n'
	assert_eq "$(stat -c %s "$MNT/.txn/T/c")" 3 "size of .txn/T/c"
	unchanged
	# Its own page: writes stay in T.
	echo A2 >"$MNT/.txn/T/a"
	echo more >>"$MNT/.txn/T/b"
	assert_file "$MNT/.txn/T/a" 'A2\n'
	assert_file "$MNT/.txn/T/b" 'B1\nmore\n'
	unchanged
	# Another transaction sees the committed pages, not T's.
	mkdir "$MNT/.txn/U"
	assert_file "$MNT/.txn/U/a" 'A1\n'
	rm -r "$MNT/.txn/T" "$MNT/.txn/U"
}

@test ".txn: a state that does not exist gives ENOENT; T names are unique" {
	mkdir "$MNT/.txn/T"
	assert_errno ENOENT open "$MNT/.txn/T/nosuch" r
	assert_errno ENOENT stat "$MNT/.txn/T/nosuch"
	assert_eq "$(ks_errno write "$MNT/.txn/T/nosuch" cwt 1)" open:ENOENT \
		"creating .txn/T/nosuch"
	refute cat "$MNT/.txn/T/nosuch" 2>/dev/null
	[ ! -e "$MNT/nosuch" ] || { echo "a state nosuch appeared"; return 1; }
	assert_errno EEXIST mkdir "$MNT/.txn/T"
	rm -r "$MNT/.txn/T"
}

@test ".txn: a state removed after joining T: T lists it no more, its commit fails, rm -r aborts it" {
	mkdir "$MNT/.txn/T" "$MNT/.txn/R"
	echo A2 >"$MNT/.txn/T/a"
	echo B2 >"$MNT/.txn/T/b"
	cat "$MNT/.txn/R/c" >/dev/null
	rm "$MNT/a/data" 2>/dev/null || true
	rmdir "$MNT/a" "$MNT/c"
	run ls "$MNT/.txn/T"
	assert_eq "$output" b "ls .txn/T once a is removed"
	commit_t T
	if [ "$status" -eq 0 ]; then
		echo "the commit of T succeeded with a written member removed"
		return 1
	fi
	assert_file "$MNT/b/data" 'B1\n'
	# A state of the same name made since is not T's member either.
	mkdir "$MNT/a"
	rm -r "$MNT/.txn/T"
	[ ! -e "$MNT/.txn/T" ] || { echo ".txn/T still exists after rm -r"; return 1; }
	rm -r "$MNT/.txn/R"
	[ ! -e "$MNT/.txn/R" ] || { echo ".txn/R still exists after rm -r"; return 1; }
	run ls -A "$MNT/.txn"
	assert_eq "$output" "" "ls .txn after the aborts"
	grep -qx 'transactions 0' "$MNT/.stats" || {
		echo "aborted transactions still counted:"
		cat "$MNT/.stats"
		return 1
	}
}

@test ".txn: mv .txn/T .commit/ applies every written member at once, versions +1 each" {
	mkdir "$MNT/.txn/T"
	echo A2 >"$MNT/.txn/T/a"
	echo B2 >"$MNT/.txn/T/b"
	cat "$MNT/.txn/T/c" >/dev/null # joined, only read
	unchanged
	commit_t T
	assert_eq "$status" 0 "mv .txn/T .commit/: $output"
	assert_file "$MNT/a/data" 'A2\n'
	assert_file "$MNT/b/data" 'B2\n'
	assert_file "$MNT/c/data" 'C1\n'
	assert_version "$MNT/a" 2
	assert_version "$MNT/b" 2
	assert_version "$MNT/c" 1
	[ ! -e "$MNT/.txn/T" ] || { echo ".txn/T still exists after its commit"; return 1; }
	run ls "$MNT/.txn"
	assert_eq "$output" "" "ls .txn after the commit"
	# The name can be used again.
	mkdir "$MNT/.txn/T"
	assert_file "$MNT/.txn/T/a" 'A2\n'
	echo A3 >"$MNT/.txn/T/a"
	commit_t T
	assert_eq "$status" 0 "second commit: $output"
	assert_version "$MNT/a" 3
	assert_file "$MNT/a/data" 'A3\n'
}

@test ".txn: a reader never sees half of a multi-state commit" {
	mkdir "$MNT/x" "$MNT/y"
	echo 0 >"$MNT/x/data"
	echo 0 >"$MNT/y/data"
	KS_PY_TIMEOUT=300 ks_py -m ksmount "$MNT" <<-'EOF'
		mnt = sys.argv[1]
		# A writer commits x = y = i in one transaction; readers take
		# read-only snapshots, which must always see x == y.
		writer = subprocess.Popen(["sh", "-c", '''
		    i=1
		    while [ $i -le 200 ]; do
		        mkdir "$1/.txn/w$i" || exit 1
		        echo $i > "$1/.txn/w$i/x" && echo $i > "$1/.txn/w$i/y" || exit 1
		        mv "$1/.txn/w$i" "$1/.commit/" || exit 1
		        i=$((i + 1))
		    done''', "sh", mnt])
		ok = conflicts = n = 0
		while writer.poll() is None or n == 0:
		    n += 1
		    t = MultiTxn(mnt, "r%d" % n)
		    x, y = t.read("x"), t.read("y")
		    try:
		        t.commit()
		    except Conflict:
		        conflicts += 1
		        t.abort()
		        continue
		    ok += 1
		    check(x == y, "a snapshot saw x=%r y=%r" % (x, y))
		check(writer.wait() == 0, "the writer failed")
		check(read_file(mnt + "/x/data") == b"200\n", "x at the end")
		check(version(mnt + "/x") == 201 and version(mnt + "/y") == 201, "versions")
		print("snapshots: %d consistent, %d conflicts" % (ok, conflicts))
		check(conflicts == 0, "a read-only snapshot failed to commit")
	EOF
}

@test ".txn: T is a snapshot from its mkdir: members opened later show that instant" {
	mkdir "$MNT/.txn/T"
	echo A-outside >"$MNT/a/data" # after mkdir, before a is first read
	mkdir "$MNT/late"             # a state made after the instant
	assert_file "$MNT/.txn/T/a" 'A1\n'
	assert_file "$MNT/.txn/T/b" 'B1\n'
	[ ! -e "$MNT/.txn/T/late" ] || { echo "a state made after mkdir is in T"; return 1; }
	# Read only: it commits though a moved, and changes nothing.
	commit_t T
	assert_eq "$status" 0 "read-only commit: $output"
	assert_file "$MNT/a/data" 'A-outside\n'
	assert_version "$MNT/a" 2
	# A T that writes is checked against its instant: a's commit after
	# mkdir is a conflict, though a joined after it.
	mkdir "$MNT/.txn/W"
	echo A-again >"$MNT/a/data"
	echo A-W >"$MNT/.txn/W/a"
	commit_t W
	expect_eagain
	rm -rf "$MNT/.txn/W"
	mkdir "$MNT/.txn/W"
	echo A-W >"$MNT/.txn/W/a"
	commit_t W
	assert_eq "$status" 0 "mv: $output"
	assert_file "$MNT/a/data" 'A-W\n'
	assert_version "$MNT/a" 4
}

@test ".txn: EAGAIN, nothing applied, when a written member was committed since it joined" {
	mkdir "$MNT/.txn/T"
	echo A2 >"$MNT/.txn/T/a"
	echo B2 >"$MNT/.txn/T/b"
	echo B-outside >"$MNT/b/data"
	commit_t T
	expect_eagain
	assert_file "$MNT/a/data" 'A1\n'
	assert_version "$MNT/a" 1
	assert_file "$MNT/b/data" 'B-outside\n'
	assert_version "$MNT/b" 2
	rm -rf "$MNT/.txn/T"
	[ ! -e "$MNT/.txn/T" ] || { echo ".txn/T still exists after rm -r"; return 1; }
	# The same through rename(2) itself.
	mkdir "$MNT/.txn/U"
	echo A3 >"$MNT/.txn/U/a"
	echo C-outside >"$MNT/c/data"
	echo C3 >"$MNT/.txn/U/c"
	echo A-outside >"$MNT/a/data"
	assert_errno EAGAIN rename "$MNT/.txn/U" "$MNT/.commit/U"
	assert_file "$MNT/a/data" 'A-outside\n'
	assert_file "$MNT/c/data" 'C-outside\n'
	assert_version "$MNT/a" 2
	assert_version "$MNT/c" 2
	rm -rf "$MNT/.txn/U"
}

@test ".txn: EAGAIN, nothing applied, when a member only read was committed since it joined" {
	mkdir "$MNT/.txn/T"
	cat "$MNT/.txn/T/c" >/dev/null
	echo A2 >"$MNT/.txn/T/a"
	echo B2 >"$MNT/.txn/T/b"
	echo C-outside >"$MNT/c/data"
	commit_t T
	expect_eagain
	assert_file "$MNT/a/data" 'A1\n'
	assert_file "$MNT/b/data" 'B1\n'
	assert_version "$MNT/a" 1
	assert_version "$MNT/b" 1
	assert_version "$MNT/c" 2
	rm -rf "$MNT/.txn/T"
}

@test ".txn: a conflict is found even when the outside commit is a per-state transaction" {
	mkdir "$MNT/.txn/T"
	echo A2 >"$MNT/.txn/T/a"
	cat "$MNT/.txn/T/b" >/dev/null
	echo B-txn >"$MNT/b/t"
	mv "$MNT/b/t" "$MNT/b/data"
	commit_t T
	expect_eagain
	assert_file "$MNT/a/data" 'A1\n'
	assert_version "$MNT/a" 1
	rm -rf "$MNT/.txn/T"
}

@test ".txn: a read-only T is a consistent snapshot: it always commits, changing nothing" {
	mkdir "$MNT/.txn/T"
	assert_file "$MNT/.txn/T/a" 'A1\n'
	assert_file "$MNT/.txn/T/b" 'B1\n'
	assert_file "$MNT/.txn/T/c" 'C1\n'
	commit_t T
	assert_eq "$status" 0 "read-only commit: $output"
	unchanged
	[ ! -e "$MNT/.txn/T" ] || { echo ".txn/T still exists after its commit"; return 1; }
	mkdir "$MNT/.txn/U"
	cat "$MNT/.txn/U/a" >/dev/null
	echo B2 >"$MNT/b/data"
	assert_file "$MNT/.txn/U/b" 'B1\n' # the instant of mkdir
	commit_t U
	assert_eq "$status" 0 "read-only commit after a member moved: $output"
	assert_file "$MNT/a/data" 'A1\n'
	assert_version "$MNT/a" 1
	assert_version "$MNT/b" 2
	[ ! -e "$MNT/.txn/U" ] || { echo ".txn/U still exists after its commit"; return 1; }
	# A T with no member at all commits nothing, successfully.
	mkdir "$MNT/.txn/E"
	commit_t E
	assert_eq "$status" 0 "empty transaction: $output"
	assert_version "$MNT/a" 1
}

@test ".txn: abort with rm -r .txn/T leaves the states untouched" {
	mkdir "$MNT/.txn/T"
	echo A2 >"$MNT/.txn/T/a"
	echo B2 >"$MNT/.txn/T/b"
	cat "$MNT/.txn/T/c" >/dev/null
	rm -r "$MNT/.txn/T"
	[ ! -e "$MNT/.txn/T" ] || { echo ".txn/T still exists after rm -r"; return 1; }
	run ls "$MNT/.txn"
	assert_eq "$output" "" "ls .txn after the abort"
	unchanged
	# Nothing is left behind that blocks the states.
	rmdir "$MNT/c"
	echo A3 >"$MNT/a/data"
	assert_version "$MNT/a" 2
}

@test ".txn: a multi-state commit survives a restart whole (--store)" {
	local store=$BATS_TEST_TMPDIR/store
	ks_unmount
	ks_mount --store "$store"
	mkdir "$MNT/a" "$MNT/b"
	echo A1 >"$MNT/a/data"
	echo B1 >"$MNT/b/data"
	mkdir "$MNT/.txn/T"
	echo A2 >"$MNT/.txn/T/a"
	echo B2 >"$MNT/.txn/T/b"
	commit_t T
	assert_eq "$status" 0 "mv: $output"
	mkdir "$MNT/.txn/P"
	echo pending >"$MNT/.txn/P/a"
	ks_unmount
	ks_mount --store "$store"
	assert_file "$MNT/a/data" 'A2\n'
	assert_file "$MNT/b/data" 'B2\n'
	assert_version "$MNT/a" 2
	assert_version "$MNT/b" 2
	[ ! -e "$MNT/.txn/P" ] || { echo "transaction P survived the restart"; return 1; }
}

@test ".txn: no deadlock: processes commit overlapping sets in opposite orders, totals exact" {
	local s
	for s in p q r; do
		mkdir "$MNT/$s"
		echo 0 >"$MNT/$s/data"
	done
	local n=60 pids=() st=0 i
	local -a sets=("p q" "q p" "p q r" "r q p" "q r" "r p" "p q" "q p")
	for i in "${!sets[@]}"; do
		# shellcheck disable=SC2086
		timeout -k 5 240 python3 "$KS_TOOLS/workloads/incr.py" "$MNT" "$n" ${sets[i]} \
			>"$BATS_TEST_TMPDIR/incr.$i" 2>&1 &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		if ! wait "${pids[i]}"; then
			echo "worker $i (${sets[i]}) failed or timed out:"
			cat "$BATS_TEST_TMPDIR/incr.$i"
			st=1
		fi
	done
	cat "$BATS_TEST_TMPDIR"/incr.*
	[ "$st" -eq 0 ] || return 1
	# p is in 7 sets, q in 7, r in 4.
	assert_file "$MNT/p/data" "$((7 * n))\n"
	assert_file "$MNT/q/data" "$((7 * n))\n"
	assert_file "$MNT/r/data" "$((4 * n))\n"
	assert_version "$MNT/p" $((7 * n + 1))
	assert_version "$MNT/q" $((7 * n + 1))
	assert_version "$MNT/r" $((4 * n + 1))
	run ls "$MNT/.txn"
	assert_eq "$output" "" "transactions left in .txn"
}

# What the kernel keeps of .txn/T.  A committed T's directory entry is moved
# by the kernel itself to .commit/T, and an aborted one is removed by it;
# neither may be found there afterwards, by the committing process at once
# or by anyone else, and a new T of the same name is a new transaction.

@test ".txn: after mv .txn/T .commit/, T is gone from both at once: ls, stat, access" {
	local n
	for n in 1 2 3; do
		mkdir "$MNT/.txn/T"
		echo "A$((n + 1))" >"$MNT/.txn/T/a"
		commit_t T
		assert_eq "$status" 0 "mv $n: $output"
		run ls -A "$MNT/.txn"
		assert_eq "$output" "" "ls .txn after commit $n"
		run ls -A "$MNT/.commit"
		assert_eq "$output" "" "ls .commit after commit $n"
		assert_eq "$(ks_errno stat "$MNT/.txn/T")" ENOENT "stat .txn/T after commit $n"
		assert_eq "$(ks_errno stat "$MNT/.commit/T")" ENOENT "stat .commit/T after commit $n"
		[ ! -e "$MNT/.commit/T" ] || { echo "test -e .commit/T after commit $n"; return 1; }
		[ ! -r "$MNT/.commit/T" ] || { echo "test -r .commit/T after commit $n"; return 1; }
	done
	assert_file "$MNT/a/data" 'A4\n'
	assert_version "$MNT/a" 4
	# The same from inside one process, at once after each rename: no
	# window in which the kernel still has the old T anywhere.
	ks_py "$MNT" <<-'EOF'
		m = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
		for i in range(200):
		    os.mkdir(".txn/T", dir_fd=m)
		    fd = os.open(".txn/T/b", os.O_WRONLY | os.O_TRUNC, dir_fd=m)
		    os.write(fd, b"%d\n" % i)
		    os.close(fd)
		    os.rename(".txn/T", ".commit/T", src_dir_fd=m, dst_dir_fd=m)
		    for path in (".commit/T", ".txn/T"):
		        full = os.path.join(sys.argv[1], path)
		        check(not os.access(full, os.F_OK),
		              "access(%s, F_OK) succeeds after commit %d" % (path, i))
		        expect_oserror(errno.ENOENT, os.stat, full)
		        expect_oserror(errno.ENOENT, os.open, full,
		                       os.O_RDONLY | os.O_DIRECTORY)
		    check(os.listdir(os.path.join(sys.argv[1], ".commit")) == [],
		          ".commit lists something after commit %d" % i)
		    check(os.listdir(os.path.join(sys.argv[1], ".txn")) == [],
		          ".txn lists something after commit %d" % i)
		    # A directory made there is refused as always, not "exists".
		    expect_oserror(errno.EPERM, os.mkdir,
		                   os.path.join(sys.argv[1], ".commit/T"))
	EOF
	assert_file "$MNT/b/data" '199\n'
	assert_version "$MNT/b" 201
}

@test ".txn: a T of a committed or aborted T's name starts afresh: no member, no old content" {
	mkdir "$MNT/.txn/T"
	echo A2 >"$MNT/.txn/T/a"
	echo B2 >"$MNT/.txn/T/b"
	commit_t T
	assert_eq "$status" 0 "mv: $output"
	mkdir "$MNT/.txn/T"
	run ls -A "$MNT/.txn/T"
	assert_eq "$output" "" "members of the new T"
	assert_file "$MNT/.txn/T/a" 'A2\n'
	# Aborted with content written: the next T does not see it.
	echo aborted >"$MNT/.txn/T/c"
	rm -r "$MNT/.txn/T"
	assert_eq "$(ks_errno stat "$MNT/.txn/T")" ENOENT "stat .txn/T after rm -r"
	run ls -A "$MNT/.txn"
	assert_eq "$output" "" "ls .txn after rm -r"
	mkdir "$MNT/.txn/T"
	assert_file "$MNT/.txn/T/c" 'C1\n'
	rm -r "$MNT/.txn/T"
	# rmdir of a T no state joined.
	mkdir "$MNT/.txn/T"
	rmdir "$MNT/.txn/T"
	assert_eq "$(ks_errno stat "$MNT/.txn/T")" ENOENT "stat .txn/T after rmdir"
	assert_eq "$(ks_errno rmdir "$MNT/.txn/T")" ENOENT "rmdir .txn/T again"
	assert_eq "$(ks_errno rename "$MNT/.txn/T" "$MNT/.commit/T")" ENOENT "commit of the removed T"
	mkdir "$MNT/.txn/T"
	assert_file "$MNT/.txn/T/c" 'C1\n'
	rm -r "$MNT/.txn/T"
	assert_file "$MNT/c/data" 'C1\n'
	assert_version "$MNT/c" 1
}

@test ".txn: processes use the same T name one after the other; each sees only its own T" {
	local i
	for i in 1 2 3 4; do
		ks_py "$MNT" "$i" <<-'EOF'
			m = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
			i = int(sys.argv[2])
			# The last process's T was committed: nothing of it is here.
			expect_oserror(errno.ENOENT, os.stat,
			               os.path.join(sys.argv[1], ".txn/T"))
			os.mkdir(".txn/T", dir_fd=m)
			check(os.listdir(os.path.join(sys.argv[1], ".txn/T")) == [],
			      "process %d: the new T has members" % i)
			fd = os.open(".txn/T/a", os.O_RDWR, dir_fd=m)
			n = int(os.read(fd, 100) or b"0") if i > 1 else 0
			check(n == i - 1, "process %d read %d from .txn/T/a" % (i, n))
			os.lseek(fd, 0, os.SEEK_SET)
			os.ftruncate(fd, 0)
			os.write(fd, b"%d\n" % i)
			os.close(fd)
			os.rename(".txn/T", ".commit/T", src_dir_fd=m, dst_dir_fd=m)
		EOF
	done
	assert_file "$MNT/a/data" '4\n'
	assert_version "$MNT/a" 5
	# Another process, with its own T of that name, and one that aborts.
	mkdir "$MNT/.txn/T"
	echo 9 >"$MNT/.txn/T/a"
	assert_eq "$(ks_errno mkdir "$MNT/.txn/T")" EEXIST "mkdir of a T that exists"
	rm -r "$MNT/.txn/T"
	ks_py "$MNT" <<-'EOF'
		m = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
		expect_oserror(errno.ENOENT, os.stat, os.path.join(sys.argv[1], ".txn/T"))
		os.mkdir(".txn/T", dir_fd=m)
		with open(os.path.join(sys.argv[1], ".txn/T/a")) as f:
		    check(f.read() == "4\n", "the aborted write is visible")
		os.unlink(".txn/T/a", dir_fd=m)
		os.rmdir(".txn/T", dir_fd=m)
	EOF
	assert_version "$MNT/a" 5
}

# The daemon never waits on its own mount from inside: a daemon killed
# while processes commit through .txn dies at once, and the mount is left
# dead (ENOTCONN), not hung.  (A thread of the daemon that waited for a
# directory lock of .txn or .commit, to tell the kernel to forget an
# entry, could not die while a request of that directory stayed unanswered:
# the daemon would live on and the mount hang until umount -f.)
@test ".txn: kill -9 of the daemon while 4 processes commit: it dies at once, no thread stays behind" {
	local round pid k hung=0
	for round in 1 2 3 4 5 6; do
		[ "$round" -eq 1 ] || ks_mount
		mkdir -p "$MNT/s"
		for k in 1 2 3 4; do
			ks_bg timeout 30 python3 -c '
import errno, os, sys
m = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
t = ".txn/" + sys.argv[2]
try:
    while True:
        os.mkdir(t, dir_fd=m)
        fd = os.open(t + "/s", os.O_WRONLY | os.O_TRUNC, dir_fd=m)
        os.write(fd, b"x")
        os.close(fd)
        try:
            os.rename(t, ".commit/" + sys.argv[2], src_dir_fd=m, dst_dir_fd=m)
        except OSError as e:
            if e.errno != errno.EAGAIN:
                raise
            os.unlink(t + "/s", dir_fd=m)
            os.rmdir(t, dir_fd=m)
except OSError:
    pass' "$MNT" "T$k"
		done
		sleep "0.$((RANDOM % 4 + 3))"
		pid=$KS_PID
		KS_PID=
		kill -KILL "$pid"
		if ! wait_for 10 eval "! ks_alive $pid"; then
			echo "round $round: the daemon still lives 10 s after kill -9:"
			grep -H . /proc/"$pid"/task/*/wchan 2>/dev/null
			hung=$((hung + 1))
			umount -f "$MNT" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
		ks_kill_bg || true
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
	done
	assert_eq "$hung" 0 "rounds in which the killed daemon did not die"
}

@test ".txn: a member's write past max_size spoils T: its commit fails with EFBIG, nothing applied; written anew it commits" {
	mkdir "$MNT/.txn/T"
	echo B2 >"$MNT/.txn/T/b"
	run bash -c "echo \"\$(printf '%5000s' x)\" >'$MNT/.txn/T/a'"
	[ "$status" -ne 0 ] || { echo "the oversized echo succeeded"; return 1; }
	assert_errno EFBIG rename "$MNT/.txn/T" "$MNT/.commit/T"
	assert_file "$MNT/a/data" 'A1\n'
	assert_file "$MNT/b/data" 'B1\n'
	echo A2 >"$MNT/.txn/T/a"
	mv "$MNT/.txn/T" "$MNT/.commit/"
	assert_file "$MNT/a/data" 'A2\n'
	assert_file "$MNT/b/data" 'B2\n'
}

@test ".txn: mkdir -m 755 .txn/T works (T stays private: 0700); its owner may chmod it within the owner's bits" {
	mkdir -m 755 "$MNT/.txn/T"
	assert_eq "$(stat -c %a "$MNT/.txn/T")" 700 "T's mode"
	chmod 500 "$MNT/.txn/T"
	assert_eq "$(stat -c %a "$MNT/.txn/T")" 500 "T's mode after chmod 500"
	chmod 700 "$MNT/.txn/T"
	echo A2 >"$MNT/.txn/T/a"
	mv "$MNT/.txn/T" "$MNT/.commit/"
	assert_file "$MNT/a/data" 'A2\n'
}
