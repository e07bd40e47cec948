/*
 * inotify for changes the daemon makes on its own.
 *
 * The kernel makes inotify events only for operations that pass through
 * the VFS, and a commit by fsync, close or another state's transaction is
 * the daemon's own doing.  So after every commit this thread opens the
 * state's `version` through the mount and writes to it: the kernel then
 * reports IN_MODIFY and IN_CLOSE_WRITE on `version` to its watchers.  The
 * daemon recognises the thread by its id and makes the write a no-op.
 *
 * It must be a thread that serves no FUSE requests (its writes are served
 * by the others).  Commits only mark their state pending, and the thread
 * takes what is pending at most once per BATCH_INTERVAL: under a stream of
 * commits each write (three requests: open, write, release) then serves
 * every commit of that interval, and the last commit is always followed by
 * one, at most BATCH_INTERVAL later.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATCH_INTERVAL_NS 1000000L   /* 1 ms */

/* One version file to touch: a state's, or one of its views'. */
struct job {
	struct ks_state *st;     /* a reference */
	char view[32];           /* the PERIOD name, or "" */
};

struct ks_notifier {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct u64map pending;   /* key -> struct job */
	bool stop;
	atomic_int tid;
};

/* Opens by full path each time: a descriptor kept open on the mount would
 * make `fusermount3 -u` fail with EBUSY. */
static void touch_version(struct ks_daemon *d, const struct job *job)
{
	char name[KS_NAME_MAX + 1], path[PATH_MAX];
	int fd, n;

	if (!ks_state_name(job->st, name))
		return;
	if (job->view[0])
		n = snprintf(path, sizeof(path), "%s/%s/every/%s/version",
			     d->mountpoint, name, job->view);
	else
		n = snprintf(path, sizeof(path), "%s/%s/version",
			     d->mountpoint, name);
	if (n >= (int)sizeof(path))
		return;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return; /* renamed or deleted meanwhile: nobody to tell */
	if (write(fd, "", 1) < 0) {
		/* Nothing to recover: the next commit tries again. */
	}
	close(fd);
}

/* Sleeps until `until` (CLOCK_MONOTONIC) unless stopped; n->lock held. */
static void wait_until(struct ks_notifier *n, const struct timespec *until)
{
	while (!n->stop &&
	       pthread_cond_timedwait(&n->cond, &n->lock, until) != ETIMEDOUT)
		;
}

static void *notifier_main(void *arg)
{
	struct ks_daemon *d = arg;
	struct ks_notifier *n = d->notifier;
	struct timespec next = { 0, 0 };
	struct u64map batch;

	atomic_store(&n->tid, (int)syscall(SYS_gettid));
	pthread_mutex_lock(&n->lock);
	for (;;) {
		while (!n->stop && n->pending.len == 0)
			pthread_cond_wait(&n->cond, &n->lock);
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
		batch = n->pending;
		u64map_init(&n->pending);
		pthread_mutex_unlock(&n->lock);

		for (size_t i = 0; i < batch.cap; i++) {
			struct job *job = batch.vals[i];

			if (!job)
				continue;
			touch_version(d, job);
			ks_state_unref(job->st);
			free(job);
		}
		u64map_free(&batch);
		pthread_mutex_lock(&n->lock);
	}
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

int notifier_start(struct ks_daemon *d)
{
	struct ks_notifier *n = calloc(1, sizeof(*n));
	int err;

	if (!n)
		return ENOMEM;
	pthread_mutex_init(&n->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&n->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	u64map_init(&n->pending);
	d->notifier = n;
	err = pthread_create(&n->thread, NULL, notifier_main, d);
	if (err) {
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
	pthread_mutex_lock(&n->lock);
	if (n->stop || u64map_get(&n->pending, key)) {
		/* Already queued: one write serves every commit so far. */
		pthread_mutex_unlock(&n->lock);
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
	pthread_mutex_unlock(&n->lock);
}

bool notifier_is_self(struct ks_daemon *d, pid_t tid)
{
	return d->notifier && atomic_load(&d->notifier->tid) == (int)tid;
}

void notifier_stop(struct ks_daemon *d)
{
	struct ks_notifier *n = d->notifier;

	if (!n)
		return;
	pthread_mutex_lock(&n->lock);
	n->stop = true;
	pthread_cond_signal(&n->cond);
	pthread_mutex_unlock(&n->lock);
	pthread_join(n->thread, NULL);
	for (size_t i = 0; i < n->pending.cap; i++) {
		struct job *job = n->pending.vals[i];

		if (job) {
			ks_state_unref(job->st);
			free(job);
		}
	}
	u64map_free(&n->pending);
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
	free(n);
	d->notifier = NULL;
}
