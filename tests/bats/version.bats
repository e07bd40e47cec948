#!/usr/bin/env bats
# SPEC 4.2: the version file (reads, writes; poll and inotify have their own
# files).

load helpers

setup() {
	ks_mount
	S=$MNT/s
	mkdir "$S"
}

@test "version reads the number in decimal and a newline; stat size matches" {
	assert_file "$S/version" '0\n'
	assert_eq "$(stat -c %s "$S/version")" 2 "size of version at 0"
	local i
	for i in $(seq 1 10); do echo $i >"$S/data"; done
	assert_file "$S/version" '10\n'
	assert_eq "$(stat -c %s "$S/version")" 3 "size of version at 10"
	assert_eq "$(head -c 2 "$S/version")" 10
}

@test "every kind of commit raises the version by exactly 1" {
	echo a >"$S/data"                                   # O_TRUNC
	assert_version "$S" 1
	echo b >>"$S/data"                                  # append
	assert_version "$S" 2
	printf X | dd of="$S/data" conv=notrunc status=none  # patch
	assert_version "$S" 3
	truncate -s 2 "$S/data"                             # truncate(2)
	assert_version "$S" 4
	echo t >"$S/t" && mv "$S/t" "$S/data"               # transaction
	assert_version "$S" 5
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/data", os.O_RDWR)
		os.pwrite(fd, b"rw", 0)
		os.fsync(fd)
		check(version(s) == 6, "after fsync: %d" % version(s))
		os.close(fd)
		check(version(s) == 6, "close after fsync: %d" % version(s))
		fd = os.open(s + "/data", os.O_RDWR)
		os.pwrite(fd, b"RW", 0)
		os.close(fd)
		check(version(s) == 7, "after O_RDWR close: %d" % version(s))
	EOF
	assert_file "$S/data" 'RW'
}

@test "what commits nothing leaves the version alone" {
	echo a >"$S/data"
	cat "$S/data" >/dev/null                       # a read
	touch "$S/r" && mv "$S/r" "$S/data"            # a read-only transaction
	echo x >"$S/t" && rm "$S/t"                    # an aborted one
	touch "$S/u" && echo y >"$S/v"
	echo z >"$S/data"                              # (+1: now 2)
	mv "$S/v" "$S/data" 2>/dev/null && return 1    # a conflict
	mv "$S/u" "$S/data" 2>/dev/null && return 1    # a read-only conflict
	head -c 5000 /dev/zero >"$S/data" 2>/dev/null || true   # EFBIG
	truncate -s 99999 "$S/data" 2>/dev/null || true         # EFBIG
	assert_version "$S" 2
	assert_file "$S/data" 'z\n'
}

@test "reads of version follow the data rule: offset 0 refreshes" {
	echo 1 >"$S/data"
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/version", os.O_RDONLY)
		check(os.read(fd, 100) == b"1\n", "first read")
		commit(s, "2")
		check(os.read(fd, 100) == b"", "a read at the end is the end")
		check(os.pread(fd, 100, 0) == b"2\n", "pread at 0 refreshes")
		commit(s, "3")
		check(read_at0(fd) == b"3\n", "lseek 0 and read refreshes")
		# A partial read pins: the rest comes from the same version.
		for i in range(4, 13):
		    commit(s, str(i))
		check(read_at0(fd, 1) == b"1", "first byte of 12")
		commit(s, "13")
		check(os.read(fd, 100) == b"2\n", "the rest of 12")
		check(read_at0(fd) == b"13\n", "and 13 from offset 0")
		os.close(fd)
	EOF
}

@test "writing version: EACCES, and nothing changes" {
	echo v >"$S/data"
	run sh -c "echo 5 >'$S/version'"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Permission denied"
	run sh -c "echo 5 >>'$S/version'"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Permission denied"
	assert_eq "$(ks_errno open "$S/version" w)" EACCES "open version O_WRONLY"
	assert_eq "$(ks_errno open "$S/version" rw)" EACCES "open version O_RDWR"
	assert_eq "$(ks_errno open "$S/version" wt)" EACCES "open version O_TRUNC"
	assert_eq "$(ks_errno truncate "$S/version" 0)" EACCES "truncate version"
	assert_version "$S" 1
	assert_file "$S/data" 'v\n'
}

@test "version cannot be removed or renamed, nor replaced: EPERM" {
	assert_errno EPERM unlink "$S/version"
	assert_errno EPERM rename "$S/version" "$S/v2"
	touch "$S/t"
	assert_errno EPERM rename "$S/t" "$S/version"
	assert_errno EPERM rename "$S/data" "$S/version"
	run mv "$S/t" "$S/version"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	[ -f "$S/t" ]
	[ ! -e "$S/v2" ]
	assert_version "$S" 0
}

@test "each state has its own version" {
	mkdir "$MNT/o"
	echo 1 >"$S/data"
	echo 2 >"$S/data"
	echo 1 >"$MNT/o/data"
	assert_version "$S" 2
	assert_version "$MNT/o" 1
}
