/*
 * The harness of the C tests (tests/unit, tests/store, tests/client), in
 * one header.  Each test program is one executable; it includes this file
 * and nothing else of the harness.
 *
 * Two styles of check, both here for every test:
 *
 *   KT_CHECK, KT_EQ, KT_ERR, KT_BYTES, KT_REQUIRE   print the failure and go
 *       on; each test is a function run by KT_RUN in a child process, and
 *       kt_finish() turns the tally into the exit status (tests/unit).
 *   CHECK, CHECK_EQ, CHECK_ERR   print the failure to stderr and exit(1) at
 *       once: the first failure ends the program (tests/store,
 *       tests/client).
 *
 * Then: clocks (now_ms, st_now, sleep_ms); and, for a test built against
 * core/ (engine.h on its include path), engine helpers (kt_engine,
 * kt_state, KT_PAGE_IS, ...) and, with store_log.h, a log store in a
 * scratch directory (struct st, st_open, st_expect, ...).
 */
#ifndef KSTATEFS_TESTS_HARNESS_H
#define KSTATEFS_TESTS_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include("engine.h")
#define KT_HAVE_ENGINE 1
#include "engine.h"
#endif
#if __has_include("store_log.h")
#define KT_HAVE_STORE_LOG 1
#include "store_log.h"
#endif
#endif

/* ---- checks that go on: KT_* ------------------------------------------ */

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

/* Runs one test in this process: for tests that build on what the ones
 * before them left (a server started once, its revisions). */
static inline void kt_run_here(void (*fn)(void), const char *name,
			       const char *what)
{
	printf("-- %s: %s\n", name, what);
	fflush(stdout);
	kt_failed_checks = 0;
	kt_ran_tests++;
	fn();
	if (kt_failed_checks) {
		kt_failed_tests++;
		printf("   FAILED\n");
	} else {
		printf("   ok\n");
	}
	fflush(stdout);
}

#define KT_RUN_HERE(fn, what) kt_run_here(fn, #fn, what)

static inline int kt_finish(const char *suite)
{
	printf("%s: %d of %d tests passed\n", suite,
	       kt_ran_tests - kt_failed_tests, kt_ran_tests);
	return kt_failed_tests ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- checks that stop the program: CHECK* ------------------------------ */

/* The condition, and errno as it was: libkstate and system calls report
 * through it. */
#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			int kt_errno_ = errno;                               \
			fprintf(stderr, "FAIL %s:%d: %s (errno %d: %s)\n",   \
				__FILE__, __LINE__, #cond, kt_errno_,        \
				strerror(kt_errno_));                        \
			exit(1);                                             \
		}                                                            \
	} while (0)

#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		unsigned long long st_a_ = (unsigned long long)(a);          \
		unsigned long long st_b_ = (unsigned long long)(b);          \
		if (st_a_ != st_b_) {                                        \
			fprintf(stderr, "FAIL %s:%d: %s == %s (%llu != "     \
				"%llu)\n", __FILE__, __LINE__, #a, #b,       \
				st_a_, st_b_);                               \
			exit(1);                                             \
		}                                                            \
	} while (0)

#define CHECK_ERR(expr, want)                                                \
	do {                                                                 \
		int st_got_ = (expr), st_want_ = (want);                     \
		if (st_got_ != st_want_) {                                   \
			fprintf(stderr, "FAIL %s:%d: %s gave %s, wanted "    \
				"%s\n", __FILE__, __LINE__, #expr,           \
				strerror(st_got_), strerror(st_want_));      \
			exit(1);                                             \
		}                                                            \
	} while (0)

/* ---- clocks -------------------------------------------------------------- */

/* CLOCK_MONOTONIC in milliseconds, and in seconds. */
static inline double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline double st_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- scratch directories ------------------------------------------------ */

/* A scratch directory on the disk the tests run on (not tmpfs): a fresh
 * name each call, removed by st_rmrf. */
static inline char *st_tmpdir(void)
{
	const char *base = getenv("KS_STORE_TEST_DIR");
	char *dir = malloc(4096);

	CHECK(dir);
	snprintf(dir, 4096, "%s/ks-store-XXXXXX", base ? base : "/var/tmp");
	CHECK(mkdtemp(dir));
	return dir;
}

static inline int st_rm_one(const char *path, const struct stat *sb, int type,
			    struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	remove(path);
	return 0;
}

static inline void st_rmrf(const char *dir)
{
	nftw(dir, st_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int st_sum_one(const char *path, const struct stat *sb,
			     int type, struct FTW *ftw);
static uint64_t st_sum;
static inline int st_sum_one(const char *path, const struct stat *sb,
			     int type, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (type == FTW_F && strcmp(path + strlen(path) - 4, "lock") != 0)
		st_sum += (uint64_t)sb->st_size;
	return 0;
}

/* Bytes in the store's files (the lock file aside). */
static inline uint64_t st_du(const char *dir)
{
	st_sum = 0;
	nftw(dir, st_sum_one, 16, FTW_PHYS);
	return st_sum;
}

static inline void st_copyfile(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out;
	ssize_t n;

	CHECK(in >= 0);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		CHECK(write(out, buf, (size_t)n) == n);
	close(in);
	close(out);
}

#ifdef KT_HAVE_ENGINE

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

#ifdef KT_HAVE_STORE_LOG

/* ---- an engine over a log store ---------------------------------------- */

/* An engine over the log store in dir. */
struct st {
	struct ks_store *store;
	struct ks_engine *eng;
	char msg[512];
};

static inline int st_open_cfg(struct st *s, const char *dir,
			      enum ks_sync sync, size_t max_size)
{
	struct ks_engine_config cfg = { .max_size = max_size,
					.max_states = 65536,
					.max_txns = 1024 };
	int err;

	memset(s, 0, sizeof(*s));
	err = ks_log_open(dir, sync, &s->store, s->msg, sizeof(s->msg));
	if (err)
		return err;
	CHECK_ERR(ks_engine_new(&cfg, s->store, &s->eng), 0);
	err = ks_log_recover(s->store, s->eng, s->msg, sizeof(s->msg));
	if (err) {
		ks_log_close(s->store);
		ks_engine_free(s->eng);
		s->store = NULL;
		s->eng = NULL;
	}
	return err;
}

static inline int st_open(struct st *s, const char *dir, enum ks_sync sync)
{
	return st_open_cfg(s, dir, sync, 4096);
}

/* Opens or fails the test, printing the store's message. */
static inline void st_open_ok(struct st *s, const char *dir,
			      enum ks_sync sync)
{
	int err = st_open(s, dir, sync);

	if (err) {
		fprintf(stderr, "FAIL: cannot open %s: %s: %s\n", dir,
			strerror(err), s->msg);
		exit(1);
	}
}

static inline void st_close(struct st *s)
{
	ks_log_close(s->store);
	ks_engine_free(s->eng);
	s->store = NULL;
	s->eng = NULL;
}

static inline struct ks_state *st_create(struct st *s, const char *name)
{
	struct ks_state_attr attr = { .uid = getuid(), .gid = getgid(),
				      .mode = 0644 };
	struct ks_state *st;

	clock_gettime(CLOCK_REALTIME, &attr.ctime);
	CHECK_ERR(ks_state_create(s->eng, name, &attr, &st), 0);
	return st;
}

static inline struct ks_state *st_find(struct st *s, const char *name)
{
	struct ks_state *st = NULL;

	if (ks_state_lookup(s->eng, name, &st))
		return NULL;
	return st;
}

/* Checks that NAME exists at VERSION with exactly LEN bytes. */
static inline void st_expect_at(const char *file, int line, struct st *s,
				const char *name, uint64_t version,
				const void *bytes, size_t len)
{
	struct ks_state *st = st_find(s, name);
	struct ks_page *page;

	if (!st) {
		fprintf(stderr, "FAIL %s:%d: state %s missing\n", file, line,
			name);
		exit(1);
	}
	page = ks_state_current(st);
	if (page->version != version || page->len != len ||
	    (len && memcmp(page->bytes, bytes, len))) {
		fprintf(stderr, "FAIL %s:%d: state %s at version %llu with "
			"%zu bytes, wanted version %llu with %zu bytes%s\n",
			file, line, name, (unsigned long long)page->version,
			page->len, (unsigned long long)version, len,
			page->len == len ? " (different bytes)" : "");
		exit(1);
	}
	ks_page_unref(page);
	ks_state_unref(st);
}

#define st_expect(s, name, version, bytes, len)                              \
	st_expect_at(__FILE__, __LINE__, s, name, version, bytes, len)

#endif /* KT_HAVE_STORE_LOG */
#endif /* KT_HAVE_ENGINE */

#endif
