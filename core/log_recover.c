/*
 * Reading a log store back: the newest snapshot, then the segments after
 * it, into a fresh engine (through core/recover.h).  A torn record at the
 * very end of the log is cut away; any other damage stops with a message
 * naming the file and byte offset (STORE.md, "Starting").
 */
#include "log.h"
#include "recover.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nums {
	uint64_t *v;
	size_t n;
	size_t cap;
};

static int nums_add(struct nums *a, uint64_t v)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		uint64_t *nv = realloc(a->v, cap * sizeof(*nv));

		if (!nv)
			return ENOMEM;
		a->v = nv;
		a->cap = cap;
	}
	a->v[a->n++] = v;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct listing {
	struct ks_log *log;
	struct nums *segs;
	struct nums *snaps;
};

static int list_one(void *arg, const char *name)
{
	struct listing *l = arg;
	size_t len = strlen(name);
	uint64_t num;

	if (log_parse_name(name, "log.", &num))
		return nums_add(l->segs, num);
	if (log_parse_name(name, "snap.", &num))
		return nums_add(l->snaps, num);
	/* A snapshot or segment still under its temporary name was never
	 * renamed into place, so nothing relies on it. */
	if (len > 4 && strcmp(name + len - 4, ".tmp") == 0 &&
	    (strncmp(name, "snap.", 5) == 0 || strncmp(name, "log.", 4) == 0))
		log_unlink(l->log, name);
	return 0;
}

/* Lists segments and snapshots; removes temporary files of a compaction
 * or a segment creation that did not finish. */
static int list_dir(struct ks_log *log, struct nums *segs, struct nums *snaps)
{
	struct listing l = { log, segs, snaps };
	int err = log_list(log, list_one, &l);

	if (segs->n)
		qsort(segs->v, segs->n, sizeof(uint64_t), cmp_u64);
	if (snaps->n)
		qsort(snaps->v, snaps->n, sizeof(uint64_t), cmp_u64);
	return err;
}

struct replay {
	struct ks_log *log;
	struct ks_recovery *r;
	uint64_t expected;   /* next sequence number */
	uint64_t records;
	char *msg;
	size_t msglen;
};

static int damaged(struct replay *rp, const char *file, size_t off,
		   const char *why)
{
	return ks_store_fail(rp->msg, rp->msglen, EUCLEAN,
		    "store %s is damaged: %s/%s, byte offset %zu: %s",
		    rp->log->dir, rp->log->dir, file, off, why);
}

static int load_snapshot(struct replay *rp, uint64_t seg)
{
	struct ks_log *log = rp->log;
	unsigned char *buf = NULL;
	size_t size = 0, off = 0;
	uint64_t count = 0, nstates = 0, index = 0;
	struct log_frame f;
	const char *why;
	char name[32];
	int fd, err;

	log_snap_name(name, sizeof(name), seg);
	fd = log_open_file(log, name, O_RDONLY);
	if (fd < 0)
		return ks_store_fail(rp->msg, rp->msglen, errno,
				"cannot open %s/%s: %s", log->dir, name,
				strerror(errno));
	err = log_read_file(log, fd, &buf, &size);
	log_close_file(log, fd);
	if (err)
		return ks_store_fail(rp->msg, rp->msglen, err,
				"cannot read %s/%s: %s", log->dir, name,
				strerror(err));
	log->snap_bytes = size;

	for (;;) {
		if (!log_frame_at(buf, size, off, &f, &why)) {
			err = damaged(rp, name, off, off == size ?
				      "snapshot ends early" : why);
			break;
		}
		if (f.seq != index++) {
			err = damaged(rp, name, off, "record out of order");
			break;
		}
		if (off == 0) {
			if (f.type != LOG_T_SNAP_HEAD || f.len != 32 ||
			    memcmp(f.payload, log_snap_magic, LOG_MAGIC_LEN) ||
			    f.version != seg) {
				err = damaged(rp, name, off,
					      "not a kstatefs snapshot");
				break;
			}
			rp->expected = log_get64(f.payload + 16);
			nstates = log_get64(f.payload + 24);
			ks_recovery_next_id(rp->r, f.state);
		} else if (f.type == LOG_T_SNAP_STATE) {
			struct log_snap_state ss;

			err = log_snap_state_decode(f.payload, f.len, &ss);
			if (!err)
				err = ks_recovery_put(rp->r, f.state, ss.name,
						      &ss.attr, f.version,
						      &ss.mtime, ss.bytes,
						      ss.len);
			if (err == ENOMEM) {
				err = ks_store_fail(rp->msg, rp->msglen, ENOMEM,
					   "out of memory");
				break;
			}
			if (err) {
				err = damaged(rp, name, off, "malformed state");
				break;
			}
			count++;
		} else if (f.type == LOG_T_SNAP_END) {
			if (f.version != count || count != nstates) {
				err = damaged(rp, name, off,
					      "wrong number of states");
			} else if (off + LOG_HDR + f.len != size) {
				err = damaged(rp, name, off + LOG_HDR + f.len,
					      "bytes after the end");
			}
			break;
		} else {
			err = damaged(rp, name, off, "unexpected record");
			break;
		}
		off += LOG_HDR + f.len;
	}
	free(buf);
	return err;
}

/* Is there any record after the header of segment SEG?  (-1: error) */
static int segment_has_records(struct ks_log *log, uint64_t seg)
{
	unsigned char *buf;
	size_t size;
	char name[32];
	int fd, err, has;

	log_seg_name(name, sizeof(name), seg);
	fd = log_open_file(log, name, O_RDONLY);
	if (fd < 0)
		return -1;
	err = log_read_file(log, fd, &buf, &size);
	log_close_file(log, fd);
	if (err)
		return -1;
	/* The segment header is a frame too: look past it only. */
	has = size > LOG_SEG_HDR_LEN &&
	      log_any_frame_after(buf, size, LOG_SEG_HDR_LEN);
	free(buf);
	return has;
}

/* Bad bytes at buf[from], where the record with sequence EXPECTED should
 * be, in the last segment: are they the torn end of the last group commit?
 * Yes if every whole frame after them is a log record that was written
 * while that record was still in flight: a later record of the same,
 * never synced, batch, whose blocks reached the disk before the earlier
 * ones.  A record written after EXPECTED was known to be on disk (a later
 * batch), or any other whole frame, means the damage is to records that
 * were synced, and acknowledged: not a tail to drop.  Zeros written ahead
 * and blocks never written are no frame, so they are part of the tail. */
static bool torn_tail(const unsigned char *buf, size_t size, size_t from,
		      uint64_t expected, size_t *whole)
{
	size_t off = from + 1;
	struct log_frame f;

	*whole = 0;
	while (log_next_frame(buf, size, &off, &f)) {
		if (!log_is_record(&f) || f.seq <= expected ||
		    f.inflight > f.seq || f.seq - f.inflight > expected)
			return false;
		(*whole)++;
		/* what is inside a whole record is its payload, not frames */
		off += LOG_HDR + f.len;
	}
	return true;
}

/* Replays segment SEG.  The last one may end in a torn group commit, which
 * is cut off; it is left open for appending. */
static int replay_segment(struct replay *rp, uint64_t seg, bool last)
{
	struct ks_log *log = rp->log;
	unsigned char *buf = NULL;
	size_t size = 0, off;
	struct log_frame f;
	const char *why;
	char name[32];
	size_t whole;
	int fd, err;

	log_seg_name(name, sizeof(name), seg);
	fd = log_open_file(log, name, last ? O_RDWR : O_RDONLY);
	if (fd < 0)
		return ks_store_fail(rp->msg, rp->msglen, errno,
				"cannot open %s/%s: %s", log->dir, name,
				strerror(errno));
	err = log_read_file(log, fd, &buf, &size);
	if (err) {
		log_close_file(log, fd);
		return ks_store_fail(rp->msg, rp->msglen, err,
				"cannot read %s/%s: %s", log->dir, name,
				strerror(err));
	}
	if (!log_frame_at(buf, size, 0, &f, &why) || f.type != LOG_T_SEGMENT ||
	    f.len != LOG_MAGIC_LEN ||
	    memcmp(f.payload, log_seg_magic, LOG_MAGIC_LEN) ||
	    f.version != seg) {
		err = damaged(rp, name, 0, "not a kstatefs log segment");
		goto out;
	}
	off = LOG_HDR + f.len;
	while (off < size) {
		if (log_frame_at(buf, size, off, &f, &why)) {
			if (f.seq != rp->expected) {
				char w[96];

				snprintf(w, sizeof(w), "sequence %" PRIu64
					 ", expected %" PRIu64, f.seq,
					 rp->expected);
				err = damaged(rp, name, off, w);
				goto out;
			}
			if (f.type != LOG_T_MULTI &&
			    !(f.type >= KS_REC_CREATE &&
			      f.type <= KS_REC_ATTR)) {
				err = damaged(rp, name, off,
					      "unexpected record type");
				goto out;
			}
			err = log_replay_frame(rp->r, &f, &rp->records);
			if (err == ENOMEM) {
				err = ks_store_fail(rp->msg, rp->msglen, err,
					   "out of memory");
				goto out;
			}
			if (err) {
				err = damaged(rp, name, off,
					      "malformed record");
				goto out;
			}
			rp->expected++;
			off += LOG_HDR + f.len;
			continue;
		}
		/* Zeros to the end: the end (zeros written ahead).  Other bad
		 * bytes: the torn end of the last group commit if this is the
		 * last segment and every whole record after them was written
		 * in the same, never synced, batch (torn_tail); otherwise
		 * damage. */
		if (log_all_zero(buf + off, size - off)) {
			if (!last) {
				size = off;
				break;
			}
		} else if (!last || !torn_tail(buf, size, off, rp->expected,
					       &whole)) {
			err = damaged(rp, name, off, why);
			goto out;
		} else {
			fprintf(stderr, "kstatefs: store %s: dropped the torn "
				"end of the last group commit in %s (byte "
				"offset %zu, %zu bytes, %zu whole records of "
				"it after the tear): it was never "
				"acknowledged\n", log->dir, name, off,
				size - off, whole);
		}
		if (log->io.ftruncate(log->io.ctx, fd, (off_t)off) ||
		    log->io.fdatasync(log->io.ctx, fd)) {
			err = ks_store_fail(rp->msg, rp->msglen, errno,
				   "cannot cut the torn end of %s/%s: %s",
				   log->dir, name, strerror(errno));
			goto out;
		}
		size = off;
		break;
	}
	if (last) {
		log->fd = fd;
		log->end = log->alloc_end = size;
		fd = -1;
	} else {
		log->old_bytes += size;
	}
out:
	if (fd >= 0)
		log_close_file(log, fd);
	free(buf);
	return err;
}

/* A store whose first start was cut short by an older kstatefs, which
 * created log.0000000000000001 in place: is the lone segment shorter than
 * its header, and holding nothing but a part of that header (or zeros,
 * blocks never written)?  Then no commit was ever written to it, and the
 * store is new.  (This kstatefs creates segments under a temporary name
 * and never leaves one.) */
static bool short_first_segment(struct ks_log *log)
{
	unsigned char hdr[LOG_SEG_HDR_LEN], *buf;
	char name[32];
	bool is = true;
	size_t size;
	int fd;

	log_seg_name(name, sizeof(name), 1);
	fd = log_open_file(log, name, O_RDONLY);
	if (fd < 0)
		return false;
	if (log_read_file(log, fd, &buf, &size)) {
		log_close_file(log, fd);
		return false;
	}
	log_close_file(log, fd);
	log_seg_header(hdr, 1);
	if (size >= LOG_SEG_HDR_LEN)
		is = false;
	for (size_t i = 0; is && i < size; i++)
		if (buf[i] != 0 && buf[i] != hdr[i])
			is = false;
	free(buf);
	if (is)
		fprintf(stderr, "kstatefs: store %s: %s is %zu bytes, short of "
			"its header: a first start was cut short; starting "
			"the store anew\n", log->dir, name, size);
	return is;
}

int log_recover(struct ks_store *store, struct ks_engine *eng, char *msg,
		size_t msglen)
{
	struct ks_log *log = (struct ks_log *)store;
	struct nums segs = { 0 }, snaps = { 0 };
	struct replay rp = { .log = log, .expected = 1, .msg = msg,
			     .msglen = msglen };
	uint64_t first, last, states, bytes;
	size_t i0;
	int err;

	if (log->eng)
		return ks_store_fail(msg, msglen, EINVAL, "store already recovered");
	rp.r = ks_recovery_new();
	if (!rp.r)
		return ks_store_fail(msg, msglen, ENOMEM, "out of memory");
	err = list_dir(log, &segs, &snaps);
	if (err) {
		err = ks_store_fail(msg, msglen, err, "cannot list store %s: %s",
			   log->dir, strerror(err));
		goto out;
	}
	if (snaps.n) {
		first = snaps.v[snaps.n - 1];
		err = load_snapshot(&rp, first);
		if (err)
			goto out;
	} else {
		first = segs.n ? segs.v[0] : 1;
	}
	/* Segments before the snapshot are leftovers of a compaction that
	 * stopped before deleting them. */
	for (i0 = 0; i0 < segs.n && segs.v[i0] < first; i0++)
		;
	/* Trailing segments with no record were created by a compaction
	 * that never switched to them (or a switch with nothing written
	 * since): drop them, so that the last segment written to is last. */
	while (segs.n > i0 + 1 && segs.v[segs.n - 1] > first) {
		int has = segment_has_records(log, segs.v[segs.n - 1]);
		char name[32];

		if (has != 0)
			break;
		log_seg_name(name, sizeof(name), segs.v[segs.n - 1]);
		log_unlink(log, name);
		segs.n--;
	}
	if (!snaps.n && segs.n == 1 && segs.v[0] == 1 &&
	    short_first_segment(log)) {
		char name[32];

		log_seg_name(name, sizeof(name), 1);
		log_unlink(log, name);
		segs.n = 0;
	}
	if (i0 == segs.n) {
		if (snaps.n || segs.n) {
			char name[32];

			log_seg_name(name, sizeof(name), first);
			err = ks_store_fail(msg, msglen, EUCLEAN,
				       "store %s is damaged: %s/%s is missing",
				       log->dir, log->dir, name);
			goto out;
		}
		/* A new store. */
		err = log_create_segment(log, 1, &log->fd);
		if (err) {
			err = ks_store_fail(msg, msglen, err,
				       "cannot create the log in %s: %s",
				       log->dir, strerror(err));
			goto out;
		}
		log->end = log->alloc_end = LOG_SEG_HDR_LEN;
		log->durable_seq = 1;
		last = 1;
	} else {
		last = segs.v[segs.n - 1];
		for (size_t i = i0; i < segs.n; i++) {
			if (segs.v[i] != first + (i - i0)) {
				char name[32];

				log_seg_name(name, sizeof(name),
					     first + (i - i0));
				err = ks_store_fail(msg, msglen, EUCLEAN,
					   "store %s is damaged: %s/%s is "
					   "missing", log->dir, log->dir, name);
				goto out;
			}
			err = replay_segment(&rp, segs.v[i], i + 1 == segs.n);
			if (err)
				goto out;
		}
		/* What recovery read may be only in the page cache (a daemon
		 * with --sync none was killed): sync it, so that the records
		 * written from now on count nothing before them as in flight
		 * (log.h) truthfully. */
		err = log_sync_fd(log, log->fd);
		if (err) {
			err = ks_store_fail(msg, msglen, err,
				       "cannot sync the log in %s: %s",
				       log->dir, strerror(err));
			goto out;
		}
		log->durable_seq = rp.expected;
	}
	ks_recovery_counts(rp.r, &states, &bytes);
	err = ks_recovery_finish(rp.r, eng, msg, msglen);
	if (err)
		goto out;
	for (size_t i = 0; i < i0; i++) {
		char name[32];

		log_seg_name(name, sizeof(name), segs.v[i]);
		log_unlink(log, name);
	}
	for (size_t i = 0; i + 1 < snaps.n; i++) {
		char name[32];

		log_snap_name(name, sizeof(name), snaps.v[i]);
		log_unlink(log, name);
	}
	ks_lock(&log->mu);
	log->eng = eng;
	log->seg = last;
	log->next_seq = rp.expected;
	log->log_end = log->end;
	log->records = rp.records;
	log->nstates = states;
	ks_unlock(&log->mu);
	/* A big log makes every start slow: compact it now, while nothing
	 * else runs. */
	if (log->old_bytes + log->end > KS_LOG_COMPACT_RATIO *
	    (bytes + states * 128) + KS_LOG_COMPACT_SLACK)
		log_compact_now(log);
	err = 0;
out:
	if (err && log->fd >= 0) {
		log_close_file(log, log->fd);
		log->fd = -1;
	}
	ks_recovery_free(rp.r);
	free(segs.v);
	free(snaps.v);
	return err;
}
