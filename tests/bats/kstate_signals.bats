#!/usr/bin/env bats
# SPEC 7: kstate update, when and watch under signals, on a real mount:
# SIGINT, SIGTERM and SIGHUP passed on to the command running and waited
# for; ignored ones left ignored; a command killed by SIGPIPE.

bats_require_minimum_version 1.5.0
load kstate_helpers

setup() {
	ks_need_kstate || return 1
	ks_mount
	S=$MNT/s
}

signum() {
	kill -l "$1"
}

# is_kstate PID: PID runs the kstate command (and not setsid or env).
is_kstate() {
	[ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$(basename "$KSTATE")" ]
}

# The sleep a command's shell (whose pid is in file $1) runs.
sleep_of() {
	local sh
	sh=$(cat "$1" 2>/dev/null) && [ -n "$sh" ] && pgrep -P "$sh" -x sleep
}

@test "update: a stop signal ignored at start stays ignored, and the update commits" {
	local sig started=$BATS_TEST_TMPDIR/started pid st v
	for sig in HUP INT TERM; do
		kstate set "$S" 1
		v=$(ks_version "$S")
		rm -f "$started"
		# As nohup, or a background job of a script (SIGINT), starts it
		# (the others at their default, whatever this run inherited).
		env --default-signal env --ignore-signal="$sig" \
			"$KSTATE" update "$S" -- \
			sh -c 'touch "$0"; sleep 1; echo 77' "$started" &
		pid=$!
		wait_for 10 test -e "$started"
		kill "-$sig" "$pid"
		st=0
		wait "$pid" || st=$?
		assert_eq "$st" 0 "update with SIG$sig ignored, sent SIG$sig"
		assert_file "$S/data" '77\n'
		assert_version "$S" $((v + 1))
	done
	# Not ignored, it stops the update, which commits nothing.
	kstate set "$S" 1
	v=$(ks_version "$S")
	rm -f "$started"
	env --default-signal "$KSTATE" update "$S" -- \
		sh -c 'touch "$0"; sleep 1; echo 77' "$started" &
	pid=$!
	wait_for 10 test -e "$started"
	kill -INT "$pid"
	st=0
	wait "$pid" || st=$?
	assert_eq "$st" 130
	assert_file "$S/data" '1\n'
	assert_version "$S" "$v"
}

@test "when, watch and update pass SIGTERM, SIGINT and SIGHUP on to all their command runs, wait for it, then die of the signal" {
	kstate set "$S" 1
	local cmd sig pid st sl t0
	local shpid=$BATS_TEST_TMPDIR/sh done=$BATS_TEST_TMPDIR/done
	for cmd in when watch update; do
		for sig in TERM INT HUP; do
			rm -f "$shpid" "$done"
			# The command's shell sleeps; stopped, it takes a moment
			# to clean up, which kstate must wait for.  No terminal
			# (setsid), no signal ignored (env: a test run under nohup,
			# or as a background job of a script, inherits SIGHUP or
			# SIGINT ignored), as from a service.
			env --default-signal setsid "$KSTATE" "$cmd" "$S" -- sh -c '
				trap "sleep 0.3; touch \"\$1\"; exit 1" '"$sig"'
				echo $$ >"$0"
				sleep 30
				exit 1' "$shpid" "$done" &
			pid=$!
			wait_for 10 is_kstate "$pid"
			wait_for 10 sleep_of "$shpid" >/dev/null
			sl=$(sleep_of "$shpid")
			t0=$SECONDS
			kill "-$sig" "$pid"
			st=0
			wait "$pid" || st=$?
			assert_eq "$st" $((128 + $(signum "$sig"))) "kstate $cmd, SIG$sig"
			[ $((SECONDS - t0)) -lt 10 ] || {
				echo "kstate $cmd took $((SECONDS - t0)) s to stop"
				return 1
			}
			# It waited for its command, whose sleep is gone too.
			[ -e "$done" ] || {
				echo "kstate $cmd did not wait for its command"
				return 1
			}
			wait_for 5 eval "! ks_alive $sl" ||
				{ echo "kstate $cmd, SIG$sig: sleep $sl left"; return 1; }
		done
	done
	assert_file "$S/data" '1\n'
	assert_version "$S" 1
}

@test "when and watch waiting for a change die of SIGTERM at once" {
	kstate set "$S" 1
	local cmd pid st
	for cmd in when watch; do
		env --default-signal "$KSTATE" "$cmd" "$S" -- \
			sh -c 'cat >"$0"; exit 1' "$BATS_TEST_TMPDIR/ran" &
		pid=$!
		wait_for 10 test -s "$BATS_TEST_TMPDIR/ran"
		sleep 0.2
		kill -TERM "$pid"
		st=0
		wait "$pid" || st=$?
		assert_eq "$st" 143 "kstate $cmd"
		rm -f "$BATS_TEST_TMPDIR/ran"
	done
}

@test "watch and when stop with status 141 once their command is killed by SIGPIPE (a reader gone)" {
	kstate set "$S" first
	local cmd out=$BATS_TEST_TMPDIR/out st=$BATS_TEST_TMPDIR/status
	# The shell's echo writes (and dies of SIGPIPE) itself.
	local -A command=([watch]=cat [when]='sh -c "echo \"\$(cat)\"; exit 1"')
	for cmd in watch when; do
		rm -f "$out" "$st"
		# head takes the first line and goes; the next run finds no
		# reader.
		ks_bg bash -c '{ "$1" "$2" "$3" -- '"${command[$cmd]}"'; echo $? >"$4"; } | head -n 1 >"$5"' \
			sh "$KSTATE" "$cmd" "$S" "$st" "$out"
		wait_for 10 test -s "$out"
		assert_eq "$(cat "$out")" first
		# Commits until a run finds head gone (it may still be
		# exiting after the first).
		wait_for 10 eval '"$KSTATE" set "$S" again && test -s "$st"'
		assert_eq "$(cat "$st")" 141 "kstate $cmd"
		kstate set "$S" first
	done
}
