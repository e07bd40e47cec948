#!/usr/bin/env bats
# SPEC 3: the root directory.

load helpers

setup() {
	ks_mount
}

# as_user UID CMD...: runs CMD with that uid/gid and no supplementary groups.
as_user() {
	local id=$1
	shift
	setpriv --reuid="$id" --regid="$id" --clear-groups -- "$@"
}

# Lets everyone reach $MNT (bats makes its temporary directories private).
make_reachable() {
	local d=$MNT
	while [ "$d" != / ]; do
		d=$(dirname "$d")
		chmod o+x "$d"
	done
}

@test "the root starts empty" {
	run ls "$MNT"
	assert_eq "$output" ""
}

@test "mkdir creates a state: a directory with data and version" {
	mkdir "$MNT/s"
	[ -d "$MNT/s" ]
	[ -f "$MNT/s/data" ]
	[ -f "$MNT/s/version" ]
	assert_file "$MNT/s/data" ''
	assert_version "$MNT/s" 0
}

@test "mkdir takes the mode from the call" {
	mkdir -m 0750 "$MNT/a"
	assert_eq "$(stat -c %a "$MNT/a")" 750 "mode of a"
	(umask 077 && mkdir "$MNT/b")
	assert_eq "$(stat -c %a "$MNT/b")" 700 "mode of b (umask 077)"
}

@test "mkdir takes the owner from the call" {
	ks_unmount
	ks_mount -o allow_other
	make_reachable
	setpriv --regid=4321 --clear-groups -- mkdir "$MNT/g"
	assert_eq "$(stat -c '%u %g' "$MNT/g")" "0 4321" "owner of g"
	mkdir "$MNT/r"
	assert_eq "$(stat -c '%u %g' "$MNT/r")" "0 0" "owner of r"
}

@test "ls lists the states" {
	mkdir "$MNT/b" "$MNT/a" "$MNT/c"
	run ls "$MNT"
	assert_eq "$output" "$(printf 'a\nb\nc')"
	rmdir "$MNT/b"
	run ls "$MNT"
	assert_eq "$output" "$(printf 'a\nc')"
}

@test "state names of 1 and 255 bytes, and of any bytes but / and NUL" {
	local long
	long=$(printf 'n%.0s' $(seq 255))
	mkdir "$MNT/x" "$MNT/$long" "$MNT/with space" "$MNT/é–ü" "$MNT/a.b."
	[ -d "$MNT/$long" ]
	echo hi >"$MNT/with space/data"
	assert_file "$MNT/with space/data" 'hi\n'
	run ls "$MNT"
	assert_contains "$output" "with space"
}

@test "mkdir of a 256-byte name fails and creates nothing" {
	local long
	long=$(printf 'n%.0s' $(seq 256))
	run ks_errno mkdir "$MNT/$long"
	[[ "$output" = ENAMETOOLONG || "$output" = EINVAL ]] || {
		echo "mkdir of 256 bytes: expected ENAMETOOLONG or EINVAL, got $output"
		return 1
	}
	run ls "$MNT"
	assert_eq "$output" ""
}

@test "mkdir of a name beginning with '.': EINVAL" {
	assert_errno EINVAL mkdir "$MNT/.hidden"
	assert_errno EINVAL mkdir "$MNT/.x"
	assert_errno EINVAL mkdir "$MNT/..x"
	run mkdir "$MNT/.dot"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Invalid argument"
	run ls "$MNT"
	assert_eq "$output" "" "nothing created"
}

@test "mkdir of an existing state: EEXIST, and the state is untouched" {
	mkdir "$MNT/s"
	echo keep >"$MNT/s/data"
	run mkdir "$MNT/s"
	[ "$status" -ne 0 ]
	assert_contains "$output" "File exists"
	assert_errno EEXIST mkdir "$MNT/s"
	assert_file "$MNT/s/data" 'keep\n'
	assert_version "$MNT/s" 1
}

@test "mkdir past max_states: ENOSPC; a deleted state frees its slot" {
	ks_unmount
	ks_mount -o max_states=4
	mkdir "$MNT/a" "$MNT/b" "$MNT/c" "$MNT/d"
	run mkdir "$MNT/e"
	[ "$status" -ne 0 ]
	assert_contains "$output" "No space left on device"
	assert_errno ENOSPC mkdir "$MNT/f"
	[ ! -e "$MNT/e" ]
	rmdir "$MNT/a"
	mkdir "$MNT/e"
	[ -d "$MNT/e" ]
}

@test "rmdir deletes the state; a new state of that name starts afresh" {
	mkdir "$MNT/s"
	echo old >"$MNT/s/data"
	echo older >"$MNT/s/data"
	rmdir "$MNT/s"
	[ ! -e "$MNT/s" ]
	[ ! -e "$MNT/s/data" ]
	run ls "$MNT"
	assert_eq "$output" ""
	mkdir "$MNT/s"
	assert_file "$MNT/s/data" ''
	assert_version "$MNT/s" 0
}

@test "rmdir of a state with a transaction file: ENOTEMPTY" {
	mkdir "$MNT/s"
	echo v >"$MNT/s/data"
	touch "$MNT/s/t"
	run rmdir "$MNT/s"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Directory not empty"
	assert_errno ENOTEMPTY rmdir "$MNT/s"
	assert_file "$MNT/s/data" 'v\n'
	[ -f "$MNT/s/t" ]
	rm "$MNT/s/t"
	rmdir "$MNT/s"
	[ ! -e "$MNT/s" ]
}

@test "rmdir of a state with an open file: EBUSY (data, version, transaction)" {
	mkdir "$MNT/s"
	echo v >"$MNT/s/data"
	local f
	for f in data version; do
		exec 5<"$MNT/s/$f"
		run rmdir "$MNT/s"
		[ "$status" -ne 0 ]
		assert_contains "$output" "Device or resource busy" "rmdir with $f open"
		assert_errno EBUSY rmdir "$MNT/s"
		exec 5<&-
	done
	# A transaction unlinked while open: no name left, but still open.
	echo t >"$MNT/s/t"
	exec 5<"$MNT/s/t"
	rm "$MNT/s/t"
	assert_errno EBUSY rmdir "$MNT/s"
	exec 5<&-
	assert_file "$MNT/s/data" 'v\n'
	# Closed: it goes.  (The kernel may release the file a moment later.)
	wait_for 10 rmdir "$MNT/s" 2>/dev/null
	[ ! -e "$MNT/s" ]
}

@test "rmdir of a missing state: ENOENT" {
	assert_errno ENOENT rmdir "$MNT/nope"
}

@test "mv renames a state with its page and version" {
	mkdir "$MNT/a"
	echo one >"$MNT/a/data"
	echo two >"$MNT/a/data"
	mv "$MNT/a" "$MNT/b"
	[ ! -e "$MNT/a" ]
	assert_file "$MNT/b/data" 'two\n'
	assert_version "$MNT/b" 2
	run ls "$MNT"
	assert_eq "$output" b
	# The old name is free again, and fresh.
	mkdir "$MNT/a"
	assert_version "$MNT/a" 0
	assert_file "$MNT/a/data" ''
	# The renamed state goes on working.
	echo three >"$MNT/b/data"
	assert_version "$MNT/b" 3
}

@test "mv onto an existing state: EEXIST, both untouched" {
	mkdir "$MNT/a" "$MNT/b"
	echo A >"$MNT/a/data"
	echo B >"$MNT/b/data"
	assert_errno EEXIST rename "$MNT/a" "$MNT/b"
	run mv -T "$MNT/a" "$MNT/b"
	[ "$status" -ne 0 ]
	assert_file "$MNT/a/data" 'A\n'
	assert_file "$MNT/b/data" 'B\n'
	run ls "$MNT"
	assert_eq "$output" "$(printf 'a\nb')"
}

@test "mv of a state to a name beginning with '.': EINVAL" {
	mkdir "$MNT/a"
	assert_errno EINVAL rename "$MNT/a" "$MNT/.a"
	[ -d "$MNT/a" ]
}

@test "a state cannot be moved into another state: EPERM" {
	mkdir "$MNT/a" "$MNT/b"
	assert_errno EPERM rename "$MNT/a" "$MNT/b/a"
	[ -d "$MNT/a" ]
}

@test "chmod and chown of a state by its owner" {
	mkdir "$MNT/s"
	chmod 700 "$MNT/s"
	assert_eq "$(stat -c %a "$MNT/s")" 700
	chmod 755 "$MNT/s"
	assert_eq "$(stat -c %a "$MNT/s")" 755
	chown 1234:5678 "$MNT/s"
	assert_eq "$(stat -c '%u %g' "$MNT/s")" "1234 5678"
	# The state itself is unchanged.
	assert_version "$MNT/s" 0
}

@test "allow_other,default_permissions: the state's owner and mode control access" {
	ks_unmount
	ks_mount -o allow_other,default_permissions
	make_reachable
	mkdir "$MNT/s"
	echo hello >"$MNT/s/data"
	chmod 700 "$MNT/s"
	run as_user 65534 cat "$MNT/s/data"
	[ "$status" -ne 0 ] || { echo "nobody read a 700 state: $output"; return 1; }
	assert_contains "$output" "Permission denied"

	chmod 755 "$MNT/s"
	run as_user 65534 cat "$MNT/s/data"
	assert_eq "$status" 0 "nobody reading a 755 state: $output"
	assert_eq "$output" hello
	run as_user 65534 sh -c "echo bad >'$MNT/s/data'"
	[ "$status" -ne 0 ] || { echo "nobody wrote a root-owned 755 state"; return 1; }
	assert_contains "$output" "Permission denied"
	run as_user 65534 touch "$MNT/s/t"
	[ "$status" -ne 0 ] || { echo "nobody began a transaction in a root-owned 755 state"; return 1; }
	run as_user 65534 chmod 777 "$MNT/s"
	[ "$status" -ne 0 ] || { echo "nobody chmod-ed root's state"; return 1; }
	assert_contains "$output" "Operation not permitted"
	assert_file "$MNT/s/data" 'hello\n'
	assert_version "$MNT/s" 1

	chown 65534:65534 "$MNT/s"
	run as_user 65534 sh -c "echo bye >'$MNT/s/data'"
	assert_eq "$status" 0 "the owner writing: $output"
	run as_user 65534 sh -c "cd '$MNT/s' && touch t && echo 3 >t && mv t data"
	assert_eq "$status" 0 "the owner committing a transaction: $output"
	assert_file "$MNT/s/data" '3\n'
	assert_version "$MNT/s" 3
	run as_user 65534 chmod 700 "$MNT/s"
	assert_eq "$status" 0 "the owner's chmod: $output"
	run as_user 4242 cat "$MNT/s/data"
	[ "$status" -ne 0 ] || { echo "a stranger read a 700 state"; return 1; }
}

@test "a regular file at the root: EPERM" {
	run touch "$MNT/f"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	run sh -c "echo x >'$MNT/f'"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	assert_errno EPERM create "$MNT/g"
	run ls "$MNT"
	assert_eq "$output" ""
}

@test "a symlink at the root: EPERM" {
	mkdir "$MNT/s"
	run ln -s s "$MNT/l"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	assert_errno EPERM symlink s "$MNT/l2"
	run ls "$MNT"
	assert_eq "$output" s
}

@test "a device node or fifo at the root: EPERM" {
	assert_errno EPERM mknod "$MNT/c" chr
	assert_errno EPERM mknod "$MNT/b" blk
	assert_errno EPERM mknod "$MNT/p" fifo
	assert_errno EPERM mknod "$MNT/k" sock
	run mkfifo "$MNT/q"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	run ls "$MNT"
	assert_eq "$output" ""
}

@test "a hard link at the root: EPERM" {
	mkdir "$MNT/s"
	echo x >"$MNT/s/t"
	assert_errno EPERM link "$MNT/s/data" "$MNT/h"
	assert_errno EPERM link "$MNT/s/t" "$MNT/h"
	run ln "$MNT/s/data" "$MNT/h2"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	run ls "$MNT"
	assert_eq "$output" s
}

@test "a transaction cannot be moved to the root: EPERM" {
	mkdir "$MNT/s"
	echo x >"$MNT/s/t"
	assert_errno EPERM rename "$MNT/s/t" "$MNT/t"
	assert_file "$MNT/s/t" 'x\n'
}

@test "states are independent" {
	mkdir "$MNT/a" "$MNT/b"
	echo A >"$MNT/a/data"
	echo A2 >"$MNT/a/data"
	echo B >"$MNT/b/data"
	assert_file "$MNT/a/data" 'A2\n'
	assert_file "$MNT/b/data" 'B\n'
	assert_version "$MNT/a" 2
	assert_version "$MNT/b" 1
}

@test "link counts of directories count their subdirectories, as find and ls expect" {
	assert_eq "$(stat -c %h "$MNT")" 4 "an empty root: . .. .txn .commit"
	mkdir "$MNT/a" "$MNT/b"
	assert_eq "$(stat -c %h "$MNT")" 6 "the root with two states"
	assert_eq "$(stat -c %h "$MNT/a")" 3 "a state: . .. every"
	assert_eq "$(stat -c %h "$MNT/a/every")" 2 "every/ with no view in use"
	# A view is in use while a file of it is open (else only for a
	# couple of seconds after its last lookup).
	local f1 f2
	exec {f1}<"$MNT/a/every/1s/data" {f2}<"$MNT/a/every/2s/version"
	assert_eq "$(stat -c %h "$MNT/a/every")" 4 "every/ with two views in use"
	assert_eq "$(stat -c %h "$MNT/a/every/1s")" 2 "a view"
	exec {f1}<&- {f2}<&-
	mkdir "$MNT/.txn/T"
	assert_eq "$(stat -c %h "$MNT/.txn")" 3 ".txn with one T"
	rmdir "$MNT/b" "$MNT/.txn/T"
	assert_eq "$(stat -c %h "$MNT")" 5 "the root after an rmdir"
	assert_eq "$(stat -c %h "$MNT/.txn")" 2 ".txn with no T"
	# Each directory's count is 2 + its subdirectories.
	local dir n
	while IFS= read -r dir; do
		n=$(find "$dir" -mindepth 1 -maxdepth 1 -type d | wc -l)
		assert_eq "$(stat -c %h "$dir")" $((n + 2)) "links of $dir" || return 1
	done < <(find "$MNT" -type d -name every -prune -o -type d -print)
}

@test "directory times: the root's move when states are made, removed or renamed; a state's when transaction files come and go, not at commits" {
	local t0 t1 t2 t3
	mtime() { stat -c %.9Y "$1"; }
	later() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[2]) > float(sys.argv[1]) else 1)' "$1" "$2"; }
	t0=$(mtime "$MNT")
	sleep 0.05
	mkdir "$MNT/a"
	t1=$(mtime "$MNT")
	later "$t0" "$t1" || { echo "mkdir: root mtime $t0 -> $t1"; return 1; }
	sleep 0.05
	mv "$MNT/a" "$MNT/b"
	t2=$(mtime "$MNT")
	later "$t1" "$t2" || { echo "rename: root mtime $t1 -> $t2"; return 1; }
	sleep 0.05
	t0=$(mtime "$MNT/b")
	echo 1 >"$MNT/b/data"
	assert_eq "$(mtime "$MNT/b")" "$t0" "a state's mtime after a commit"
	sleep 0.05
	echo 2 >"$MNT/b/t"
	t1=$(mtime "$MNT/b")
	later "$t0" "$t1" || { echo "a transaction file made: state mtime $t0 -> $t1"; return 1; }
	sleep 0.05
	mv "$MNT/b/t" "$MNT/b/data"
	t2=$(mtime "$MNT/b")
	later "$t1" "$t2" || { echo "a transaction committed: state mtime $t1 -> $t2"; return 1; }
	assert_eq "$(stat -c %.9Z "$MNT/b")" "$t2" "ctime follows mtime"
	sleep 0.05
	t0=$(mtime "$MNT")
	rmdir "$MNT/b"
	t3=$(mtime "$MNT")
	later "$t0" "$t3" || { echo "rmdir: root mtime $t0 -> $t3"; return 1; }
}
