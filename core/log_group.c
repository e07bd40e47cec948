/*
 * The log's writer: group commit, segments, and what a failed write or
 * sync does.
 *
 * Group commit.  A committer encodes its unit (all its records, one framed
 * record) outside every lock, then queues it under log->mu.  If nobody is
 * writing, it becomes the leader: it takes everything queued at that
 * moment, writes it with one pwrite and syncs it with one fdatasync, and
 * wakes the committers whose records that were.  Meanwhile newcomers queue
 * up for the next leader.  Sequence numbers and the final checksums are
 * given by the leader, which alone touches the file.
 *
 * The group.  With --sync full a committer waits for the sync of the
 * batch after the one being synced when it arrives; it then needs a few
 * FUSE round trips to come back with its next commit.  So after a batch of
 * all N busy writers, the first writer back would lead a batch of one, the
 * other N-1 arriving during its sync, and the batches alternate 1 and N-1:
 * N commits per two syncs, half of what the disk allows.  A leader that
 * has fewer units than committers were busy around the last batch (those
 * in it and those that queued during its sync) therefore waits for the
 * rest, but never longer than the last batch's write and sync took: a
 * wait that costs at most the sync that the alternation would have cost.
 * A lone writer never waits (the last batch held only it), and a writer
 * that stops is no longer expected after one batch.
 *
 * Each record carries how many records before it were not yet known to
 * be on disk when it was written (log.h, "in flight"): with --sync full
 * its place in its batch, since every batch is synced before the next is
 * written.  With that, recovery forgives a last batch whose blocks reached
 * the disk in any order, and still refuses damage to an acknowledged one.
 *
 * Failures.  A failed write is cut back off the file (ftruncate to the last
 * good end) and reported to the committers of that batch, ENOSPC or EIO;
 * the next batch tries again, so a full disk is survivable.  A failed
 * fdatasync is not: the kernel may have dropped the pages it could not
 * write, so from then on every append fails with EIO.
 */
#include "log.h"
#include "recover.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void log_set_fatal(struct ks_log *log, const char *what, int err)
{
	int none = 0;

	if (atomic_compare_exchange_strong(&log->fatal, &none, EIO))
		fprintf(stderr, "kstatefs: store %s: %s failed (%s); no "
			"further commits will be acknowledged\n",
			log->dir, what, strerror(err));
}

/* A write failed: cut the file back to its last good end, so that no half
 * record stays behind the next one. */
static int write_failed(struct ks_log *log, uint64_t good, int err)
{
	while (log->io.ftruncate(log->io.ctx, log->fd, (off_t)good) != 0) {
		if (errno != EINTR) {
			log_set_fatal(log, "truncating after a failed write",
				      errno);
			return EIO;
		}
	}
	return err == ENOSPC ? ENOSPC : EIO;
}

int log_sync_point(struct ks_log *log)
{
	int err = log_sync_fd(log, log->fd);

	if (err) {
		log_set_fatal(log, "fdatasync", err);
		return EIO;
	}
	log->durable_seq = log->next_seq;
	return 0;
}

/* Keeps zeros written ahead of the end of the log.  An fdatasync after a
 * write that grows the file must commit the new size to the journal too;
 * after a write into blocks the file already has, only the data: about
 * twice as fast on ext4.  Zeros are never a record, so recovery takes them
 * for the end of the log.  Failing here (a full disk) costs only speed. */
#define PREALLOC (64 * 1024)

static void preallocate(struct ks_log *log)
{
	static const unsigned char zeros[PREALLOC];
	uint64_t want = log->end + PREALLOC;

	if (log->alloc_end < log->end)
		log->alloc_end = log->end;
	if (log->alloc_end >= log->end + PREALLOC / 4)
		return;
	if (log_write_all(log, log->fd, zeros, want - log->alloc_end,
			  log->alloc_end) == 0) {
		log->alloc_end = want;
	} else if (log->io.ftruncate(log->io.ctx, log->fd,
				     (off_t)log->end) == 0) {
		log->alloc_end = log->end;
	}
}

/* The leader's work: give sequence numbers and checksums, write, sync. */
static int write_batch(struct ks_log *log, struct log_buf *b, size_t frames)
{
	uint64_t seq0;
	int err;

	/* With --sync none nothing else syncs for a long while: sync before
	 * the in-flight count would saturate, so that it stays exact. */
	if (log->sync == KS_SYNC_NONE &&
	    log->next_seq - log->durable_seq + frames > LOG_INFLIGHT_MAX) {
		err = log_sync_point(log);
		if (err)
			return err;
	}
	seq0 = log->next_seq;
	for (size_t off = 0; off < b->len;) {
		unsigned char *p = b->p + off;

		log_set_inflight(p, log->next_seq - log->durable_seq);
		log_finish_frame(p, log->next_seq++);
		off += LOG_HDR + log_get32(p + 4);
	}
	err = log_write_all(log, log->fd, b->p, b->len, log->end);
	if (err) {
		log->next_seq = seq0;
		log->alloc_end = log->end;
		return write_failed(log, log->end, err);
	}
	log->end += b->len;
	preallocate(log);
	if (log->sync == KS_SYNC_NONE)
		return 0;
	return log_sync_point(log);
}

/* Never wait longer than this for a group, however slow the disk. */
#define GATHER_MAX_NS 10000000LL       /* 10 ms */

static int64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* "The group", above: waits, busy set and mu held, until as many units
 * are queued as committers were busy around the last batch, or for as
 * long as that batch's write and sync took. */
static void gather(struct ks_log *log)
{
	int64_t wait = log->sync_ns < GATHER_MAX_NS ? log->sync_ns
						    : GATHER_MAX_NS;
	int64_t until;
	struct timespec ts;

	ks_lock_assert_held(&log->mu);
	if (log->sync != KS_SYNC_FULL || wait <= 0 ||
	    log->pend_frames >= log->expect)
		return;
	until = mono_ns() + wait;
	ts.tv_sec = (time_t)(until / 1000000000LL);
	ts.tv_nsec = (long)(until % 1000000000LL);
	log->gathering = true;
	while (log->pend_frames < log->expect && !log->closing &&
	       !atomic_load(&log->fatal))
		if (ks_cond_timedwait(&log->gather_cv, &log->mu, &ts) ==
		    ETIMEDOUT)
			break;
	log->gathering = false;
}

/* Called with mu held and busy clear; returns with mu held. */
static void lead(struct ks_log *log)
{
	struct log_buf b;
	struct log_waiter *w, *next;
	size_t frames;
	int64_t t0;
	int err;

	ks_lock_assert_held(&log->mu);
	log->busy = true;
	gather(log);
	b = log->pend;
	w = log->pend_head;
	frames = log->pend_frames;
	log->pend = log->batch;
	log->pend.len = 0;
	log->pend_head = NULL;
	log->pend_tail = &log->pend_head;
	log->pend_frames = 0;
	ks_unlock(&log->mu);

	t0 = mono_ns();
	err = atomic_load(&log->fatal);
	if (!err)
		err = write_batch(log, &b, frames);

	ks_lock(&log->mu);
	log->sync_ns = mono_ns() - t0;
	log->expect = frames + log->pend_frames;
	b.len = 0;
	log->batch = b;
	log->log_end = log->end;
	if (!err) {
		log->records += frames;
		log->syncs++;
	}
	for (; w; w = next) {
		next = w->next;
		w->err = err;
		w->done = true;
	}
	log->busy = false;
	pthread_cond_broadcast(&log->cv);
}

void log_own_file_locked(struct ks_log *log)
{
	ks_lock_assert_held(&log->mu);
	while (log->busy)
		ks_cond_wait(&log->cv, &log->mu);
	log->busy = true;
}

void log_release_file_locked(struct ks_log *log)
{
	ks_lock_assert_held(&log->mu);
	log->busy = false;
	pthread_cond_broadcast(&log->cv);
}

static uint64_t live_estimate(struct ks_log *log)
{
	/* Pages, plus per state a frame header, name and attributes. */
	return ks_engine_live_bytes(log->eng) + log->nstates * 128;
}

/* Has the log outgrown the live data, by more than slack?  mu held. */
static bool over_slack_locked(struct ks_log *log, uint64_t slack)
{
	uint64_t logb;

	ks_lock_assert_held(&log->mu);
	logb = log->old_bytes + log->log_end;
	return logb > KS_LOG_COMPACT_RATIO * live_estimate(log) + slack &&
	       logb > log->compact_floor;
}

static bool over_threshold_locked(struct ks_log *log)
{
	return over_slack_locked(log, KS_LOG_COMPACT_SLACK);
}

bool log_over_threshold(struct ks_log *log, uint64_t slack)
{
	bool over;

	ks_lock(&log->mu);
	over = over_slack_locked(log, slack);
	ks_unlock(&log->mu);
	return over;
}

void log_maybe_compact_locked(struct ks_log *log)
{
	ks_lock_assert_held(&log->mu);
	if (log->compacting || log->closing || atomic_load(&log->fatal))
		return;
	if (over_threshold_locked(log))
		log_start_compaction_locked(log);
}

int log_append(struct ks_store *store, const struct ks_rec *recs, size_t n)
{
	struct ks_log *log = (struct ks_log *)store;
	unsigned char stackbuf[8192], *frame = stackbuf;
	struct log_waiter w = { 0 };
	size_t flen;
	int err;

	if (n == 0)
		return 0;
	err = atomic_load(&log->fatal);
	if (err)
		return err;
	flen = log_unit_len(recs, n);
	if (flen - LOG_HDR > LOG_MAX_PAYLOAD)
		return EFBIG;
	if (flen > sizeof(stackbuf)) {
		frame = malloc(flen);
		if (!frame)
			return ENOMEM;
	}
	log_encode_unit(frame, recs, n);

	ks_lock(&log->mu);
	if (!log->eng)
		err = EIO; /* not recovered */
	else
		err = log_buf_put(&log->pend, frame, flen);
	if (!err) {
		*log->pend_tail = &w;
		log->pend_tail = &w.next;
		log->pend_frames++;
		if (log->gathering && log->pend_frames >= log->expect)
			pthread_cond_signal(&log->gather_cv);
		while (!w.done) {
			if (!log->busy)
				lead(log);
			else
				ks_cond_wait(&log->cv, &log->mu);
		}
		err = w.err;
	}
	if (!err) {
		for (size_t i = 0; i < n; i++) {
			if (recs[i].type == KS_REC_CREATE)
				log->nstates++;
			else if (recs[i].type == KS_REC_DELETE && log->nstates)
				log->nstates--;
		}
		log_maybe_compact_locked(log);
	}
	ks_unlock(&log->mu);
	if (frame != stackbuf)
		free(frame);
	return err;
}

/* A segment is written and synced under a temporary name and renamed into
 * place: so a segment's name never stands in the directory without its
 * header behind it, whatever of the file a power cut keeps (a segment
 * created in place could be left empty by a cut, and an empty lone segment
 * is no store at all).  Recovery removes a temporary one left behind. */
int log_create_segment(struct ks_log *log, uint64_t seg, int *fdp)
{
	unsigned char hdr[LOG_SEG_HDR_LEN];
	char name[32], tmp[40];
	int fd, err;

	log_seg_name(name, sizeof(name), seg);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = log_open_file(log, tmp, O_RDWR | O_CREAT | O_TRUNC);
	if (fd < 0)
		return errno;
	log_seg_header(hdr, seg);
	err = log_write_all(log, fd, hdr, sizeof(hdr), 0);
	if (!err)
		err = log_sync_fd(log, fd);
	if (!err && log->io.renameat(log->io.ctx, log->dirfd, tmp, name))
		err = errno ? errno : EIO;
	if (!err)
		err = log_fsync_dir(log);
	if (err) {
		log_close_file(log, fd);
		log_unlink(log, tmp);
		log_unlink(log, name);
		return err;
	}
	*fdp = fd;
	return 0;
}
