/*
 * inotify for changes the daemon makes on its own.
 *
 * The kernel makes inotify events only for operations that pass through
 * the VFS, and a commit by fsync, close or another state's transaction is
 * the daemon's own doing.  So after every commit the state's `version` is
 * opened through the mount and written to: the kernel then reports
 * IN_MODIFY and IN_CLOSE_WRITE on `version` to its watchers.  The daemon
 * recognises the writer by its process id and makes the write a no-op.
 *
 * The writes come from a small child process, the toucher, fed paths
 * through a pipe by the notifier thread.  Not from a thread of the daemon:
 * a thread waiting in a request to its own mount when the daemon is killed
 * (kill -9) never returns, the daemon never finishes dying, /dev/fuse is
 * never closed, and the mount hangs for everyone.  A child's request is
 * aborted when the daemon's /dev/fuse closes, and the child then exits at
 * the end of the pipe.
 *
 * Commits only mark their state pending, and the notifier takes what is
 * pending at most once per BATCH_INTERVAL: under a stream of commits each
 * write (three requests: open, write, release) then serves every commit of
 * that interval, and the last commit is always followed by one, at most
 * BATCH_INTERVAL later.
 */
#include "notifier.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

#define BATCH_INTERVAL_NS 1000000L   /* 1 ms */

/* One version file to touch: a state's, or one of its views'. */
struct job {
	struct ks_state *st;     /* a reference */
	char view[32];           /* the PERIOD name, or "" */
};

struct ks_notifier {
	pthread_t thread;
	struct ks_lock lock;
	pthread_cond_t cond;
	struct u64map pending;   /* key -> struct job */
	bool stop;
	pid_t toucher;           /* the child that writes to version */
	int pipe_fd;             /* its paths, each ending in a NUL */
};

/* Sends the path of a version file to the toucher. */
static void send_path(struct ks_daemon *d, const struct job *job)
{
	char name[KS_NAME_MAX + 1], path[PATH_MAX];
	const char *p = path;
	size_t left;
	int n;

	if (!ks_state_name(job->st, name))
		return;
	if (job->view[0])
		n = snprintf(path, sizeof(path), "%s/%s/every/%s/version",
			     d->mountpoint, name, job->view);
	else
		n = snprintf(path, sizeof(path), "%s/%s/version",
			     d->mountpoint, name);
	if (n < 0 || n >= (int)sizeof(path))
		return;
	for (left = (size_t)n + 1; left;) {
		ssize_t w = write(d->notifier->pipe_fd, p, left);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the toucher is gone: nobody to tell */
		p += w;
		left -= (size_t)w;
	}
}

/* The toucher: opens each path it is sent, writes a byte, closes.  By full
 * path each time: a descriptor kept open on the mount would make
 * `fusermount3 -u` fail with EBUSY. */
static void touch_paths(int in)
{
	char buf[2 * PATH_MAX];
	size_t have = 0;

	for (;;) {
		ssize_t r = read(in, buf + have, sizeof(buf) - have);
		size_t start = 0;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			_exit(0);
		have += (size_t)r;
		for (size_t i = 0; i < have; i++) {
			int fd;

			if (buf[i])
				continue;
			fd = open(buf + start, O_WRONLY | O_CLOEXEC);
			if (fd >= 0) {
				/* Only the event matters; errors too. */
				if (write(fd, "", 1) < 0)
					(void)0;
				close(fd);
			}
			start = i + 1;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
		if (have == sizeof(buf))
			have = 0; /* no path is that long: drop it */
	}
}

static pid_t start_toucher(int *pipe_out)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		/* Keep nothing of the daemon's: not /dev/fuse (the kernel
		 * must see it close when the daemon dies), not the store's
		 * lock. */
		if (dup2(p[0], 3) < 0)
			_exit(1);
		syscall(SYS_close_range, 4U, ~0U, 0U);
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		touch_paths(3);
	}
	close(p[0]);
	*pipe_out = p[1];
	return pid;
}

/* Sleeps until `until` (CLOCK_MONOTONIC) unless stopped; n->lock held. */
static void wait_until(struct ks_notifier *n, const struct timespec *until)
{
	ks_lock_assert_held(&n->lock);
	while (!n->stop &&
	       ks_cond_timedwait(&n->cond, &n->lock, until) != ETIMEDOUT)
		;
}

static void *notifier_main(void *arg)
{
	struct ks_daemon *d = arg;
	struct ks_notifier *n = d->notifier;
	struct timespec next = { 0, 0 };
	struct u64map batch;
	struct u64map_iter it;
	void *val;

	ks_lock(&n->lock);
	for (;;) {
		while (!n->stop && u64map_len(&n->pending) == 0)
			ks_cond_wait(&n->cond, &n->lock);
		/* Let the commits of this interval gather into one write. */
		wait_until(n, &next);
		if (n->stop)
			break;
		clock_gettime(CLOCK_MONOTONIC, &next);
		next.tv_nsec += BATCH_INTERVAL_NS;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		u64map_move(&batch, &n->pending);
		ks_unlock(&n->lock);

		u64map_iter_init(&it, &batch);
		while (u64map_next(&it, NULL, &val)) {
			struct job *job = val;

			send_path(d, job);
			ks_state_unref(job->st);
			free(job);
		}
		u64map_free(&batch);
		ks_lock(&n->lock);
	}
	ks_unlock(&n->lock);
	return NULL;
}

int notifier_start(struct ks_daemon *d)
{
	struct ks_notifier *n = calloc(1, sizeof(*n));
	int err;

	if (!n)
		return ENOMEM;
	ks_lock_init(&n->lock, "notifier->lock", KS_RANK_FS_NOTIFIER);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&n->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	u64map_init(&n->pending);
	n->toucher = start_toucher(&n->pipe_fd);
	if (n->toucher < 0) {
		err = errno;
		free(n);
		return err;
	}
	d->notifier = n;
	err = pthread_create(&n->thread, NULL, notifier_main, d);
	if (err) {
		close(n->pipe_fd);
		waitpid(n->toucher, NULL, 0);
		d->notifier = NULL;
		free(n);
	}
	return err;
}

void notifier_post(struct ks_daemon *d, struct ks_state *st,
		   const char *view, uint64_t key)
{
	struct ks_notifier *n = d->notifier;
	struct job *job;

	if (!n)
		return;
	ks_lock(&n->lock);
	if (n->stop || u64map_get(&n->pending, key)) {
		/* Already queued: one write serves every commit so far. */
		ks_unlock(&n->lock);
		return;
	}
	job = calloc(1, sizeof(*job));
	if (job) {
		job->st = ks_state_ref(st);
		if (view)
			snprintf(job->view, sizeof(job->view), "%s", view);
		if (u64map_put(&n->pending, key, job) == 0) {
			pthread_cond_signal(&n->cond);
		} else {
			ks_state_unref(job->st);
			free(job);
		}
	}
	ks_unlock(&n->lock);
}

bool notifier_is_self(struct ks_daemon *d, pid_t pid)
{
	return d->notifier && d->notifier->toucher == pid;
}

void notifier_stop(struct ks_daemon *d)
{
	struct ks_notifier *n = d->notifier;
	struct u64map_iter it;
	void *val;

	if (!n)
		return;
	ks_lock(&n->lock);
	n->stop = true;
	pthread_cond_signal(&n->cond);
	ks_unlock(&n->lock);
	pthread_join(n->thread, NULL);
	/* The end of the pipe ends the toucher. */
	close(n->pipe_fd);
	waitpid(n->toucher, NULL, 0);
	u64map_iter_init(&it, &n->pending);
	while (u64map_next(&it, NULL, &val)) {
		struct job *job = val;

		ks_state_unref(job->st);
		free(job);
	}
	u64map_free(&n->pending);
	pthread_cond_destroy(&n->cond);
	ks_lock_destroy(&n->lock);
	free(n);
	d->notifier = NULL;
}
