#!/usr/bin/env bats
# SPEC 4 (and 1: "bad input gets a clear errno and changes nothing"): what
# may not be made inside a state, and errors in general.

load helpers

setup() {
	ks_mount
	S=$MNT/s
	mkdir "$S"
	echo v >"$S/data"
}

# unchanged: the state still holds "v\n" at version 1.
unchanged() {
	assert_file "$S/data" 'v\n'
	assert_version "$S" 1
}

@test "a directory inside a state: EPERM" {
	run mkdir "$S/d"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	assert_errno EPERM mkdir "$S/d2"
	[ ! -e "$S/d" ]
	unchanged
}

@test "a symlink inside a state: EPERM" {
	run ln -s data "$S/l"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	assert_errno EPERM symlink data "$S/l2"
	assert_errno EPERM symlink /etc/passwd "$S/l3"
	[ ! -L "$S/l" ]
	unchanged
}

@test "a hard link inside a state: EPERM" {
	echo t >"$S/t"
	run ln "$S/data" "$S/h"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	assert_errno EPERM link "$S/t" "$S/h2"
	assert_errno EPERM link "$S/version" "$S/h3"
	mkdir "$MNT/o"
	assert_errno EPERM link "$S/t" "$MNT/o/h4"
	assert_errno EPERM link "$S/t" "$MNT/o/t"
	[ ! -e "$S/h" ]
	assert_file "$S/t" 't\n'
	unchanged
}

@test "device nodes, fifos and sockets inside a state: EPERM" {
	assert_errno EPERM mknod "$S/c" chr
	assert_errno EPERM mknod "$S/b" blk
	assert_errno EPERM mknod "$S/p" fifo
	assert_errno EPERM mknod "$S/k" sock
	run mkfifo "$S/q"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	run ls "$S"
	refute grep -Eqx 'c|b|p|k|q' <<<"$output"
	unchanged
}

@test "extended attributes: ENOTSUP on data, version, transactions, states" {
	echo t >"$S/t"
	local f
	for f in "$S/data" "$S/version" "$S/t" "$S"; do
		assert_errno ENOTSUP setxattr "$f"
		assert_errno ENOTSUP getxattr "$f"
		assert_errno ENOTSUP listxattr "$f"
		assert_errno ENOTSUP removexattr "$f"
	done
	unchanged
}

@test "data and version cannot be removed: EPERM" {
	assert_errno EPERM unlink "$S/data"
	assert_errno EPERM unlink "$S/version"
	run rm -f "$S/data" "$S/version"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	unchanged
}

@test "data and version cannot be renamed, nothing can be renamed onto version: EPERM" {
	echo t >"$S/t"
	assert_errno EPERM rename "$S/data" "$S/x"
	assert_errno EPERM rename "$S/version" "$S/x"
	assert_errno EPERM rename "$S/data" "$S/t"
	assert_errno EPERM rename "$S/version" "$S/data"
	assert_errno EPERM rename "$S/t" "$S/version"
	assert_errno EPERM rename "$S/data" "$S/version"
	[ ! -e "$S/x" ]
	assert_file "$S/t" 't\n'
	unchanged
}

@test "renaming across states: EPERM (never EXDEV)" {
	mkdir "$MNT/o"
	echo t >"$S/t"
	assert_errno EPERM rename "$S/t" "$MNT/o/t"
	assert_errno EPERM rename "$S/t" "$MNT/o/data"
	assert_errno EPERM rename "$S/data" "$MNT/o/data"
	assert_errno EPERM rename "$S/t" "$MNT/o/version"
	# And mv must not fall back to a copy.
	run mv "$S/t" "$MNT/o/data"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	assert_file "$MNT/o/data" ''
	assert_version "$MNT/o" 0
	assert_file "$S/t" 't\n'
	unchanged
}

@test "RENAME_EXCHANGE anywhere: EINVAL" {
	echo t >"$S/t"
	echo u >"$S/u"
	assert_errno EINVAL exchange "$S/t" "$S/u"
	assert_errno EINVAL exchange "$S/t" "$S/data"
	assert_errno EINVAL exchange "$S/data" "$S/version"
	mkdir "$MNT/o"
	assert_errno EINVAL exchange "$S" "$MNT/o"
	assert_file "$S/t" 't\n'
	assert_file "$S/u" 'u\n'
	unchanged
}

@test "writing version: EACCES" {
	assert_eq "$(ks_errno write "$S/version" w 1)" "open:EACCES"
	assert_eq "$(ks_errno write "$S/version" wt 1)" "open:EACCES"
	assert_eq "$(ks_errno write "$S/version" rw 1)" "open:EACCES"
	unchanged
}

@test "what does not exist: ENOENT" {
	assert_errno ENOENT stat "$MNT/nope"
	assert_errno ENOENT stat "$MNT/nope/data"
	assert_errno ENOENT stat "$S/nope"
	assert_errno ENOENT open "$S/nope" r
	assert_errno ENOENT unlink "$S/nope"
	assert_errno ENOENT rename "$S/nope" "$S/data"
	assert_errno ENOENT rename "$MNT/nope" "$MNT/other"
	assert_errno ENOENT rmdir "$MNT/nope"
	unchanged
}

@test "chmod/chown of data, version, transactions do not change the state" {
	echo t >"$S/t"
	chmod 600 "$S/t" 2>/dev/null || true
	chmod 600 "$S/data" 2>/dev/null || true
	chown 1:1 "$S/version" 2>/dev/null || true
	touch -d '2001-01-01' "$S/data" 2>/dev/null || true
	assert_file "$S/t" 't\n'
	unchanged
}

@test "a barrage of bad input: the daemon stays up and the states stay whole" {
	mkdir "$MNT/o"
	echo o >"$MNT/o/data"
	ks_py "$MNT" <<-'EOF'
		import os, sys, random, ctypes, stat
		mnt = sys.argv[1]
		s, o = mnt + "/s", mnt + "/o"
		rnd = random.Random(1234)
		names = [s + "/data", s + "/version", s + "/t", s + "/u", s,
		         o + "/data", o + "/t", o, mnt + "/.txn", mnt + "/x",
		         mnt + "/.hidden", s + "/" + "n" * 300, mnt + "/" + "m" * 256,
		         s + "/every", mnt, s + "/.", s + "/.."]
		libc = ctypes.CDLL(None, use_errno=True)
		def pick():
		    return rnd.choice(names)
		ops = [
		    lambda: os.mkdir(pick()),
		    lambda: os.rmdir(pick()),
		    lambda: os.unlink(pick()),
		    lambda: os.rename(pick(), pick()),
		    lambda: libc.renameat2(-100, os.fsencode(pick()), -100,
		                           os.fsencode(pick()), rnd.choice([1, 2, 4, 7])),
		    lambda: os.link(pick(), pick()),
		    lambda: os.symlink("x", pick()),
		    lambda: os.mknod(pick(), stat.S_IFIFO | 0o600),
		    lambda: os.truncate(pick(), rnd.choice([-1, 0, 5000, 1 << 40])),
		    lambda: os.setxattr(pick(), "user.x", b"1"),
		    lambda: os.chmod(pick(), 0o7777),
		    lambda: os.utime(pick(), (0, 0)),
		]
		def write_op():
		    fd = os.open(pick(), rnd.choice([os.O_RDONLY, os.O_WRONLY, os.O_RDWR,
		                                     os.O_WRONLY | os.O_APPEND,
		                                     os.O_RDONLY | os.O_TRUNC,
		                                     os.O_RDWR | os.O_DIRECTORY]))
		    try:
		        os.lseek(fd, rnd.choice([0, 4095, 4096, 1 << 30]), 0)
		        os.write(fd, b"z" * rnd.choice([0, 1, 4097, 70000]))
		        os.fsync(fd)
		    finally:
		        os.close(fd)
		ops.append(write_op)
		for i in range(600):
		    try:
		        rnd.choice(ops)()
		    except (OSError, ValueError, OverflowError):
		        pass
	EOF
	# The daemon is alive and answers; every state is whole.
	mountpoint -q "$MNT"
	local st v
	for st in "$MNT"/*; do
		v=$(cat "$st/version")
		[[ "$v" =~ ^[0-9]+$ ]] || { echo "$st/version reads '$v'"; return 1; }
		[ "$(stat -c %s "$st/data")" -le 4096 ]
		cat "$st/data" >/dev/null
	done
	mkdir "$MNT/after"
	echo fine >"$MNT/after/data"
	assert_file "$MNT/after/data" 'fine\n'
}
