/*
 * Commits per second, and the baselines they are compared with.
 *
 *   bench_commit [-t SECONDS] [-r ROUNDS] [-s PAGE] NAME=MODE:PATH[:THREADS]...
 *
 * PATH is a state directory (a plain directory on tmpfs or disk), created
 * if missing; with THREADS > 1, thread i works on PATH<i>.  Modes:
 *
 *   rename  open(txn, O_CREAT|O_TRUNC), write the page, close,
 *           rename(txn, data): the commit of SPEC 4.3
 *   fsync   pwrite(data, page, 0) + fsync on data opened once O_WRONLY|
 *           O_TRUNC: every fsync commits (SPEC 4.1)
 *   stat    fstat of an open transaction file: a FUSE round trip that does
 *           nothing (transaction attributes are never cached)
 *   poll    poll(timeout 0) of an open data file: the same, by FUSE_POLL
 *   raw     write the bytes of one store record (page + 48) with pwrite,
 *           then fdatasync, into blocks the file already has (a ring of
 *           8 MiB written at setup): what a durable commit cannot beat
 *   append  the same, appending: each fdatasync also commits a new size
 *   txn1    a transaction over one state by .txn/ (SPEC 5): mkdir .txn/T,
 *           write the page to .txn/T/m1, mv .txn/T .commit/ (PATH is the
 *           mount)
 *   txn2    the same over two states, m1 and m2
 *   cas     the safe increment, file by file (SPEC 4.3; what libkstate
 *           does): open(txn, O_RDWR|O_CREAT) (a copy of data at its base
 *           version), pread the page, add 1 to the counter in its first
 *           bytes, pwrite, close, rename(txn, data); on EAGAIN unlink txn
 *           and start again.  Several threads may share one state through
 *           several mounts: give PATH<i> as symbolic links.
 *   lib     the same increment from C through kstate(3):
 *           kstate_transaction_using_fn adding 1 to the counter, retrying
 *           with the library's backoff (the version from the state's
 *           shared mapping, then pwrite and fsync on a data file the
 *           handle keeps open: two requests)
 *   multi   kstate_multi_using_fn moving 1 from PATH to PATH.b (created if
 *           missing): a transfer between two states
 *   fcas    the same increment on one read-write data handle kept open
 *           (SPEC 4.1): pread, pwrite, fsync; on EAGAIN (the failed fsync
 *           moved the handle on to the latest version) read again.  Three
 *           round trips per increment, the cheapest compare-and-swap the
 *           files offer.
 *
 * Against etcd's JSON gateway directly (gateway.h; the endpoint in
 * $KSTATEFS_BENCH_ETCD, PATH a key "/PREFIX/NAME" whose keys are laid out
 * as the etcd store's; "/PREFIX/NAME#" lets threads share NAME):
 *
 *   gwcas   the same increment without FUSE: one read-only txn ranging
 *           over the version key and the page, then one txn comparing the
 *           version's value and putting page, version and commit time
 *           (what the etcd store sends per commit); again if the compare
 *           failed
 *   gwread  a range of the version key: one read round trip
 *   gwput   the three puts without compare: one write round trip
 *
 * Against Redis (redis.h; the server in $KSTATEFS_BENCH_REDIS, PATH a key):
 *
 *   rcas    the same increment as Redis documents its optimistic
 *           transactions: WATCH key, GET key, MULTI, SET key page, EXEC,
 *           each command awaited (5 round trips); again if EXEC answers
 *           nil (the key changed since WATCH)
 *   rcas3   the same with MULTI, SET and EXEC sent at once, as client
 *           libraries' pipelines do (3 round trips)
 *   rping   PING: one round trip
 *
 * Prints "NAME OPS_PER_SECOND" per measurement, then "MODE_retries N" for
 * cas, fcas, gwcas and rcas (rcas3 too): the increments tried again after
 * a conflict, all rounds.
 */
#include "bench.h"
#include "gateway.h"
#include "kstate.h"
#include "redis.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ctx {
	int dirfd;
	int fd;
	size_t size;
	unsigned char *page;
	uint64_t n;
	off_t off;
	off_t ring;          /* raw: the size of the ring, 0 to append */
	int members;
	char txn[32];        /* cas: this thread's transaction file; rcas: the key */
	unsigned char *copy; /* cas, gwcas: the page read */
	struct gw_state *gw;
	struct redis *redis;
	struct kstate *ks[2]; /* lib, multi: the states' handles */
};

static struct ctx *ctx_new(const char *path, const struct bench_opts *o,
			   size_t size)
{
	struct ctx *c = calloc(1, sizeof(*c));

	CHECK(c, "calloc");
	bench_mkdir(path);
	c->dirfd = open(path, O_RDONLY | O_DIRECTORY);
	CHECK(c->dirfd >= 0, "open %s", path);
	c->fd = -1;
	c->size = size;
	c->page = bench_page(size, 0);
	(void)o;
	return c;
}

static void *rename_setup(const char *path, const struct bench_opts *o)
{
	return ctx_new(path, o, o->page);
}

static void rename_op(void *arg)
{
	struct ctx *c = arg;
	int fd = openat(c->dirfd, "txn", O_WRONLY | O_CREAT | O_TRUNC, 0644);

	CHECK(fd >= 0, "open txn");
	c->page[0] = (unsigned char)c->n++;
	CHECK(write(fd, c->page, c->size) == (ssize_t)c->size, "write txn");
	CHECK(close(fd) == 0, "close txn");
	CHECK(renameat(c->dirfd, "txn", c->dirfd, "data") == 0,
	      "rename txn data");
}

static void *fsync_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = ctx_new(path, o, o->page);

	c->fd = openat(c->dirfd, "data", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(c->fd >= 0, "open %s/data", path);
	return c;
}

static void fsync_op(void *arg)
{
	struct ctx *c = arg;

	c->page[0] = (unsigned char)c->n++;
	CHECK(pwrite(c->fd, c->page, c->size, 0) == (ssize_t)c->size,
	      "pwrite data");
	CHECK(fsync(c->fd) == 0, "fsync data");
}

static void *stat_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = ctx_new(path, o, 0);

	c->fd = openat(c->dirfd, "noop", O_RDWR | O_CREAT, 0644);
	CHECK(c->fd >= 0, "open %s/noop", path);
	return c;
}

static void stat_op(void *arg)
{
	struct ctx *c = arg;
	struct stat st;

	CHECK(fstat(c->fd, &st) == 0, "fstat");
}

static void *poll_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = ctx_new(path, o, 0);

	c->fd = openat(c->dirfd, "data", O_RDONLY);
	CHECK(c->fd >= 0, "open %s/data", path);
	return c;
}

static void poll_op(void *arg)
{
	struct ctx *c = arg;
	struct pollfd p = { .fd = c->fd, .events = POLLIN };

	CHECK(poll(&p, 1, 0) == 1, "poll data");
}

/* The record header and commit time the store adds to a page. */
#define RECORD_OVERHEAD 48

#define RING (8 << 20)

static void *append_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = ctx_new(path, o, o->page + RECORD_OVERHEAD);

	c->fd = openat(c->dirfd, "raw", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(c->fd >= 0, "open %s/raw", path);
	return c;
}

static void *raw_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = append_setup(path, o);
	unsigned char *ring = calloc(1, RING);

	CHECK(ring, "calloc");
	CHECK(write(c->fd, ring, RING) == RING, "write %s/raw", path);
	CHECK(fsync(c->fd) == 0, "fsync %s/raw", path);
	c->ring = RING;
	free(ring);
	return c;
}

static void raw_op(void *arg)
{
	struct ctx *c = arg;

	c->page[0] = (unsigned char)c->n++;
	CHECK(pwrite(c->fd, c->page, c->size, c->off) == (ssize_t)c->size,
	      "pwrite raw");
	CHECK(fdatasync(c->fd) == 0, "fdatasync raw");
	c->off += (off_t)c->size;
	if (c->ring && c->off + (off_t)c->size > c->ring)
		c->off = 0;
}

static void *txn_setup(const char *path, const struct bench_opts *o,
		       int members)
{
	struct ctx *c = ctx_new(path, o, o->page);

	c->members = members;
	CHECK(mkdirat(c->dirfd, "m1", 0755) == 0 || errno == EEXIST, "mkdir m1");
	CHECK(mkdirat(c->dirfd, "m2", 0755) == 0 || errno == EEXIST, "mkdir m2");
	return c;
}

static void *txn1_setup(const char *path, const struct bench_opts *o)
{
	return txn_setup(path, o, 1);
}

static void *txn2_setup(const char *path, const struct bench_opts *o)
{
	return txn_setup(path, o, 2);
}

static void txn_op(void *arg)
{
	static const char *const member[] = { ".txn/T/m1", ".txn/T/m2" };
	struct ctx *c = arg;

	CHECK(mkdirat(c->dirfd, ".txn/T", 0755) == 0, "mkdir .txn/T");
	c->page[0] = (unsigned char)c->n++;
	for (int i = 0; i < c->members; i++) {
		int fd = openat(c->dirfd, member[i], O_WRONLY | O_TRUNC);

		CHECK(fd >= 0, "open %s", member[i]);
		CHECK(write(fd, c->page, c->size) == (ssize_t)c->size,
		      "write %s", member[i]);
		CHECK(close(fd) == 0, "close %s", member[i]);
	}
	CHECK(renameat(c->dirfd, ".txn/T", c->dirfd, ".commit/T") == 0,
	      "mv .txn/T .commit/");
}

/* ---- the safe increment ------------------------------------------------ */

static atomic_ulong cas_retries, fcas_retries, gwcas_retries, rcas_retries;

/* The counter is the page's first 20 bytes, in decimal; the rest of the
 * page stays as bench_page made it. */
#define COUNTER_BYTES 20

static uint64_t counter_of(const unsigned char *page, size_t len)
{
	char num[COUNTER_BYTES + 1];

	if (len < COUNTER_BYTES)
		return 0;
	memcpy(num, page, COUNTER_BYTES);
	num[COUNTER_BYTES] = '\0';
	return strtoull(num, NULL, 10);
}

static void set_counter(unsigned char *page, uint64_t n)
{
	char num[COUNTER_BYTES + 1];

	snprintf(num, sizeof(num), "%019" PRIu64 "\n", n);
	memcpy(page, num, COUNTER_BYTES);
}

static void *cas_setup(const char *path, const struct bench_opts *o)
{
	static atomic_uint next;
	struct ctx *c = ctx_new(path, o, o->page);

	CHECK(c->size >= COUNTER_BYTES, "pages of %zu bytes", c->size);
	snprintf(c->txn, sizeof(c->txn), "cas.%d.%u", (int)getpid(),
		 atomic_fetch_add(&next, 1));
	c->copy = malloc(c->size);
	CHECK(c->copy, "malloc");
	return c;
}

static void cas_op(void *arg)
{
	struct ctx *c = arg;

	for (;;) {
		int fd = openat(c->dirfd, c->txn, O_RDWR | O_CREAT, 0644);
		ssize_t n;

		CHECK(fd >= 0, "open %s", c->txn);
		n = pread(fd, c->copy, c->size, 0);
		CHECK(n >= 0, "read %s", c->txn);
		set_counter(c->page, counter_of(c->copy, (size_t)n) + 1);
		CHECK(pwrite(fd, c->page, c->size, 0) == (ssize_t)c->size,
		      "write %s", c->txn);
		CHECK(close(fd) == 0, "close %s", c->txn);
		if (renameat(c->dirfd, c->txn, c->dirfd, "data") == 0)
			return;
		CHECK(errno == EAGAIN, "rename %s data", c->txn);
		CHECK(unlinkat(c->dirfd, c->txn, 0) == 0, "unlink %s", c->txn);
		atomic_fetch_add(&cas_retries, 1);
	}
}

static void *fcas_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = ctx_new(path, o, o->page);

	CHECK(c->size >= COUNTER_BYTES, "pages of %zu bytes", c->size);
	c->fd = openat(c->dirfd, "data", O_RDWR);
	CHECK(c->fd >= 0, "open %s/data", path);
	c->copy = malloc(c->size);
	CHECK(c->copy, "malloc");
	return c;
}

static void fcas_op(void *arg)
{
	struct ctx *c = arg;

	for (;;) {
		ssize_t n = pread(c->fd, c->copy, c->size, 0);

		CHECK(n >= 0, "pread data");
		set_counter(c->page, counter_of(c->copy, (size_t)n) + 1);
		CHECK(pwrite(c->fd, c->page, c->size, 0) == (ssize_t)c->size,
		      "pwrite data");
		if (fsync(c->fd) == 0)
			return;
		CHECK(errno == EAGAIN, "fsync data");
		atomic_fetch_add(&fcas_retries, 1);
	}
}

static struct kstate *subscribe(const char *path)
{
	struct kstate *s = kstate_subscribe(path, KSTATE_READ | KSTATE_WRITE);

	CHECK(s, "kstate_subscribe %s", path);
	return s;
}

static void *lib_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = calloc(1, sizeof(*c));

	CHECK(c, "calloc");
	c->size = o->page;
	CHECK(c->size >= COUNTER_BYTES, "pages of %zu bytes", c->size);
	c->ks[0] = subscribe(path);
	return c;
}

/* Makes T's page SIZE bytes with its counter N. */
static int set_txn_counter(struct kstate_txn *t, size_t size, uint64_t n)
{
	if (kstate_get_length(t) != size && kstate_set_length(t, size) < 0)
		return -1;
	set_counter(kstate_get_ptr(t), n);
	return 0;
}

static uint64_t txn_counter(struct kstate_txn *t)
{
	return counter_of(kstate_get_ptr(t), kstate_get_length(t));
}

static int add_one(struct kstate_txn *t, void *page, void *arg)
{
	struct ctx *c = arg;

	(void)page;
	return set_txn_counter(t, c->size, txn_counter(t) + 1);
}

static void lib_op(void *arg)
{
	struct ctx *c = arg;

	CHECK(kstate_transaction_using_fn(c->ks[0], add_one, c,
					  KSTATE_RETRY_FOREVER) == 0,
	      "kstate_transaction_using_fn");
}

static void *multi_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = lib_setup(path, o);
	size_t n = strlen(path) + 3;
	char *b = malloc(n);

	CHECK(b, "malloc");
	snprintf(b, n, "%s.b", path);
	c->ks[1] = subscribe(b);
	free(b);
	return c;
}

static int move_one(struct kstate_txn *const t[], size_t n, void *arg)
{
	struct ctx *c = arg;
	uint64_t a = txn_counter(t[0]), b = txn_counter(t[1]);

	(void)n;
	if (set_txn_counter(t[0], c->size, a - 1) < 0 ||
	    set_txn_counter(t[1], c->size, b + 1) < 0)
		return -1;
	return 0;
}

static void multi_op(void *arg)
{
	struct ctx *c = arg;

	CHECK(kstate_multi_using_fn(c->ks, 2, move_one, c,
				    KSTATE_RETRY_FOREVER) == 0,
	      "kstate_multi_using_fn");
}

/* A context for an increment against a server (etcd's gateway, Redis): a
 * page with the counter at its head, and room for the page read. */
static struct ctx *counter_ctx(const struct bench_opts *o)
{
	struct ctx *c = calloc(1, sizeof(*c));

	CHECK(c, "calloc");
	c->size = o->page;
	CHECK(c->size >= COUNTER_BYTES, "pages of %zu bytes", c->size);
	c->page = bench_page(c->size, 0);
	c->copy = malloc(c->size);
	CHECK(c->copy, "malloc");
	return c;
}

static void *gw_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = counter_ctx(o);

	c->gw = gw_state_open(path);
	return c;
}

static void gwcas_op(void *arg)
{
	struct ctx *c = arg;

	for (;;) {
		uint64_t version;
		size_t n = gw_state_read(c->gw, &version, c->copy, c->size);

		set_counter(c->page, counter_of(c->copy, n) + 1);
		if (gw_state_cas(c->gw, version, c->page, c->size))
			return;
		atomic_fetch_add(&gwcas_retries, 1);
	}
}

static void gwread_op(void *arg)
{
	struct ctx *c = arg;

	gw_state_version(c->gw);
}

static void gwput_op(void *arg)
{
	struct ctx *c = arg;

	c->page[0] = (unsigned char)c->n++;
	gw_state_put(c->gw, c->n, c->page, c->size);
}

/* ---- Redis --------------------------------------------------------------- */

static void *redis_setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = counter_ctx(o);

	c->redis = redis_open();
	snprintf(c->txn, sizeof(c->txn), "%s", path);
	return c;
}

/* One command, its reply awaited. */
static enum redis_kind redis_cmd(struct ctx *c, int argc,
				 const char *const *argv, const size_t *len,
				 size_t *n)
{
	redis_put(c->redis, argc, argv, len);
	redis_flush(c->redis);
	return redis_reply(c->redis, c->copy, c->size, n);
}

static void rcas_run(struct ctx *c, bool pipelined)
{
	const char *key = c->txn;
	size_t klen = strlen(key), n;

	for (;;) {
		const char *watch[] = { "WATCH", key }, *get[] = { "GET", key };
		const char *multi[] = { "MULTI" }, *exec[] = { "EXEC" };
		const char *set[] = { "SET", key, (const char *)c->page };
		size_t wl[] = { 5, klen }, gl[] = { 3, klen }, ml[] = { 5 };
		size_t el[] = { 4 }, sl[] = { 3, klen, c->size };
		enum redis_kind k;

		redis_cmd(c, 2, watch, wl, &n);
		k = redis_cmd(c, 2, get, gl, &n);
		set_counter(c->page, counter_of(c->copy,
						k == REDIS_BULK ? n : 0) + 1);
		if (pipelined) {
			redis_put(c->redis, 1, multi, ml);
			redis_put(c->redis, 3, set, sl);
			redis_put(c->redis, 1, exec, el);
			redis_flush(c->redis);
			redis_reply(c->redis, NULL, 0, &n);
			redis_reply(c->redis, NULL, 0, &n);
		} else {
			redis_cmd(c, 1, multi, ml, &n);
			redis_cmd(c, 3, set, sl, &n);
		}
		k = pipelined ? redis_reply(c->redis, NULL, 0, &n)
			      : redis_cmd(c, 1, exec, el, &n);
		if (k == REDIS_ARRAY)
			return;
		atomic_fetch_add(&rcas_retries, 1);
	}
}

static void rcas_op(void *arg)
{
	rcas_run(arg, false);
}

static void rcas3_op(void *arg)
{
	rcas_run(arg, true);
}

static void rping_op(void *arg)
{
	struct ctx *c = arg;
	const char *ping[] = { "PING" };
	size_t pl[] = { 4 }, n;

	redis_cmd(c, 1, ping, pl, &n);
}

static const struct bench_rate_mode modes[] = {
	{ "rename", rename_setup, rename_op },
	{ "fsync", fsync_setup, fsync_op },
	{ "stat", stat_setup, stat_op },
	{ "poll", poll_setup, poll_op },
	{ "raw", raw_setup, raw_op },
	{ "append", append_setup, raw_op },
	{ "txn1", txn1_setup, txn_op },
	{ "txn2", txn2_setup, txn_op },
	{ "cas", cas_setup, cas_op },
	{ "fcas", fcas_setup, fcas_op },
	{ "lib", lib_setup, lib_op },
	{ "multi", multi_setup, multi_op },
	{ "gwcas", gw_setup, gwcas_op },
	{ "gwread", gw_setup, gwread_op },
	{ "gwput", gw_setup, gwput_op },
	{ "rcas", redis_setup, rcas_op },
	{ "rcas3", redis_setup, rcas3_op },
	{ "rping", redis_setup, rping_op },
	{ NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	int r = bench_rates(argc, argv, modes,
			    "[-t SECONDS] [-r ROUNDS] [-s PAGE] "
			    "NAME=rename|fsync|stat|poll|raw|append|txn1|txn2|"
			    "cas|fcas|lib|multi|gwcas|gwread|gwput|rcas|rcas3|rping:"
			    "PATH[:THREADS]...");

	printf("cas_retries %lu\nfcas_retries %lu\ngwcas_retries %lu\n"
	       "rcas_retries %lu\n",
	       atomic_load(&cas_retries), atomic_load(&fcas_retries),
	       atomic_load(&gwcas_retries), atomic_load(&rcas_retries));
	return r;
}
