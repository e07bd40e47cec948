#!/usr/bin/env bats
# The Python example (examples/kstate.py, shown in README.md): its commit
# loop, its sysfs poll idiom and its snapshot run against a real mount.

load helpers

setup() {
	ks_mount
	EX=$KS_ROOT/examples/kstate.py
	mkdir "$MNT/hits"
}

@test "examples/kstate.py incr: 4 processes, 25 increments each, count exact" {
	local i j pids=()
	for i in 1 2 3 4; do
		(
			for ((j = 0; j < 25; j++)); do
				timeout 60 python3 "$EX" incr "$MNT/hits" >/dev/null || exit 1
			done
		) &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i"
	done
	assert_file "$MNT/hits/data" '100\n'
	assert_version "$MNT/hits" 100
	run ls "$MNT/hits"
	assert_eq "$output" "$(printf 'data\nevery\nversion')" "files left in the state"
}

@test "examples/kstate.py watch: prints the page now and after each change" {
	echo 0 >"$MNT/hits/data"
	local out=$BATS_TEST_TMPDIR/watch
	timeout 30 python3 "$EX" watch "$MNT/hits" 2 >"$out" &
	local pid=$!
	wait_for 10 grep -q 'version 1: 0' "$out"
	echo 1 >"$MNT/hits/data"
	wait_for 10 grep -q 'version 2: 1' "$out"
	echo 2 >"$MNT/hits/data"
	wait "$pid"
	assert_eq "$(tail -n 1 "$out")" "version 3: 2" "last line"
}

@test "examples/kstate.py snapshot: several states at one instant" {
	echo 1 >"$MNT/hits/data"
	mkdir "$MNT/misses"
	echo 2 >"$MNT/misses/data"
	run timeout 30 python3 "$EX" snapshot "$MNT/hits" "$MNT/misses"
	assert_eq "$status" 0 "$output"
	assert_eq "$output" "$(printf '%s: 1\n%s: 2' "$MNT/hits" "$MNT/misses")"
	run ls "$MNT/.txn"
	assert_eq "$output" "" "left in .txn"
}
