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
