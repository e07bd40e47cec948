/*
 * Reads per second of a state's page.
 *
 *   bench_read [-t SECONDS] [-r ROUNDS] [-s PAGE] NAME=MODE:PATH[:THREADS]...
 *
 * PATH is a state directory (a plain directory elsewhere), created if
 * missing; its `data` is set to a page of PAGE bytes first.  Modes:
 *
 *   pread  pread(fd, buf, 4096, 0) on data opened once: the latest page
 *   cat    open, read to end of file, close: what cat does, without the
 *          process
 *   exec   fork and exec /bin/cat data > /dev/null, and wait for it
 *   kread  kstate_read of the state (libkstate: its shared mapping when
 *          the daemon offers one, the files otherwise)
 *   kbusy  a read of the state's shared mapping (what kstate_read does,
 *          with its retries counted) while a thread commits to the state
 *          flat out (pwrite and fsync on an open data); prints
 *          "NAME_retry RETRIES_PER_READ" and "NAME_commits COMMITS_PER_S"
 *          at exit too
 *   memcpy memcpy of PAGE bytes from a shared mapping of a file at PATH
 *          (on tmpfs): the speed of memory, the baseline of the two above
 */
#include "bench.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kshm.h"
#include "kstate.h"

struct ctx {
	char *data;
	int fd;
	int devnull;
	size_t size;
	char buf[128 * 1024];   /* what cat reads with */
};

static void *setup(const char *path, const struct bench_opts *o)
{
	struct ctx *c = calloc(1, sizeof(*c));

	CHECK(c, "calloc");
	bench_mkdir(path);
	c->data = bench_join(path, "data");
	c->size = o->page;
	bench_put(c->data, o->page);
	c->fd = open(c->data, O_RDONLY);
	CHECK(c->fd >= 0, "open %s", c->data);
	c->devnull = open("/dev/null", O_WRONLY);
	CHECK(c->devnull >= 0, "open /dev/null");
	return c;
}

static void pread_op(void *arg)
{
	struct ctx *c = arg;

	CHECK(pread(c->fd, c->buf, 4096, 0) ==
		      (ssize_t)(c->size < 4096 ? c->size : 4096),
	      "pread %s", c->data);
}

static void cat_op(void *arg)
{
	struct ctx *c = arg;
	size_t total = 0;
	ssize_t n;
	int fd = open(c->data, O_RDONLY);

	CHECK(fd >= 0, "open %s", c->data);
	while ((n = read(fd, c->buf, sizeof(c->buf))) > 0)
		total += (size_t)n;
	CHECK(n == 0 && total == c->size, "read %s", c->data);
	CHECK(close(fd) == 0, "close %s", c->data);
}

static void exec_op(void *arg)
{
	struct ctx *c = arg;
	int status;
	pid_t pid = fork();

	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		dup2(c->devnull, STDOUT_FILENO);
		execl("/bin/cat", "cat", c->data, (char *)NULL);
		_exit(127);
	}
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "cat %s exited with status %d", c->data, status);
}

/* ---- libkstate and the shared mapping ---------------------------------- */

struct kctx {
	struct kstate *s;
	struct kshm *m;
	unsigned char *buf;
	size_t size;
	/* kbusy's writer */
	char *data;
	pthread_t writer;
	uint64_t reads;
};

static atomic_ullong busy_reads, busy_retries, busy_commits;
static uint64_t busy_started;
static char busy_name[64];

static void *kread_setup(const char *path, const struct bench_opts *o)
{
	struct kctx *c = calloc(1, sizeof(*c));

	CHECK(c, "calloc");
	bench_mkdir(path);
	c->data = bench_join(path, "data");
	c->size = o->page;
	bench_put(c->data, o->page);
	c->s = kstate_subscribe(path, KSTATE_READ);
	CHECK(c->s, "kstate_subscribe %s", path);
	c->buf = malloc(o->page + 1);
	CHECK(c->buf, "malloc");
	return c;
}

static void kread_op(void *arg)
{
	struct kctx *c = arg;

	CHECK(kstate_read(c->s, c->buf, c->size + 1, NULL) ==
		      (ssize_t)c->size, "kstate_read");
}

/* Commits as fast as one thread can: pwrite and fsync on a data opened
 * write-only, each fsync a commit (SPEC 4.1) that never conflicts. */
static void *busy_writer(void *arg)
{
	struct kctx *c = arg;
	unsigned char *page = bench_page(c->size, 7);
	int fd = open(c->data, O_WRONLY);

	CHECK(fd >= 0, "open %s", c->data);
	for (unsigned i = 0;; i++) {
		page[0] = (unsigned char)i;
		CHECK(pwrite(fd, page, c->size, 0) == (ssize_t)c->size,
		      "pwrite %s", c->data);
		CHECK(fsync(fd) == 0, "fsync %s", c->data);
		atomic_fetch_add_explicit(&busy_commits, 1,
					  memory_order_relaxed);
	}
	return NULL;
}

static void busy_report(void)
{
	double secs = (double)(bench_now() - busy_started) / 1e9;
	unsigned long long r = atomic_load(&busy_reads);

	if (!r)
		return;
	printf("%s_retry %.6f\n", busy_name,
	       (double)atomic_load(&busy_retries) / (double)r);
	printf("%s_commits %.0f\n", busy_name,
	       secs > 0 ? (double)atomic_load(&busy_commits) / secs : 0.0);
}

static void *kbusy_setup(const char *path, const struct bench_opts *o)
{
	struct kctx *c = kread_setup(path, o);
	int dfd = open(path, O_RDONLY | O_DIRECTORY);
	const char *slash = strrchr(path, '/');

	CHECK(dfd >= 0, "open %s", path);
	CHECK(kshm_open(dfd, &c->m) == 0, "no shared mapping for %s", path);
	close(dfd);
	if (!busy_started) {
		/* The measurement's name is the state's: scripts/bench
		 * names it so. */
		snprintf(busy_name, sizeof(busy_name), "%s",
			 slash ? slash + 1 : path);
		busy_started = bench_now();
		atexit(busy_report);
	}
	CHECK(pthread_create(&c->writer, NULL, busy_writer, c) == 0,
	      "pthread_create");
	return c;
}

static void kbusy_op(void *arg)
{
	struct kctx *c = arg;
	unsigned long long before = atomic_load_explicit(
		&c->m->retries, memory_order_relaxed);
	uint64_t len, v;

	CHECK(kshm_read(c->m, c->buf, c->size + 1, &len, &v) == 0 &&
		      len == c->size, "kshm_read");
	atomic_fetch_add_explicit(&busy_reads, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&busy_retries,
				  atomic_load_explicit(&c->m->retries,
						       memory_order_relaxed) -
					  before,
				  memory_order_relaxed);
}

struct mctx {
	unsigned char *map, *buf;
	size_t size;
};

static void *memcpy_setup(const char *path, const struct bench_opts *o)
{
	struct mctx *c = calloc(1, sizeof(*c));
	char *file;
	int fd;

	CHECK(c, "calloc");
	bench_mkdir(path);
	file = bench_join(path, "page");
	bench_put(file, o->page);
	fd = open(file, O_RDONLY);
	CHECK(fd >= 0, "open %s", file);
	c->size = o->page;
	c->map = mmap(NULL, o->page, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(c->map != MAP_FAILED, "mmap %s", file);
	close(fd);
	free(file);
	c->buf = malloc(o->page);
	CHECK(c->buf, "malloc");
	return c;
}

static void memcpy_op(void *arg)
{
	struct mctx *c = arg;

	memcpy(c->buf, c->map, c->size);
	/* Keep the copy: the compiler must not drop it. */
	__asm__ __volatile__("" : : "r"(c->buf) : "memory");
}

static const struct bench_rate_mode modes[] = {
	{ "kread", kread_setup, kread_op },
	{ "kbusy", kbusy_setup, kbusy_op },
	{ "memcpy", memcpy_setup, memcpy_op },
	{ "pread", setup, pread_op },
	{ "cat", setup, cat_op },
	{ "exec", setup, exec_op },
	{ NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return bench_rates(argc, argv, modes,
			   "[-t SECONDS] [-r ROUNDS] [-s PAGE] "
			   "NAME=pread|cat|exec|kread|kbusy|memcpy:PATH[:THREADS]...");
}
