#!/usr/bin/env bats
# SPEC 1 and 4.1: a reader always sees one whole committed version, never a
# mix of two, whatever tool it reads with (tests/tools/torn.py).

load helpers

setup() {
	ks_mount -o max_size=262144
	S=$MNT/s
	mkdir "$S"
}

@test "no torn reads: cat, dd, head, open/read, pread while a writer commits" {
	KS_PY_TIMEOUT=900 run ks_torn 300 cat dd dd1000 head open pread
	echo "$output"
	assert_eq "$status" 0 "torn.py status"
}

@test "no torn reads: a transaction begins with one whole version" {
	KS_PY_TIMEOUT=900 run ks_torn 200 txn txn cat
	echo "$output"
	assert_eq "$status" 0 "torn.py status"
}

@test "no torn reads: many readers of one kind at once" {
	KS_PY_TIMEOUT=900 run ks_torn 200 dd dd dd pread pread
	echo "$output"
	assert_eq "$status" 0 "torn.py status"
}

ks_torn() {
	timeout "$KS_PY_TIMEOUT" python3 "$KS_TOOLS/torn.py" "$S" "$@" 2>&1
}
