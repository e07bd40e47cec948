#!/bin/bash
# Makes the seed corpus of fuzz_store_recover (tests/fuzz/corpus/) from
# real stores: mounts a kstatefs with --store, makes changes of every kind
# (create, commit, .txn over two states, rename, chmod, delete; enough
# commits for a compaction, so a snapshot too), unmounts, and packs the
# store's files (tests/fuzz/pack_store.py).  Run it from the top of the
# tree after building build/; it replaces tests/fuzz/corpus/seed-*.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
KSTATEFS=${KSTATEFS:-$PWD/build/fs/kstatefs}
OUT=$PWD/tests/fuzz/corpus
TMP=$(mktemp -d)
MNT=$TMP/mnt
mkdir -p "$MNT" "$OUT"
cleanup() {
	if awk -v m="$MNT" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		fusermount3 -u "$MNT" || fusermount3 -uz "$MNT"
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

# with_store NAME: mount a store in $TMP/NAME, run the rest, unmount, pack.
with_store() {
	local name=$1 i
	shift
	"$KSTATEFS" --store "$TMP/$name" --sync none "$MNT"
	"$@"
	fusermount3 -u "$MNT"
	for i in $(seq 1 100); do
		[ -e "$TMP/$name/lock" ] && ! fuser "$TMP/$name/lock" >/dev/null 2>&1 && break
		sleep 0.05
	done
	sleep 0.2
	python3 tests/fuzz/pack_store.py "$TMP/$name" "$OUT/seed-$name"
	python3 tests/fuzz/pack_store.py --fix "$TMP/$name" "$OUT/seed-$name-fixcrc"
}

small() {
	mkdir "$MNT/a" "$MNT/b" "$MNT/c"
	echo one >"$MNT/a/data"
	echo two >"$MNT/b/data"
	echo 3 >"$MNT/a/t" && mv "$MNT/a/t" "$MNT/a/data"
	mkdir "$MNT/.txn/x"
	echo ax >"$MNT/.txn/x/a"
	echo bx >"$MNT/.txn/x/b"
	mv "$MNT/.txn/x" "$MNT/.commit/"
	mv "$MNT/c" "$MNT/d"
	chmod 700 "$MNT/d"
	rmdir "$MNT/d"
	printf '' >"$MNT/b/data"
}

compacted() {
	local i
	mkdir "$MNT/s" "$MNT/t"
	# More than the compaction slack (1 MiB, core/store_log.h).
	for i in $(seq 1 300); do
		printf '%04000d' "$i" >"$MNT/s/data"
	done
	sleep 0.5
	echo tail >"$MNT/t/data"
	echo last >"$MNT/s/data"
}

with_store small small
with_store compacted compacted
ls -l "$OUT"
