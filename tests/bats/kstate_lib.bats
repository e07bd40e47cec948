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

# cc_kstate NAME: compiles $BATS_TEST_TMPDIR/NAME.c against the library of
# $KSTATE_BUILD and the header of the sources, as a program using kstate(3)
# is built, into $BATS_TEST_TMPDIR/NAME; the compiler's messages in
# $BATS_TEST_TMPDIR/NAME.log.
cc_kstate() {
	local san=
	# A sanitized build's library needs the sanitizer runtime linked in.
	if nm -D "$KSTATE_BUILD/client/libkstate.so" | grep -q __asan_init; then
		san=-fsanitize=address,undefined
	fi
	cc -std=c11 -Wall -Wextra -Werror $san -I "$KS_ROOT/include" \
		-o "$BATS_TEST_TMPDIR/$1" "$BATS_TEST_TMPDIR/$1.c" \
		-L "$KSTATE_BUILD/client" -Wl,-rpath,"$KSTATE_BUILD/client" \
		-lkstate >"$BATS_TEST_TMPDIR/$1.log" 2>&1
}

# try_kstate: builds $BATS_TEST_TMPDIR/try, which prints what libkstate
# answers, OK or the errno's name:
#   try sub PATH r|w     kstate_subscribe(PATH, KSTATE_READ or KSTATE_WRITE)
#   try multi PATH...    kstate_multi_begin over PATH... (each read-only)
try_kstate() {
	cat >"$BATS_TEST_TMPDIR/try.c" <<'C'
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <kstate.h>

static int answer(int ok)
{
	puts(ok ? "OK" : strerrorname_np(errno));
	return 0;
}

int main(int argc, char **argv)
{
	struct kstate *s[16];
	int n = 0;

	if (argc == 4 && !strcmp(argv[1], "sub")) {
		s[0] = kstate_subscribe(argv[2], argv[3][0] == 'w' ?
					KSTATE_WRITE : KSTATE_READ);
		answer(s[0] != NULL);
		kstate_unsubscribe(s[0]);
		return 0;
	}
	if (argc < 3 || argc > 18 || strcmp(argv[1], "multi"))
		return 2;
	for (int i = 2; i < argc; i++) {
		s[n] = kstate_subscribe(argv[i], KSTATE_READ);
		if (!s[n])
			return answer(0);
		n++;
	}
	{
		struct kstate_multi *m = kstate_multi_begin(s, (size_t)n);

		answer(m != NULL);
		if (m)
			kstate_multi_abort(m);
	}
	while (n > 0)
		kstate_unsubscribe(s[--n]);
	return 0;
}
C
	cc_kstate try || { cat "$BATS_TEST_TMPDIR/try.log"; return 1; }
}

try() {
	timeout 60 "$BATS_TEST_TMPDIR/try" "$@"
}

@test "kstate_subscribe: ENOENT for anything but a state or a view of a kstatefs mount, and nothing is created" {
	try_kstate
	local fake=$BATS_TEST_TMPDIR/fake
	mkdir "$fake"
	echo 1 >"$fake/version"
	echo old >"$fake/data"
	mkdir "$MNT/s"
	echo hi >"$MNT/s/data"
	# A look-alike elsewhere: not a state, for reading or writing.
	assert_eq "$(try sub "$fake" r)" ENOENT "$fake, read"
	assert_eq "$(try sub "$fake" w)" ENOENT "$fake, write"
	assert_eq "$(try sub "$BATS_TEST_TMPDIR/new" w)" ENOENT "a new name outside a mount"
	[ ! -e "$BATS_TEST_TMPDIR/new" ]
	# The mount's own files, files of a state, directories that are not
	# states: not a state either.
	local p
	for p in "$MNT/.stats" "$MNT/.events" "$MNT/s/data" "$MNT/s/version" \
		"$MNT/.txn" "$MNT/s/every" "$MNT"; do
		assert_eq "$(try sub "$p" r)" ENOENT "$p, read"
		assert_eq "$(try sub "$p" w)" ENOENT "$p, write"
	done
	# A new name inside a state is not a new state.
	assert_eq "$(try sub "$MNT/s/newsub" w)" ENOENT "$MNT/s/newsub, write"
	[ ! -e "$MNT/s/newsub" ]
	assert_eq "$(try sub "$MNT/missing" r)" ENOENT "a missing state"
	# States and views are.
	assert_eq "$(try sub "$MNT/s" r)" OK
	assert_eq "$(try sub "$MNT/s" w)" OK
	assert_eq "$(try sub "$MNT/s/every/100ms" r)" OK
	assert_eq "$(try sub "$MNT/t" w)" OK
	[ -d "$MNT/t" ]
	# Nothing written to the look-alike.
	assert_file "$fake/data" 'old\n'
}

@test "kstate_multi_begin: a throttled view is EINVAL; states of one mount join" {
	try_kstate
	mkdir "$MNT/a" "$MNT/b"
	assert_eq "$(try multi "$MNT/a" "$MNT/b")" OK
	assert_eq "$(try multi "$MNT/a/every/1s" "$MNT/b")" EINVAL
	assert_eq "$(try multi "$MNT/a" "$MNT/b/every/100ms")" EINVAL
	assert_eq "$(try multi "$MNT/a/every/1s")" EINVAL
	assert_eq "$(ls -A "$MNT/.txn")" ""
}

@test "kstate_get_ptr: a state handle, const or not, reads; a transaction edits; NULL is EINVAL; other types do not compile" {
	mkdir "$MNT/s"
	echo hello >"$MNT/s/data"
	cat >"$BATS_TEST_TMPDIR/ptr.c" <<'C'
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <kstate.h>

int main(int argc, char **argv)
{
	struct kstate *s = kstate_subscribe(argv[1], KSTATE_READ | KSTATE_WRITE);
	const struct kstate *c = s;
	struct kstate_txn *t;
	const char *page;

	(void)argc;
	if (!s)
		return 1;
	page = kstate_get_ptr(c);
	if (!page || memcmp(page, "hello\n", 6)) {
		puts("const struct kstate *: not the page");
		return 1;
	}
	page = kstate_get_ptr(s);
	if (!page || memcmp(page, "hello\n", 6)) {
		puts("struct kstate *: not the page");
		return 1;
	}
	t = kstate_start_transaction(s);
	if (!t || memcmp(kstate_get_ptr(t), "hello\n", 6))
		return 1;
	kstate_abort(t);
	/* An untyped pointer, NULL included: which handle it is cannot be
	 * known, so it is refused. */
	errno = 0;
	if (kstate_get_ptr(NULL) || errno != EINVAL) {
		puts("NULL: not EINVAL");
		return 1;
	}
	errno = 0;
	if (kstate_get_ptr((void *)s) || errno != EINVAL) {
		puts("void *: not EINVAL");
		return 1;
	}
	kstate_unsubscribe(s);
	puts("ok");
	return 0;
}
C
	cc_kstate ptr || { cat "$BATS_TEST_TMPDIR/ptr.log"; return 1; }
	run "$BATS_TEST_TMPDIR/ptr" "$MNT/s"
	assert_eq "$output" ok
	# Any other type is a compile error, never a state taken for a
	# transaction (the handles compile, to show it is the type).
	local arg
	for arg in k '(const struct kstate *)k' '(struct kstate_txn *)0' \
		'(const void *)k' '(const struct kstate_txn *)0' h 'h->x'; do
		cat >"$BATS_TEST_TMPDIR/bad.c" <<C
#include <kstate.h>
struct holder { int x; };
void *f(struct kstate *k, struct holder *h);
void *f(struct kstate *k, struct holder *h)
{
	(void)k;
	(void)h;
	return (void *)kstate_get_ptr($arg);
}
C
		run cc -std=c11 -Wall -Werror -I "$KS_ROOT/include" -c \
			-o "$BATS_TEST_TMPDIR/bad.o" "$BATS_TEST_TMPDIR/bad.c"
		case $arg in
		k | '(const struct kstate *)k' | '(struct kstate_txn *)0')
			assert_eq "$status" 0 "kstate_get_ptr($arg) compiles: $output" ;;
		*)
			[ "$status" -ne 0 ] || {
				echo "kstate_get_ptr($arg) compiled"
				return 1
			} ;;
		esac
	done
}
