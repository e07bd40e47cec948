#!/usr/bin/env bats
# SPEC 8: libkstate, through its C tests (tests/client) on a real mount, and
# the example program built against the installed library.

load helpers

setup() {
	: "${KSTATE_BUILD:=$KS_ROOT/build}"
	ks_mount
}

@test "libkstate: transactions, conflicts, errors, poll on kstate_fd, kstate_wait" {
	run timeout 120 "$KSTATE_BUILD/tests/client/test_lib" "$MNT"
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" "test_lib: ok"
}

@test "libkstate: 8 threads incrementing through kstate_transaction_using_fn end at the exact count" {
	run timeout 300 "$KSTATE_BUILD/tests/client/test_counter" "$MNT" 8 200
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" "test_counter: ok"
}

@test "libkstate: transactions over several states; 4 threads moving amounts between 4 accounts while snapshots audit the total" {
	run timeout 300 "$KSTATE_BUILD/tests/client/test_multi" "$MNT"
	echo "$output"
	[ "$status" -eq 0 ]
	assert_contains "$output" "test_multi: ok"
	# Every transaction over several states is gone, committed or not.
	assert_eq "$(ls -A "$MNT/.txn")" ""
}

# Installs the build into a scratch root, then compiles examples/counter.c
# with nothing but pkg-config, as a user would.
@test "the example compiles against the installed library with pkg-config, and counts" {
	local root=$BATS_TEST_TMPDIR/root prefix pc cflags libs san=
	meson install -C "$KSTATE_BUILD" --no-rebuild --destdir "$root" >"$BATS_TEST_TMPDIR/install.log" 2>&1 ||
		{ cat "$BATS_TEST_TMPDIR/install.log"; return 1; }
	pc=$(dirname "$(find "$root" -name kstate.pc)")
	[ -n "$pc" ]
	prefix=$(PKG_CONFIG_PATH=$pc pkg-config --variable=prefix kstate)
	[ -f "$root$prefix/include/kstate.h" ]
	[ -x "$root$prefix/bin/kstate" ]
	[ -f "$root$prefix/share/man/man1/kstate.1" ]
	[ -f "$root$prefix/share/man/man3/kstate.3" ]
	cflags=$(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$root pkg-config --cflags kstate)
	libs=$(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$root pkg-config --libs kstate)
	# A sanitized build's library needs the sanitizer runtime linked in.
	if nm -D "$KSTATE_BUILD/client/libkstate.so" | grep -q __asan_init; then
		san=-fsanitize=address,undefined
	fi
	# shellcheck disable=SC2086
	cc -Wall -Wextra -Werror $san -o "$BATS_TEST_TMPDIR/counter" \
		"$KS_ROOT/examples/counter.c" $cflags $libs
	local lib
	lib=$(dirname "$(find "$root" -name 'libkstate.so*' | head -n 1)")
	run env LD_LIBRARY_PATH="$lib" "$BATS_TEST_TMPDIR/counter" "$MNT/hits"
	[ "$status" -eq 0 ]
	assert_eq "$output" 1
	assert_file "$MNT/hits/data" '1\n'

	# C and shell writers on one counter: 3 programs and the shell loop of
	# SPEC 4.3, 20 increments each, lose nothing.
	local s=$MNT/hits i j pids=()
	for ((j = 0; j < 3; j++)); do
		for ((i = 0; i < 20; i++)); do
			LD_LIBRARY_PATH=$lib "$BATS_TEST_TMPDIR/counter" "$s" >/dev/null || echo FAILED
		done &
		pids+=($!)
	done
	for ((i = 0; i < 20; i++)); do
		until
			touch "$s/t.$$"
			n=$(cat "$s/t.$$")
			echo $((n + 1)) >"$s/t.$$"
			mv "$s/t.$$" "$s/data" 2>/dev/null
		do
			rm -f "$s/t.$$"
		done
	done
	wait "${pids[@]}"
	assert_file "$s/data" '81\n'
	assert_version "$s" 81
}
