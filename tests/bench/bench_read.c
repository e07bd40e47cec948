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
 */
#include "bench.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

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

static const struct bench_rate_mode modes[] = {
	{ "pread", setup, pread_op },
	{ "cat", setup, cat_op },
	{ "exec", setup, exec_op },
	{ NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return bench_rates(argc, argv, modes,
			   "[-t SECONDS] [-r ROUNDS] [-s PAGE] "
			   "NAME=pread|cat|exec:PATH[:THREADS]...");
}
