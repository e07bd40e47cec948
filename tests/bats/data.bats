#!/usr/bin/env bats
# SPEC 4.1: the data file.

load helpers

setup() {
	ks_mount
	S=$MNT/s
	mkdir "$S"
}

@test "a new state: data is empty, version 0" {
	assert_file "$S/data" ''
	assert_eq "$(stat -c %s "$S/data")" 0 "size of data"
	assert_version "$S" 0
}

@test "echo > data: the state becomes exactly the bytes written, version +1" {
	echo 42 >"$S/data"
	assert_file "$S/data" '42\n'
	assert_version "$S" 1
	printf 'a much longer page than before' >"$S/data"
	echo hi >"$S/data"
	assert_file "$S/data" 'hi\n'
	assert_version "$S" 3
}

@test ": > data commits an empty page" {
	echo full >"$S/data"
	: >"$S/data"
	assert_file "$S/data" ''
	assert_version "$S" 2
}

@test "binary pages: every byte value, NULs included" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		page = bytes(range(256)) * 16
		fd = os.open(s + "/data", os.O_WRONLY | os.O_TRUNC)
		os.write(fd, page)
		os.close(fd)
		check(data(s) == page, "page read back differs")
		check(version(s) == 1, "version %d" % version(s))
	EOF
}

@test ">> appends to the latest version" {
	echo a >"$S/data"
	echo b >>"$S/data"
	echo c >>"$S/data"
	assert_file "$S/data" 'a\nb\nc\n'
	assert_version "$S" 3
}

@test "dd conv=notrunc patches the written range, keeps the rest" {
	printf 'abcdefgh' >"$S/data"
	printf 'XY' | dd of="$S/data" bs=1 seek=2 conv=notrunc status=none
	assert_file "$S/data" 'abXYefgh'
	assert_version "$S" 2
	# Past the end: the page grows, the gap is zeros.
	printf 'Z' | dd of="$S/data" bs=1 seek=10 conv=notrunc status=none
	assert_file "$S/data" 'abXYefgh\0\0Z'
	assert_version "$S" 3
}

@test "write-only without O_TRUNC: the ranges apply to the version current at close" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "abcdefgh")
		fd = os.open(s + "/data", os.O_WRONLY)
		os.pwrite(fd, b"XY", 2)
		commit(s, "ABCDEFGHIJ")           # another process, before the close
		check(data(s) == b"ABCDEFGHIJ", "the open patch is visible early")
		os.close(fd)                      # never conflicts
		check(data(s) == b"ABXYEFGHIJ", "patched page is %r" % data(s))
		check(version(s) == 3, "version %d, expected 3" % version(s))
	EOF
}

@test "O_TRUNC writes never conflict" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "first")
		fd = os.open(s + "/data", os.O_WRONLY | os.O_TRUNC)
		os.write(fd, b"mine")
		commit(s, "theirs")
		os.close(fd)
		check(data(s) == b"mine", "page is %r" % data(s))
		check(version(s) == 3, "version %d, expected 3" % version(s))
	EOF
}

@test "O_RDWR: reads its own copy taken at open and commits at close" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "hello")
		fd = os.open(s + "/data", os.O_RDWR)
		check(os.read(fd, 100) == b"hello", "read-write open reads the page")
		os.pwrite(fd, b"J", 0)
		check(os.pread(fd, 100, 0) == b"Jello", "it reads its own write")
		check(data(s) == b"hello", "others do not see it before the close")
		os.close(fd)
		check(data(s) == b"Jello", "page is %r" % data(s))
		check(version(s) == 2, "version %d, expected 2" % version(s))
	EOF
}

@test "O_RDWR: close fails with EAGAIN if another commit came first, and changes nothing" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "base")
		fd = os.open(s + "/data", os.O_RDWR)
		commit(s, "other")
		check(os.pread(fd, 100, 0) == b"base", "the copy was taken at open")
		os.pwrite(fd, b"mine", 0)
		expect_oserror(errno.EAGAIN, os.close, fd)
		check(data(s) == b"other", "page is %r" % data(s))
		check(version(s) == 2, "version %d, expected 2" % version(s))
	EOF
}

@test "O_RDWR: increments from 4 processes at once, with retry on EAGAIN, all land" {
	KS_PY_TIMEOUT=600 ks_py "$S" <<-'EOF'
		s, n, procs = sys.argv[1], 100, 4
		pids = []
		for _ in range(procs):
		    pid = os.fork()
		    if pid == 0:
		        code = 0
		        try:
		            for _ in range(n):
		                while True:
		                    fd = os.open(s + "/data", os.O_RDWR)
		                    v = int(os.pread(fd, 64, 0) or b"0")
		                    os.pwrite(fd, b"%d" % (v + 1), 0)
		                    try:
		                        os.close(fd)
		                        break
		                    except OSError as e:
		                        if e.errno != errno.EAGAIN:
		                            raise
		        except BaseException as e:
		            sys.stderr.write("child: %r\n" % e)
		            code = 1
		        os._exit(code)
		    pids.append(pid)
		for pid in pids:
		    _, st = os.waitpid(pid, 0)
		    check(st == 0, "a child failed")
		check(data(s) == b"%d" % (n * procs), "counter is %r" % data(s))
		check(version(s) == n * procs, "version %d" % version(s))
	EOF
}

@test "fsync commits; the open file goes on as a new transaction" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/data", os.O_WRONLY | os.O_TRUNC)
		os.write(fd, b"one")
		check(data(s) == b"", "visible before fsync")
		os.fsync(fd)
		check(sh('cat "$1/data"', s) == b"one", "fsync did not commit")
		check(version(s) == 1, "version after fsync %d" % version(s))
		os.write(fd, b"two")
		check(data(s) == b"one", "the write after fsync is visible early")
		os.close(fd)
		check(data(s) == b"onetwo", "page is %r" % data(s))
		check(version(s) == 2, "version after close %d" % version(s))
	EOF
}

@test "fsync then close with no more writes commits nothing more" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/data", os.O_WRONLY | os.O_TRUNC)
		os.write(fd, b"x")
		os.fsync(fd)
		os.fsync(fd)
		os.close(fd)
		check(data(s) == b"x", "page is %r" % data(s))
		check(version(s) == 1, "version %d, expected 1" % version(s))
	EOF
}

@test "O_RDWR with fsync: the next transaction is based on the fsynced version" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "0000")
		fd = os.open(s + "/data", os.O_RDWR)
		os.pwrite(fd, b"1", 0)
		os.fsync(fd)
		check(data(s) == b"1000" and version(s) == 2, "first fsync")
		os.pwrite(fd, b"2", 1)
		os.fsync(fd)
		check(data(s) == b"1200" and version(s) == 3, "second fsync")
		commit(s, "other")
		os.pwrite(fd, b"3", 2)
		expect_oserror(errno.EAGAIN, os.close, fd)
		check(data(s) == b"other", "page is %r" % data(s))
		check(version(s) == 4, "version %d, expected 4" % version(s))
	EOF
}

@test "O_RDWR: fsync fails with EAGAIN after a competing commit" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "base")
		fd = os.open(s + "/data", os.O_RDWR)
		os.pwrite(fd, b"mine", 0)
		commit(s, "other")
		expect_oserror(errno.EAGAIN, os.fsync, fd)
		check(data(s) == b"other", "page is %r" % data(s))
		check(version(s) == 2, "version %d, expected 2" % version(s))
		os.close(fd)    # the failed fsync discarded the writes
		check(data(s) == b"other", "page after close is %r" % data(s))
		check(version(s) == 2, "version after close %d" % version(s))
	EOF
}

@test "O_RDWR: after a failed fsync the file goes on from the latest version" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "base")
		fd = os.open(s + "/data", os.O_RDWR)
		os.pwrite(fd, b"mine", 0)
		commit(s, "newer")
		expect_oserror(errno.EAGAIN, os.fsync, fd)
		# The writes are gone and the next pread sees the newer page.
		check(os.pread(fd, 100, 0) == b"newer",
		      "pread after EAGAIN: %r" % os.pread(fd, 100, 0))
		os.fsync(fd)    # nothing written since: commits nothing
		check(version(s) == 2, "version %d, expected 2" % version(s))
		# Now based on version 2: the next compare-and-swap succeeds.
		os.pwrite(fd, b"N", 0)
		os.fsync(fd)
		check(data(s) == b"Newer" and version(s) == 3,
		      "after the retry: %r, version %d" % (data(s), version(s)))
		# Another conflict, then close: nothing more is committed.
		os.pwrite(fd, b"X", 0)
		commit(s, "third")
		expect_oserror(errno.EAGAIN, os.fsync, fd)
		os.close(fd)
		check(data(s) == b"third" and version(s) == 4,
		      "after close: %r, version %d" % (data(s), version(s)))
	EOF
}

@test "O_RDWR: after a failed fsync, a write then close commits on the newer version" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "0000")
		fd = os.open(s + "/data", os.O_RDWR)
		os.pwrite(fd, b"1", 0)
		commit(s, "2222")
		expect_oserror(errno.EAGAIN, os.fsync, fd)
		os.pwrite(fd, b"3", 3)
		os.close(fd)
		check(data(s) == b"2223" and version(s) == 3,
		      "page %r, version %d" % (data(s), version(s)))
	EOF
}

@test "O_RDWR: a child's close that fails to commit the parent's writes fails the parent's next fsync, never answers 0" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "base")
		fd = os.open(s + "/data", os.O_RDWR)
		os.pwrite(fd, b"mine", 0)
		commit(s, "newer")
		pid = os.fork()
		if pid == 0:
		    os._exit(0)    # its copy of fd closes: a commit, which conflicts
		os.waitpid(pid, 0)
		# The writes went with the child's close; the parent must hear of
		# it, not get 0 for an update that never happened.
		expect_oserror(errno.EAGAIN, os.fsync, fd)
		check(data(s) == b"newer" and version(s) == 2,
		      "page %r, version %d" % (data(s), version(s)))
		# Owed once: the loop goes on from the latest version.
		os.pwrite(fd, b"N", 0)
		os.fsync(fd)
		check(data(s) == b"Newer" and version(s) == 3,
		      "after the retry: %r, version %d" % (data(s), version(s)))
		os.close(fd)
	EOF
}

@test "O_RDWR: two processes in a pread, pwrite, fsync loop on one handle each both finish, every increment lands" {
	KS_PY_TIMEOUT=600 ks_py "$S" <<-'EOF'
		s, n, procs = sys.argv[1], 300, 2
		commit(s, "0")
		pids = []
		for _ in range(procs):
		    pid = os.fork()
		    if pid == 0:
		        code = 0
		        try:
		            fd = os.open(s + "/data", os.O_RDWR)
		            done = tries = 0
		            while done < n:
		                tries += 1
		                if tries > 100 * n:
		                    raise RuntimeError("no progress: %d of %d" % (done, n))
		                v = int(os.pread(fd, 64, 0) or b"0")
		                os.ftruncate(fd, 0)
		                os.pwrite(fd, b"%d" % (v + 1), 0)
		                try:
		                    os.fsync(fd)
		                    done += 1
		                except OSError as e:
		                    if e.errno != errno.EAGAIN:
		                        raise
		            os.close(fd)
		        except BaseException as e:
		            sys.stderr.write("child: %r\n" % e)
		            code = 1
		        os._exit(code)
		    pids.append(pid)
		for pid in pids:
		    _, st = os.waitpid(pid, 0)
		    check(st == 0, "a child failed")
		check(data(s) == b"%d" % (n * procs), "counter is %r" % data(s))
		check(version(s) == 1 + n * procs, "version %d" % version(s))
	EOF
}

@test "O_RDWR: after a failed fsync the writes are discarded; the file goes on based on the latest version" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "base")
		fd = os.open(s + "/data", os.O_RDWR)
		os.pwrite(fd, b"mine", 0)
		commit(s, "other")
		expect_oserror(errno.EAGAIN, os.fsync, fd)
		check(os.pread(fd, 100, 0) == b"other", "the copy after the failed fsync is %r" % os.pread(fd, 100, 0))
		os.fsync(fd)            # nothing written since: commits nothing
		check(version(s) == 2, "version %d, expected 2" % version(s))
		os.pwrite(fd, b"X", 0)
		os.close(fd)
		check(data(s) == b"Xther", "page is %r" % data(s))
		check(version(s) == 3, "version %d, expected 3" % version(s))
	EOF
}

@test "EFBIG: a write past max_size fails; close returns the error; nothing commits" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		commit(s, "keep")
		for flags in (os.O_WRONLY | os.O_TRUNC, os.O_WRONLY, os.O_RDWR):
		    fd = os.open(s + "/data", flags)
		    os.pwrite(fd, b"ok", 0)
		    expect_oserror(errno.EFBIG, os.pwrite, fd, b"x" * 4097, 0)
		    os.pwrite(fd, b"more", 0)        # later writes do not heal it
		    expect_oserror(errno.EFBIG, os.close, fd)
		    check(data(s) == b"keep", "page is %r (flags %o)" % (data(s), flags))
		    check(version(s) == 1, "version %d (flags %o)" % (version(s), flags))
	EOF
}

@test "a failed echo big > data never empties the state" {
	echo keep >"$S/data"
	run sh -c "head -c 5000 /dev/zero >'$S/data'"
	[ "$status" -ne 0 ] || { echo "writing 5000 bytes succeeded"; return 1; }
	assert_contains "$output" "File too large"
	assert_file "$S/data" 'keep\n'
	assert_version "$S" 1
	run sh -c "printf '%5000s' x >'$S/data'"
	[ "$status" -ne 0 ]
	assert_file "$S/data" 'keep\n'
	assert_version "$S" 1
}

@test "EFBIG: a write at an offset past max_size" {
	echo keep >"$S/data"
	run dd if=/dev/zero of="$S/data" bs=1 count=1 seek=4096 conv=notrunc status=none
	[ "$status" -ne 0 ]
	assert_contains "$output" "File too large"
	assert_eq "$(ks_errno write "$S/data" w 1 4096)" "write:EFBIG close:EFBIG"
	assert_file "$S/data" 'keep\n'
	assert_version "$S" 1
}

@test "exactly max_size bytes fit (default 4096)" {
	head -c 4096 /dev/urandom >"$BATS_TEST_TMPDIR/page"
	cp "$BATS_TEST_TMPDIR/page" "$S/data"
	cmp "$BATS_TEST_TMPDIR/page" "$S/data"
	assert_eq "$(stat -c %s "$S/data")" 4096
	assert_version "$S" 1
}

@test "-o max_size sets the largest page" {
	ks_unmount
	ks_mount -o max_size=100
	mkdir "$MNT/s"
	assert_eq "$(ks_errno write "$MNT/s/data" wt 100)" OK
	assert_eq "$(ks_errno write "$MNT/s/data" wt 101)" "write:EFBIG close:EFBIG"
	assert_eq "$(stat -c %s "$MNT/s/data")" 100
	assert_version "$MNT/s" 1
	ks_unmount
	ks_mount -o max_size=200000
	mkdir "$MNT/s"
	head -c 200000 /dev/urandom >"$BATS_TEST_TMPDIR/page"
	cp "$BATS_TEST_TMPDIR/page" "$MNT/s/data"
	cmp "$BATS_TEST_TMPDIR/page" "$MNT/s/data"
	assert_eq "$(ks_errno write "$MNT/s/data" wt 200001)" "write:EFBIG close:EFBIG"
	cmp "$BATS_TEST_TMPDIR/page" "$MNT/s/data"
}

@test "truncate(2) on the path commits at once" {
	printf 'abcdef' >"$S/data"
	truncate -s 3 "$S/data"
	assert_file "$S/data" 'abc'
	assert_version "$S" 2
	truncate -s 5 "$S/data"
	assert_file "$S/data" 'abc\0\0'
	assert_version "$S" 3
	truncate -s 0 "$S/data"
	assert_file "$S/data" ''
	assert_version "$S" 4
}

@test "truncate(2) past max_size: EFBIG, nothing changes" {
	echo keep >"$S/data"
	run truncate -s 5000 "$S/data"
	[ "$status" -ne 0 ]
	assert_contains "$output" "File too large"
	assert_errno EFBIG truncate "$S/data" 4097
	assert_file "$S/data" 'keep\n'
	assert_version "$S" 1
}

@test "stat gives the size of the latest version" {
	local n
	for n in 10 3000 0 4096 1; do
		head -c "$n" /dev/zero >"$S/data"
		assert_eq "$(stat -c %s "$S/data")" "$n" "size after writing $n bytes"
		assert_eq "$(wc -c <"$S/data")" "$n" "bytes read after writing $n"
	done
}

@test "stat gives the time of the latest commit; reads do not change it" {
	local t0 t1 t2 now
	echo 1 >"$S/data"
	t1=$(stat -c %Y "$S/data")
	now=$(date +%s)
	[ $((now - t1)) -le 5 ] && [ $((t1 - now)) -le 5 ] || {
		echo "mtime $t1 is not about now ($now)"
		return 1
	}
	sleep 1.2
	cat "$S/data" >/dev/null
	touch "$S/t" && rm "$S/t"
	assert_eq "$(stat -c %Y "$S/data")" "$t1" "mtime after reads"
	echo 2 >"$S/data"
	t2=$(stat -c %Y "$S/data")
	[ "$t2" -gt "$t1" ] || { echo "mtime did not move: $t1 then $t2"; return 1; }
}

@test "a read at offset 0 pins a version for the rest of the open file" {
	ks_unmount
	ks_mount -o max_size=65536
	mkdir "$S"
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		sh('head -c 50000 /dev/zero | tr "\\0" a > "$1/data"', s)
		fd = os.open(s + "/data", os.O_RDONLY)
		first = os.read(fd, 100)
		check(first == b"a" * 100, "first read %r" % first[:20])
		sh('head -c 30000 /dev/zero | tr "\\0" b > "$1/data"', s)
		rest = b""
		while True:
		    chunk = os.read(fd, 7000)
		    if not chunk:
		        break
		    rest += chunk
		whole = first + rest
		check(whole == b"a" * 50000,
		      "the open file mixed versions: %d bytes, %d a, %d b" %
		      (len(whole), whole.count(b"a"), whole.count(b"b")))
		again = os.pread(fd, 65536, 0)
		check(again == b"b" * 30000, "pread at 0 did not refresh: %d bytes, %r..." %
		      (len(again), again[:10]))
		os.close(fd)
	EOF
}

@test "pread at offset 0 on a file kept open always gets the latest" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/data", os.O_RDONLY)
		for i in range(1, 30):
		    page = b"v%d-" % i * i
		    commit(s, page.decode())
		    got = os.pread(fd, 4096, 0)
		    check(got == page, "commit %d: pread got %r" % (i, got[:40]))
		os.close(fd)
	EOF
}

@test "nobody sees an uncommitted write to data" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		for flags in (os.O_WRONLY | os.O_TRUNC, os.O_WRONLY, os.O_RDWR):
		    commit(s, "public")
		    v = version(s)
		    fd = os.open(s + "/data", flags)
		    os.pwrite(fd, b"secret", 0)
		    check(sh('cat "$1/data"', s) == b"public", "cat saw an open write")
		    check(sh('stat -c %s "$1/data"', s) == b"6\n", "size changed early")
		    check(version(s) == v, "version moved early")
		    os.close(fd)
		    check(data(s) == b"secret", "page after close %r" % data(s))
		    check(version(s) == v + 1, "version after close %d" % version(s))
	EOF
}

@test "reading data commits nothing; an unwritten write-open commits nothing" {
	echo v >"$S/data"
	cat "$S/data" >/dev/null
	head -c 1 "$S/data" >/dev/null
	assert_eq "$(ks_errno open "$S/data" r)" OK
	assert_eq "$(ks_errno open "$S/data" w)" OK
	assert_eq "$(ks_errno open "$S/data" rw)" OK
	assert_file "$S/data" 'v\n'
	assert_version "$S" 1
}

@test "data cannot be removed or renamed: EPERM" {
	echo v >"$S/data"
	run rm "$S/data"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	run rm -f "$S/data"
	[ "$status" -ne 0 ]
	assert_errno EPERM unlink "$S/data"
	assert_errno EPERM rename "$S/data" "$S/other"
	run mv "$S/data" "$S/other"
	[ "$status" -ne 0 ]
	assert_contains "$output" "Operation not permitted"
	[ ! -e "$S/other" ]
	assert_file "$S/data" 'v\n'
	assert_version "$S" 1
}

@test "sed -i on data edits the page" {
	printf 'one\ntwo\n' >"$S/data"
	sed -i 's/two/three/' "$S/data"
	assert_file "$S/data" 'one\nthree\n'
	assert_version "$S" 2
}

@test "setting times (touch -d) on data, version or a transaction file succeeds and changes nothing" {
	local before
	echo 1 >"$MNT/s/data"
	echo 2 >"$MNT/s/t"
	before=$(stat -c %Y "$MNT/s/data")
	touch -d 2000-01-01 "$MNT/s/data" "$MNT/s/version" "$MNT/s/t"
	assert_eq "$(stat -c %Y "$MNT/s/data")" "$before" "data's mtime"
	[ "$(stat -c %Y "$MNT/s/t")" -ge "$before" ] || {
		echo "the transaction file's mtime moved back"
		return 1
	}
	assert_file "$MNT/s/version" '1\n'
	assert_file "$MNT/s/data" '1\n'
	assert_file "$MNT/s/t" '2\n'
	mv "$MNT/s/t" "$MNT/s/data"
	assert_file "$MNT/s/version" '2\n'
	assert_file "$MNT/s/data" '2\n'
}

@test "chmod and chown of data, version and every to what they are succeed (cp -p, tar x); any other mode is EPERM" {
	local src=$BATS_TEST_TMPDIR/src.txt
	echo copied >"$src"
	chmod 644 "$src"
	cp -p "$src" "$S/data"
	assert_file "$S/data" 'copied\n'
	chmod 644 "$S/data"
	chmod 444 "$S/version"
	chmod 555 "$S/every"
	chown 0:0 "$S/data" "$S/version" "$S/every"
	assert_eq "$(python3 "$KS_TOOLS/kserr.py" chmod "$S/data" 600)" EPERM "chmod 600 of data"
	assert_eq "$(python3 "$KS_TOOLS/kserr.py" chmod "$S/version" 644)" EPERM "chmod 644 of version"
	assert_eq "$(python3 "$KS_TOOLS/kserr.py" chown "$S/data" 1 1)" EPERM "chown of data"
	assert_eq "$(stat -c %a "$S/data")" 644 "data's mode"
	# A state archived with tar and unpacked over itself.
	tar cf "$BATS_TEST_TMPDIR/s.tar" -C "$MNT" s/data
	tar xf "$BATS_TEST_TMPDIR/s.tar" --overwrite -C "$MNT"
	assert_file "$S/data" 'copied\n'
}
