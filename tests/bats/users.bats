#!/usr/bin/env bats
# SPEC 3, Users: with -o allow_other,default_permissions, a state's mode
# says who reads and writes it, transactions (NAME/T and .txn/T) belong to
# their creator, and the root's mode says who creates states.  The daemon
# runs as root (the mount owner); the other users are kstest-user (a real
# account, made here if missing, with a supplementary group kstest-share)
# and uid 4242 (no account, no groups).

load helpers

KS_USER=kstest-user
KS_GROUP=kstest-share
STRANGER=4242

setup_file() {
	getent group "$KS_GROUP" >/dev/null || groupadd "$KS_GROUP"
	if ! id "$KS_USER" >/dev/null 2>&1; then
		useradd -M -s /bin/bash -G "$KS_GROUP" "$KS_USER"
	else
		usermod -aG "$KS_GROUP" "$KS_USER"
	fi
}

setup() {
	# bats's own temporary directories are private: the mount goes in a
	# directory every user can reach, and so does the errno tool.
	KS_USERS_DIR=$(mktemp -d /tmp/kstest-users.XXXXXX)
	chmod 755 "$KS_USERS_DIR"
	cp "$KS_TOOLS/kserr.py" "$KS_USERS_DIR/"
	KS_MNT=$KS_USERS_DIR/mnt
	# The first python3 on root's PATH may be under /root, which the
	# other users cannot reach.
	local p
	KS_USERS_PY=
	for p in $(type -ap python3) /usr/bin/python3; do
		if as_stranger "$p" -c '' 2>/dev/null; then
			KS_USERS_PY=$p
			break
		fi
	done
	[ -n "$KS_USERS_PY" ] || { echo "no python3 other users can run"; return 1; }
}

teardown() {
	ks_teardown
	local st=$?
	rmdir "$KS_MNT" 2>/dev/null
	rm -f "$KS_USERS_DIR/kserr.py"
	rmdir "$KS_USERS_DIR"
	return $st
}

mount_shared() {
	ks_mount -o allow_other,default_permissions "$@"
}

# as_user CMD...: CMD as kstest-user, with its groups (kstest-share too).
as_user() {
	runuser -u "$KS_USER" -- "$@"
}

# as_stranger CMD...: CMD as uid and gid 4242, no supplementary groups.
as_stranger() {
	setpriv --reuid="$STRANGER" --regid="$STRANGER" --clear-groups -- "$@"
}

# user_errno / stranger_errno OP ARGS...: one call (kserr.py) as that user.
user_errno() {
	as_user timeout 30 "$KS_USERS_PY" "$KS_USERS_DIR/kserr.py" "$@"
}

stranger_errno() {
	as_stranger timeout 30 "$KS_USERS_PY" "$KS_USERS_DIR/kserr.py" "$@"
}

# expect WANT GOT WHAT: GOT is one of the words in WANT (EPERM|EACCES).
expect() {
	if [[ "|$1|" != *"|$2|"* ]]; then
		printf '%s\n  expected: %s\n       got: %s\n' "$3" "$1" "$2"
		return 1
	fi
}

user_uid() { id -u "$KS_USER"; }
user_gid() { id -g "$KS_USER"; }

# A state of kstest-user's, made by root and given away.
user_state() {
	mkdir -m "${2:-755}" "$MNT/$1"
	chown "$KS_USER:$KS_USER" "$MNT/$1"
}

@test "a private state (700) is closed to others; 755 is readable, not writable" {
	mount_shared
	mkdir -m 700 "$MNT/p"
	echo secret >"$MNT/p/data"
	assert_eq "$(user_errno open "$MNT/p/data" r)" EACCES "reading a 700 state"
	assert_eq "$(user_errno stat "$MNT/p/data")" EACCES "stat inside a 700 state"
	run as_user ls "$MNT/p"
	[ "$status" -ne 0 ] || { echo "listed a 700 state: $output"; return 1; }

	mkdir -m 755 "$MNT/r"
	echo public >"$MNT/r/data"
	assert_eq "$(stat -c %a "$MNT/r/data")" 644 "data: the state's rw bits"
	assert_eq "$(stat -c %a "$MNT/r/version")" 444 "version: its r bits"
	run as_user cat "$MNT/r/data"
	assert_eq "$status" 0 "reading a 755 state: $output"
	assert_eq "$output" public
	assert_eq "$(user_errno open "$MNT/r/data" w)" EACCES "writing data of a 755 state"
	assert_eq "$(user_errno create "$MNT/r/t")" EACCES "a transaction in a 755 state"
	assert_eq "$(user_errno truncate "$MNT/r/data" 0)" EACCES "truncate of a 755 state"
	expect "EPERM" "$(user_errno chmod "$MNT/r" 777)" "chmod of root's state"
	expect "EPERM" "$(user_errno chown "$MNT/r" "$(user_uid)" "$(user_gid)")" \
		"taking root's state"
	assert_file "$MNT/r/data" 'public\n'
	assert_version "$MNT/r" 1
	assert_eq "$(stat -c '%a %u' "$MNT/r")" "755 0" "mode and owner unchanged"

	chmod 750 "$MNT/r"
	assert_eq "$(stat -c %a "$MNT/r/data")" 640 "data follows chmod"
	assert_eq "$(stat -c %a "$MNT/r/version")" 440 "version follows chmod"
	assert_eq "$(user_errno open "$MNT/r/data" r)" EACCES "750, not in the group"
}

@test "allow_other alone (the fstab line of SPEC 2) checks modes too: it implies default_permissions" {
	ks_mount -o allow_other
	grep " $MNT " /proc/mounts | grep -q default_permissions ||
		{ echo "mount options: $(grep " $MNT " /proc/mounts)"; return 1; }
	mkdir -m 700 "$MNT/p"
	echo secret >"$MNT/p/data"
	assert_eq "$(user_errno open "$MNT/p/data" r)" EACCES "reading a 700 state"
	mkdir -m 755 "$MNT/r"
	assert_eq "$(user_errno open "$MNT/r/data" w)" EACCES "writing data of a 755 state"
	expect "EPERM|EACCES" "$(user_errno rename "$MNT/p" "$MNT/q")" "renaming root's state"
	expect "EPERM|EACCES" "$(user_errno rmdir "$MNT/p")" "removing root's state"
	expect "EPERM|EACCES" "$(user_errno mkdir "$MNT/u")" "a state in a 755 root"
	assert_file "$MNT/p/data" 'secret\n'
	run as_user cat "$MNT/r/data"
	assert_eq "$status" 0 "reading a 755 state: $output"
}

@test ".events: each user sees the commits of the states whose version they may read" {
	local out=$KS_USERS_DIR/ev
	mount_shared
	mkdir -m 700 "$MNT/private"
	mkdir -m 750 "$MNT/team"
	chgrp "$KS_GROUP" "$MNT/team"
	mkdir -m 755 "$MNT/public"
	# (ks_bg runs commands, not functions: as_user and as_stranger
	# spelled out.)
	ks_bg runuser -u "$KS_USER" -- cat "$MNT/.events" >"$out.user"
	ks_bg setpriv --reuid="$STRANGER" --regid="$STRANGER" --clear-groups \
		-- cat "$MNT/.events" >"$out.stranger"
	ks_bg cat "$MNT/.events" >"$out.root"
	# All three have opened it before the first commit.
	wait_for 20 grep -qx "event_readers 3" "$MNT/.stats" ||
		{ cat "$MNT/.stats"; return 1; }
	echo a >"$MNT/private/data"
	echo b >"$MNT/team/data"
	echo c >"$MNT/public/data"
	mkdir "$MNT/last"
	wait_for 20 grep -q "create last" "$out.user"
	wait_for 20 grep -q "create last" "$out.stranger"
	wait_for 20 grep -q "create last" "$out.root"
	assert_eq "$(cat "$out.root")" "$(printf 'commit private 1\ncommit team 1\ncommit public 1\ncreate last')" "root's lines"
	assert_eq "$(cat "$out.user")" "$(printf 'commit team 1\ncommit public 1\ncreate last')" "a member of the group's lines"
	assert_eq "$(cat "$out.stranger")" "$(printf 'commit public 1\ncreate last')" "a stranger's lines"
	ks_kill_bg || true
	rm -f "$out".*
}

@test "775 with a group: its members write and begin transactions, others only read" {
	mount_shared
	mkdir -m 775 "$MNT/g"
	chgrp "$KS_GROUP" "$MNT/g"
	echo 1 >"$MNT/g/data"
	run as_user sh -c "echo 2 >'$MNT/g/data'"
	assert_eq "$status" 0 "a member writing data: $output"
	run as_user sh -c "cd '$MNT/g' && echo 3 >t && mv t data"
	assert_eq "$status" 0 "a member committing a transaction: $output"
	assert_file "$MNT/g/data" '3\n'
	assert_version "$MNT/g" 3

	assert_eq "$(stranger_errno open "$MNT/g/data" r)" OK "others read a 775 state"
	assert_eq "$(stranger_errno open "$MNT/g/data" w)" EACCES "others write it"
	assert_eq "$(stranger_errno create "$MNT/g/u")" EACCES "others begin transactions"
	assert_version "$MNT/g" 3

	# The owner may give the state to a group of their own, not another's.
	user_state mine 775
	run as_user chgrp "$KS_GROUP" "$MNT/mine"
	assert_eq "$status" 0 "chgrp to the user's own group: $output"
	assert_eq "$(stat -c %G "$MNT/mine")" "$KS_GROUP"
	expect "EPERM" "$(user_errno chown "$MNT/mine" -1 0)" "chgrp to a group not the user's"
	assert_eq "$(stat -c %G "$MNT/mine")" "$KS_GROUP"
}

@test "the user's own transaction file: theirs, committed with mv, aborted with rm" {
	mount_shared
	user_state s
	echo 0 >"$MNT/s/data"
	run as_user sh -c "cd '$MNT/s' && echo 1 >t"
	assert_eq "$status" 0 "beginning a transaction: $output"
	assert_eq "$(stat -c %u "$MNT/s/t")" "$(user_uid)" "the transaction's owner"
	run as_user mv "$MNT/s/t" "$MNT/s/data"
	assert_eq "$status" 0 "committing: $output"
	assert_file "$MNT/s/data" '1\n'
	assert_version "$MNT/s" 2

	run as_user sh -c "cd '$MNT/s' && echo 2 >t && mv t u && rm u"
	assert_eq "$status" 0 "renaming and aborting: $output"
	run ls "$MNT/s"
	assert_eq "$output" "$(printf 'data\nevery\nversion')"
	assert_version "$MNT/s" 2
}

@test "another user's transaction file: not written, committed, renamed or aborted" {
	mount_shared
	# A state both may write, in a directory with no sticky bit: only the
	# daemon stands between the stranger and the user's transaction.
	mkdir -m 777 "$MNT/s"
	echo 0 >"$MNT/s/data"
	run as_user sh -c "umask 000 && cd '$MNT/s' && echo mine >t"
	assert_eq "$status" 0 "the user's transaction: $output"

	expect "EACCES|EPERM" "$(stranger_errno open "$MNT/s/t" w)" "writing it"
	expect "EACCES|EPERM" "$(stranger_errno truncate "$MNT/s/t" 0)" "truncating it"
	expect "EACCES|EPERM" "$(stranger_errno rename "$MNT/s/t" "$MNT/s/data")" "committing it"
	expect "EACCES|EPERM" "$(stranger_errno rename "$MNT/s/t" "$MNT/s/u")" "renaming it"
	expect "EACCES|EPERM" "$(stranger_errno unlink "$MNT/s/t")" "aborting it"
	expect "EPERM" "$(stranger_errno chmod "$MNT/s/t" 666)" "chmod of it"
	expect "EPERM" "$(user_errno chown "$MNT/s/t" -1 0)" "the owner giving it to root's group"
	# Nor replaced by the stranger's own.
	run as_stranger sh -c "cd '$MNT/s' && echo theirs >x"
	assert_eq "$status" 0 "the stranger's transaction: $output"
	expect "EACCES|EPERM" "$(stranger_errno rename "$MNT/s/x" "$MNT/s/t")" "replacing it"
	expect "EACCES|EPERM" "$(user_errno rename "$MNT/s/x" "$MNT/s/y")" \
		"the user renaming the stranger's"

	assert_file "$MNT/s/t" 'mine\n'
	assert_file "$MNT/s/data" '0\n'
	assert_version "$MNT/s" 1
	run as_user mv "$MNT/s/t" "$MNT/s/data"
	assert_eq "$status" 0 "the owner still commits: $output"
	assert_file "$MNT/s/data" 'mine\n'
	# Root may abort anyone's.
	rm "$MNT/s/x"
}

@test ".txn/T of a user: theirs, committed with mv .txn/T .commit/, aborted with rm -r" {
	mount_shared
	user_state a
	user_state b
	echo A >"$MNT/a/data"
	echo B >"$MNT/b/data"
	run as_user mkdir "$MNT/.txn/T"
	assert_eq "$status" 0 "mkdir .txn/T: $output"
	assert_eq "$(stat -c '%u %a' "$MNT/.txn/T")" "$(user_uid) 700" ".txn/T's owner and mode"
	run as_user sh -c "echo A2 >'$MNT/.txn/T/a' && echo B2 >'$MNT/.txn/T/b'"
	assert_eq "$status" 0 "writing members: $output"
	assert_eq "$(stat -c %u "$MNT/.txn/T/a")" "$(user_uid)" "a member's owner"
	run as_user mv "$MNT/.txn/T" "$MNT/.commit/"
	assert_eq "$status" 0 "committing .txn/T: $output"
	assert_file "$MNT/a/data" 'A2\n'
	assert_file "$MNT/b/data" 'B2\n'

	run as_user sh -c "mkdir '$MNT/.txn/U' && echo A3 >'$MNT/.txn/U/a' && rm -r '$MNT/.txn/U'"
	assert_eq "$status" 0 "aborting .txn/U: $output"
	run ls -A "$MNT/.txn"
	assert_eq "$output" "" ".txn after the abort"
	assert_file "$MNT/a/data" 'A2\n'
	assert_version "$MNT/a" 2
}

@test "another user's .txn/T: not entered, committed or aborted" {
	mount_shared
	mkdir -m 777 "$MNT/a"
	echo A >"$MNT/a/data"
	run as_user sh -c "mkdir '$MNT/.txn/T' && echo A2 >'$MNT/.txn/T/a'"
	assert_eq "$status" 0 "the user's .txn/T: $output"

	run as_stranger ls "$MNT/.txn/T"
	[ "$status" -ne 0 ] || { echo "the stranger listed .txn/T: $output"; return 1; }
	expect "EACCES" "$(stranger_errno open "$MNT/.txn/T/a" r)" "reading a member"
	expect "EACCES" "$(stranger_errno open "$MNT/.txn/T/a" w)" "writing a member"
	expect "EACCES|EPERM" "$(stranger_errno unlink "$MNT/.txn/T/a")" "leaving a member"
	expect "EACCES|EPERM" "$(stranger_errno rename "$MNT/.txn/T" "$MNT/.commit/T")" "committing it"
	expect "EACCES|EPERM|ENOTEMPTY" "$(stranger_errno rmdir "$MNT/.txn/T")" "aborting it"
	run as_stranger rm -rf "$MNT/.txn/T"
	[ -d "$MNT/.txn/T" ] || { echo "the stranger removed .txn/T"; return 1; }

	assert_file "$MNT/a/data" 'A\n'
	assert_version "$MNT/a" 1
	run as_user mv "$MNT/.txn/T" "$MNT/.commit/"
	assert_eq "$status" 0 "the owner still commits: $output"
	assert_file "$MNT/a/data" 'A2\n'
}

@test ".txn/T members follow the state's mode" {
	mount_shared
	mkdir -m 700 "$MNT/private"
	mkdir -m 755 "$MNT/readable"
	mkdir -m 775 "$MNT/group"
	chgrp "$KS_GROUP" "$MNT/group"
	echo P >"$MNT/private/data"
	echo R >"$MNT/readable/data"
	run as_user mkdir "$MNT/.txn/T"
	assert_eq "$status" 0 "mkdir .txn/T: $output"
	assert_eq "$(user_errno open "$MNT/.txn/T/private" r)" EACCES "joining a 700 state"
	assert_eq "$(user_errno open "$MNT/.txn/T/readable" r)" OK "reading a 755 state"
	assert_eq "$(user_errno open "$MNT/.txn/T/readable" w)" EACCES "writing a 755 state"
	assert_eq "$(user_errno truncate "$MNT/.txn/T/readable" 0)" EACCES "truncating a 755 state"
	assert_eq "$(user_errno open "$MNT/.txn/T/group" w)" OK "writing a group state"
	run as_user sh -c "echo G >'$MNT/.txn/T/group' && mv '$MNT/.txn/T' '$MNT/.commit/'"
	assert_eq "$status" 0 "committing: $output"
	assert_file "$MNT/group/data" 'G\n'
	assert_file "$MNT/readable/data" 'R\n'
	assert_file "$MNT/private/data" 'P\n'
}

@test "chmod 1777 of the root lets users create states of their own" {
	mount_shared
	assert_eq "$(stat -c '%a %u %g' "$MNT")" "755 0 0" "the root: the mount owner's"
	assert_eq "$(user_errno mkdir "$MNT/u")" EACCES "mkdir in a 755 root"
	expect "EPERM" "$(user_errno chmod "$MNT" 1777)" "a user's chmod of the root"
	expect "EPERM" "$(user_errno chown "$MNT" "$(user_uid)" "$(user_gid)")" "taking the root"
	chmod 1777 "$MNT"
	assert_eq "$(stat -c %a "$MNT")" 1777 "the root after chmod"

	run as_user sh -c "umask 077 && mkdir '$MNT/u'"
	assert_eq "$status" 0 "a user's mkdir: $output"
	assert_eq "$(stat -c '%u %g %a' "$MNT/u")" "$(user_uid) $(user_gid) 700" "the user's state"
	run as_user sh -c "echo mine >'$MNT/u/data' && chmod 750 '$MNT/u'"
	assert_eq "$status" 0 "the user writes and chmods their state: $output"
	assert_eq "$(stranger_errno open "$MNT/u/data" r)" EACCES "the stranger reading it"
	# The sticky bit: nobody else removes or renames it.
	expect "EACCES|EPERM" "$(stranger_errno rmdir "$MNT/u")" "the stranger's rmdir"
	expect "EACCES|EPERM" "$(stranger_errno rename "$MNT/u" "$MNT/v")" "the stranger's mv"
	[ -d "$MNT/u" ] || { echo "the state is gone"; return 1; }
	run as_user sh -c "mv '$MNT/u' '$MNT/w' && rmdir '$MNT/w'"
	assert_eq "$status" 0 "the owner renames and removes it: $output"
	chmod 755 "$MNT"
	assert_eq "$(user_errno mkdir "$MNT/u2")" EACCES "mkdir after chmod 755"
}

@test "-o root_mode=1777 at mount" {
	mount_shared -o root_mode=1777
	assert_eq "$(stat -c '%a %u' "$MNT")" "1777 0" "the root's mode"
	run as_user mkdir "$MNT/u"
	assert_eq "$status" 0 "a user's mkdir: $output"
	assert_eq "$(stat -c %u "$MNT/u")" "$(user_uid)"
	ks_unmount
	run "$KSTATEFS" -f -o root_mode=99999 "$MNT"
	assert_eq "$status" 1 "a bad root_mode is a usage error: $output"
	assert_contains "$output" "root_mode"
}

@test "without allow_other the mount is invisible to other users" {
	ks_mount
	mkdir -m 777 "$MNT/s"
	assert_eq "$(user_errno stat "$MNT")" EACCES "stat of the mount"
	assert_eq "$(user_errno stat "$MNT/s")" EACCES "stat of a 777 state"
	run as_user ls "$MNT"
	[ "$status" -ne 0 ] || { echo "the user listed the mount: $output"; return 1; }
}
