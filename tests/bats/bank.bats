#!/usr/bin/env bats
# The bank-transfer test (SPEC 5): processes move amounts between accounts
# with .txn transactions while others take read-only .txn snapshots.  Every
# snapshot sums to the same total, the final total is exact, and the versions
# count the transfers; also across a kill -9 of the daemon on a --store.

load helpers

NACC=5
BAL=100
TOTAL=500

setup() {
	ks_mount
}

bank() {
	timeout -k 5 300 python3 "$KS_TOOLS/workloads/bank.py" "$@"
}

# start_workers ROUND NTRANSFERS: 4 transfer and 2 audit processes in the
# background; logs in $BATS_TEST_TMPDIR/ROUND.*; pids in TPIDS and APIDS.
start_workers() {
	local r=$1 n=$2 i
	TPIDS=() APIDS=()
	STOP=$BATS_TEST_TMPDIR/$r.stop
	rm -f "$STOP"
	for i in 1 2 3 4; do
		bank transfer "$MNT" $NACC "$n" "$BATS_TEST_TMPDIR/$r.transfer.$i" \
			>"$BATS_TEST_TMPDIR/$r.transfer.$i.out" 2>&1 &
		TPIDS+=($!)
	done
	for i in 1 2; do
		bank audit "$MNT" $NACC $TOTAL "$STOP" "$BATS_TEST_TMPDIR/$r.audit.$i" \
			>"$BATS_TEST_TMPDIR/$r.audit.$i.out" 2>&1 &
		APIDS+=($!)
	done
}

# wait_workers ROUND WANT: waits for them; each must exit with status WANT
# (0, or 3 after the daemon was killed; 0 is accepted then too).
wait_workers() {
	local r=$1 want=$2 p st bad=0 i=0
	for p in "${TPIDS[@]}"; do
		i=$((i + 1))
		st=0
		wait "$p" || st=$?
		if [ "$st" -ne 0 ] && [ "$st" -ne "$want" ]; then
			echo "transfer worker $i exited with status $st:"
			cat "$BATS_TEST_TMPDIR/$r.transfer.$i.out"
			bad=1
		fi
	done
	touch "$STOP"
	i=0
	for p in "${APIDS[@]}"; do
		i=$((i + 1))
		st=0
		wait "$p" || st=$?
		if [ "$st" -ne 0 ] && [ "$st" -ne "$want" ]; then
			echo "audit worker $i exited with status $st:"
			cat "$BATS_TEST_TMPDIR/$r.audit.$i.out"
			bad=1
		fi
	done
	cat "$BATS_TEST_TMPDIR/$r".*.out
	return $bad
}

# acked ROUND: the number of transfers acknowledged so far.
acked() {
	cat "$BATS_TEST_TMPDIR/$1".transfer.[0-9] 2>/dev/null | grep -c '^ok '
}

# total: the sum of the balances, read from the data files.
total() {
	local i s=0 v
	for ((i = 0; i < NACC; i++)); do
		v=$(cat "$MNT/acct$i/data") || return 1
		s=$((s + v))
	done
	echo "$s"
}

# crash: kill -9 the daemon; the workers see the mount go away.
crash() {
	local pid=$KS_PID
	KS_PID=
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
}

detach() {
	fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
}

@test "bank: concurrent transfers and snapshots; every snapshot sums to 500, totals and versions exact" {
	bank setup "$MNT" $NACC $BAL
	assert_eq "$(total)" $TOTAL "total before"
	start_workers r1 150
	wait_workers r1 0
	assert_eq "$(acked r1)" 600 "acknowledged transfers"
	assert_eq "$(total)" $TOTAL "total after"
	bank check "$MNT" $NACC $BAL "$BATS_TEST_TMPDIR"/r1.transfer.[0-9]
	# Each audit process took at least its final snapshot.
	# Snapshots never fail: every audit committed the first time.
	local f n c
	for f in "$BATS_TEST_TMPDIR"/r1.audit.[0-9]; do
		read -r _ n c <"$f"
		[ "$n" -ge 1 ] || { echo "$f: no successful snapshot"; return 1; }
		assert_eq "$c" 0 "$f: snapshots that conflicted"
	done
	run ls "$MNT/.txn"
	assert_eq "$output" "" "transactions left in .txn"
}

bank_crash() {
	local store=$BATS_TEST_TMPDIR/store
	ks_unmount
	ks_mount --store "$store" "$@"
	bank setup "$MNT" $NACC $BAL
	start_workers r1 1000000
	# Mid-run: once some transfers were acknowledged.
	wait_for 120 eval '[ "$(acked r1)" -ge 200 ]' || {
		cat "$BATS_TEST_TMPDIR"/r1.*.out
		return 1
	}
	crash
	wait_workers r1 3
	detach
	echo "acknowledged before the kill: $(acked r1)"

	ks_mount --store "$store" "$@"
	assert_eq "$(total)" $TOTAL "total after the remount"
	bank check "$MNT" $NACC $BAL "$BATS_TEST_TMPDIR"/r1.transfer.[0-9]
	run ls "$MNT/.txn"
	assert_eq "$output" "" "transactions in .txn after the remount"

	# And it goes on: a second round on the recovered store.
	start_workers r2 100
	wait_workers r2 0
	assert_eq "$(total)" $TOTAL "total after the second round"
	bank check "$MNT" $NACC $BAL "$BATS_TEST_TMPDIR"/r[12].transfer.[0-9]

	# A clean restart keeps all of it.
	ks_unmount
	ks_mount --store "$store" "$@"
	assert_eq "$(total)" $TOTAL "total after a clean restart"
	bank check "$MNT" $NACC $BAL "$BATS_TEST_TMPDIR"/r[12].transfer.[0-9]
}

@test "bank: the daemon on --store killed with SIGKILL mid-run; after the remount the total is 500 and versions consistent" {
	bank_crash
}

@test "bank: the same with --sync none" {
	bank_crash --sync none
}

@test "bank: kstate get of every account under transfers: each snapshot sums to 500, none fails" {
	: "${KSTATE:=$KS_ROOT/build/client/kstate}"
	bank setup "$MNT" $NACC $BAL
	local i p pids=() accts=()
	for ((i = 0; i < NACC; i++)); do
		accts+=("$MNT/acct$i")
	done
	for i in 1 2 3; do
		bank transfer "$MNT" $NACC 300 "$BATS_TEST_TMPDIR/t.transfer.$i" \
			>"$BATS_TEST_TMPDIR/t.$i.out" 2>&1 &
		pids+=($!)
	done
	# Snapshots for as long as any transfer runs.
	local n=0 pages s v running=1
	while [ $running -eq 1 ]; do
		running=0
		for p in "${pids[@]}"; do
			kill -0 "$p" 2>/dev/null && running=1
		done
		n=$((n + 1))
		mapfile -d '' pages < <(timeout 30 "$KSTATE" get -0 "${accts[@]}"; echo "status $?")
		[ "${pages[-1]}" = $'status 0\n' ] || {
			echo "snapshot $n failed: ${pages[-1]}"
			return 1
		}
		[ "${#pages[@]}" -eq $((NACC + 1)) ] || {
			echo "snapshot $n: ${#pages[@]} fields: ${pages[*]}"
			return 1
		}
		s=0
		for v in "${pages[@]:0:NACC}"; do
			s=$((s + v))
		done
		[ "$s" -eq $TOTAL ] || {
			echo "snapshot $n sums to $s: ${pages[*]}"
			return 1
		}
	done
	for p in "${pids[@]}"; do
		wait "$p" || { cat "$BATS_TEST_TMPDIR"/t.*.out; return 1; }
	done
	echo "$n snapshots during $(acked t) transfers"
	[ "$n" -ge 10 ] || { echo "too few snapshots to tell"; return 1; }
	assert_eq "$(acked t)" 900 "acknowledged transfers"
	assert_eq "$(total)" $TOTAL "total after"
	bank check "$MNT" $NACC $BAL "$BATS_TEST_TMPDIR"/t.transfer.[0-9]
	run ls "$MNT/.txn"
	assert_eq "$output" "" "transactions left in .txn"
}
