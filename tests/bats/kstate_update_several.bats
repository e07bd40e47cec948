#!/usr/bin/env bats
# SPEC 7: kstate update over several states, on a real mount: the pages as
# files, all committed or none, retries under contention, errors.

bats_require_minimum_version 1.5.0
load kstate_helpers

setup() {
	ks_need_kstate || return 1
	ks_mount
	# The pages' directories go here, so that a test can see none is
	# left behind.
	export TMPDIR=$BATS_TEST_TMPDIR/tmp
	mkdir -p "$TMPDIR"
}

# Moves $3 from the account in file $1 to the one in file $2 (kstate update
# A B -- sh -c "$MOVE" sh AMOUNT gives the files after AMOUNT).
MOVE='a=$(cat "$2"); b=$(cat "$3"); echo $((a - $1)) >"$2"; echo $((b + $1)) >"$3"'

# Sums the accounts in the files given, fails unless the sum is $1.
AUDIT='want=$1; shift; sum=0; for f; do sum=$((sum + $(cat "$f"))); done; [ "$sum" -eq "$want" ] || { echo "sum $sum" >&2; exit 1; }'

nothing_left() {
	assert_eq "$(ls -A "$MNT/.txn")" "" ".txn"
	assert_eq "$(ls -A "$TMPDIR")" "" "page directories"
}

@test "update A B: the pages as files named after the states, committed together; an unchanged page keeps its version" {
	kstate set "$MNT/alice" 100
	kstate set "$MNT/bob" 50
	kstate set "$MNT/carol" 7
	run kstate update "$MNT/alice" "$MNT/bob" -- sh -c "$MOVE; echo \"\${2##*/} \${3##*/}\"" sh 30
	assert_eq "$status" 0
	# CMD's standard output is kstate's.
	assert_eq "$output" "alice bob"
	assert_file "$MNT/alice/data" '70\n'
	assert_file "$MNT/bob/data" '80\n'
	assert_version "$MNT/alice" 2
	assert_version "$MNT/bob" 2

	# A tool that edits files in place, through a temporary file and a
	# rename: only carol's page changes, so only carol gets a version.
	run kstate update "$MNT/alice" "$MNT/carol" -- sed -i 's/^7$/8/'
	assert_eq "$status" 0
	assert_file "$MNT/alice/data" '70\n'
	assert_file "$MNT/carol/data" '8\n'
	assert_version "$MNT/alice" 2
	assert_version "$MNT/carol" 2

	# Unchanged everywhere: a snapshot, no version anywhere.
	run kstate update "$MNT/alice" "$MNT/bob" "$MNT/carol" -- sh -c "$AUDIT" sh 158
	assert_eq "$status" 0
	assert_version "$MNT/alice" 2
	assert_version "$MNT/bob" 2
	assert_version "$MNT/carol" 2
	nothing_left
}

@test "update A B under contention: 4 movers and an auditor, the total exact and every snapshot consistent" {
	local i j pids=() audits=$BATS_TEST_TMPDIR/audits
	for i in 0 1 2; do
		kstate set "$MNT/acct$i" 1000
	done
	for ((j = 0; j < 4; j++)); do
		(
			exec >>"$BATS_TEST_TMPDIR/movers.out" 2>&1
			for ((i = 0; i < 15; i++)); do
				from=$(((i + j) % 3))
				to=$(((from + 1 + j % 2) % 3))
				kstate update "$MNT/acct$from" "$MNT/acct$to" -- \
					sh -c "$MOVE" sh $((i + 1)) || echo FAILED
			done
		) &
		pids+=($!)
	done
	# Snapshots while they run: each one sums to the total.
	(
		for ((i = 0; i < 10; i++)); do
			kstate update "$MNT/acct0" "$MNT/acct1" "$MNT/acct2" -- \
				sh -c "$AUDIT" sh 3000 && echo ok >>"$audits" || echo FAILED
		done
	) >"$BATS_TEST_TMPDIR/audit.out" 2>&1 &
	pids+=($!)
	wait "${pids[@]}" >"$BATS_TEST_TMPDIR/movers.out" 2>&1
	local total=0 versions=0
	for i in 0 1 2; do
		total=$((total + $(cat "$MNT/acct$i/data")))
		versions=$((versions + $(cat "$MNT/acct$i/version") - 1))
	done
	cat "$BATS_TEST_TMPDIR/audit.out" "$BATS_TEST_TMPDIR/movers.out"
	assert_eq "$total" 3000
	# 60 transfers, two versions each; the audits made none.
	assert_eq "$versions" 120
	assert_eq "$(wc -l <"$audits")" 10
	run ! grep -q FAILED "$BATS_TEST_TMPDIR/audit.out" "$BATS_TEST_TMPDIR/movers.out"
	nothing_left
}

@test "update A B: a missing state, a bad name, a state twice: status 3, the reason, nothing committed or created" {
	kstate set "$MNT/a" 1
	kstate set "$MNT/b" 2
	run kstate update "$MNT/a" "$MNT/missing" -- sh -c 'echo 9 >"$1"' sh
	assert_eq "$status" 3
	assert_contains "$output" "$MNT/missing: No such file or directory"
	[ ! -e "$MNT/missing" ]
	run kstate update "$MNT/a" "$MNT/.bad" -- sh -c 'echo 9 >"$1"' sh
	assert_eq "$status" 3
	assert_contains "$output" "$MNT/.bad"
	run kstate update "$MNT/a" "$MNT/b" "$MNT/a" -- sh -c 'echo 9 >"$1"' sh
	assert_eq "$status" 3
	assert_contains "$output" "Invalid argument"
	run kstate update "$MNT/a" "$MNT/b" --
	assert_eq "$status" 2
	assert_file "$MNT/a/data" '1\n'
	assert_version "$MNT/a" 1
	assert_version "$MNT/b" 1
	nothing_left
}

@test "update A B: CMD failing aborts with its status; --tries gives up on conflicts and says so" {
	kstate set "$MNT/a" 1
	kstate set "$MNT/b" 2
	run kstate update "$MNT/a" "$MNT/b" -- sh -c 'echo 5 >"$1"; exit 4' sh
	assert_eq "$status" 4
	assert_file "$MNT/a/data" '1\n'
	assert_version "$MNT/a" 1
	# The command commits to b behind update's back every time.
	run kstate update --tries 3 "$MNT/a" "$MNT/b" -- sh -c "echo 5 >\"\$1\"; \"$KSTATE\" set $MNT/b x" sh
	assert_eq "$status" 3
	assert_contains "$output" "Resource temporarily unavailable"
	assert_contains "$output" "3 tries"
	assert_file "$MNT/a/data" '1\n'
	assert_version "$MNT/a" 1
	assert_version "$MNT/b" 4
	nothing_left
}

@test "update A B: the directory is removed with whatever CMD left in it, subdirectories too; links in it are not followed" {
	kstate set "$MNT/a" 1
	kstate set "$MNT/b" 2
	local outside=$BATS_TEST_TMPDIR/outside
	mkdir -p "$outside/keep"
	echo kept >"$outside/keep/file"
	run kstate update "$MNT/a" "$MNT/b" -- sh -c '
		d=$(dirname "$2")
		mkdir -p "$d/junk/deeper"
		echo x >"$d/junk/deeper/file"
		: >"$d/junk/.hidden"
		ln -s "$1" "$d/out"
		ln -s "$1/keep/file" "$d/junk/file-out"
		echo 10 >"$2"' sh "$outside"
	assert_eq "$status" 0 "$output"
	assert_eq "$output" ""
	assert_file "$MNT/a/data" '10\n'
	nothing_left
	# What the links pointed at is untouched.
	assert_file "$outside/keep/file" 'kept\n'
}
