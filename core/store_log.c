/*
 * The log store's ops table (store.h), and what ties its parts together:
 * opening a directory and taking its lock, the owner's pid, counters,
 * closing.  The record format is in log_codec.c, the writer in
 * log_group.c, snapshots and compaction in log_snapshot.c, reading back in
 * log_recover.c, and every system call goes through log_io.c.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <unistd.h>

static int mkdir_p(struct ks_log *log, const char *dir)
{
	char *copy = strdup(dir);
	int err = 0;

	if (!copy)
		return ENOMEM;
	for (char *p = copy + 1; ; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;

			*p = 0;
			if (log->io.mkdir(log->io.ctx, copy, 0700) &&
			    errno != EEXIST)
				err = errno;
			*p = c;
			if (err || c == 0)
				break;
		}
	}
	free(copy);
	return err;
}

static void write_owner(struct ks_log *log)
{
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	if (log->io.ftruncate(log->io.ctx, log->lockfd, 0) == 0 &&
	    log->io.pwrite(log->io.ctx, log->lockfd, buf, (size_t)len, 0) ==
	    len)
		return;
}

/* "process 1234 (kstatefs)", from the lock file and /proc. */
static void describe_holder(struct ks_log *log, char *out, size_t outlen)
{
	char buf[32] = "", path[64], comm[64] = "";
	ssize_t n = log->io.pread(log->io.ctx, log->lockfd, buf,
				  sizeof(buf) - 1, 0);
	long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
	int fd;

	if (pid <= 0) {
		snprintf(out, outlen, "another process");
		return;
	}
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	fd = log->io.openat(log->io.ctx, AT_FDCWD, path, O_RDONLY | O_CLOEXEC,
			    0);
	if (fd >= 0) {
		n = log->io.pread(log->io.ctx, fd, comm, sizeof(comm) - 1, 0);
		comm[n > 0 ? n : 0] = 0;
		comm[strcspn(comm, "\n")] = 0;
		log->io.close(log->io.ctx, fd);
	}
	if (comm[0])
		snprintf(out, outlen, "process %ld (%s)", pid, comm);
	else
		snprintf(out, outlen, "process %ld", pid);
}

static void log_free(struct ks_log *log)
{
	if (log->lockfd >= 0)
		log->io.close(log->io.ctx, log->lockfd); /* releases flock */
	if (log->dirfd >= 0)
		log->io.close(log->io.ctx, log->dirfd);
	ks_lock_destroy(&log->mu);
	ks_lock_destroy(&log->compact_mu);
	pthread_cond_destroy(&log->cv);
	pthread_cond_destroy(&log->compact_cv);
	pthread_cond_destroy(&log->gather_cv);
	log_io_destroy(log);
	free(log->pend.p);
	free(log->batch.p);
	free(log->dir);
	free(log);
}

static int log_start(struct ks_store *store)
{
	write_owner((struct ks_log *)store);
	return 0;
}

static void log_stats(struct ks_store *store, ks_store_stat_fn emit,
		      void *arg)
{
	uint64_t bytes, records;

	ks_log_stats(store, &bytes, &records);
	emit(arg, "store_bytes", bytes);
	emit(arg, "store_records", records);
	emit(arg, "store_syncs", ks_log_syncs(store));
}

static void log_close(struct ks_store *store)
{
	struct ks_log *log = (struct ks_log *)store;

	log_stop_compaction(log);
	/* Leave the store small: the next start reads less.  Running, the
	 * log may hold KS_LOG_COMPACT_SLACK more than the live data (fewer
	 * compactions); at rest, KS_LOG_REST_SLACK. */
	if (log->eng && !atomic_load(&log->fatal) &&
	    log_over_threshold(log, KS_LOG_REST_SLACK))
		log_compact_now(log);
	ks_lock(&log->mu);
	log_own_file_locked(log);
	ks_unlock(&log->mu);
	if (log->fd >= 0) {
		/* A clean stop makes everything durable, --sync none too. */
		if (!atomic_load(&log->fatal) && log_sync_point(log) == 0 &&
		    log->alloc_end > log->end &&
		    log->io.ftruncate(log->io.ctx, log->fd,
				      (off_t)log->end) == 0)
			log->alloc_end = log->end;
		log_close_file(log, log->fd);
	}
	log_free(log);
}

static const struct ks_store_ops log_ops = {
	.kind = "log",
	.recover = log_recover,
	.start = log_start,
	.append = log_append,
	.catch_up = NULL, /* nothing happens to a log but through us */
	.stats = log_stats,
	.close = log_close,
};


/* Takes the store's lock: 0, or -1 with errno (EWOULDBLOCK: another
 * daemon holds it).  A daemon that was just unmounted lets go of it a
 * moment after the unmount returns (more under load), so a remount
 * right after one (`fusermount3 -u M && kstatefs --store DIR M`) waits up
 * to 2 s for it before calling the store in use. */
/* What a store directory holds besides the store's own files. */
struct foreign_entry {
	bool store;      /* a file of a store: lock, log.N, snap.N */
	char name[256];  /* the first other entry, "" if none */
};

static int note_entry(void *arg, const char *name)
{
	struct foreign_entry *f = arg;

	if (strcmp(name, "lock") == 0 || strncmp(name, "log.", 4) == 0 ||
	    strncmp(name, "snap.", 5) == 0)
		f->store = true;
	else if (strcmp(name, ".") && strcmp(name, "..") &&
		 strcmp(name, "lost+found") && !f->name[0])
		snprintf(f->name, sizeof(f->name), "%s", name);
	return 0;
}

/* A directory given as the store must be one: new (empty, or holding only
 * the lost+found of a file system of its own) or a store already.  Any
 * other is a mistake (--store /etc, a home directory) that would fill it
 * with the store's files.  EEXIST then, naming what is there. */
static int check_store_dir(struct ks_log *log, char *msg, size_t msglen)
{
	struct foreign_entry f = { 0 };
	int err = log_list(log, note_entry, &f);

	if (err)
		return ks_store_fail(msg, msglen, err, "cannot list store %s: %s",
				     log->dir, strerror(err));
	if (f.store || !f.name[0])
		return 0;
	return ks_store_fail(msg, msglen, EEXIST,
			     "%s is not a kstatefs store and not empty (it "
			     "holds '%s'): give a new or empty directory",
			     log->dir, f.name);
}

static int lock_store(struct ks_log *log)
{
	const struct timespec pause = { 0, 20 * 1000 * 1000 };

	for (int tries = 0;; tries++) {
		if (log->io.flock(log->io.ctx, log->lockfd,
				  LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK || tries == 100)
			return -1;
		nanosleep(&pause, NULL);
	}
}

int ks_log_open(const char *dir, enum ks_sync sync, struct ks_store **out,
		char *msg, size_t msglen)
{
	struct ks_log *log = calloc(1, sizeof(*log));
	int err;

	if (!log || !(log->dir = strdup(dir))) {
		free(log);
		return ks_store_fail(msg, msglen, ENOMEM, "out of memory");
	}
	log->base.ops = &log_ops;
	log->sync = sync;
	log->fd = log->lockfd = log->dirfd = -1;
	log_io_init(log);
	ks_lock_init(&log->mu, "log->mu", KS_RANK_STORE);
	ks_lock_init(&log->compact_mu, "log->compact_mu",
		     KS_RANK_STORE_COMPACT);
	pthread_cond_init(&log->cv, NULL);
	pthread_cond_init(&log->compact_cv, NULL);
	{
		/* A leader's wait for its group is timed on the monotonic
		 * clock: a change of the wall clock must not stretch it. */
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&log->gather_cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	log->pend_tail = &log->pend_head;

	err = mkdir_p(log, dir);
	if (err) {
		err = ks_store_fail(msg, msglen, err, "cannot create store %s: %s",
			       dir, strerror(err));
		goto fail;
	}
	log->dirfd = log->io.openat(log->io.ctx, AT_FDCWD, dir,
				    O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (log->dirfd < 0) {
		err = ks_store_fail(msg, msglen, errno, "cannot open store %s: %s",
			       dir, strerror(errno));
		goto fail;
	}
	err = check_store_dir(log, msg, msglen);
	if (err)
		goto fail;
	log->lockfd = log_open_file(log, "lock", O_RDWR | O_CREAT);
	if (log->lockfd < 0) {
		err = ks_store_fail(msg, msglen, errno, "cannot open %s/lock: %s",
			       dir, strerror(errno));
		goto fail;
	}
	if (lock_store(log)) {
		char who[128];

		if (errno != EWOULDBLOCK) {
			err = ks_store_fail(msg, msglen, errno,
				       "cannot lock %s/lock: %s", dir,
				       strerror(errno));
			goto fail;
		}
		describe_holder(log, who, sizeof(who));
		err = ks_store_fail(msg, msglen, EBUSY,
			       "store %s is in use by %s", dir, who);
		goto fail;
	}
	write_owner(log);
	*out = &log->base;
	return 0;
fail:
	log_free(log);
	return err;
}

/* "dir=PATH,sync=full|none" */
int ks_store_log_open(const char *options, struct ks_store **out,
		      char *msg, size_t msglen)
{
	char key[16], value[4096], dir[4096] = "";
	enum ks_sync sync = KS_SYNC_FULL;
	const char *pos = options;
	int got;

	while ((got = ks_store_next_option(&pos, key, sizeof(key), value,
					   sizeof(value))) == 1) {
		if (strcmp(key, "dir") == 0)
			snprintf(dir, sizeof(dir), "%s", value);
		else if (strcmp(key, "sync") == 0 &&
			 strcmp(value, "full") == 0)
			sync = KS_SYNC_FULL;
		else if (strcmp(key, "sync") == 0 &&
			 strcmp(value, "none") == 0)
			sync = KS_SYNC_NONE;
		else
			return ks_store_fail(msg, msglen, EINVAL, "log store: bad "
					"option %s=%s (dir=PATH, "
					"sync=full|none)", key, value);
	}
	if (got)
		return ks_store_fail(msg, msglen, EINVAL, "log store: cannot parse "
				"options '%s'", options);
	if (!dir[0])
		return ks_store_fail(msg, msglen, EINVAL, "log store: no dir=PATH");
	return ks_log_open(dir, sync, out, msg, msglen);
}

int ks_log_recover(struct ks_store *store, struct ks_engine *eng,
		   char *msg, size_t msglen)
{
	return log_recover(store, eng, msg, msglen);
}

void ks_log_owner(struct ks_store *store)
{
	log_start(store);
}

void ks_log_close(struct ks_store *store)
{
	if (store)
		log_close(store);
}

void ks_log_set_io(struct ks_store *store, const struct ks_log_io *io)
{
	struct ks_log *log = (struct ks_log *)store;

	ks_lock(&log->mu);
	log_own_file_locked(log);
	log_io_set(log, io);
	log_release_file_locked(log);
	ks_unlock(&log->mu);
}

size_t ks_log_queued(struct ks_store *store)
{
	struct ks_log *log = (struct ks_log *)store;
	size_t n;

	ks_lock(&log->mu);
	n = log->pend_frames;
	ks_unlock(&log->mu);
	return n;
}

uint64_t ks_log_syncs(struct ks_store *store)
{
	struct ks_log *log = (struct ks_log *)store;
	uint64_t n;

	ks_lock(&log->mu);
	n = log->syncs;
	ks_unlock(&log->mu);
	return n;
}

void ks_log_stats(struct ks_store *store, uint64_t *bytes_on_disk,
		  uint64_t *records)
{
	struct ks_log *log = (struct ks_log *)store;

	ks_lock(&log->mu);
	if (bytes_on_disk)
		*bytes_on_disk = log->snap_bytes + log->old_bytes +
				 log->log_end;
	if (records)
		*records = log->records;
	ks_unlock(&log->mu);
}
