/*
 * A very small test harness for the core/ unit tests: each test is a
 * function; KT_RUN prints what it checks and whether it passed, checks
 * print the failing expression with its values and carry on, and
 * kt_finish() turns the tally into the exit status meson expects.
 */
#ifndef KSTATEFS_TESTS_KTEST_H
#define KSTATEFS_TESTS_KTEST_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"

static int kt_failed_checks;   /* in the running test */
static int kt_failed_tests;
static int kt_ran_tests;

static inline void kt_fail_at(const char *file, int line, const char *what)
{
	/* stdout, so that failures appear under the test that made them */
	printf("   FAIL %s:%d: %s\n", file, line, what);
	fflush(stdout);
	__atomic_add_fetch(&kt_failed_checks, 1, __ATOMIC_SEQ_CST);
}

#define KT_CHECK(cond)                                                      \
	do {                                                                \
		if (!(cond))                                                \
			kt_fail_at(__FILE__, __LINE__, #cond);              \
	} while (0)

/* Integers of any kind, compared as unsigned 64-bit; both values are
 * printed on failure. */
#define KT_EQ(a, b)                                                         \
	do {                                                                \
		unsigned long long kt_a_ = (unsigned long long)(a);         \
		unsigned long long kt_b_ = (unsigned long long)(b);         \
		if (kt_a_ != kt_b_) {                                       \
			char kt_msg_[512];                                  \
			snprintf(kt_msg_, sizeof(kt_msg_),                  \
				 "%s == %s (%llu != %llu)", #a, #b, kt_a_,  \
				 kt_b_);                                    \
			kt_fail_at(__FILE__, __LINE__, kt_msg_);            \
		}                                                           \
	} while (0)

/* An engine call's result against the expected errno (0 for success). */
#define KT_ERR(expr, want)                                                  \
	do {                                                                \
		int kt_got_ = (expr);                                       \
		int kt_want_ = (want);                                      \
		if (kt_got_ != kt_want_) {                                  \
			char kt_msg_[512];                                  \
			snprintf(kt_msg_, sizeof(kt_msg_),                  \
				 "%s returned %d (%s), expected %d (%s)",   \
				 #expr, kt_got_, strerror(kt_got_),         \
				 kt_want_, strerror(kt_want_));             \
			kt_fail_at(__FILE__, __LINE__, kt_msg_);            \
		}                                                           \
	} while (0)

/* Writes up to 48 bytes of p into out as a C string literal body. */
static inline const char *kt_show(char *out, const void *p, size_t len)
{
	const unsigned char *b = p;
	char *o = out;

	for (size_t i = 0; i < len && i < 48; i++) {
		if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\' && b[i] != '"')
			*o++ = (char)b[i];
		else
			o += sprintf(o, "\\%03o", b[i]);
	}
	if (len > 48)
		o += sprintf(o, "...");
	*o = '\0';
	return out;
}

/* A page (or any byte range) against a C string or byte buffer. */
#define KT_BYTES(ptr, len, want, wantlen)                                   \
	do {                                                                \
		size_t kt_l_ = (len), kt_wl_ = (wantlen);                   \
		if (kt_l_ != kt_wl_ ||                                      \
		    (kt_l_ && memcmp((ptr), (want), kt_l_) != 0)) {         \
			char kt_msg_[1024], kt_s1_[256], kt_s2_[256];       \
			snprintf(kt_msg_, sizeof(kt_msg_),                  \
				 "%s: got %zu bytes \"%s\", expected %zu "  \
				 "bytes \"%s\"", #ptr, kt_l_,               \
				 kt_show(kt_s1_, (ptr), kt_l_), kt_wl_,     \
				 kt_show(kt_s2_, (want), kt_wl_));          \
			kt_fail_at(__FILE__, __LINE__, kt_msg_);            \
		}                                                           \
	} while (0)

/* A fatal check: the test cannot go on without it. */
#define KT_REQUIRE(cond)                                                    \
	do {                                                                \
		if (!(cond)) {                                              \
			kt_fail_at(__FILE__, __LINE__, #cond);              \
			return;                                             \
		}                                                           \
	} while (0)

/* Runs one test in a child process, so that a test that crashes (or
 * leaks, under LeakSanitizer) fails alone and the others still run.
 * KT_NOFORK=1 in the environment runs tests in-process, for a debugger. */
static inline void kt_run(void (*fn)(void), const char *name,
			  const char *what)
{
	int status = 0;
	pid_t pid;

	printf("-- %s: %s\n", name, what);
	fflush(stdout);
	kt_failed_checks = 0;
	kt_ran_tests++;
	if (getenv("KT_NOFORK")) {
		fn();
		status = kt_failed_checks ? 1 : 0;
	} else if ((pid = fork()) == 0) {
		fn();
		fflush(stdout);
		exit(kt_failed_checks ? 1 : 0);
	} else if (pid < 0) {
		perror("fork");
		exit(EXIT_FAILURE);
	} else {
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	if (WIFSIGNALED(status)) {
		kt_failed_tests++;
		printf("   FAILED: crashed with signal %d (%s)\n",
		       WTERMSIG(status), strsignal(WTERMSIG(status)));
	} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		kt_failed_tests++;
		printf("   FAILED\n");
	} else {
		printf("   ok\n");
	}
	fflush(stdout);
}

#define KT_RUN(fn, what) kt_run(fn, #fn, what)

static inline int kt_finish(const char *suite)
{
	printf("%s: %d of %d tests passed\n", suite,
	       kt_ran_tests - kt_failed_tests, kt_ran_tests);
	return kt_failed_tests ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- engine helpers ----------------------------------------------------- */

static inline struct ks_engine *kt_engine(size_t max_size,
					  uint32_t max_states,
					  uint32_t max_txns,
					  struct ks_store *store)
{
	struct ks_engine_config cfg = {
		.max_size = max_size,
		.max_states = max_states,
		.max_txns = max_txns,
	};
	struct ks_engine *eng = NULL;

	if (ks_engine_new(&cfg, store, &eng) != 0 || !eng) {
		fprintf(stderr, "ks_engine_new failed\n");
		exit(EXIT_FAILURE);
	}
	return eng;
}

static inline struct ks_engine *kt_default_engine(void)
{
	return kt_engine(4096, 65536, 1024, NULL);
}

static inline struct ks_state_attr kt_attr(void)
{
	struct ks_state_attr a = { .uid = 1000, .gid = 1000, .mode = 0755 };

	clock_gettime(CLOCK_REALTIME, &a.ctime);
	return a;
}

/* Creates NAME and returns a reference, or aborts the program. */
static inline struct ks_state *kt_state(struct ks_engine *eng,
					const char *name)
{
	struct ks_state_attr a = kt_attr();
	struct ks_state *st = NULL;
	int err = ks_state_create(eng, name, &a, &st);

	if (err || !st) {
		fprintf(stderr, "ks_state_create(%s): %s\n", name,
			strerror(err));
		exit(EXIT_FAILURE);
	}
	return st;
}

/* Copies the current page into buf (NUL-terminated, cap bytes at most) and
 * returns its version. */
static inline uint64_t kt_read_current(struct ks_state *st, char *buf,
				       size_t cap, size_t *len)
{
	struct ks_page *p = ks_state_current(st);
	uint64_t v = p->version;
	size_t n = p->len < cap - 1 ? p->len : cap - 1;

	memcpy(buf, p->bytes, n);
	buf[n] = '\0';
	if (len)
		*len = p->len;
	ks_page_unref(p);
	return v;
}

/* Does the current page hold exactly the string want? */
#define KT_PAGE_IS(st, want)                                                \
	do {                                                                \
		struct ks_page *kt_p_ = ks_state_current(st);               \
		KT_BYTES(kt_p_->bytes, kt_p_->len, (want), strlen(want));   \
		ks_page_unref(kt_p_);                                       \
	} while (0)

/* The private page of a transaction. */
#define KT_TXN_IS(txn, want)                                                \
	do {                                                                \
		char kt_tb_[8192];                                           \
		size_t kt_tn_ = ks_txn_read((txn), kt_tb_, sizeof(kt_tb_), 0); \
		KT_BYTES(kt_tb_, kt_tn_, (want), strlen(want));               \
		KT_EQ(ks_txn_size(txn), strlen(want));                      \
	} while (0)

#endif
