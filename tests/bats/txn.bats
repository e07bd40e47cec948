#!/usr/bin/env bats
# SPEC 4.3: transactions (any other file in a state directory).

load helpers

setup() {
	ks_mount
	S=$MNT/s
	mkdir "$S"
}

@test "creating a file begins a transaction: a copy of data, listed in the state" {
	echo abc >"$S/data"
	touch "$S/t"
	[ -f "$S/t" ]
	assert_file "$S/t" 'abc\n'
	assert_eq "$(stat -c %s "$S/t")" 4 "size of the new transaction"
	run ls "$S"
	assert_contains "$output" data
	assert_contains "$output" version
	assert_contains "$output" t
	assert_version "$S" 1
}

@test "a transaction created with O_TRUNC starts empty" {
	echo abc >"$S/data"
	echo x >"$S/t"
	assert_file "$S/t" 'x\n'
	: >"$S/u"
	assert_file "$S/u" ''
}

@test "a transaction created with O_APPEND appends to the copy of data" {
	echo abc >"$S/data"
	echo more >>"$S/t"
	assert_file "$S/t" 'abc\nmore\n'
}

@test "a transaction can be read, written and truncated, as often as you like" {
	echo hello >"$S/data"
	touch "$S/t"
	echo world >>"$S/t"
	assert_file "$S/t" 'hello\nworld\n'
	printf 'J' | dd of="$S/t" conv=notrunc status=none
	assert_file "$S/t" 'Jello\nworld\n'
	truncate -s 5 "$S/t"
	assert_file "$S/t" 'Jello'
	truncate -s 7 "$S/t"
	assert_file "$S/t" 'Jello\0\0'
	echo new >"$S/t"
	assert_file "$S/t" 'new\n'
	assert_version "$S" 1
	assert_file "$S/data" 'hello\n'
}

@test "a transaction is shared by the processes that open it" {
	echo base >"$S/data"
	touch "$S/t"
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/t", os.O_RDWR)
		sh('printf X | dd of="$1/t" bs=1 seek=1 conv=notrunc status=none', s)
		check(os.pread(fd, 100, 0) == b"bXse\n", "got %r" % os.pread(fd, 100, 0))
		os.pwrite(fd, b"Y", 2)
		check(sh('cat "$1/t"', s) == b"bXYe\n", "the other process's view")
		os.close(fd)
	EOF
	assert_file "$S/data" 'base\n'
}

@test "nobody sees a transaction before it commits" {
	echo public >"$S/data"
	echo secret >"$S/t"
	touch "$S/u"
	echo another >"$S/u"
	assert_file "$S/data" 'public\n'
	assert_eq "$(stat -c %s "$S/data")" 7 "size of data"
	assert_version "$S" 1
	# Not through a new transaction either.
	touch "$S/w"
	assert_file "$S/w" 'public\n'
}

@test "commit: mv T data; the state becomes T, version +1, T is gone" {
	echo old >"$S/data"
	touch "$S/t"
	echo new >"$S/t"
	mv "$S/t" "$S/data"
	assert_file "$S/data" 'new\n'
	assert_version "$S" 2
	[ ! -e "$S/t" ]
	run ls "$S"
	refute grep -qx t <<<"$output"
	assert_eq "$(stat -c %s "$S/data")" 4 "size of data after the commit"
}

@test "after a commit, data and the transaction's name work as before" {
	local i
	for i in 1 2 3; do
		touch "$S/t"
		echo "$i" >"$S/t"
		mv "$S/t" "$S/data"
		assert_file "$S/data" "$i\n"
		assert_version "$S" "$i"
	done
	echo direct >"$S/data"
	assert_file "$S/data" 'direct\n'
	assert_version "$S" 4
	touch "$S/t"
	assert_file "$S/t" 'direct\n'
	echo more >>"$S/data"
	assert_file "$S/data" 'direct\nmore\n'
	assert_version "$S" 5
}

@test "conflict: two transactions on one base; the second commit gets EAGAIN and is left as it was" {
	echo 0 >"$S/data"
	touch "$S/a" "$S/b"
	echo A >"$S/a"
	echo B >"$S/b"
	mv "$S/a" "$S/data"
	run mv "$S/b" "$S/data"
	[ "$status" -ne 0 ] || { echo "the second commit succeeded"; return 1; }
	assert_contains "$output" "Resource temporarily unavailable"
	assert_file "$S/b" 'B\n'
	assert_file "$S/data" 'A\n'
	assert_version "$S" 2
	assert_errno EAGAIN rename "$S/b" "$S/data"
	assert_file "$S/b" 'B\n'
	# Aborting and starting over works.
	rm "$S/b"
	touch "$S/b"
	echo B >"$S/b"
	mv "$S/b" "$S/data"
	assert_file "$S/data" 'B\n'
	assert_version "$S" 3
}

@test "a conflict from a direct write to data, from truncate, from another transaction" {
	local how
	for how in 'echo d >"$S/data"' 'truncate -s 1 "$S/data"' \
		'echo e >>"$S/data"' 'echo x >"$S/o" && mv "$S/o" "$S/data"'; do
		echo base >"$S/data"
		echo mine >"$S/t"
		eval "$how"
		run mv "$S/t" "$S/data"
		[ "$status" -ne 0 ] || { echo "no conflict after: $how"; return 1; }
		assert_contains "$output" "Resource temporarily unavailable" "after: $how"
		rm "$S/t"
	done
}

@test "a read-only transaction: mv returns 0 if the base is current, commits nothing, removes T" {
	echo v >"$S/data"
	touch "$S/r"
	cat "$S/r" >/dev/null
	mv "$S/r" "$S/data"
	[ ! -e "$S/r" ]
	assert_file "$S/data" 'v\n'
	assert_version "$S" 1
}

@test "a read-only transaction: EAGAIN if another commit came first, T left as it was" {
	echo v >"$S/data"
	touch "$S/r"
	echo w >"$S/data"
	run mv "$S/r" "$S/data"
	[ "$status" -ne 0 ] || { echo "a stale read-only transaction committed"; return 1; }
	assert_contains "$output" "Resource temporarily unavailable"
	assert_file "$S/r" 'v\n'
	assert_file "$S/data" 'w\n'
	assert_version "$S" 2
}

@test "abort: rm T; the state is unchanged" {
	echo keep >"$S/data"
	echo drop >"$S/t"
	rm "$S/t"
	[ ! -e "$S/t" ]
	assert_file "$S/data" 'keep\n'
	assert_version "$S" 1
	assert_errno ENOENT rename "$S/t" "$S/data"
}

@test "mv T U renames a transaction" {
	echo base >"$S/data"
	echo content >"$S/t"
	mv "$S/t" "$S/u"
	[ ! -e "$S/t" ]
	assert_file "$S/u" 'content\n'
	mv "$S/u" "$S/data"
	assert_file "$S/data" 'content\n'
	assert_version "$S" 2
}

@test "mv T U onto an existing U keeps the older base: T older" {
	echo 1 >"$S/data"
	echo from-t >"$S/t"                     # base 1
	echo 2 >"$S/data"
	echo from-u >"$S/u"                     # base 2
	mv "$S/t" "$S/u"
	[ ! -e "$S/t" ]
	assert_file "$S/u" 'from-t\n'
	run mv "$S/u" "$S/data"
	[ "$status" -ne 0 ] || { echo "committed with the newer base"; return 1; }
	assert_contains "$output" "Resource temporarily unavailable"
	assert_file "$S/data" '2\n'
}

@test "mv T U onto an existing U keeps the older base: U older" {
	echo 1 >"$S/data"
	echo from-u >"$S/u"                     # base 1
	echo 2 >"$S/data"
	echo from-t >"$S/t"                     # base 2
	mv "$S/t" "$S/u"
	assert_file "$S/u" 'from-t\n'
	run mv "$S/u" "$S/data"
	[ "$status" -ne 0 ] || { echo "committed with the newer base"; return 1; }
	assert_contains "$output" "Resource temporarily unavailable"
	assert_file "$S/data" '2\n'
	assert_version "$S" 2
}

@test "mv T U with both bases current commits" {
	echo 1 >"$S/data"
	touch "$S/u"
	echo t >"$S/t"
	mv "$S/t" "$S/u"
	mv "$S/u" "$S/data"
	assert_file "$S/data" 't\n'
	assert_version "$S" 2
}

@test "sed -i on a transaction, then commit" {
	printf 'a=1\nb=2\n' >"$S/data"
	touch "$S/t"
	sed -i 's/b=2/b=3/' "$S/t"
	assert_file "$S/t" 'a=1\nb=3\n'
	mv "$S/t" "$S/data"
	assert_file "$S/data" 'a=1\nb=3\n'
	assert_version "$S" 2
	run ls "$S"
	[[ "$output" != *sed* ]] || { echo "sed's temporary file left: $output"; return 1; }
}

@test "sed -i on a transaction keeps its base: EAGAIN if someone committed in between" {
	printf 'a=1\n' >"$S/data"
	touch "$S/t"
	echo 'a=9' >"$S/data"
	sed -i 's/a=1/a=2/' "$S/t"
	assert_file "$S/t" 'a=2\n'
	run mv "$S/t" "$S/data"
	[ "$status" -ne 0 ] || { echo "sed -i laundered a stale transaction"; return 1; }
	assert_contains "$output" "Resource temporarily unavailable"
	assert_file "$S/data" 'a=9\n'
	assert_version "$S" 2
}

@test "the shell read-modify-write loop: 4 processes x 100 increments = 400" {
	local n=100 p pids=() st
	mkdir "$MNT/counter"
	cat >"$BATS_TEST_TMPDIR/incr" <<-'EOF'
		cd "$1" || exit 1
		i=0
		while [ "$i" -lt "$2" ]; do
		    until
		        touch txn.$$
		        n=$(cat txn.$$)
		        echo $((n + 1)) > txn.$$
		        mv txn.$$ data 2>/dev/null
		    do
		        rm -f txn.$$
		    done
		    i=$((i + 1))
		done
	EOF
	for p in 1 2 3 4; do
		timeout 900 bash "$BATS_TEST_TMPDIR/incr" "$MNT/counter" "$n" 3>&- &
		pids+=($!)
	done
	for p in "${pids[@]}"; do
		st=0
		wait "$p" || st=$?
		assert_eq "$st" 0 "an incrementing process exited"
	done
	assert_file "$MNT/counter/data" "$((4 * n))\n"
	assert_version "$MNT/counter" $((4 * n))
	run ls "$MNT/counter"
	[[ "$output" != *txn.* ]] || { echo "transactions left: $output"; return 1; }
}

@test "more than max_size bytes in a transaction: EFBIG" {
	echo keep >"$S/data"
	run sh -c "head -c 4097 /dev/zero >'$S/t'"
	[ "$status" -ne 0 ]
	assert_contains "$output" "File too large"
	run ks_errno write "$S/u" cwt 4097
	assert_contains "$output" "write:EFBIG"
	touch "$S/w"
	assert_errno EFBIG truncate "$S/w" 4097
	run ks_errno write "$S/w" w 1 4096
	assert_contains "$output" "write:EFBIG"
	assert_file "$S/data" 'keep\n'
	assert_version "$S" 1
	head -c 4096 /dev/zero >"$S/x"
	assert_eq "$(stat -c %s "$S/x")" 4096
}

@test "more than max_txns transactions: ENOSPC; an abort frees a slot" {
	ks_unmount
	ks_mount -o max_txns=3
	mkdir "$S"
	touch "$S/t1" "$S/t2" "$S/t3"
	run touch "$S/t4"
	[ "$status" -ne 0 ]
	assert_contains "$output" "No space left on device"
	assert_errno ENOSPC create "$S/t5"
	[ ! -e "$S/t4" ]
	# Direct writes to data are not named transactions: still fine.
	echo d >"$S/data"
	assert_version "$S" 1
	rm "$S/t1"
	touch "$S/t4"
	# A commit frees one too.
	mv "$S/t4" "$S/data"
	touch "$S/t5"
	[ -f "$S/t5" ]
}

@test "max_txns counts per state" {
	ks_unmount
	ks_mount -o max_txns=2
	mkdir "$MNT/a" "$MNT/b"
	touch "$MNT/a/1" "$MNT/a/2" "$MNT/b/1" "$MNT/b/2"
	assert_errno ENOSPC create "$MNT/a/3"
	assert_errno ENOSPC create "$MNT/b/3"
}

@test "creating an existing transaction name opens it (no new transaction)" {
	echo 1 >"$S/data"
	echo mine >"$S/t"
	echo 2 >"$S/data"
	touch "$S/t"
	assert_file "$S/t" 'mine\n'
	# Still the old base.
	run mv "$S/t" "$S/data"
	[ "$status" -ne 0 ]
	assert_errno EEXIST create "$S/t"
}

@test "renaming a transaction across states: EPERM (not EXDEV); nothing moves" {
	mkdir "$MNT/o"
	echo from-s >"$S/t"
	run mv "$S/t" "$MNT/o/t"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	assert_errno EPERM rename "$S/t" "$MNT/o/t"
	assert_errno EPERM rename "$S/t" "$MNT/o/data"
	assert_errno EPERM rename "$S/data" "$MNT/o/data"
	[ ! -e "$MNT/o/t" ]
	assert_file "$S/t" 'from-s\n'
	assert_file "$MNT/o/data" ''
	assert_version "$MNT/o" 0
}

@test "RENAME_EXCHANGE: EINVAL" {
	echo a >"$S/t"
	echo b >"$S/u"
	assert_errno EINVAL exchange "$S/t" "$S/u"
	assert_errno EINVAL exchange "$S/t" "$S/data"
	assert_file "$S/t" 'a\n'
	assert_file "$S/u" 'b\n'
	mkdir "$MNT/o"
	assert_errno EINVAL exchange "$S" "$MNT/o"
	assert_version "$S" 0
}

@test "RENAME_NOREPLACE: EEXIST onto an existing name, a rename otherwise" {
	echo a >"$S/t"
	echo b >"$S/u"
	assert_errno EEXIST noreplace "$S/t" "$S/u"
	assert_errno EEXIST noreplace "$S/t" "$S/data"
	assert_errno OK noreplace "$S/t" "$S/w"
	assert_file "$S/w" 'a\n'
	assert_version "$S" 0
}

@test "transactions of a renamed state go with it" {
	echo 1 >"$S/data"
	echo two >"$S/t"
	mv "$S" "$MNT/r"
	assert_file "$MNT/r/t" 'two\n'
	mv "$MNT/r/t" "$MNT/r/data"
	assert_file "$MNT/r/data" 'two\n'
	assert_version "$MNT/r" 2
}

@test "a write past max_size spoils the transaction: mv fails with EFBIG and changes nothing, until it is written anew" {
	echo keep >"$S/data"
	: >"$S/t"
	# bash's echo writes in pieces: the first fits, the second fails.
	run bash -c "echo \"\$(printf '%5000s' x)\" >'$S/t'"
	[ "$status" -ne 0 ] || { echo "the oversized echo succeeded"; return 1; }
	[ "$(stat -c %s "$S/t")" -gt 0 ] || { echo "nothing got in: no half page to test"; return 1; }
	assert_errno EFBIG rename "$S/t" "$S/data"
	assert_file "$S/data" 'keep\n'
	assert_version "$S" 1
	# Appending does not mend it; writing it anew does.
	echo more >>"$S/t" || true
	assert_errno EFBIG rename "$S/t" "$S/data"
	echo new >"$S/t"
	mv "$S/t" "$S/data"
	assert_file "$S/data" 'new\n'
	assert_version "$S" 2
	# truncate to 0 mends it too.
	: >"$S/u"
	run bash -c "echo \"\$(printf '%5000s' x)\" >'$S/u'"
	truncate -s 0 "$S/u"
	echo again >>"$S/u"
	mv "$S/u" "$S/data"
	assert_file "$S/data" 'again\n'
}
