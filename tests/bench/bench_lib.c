/*
 * libkstate's increment per second: what a C program gets from kstate(3).
 *
 *   bench_lib [-t SECONDS] [-r ROUNDS] [-s PAGE] NAME=MODE:PATH[:THREADS]...
 *
 * PATH is a state directory on a kstatefs mount (created if missing); with
 * THREADS > 1, thread i works on PATH<i> (symbolic links to one state make
 * them contend).  Modes:
 *
 *   lib     kstate_transaction_using_fn adding 1 to a counter in the first
 *           bytes of a PAGE-byte page, retrying on conflict with the
 *           library's backoff: the increment of bench_commit's cas, as a
 *           program using the library writes it
 *   multi   kstate_multi_using_fn moving 1 from PATH to PATH.b (created
 *           if missing): a transfer between two states
 *   files   the same increment as lib the way libkstate did it before it
 *           kept data open: open(txn, O_RDWR|O_CREAT) (a copy of data),
 *           pread, pwrite, close, rename(txn, data); on EAGAIN unlink and
 *           again (bench_commit's cas, without the library): the baseline
 *
 * Prints "NAME OPS_PER_SECOND" per measurement.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kstate.h"

#define COUNTER_BYTES 20  /* 19 digits and a newline, as bench_commit's */

struct ctx {
	struct kstate *s[2];
	size_t size;
	int dirfd;           /* files: the state directory */
	char txn[32];        /* files: this thread's transaction file */
	char *page;          /* files: the page */
};

static int64_t counter_of(const char *page, size_t len)
{
	char num[COUNTER_BYTES + 1];

	if (len < COUNTER_BYTES)
		return 0;
	memcpy(num, page, COUNTER_BYTES);
	num[COUNTER_BYTES] = '\0';
	return strtoll(num, NULL, 10);
}

/* Makes the page SIZE bytes and its counter N. */
static int set_counter(struct kstate_txn *t, size_t size, int64_t n)
{
	char num[32];

	if (kstate_get_length(t) != size && kstate_set_length(t, size) < 0)
		return -1;
	snprintf(num, sizeof num, "%019" PRId64 "\n", n);
	memcpy(kstate_get_ptr(t), num, COUNTER_BYTES);
	return 0;
}

static struct kstate *subscribe(const char *path)
{
	struct kstate *s = kstate_subscribe(path, KSTATE_READ | KSTATE_WRITE);

	CHECK(s, "kstate_subscribe %s", path);
	return s;
}

static void *lib_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = calloc(1, sizeof *c);

	CHECK(c, "calloc");
	c->size = o->page < COUNTER_BYTES ? COUNTER_BYTES : o->page;
	c->s[0] = subscribe(path);
	return c;
}

static int add_one(struct kstate_txn *t, void *page, void *arg)
{
	struct ctx *c = arg;

	return set_counter(t, c->size,
			   counter_of(page, kstate_get_length(t)) + 1);
}

static void lib_op(void *arg)
{
	struct ctx *c = arg;

	CHECK(kstate_transaction_using_fn(c->s[0], add_one, c,
					  KSTATE_RETRY_FOREVER) == 0,
	      "kstate_transaction_using_fn");
}

static void *multi_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = lib_setup(path, o);
	char *b = malloc(strlen(path) + 3);

	CHECK(b, "malloc");
	sprintf(b, "%s.b", path);
	c->s[1] = subscribe(b);
	free(b);
	return c;
}

static int move_one(struct kstate_txn *const t[], size_t n, void *arg)
{
	struct ctx *c = arg;
	int64_t a = counter_of(kstate_get_ptr(t[0]), kstate_get_length(t[0]));
	int64_t b = counter_of(kstate_get_ptr(t[1]), kstate_get_length(t[1]));

	(void)n;
	if (set_counter(t[0], c->size, a - 1) < 0 ||
	    set_counter(t[1], c->size, b + 1) < 0)
		return -1;
	return 0;
}

static void multi_op(void *arg)
{
	struct ctx *c = arg;

	CHECK(kstate_multi_using_fn(c->s, 2, move_one, c,
				    KSTATE_RETRY_FOREVER) == 0,
	      "kstate_multi_using_fn");
}

static void *files_setup(const char *path, const struct bench_opts *o)
{
	static int next;
	struct ctx *c = lib_setup(path, o);

	c->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(c->dirfd >= 0, "open %s", path);
	snprintf(c->txn, sizeof c->txn, "files.%d.%d", (int)getpid(),
		 __atomic_add_fetch(&next, 1, __ATOMIC_RELAXED));
	c->page = calloc(1, c->size + 1);
	CHECK(c->page, "calloc");
	return c;
}

static void files_op(void *arg)
{
	struct ctx *c = arg;
	char num[32];

	for (;;) {
		int fd = openat(c->dirfd, c->txn, O_RDWR | O_CREAT, 0644);
		ssize_t n;

		CHECK(fd >= 0, "open %s", c->txn);
		n = pread(fd, c->page, c->size + 1, 0);
		CHECK(n >= 0, "read %s", c->txn);
		snprintf(num, sizeof num, "%019" PRId64 "\n",
			 counter_of(c->page, (size_t)n) + 1);
		memcpy(c->page, num, COUNTER_BYTES);
		CHECK(pwrite(fd, c->page, c->size, 0) == (ssize_t)c->size,
		      "write %s", c->txn);
		CHECK(close(fd) == 0, "close %s", c->txn);
		if (renameat(c->dirfd, c->txn, c->dirfd, "data") == 0)
			return;
		CHECK(errno == EAGAIN, "rename %s data", c->txn);
		CHECK(unlinkat(c->dirfd, c->txn, 0) == 0, "unlink %s", c->txn);
	}
}

static const struct bench_rate_mode modes[] = {
	{ "lib", lib_setup, lib_op },
	{ "multi", multi_setup, multi_op },
	{ "files", files_setup, files_op },
	{ NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return bench_rates(argc, argv, modes,
			   "[-t SECONDS] [-r ROUNDS] [-s PAGE] "
			   "NAME=lib|multi|files:PATH[:THREADS]...");
}
