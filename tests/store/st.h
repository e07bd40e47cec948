/*
 * Helpers for the store tests: a scratch directory, an engine over a log
 * store, and checks that stop the test with file and line.
 */
#ifndef KSTATEFS_TESTS_STORE_ST_H
#define KSTATEFS_TESTS_STORE_ST_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "store_log.h"

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__,        \
				__LINE__, #cond);                            \
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

static inline double st_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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

#endif
