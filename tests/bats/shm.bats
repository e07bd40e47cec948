#!/usr/bin/env bats
# SPEC 8, reads at memory speed: the daemon publishes every state's page in
# a shared mapping (DIR/INO, DIR named in the mount's .shm), and libkstate,
# kstate get and kstate watch read it instead of asking the daemon.  Same
# guarantees as the files: whole versions, never older than an
# acknowledged commit, only for users the state's mode lets read, gone with
# the state or the mount, never trusted after kill -9.  The reads are
# checked through tests/client/test_shm (probe, read, reread, hold) and the
# kstate command.

load helpers

: "${KSTATE_BUILD:=$KS_ROOT/build}"
: "${KSTATE:=$KSTATE_BUILD/client/kstate}"
TSHM=$KSTATE_BUILD/tests/client/test_shm
KS_USER=kstest-user
STRANGER=4242

setup_file() {
	id "$KS_USER" >/dev/null 2>&1 || useradd -M -s /bin/bash "$KS_USER"
}

# The mapping file of state directory $1.
mapping_of() {
	echo "$(cat "$(dirname "$1")/.shm" | head -n 1)/$(stat -c %i "$1")"
}

# Waits until $1 has a line matching $2.
wait_line() {
	wait_for 20 grep -q "$2" "$1"
}

@test "shm: .shm names the directory; each state has its file; get and read use it" {
	ks_mount
	local dir
	dir=$(cat "$MNT/.shm")
	[[ "$dir" == /dev/shm/kstatefs.* ]] || { echo ".shm: $dir"; return 1; }
	assert_eq "$(stat -c %a "$MNT/.shm")" 444
	[ -f "$dir/instance" ]
	mkdir "$MNT/s"
	[ -f "$(mapping_of "$MNT/s")" ]
	assert_eq "$($TSHM probe "$MNT/s")" mapped
	assert_eq "$($TSHM read "$MNT/s")" "0 " "never committed: version 0, empty"
	"$KSTATE" set "$MNT/s" hello
	assert_eq "$($TSHM read "$MNT/s")" "1 hello"
	assert_eq "$("$KSTATE" get "$MNT/s")" hello
	# kstate get asks the daemon nothing once the state is open: no read
	# of data or version.
	if command -v strace >/dev/null; then
		run strace -f -y -e trace=read,pread64 "$KSTATE" get "$MNT/s"
		[[ "$output" != *'/data>'* && "$output" != *'/version>'* ]] ||
			{ echo "$output"; return 1; }
	fi
	# A state that another mkdir names later is its own file: rename
	# keeps the mapping (it follows the state, not its name).
	mv "$MNT/s" "$MNT/t"
	assert_eq "$($TSHM read "$MNT/t")" "1 hello"
	mkdir "$MNT/s"
	assert_eq "$($TSHM read "$MNT/s")" "0 "
	# The 4 KiB default: two slots of 4 KiB and headers.
	assert_eq "$(stat -c %s "$(mapping_of "$MNT/t")")" 8448
}

@test "shm: kstate watch sees every change through the mapping" {
	ks_mount
	mkdir "$MNT/w"
	ks_bg "$KSTATE" watch "$MNT/w" -- sh -c "cat >> $BATS_TEST_TMPDIR/seen; echo >> $BATS_TEST_TMPDIR/seen"
	wait_for 10 test -f "$BATS_TEST_TMPDIR/seen"
	local i
	for i in 1 2 3; do
		"$KSTATE" set "$MNT/w" "v$i"
		wait_line "$BATS_TEST_TMPDIR/seen" "^v$i$"
	done
}

@test "shm: rmdir marks the mapping dead and removes it before it returns" {
	ks_mount
	mkdir "$MNT/d"
	"$KSTATE" set "$MNT/d" doomed
	local f
	f=$(mapping_of "$MNT/d")
	ks_bg "$TSHM" hold "$MNT/d" "$BATS_TEST_TMPDIR/go" >"$BATS_TEST_TMPDIR/out"
	wait_line "$BATS_TEST_TMPDIR/out" "^1 doomed"
	rmdir "$MNT/d"
	[ ! -e "$f" ] || { echo "$f is still there"; return 1; }
	touch "$BATS_TEST_TMPDIR/go"
	wait_line "$BATS_TEST_TMPDIR/out" "^ESTALE"
	# A new state of the same name is a new mapping.
	mkdir "$MNT/d"
	assert_eq "$($TSHM read "$MNT/d")" "0 "
}

@test "shm: unmount removes the directory; a reader holding a mapping sees it dead" {
	ks_mount
	mkdir "$MNT/u"
	"$KSTATE" set "$MNT/u" bye
	local dir
	dir=$(cat "$MNT/.shm")
	ks_bg "$TSHM" hold "$MNT/u" "$BATS_TEST_TMPDIR/go" >"$BATS_TEST_TMPDIR/out"
	wait_line "$BATS_TEST_TMPDIR/out" "^1 bye"
	ks_unmount
	[ ! -e "$dir" ] || { echo "$dir is still there: $(ls -la "$dir")"; return 1; }
	touch "$BATS_TEST_TMPDIR/go"
	wait_line "$BATS_TEST_TMPDIR/out" "^ESTALE"
}

@test "shm: kill -9 and a remount: the old mapping is never trusted, the new daemon's is" {
	local store=$BATS_TEST_TMPDIR/store pid dir
	ks_mount --store "$store"
	mkdir "$MNT/k"
	"$KSTATE" set "$MNT/k" before
	dir=$(cat "$MNT/.shm")
	ks_bg "$TSHM" reread "$MNT/k" "$BATS_TEST_TMPDIR/go" >"$BATS_TEST_TMPDIR/out"
	wait_line "$BATS_TEST_TMPDIR/out" "^1 before"
	pid=$KS_PID
	KS_PID=
	kill -KILL "$pid"
	wait "$pid" || true
	umount -f "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
	# The mapping's file is still there, with its last page: only the
	# owner word tells the daemon is dead.
	[ -d "$dir" ]
	ks_mount --store "$store"
	# The new daemon removed the dead one's leftovers (same user).
	[ ! -e "$dir" ] || { echo "$dir was not reaped"; return 1; }
	[ "$(cat "$MNT/.shm")" != "$dir" ]
	"$KSTATE" set "$MNT/k" after
	touch "$BATS_TEST_TMPDIR/go"
	wait_line "$BATS_TEST_TMPDIR/out" "^kstate_read"
	cat "$BATS_TEST_TMPDIR/out"
	# The old mapping: dead.  The old handle: the dead connection's
	# error, never the old page.
	# (pages end in the newline kstate set gave them)
	grep -qx ESTALE "$BATS_TEST_TMPDIR/out"
	run grep kstate_read "$BATS_TEST_TMPDIR/out"
	[[ "$output" != *before* ]] || return 1
	assert_eq "$($TSHM read "$MNT/k")" "2 after"
	assert_eq "$("$KSTATE" get "$MNT/k")" after
}

@test "shm: only users the state's mode lets read may map it; chmod and chown follow" {
	KS_MNT=$(mktemp -d /tmp/kstest-shm.XXXXXX)
	chmod 755 "$KS_MNT"
	ks_mount -o allow_other,default_permissions
	local u uid
	u=$KS_USER
	uid=$(id -u "$u")
	mkdir -m 700 "$MNT/p"
	"$KSTATE" set "$MNT/p" secret
	mkdir -m 755 "$MNT/r"
	"$KSTATE" set "$MNT/r" public
	assert_eq "$(stat -c '%a %U' "$(mapping_of "$MNT/p")")" "400 root"
	assert_eq "$(stat -c %a "$(mapping_of "$MNT/r")")" 444
	# The second user: the private state neither maps nor reads; the
	# public one maps and reads.
	assert_eq "$(runuser -u "$u" -- "$TSHM" probe "$MNT/p")" EACCES
	run runuser -u "$u" -- "$KSTATE" get "$MNT/p"
	[ "$status" -ne 0 ] && [[ "$output" != *secret* ]] || { echo "$output"; return 1; }
	run runuser -u "$u" -- cat "$(mapping_of "$MNT/p")"
	[ "$status" -ne 0 ] && [[ "$output" != *secret* ]] || { echo "$output"; return 1; }
	assert_eq "$(runuser -u "$u" -- "$TSHM" probe "$MNT/r")" mapped
	assert_eq "$(runuser -u "$u" -- "$KSTATE" get "$MNT/r")" public
	assert_eq "$(setpriv --reuid=$STRANGER --regid=$STRANGER --clear-groups -- "$TSHM" read "$MNT/r")" "1 public"
	# chmod closes it to new readers at once.
	chmod 700 "$MNT/r"
	assert_eq "$(stat -c %a "$(mapping_of "$MNT/r")")" 400
	assert_eq "$(runuser -u "$u" -- "$TSHM" probe "$MNT/r")" EACCES
	# Read bits without search bits (744): others cannot reach data,
	# nor its mapping; with both (755) they can again.
	chmod 744 "$MNT/r"
	assert_eq "$(stat -c %a "$(mapping_of "$MNT/r")")" 400
	assert_eq "$(runuser -u "$u" -- "$TSHM" probe "$MNT/r")" EACCES
	run runuser -u "$u" -- cat "$MNT/r/data"
	[ "$status" -ne 0 ] || { echo "cat of data of a 744 state: $output"; return 1; }
	chmod 751 "$MNT/r"
	assert_eq "$(stat -c %a "$(mapping_of "$MNT/r")")" 440
	chmod 755 "$MNT/r"
	assert_eq "$(stat -c %a "$(mapping_of "$MNT/r")")" 444
	assert_eq "$(runuser -u "$u" -- "$TSHM" probe "$MNT/r")" mapped
	# A root others may not search (700): no state is theirs to read,
	# through the files or the mappings.
	chmod 700 "$MNT"
	assert_eq "$(runuser -u "$u" -- "$TSHM" probe "$MNT/r")" EACCES
	run runuser -u "$u" -- cat "$(mapping_of "$MNT/r")"
	[ "$status" -ne 0 ] && [[ "$output" != *public* ]] || { echo "mapping of r under a 700 root: $output"; return 1; }
	chmod 755 "$MNT"
	assert_eq "$(runuser -u "$u" -- cat "$(mapping_of "$MNT/r")" | tr -d '\0' | grep -c public)" 1
	chmod 700 "$MNT/r"
	# chown: the mapping is the new owner's, with the state's read bits.
	chown "$u" "$MNT/p"
	assert_eq "$(stat -c '%a %u' "$(mapping_of "$MNT/p")")" "400 $uid"
	assert_eq "$(runuser -u "$u" -- "$TSHM" read "$MNT/p")" "1 secret"
	assert_eq "$(runuser -u "$u" -- "$KSTATE" get "$MNT/p")" secret
	assert_eq "$(setpriv --reuid=$STRANGER --regid=$STRANGER --clear-groups -- "$TSHM" probe "$MNT/p")" EACCES
	ks_teardown
	rmdir "$KS_MNT"
}

@test "shm: without allow_other only the mount's owner maps; -o noshm offers nothing" {
	ks_mount
	mkdir -m 755 "$MNT/o"
	assert_eq "$(stat -c %a "$(mapping_of "$MNT/o")")" 400
	ks_unmount
	ks_mount -o noshm
	assert_eq "$(cat "$MNT/.shm")" ""
	mkdir "$MNT/n"
	assert_eq "$($TSHM probe "$MNT/n")" ENOENT
	"$KSTATE" set "$MNT/n" files
	assert_eq "$("$KSTATE" get "$MNT/n")" files
}

@test "shm: libkstate readers while writers commit: every read whole, none stale" {
	ks_mount
	mkdir "$MNT/shm-readers"
	run timeout 300 "$TSHM" "$MNT"
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" "test_shm: ok"
}

@test "shm: larger pages (-o max_size=1M): whole versions across a long copy" {
	ks_mount -o max_size=1048576
	mkdir "$MNT/big"
	head -c 1000000 /dev/urandom >"$BATS_TEST_TMPDIR/big"
	"$KSTATE" set "$MNT/big" <"$BATS_TEST_TMPDIR/big"
	"$KSTATE" get "$MNT/big" >"$BATS_TEST_TMPDIR/got"
	cmp "$BATS_TEST_TMPDIR/big" "$BATS_TEST_TMPDIR/got"
	assert_eq "$($TSHM probe "$MNT/big")" mapped
}
