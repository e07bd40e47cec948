#!/usr/bin/env bats
# SPEC 8 and 9: the shared mappings on every backend, etcd included.  Each
# host publishes its own copy of every state in its own mappings: its own
# commits before they are acknowledged, another host's as its watch
# delivers them (the same path as a read of data on that host).

load etcd_helpers

: "${KSTATE_BUILD:=$KS_ROOT/build}"
TSHM=$KSTATE_BUILD/tests/client/test_shm
LAG=10

@test "shm on etcd: each host's mapping follows commits made on either host; rmdir on A ends B's" {
	ks_etcd_start 1
	ks_host A
	ks_host B
	local a=$HOST_A b=$HOST_B
	mkdir "$a/e"
	wait_for "$LAG" test -d "$b/e"
	assert_eq "$($TSHM probe "$a/e")" mapped
	assert_eq "$($TSHM probe "$b/e")" mapped
	[ "$(cat "$a/.shm")" != "$(cat "$b/.shm")" ]
	# A's own commit: in A's mapping when kstate set returns.
	"$KSTATE" set "$a/e" one
	assert_eq "$($TSHM read "$a/e")" "1 one"
	# B's mapping, once B's watch has it; kstate get on B reads it.
	wait_for "$LAG" eval "[ \"\$($TSHM read '$b/e')\" = '1 one' ]"
	"$KSTATE" set "$b/e" two
	assert_eq "$($TSHM read "$b/e")" "2 two"
	assert_eq "$("$KSTATE" get "$b/e")" two
	wait_for "$LAG" eval "[ \"\$($TSHM read '$a/e')\" = '2 two' ]"
	# A deletion arriving from A ends B's mapping too.
	ks_bg "$TSHM" hold "$b/e" "$BATS_TEST_TMPDIR/go" >"$BATS_TEST_TMPDIR/out"
	wait_for 10 grep -q "^2 two" "$BATS_TEST_TMPDIR/out"
	rmdir "$a/e"
	wait_for "$LAG" eval "! test -e '$b/e'"
	touch "$BATS_TEST_TMPDIR/go"
	wait_for 10 grep -q "^ESTALE" "$BATS_TEST_TMPDIR/out"
}
