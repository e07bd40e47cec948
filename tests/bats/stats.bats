#!/usr/bin/env bats
# SPEC 6: .stats, "key value" lines: states, open transactions, commits,
# conflicts, bytes held, store size, and the like.

load helpers

PY_PRELUDE='mnt = sys.argv[1]
def sh(cmd, ok=True):
    r = subprocess.run(["sh", "-c", cmd, "sh", mnt], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    if ok:
        check(r.returncode == 0, "%r failed: %s" % (cmd, r.stderr.decode()))
    return r
def st():
    return stats(mnt)
def moved(before, after, **want):
    for k, d in want.items():
        check(k in after, "no key %r in .stats: %r" % (k, after))
        check(after[k] - before[k] == d, "%s went from %d to %d, expected %+d"
              % (k, before[k], after[k], d))
'

stats_py() {
	local body
	body=$(cat)
	ks_py -m ksmount "$MNT" <<<"$PY_PRELUDE$body"
}

@test ".stats: key value lines, with states, transactions, commits, conflicts, bytes" {
	ks_mount
	run cat "$MNT/.stats"
	assert_eq "$status" 0 "cat .stats: $output"
	[ -n "$output" ] || { echo ".stats is empty"; return 1; }
	local line key
	while IFS= read -r line; do
		[[ $line =~ ^[A-Za-z0-9_.-]+\ [0-9]+$ ]] || {
			echo "not a 'key value' line: '$line'"
			return 1
		}
	done <<<"$output"
	for key in states transactions commits conflicts bytes; do
		grep -q "^$key [0-9]*$" <<<"$output" || {
			echo "no '$key' in .stats:"
			echo "$output"
			return 1
		}
	done
	# A fresh mount in memory: nothing yet.
	for key in states transactions commits conflicts; do
		assert_eq "$(awk -v k=$key '$1 == k { print $2 }' <<<"$output")" 0 "$key on a fresh mount"
	done
	# Keys are unique.
	assert_eq "$(cut -d' ' -f1 <<<"$output" | sort | uniq -d)" "" "keys listed twice"
	# It reads the same way with small reads (the same keys; the same counts
	# of a quiet mount).
	local small
	small=$(dd if="$MNT/.stats" bs=7 status=none)
	assert_eq "$(cut -d' ' -f1 <<<"$small")" "$(cut -d' ' -f1 <<<"$output")" \
		"keys of .stats read 7 bytes at a time"
	assert_eq "$(grep -E '^(states|transactions|commits|conflicts|bytes) ' <<<"$small")" \
		"$(grep -E '^(states|transactions|commits|conflicts|bytes) ' <<<"$output")" \
		"counts of .stats read 7 bytes at a time"
}

@test ".stats: states follow mkdir and rmdir; commits follow commits" {
	ks_mount
	stats_py <<-'EOF'
		s0 = st()
		sh('mkdir "$1/a" "$1/b"')
		s1 = st()
		moved(s0, s1, states=2, commits=0)
		sh('echo 1 > "$1/a/data" && echo 2 > "$1/a/data" && echo 3 > "$1/b/data"')
		s2 = st()
		moved(s1, s2, states=0, commits=3, conflicts=0)
		sh('echo 4 > "$1/a/t" && mv "$1/a/t" "$1/a/data"')
		moved(s2, st(), commits=1)
		sh('rmdir "$1/b"')
		moved(s2, st(), states=-1)
	EOF
}

@test ".stats: transactions counts the open transactions" {
	ks_mount
	stats_py <<-'EOF'
		sh('mkdir "$1/a" "$1/b"')
		s0 = st()
		sh('touch "$1/a/t1" "$1/a/t2" "$1/b/t3"')
		moved(s0, st(), transactions=3)
		sh('rm "$1/a/t1"')
		moved(s0, st(), transactions=2)
		sh('mv "$1/a/t2" "$1/a/data"')
		moved(s0, st(), transactions=1)
		sh('mkdir "$1/.txn/T"')
		s1 = st()
		moved(s0, s1, transactions=2)
		sh('cat "$1/.txn/T/a" "$1/.txn/T/b" > /dev/null')
		moved(s1, st(), transactions=0)   # members are part of T, not more transactions
		sh('rm -r "$1/.txn/T" "$1/b/t3"')
		moved(s0, st(), transactions=0)
		sh('mkdir "$1/.txn/U" && echo x > "$1/.txn/U/a" && mv "$1/.txn/U" "$1/.commit/"')
		moved(s0, st(), transactions=0)
	EOF
}

@test ".stats: conflicts count EAGAIN commits; a multi-state commit counts as commits" {
	ks_mount
	stats_py <<-'EOF'
		sh('mkdir "$1/a" "$1/b" && echo 1 > "$1/a/data" && echo 1 > "$1/b/data"')
		s0 = st()
		# A per-state conflict.
		sh('touch "$1/a/t" && echo 2 > "$1/a/data"')
		r = sh('mv "$1/a/t" "$1/a/data"', ok=False)
		check(r.returncode != 0, "mv should have failed with EAGAIN")
		s1 = st()
		moved(s0, s1, conflicts=1, commits=1)
		sh('rm "$1/a/t"')
		# A multi-state conflict.
		sh('mkdir "$1/.txn/T" && echo x > "$1/.txn/T/a" && echo y > "$1/.txn/T/b"')
		sh('echo 3 > "$1/b/data"')
		r = sh('mv "$1/.txn/T" "$1/.commit/"', ok=False)
		check(r.returncode != 0, "the multi-state commit should have failed")
		s2 = st()
		moved(s1, s2, conflicts=1, commits=1)
		sh('rm -rf "$1/.txn/T"')
		# A multi-state commit that succeeds.
		sh('mkdir "$1/.txn/U" && echo x > "$1/.txn/U/a" && echo y > "$1/.txn/U/b"'
		   ' && mv "$1/.txn/U" "$1/.commit/"')
		s3 = st()
		moved(s2, s3, conflicts=0)
		check(s3["commits"] - s2["commits"] in (1, 2),
		      "commits went from %d to %d after one commit of two states"
		      % (s2["commits"], s3["commits"]))
	EOF
}

@test ".stats: bytes follows the pages held" {
	ks_mount
	stats_py <<-'EOF'
		sh('mkdir "$1/big"')
		s0 = st()
		sh('head -c 3000 /dev/zero | tr "\\0" x > "$1/big/data"')
		s1 = st()
		check(s1["bytes"] - s0["bytes"] >= 3000,
		      "bytes went from %d to %d after a 3000-byte page" % (s0["bytes"], s1["bytes"]))
		sh('echo small > "$1/big/data"')
		wait_until(lambda: st()["bytes"] <= s1["bytes"] - 2900, 20,
		           "bytes to drop after the 3000-byte page was replaced (%d before)"
		           % s1["bytes"])
		sh('rmdir "$1/big"')
		wait_until(lambda: st()["bytes"] <= s0["bytes"], 20,
		           "bytes to drop back after rmdir (%d before the state had a page)"
		           % s0["bytes"])
	EOF
}

@test ".stats: with --store, the store size is there and grows with commits" {
	ks_mount --store "$BATS_TEST_TMPDIR/store"
	stats_py <<-'EOF'
		s0 = st()
		keys = [k for k in s0 if "store" in k]
		check(keys, "no store key in .stats: %r" % s0)
		sh('mkdir "$1/a"')
		for i in range(20):
		    sh('head -c 2000 /dev/zero > "$1/a/data"')
		s1 = st()
		check(any(s1[k] > s0[k] for k in keys),
		      "no store figure grew after 20 commits of 2000 bytes: %r then %r"
		      % ({k: s0[k] for k in keys}, {k: s1[k] for k in keys}))
	EOF
}

@test ".stats: with --store --sync full, store_syncs counts the syncs that commits share" {
	ks_mount --store "$BATS_TEST_TMPDIR/store" --sync full
	stats_py <<-'EOF'
		sh('mkdir "$1/a" "$1/b" "$1/c" "$1/d"')
		s0 = st()
		check("store_syncs" in s0, "no store_syncs in .stats: %r" % s0)
		# One writer: each commit waits for its own sync.
		for i in range(20):
		    sh('echo %d > "$1/a/data"' % i)
		s1 = st()
		check(s1["store_syncs"] - s0["store_syncs"] >= 20,
		      "20 commits one after the other, %d syncs"
		      % (s1["store_syncs"] - s0["store_syncs"]))
		# Four writers at once: never more syncs than commits.
		sh('for s in a b c d; do (for i in $(seq 50); do echo $i > "$1/$s/data"; done) & done; wait')
		s2 = st()
		commits = s2["commits"] - s1["commits"]
		syncs = s2["store_syncs"] - s1["store_syncs"]
		check(commits == 200, "200 commits made, %d counted" % commits)
		check(1 <= syncs <= commits,
		      "%d commits by 4 writers, %d syncs" % (commits, syncs))
	EOF
	# In memory the key is there, and 0.
	ks_unmount
	ks_mount
	assert_eq "$(awk '$1 == "store_syncs" { print $2 }' "$MNT/.stats")" 0 "store_syncs in memory"
}

@test ".stats: a two-state commit adds 2 commits; snapshots are counted and what they keep is reported" {
	ks_mount
	stats_py <<-'EOF'
		sh('mkdir "$1/a" "$1/b" && echo 1234567 > "$1/a/data" && echo 1 > "$1/b/data"')
		b = st()
		sh('mkdir "$1/.txn/T" && echo 2 > "$1/.txn/T/a" && echo 2 > "$1/.txn/T/b"'
		   ' && mv "$1/.txn/T" "$1/.commit/"')
		a = st()
		moved(b, a, commits=2, conflicts=0, snapshot_commits=0)
		# A snapshot: it keeps a's version of its instant once a moves.
		sh('mkdir "$1/.txn/S" "$1/.txn/S2"')
		s = st()
		check(s["snapshots_open"] == 2, "snapshots_open %d" % s["snapshots_open"])
		check(s["snapshot_versions"] == 0 and s["snapshot_bytes"] == 0,
		      "nothing replaced yet, but %r" % s)
		sh('echo 123456789 > "$1/a/data"')
		s = st()
		check(s["snapshot_versions"] == 1 and s["snapshot_bytes"] == 2,
		      "a's old version (2 bytes) held by both: %r" % s)
		sh('test "$(cat "$1/.txn/S/a")" = 2 && mv "$1/.txn/S" "$1/.commit/" && rm -r "$1/.txn/S2"')
		e = st()
		moved(s, e, commits=0, conflicts=0, snapshot_commits=1)
		check(e["snapshots_open"] == 0 and e["snapshot_versions"] == 0 and
		      e["snapshot_bytes"] == 0, "after the snapshots ended: %r" % e)
	EOF
}
