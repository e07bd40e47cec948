#!/usr/bin/env bats
# SPEC 6: .events, a stream of "create NAME", "commit NAME VERSION" and
# "delete NAME" lines, from the moment of open, in commit order.

load helpers

setup() {
	ks_mount
}

PY_PRELUDE='mnt = sys.argv[1]
def sh(cmd):
    r = subprocess.run(["sh", "-c", cmd, "sh", mnt], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    check(r.returncode == 0, "%r failed: %s" % (cmd, r.stderr.decode()))
    return r.stdout
'

# events_py: runs the Python test on standard input after PY_PRELUDE.
events_py() {
	local body
	body=$(cat)
	KS_PY_TIMEOUT=${KS_PY_TIMEOUT:-180} ks_py -m ksmount "$MNT" "$@" <<<"$PY_PRELUDE$body"
}

@test ".events: create, commit and delete lines, in order" {
	events_py <<-'EOF'
		r = EventReader(mnt)
		sh('mkdir "$1/a" && echo 1 > "$1/a/data" && echo 2 > "$1/a/data"')
		sh('echo 3 > "$1/a/t" && mv "$1/a/t" "$1/a/data"')
		sh('echo 4 >> "$1/a/data" && rmdir "$1/a"')
		got = r.lines(6)
		want = ["create a", "commit a 1", "commit a 2", "commit a 3", "commit a 4",
		        "delete a"]
		check(got == want, "events: %r, expected %r" % (got, want))
		check(r.quiet(1.0), "more events")
	EOF
}

@test ".events: reads, aborts and read-only commits make no event" {
	mkdir "$MNT/b"
	echo 1 >"$MNT/b/data"
	events_py <<-'EOF'
		r = EventReader(mnt)
		sh('cat "$1/b/data" "$1/b/version" > /dev/null')
		sh('touch "$1/b/r" && mv "$1/b/r" "$1/b/data"')  # read-only commit
		sh('echo x > "$1/b/t" && rm "$1/b/t"')           # abort
		sh('mkdir "$1/.txn/T" && cat "$1/.txn/T/b" > /dev/null && mv "$1/.txn/T" "$1/.commit/"')
		sh('mkdir "$1/.txn/U" && echo y > "$1/.txn/U/b" && rm -r "$1/.txn/U"')
		sh('head -c 100000 /dev/zero > "$1/b/data" || true')  # EFBIG
		sh('echo 2 > "$1/b/data"')
		got = r.line()
		check(got == "commit b 2", "first event: %r, expected 'commit b 2'" % got)
		check(r.quiet(1.0), "more events")
	EOF
}

@test ".events: each open sees only the events after its open" {
	mkdir "$MNT/old"
	echo 1 >"$MNT/old/data"
	events_py <<-'EOF'
		r1 = EventReader(mnt)
		sh('mkdir "$1/x"')
		check(r1.line() == "create x", "r1 first line")
		r2 = EventReader(mnt)
		sh('echo 1 > "$1/x/data"')
		check(r1.line() == "commit x 1", "r1 second line")
		got = r2.line()
		check(got == "commit x 1", "r2 first line: %r" % got)
		r3 = EventReader(mnt)
		check(r3.quiet(1.5), "r3 got an event from before its open")
		check(r1.quiet(0.2) and r2.quiet(0.2), "more events")
		sh('rmdir "$1/old"')
		for r in (r1, r2, r3):
		    got = r.line()
		    check(got == "delete old", "after rmdir: %r" % got)
	EOF
}

@test ".events: concurrent writers; per state the versions come in order, none missing" {
	events_py <<-'EOF'
		n = 80
		names = ["s1", "s2", "s3"]
		for s in names:
		    os.mkdir(os.path.join(mnt, s))
		r = EventReader(mnt)
		procs = [subprocess.Popen([sys.executable,
		         os.path.join(WORKLOADS, "burst.py"),
		         os.path.join(mnt, s), str(n)], stdout=subprocess.PIPE) for s in names]
		for p in procs:
		    check(p.wait() == 0, "a writer failed")
		last = {s: 0 for s in names}
		for _ in range(3 * n):
		    w = r.line().split()
		    check(len(w) == 3 and w[0] == "commit" and w[1] in last, "event %r" % w)
		    v = int(w[2])
		    check(v == last[w[1]] + 1, "%s: version %d after %d" % (w[1], v, last[w[1]]))
		    last[w[1]] = v
		check(r.quiet(1.0), "more events")
	EOF
}

@test ".events: a multi-state commit appears as consecutive commit lines" {
	events_py <<-'EOF'
		for s in ("m1", "m2", "m3", "z"):
		    os.mkdir(os.path.join(mnt, s))
		r = EventReader(mnt)
		# Noise: another process commits z all along.
		noise = subprocess.Popen([sys.executable,
		        os.path.join(WORKLOADS, "writer.py"),
		        os.path.join(mnt, "z"), "2", "5"], stdout=subprocess.PIPE)
		n = 0
		while noise.poll() is None or n < 20:
		    n += 1
		    t = MultiTxn(mnt, "t%d" % n)
		    for s in ("m3", "m1", "m2"):
		        t.write(s, "%d\n" % n)
		    t.commit()
		check(noise.wait() == 0, "the noise writer failed")
		nz = int(noise.stdout.read().split()[0])
		lines = r.lines(3 * n + nz)
		check(r.quiet(1.0), "more events")
		groups = 0
		i = 0
		while i < len(lines):
		    w = lines[i].split()
		    if w[1] == "z":
		        i += 1
		        continue
		    group = sorted(lines[i:i + 3])
		    want = ["commit m1 %d" % (groups + 1), "commit m2 %d" % (groups + 1),
		            "commit m3 %d" % (groups + 1)]
		    check(group == want, "lines %d-%d: %r, expected the three commits of"
		          " transaction %d together" % (i, i + 2, lines[i:i + 3], groups + 1))
		    groups += 1
		    i += 3
		check(groups == n, "%d transactions seen, %d made" % (groups, n))
		print("%d transactions among %d other commits" % (n, nz))
	EOF
}

@test ".events: O_NONBLOCK read with nothing pending gives EAGAIN" {
	mkdir "$MNT/s"
	events_py <<-'EOF'
		fd = os.open(mnt + "/.events", os.O_RDONLY | os.O_NONBLOCK)
		try:
		    b = os.read(fd, 4096)
		    fail("read returned %r with nothing pending" % b)
		except BlockingIOError:
		    pass
		sh('echo 1 > "$1/s/data"')
		got = b""
		end = time.monotonic() + 20
		while not got.endswith(b"\n"):
		    check(time.monotonic() < end, "no event within 20 s (got %r)" % got)
		    try:
		        got += os.read(fd, 4096)
		    except BlockingIOError:
		        time.sleep(0.02)
		check(got == b"commit s 1\n", "read %r" % got)
		try:
		    b = os.read(fd, 4096)
		    fail("read returned %r with nothing pending" % b)
		except BlockingIOError:
		    pass
		os.close(fd)
	EOF
}

@test ".events: poll wakes when an event arrives, and not before" {
	mkdir "$MNT/s"
	events_py <<-'EOF'
		fd = os.open(mnt + "/.events", os.O_RDONLY)
		p = select.poll()
		p.register(fd, select.POLLIN)
		ev = p.poll(1500)
		check(ev == [], "ready with nothing pending: %r" % ev)
		w = subprocess.Popen(["sh", "-c", 'sleep 0.5; echo 1 > "$1/s/data"', "sh", mnt])
		ev = p.poll(20000)
		w.wait()
		check(ev and ev[0][1] & select.POLLIN, "poll returned %r" % ev)
		check(os.read(fd, 4096) == b"commit s 1\n", "the event")
		ev = p.poll(1000)
		check(ev == [], "still ready after reading everything: %r" % ev)
		# epoll too.
		ep = select.epoll()
		ep.register(fd, select.EPOLLIN)
		sh('rmdir "$1/s"')
		ev = ep.poll(20)
		check(ev and ev[0][1] & select.EPOLLIN, "epoll returned %r" % ev)
		check(os.read(fd, 4096) == b"delete s\n", "the second event")
		ep.close()
		os.close(fd)
	EOF
}

# burst_then_read N MARKER: opens .events, does not read it while N commits
# of s happen (and MARKER, if not empty, is created), then reads.
OVERFLOW_PY='n = int(sys.argv[2])
marker = sys.argv[3]
r = EventReader(mnt, start=False)   # opened, but not read
out = subprocess.run([sys.executable,
      os.path.join(WORKLOADS, "burst.py"),
      mnt + "/s", str(n)], stdout=subprocess.PIPE, timeout=500)
check(out.returncode == 0, "the writer failed")
final = int(out.stdout)
check(final == n, "version %d after %d commits" % (final, n))
if marker:
    sh("mkdir \"$1/%s\"" % marker)
r.start()
def check_run(lines):
    """Between overflow lines nothing is missing."""
    prev = None
    for l in lines:
        if l == "overflow":
            prev = None
            continue
        w = l.split()
        if w[0] == "create":
            continue
        check(len(w) == 3 and w[:2] == ["commit", "s"], "line %r" % l)
        v = int(w[2])
        if prev is not None and v != prev + 1:
            fail("version %d after %d with no overflow between" % (v, prev))
        prev = v
    return prev
'

@test ".events: a reader that stops reading gets 'overflow', then continues with newer events" {
	mkdir "$MNT/s"
	KS_PY_TIMEOUT=600 events_py 30000 "" <<<"$OVERFLOW_PY"'
lines = []
while "overflow" not in lines:
    lines.append(r.line())
    check(len(lines) <= n, "no overflow line among the first %d lines" % n)
check(len(lines) < n, "%d events were kept for a reader that did not read"
      % (len(lines) - 1))
check_run(lines)
# Now it reads on: newer events come.
sh("echo x > \"$1/s/data\"")
want = "commit s %d" % (final + 1)
while lines[-1] != want:
    lines.append(r.line())
    check(len(lines) <= n + 10, "more lines than events")
check_run(lines)
print("%d lines; overflow at %r" % (len(lines),
      [i for i, l in enumerate(lines) if l == "overflow"][:5]))
'
}

@test ".events: after 'overflow' a slow reader gets the newest events, made before it read again" {
	# SPEC 6: "A reader too slow to keep up gets a line overflow and
	# continues with the newest": the last events before it resumed reading
	# (the creation of marker) are among the newest.
	mkdir "$MNT/s"
	KS_PY_TIMEOUT=600 events_py 30000 marker <<<"$OVERFLOW_PY"'
lines = []
while True:
    lines.append(r.line(what="after %d lines (%r ... %r); waiting for create marker"
                       % (len(lines), lines[:2], lines[-2:])))
    if lines[-1] == "create marker":
        break
    check(len(lines) <= n + 10, "more lines than events")
check("overflow" in lines, "no overflow line among %d lines" % len(lines))
check(len(lines) < n, "all %d events kept for a reader that did not read" % len(lines))
last = check_run(lines)
check(last == final, "the last commit seen before create marker is %r, expected"
      " the newest, %d" % (last, final))
'
}

@test ".events: the shell idiom while read -r what name version ... < .events" {
	local out=$BATS_TEST_TMPDIR/idiom.out
	mkdir "$MNT/ping"
	# shellcheck disable=SC2016
	ks_bg timeout 60 bash -c '
		while read -r what name version; do
			echo "$what|$name|$version"
			[ "$what $name" = "delete done" ] && exit 0
		done <"$1/.events"
		exit 3' _ "$MNT" >"$out"
	local pid=${KS_BG_PIDS[-1]}
	# The loop is reading once it reports a commit of ping.
	local i=0
	until grep -q '^commit|ping|' "$out"; do
		i=$((i + 1))
		[ "$i" -le 400 ] || { echo "the loop reported nothing in 20 s: $(cat "$out")"; return 1; }
		echo "$i" >"$MNT/ping/data"
		sleep 0.05
	done
	mkdir "$MNT/w"
	echo 1 >"$MNT/w/data"
	echo 2 >"$MNT/w/data"
	rmdir "$MNT/w"
	mkdir "$MNT/done"
	rmdir "$MNT/done"
	local st=0
	wait "$pid" || st=$?
	KS_BG_PIDS=()
	assert_eq "$st" 0 "the loop's exit status (124: timed out, 3: end of file); output: $(cat "$out")"
	run grep -v '^commit|ping|' "$out"
	assert_eq "$output" "$(printf '%s\n' 'create|w|' 'commit|w|1' 'commit|w|2' 'delete|w|' \
		'create|done|' 'delete|done|')" "what the loop read"
	# The ping commits came whole and in order too.
	run grep '^commit|ping|' "$out"
	local v prev=0 line
	for line in $output; do
		v=${line##*|}
		[ "$v" -eq $((prev + 1)) ] || [ "$prev" -eq 0 ] || {
			echo "ping versions out of order: $output"
			return 1
		}
		prev=$v
	done
}
