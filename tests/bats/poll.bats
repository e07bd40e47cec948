#!/usr/bin/env bats
# SPEC 4.2: poll, select and epoll on version (the sysfs idiom: read, poll,
# lseek(fd, 0, SEEK_SET), read).

load helpers

setup() {
	ks_mount
	S=$MNT/s
	mkdir "$S"
	echo 0 >"$S/data"
}

@test "poll: no wake-up without a commit" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/version", os.O_RDONLY)
		check(os.read(fd, 64) == b"1\n", "first read")
		p = select.poll()
		p.register(fd, select.POLLIN | select.POLLPRI)
		ev = p.poll(1500)
		check(ev == [], "woke up with nothing committed: %r" % ev)
		# Things that are not commits.
		sh('cat "$1/data" "$1/version" >/dev/null', s)
		sh('touch "$1/r" && mv "$1/r" "$1/data"', s)       # read-only commit
		sh('echo x > "$1/t" && rm "$1/t"', s)              # abort
		sh('head -c 5000 /dev/zero > "$1/data" || true', s) # EFBIG
		ev = p.poll(1500)
		check(ev == [], "woke up with nothing committed: %r" % ev)
		check(version(s) == 1, "version moved")
		os.close(fd)
	EOF
}

@test "poll: POLLPRI|POLLIN after a commit by another process; quiet again after the read" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/version", os.O_RDONLY)
		os.read(fd, 64)
		p = select.poll()
		p.register(fd, select.POLLIN | select.POLLPRI)
		commit(s, "1")
		ev = p.poll(20000)
		check(ev, "no wake-up within 20 s of a commit")
		mask = ev[0][1]
		check(mask & select.POLLPRI, "POLLPRI missing: %#x" % mask)
		check(mask & select.POLLIN, "POLLIN missing: %#x" % mask)
		# Still ready until this file reads the new version.
		check(p.poll(0), "readiness lost before the read")
		check(read_at0(fd) == b"2\n", "re-read after the wake-up")
		ev = p.poll(1000)
		check(ev == [], "still ready after reading the current version: %r" % ev)
		os.close(fd)
	EOF
}

@test "poll: a blocked poll wakes on a commit" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/version", os.O_RDONLY)
		os.read(fd, 64)
		p = select.poll()
		p.register(fd, select.POLLPRI)
		writer = subprocess.Popen(["sh", "-c", 'sleep 1; echo 2 > "$1/data"',
		                           "sh", s])
		t0 = time.monotonic()
		ev = p.poll(30000)
		writer.wait()
		check(ev and ev[0][1] & select.POLLPRI,
		      "poll returned %r after %.1f s" % (ev, time.monotonic() - t0))
		check(read_at0(fd) == b"2\n", "the new version")
		os.close(fd)
	EOF
}

@test "select: the version file shows up in exceptfds (and readfds) after a commit" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/version", os.O_RDONLY)
		os.read(fd, 64)
		r, w, x = select.select([fd], [], [fd], 1.0)
		check((r, x) == ([], []), "ready with no commit: %r %r" % (r, x))
		writer = subprocess.Popen(["sh", "-c", 'sleep 0.5; echo 2 > "$1/data"',
		                           "sh", s])
		r, w, x = select.select([], [], [fd], 30)
		writer.wait()
		check(x == [fd], "select did not report the commit in exceptfds")
		r, w, x = select.select([fd], [], [], 0)
		check(r == [fd], "not readable")
		read_at0(fd)
		r, w, x = select.select([fd], [], [fd], 0.5)
		check((r, x) == ([], []), "ready after the re-read: %r %r" % (r, x))
		os.close(fd)
	EOF
}

@test "epoll: EPOLLPRI after a commit" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/version", os.O_RDONLY)
		os.read(fd, 64)
		ep = select.epoll()
		ep.register(fd, select.EPOLLPRI | select.EPOLLIN)
		check(ep.poll(1.0) == [], "ready with no commit")
		writer = subprocess.Popen(["sh", "-c", 'sleep 0.5; echo 2 > "$1/data"',
		                           "sh", s])
		ev = ep.poll(30)
		writer.wait()
		check(ev and ev[0][1] & select.EPOLLPRI, "epoll returned %r" % ev)
		check(read_at0(fd) == b"2\n", "the new version")
		check(ep.poll(0.5) == [], "ready after the re-read")
		ep.close()
		os.close(fd)
	EOF
}

@test "epoll, edge-triggered (EPOLLET): every commit wakes it, read or not in between" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/version", os.O_RDONLY)
		os.read(fd, 64)
		ep = select.epoll()
		ep.register(fd, select.EPOLLPRI | select.EPOLLIN | select.EPOLLET)
		check(ep.poll(0.5) == [], "ready with no commit")
		for i in range(1, 6):
		    sh('echo %d > "$1/data"' % (i + 1), s)
		    ev = ep.poll(30)
		    check(ev and ev[0][1] & select.EPOLLPRI,
		          "commit %d: epoll returned %r" % (i, ev))
		    if i % 2:
		        read_at0(fd)  # consumed, or left unread: both wake next time
		    check(ep.poll(0.3) == [], "commit %d: woken twice" % i)
		ep.close()
		os.close(fd)
	EOF
}

@test "epoll, edge-triggered (EPOLLET) on .events: every event wakes it" {
	ks_py "$MNT" <<-'EOF'
		m = sys.argv[1]
		fd = os.open(m + "/.events", os.O_RDONLY | os.O_NONBLOCK)
		ep = select.epoll()
		ep.register(fd, select.EPOLLIN | select.EPOLLET)
		check(ep.poll(0.5) == [], "ready with no event")
		for i in range(1, 6):
		    sh('echo %d > "$1/s/data"' % i, m)
		    ev = ep.poll(30)
		    check(ev and ev[0][1] & select.EPOLLIN,
		          "event %d: epoll returned %r" % (i, ev))
		    if i % 2:
		        try:
		            while os.read(fd, 65536):
		                pass
		        except BlockingIOError:
		            pass
		ep.close()
		os.close(fd)
	EOF
}

@test "poll: each open file has its own last-read version" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		a = os.open(s + "/version", os.O_RDONLY)
		b = os.open(s + "/version", os.O_RDONLY)
		os.read(a, 64)
		os.read(b, 64)
		commit(s, "x")
		pa, pb = select.poll(), select.poll()
		pa.register(a, select.POLLPRI)
		pb.register(b, select.POLLPRI)
		check(pa.poll(20000) and pb.poll(20000), "both wake up")
		read_at0(a)
		check(pa.poll(500) == [], "a read the new version")
		check(pb.poll(0), "b has not, and must stay ready")
		read_at0(b)
		check(pb.poll(500) == [], "b read it too")
		os.close(a)
		os.close(b)
	EOF
}

@test "poll wakes on commits from every source" {
	ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		fd = os.open(s + "/version", os.O_RDONLY)
		last = int(os.read(fd, 64))
		p = select.poll()
		p.register(fd, select.POLLPRI)
		sources = [
		    'echo a > "$1/data"',
		    'echo b >> "$1/data"',
		    'printf c | dd of="$1/data" conv=notrunc status=none',
		    'truncate -s 1 "$1/data"',
		    'echo d > "$1/t" && mv "$1/t" "$1/data"',
		    'python3 -c "import os,sys; f=os.open(sys.argv[1]+\'/data\', os.O_RDWR);'
		    ' os.write(f, b\'e\'); os.fsync(f); os.close(f)" "$1"',
		    'python3 -c "import os,sys; f=os.open(sys.argv[1]+\'/data\', os.O_RDWR);'
		    ' os.write(f, b\'f\'); os.close(f)" "$1"',
		]
		for src in sources:
		    sh(src, s)
		    ev = p.poll(20000)
		    check(ev, "no wake-up after: %s" % src)
		    v = int(read_at0(fd))
		    check(v == last + 1, "after %s: version %d, expected %d" % (src, v, last + 1))
		    last = v
		os.close(fd)
	EOF
}

@test "poll: under a burst of commits the last version is always seen" {
	KS_PY_TIMEOUT=600 ks_py "$S" <<-'EOF'
		s = sys.argv[1]
		n = 300
		fd = os.open(s + "/version", os.O_RDONLY)
		start = int(os.read(fd, 64))
		final = start + n
		p = select.poll()
		p.register(fd, select.POLLIN | select.POLLPRI)
		writer = subprocess.Popen([sys.executable, "-c", """
		import os, sys
		for i in range(int(sys.argv[2])):
		    fd = os.open(sys.argv[1] + "/data", os.O_WRONLY | os.O_TRUNC)
		    os.write(fd, b"%d" % i)
		    os.close(fd)
		""", s, str(n)])
		seen, wakeups, last = start, 0, start
		while seen < final:
		    ev = p.poll(20000)
		    if not ev:
		        writer.poll()
		        fail("lost wake-up: last read %d, version is %d, writer %s" %
		             (seen, version(s), "done" if writer.returncode is not None
		              else "running"))
		    wakeups += 1
		    v = int(read_at0(fd))
		    check(v >= seen, "version went back: %d after %d" % (v, seen))
		    check(v > seen, "woke up (%#x) with no newer version (%d)" %
		          (ev[0][1], v))
		    seen = v
		check(writer.wait() == 0, "the writer failed")
		check(seen == final, "saw %d, expected %d" % (seen, final))
		check(p.poll(1000) == [], "ready after reading the last version")
		sys.stderr.write("%d wake-ups for %d commits\n" % (wakeups, n))
		os.close(fd)
	EOF
}
