#!/usr/bin/env bats
# SPEC 7: the kstate command, on a real mount.

bats_require_minimum_version 1.5.0
load kstate_helpers

setup() {
	ks_need_kstate || return 1
	ks_mount
	S=$MNT/s
}

# The transaction files in state $1; status 1 if there are none.
txn_files() {
	ls "$1" | grep -vxE 'data|version|every'
}

# No transaction file is left in state $1.
no_txn_files() {
	assert_eq "$(txn_files "$1")" "" "transaction files left in $1"
}

# A shell increment, for kstate update.
INCR='read -r n; echo $((${n:-0} + 1))'

# --- get, set -----------------------------------------------------------

@test "set creates the state; VALUE is written as a line; get prints the page" {
	kstate set "$S" 42
	assert_file "$S/data" '42\n'
	assert_version "$S" 1
	assert_eq "$(kstate get "$S")" 42
	kstate set -n "$S" 'no newline'
	assert_file "$S/data" 'no newline'
	assert_version "$S" 2
}

@test "set from standard input stores the bytes exactly, NULs included" {
	printf 'a\0b\001\377\n\n' | kstate set "$S"
	assert_file "$S/data" 'a\0b\001\377\n\n'
	kstate get "$S" >"$BATS_TEST_TMPDIR/out"
	cmp "$S/data" "$BATS_TEST_TMPDIR/out"
	: | kstate set "$S"
	assert_file "$S/data" ''
	assert_version "$S" 2
}

@test "set reports a page too large, and changes nothing" {
	kstate set "$S" small
	run kstate set "$S" "$(head -c 5000 /dev/zero | tr '\0' x)"
	[ "$status" -ne 0 ]
	assert_contains "$output" "$S"
	assert_contains "$output" "File too large"
	assert_file "$S/data" 'small\n'
	assert_version "$S" 1
	no_txn_files "$S"
}

@test "get: errors name the path and the reason" {
	run kstate get "$MNT/missing"
	[ "$status" -ne 0 ]
	assert_eq "$output" "kstate: $MNT/missing: No such file or directory"
	run kstate get "$BATS_TEST_TMPDIR"
	[ "$status" -ne 0 ]
	assert_contains "$output" "$BATS_TEST_TMPDIR: not a kstatefs state"
	run kstate set "$BATS_TEST_TMPDIR/x" 1
	[ "$status" -ne 0 ]
	assert_contains "$output" "$BATS_TEST_TMPDIR/x: not a kstatefs state"
	[ ! -e "$BATS_TEST_TMPDIR/x" ]
}

@test "every command refuses a directory that is not a state of a kstatefs mount, and writes nothing" {
	local fake=$BATS_TEST_TMPDIR/fake
	mkdir "$fake"
	echo 1 >"$fake/version"
	echo old >"$fake/data"
	kstate set "$S" 5
	local -a cmds=(
		"get" "set|new" "update|--|cat" "wait|--timeout|0.1"
		"when|--timeout|0.1|--|true" "watch|--|true"
	)
	local c path
	for c in "${cmds[@]}"; do
		IFS='|' read -r -a args <<<"$c"
		run kstate "${args[0]}" "$fake" "${args[@]:1}"
		assert_eq "$status" 3 "kstate ${args[0]} $fake: $output"
		assert_eq "$output" "kstate: $fake: not a kstatefs state (not on a kstatefs mount)"
		# The mount's own files and a state's files: not states.
		for path in "$MNT/.stats" "$MNT/.events" "$S/data" "$S/version"; do
			run kstate "${args[0]}" "$path" "${args[@]:1}"
			assert_eq "$status" 3 "kstate ${args[0]} $path: $output"
			assert_eq "$output" "kstate: $path: not a kstatefs state (a file, not a state's directory)"
		done
	done
	assert_file "$fake/data" 'old\n'
	assert_file "$fake/version" '1\n'
	# A new name inside a state makes no state, and no file there.
	run kstate set "$S/newsub" 1
	assert_eq "$status" 3 "$output"
	assert_eq "$output" "kstate: $S/newsub: not a kstatefs state (states are made at the root of a kstatefs mount)"
	[ ! -e "$S/newsub" ]
	no_txn_files "$S"
	run kstate get "$MNT"
	assert_eq "$status" 3 "$output"
	assert_contains "$output" "$MNT: not a kstatefs state (the root of a kstatefs mount"
	# A view is read as before.
	assert_eq "$(kstate get "$S/every/100ms")" 5
	assert_version "$S" 1
}

@test "get, when, watch, update over several states: a throttled view cannot join, and says so" {
	kstate set "$MNT/a" 1
	kstate set "$MNT/b" 2
	local view=$MNT/a/every/1s
	local msg="kstate: $view: a throttled view cannot join a snapshot of several states"
	run kstate get "$view" "$MNT/b"
	assert_eq "$status" 3 "get: $output"
	assert_eq "$output" "$msg"
	run kstate when "$view" "$MNT/b" --timeout 5 -- true
	assert_eq "$status" 3 "when: $output"
	assert_eq "$output" "$msg"
	run kstate watch "$MNT/b" "$view" -- true
	assert_eq "$status" 3 "watch: $output"
	assert_eq "$output" "$msg"
	run kstate update "$MNT/a" "$MNT/b/every/100ms" -- true
	assert_eq "$status" 3 "$output"
	assert_eq "$output" "kstate: $MNT/b/every/100ms: a throttled view cannot join a transaction over several states"
	assert_version "$MNT/a" 1
	assert_version "$MNT/b" 1
	assert_eq "$(ls -A "$MNT/.txn")" ""
}

@test "get A B: one snapshot, each page after a NAME LENGTH line; -0 NUL-separated" {
	kstate set "$MNT/a" 10
	printf 'x\0y' | kstate set "$MNT/b"
	kstate get "$MNT/a" "$MNT/b" >"$BATS_TEST_TMPDIR/out"
	printf '%s 3\n10\n\n%s 3\nx\0y\n' "$MNT/a" "$MNT/b" >"$BATS_TEST_TMPDIR/want"
	cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/want"
	kstate set "$MNT/c" 30
	kstate get -0 "$MNT/c" "$MNT/a" >"$BATS_TEST_TMPDIR/out"
	printf '30\n\00010\n\000' >"$BATS_TEST_TMPDIR/want"
	cmp "$BATS_TEST_TMPDIR/out" "$BATS_TEST_TMPDIR/want"
	# Nothing is left behind, also when a state is missing.
	run kstate get "$MNT/a" "$MNT/missing"
	[ "$status" -eq 3 ]
	assert_contains "$output" "$MNT/missing"
	run ls "$MNT/.txn"
	assert_eq "$output" "" "snapshots left in .txn"
	# States of two mounts are not one snapshot.
	run kstate get "$MNT/a" "$BATS_TEST_TMPDIR"
	[ "$status" -eq 3 ]
}

# --- update -------------------------------------------------------------

@test "update commits the command's output" {
	kstate set "$S" 41
	kstate update "$S" -- sh -c "$INCR"
	assert_file "$S/data" '42\n'
	assert_version "$S" 2
	no_txn_files "$S"
}

@test "update: a failing command aborts with its status and leaves nothing" {
	kstate set "$S" 1
	run kstate update "$S" -- sh -c 'cat >/dev/null; echo junk; exit 7'
	assert_eq "$status" 7
	assert_file "$S/data" '1\n'
	assert_version "$S" 1
	no_txn_files "$S"
	run -127 kstate update "$S" -- "$BATS_TEST_TMPDIR/no-such-command"
	assert_eq "$status" 127
	assert_contains "$output" "no-such-command: No such file or directory"
	no_txn_files "$S"
}

@test "update: 4 concurrent incrementers reach the exact count" {
	kstate set "$S" 0
	local i j errors=$BATS_TEST_TMPDIR/errors pids=()
	for ((j = 0; j < 4; j++)); do
		for ((i = 0; i < 50; i++)); do
			kstate update "$S" -- sh -c "$INCR" || echo "update failed"
		done >>"$errors" 2>&1 &
		pids+=($!)
	done
	# Not a bare wait: the daemon is a background job of this shell too.
	wait "${pids[@]}"
	assert_eq "$(cat "$errors")" ""
	assert_file "$S/data" '200\n'
	assert_version "$S" 201
	no_txn_files "$S"
}

@test "update --tries gives up on conflicts, reports it, and leaves nothing" {
	kstate set "$S" 0
	# The command commits behind update's back every time: every
	# attempt conflicts.
	run kstate update --tries 3 "$S" -- sh -c "\"$KSTATE\" set $S x; cat"
	assert_eq "$status" 3
	assert_contains "$output" "$S"
	assert_contains "$output" "Resource temporarily unavailable"
	assert_contains "$output" "3 tries"
	assert_version "$S" 4
	no_txn_files "$S"
}

@test "update killed while its command runs removes its transaction" {
	local started=$BATS_TEST_TMPDIR/started
	kstate set "$S" 0
	env --default-signal "$KSTATE" update "$S" -- \
		sh -c 'touch "$0"; sleep 1; cat' "$started" &
	local pid=$!
	wait_for 5 test -e "$started"
	kill -TERM "$pid"
	local st=0
	wait "$pid" || st=$?
	assert_eq "$st" 143
	assert_file "$S/data" '0\n'
	assert_version "$S" 1
	no_txn_files "$S"
}

# --- wait ---------------------------------------------------------------

@test "wait --after V returns at once when the version is past V" {
	kstate set "$S" a
	kstate set "$S" b
	run kstate wait "$S" --after 1
	assert_eq "$status" 0
	assert_eq "$output" 2
}

@test "wait: a commit ends the wait, and the new version is printed" {
	kstate set "$S" a
	(sleep 0.3; "$KSTATE" set "$S" b) &
	local pid=$!
	run kstate wait "$S" --timeout 20
	assert_eq "$status" 0
	assert_eq "$output" 2
	wait "$pid"
}

@test "wait --timeout: status 1 when nothing happens, after the timeout" {
	kstate set "$S" a
	local t0=$EPOCHREALTIME
	run kstate wait "$S" --timeout 0.5
	local ms=$(((${EPOCHREALTIME/./} - ${t0/./}) / 1000))
	assert_eq "$status" 1
	assert_eq "$output" ""
	[ "$ms" -ge 490 ] || { echo "returned after $ms ms"; return 1; }
	[ "$ms" -lt 5000 ] || { echo "returned after $ms ms"; return 1; }
	run kstate wait "$S" --after 1 --timeout 0
	assert_eq "$status" 1
}

# --- when ---------------------------------------------------------------

@test "when: true at once" {
	kstate set "$S" 5
	run kstate when "$S" --timeout 5 -- sh -c 'read -r n; [ "$n" -ge 5 ]'
	assert_eq "$status" 0
}

@test "when: the predicate runs again only when the state changes" {
	kstate set "$S" 0
	local runs=$BATS_TEST_TMPDIR/runs
	(
		sleep 0.5
		for i in 1 2 3; do
			"$KSTATE" set "$S" "$i"
			sleep 0.3
		done
	) &
	local pid=$!
	run kstate when "$S" --timeout 20 -- sh -c "echo run >>$runs; read -r n; [ \"\$n\" -ge 3 ]"
	assert_eq "$status" 0
	wait "$pid"
	# 0, then 1, 2, 3 (some may coalesce), never in a loop while nothing
	# changes.
	local n
	n=$(wc -l <"$runs")
	echo "$n runs"
	[ "$n" -ge 2 ] && [ "$n" -le 4 ]
}

@test "when --timeout: status 1, with one run of the predicate" {
	kstate set "$S" 0
	local runs=$BATS_TEST_TMPDIR/runs
	run kstate when "$S" --timeout 0.5 -- sh -c "echo run >>$runs; false"
	assert_eq "$status" 1
	assert_eq "$(wc -l <"$runs")" 1 "predicate runs"
}

@test "when A B: wakes on a change of either, each run sees one snapshot of both" {
	kstate set -n "$MNT/a" 0
	kstate set -n "$MNT/b" 0
	local runs=$BATS_TEST_TMPDIR/runs pid
	ks_bg "$KSTATE" when "$MNT/a" "$MNT/b" --timeout 20 -0 -- \
		sh -c "tr '\\0' ' ' >>$runs; echo >>$runs; exit 1"
	wait_for 10 grep -qx '0 0 ' "$runs"
	kstate set -n "$MNT/b" 1
	wait_for 10 grep -qx '0 1 ' "$runs"
	kstate set -n "$MNT/a" 1
	wait_for 10 grep -qx '1 1 ' "$runs"
	# No run while nothing changes.
	local n
	n=$(wc -l <"$runs")
	sleep 0.5
	assert_eq "$(wc -l <"$runs")" "$n" "runs while nothing changed"
	(
		sleep 0.5
		"$KSTATE" set "$MNT/b" 7
	) &
	pid=$!
	run kstate when "$MNT/a" "$MNT/b" --timeout 20 -- \
		sh -c 'read -r h1; read -r a; read -r h2; read -r b; [ "$b" = 7 ]'
	wait "$pid"
	assert_eq "$status" 0 "when woken by b: $output"
	run ls "$MNT/.txn"
	assert_eq "$output" "" "snapshots left in .txn"
}

@test "when --recheck S re-runs a false predicate without changes; --until runs it a last time, then status 1" {
	kstate set "$S" 0
	local runs=$BATS_TEST_TMPDIR/runs
	run kstate when "$S" --recheck 0.2 --timeout 1.1 -- sh -c "echo run >>$runs; false"
	assert_eq "$status" 1
	local n
	n=$(wc -l <"$runs")
	echo "$n runs in 1.1 s"
	[ "$n" -ge 4 ] && [ "$n" -le 7 ]
	# A predicate of the time: true once the deadline it reads passed.
	local at t0=$SECONDS
	at=$(($(date +%s) + 2))
	run kstate when "$S" --recheck 0.25 -- sh -c "[ \$(date +%s) -ge $at ]"
	assert_eq "$status" 0
	[ $((SECONDS - t0)) -le 4 ]
	# --until: once now, once at TIME, then status 1.
	: >"$runs"
	at=$(($(date +%s) + 1))
	run kstate when "$S" --until "@$at" -- sh -c "date +%s >>$runs; false"
	assert_eq "$status" 1
	assert_eq "$(wc -l <"$runs")" 2 "predicate runs"
	[ "$(tail -n 1 "$runs")" -ge "$at" ]
	# ... and a change before TIME still wakes it.
	(
		sleep 0.5
		"$KSTATE" set "$S" 5
	) &
	local pid=$!
	run kstate when "$S" --until "@$(($(date +%s) + 30))" -- sh -c 'read -r n; [ "$n" = 5 ]'
	wait "$pid"
	assert_eq "$status" 0
	run kstate when "$S" --until yesterday -- true
	assert_eq "$status" 2
}

@test "watch A B: one run per change of either, each with both pages" {
	kstate set -n "$MNT/a" 0
	kstate set -n "$MNT/b" 0
	local out=$BATS_TEST_TMPDIR/seen
	: >"$out"
	ks_bg "$KSTATE" watch -0 "$MNT/a" "$MNT/b" -- sh -c "tr '\\0' ' ' >>$out; echo >>$out"
	wait_for 10 grep -qx '0 0 ' "$out"
	kstate set -n "$MNT/a" 1
	wait_for 10 grep -qx '1 0 ' "$out"
	kstate set -n "$MNT/b" 2
	wait_for 10 grep -qx '1 2 ' "$out"
	assert_eq "$(wc -l <"$out")" 3 "runs"
}

# --- watch --------------------------------------------------------------

@test "watch --max-rate coalesces a burst and still sees the last value" {
	kstate set "$S" 0
	local out=$BATS_TEST_TMPDIR/seen
	: >"$out"
	ks_bg "$KSTATE" watch "$S" --max-rate 5 -- sh -c "cat >>$out"
	wait_for 10 grep -qx 0 "$out"
	local t0=$SECONDS i
	for ((i = 1; i <= 100; i++)); do
		"$KSTATE" set "$S" "$i"
	done
	wait_for 10 eval "[ \"\$(tail -n 1 $out)\" = 100 ]"
	local elapsed=$((SECONDS - t0 + 1)) runs
	runs=$(wc -l <"$out")
	echo "$runs runs in about $elapsed s"
	# At most 5 a second (and the first run), far fewer than 101.
	[ "$runs" -le $((5 * elapsed + 2)) ]
	# And nothing after the last value.
	sleep 0.5
	assert_eq "$(tail -n 1 "$out")" 100
	assert_eq "$(wc -l <"$out")" "$runs"
}

@test "watch runs the command on every change when changes are slow" {
	kstate set "$S" 0
	local out=$BATS_TEST_TMPDIR/seen i
	: >"$out"
	ks_bg "$KSTATE" watch "$S" -- sh -c "cat >>$out"
	wait_for 10 grep -qx 0 "$out"
	for i in 1 2 3; do
		"$KSTATE" set "$S" "$i"
		wait_for 10 grep -qx "$i" "$out"
	done
	assert_eq "$(tr '\n' ' ' <"$out")" "0 1 2 3 "
}

# --- ls -----------------------------------------------------------------

@test "ls lists states with version, size and time of the last commit" {
	kstate set "$MNT/alpha" 12345
	kstate set "$MNT/alpha" 1234
	mkdir "$MNT/beta"
	run kstate ls "$MNT"
	assert_eq "$status" 0
	echo "$output"
	[ "${#lines[@]}" -eq 2 ]
	read -r name version size time <<<"${lines[0]}"
	assert_eq "$name $version $size" "alpha 2 5"
	[[ $time =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$ ]]
	read -r name version size time <<<"${lines[1]}"
	assert_eq "$name $version $size $time" "beta 0 0 -"
	cd "$MNT"
	run kstate ls
	assert_eq "${#lines[@]}" 2
	run kstate ls "$MNT/nowhere"
	[ "$status" -ne 0 ]
	assert_contains "$output" "$MNT/nowhere: No such file or directory"
}

@test "ls of a directory that is not a kstatefs mount's root: status 3 and why" {
	mkdir "$MNT/alpha" "$BATS_TEST_TMPDIR/plain"
	for dir in "$BATS_TEST_TMPDIR/plain" "$MNT/alpha"; do
		run kstate ls "$dir"
		assert_eq "$status" 3 "kstate ls $dir; output: $output"
		assert_contains "$output" "$dir: not the root of a kstatefs mount"
	done
	cd "$BATS_TEST_TMPDIR/plain"
	run kstate ls
	assert_eq "$status" 3 "kstate ls in a plain directory; output: $output"
}

# --- usage --------------------------------------------------------------

@test "--help for kstate and for every command; usage errors" {
	run kstate --help
	assert_eq "$status" 0
	for c in get set update wait when watch ls; do
		assert_contains "$output" "kstate $c"
		run kstate "$c" --help
		assert_eq "$status" 0
		assert_contains "$output" "Usage: kstate $c"
		run kstate --help
	done
	# set --help says how set commits: fsync of a read-write data file.
	run kstate set --help
	assert_contains "$output" "fsync"
	[[ $output != *"transaction file"* ]] || {
		echo "set --help: $output"
		return 1
	}
	run kstate frobnicate
	assert_eq "$status" 2
	assert_contains "$output" "unknown command"
	run kstate wait "$S" --timeout soon
	assert_eq "$status" 2
	assert_contains "$output" "--timeout"
	run kstate get
	assert_eq "$status" 2
	run kstate update "$S"
	assert_eq "$status" 2
	run kstate
	assert_eq "$status" 2
}
