/*
 * Snapshots and compaction.  When the log outgrows the live data, a
 * background thread starts a new segment (commits go on there), takes a
 * snapshot of the engine (recover.c), writes it to a temporary file, syncs
 * it, renames it into place and deletes the older segments and snapshot.
 * The snapshot is taken after the switch, so it holds everything in the
 * old segments; whatever of the new segment it also holds is replayed
 * again at recovery, which is idempotent.
 */
#include "log.h"
#include "recover.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing a snapshot ------------------------------------------------- */

struct writer {
	struct ks_log *log;
	int fd;
	struct log_buf out;
	struct log_buf scratch;
	uint64_t index;
	uint64_t written;
	int err;
};

static void writer_flush(struct writer *w)
{
	if (!w->err && w->out.len) {
		w->err = log_write_all(w->log, w->fd, w->out.p, w->out.len,
				       w->written);
		if (!w->err)
			w->written += w->out.len;
	}
	w->out.len = 0;
}

/* Appends a frame whose payload is w->scratch. */
static void writer_frame(struct writer *w, uint32_t type, uint64_t state,
			 uint64_t version)
{
	unsigned char hdr[LOG_HDR] = { 0 };
	uint32_t len = (uint32_t)w->scratch.len;

	if (w->err)
		return;
	if (log_buf_put(&w->out, hdr, LOG_HDR) ||
	    log_buf_put(&w->out, w->scratch.p, len)) {
		w->err = ENOMEM;
	} else {
		unsigned char *p = w->out.p + w->out.len - LOG_HDR - len;

		log_seal_frame(p, len, type, w->index++, state, version);
	}
	w->scratch.len = 0;
	if (w->out.len >= (1u << 20))
		writer_flush(w);
}

static void scratch_put(struct writer *w, const void *p, size_t len)
{
	if (log_buf_put(&w->scratch, p, len))
		w->err = ENOMEM;
}

static int write_snapshot(struct ks_log *log, const struct ks_snapshot *snap,
			  uint64_t seg, uint64_t first_seq, uint64_t *size)
{
	struct writer w = { .log = log, .fd = -1 };
	char tmp[40], name[32];
	unsigned char b[LOG_SNAP_STATE_FIXED + 16];

	log_snap_name(name, sizeof(name), seg);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	w.fd = log_open_file(log, tmp, O_WRONLY | O_CREAT | O_TRUNC);
	if (w.fd < 0)
		return errno;

	scratch_put(&w, log_snap_magic, LOG_MAGIC_LEN);
	log_put64(b, first_seq);
	log_put64(b + 8, snap->n);
	scratch_put(&w, b, 16);
	writer_frame(&w, LOG_T_SNAP_HEAD, snap->next_id, seg);
	for (size_t i = 0; i < snap->n; i++) {
		const struct ks_snap_state *s = &snap->states[i];
		size_t nlen = strlen(s->name);

		log_snap_state_head(b, &s->attr, &s->page->mtime, nlen);
		scratch_put(&w, b, LOG_SNAP_STATE_FIXED);
		scratch_put(&w, s->name, nlen);
		scratch_put(&w, s->page->bytes, s->page->len);
		writer_frame(&w, LOG_T_SNAP_STATE, s->id, s->page->version);
	}
	writer_frame(&w, LOG_T_SNAP_END, 0, snap->n);
	writer_flush(&w);
	if (!w.err)
		w.err = log_sync_fd(log, w.fd);
	if (log->io.close(log->io.ctx, w.fd) && !w.err)
		w.err = errno;
	if (!w.err &&
	    log->io.renameat(log->io.ctx, log->dirfd, tmp, name))
		w.err = errno;
	if (!w.err)
		w.err = log_fsync_dir(log);
	if (w.err)
		log_unlink(log, tmp);
	free(w.out.p);
	free(w.scratch.p);
	*size = w.written;
	return w.err;
}

struct older {
	struct ks_log *log;
	uint64_t seg;
};

static int delete_if_older(void *arg, const char *name)
{
	struct older *o = arg;
	uint64_t num;

	if ((log_parse_name(name, "log.", &num) ||
	     log_parse_name(name, "snap.", &num)) && num < o->seg)
		log_unlink(o->log, name);
	return 0;
}

/* Deletes segments and snapshots older than SEG. */
static void delete_older(struct ks_log *log, uint64_t seg)
{
	struct older o = { log, seg };

	log_list(log, delete_if_older, &o);
}

/* ---- compaction --------------------------------------------------------- */

static int compact(struct ks_log *log)
{
	struct ks_snapshot snap;
	uint64_t seg, first_seq, old_end, size = 0, switch_records;
	int fd, oldfd, err;

	ks_lock(&log->mu);
	seg = log->seg + 1;
	ks_unlock(&log->mu);

	/* The new segment is made durable before anyone writes to it. */
	err = log_create_segment(log, seg, &fd);
	if (err)
		return err;
	/* With --sync none the old segment is synced below while commits
	 * wait; sync most of it first, while they go on, so that the wait
	 * is for the last few records only.  Only this thread ever changes
	 * log->fd (compact_mu), so reading it without owning the file is
	 * safe; an error here shows again in the sync that counts. */
	if (log->sync == KS_SYNC_NONE)
		(void)log_sync_fd(log, log->fd);

	ks_lock(&log->mu);
	log_own_file_locked(log);
	ks_unlock(&log->mu);
	err = atomic_load(&log->fatal);
	/* Without this, with --sync none a power cut could tear the old
	 * segment's tail, which recovery only forgives in the last one. */
	if (!err && log->sync == KS_SYNC_NONE)
		err = log_sync_point(log);
	if (err) {
		char name[32];

		ks_lock(&log->mu);
		log_release_file_locked(log);
		ks_unlock(&log->mu);
		log_close_file(log, fd);
		/* Leaving it would be harmless (recovery drops an empty last
		 * segment), but tidy. */
		log_seg_name(name, sizeof(name), seg);
		log_unlink(log, name);
		return err;
	}
	oldfd = log->fd;
	old_end = log->end;
	/* Zeros written ahead are no use there any more (and are no damage
	 * if this is lost). */
	if (log->alloc_end > log->end &&
	    log->io.ftruncate(log->io.ctx, oldfd, (off_t)log->end))
		(void)0;
	log->fd = fd;
	log->end = log->alloc_end = LOG_SEG_HDR_LEN;
	first_seq = log->next_seq;
	/* The old segment is all on disk (synced above, or by every commit
	 * with --sync full): nothing is in flight in the new one. */
	log->durable_seq = first_seq;
	ks_lock(&log->mu);
	log->seg = seg;
	log->old_bytes += old_end;
	log->log_end = log->end;
	switch_records = log->records;
	log_release_file_locked(log);
	ks_unlock(&log->mu);
	log_close_file(log, oldfd);

	err = ks_snapshot_take(log->eng, &snap);
	if (err)
		return err;
	err = write_snapshot(log, &snap, seg, first_seq, &size);
	ks_snapshot_release(&snap);
	if (err)
		return err;
	delete_older(log, seg);

	ks_lock(&log->mu);
	log->old_bytes = 0;
	log->snap_bytes = size;
	log->records -= switch_records;
	ks_unlock(&log->mu);
	return 0;
}

int log_compact_now(struct ks_log *log)
{
	int err;

	ks_lock(&log->compact_mu);
	err = compact(log);
	ks_lock(&log->mu);
	if (!err) {
		log->compact_floor = 0;
	} else {
		uint64_t logb = log->old_bytes + log->log_end;

		log->compact_floor = logb + (logb / 2 > KS_LOG_COMPACT_SLACK ?
					     logb / 2 : KS_LOG_COMPACT_SLACK);
	}
	ks_unlock(&log->mu);
	ks_unlock(&log->compact_mu);
	return err;
}

static void *compactor(void *arg)
{
	struct ks_log *log = arg;

	ks_lock(&log->mu);
	while (!log->closing) {
		int err;

		if (!log->compact_wanted) {
			ks_cond_wait(&log->compact_cv, &log->mu);
			continue;
		}
		log->compact_wanted = false;
		ks_unlock(&log->mu);
		err = log_compact_now(log);
		if (err && !atomic_load(&log->fatal))
			fprintf(stderr, "kstatefs: store %s: compaction "
				"failed: %s; will retry\n", log->dir,
				strerror(err));
		ks_lock(&log->mu);
		log->compacting = false;
		/* Commits that came during the compaction may have grown the
		 * log past the mark again; nothing else would notice if they
		 * were the last for a while. */
		if (!err)
			log_maybe_compact_locked(log);
	}
	ks_unlock(&log->mu);
	return NULL;
}

/* The thread starts on first need, not at open: the daemon forks after
 * opening the store, and threads do not survive a fork. */
void log_start_compaction_locked(struct ks_log *log)
{
	ks_lock_assert_held(&log->mu);
	if (!log->thread_started) {
		if (pthread_create(&log->thread, NULL, compactor, log))
			return;
		log->thread_started = true;
	}
	log->compacting = true;
	log->compact_wanted = true;
	pthread_cond_signal(&log->compact_cv);
}

void log_stop_compaction(struct ks_log *log)
{
	ks_lock(&log->mu);
	log->closing = true;
	pthread_cond_signal(&log->compact_cv);
	ks_unlock(&log->mu);
	if (log->thread_started)
		pthread_join(log->thread, NULL);
	log->thread_started = false;
}

int ks_log_compact(struct ks_store *store)
{
	struct ks_log *log = (struct ks_log *)store;

	if (!log->eng)
		return EINVAL;
	return log_compact_now(log);
}
