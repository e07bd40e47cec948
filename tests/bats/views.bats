#!/usr/bin/env bats
# SPEC 4.4: throttled views, NAME/every/PERIOD/{data,version}.

load helpers

setup() {
	ks_mount
	S=$MNT/s
	mkdir "$S"
}

# view_is PERIOD TEXT: the view's data reads TEXT.
view_is() {
	[ "$(cat "$S/every/$1/data")" = "$2" ]
}

@test "cat NAME/every/250ms/data shows the page, version the version" {
	echo hello >"$S/data"
	[ -d "$S/every" ] || { echo "$S/every is not a directory"; return 1; }
	[ -d "$S/every/250ms" ] || { echo "$S/every/250ms is not a directory"; return 1; }
	run ls "$S/every/250ms"
	assert_eq "$output" "$(printf 'data\nversion')" "ls every/250ms"
	wait_for 10 view_is 250ms hello
	assert_file "$S/every/250ms/data" 'hello\n'
	assert_version "$S/every/250ms" 1
	# The state itself is unchanged by reading views.
	assert_version "$S" 1
}

@test "views: every/2s, every/10hz, every/100ms, every/1s, every/3000ms look up" {
	echo x >"$S/data"
	local p
	for p in 2s 10hz 100ms 1s 3000ms 1hz; do
		[ -d "$S/every/$p" ] || { echo "every/$p is not a directory"; return 1; }
		assert_errno OK stat "$S/every/$p/data"
		assert_errno OK stat "$S/every/$p/version"
		wait_for 10 view_is "$p" x
		assert_version "$S/every/$p" 1
	done
}

@test "views: decimal periods: every/0.5s, every/2.5hz, every/0.25s, every/1.5ms look up" {
	echo x >"$S/data"
	local p
	for p in 0.5s 2.5hz 0.25s 1.5ms 0.5hz; do
		[ -d "$S/every/$p" ] || { echo "every/$p is not a directory"; return 1; }
		wait_for 10 view_is "$p" x
		assert_version "$S/every/$p" 1
	done
	# It moves at most twice a second, and catches up.
	local i
	for i in 1 2 3 4 5; do
		echo "$i" >"$S/data"
	done
	wait_for 5 view_is 0.5s 5
}

@test "views: a view is forgotten a few seconds after its last reader leaves" {
	echo x >"$S/data"
	cat "$S/every/300ms/data" >/dev/null
	ks_bg bash -c 'exec 5<"$1" && sleep 120' _ "$S/every/700ms/version"
	wait_for 10 eval 'ls "$S/every" | grep -qx 700ms'
	run ls "$S/every"
	assert_contains "$output" 300ms
	# The reader of 300ms is gone: within a few seconds it is not listed,
	# while the open 700ms stays.
	wait_for 10 eval '! ls "$S/every" | grep -qx 300ms'
	run ls "$S/every"
	assert_eq "$output" 700ms "ls every with one reader left"
	ks_kill_bg || true
	wait_for 10 eval '[ -z "$(ls "$S/every")" ]'
	wait_for 10 eval 'grep -qx "views 0" "$MNT/.stats"'
	# Looking one up again brings it back.
	assert_file "$S/every/300ms/data" 'x\n'
	run ls "$S/every"
	assert_eq "$output" 300ms "ls every after a new lookup"
}

@test "views: invalid periods give ENOENT" {
	echo x >"$S/data"
	local p
	for p in 0ms abc 5 -1s 0s 0hz ms s hz 0.0s .5s 1.s 01.5s 1e3ms 10min 10ms5 ' 10ms' 10ms/x; do
		assert_errno ENOENT stat "$S/every/$p"
	done
	assert_errno ENOENT stat "$S/every/abc/data"
	assert_errno ENOENT open "$S/every/0ms/version" r
	refute cat "$S/every/-1s/data" 2>/dev/null
}

@test "views: ls NAME/every lists the views in use" {
	echo x >"$S/data"
	ks_bg bash -c 'exec 5<"$1" && exec 6<"$2" && sleep 120' _ \
		"$S/every/500ms/version" "$S/every/2s/data"
	wait_for 20 eval 'ls "$S/every" | grep -qx 500ms'
	wait_for 20 eval 'ls "$S/every" | grep -qx 2s'
	run ls "$S/every"
	assert_eq "$status" 0 "ls every: $output"
	local e
	for e in $output; do
		[[ $e =~ ^[0-9]+(\.[0-9]+)?(ms|s|hz)$ ]] || {
			echo "ls every lists a name that is not a period: '$e' (all: $output)"
			return 1
		}
	done
	# The state directory still lists what it did.
	run ls "$S"
	assert_contains "$output" data
	assert_contains "$output" version
}

@test "views: writing a view's data or version fails (EACCES or EROFS) and changes nothing" {
	echo keep >"$S/data"
	local f how r
	for f in data version; do
		for how in w wt rw wa; do
			r=$(ks_errno write "$S/every/250ms/$f" "$how" 1)
			case $r in
			open:EACCES | open:EROFS) ;;
			*)
				echo "writing every/250ms/$f ($how): $r, expected open:EACCES or open:EROFS"
				return 1
				;;
			esac
		done
		r=$(ks_errno truncate "$S/every/250ms/$f" 0)
		case $r in
		EACCES | EROFS | EPERM) ;;
		*)
			echo "truncate every/250ms/$f: $r"
			return 1
			;;
		esac
	done
	refute touch "$S/every/250ms/newfile" 2>/dev/null
	refute mkdir "$S/every/250ms/d" 2>/dev/null
	refute eval 'echo x >"$S/every/250ms/data"' 2>/dev/null
	assert_file "$S/data" 'keep\n'
	assert_version "$S" 1
	[ ! -e "$S/every/250ms/newfile" ]
}

@test "views: poll on every/500ms/version wakes at most about once per period, and catches up" {
	echo 0 >"$S/data"
	KS_PY_TIMEOUT=120 ks_py -m ksmount "$S" 500 2 <<-'EOF'
		s, period_ms, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
		period = period_ms / 1000.0
		view = "%s/every/%dms" % (s, period_ms)
		fd = os.open(view + "/version", os.O_RDONLY)
		def read_view():
		    os.lseek(fd, 0, os.SEEK_SET)
		    raw = os.read(fd, 64)
		    check(raw.endswith(b"\n") and raw[:-1].isdigit(), "view version %r" % raw)
		    return int(raw)
		# The view shows the (quiet) state within a period.
		wait_until(lambda: read_view() == 1, 10, "the view to show version 1")
		p = select.poll()
		p.register(fd, select.POLLIN | select.POLLPRI)
		ev = p.poll(1500)
		check(ev == [], "the view's version woke up with nothing committed: %r" % ev)

		writer = subprocess.Popen([sys.executable,
		    os.path.join(WORKLOADS, "writer.py"),
		    s, str(duration), "10"], stdout=subprocess.PIPE)
		t0 = time.monotonic()
		wakes, seen, t_done, final = 0, [1], None, None
		while True:
		    now = time.monotonic()
		    if t_done is None and writer.poll() is not None:
		        out = writer.stdout.read().decode().split()
		        check(writer.returncode == 0 and len(out) == 2, "writer failed: %r" % out)
		        ncommits, final = int(out[0]), int(out[1])
		        t_done = time.monotonic()
		    if t_done is not None and seen[-1] == final:
		        break
		    if t_done is not None and now - t_done > period + 10:
		        fail("the view still shows version %d, %.1f s after the last commit"
		             " (version %d)" % (seen[-1], now - t_done, final))
		    check(now - t0 < 60, "the writer is still running after 60 s")
		    ev = p.poll(50)
		    if not ev:
		        continue
		    wakes += 1
		    check(wakes <= 1000, "poll keeps waking up (1000 times): the file "
		          "stays ready after its version was read")
		    v = read_view()
		    check(v >= seen[-1], "the view went back: %d after %d" % (v, seen[-1]))
		    # A view's data goes with its version.
		    d = open(view + "/data", "rb").read()
		    v2 = read_view()
		    if v2 == v and v >= 2:
		        check(d == str(v).encode(), "view data %r with view version %d" % (d, v))
		    seen.append(v2)
		window = time.monotonic() - t0
		bound = 2 * window / period + 2
		print("commits %d, final %d, wake-ups %d in %.2f s (bound %.1f), versions seen %r"
		      % (ncommits, final, wakes, window, bound, seen))
		check(wakes >= 1, "poll never woke up while the state changed")
		check(wakes <= bound, "poll woke %d times in %.2f s on a %d ms view (%d commits);"
		      " at most %.1f allowed" % (wakes, window, period_ms, ncommits, bound))
		check(len(set(seen)) - 1 <= bound, "the view moved %d times" % (len(set(seen)) - 1))
		os.close(fd)
	EOF
}

@test "views: once the state stops changing, the view shows the latest version within a period" {
	echo 0 >"$S/data"
	KS_PY_TIMEOUT=120 ks_py -m ksmount "$S" <<-'EOF'
		s = sys.argv[1]
		view = s + "/every/2s"
		check(read_file(view + "/version") in (b"0\n", b"1\n"), "first look")
		out = subprocess.run([sys.executable,
		    os.path.join(WORKLOADS, "writer.py"),
		    s, "1", "5"], stdout=subprocess.PIPE, check=True).stdout.split()
		final = int(out[1])
		t_done = time.monotonic()
		# Within one period, plus generous slack.
		deadline = t_done + 2 + 8
		while True:
		    v = int(read_file(view + "/version"))
		    if v == final:
		        break
		    check(v < final, "the view shows version %d, beyond the last (%d)" % (v, final))
		    check(time.monotonic() < deadline, "the 2s view still shows version %d,"
		          " %.1f s after the last commit (version %d)"
		          % (v, time.monotonic() - t_done, final))
		    time.sleep(0.05)
		check(read_file(view + "/data") == str(final).encode(),
		      "view data %r, expected %d" % (read_file(view + "/data"), final))
		# And it stays there.
		time.sleep(2.5)
		check(int(read_file(view + "/version")) == final, "the view moved with no commit")
		# A single commit on the quiet state shows up within the period too.
		write_file(s + "/data", "last")
		t1 = time.monotonic()
		wait_until(lambda: read_file(view + "/data") == b"last", 2 + 8,
		           "the view to show a lone commit")
		check(int(read_file(view + "/version")) == final + 1, "view version after the lone commit")
	EOF
}

@test "views: a 100ms view and a 2s view of the same state move independently" {
	echo 0 >"$S/data"
	ks_py -m ksmount "$S" <<-'EOF'
		s = sys.argv[1]
		fast, slow = s + "/every/100ms", s + "/every/2s"
		wait_until(lambda: read_file(fast + "/version") == b"1\n", 10, "fast view at 1")
		wait_until(lambda: read_file(slow + "/version") == b"1\n", 10, "slow view at 1")
		write_file(s + "/data", "2")
		wait_until(lambda: read_file(fast + "/version") == b"2\n", 10, "fast view at 2")
		wait_until(lambda: read_file(slow + "/version") == b"2\n", 12, "slow view at 2")
		check(read_file(s + "/version") == b"2\n", "the state's own version")
		check(read_file(s + "/data") == b"2", "the state's own data")
	EOF
}

@test "views: inotifywait -e modify on every/PERIOD/version fires when the view moves, not per commit" {
	echo 0 >"$S/data"
	local out=$BATS_TEST_TMPDIR/view.events err=$BATS_TEST_TMPDIR/view.err
	wait_for 10 eval '[ "$(cat "$S/every/1s/version")" = 1 ]'
	: >"$out"
	ks_bg inotifywait -m -e modify --format '%e' "$S/every/1s/version" >"$out" 2>"$err"
	wait_for 20 grep -q 'Watches established' "$err" || {
		cat "$err"
		return 1
	}
	local t0=$SECONDS res n final nev window bound
	res=$(timeout 60 python3 "$KS_TOOLS/workloads/writer.py" "$S" 3 10)
	read -r n final <<<"$res"
	[ -n "$final" ] || { echo "writer failed: $res"; return 1; }
	wait_for 20 eval '[ "$(cat "$S/every/1s/version")" = "$final" ]'
	# Let the last move's event arrive.
	wait_for 20 eval '[ "$(wc -l <"$out")" -ge 1 ]'
	sleep 1.5
	window=$((SECONDS - t0 + 1))
	nev=$(wc -l <"$out")
	bound=$((2 * window + 2))
	echo "commits $n, final version $final, modify events $nev in ~${window}s (bound $bound)"
	[ "$nev" -ge 1 ] || { echo "no modify event on the view's version"; return 1; }
	[ "$nev" -le "$bound" ] || {
		echo "$nev modify events on a 1s view in ~${window}s for $n commits: more than $bound"
		return 1
	}
	# Quiet state: no more events.
	local before=$nev
	sleep 2.5
	nev=$(wc -l <"$out")
	assert_eq "$nev" "$before" "modify events on the view with no commit"
}

@test "views: the view of a state stays consistent: data and version of one committed version" {
	echo 0 >"$S/data"
	KS_PY_TIMEOUT=120 ks_py -m ksmount "$S" <<-'EOF'
		s = sys.argv[1]
		view = s + "/every/50ms"
		writer = subprocess.Popen([sys.executable,
		    os.path.join(WORKLOADS, "writer.py"),
		    s, "2", "2"], stdout=subprocess.PIPE)
		last = 0
		checked = 0
		while writer.poll() is None:
		    v1 = int(read_file(view + "/version"))
		    d = read_file(view + "/data")
		    v2 = int(read_file(view + "/version"))
		    check(v1 >= last and v2 >= v1, "the view went back: %d, %d, %d" % (last, v1, v2))
		    check(d.isdigit() and v1 <= int(d) <= v2 or (v1 <= 1 and d == b"0\n"),
		          "view data %r between view versions %d and %d" % (d, v1, v2))
		    checked += 1
		    last = v2
		check(writer.returncode == 0, "writer failed")
		print("checked", checked)
	EOF
}
