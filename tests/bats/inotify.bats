#!/usr/bin/env bats
# SPEC 4.2: inotify on version: every commit, from any source, makes
# IN_MODIFY and IN_CLOSE_WRITE; an event always follows the last commit.

load helpers

setup() {
	ks_mount
	S=$MNT/s
	mkdir "$S"
}

# watch_version EVENT: starts inotifywait -m on $S/version, output in $EVENTS_OUT,
# and returns once the watch is in place.
watch_version() {
	EVENTS_OUT=$BATS_TEST_TMPDIR/events.$1
	local err=$BATS_TEST_TMPDIR/events.$1.err
	: >"$EVENTS_OUT"
	ks_bg inotifywait -m -e "$1" --format '%e' "$S/version" \
		>"$EVENTS_OUT" 2>"$err"
	wait_for 20 grep -q 'Watches established' "$err" || {
		cat "$err"
		return 1
	}
}

nevents() {
	wc -l <"$EVENTS_OUT"
}

# expect_event_after WHAT: waits until the event count exceeds $before.
expect_event_after() {
	if ! wait_for 20 eval '[ "$(nevents)" -gt "$before" ]'; then
		echo "no event within 20 s after: $1 (events so far: $(nevents))"
		return 1
	fi
}

@test "inotifywait -e modify sees a commit from each source" {
	watch_version modify
	local how before
	for how in \
		'echo a >"$S/data"' \
		'echo b >>"$S/data"' \
		'printf c | dd of="$S/data" conv=notrunc status=none' \
		'truncate -s 1 "$S/data"' \
		'echo d >"$S/t" && mv "$S/t" "$S/data"' \
		'touch "$S/u" && sed -i "s/.*/e/" "$S/u" && mv "$S/u" "$S/data"' \
		'ks_errno write "$S/data" rw 3 >/dev/null'; do
		before=$(nevents)
		eval "$how"
		expect_event_after "$how"
	done
	assert_version "$S" 7
}

@test "inotify: fsync commits, and the event comes before the close" {
	watch_version modify
	ks_py "$S" "$EVENTS_OUT" <<-'EOF'
		s, out = sys.argv[1], sys.argv[2]
		def events():
		    with open(out) as f:
		        return len(f.read().splitlines())
		fd = os.open(s + "/data", os.O_WRONLY | os.O_TRUNC)
		os.write(fd, b"x")
		before = events()
		os.fsync(fd)
		wait_until(lambda: events() > before, 20, "an event after fsync")
		os.write(fd, b"y")
		before = events()
		os.close(fd)
		wait_until(lambda: events() > before, 20, "an event after close")
		check(version(s) == 2, "version %d" % version(s))
	EOF
}

@test "inotify: commits make IN_CLOSE_WRITE on version too" {
	watch_version close_write
	local before
	before=$(nevents)
	echo a >"$S/data"
	expect_event_after "echo a > data"
	before=$(nevents)
	echo x >"$S/t"
	mv "$S/t" "$S/data"
	expect_event_after "mv t data"
	grep -q CLOSE_WRITE "$EVENTS_OUT"
}

@test "inotify: commits to another state do not show up on this one" {
	watch_version modify
	mkdir "$MNT/o"
	echo a >"$MNT/o/data"
	echo b >"$MNT/o/data"
	sleep 1
	assert_eq "$(nevents)" 0 "events on s/version after commits to o"
	local before=0
	echo c >"$S/data"
	expect_event_after "echo c > s/data"
}

@test "inotify: under a burst of commits, an event always follows the last one" {
	local n=300 final
	echo 0 >"$S/data"
	local seen=$BATS_TEST_TMPDIR/seen
	: >"$seen"
	# A watcher the way users write one: on every event, read version.
	ks_bg bash -c '
		inotifywait -m -e modify "$1/version" 2>"$2.err" |
		while read -r _; do cat "$1/version"; done >"$2"' _ "$S" "$seen"
	wait_for 20 grep -q 'Watches established' "$seen.err"
	ks_py "$S" "$n" <<-'EOF'
		s, n = sys.argv[1], int(sys.argv[2])
		for i in range(n):
		    fd = os.open(s + "/data", os.O_WRONLY | os.O_TRUNC)
		    os.write(fd, b"%d" % i)
		    os.close(fd)
	EOF
	final=$(ks_version "$S")
	assert_eq "$final" $((n + 1)) "version after the burst"
	if ! wait_for 20 eval '[ "$(tail -n 1 "$seen")" = "$final" ]'; then
		echo "the watcher's last read is $(tail -n 1 "$seen"), the version is $final"
		echo "($(wc -l <"$seen") reads)"
		return 1
	fi
}

@test "inotify: several states committed at once, each watcher sees its last version" {
	local k seen
	for k in 1 2 3; do
		mkdir "$MNT/p$k"
		seen=$BATS_TEST_TMPDIR/seen$k
		ks_bg bash -c '
			inotifywait -m -e modify "$1/version" 2>"$2.err" |
			while read -r _; do cat "$1/version"; done >"$2"' _ "$MNT/p$k" "$seen"
		wait_for 20 grep -q 'Watches established' "$seen.err"
	done
	local pids=() p
	for k in 1 2 3; do
		timeout 300 bash -c 'for i in $(seq 100); do echo $i >"$1/data"; done' \
			_ "$MNT/p$k" 3>&- &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	for k in 1 2 3; do
		assert_version "$MNT/p$k" 100
		seen=$BATS_TEST_TMPDIR/seen$k
		wait_for 20 eval '[ "$(tail -n 1 "$seen")" = 100 ]' || {
			echo "p$k: the watcher's last read is $(tail -n 1 "$seen")"
			return 1
		}
	done
}
