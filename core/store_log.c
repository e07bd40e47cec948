/*
 * The log store.  One append-only log, in numbered segments, shared by all
 * states; a snapshot that older segments are compacted into.  STORE.md
 * describes the layout; here is how the code keeps its promises.
 *
 * Group commit.  A committer encodes its unit (all its records, one framed
 * record) outside every lock, then queues it under log->mu.  If nobody is
 * writing, it becomes the leader: it takes everything queued at that
 * moment, writes it with one pwrite and syncs it with one fdatasync, and
 * wakes the committers whose records that were.  Meanwhile newcomers queue
 * up for the next leader.  Sequence numbers and the final checksums are
 * given by the leader, which alone touches the file.
 *
 * Failures.  A failed write is cut back off the file (ftruncate to the last
 * good end) and reported to the committers of that batch, ENOSPC or EIO;
 * the next batch tries again, so a full disk is survivable.  A failed
 * fdatasync is not: the kernel may have dropped the pages it could not
 * write, so from then on every append fails with EIO.
 *
 * Compaction.  When the log outgrows the live data, a background thread
 * starts a new segment (commits go on there), takes a snapshot of the
 * engine (recover.c), writes it to a temporary file, syncs it, renames it
 * into place and deletes the older segments and snapshot.  The snapshot is
 * taken after the switch, so it holds everything in the old segments;
 * whatever of the new segment it also holds is replayed again at recovery,
 * which is idempotent.
 */
#include "store_log.h"
#include "crc32c.h"
#include "recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the record format ---------------------------------------------------
 * Every record, in the log and in the snapshot, is a frame:
 *
 *   0  u32 crc32c    of the payload, then of bytes 4..35 of this header
 *   4  u32 length    of the payload
 *   8  u32 type
 *  12  u64 sequence  log: 1, 2, 3 ... across segments; snapshot: index
 *  20  u64 state     state id
 *  28  u64 version
 *  36  payload
 *
 * all little-endian.  The checksum covers the payload first so that a
 * committer can checksum its page in parallel with the others, and the
 * leader only finishes it over the header once it has given the sequence.
 */
#define HDR 36
#define SUB_HDR 24                /* u32 len, u32 type, u64 state, u64 version */
#define TIME_LEN 12               /* i64 seconds, u32 nanoseconds */
#define MAX_PAYLOAD (1u << 30)

enum {
	T_MULTI = 16,       /* several records of one unit; version = count */
	T_SEGMENT = 32,     /* first frame of a segment; version = its number */
	T_SNAP_HEAD = 48,   /* state = next id, version = first segment */
	T_SNAP_STATE = 49,  /* one state */
	T_SNAP_END = 50,    /* version = number of states */
};

static const char seg_magic[16] = "kstatefs log 1\n";
static const char snap_magic[16] = "kstatefs snap 1\n";

#define SEG_HDR_LEN (HDR + sizeof(seg_magic))

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put_time(unsigned char *p, const struct timespec *ts)
{
	put64(p, (uint64_t)ts->tv_sec);
	put32(p + 8, (uint32_t)ts->tv_nsec);
}

static int get_time(const unsigned char *p, struct timespec *ts)
{
	ts->tv_sec = (time_t)(int64_t)get64(p);
	ts->tv_nsec = (long)get32(p + 8);
	return ts->tv_nsec < 1000000000L ? 0 : EINVAL;
}

static size_t payload_len(const struct ks_rec *rec)
{
	switch (rec->type) {
	case KS_REC_CREATE:
		return 12 + TIME_LEN + strlen(rec->name);
	case KS_REC_DELETE:
		return 0;
	case KS_REC_RENAME:
		return TIME_LEN + strlen(rec->name);
	case KS_REC_COMMIT:
		return TIME_LEN + rec->len;
	case KS_REC_ATTR:
		return 12 + TIME_LEN;
	}
	return 0;
}

static void put_payload(unsigned char *p, const struct ks_rec *rec)
{
	switch (rec->type) {
	case KS_REC_CREATE:
	case KS_REC_ATTR:
		put32(p, (uint32_t)rec->uid);
		put32(p + 4, (uint32_t)rec->gid);
		put32(p + 8, (uint32_t)rec->mode);
		put_time(p + 12, &rec->time);
		if (rec->type == KS_REC_CREATE)
			memcpy(p + 24, rec->name, strlen(rec->name));
		break;
	case KS_REC_DELETE:
		break;
	case KS_REC_RENAME:
		put_time(p, &rec->time);
		memcpy(p + TIME_LEN, rec->name, strlen(rec->name));
		break;
	case KS_REC_COMMIT:
		put_time(p, &rec->time);
		if (rec->len)
			memcpy(p + TIME_LEN, rec->bytes, rec->len);
		break;
	}
}

static size_t frame_len(const struct ks_rec *recs, size_t n)
{
	size_t len = HDR;

	if (n == 1)
		return len + payload_len(&recs[0]);
	for (size_t i = 0; i < n; i++)
		len += SUB_HDR + payload_len(&recs[i]);
	return len;
}

static void put_header(unsigned char *p, uint32_t len, uint32_t type,
		       uint64_t seq, uint64_t state, uint64_t version)
{
	put32(p + 4, len);
	put32(p + 8, type);
	put64(p + 12, seq);
	put64(p + 20, state);
	put64(p + 28, version);
}

/* The checksum of a frame whose header (but the crc) and payload are in
 * place. */
static uint32_t frame_crc(const unsigned char *p, uint32_t len)
{
	return ks_crc32c(ks_crc32c(0, p + HDR, len), p + 4, HDR - 4);
}

/* Encodes a unit into frame (frame_len bytes).  The sequence is left 0 and
 * the crc field holds the payload's checksum only: the leader finishes
 * both (finish_frame). */
static void encode_unit(unsigned char *frame, const struct ks_rec *recs,
			size_t n)
{
	size_t flen = frame_len(recs, n);
	uint32_t plen = (uint32_t)(flen - HDR);

	if (n == 1) {
		put_header(frame, plen, recs[0].type, 0, recs[0].state_id,
			   recs[0].version);
		put_payload(frame + HDR, &recs[0]);
	} else {
		unsigned char *p = frame + HDR;

		put_header(frame, plen, T_MULTI, 0, 0, n);
		for (size_t i = 0; i < n; i++) {
			size_t l = payload_len(&recs[i]);

			put32(p, (uint32_t)l);
			put32(p + 4, recs[i].type);
			put64(p + 8, recs[i].state_id);
			put64(p + 16, recs[i].version);
			put_payload(p + SUB_HDR, &recs[i]);
			p += SUB_HDR + l;
		}
	}
	put32(frame, ks_crc32c(0, frame + HDR, plen));
}

static void finish_frame(unsigned char *p, uint64_t seq)
{
	put64(p + 12, seq);
	put32(p, ks_crc32c(get32(p), p + 4, HDR - 4));
}

struct frame {
	uint32_t len;
	uint32_t type;
	uint64_t seq;
	uint64_t state;
	uint64_t version;
	const unsigned char *payload;
};

static bool known_type(uint32_t type)
{
	return (type >= KS_REC_CREATE && type <= KS_REC_ATTR) ||
	       type == T_MULTI || type == T_SEGMENT || type == T_SNAP_HEAD ||
	       type == T_SNAP_STATE || type == T_SNAP_END;
}

/* Is there a whole, checksummed frame at buf[off]?  why (if not NULL) gets
 * what is wrong when there is not. */
static bool frame_at(const unsigned char *buf, size_t size, size_t off,
		     struct frame *f, const char **why)
{
	const unsigned char *p = buf + off;
	const char *w = NULL;

	if (size - off < HDR) {
		w = "truncated record header";
	} else {
		f->len = get32(p + 4);
		f->type = get32(p + 8);
		if (!known_type(f->type))
			w = "unknown record type";
		else if (f->len > MAX_PAYLOAD || f->len > size - off - HDR)
			w = "record length past the end of the file";
		else if (frame_crc(p, f->len) != get32(p))
			w = "checksum mismatch";
	}
	if (why)
		*why = w;
	if (w)
		return false;
	f->seq = get64(p + 12);
	f->state = get64(p + 20);
	f->version = get64(p + 28);
	f->payload = p + HDR;
	return true;
}

/* Does any whole frame start anywhere in buf[from..size)?  If so, bad bytes
 * before it are damage, not a torn tail. */
static bool any_frame_after(const unsigned char *buf, size_t size,
			    size_t from)
{
	struct frame f;

	for (size_t off = from; off + HDR <= size; off++) {
		uint32_t type = get32(buf + off + 8);

		if (!known_type(type) || get32(buf + off + 4) > size - off - HDR)
			continue;
		if (frame_at(buf, size, off, &f, NULL))
			return true;
	}
	return false;
}

static bool all_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Decodes one record; name must have KS_NAME_MAX + 1 bytes. */
static int decode_rec(uint32_t type, uint64_t state, uint64_t version,
		      const unsigned char *p, size_t len, struct ks_rec *rec,
		      char *name)
{
	size_t nlen;

	memset(rec, 0, sizeof(*rec));
	rec->type = (enum ks_rec_type)type;
	rec->state_id = state;
	rec->version = version;
	switch (type) {
	case KS_REC_CREATE:
	case KS_REC_ATTR:
		if (len < 12 + TIME_LEN)
			return EINVAL;
		rec->uid = (uid_t)get32(p);
		rec->gid = (gid_t)get32(p + 4);
		rec->mode = (mode_t)get32(p + 8);
		if (get_time(p + 12, &rec->time))
			return EINVAL;
		if (type == KS_REC_ATTR)
			return len == 12 + TIME_LEN ? 0 : EINVAL;
		p += 12 + TIME_LEN;
		nlen = len - 12 - TIME_LEN;
		break;
	case KS_REC_DELETE:
		return len == 0 ? 0 : EINVAL;
	case KS_REC_RENAME:
		if (len < TIME_LEN || get_time(p, &rec->time))
			return EINVAL;
		p += TIME_LEN;
		nlen = len - TIME_LEN;
		break;
	case KS_REC_COMMIT:
		if (len < TIME_LEN || get_time(p, &rec->time) || version == 0)
			return EINVAL;
		rec->bytes = p + TIME_LEN;
		rec->len = len - TIME_LEN;
		return 0;
	default:
		return EINVAL;
	}
	if (nlen == 0 || nlen > KS_NAME_MAX || memchr(p, 0, nlen))
		return EINVAL;
	memcpy(name, p, nlen);
	name[nlen] = 0;
	rec->name = name;
	return 0;
}

/* Applies a log frame (a single record or a unit of several). */
static int replay_frame(struct ks_recovery *r, const struct frame *f,
			uint64_t *nrecs)
{
	char name[KS_NAME_MAX + 1];
	struct ks_rec rec;
	int err;

	if (f->type != T_MULTI) {
		err = decode_rec(f->type, f->state, f->version, f->payload,
				 f->len, &rec, name);
		if (!err)
			err = ks_recovery_apply(r, &rec);
		*nrecs += !err;
		return err;
	}
	{
		const unsigned char *p = f->payload, *end = p + f->len;
		uint64_t n = 0;

		while (p < end) {
			uint32_t l;

			if ((size_t)(end - p) < SUB_HDR)
				return EINVAL;
			l = get32(p);
			if (l > (size_t)(end - p) - SUB_HDR)
				return EINVAL;
			err = decode_rec(get32(p + 4), get64(p + 8),
					 get64(p + 16), p + SUB_HDR, l, &rec,
					 name);
			if (!err)
				err = ks_recovery_apply(r, &rec);
			if (err)
				return err;
			p += SUB_HDR + l;
			n++;
		}
		if (n != f->version)
			return EINVAL;
		*nrecs += n;
	}
	return 0;
}

/* ---- the store ---------------------------------------------------------- */

struct buf {
	unsigned char *p;
	size_t len;
	size_t cap;
};

static int buf_put(struct buf *b, const void *bytes, size_t len)
{
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		unsigned char *np;

		while (cap < b->len + len)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np)
			return ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, bytes, len);
	b->len += len;
	return 0;
}

struct waiter {
	struct waiter *next;
	int err;
	bool done;
};

struct ks_log {
	struct ks_store base;
	char *dir;
	int dirfd;
	int lockfd;
	enum ks_sync sync;
	bool powerloss;         /* the test hook, see store_log.h */
	struct ks_log_io io;
	struct ks_engine *eng;  /* set by recovery */
	atomic_int fatal;       /* once set, every append fails with it */

	pthread_mutex_t mu;
	pthread_cond_t cv;      /* a leader finished */
	/* Under mu: */
	struct buf pend;        /* frames queued for the next leader */
	size_t pend_frames;
	struct waiter *pend_head;
	struct waiter **pend_tail;
	bool busy;              /* a leader (or a segment switch) owns fd */
	uint64_t seg;           /* the segment being written */
	uint64_t log_end;       /* copy of end, for readers */
	uint64_t old_bytes;     /* older segments not yet compacted away */
	uint64_t snap_bytes;
	uint64_t records;       /* in the log since the snapshot */
	uint64_t nstates;       /* live states, for the compaction trigger */
	uint64_t compact_floor; /* after a failed compaction: retry past it */
	bool compact_wanted;
	bool compacting;
	bool closing;
	bool thread_started;
	pthread_t thread;
	pthread_cond_t compact_cv;
	pthread_mutex_t compact_mu; /* one compaction at a time */

	/* Owned by whoever has busy set: */
	int fd;
	uint64_t end;           /* end of the last good record */
	uint64_t alloc_end;     /* the file is zeros from end to here */
	uint64_t synced;        /* powerloss: the file holds [0, synced) */
	uint64_t next_seq;
	struct buf batch;       /* the spare buffer, swapped with pend */
	struct buf staged;      /* powerloss: [synced, end), not in the file */
};

static int fail(char *msg, size_t msglen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *msg, size_t msglen, int err, const char *fmt, ...)
{
	va_list ap;

	if (msg && msglen) {
		va_start(ap, fmt);
		vsnprintf(msg, msglen, fmt, ap);
		va_end(ap);
	}
	return err;
}

static ssize_t real_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off);
}

static int real_ftruncate(int fd, off_t len)
{
	return ftruncate(fd, len);
}

/* Writes all of buf at off: 0, or the errno (ENOSPC, EIO, ...). */
static int write_all(struct ks_log *log, int fd, const void *buf, size_t len,
		     uint64_t off)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t n = log->io.pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EDQUOT ? ENOSPC : errno ? errno : EIO;
		if (n == 0)
			return EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int sync_fd(struct ks_log *log, int fd)
{
	while (log->io.fdatasync(fd) != 0)
		if (errno != EINTR)
			return errno ? errno : EIO;
	return 0;
}

/* The store cannot make commits durable any more. */
static void set_fatal(struct ks_log *log, const char *what, int err)
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
	while (log->io.ftruncate(log->fd, (off_t)good) != 0) {
		if (errno != EINTR) {
			set_fatal(log, "truncating after a failed write", errno);
			return EIO;
		}
	}
	return err == ENOSPC ? ENOSPC : EIO;
}

/* Makes everything written so far durable.  With the power-loss hook this
 * is where the held bytes reach the file.  Any failure is fatal. */
static int sync_point(struct ks_log *log)
{
	int err;

	if (log->powerloss && log->staged.len) {
		err = write_all(log, log->fd, log->staged.p, log->staged.len,
				log->synced);
		if (err) {
			set_fatal(log, "write", err);
			return EIO;
		}
		log->staged.len = 0;
		log->synced = log->end;
	}
	err = sync_fd(log, log->fd);
	if (err) {
		set_fatal(log, "fdatasync", err);
		return EIO;
	}
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
	if (write_all(log, log->fd, zeros, want - log->alloc_end,
		      log->alloc_end) == 0) {
		log->alloc_end = want;
	} else if (log->io.ftruncate(log->fd, (off_t)log->end) == 0) {
		log->alloc_end = log->end;
	}
}

/* The leader's work: give sequence numbers and checksums, write, sync. */
static int write_batch(struct ks_log *log, struct buf *b)
{
	uint64_t seq0 = log->next_seq;
	int err;

	for (size_t off = 0; off < b->len;) {
		unsigned char *p = b->p + off;

		finish_frame(p, log->next_seq++);
		off += HDR + get32(p + 4);
	}
	if (log->powerloss) {
		err = buf_put(&log->staged, b->p, b->len);
		if (err) {
			log->next_seq = seq0;
			return err;
		}
		log->end += b->len;
		if (log->sync == KS_SYNC_NONE)
			return 0;
		/* Only this batch is held: a failed write of it is an
		 * ordinary failed write. */
		err = write_all(log, log->fd, log->staged.p, log->staged.len,
				log->synced);
		log->staged.len = 0;
		if (err) {
			log->end = log->synced;
			log->next_seq = seq0;
			return write_failed(log, log->synced, err);
		}
		log->synced = log->end;
	} else {
		err = write_all(log, log->fd, b->p, b->len, log->end);
		if (err) {
			log->next_seq = seq0;
			log->alloc_end = log->end;
			return write_failed(log, log->end, err);
		}
		log->end += b->len;
		preallocate(log);
		if (log->sync == KS_SYNC_NONE)
			return 0;
	}
	return sync_point(log);
}

static void start_compaction_locked(struct ks_log *log);

/* Called with mu held and busy clear; returns with mu held. */
static void lead(struct ks_log *log)
{
	struct buf b = log->pend;
	struct waiter *w = log->pend_head, *next;
	size_t frames = log->pend_frames;
	int err;

	log->busy = true;
	log->pend = log->batch;
	log->pend.len = 0;
	log->pend_head = NULL;
	log->pend_tail = &log->pend_head;
	log->pend_frames = 0;
	pthread_mutex_unlock(&log->mu);

	err = atomic_load(&log->fatal);
	if (!err)
		err = write_batch(log, &b);

	pthread_mutex_lock(&log->mu);
	b.len = 0;
	log->batch = b;
	log->log_end = log->end;
	if (!err)
		log->records += frames;
	for (; w; w = next) {
		next = w->next;
		w->err = err;
		w->done = true;
	}
	log->busy = false;
	pthread_cond_broadcast(&log->cv);
}

/* Takes the file for a segment switch or close: mu held on entry and
 * exit. */
static void own_file_locked(struct ks_log *log)
{
	while (log->busy)
		pthread_cond_wait(&log->cv, &log->mu);
	log->busy = true;
}

static void release_file_locked(struct ks_log *log)
{
	log->busy = false;
	pthread_cond_broadcast(&log->cv);
}

static uint64_t live_estimate(struct ks_log *log)
{
	/* Pages, plus per state a frame header, name and attributes. */
	return ks_engine_live_bytes(log->eng) + log->nstates * 128;
}

/* Has the log outgrown the live data?  mu held. */
static bool over_threshold_locked(struct ks_log *log)
{
	uint64_t logb = log->old_bytes + log->log_end;

	return logb > KS_LOG_COMPACT_RATIO * live_estimate(log) +
		      KS_LOG_COMPACT_SLACK && logb > log->compact_floor;
}

static bool over_threshold(struct ks_log *log)
{
	bool over;

	pthread_mutex_lock(&log->mu);
	over = over_threshold_locked(log);
	pthread_mutex_unlock(&log->mu);
	return over;
}

static void maybe_compact_locked(struct ks_log *log)
{
	if (log->compacting || log->closing || atomic_load(&log->fatal))
		return;
	if (over_threshold_locked(log))
		start_compaction_locked(log);
}

static int log_append(struct ks_store *store, const struct ks_rec *recs,
		      size_t n)
{
	struct ks_log *log = (struct ks_log *)store;
	unsigned char stackbuf[8192], *frame = stackbuf;
	struct waiter w = { 0 };
	size_t flen;
	int err;

	if (n == 0)
		return 0;
	err = atomic_load(&log->fatal);
	if (err)
		return err;
	flen = frame_len(recs, n);
	if (flen - HDR > MAX_PAYLOAD)
		return EFBIG;
	if (flen > sizeof(stackbuf)) {
		frame = malloc(flen);
		if (!frame)
			return ENOMEM;
	}
	encode_unit(frame, recs, n);

	pthread_mutex_lock(&log->mu);
	if (!log->eng)
		err = EIO; /* not recovered */
	else
		err = buf_put(&log->pend, frame, flen);
	if (!err) {
		*log->pend_tail = &w;
		log->pend_tail = &w.next;
		log->pend_frames++;
		while (!w.done) {
			if (!log->busy)
				lead(log);
			else
				pthread_cond_wait(&log->cv, &log->mu);
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
		maybe_compact_locked(log);
	}
	pthread_mutex_unlock(&log->mu);
	if (frame != stackbuf)
		free(frame);
	return err;
}

static const struct ks_store_ops log_ops = {
	.append = log_append,
};

/* ---- files -------------------------------------------------------------- */

static void seg_name(char *buf, size_t len, uint64_t seg)
{
	snprintf(buf, len, "log.%016" PRIx64, seg);
}

static void snap_name(char *buf, size_t len, uint64_t seg)
{
	snprintf(buf, len, "snap.%016" PRIx64, seg);
}

/* Parses "log.<16 hex>" / "snap.<16 hex>". */
static bool parse_name(const char *name, const char *prefix, uint64_t *num)
{
	size_t pl = strlen(prefix);
	char *end;

	if (strncmp(name, prefix, pl) != 0 || strlen(name) != pl + 16)
		return false;
	for (size_t i = pl; i < pl + 16; i++)
		if (!((name[i] >= '0' && name[i] <= '9') ||
		      (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	*num = strtoull(name + pl, &end, 16);
	return *end == 0;
}

static int fsync_dir(struct ks_log *log)
{
	return fsync(log->dirfd) ? errno : 0;
}

/* Reads a whole file into memory. */
static int read_file(int fd, unsigned char **out, size_t *size)
{
	struct stat stbuf;
	unsigned char *buf;
	size_t done = 0;

	if (fstat(fd, &stbuf))
		return errno;
	buf = malloc(stbuf.st_size ? (size_t)stbuf.st_size : 1);
	if (!buf)
		return ENOMEM;
	while (done < (size_t)stbuf.st_size) {
		ssize_t n = pread(fd, buf + done, (size_t)stbuf.st_size - done,
				  (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return n < 0 ? errno : EIO;
		}
		done += (size_t)n;
	}
	*out = buf;
	*size = done;
	return 0;
}

/* Creates segment SEG holding only its header, durable, directory entry
 * included.  *fdp gets it open for writing. */
static int create_segment(struct ks_log *log, uint64_t seg, int *fdp)
{
	unsigned char hdr[SEG_HDR_LEN];
	char name[32];
	int fd, err;

	seg_name(name, sizeof(name), seg);
	fd = openat(log->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
		    0600);
	if (fd < 0)
		return errno;
	memcpy(hdr + HDR, seg_magic, sizeof(seg_magic));
	put_header(hdr, sizeof(seg_magic), T_SEGMENT, 0, 0, seg);
	put32(hdr, frame_crc(hdr, sizeof(seg_magic)));
	err = write_all(log, fd, hdr, sizeof(hdr), 0);
	if (!err)
		err = sync_fd(log, fd);
	if (!err)
		err = fsync_dir(log);
	if (err) {
		close(fd);
		unlinkat(log->dirfd, name, 0);
		return err;
	}
	*fdp = fd;
	return 0;
}

/* ---- snapshots: writing ------------------------------------------------- */

struct writer {
	int fd;
	struct buf out;
	struct buf scratch;
	uint64_t index;
	uint64_t written;
	int err;
};

static void writer_flush(struct writer *w)
{
	size_t done = 0;

	while (!w->err && done < w->out.len) {
		ssize_t n = write(w->fd, w->out.p + done, w->out.len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			w->err = n < 0 ? errno : EIO;
		else
			done += (size_t)n;
	}
	w->written += done;
	w->out.len = 0;
}

/* Appends a frame whose payload is w->scratch. */
static void writer_frame(struct writer *w, uint32_t type, uint64_t state,
			 uint64_t version)
{
	unsigned char hdr[HDR];
	uint32_t len = (uint32_t)w->scratch.len;

	if (w->err)
		return;
	put_header(hdr, len, type, w->index++, state, version);
	put32(hdr, ks_crc32c(ks_crc32c(0, w->scratch.p, len), hdr + 4,
			     HDR - 4));
	if (buf_put(&w->out, hdr, HDR) || buf_put(&w->out, w->scratch.p, len))
		w->err = ENOMEM;
	w->scratch.len = 0;
	if (w->out.len >= (1u << 20))
		writer_flush(w);
}

static void scratch_put(struct writer *w, const void *p, size_t len)
{
	if (buf_put(&w->scratch, p, len))
		w->err = ENOMEM;
}

static int write_snapshot(struct ks_log *log, const struct ks_snapshot *snap,
			  uint64_t seg, uint64_t first_seq, uint64_t *size)
{
	struct writer w = { .fd = -1 };
	char tmp[40], name[32];
	unsigned char b[64];

	snap_name(name, sizeof(name), seg);
	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	w.fd = openat(log->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		      0600);
	if (w.fd < 0)
		return errno;

	scratch_put(&w, snap_magic, sizeof(snap_magic));
	put64(b, first_seq);
	put64(b + 8, snap->n);
	scratch_put(&w, b, 16);
	writer_frame(&w, T_SNAP_HEAD, snap->next_id, seg);
	for (size_t i = 0; i < snap->n; i++) {
		const struct ks_snap_state *s = &snap->states[i];
		size_t nlen = strlen(s->name);

		put32(b, (uint32_t)s->attr.uid);
		put32(b + 4, (uint32_t)s->attr.gid);
		put32(b + 8, (uint32_t)s->attr.mode);
		put_time(b + 12, &s->attr.ctime);
		put_time(b + 24, &s->page->mtime);
		put16(b + 36, (uint16_t)nlen);
		scratch_put(&w, b, 38);
		scratch_put(&w, s->name, nlen);
		scratch_put(&w, s->page->bytes, s->page->len);
		writer_frame(&w, T_SNAP_STATE, s->id, s->page->version);
	}
	writer_frame(&w, T_SNAP_END, 0, snap->n);
	writer_flush(&w);
	if (!w.err && sync_fd(log, w.fd))
		w.err = errno ? errno : EIO;
	if (close(w.fd) && !w.err)
		w.err = errno;
	if (!w.err && renameat(log->dirfd, tmp, log->dirfd, name))
		w.err = errno;
	if (!w.err)
		w.err = fsync_dir(log);
	if (w.err)
		unlinkat(log->dirfd, tmp, 0);
	free(w.out.p);
	free(w.scratch.p);
	*size = w.written;
	return w.err;
}

/* Deletes segments and snapshots older than SEG. */
static void delete_older(struct ks_log *log, uint64_t seg)
{
	int fd = openat(log->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	uint64_t num;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)))
		if ((parse_name(de->d_name, "log.", &num) ||
		     parse_name(de->d_name, "snap.", &num)) && num < seg)
			unlinkat(log->dirfd, de->d_name, 0);
	closedir(d);
}

/* ---- compaction --------------------------------------------------------- */

static int compact(struct ks_log *log)
{
	struct ks_snapshot snap;
	uint64_t seg, first_seq, old_end, size = 0, switch_records;
	int fd, oldfd, err;

	pthread_mutex_lock(&log->mu);
	seg = log->seg + 1;
	pthread_mutex_unlock(&log->mu);

	/* The new segment is made durable before anyone writes to it. */
	err = create_segment(log, seg, &fd);
	if (err)
		return err;

	pthread_mutex_lock(&log->mu);
	own_file_locked(log);
	pthread_mutex_unlock(&log->mu);
	err = atomic_load(&log->fatal);
	/* Without this, with --sync none a power cut could tear the old
	 * segment's tail, which recovery only forgives in the last one. */
	if (!err && (log->sync == KS_SYNC_NONE || log->powerloss))
		err = sync_point(log);
	if (err) {
		pthread_mutex_lock(&log->mu);
		release_file_locked(log);
		pthread_mutex_unlock(&log->mu);
		close(fd);
		/* Leaving it would be harmless (recovery drops an empty last
		 * segment), but tidy. */
		{
			char name[32];

			seg_name(name, sizeof(name), seg);
			unlinkat(log->dirfd, name, 0);
		}
		return err;
	}
	oldfd = log->fd;
	old_end = log->end;
	/* Zeros written ahead are no use there any more (and are no damage
	 * if this is lost). */
	if (log->alloc_end > log->end && ftruncate(oldfd, (off_t)log->end))
		(void)0;
	log->fd = fd;
	log->end = log->synced = log->alloc_end = SEG_HDR_LEN;
	first_seq = log->next_seq;
	pthread_mutex_lock(&log->mu);
	log->seg = seg;
	log->old_bytes += old_end;
	log->log_end = log->end;
	switch_records = log->records;
	release_file_locked(log);
	pthread_mutex_unlock(&log->mu);
	close(oldfd);

	err = ks_snapshot_take(log->eng, &snap);
	if (err)
		return err;
	err = write_snapshot(log, &snap, seg, first_seq, &size);
	ks_snapshot_release(&snap);
	if (err)
		return err;
	delete_older(log, seg);

	pthread_mutex_lock(&log->mu);
	log->old_bytes = 0;
	log->snap_bytes = size;
	log->records -= switch_records;
	pthread_mutex_unlock(&log->mu);
	return 0;
}

static int compact_now(struct ks_log *log)
{
	int err;

	pthread_mutex_lock(&log->compact_mu);
	err = compact(log);
	pthread_mutex_lock(&log->mu);
	if (!err) {
		log->compact_floor = 0;
	} else {
		uint64_t logb = log->old_bytes + log->log_end;

		log->compact_floor = logb + (logb / 2 > KS_LOG_COMPACT_SLACK ?
					     logb / 2 : KS_LOG_COMPACT_SLACK);
	}
	pthread_mutex_unlock(&log->mu);
	pthread_mutex_unlock(&log->compact_mu);
	return err;
}

static void *compactor(void *arg)
{
	struct ks_log *log = arg;

	pthread_mutex_lock(&log->mu);
	while (!log->closing) {
		int err;

		if (!log->compact_wanted) {
			pthread_cond_wait(&log->compact_cv, &log->mu);
			continue;
		}
		log->compact_wanted = false;
		pthread_mutex_unlock(&log->mu);
		err = compact_now(log);
		if (err && !atomic_load(&log->fatal))
			fprintf(stderr, "kstatefs: store %s: compaction "
				"failed: %s; will retry\n", log->dir,
				strerror(err));
		pthread_mutex_lock(&log->mu);
		log->compacting = false;
		/* Commits that came during the compaction may have grown the
		 * log past the mark again; nothing else would notice if they
		 * were the last for a while. */
		if (!err)
			maybe_compact_locked(log);
	}
	pthread_mutex_unlock(&log->mu);
	return NULL;
}

/* The thread starts on first need, not at open: the daemon forks after
 * opening the store, and threads do not survive a fork. */
static void start_compaction_locked(struct ks_log *log)
{
	if (!log->thread_started) {
		if (pthread_create(&log->thread, NULL, compactor, log))
			return;
		log->thread_started = true;
	}
	log->compacting = true;
	log->compact_wanted = true;
	pthread_cond_signal(&log->compact_cv);
}

int ks_log_compact(struct ks_store *store)
{
	struct ks_log *log = (struct ks_log *)store;

	if (!log->eng)
		return EINVAL;
	return compact_now(log);
}

/* ---- open, lock, close -------------------------------------------------- */

static int mkdir_p(const char *dir)
{
	char *copy = strdup(dir);
	int err = 0;

	if (!copy)
		return ENOMEM;
	for (char *p = copy + 1; ; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;

			*p = 0;
			if (mkdir(copy, 0700) && errno != EEXIST)
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

	if (ftruncate(log->lockfd, 0) == 0 &&
	    pwrite(log->lockfd, buf, (size_t)len, 0) == len)
		return;
}

/* "process 1234 (kstatefs)", from the lock file and /proc. */
static void describe_holder(int lockfd, char *out, size_t outlen)
{
	char buf[32] = "", path[64], comm[64] = "";
	ssize_t n = pread(lockfd, buf, sizeof(buf) - 1, 0);
	long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
	FILE *f;

	if (pid <= 0) {
		snprintf(out, outlen, "another process");
		return;
	}
	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	f = fopen(path, "re");
	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
	}
	if (comm[0])
		snprintf(out, outlen, "process %ld (%s)", pid, comm);
	else
		snprintf(out, outlen, "process %ld", pid);
}

int ks_log_open(const char *dir, enum ks_sync sync, struct ks_store **out,
		char *msg, size_t msglen)
{
	struct ks_log *log;
	const char *env;
	int err;

	err = mkdir_p(dir);
	if (err)
		return fail(msg, msglen, err, "cannot create store %s: %s",
			    dir, strerror(err));
	log = calloc(1, sizeof(*log));
	if (!log || !(log->dir = strdup(dir))) {
		free(log);
		return fail(msg, msglen, ENOMEM, "out of memory");
	}
	log->base.ops = &log_ops;
	log->sync = sync;
	log->fd = log->lockfd = -1;
	log->io = (struct ks_log_io){ real_pwrite, fdatasync, real_ftruncate };
	env = getenv(KS_LOG_POWERLOSS_ENV);
	log->powerloss = env && *env && strcmp(env, "0") != 0;
	pthread_mutex_init(&log->mu, NULL);
	pthread_mutex_init(&log->compact_mu, NULL);
	pthread_cond_init(&log->cv, NULL);
	pthread_cond_init(&log->compact_cv, NULL);
	log->pend_tail = &log->pend_head;

	log->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (log->dirfd < 0) {
		err = fail(msg, msglen, errno, "cannot open store %s: %s",
			   dir, strerror(errno));
		goto fail;
	}
	log->lockfd = openat(log->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC,
			     0600);
	if (log->lockfd < 0) {
		err = fail(msg, msglen, errno, "cannot open %s/lock: %s", dir,
			   strerror(errno));
		goto fail;
	}
	if (flock(log->lockfd, LOCK_EX | LOCK_NB)) {
		char who[128];

		if (errno != EWOULDBLOCK) {
			err = fail(msg, msglen, errno, "cannot lock %s/lock: %s",
				   dir, strerror(errno));
			goto fail;
		}
		describe_holder(log->lockfd, who, sizeof(who));
		err = fail(msg, msglen, EBUSY,
			   "store %s is in use by %s", dir, who);
		goto fail;
	}
	write_owner(log);
	*out = &log->base;
	return 0;
fail:
	if (log->lockfd >= 0)
		close(log->lockfd);
	if (log->dirfd >= 0)
		close(log->dirfd);
	pthread_mutex_destroy(&log->mu);
	pthread_mutex_destroy(&log->compact_mu);
	pthread_cond_destroy(&log->cv);
	pthread_cond_destroy(&log->compact_cv);
	free(log->dir);
	free(log);
	return err;
}

void ks_log_owner(struct ks_store *store)
{
	write_owner((struct ks_log *)store);
}

void ks_log_set_io(struct ks_store *store, const struct ks_log_io *io)
{
	struct ks_log *log = (struct ks_log *)store;

	pthread_mutex_lock(&log->mu);
	own_file_locked(log);
	log->io.pwrite = io && io->pwrite ? io->pwrite : real_pwrite;
	log->io.fdatasync = io && io->fdatasync ? io->fdatasync : fdatasync;
	log->io.ftruncate = io && io->ftruncate ? io->ftruncate
						: real_ftruncate;
	release_file_locked(log);
	pthread_mutex_unlock(&log->mu);
}

void ks_log_stats(struct ks_store *store, uint64_t *bytes_on_disk,
		  uint64_t *records)
{
	struct ks_log *log = (struct ks_log *)store;

	pthread_mutex_lock(&log->mu);
	if (bytes_on_disk)
		*bytes_on_disk = log->snap_bytes + log->old_bytes +
				 log->log_end;
	if (records)
		*records = log->records;
	pthread_mutex_unlock(&log->mu);
}

void ks_log_close(struct ks_store *store)
{
	struct ks_log *log = (struct ks_log *)store;

	if (!log)
		return;
	pthread_mutex_lock(&log->mu);
	log->closing = true;
	pthread_cond_signal(&log->compact_cv);
	pthread_mutex_unlock(&log->mu);
	if (log->thread_started)
		pthread_join(log->thread, NULL);
	/* Leave the store small: the next start reads less. */
	if (log->eng && !atomic_load(&log->fatal) && over_threshold(log))
		compact_now(log);
	pthread_mutex_lock(&log->mu);
	own_file_locked(log);
	pthread_mutex_unlock(&log->mu);
	if (log->fd >= 0) {
		/* A clean stop makes everything durable, --sync none too. */
		if (!atomic_load(&log->fatal) && sync_point(log) == 0 &&
		    log->alloc_end > log->end &&
		    ftruncate(log->fd, (off_t)log->end) == 0)
			log->alloc_end = log->end;
		close(log->fd);
	}
	close(log->lockfd); /* releases the flock */
	close(log->dirfd);
	pthread_mutex_destroy(&log->mu);
	pthread_mutex_destroy(&log->compact_mu);
	pthread_cond_destroy(&log->cv);
	pthread_cond_destroy(&log->compact_cv);
	free(log->pend.p);
	free(log->batch.p);
	free(log->staged.p);
	free(log->dir);
	free(log);
}

/* ---- recovery ----------------------------------------------------------- */

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

/* Lists segments and snapshots; removes temporary files of a compaction
 * that did not finish. */
static int list_dir(struct ks_log *log, struct nums *segs, struct nums *snaps)
{
	int fd = openat(log->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	uint64_t num;
	int err = 0;

	if (!d) {
		err = errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	while (!err && (de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (parse_name(de->d_name, "log.", &num))
			err = nums_add(segs, num);
		else if (parse_name(de->d_name, "snap.", &num))
			err = nums_add(snaps, num);
		else if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0 &&
			 strncmp(de->d_name, "snap.", 5) == 0)
			unlinkat(log->dirfd, de->d_name, 0);
	}
	closedir(d);
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
	return fail(rp->msg, rp->msglen, EUCLEAN,
		    "store %s is damaged: %s/%s, byte offset %zu: %s",
		    rp->log->dir, rp->log->dir, file, off, why);
}

static int load_snapshot(struct replay *rp, uint64_t seg)
{
	struct ks_log *log = rp->log;
	unsigned char *buf = NULL;
	size_t size = 0, off = 0;
	uint64_t count = 0, nstates = 0, index = 0;
	struct frame f;
	const char *why;
	char name[32];
	int fd, err;

	snap_name(name, sizeof(name), seg);
	fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(rp->msg, rp->msglen, errno, "cannot open %s/%s: %s",
			    log->dir, name, strerror(errno));
	err = read_file(fd, &buf, &size);
	close(fd);
	if (err)
		return fail(rp->msg, rp->msglen, err, "cannot read %s/%s: %s",
			    log->dir, name, strerror(err));
	log->snap_bytes = size;

	for (;;) {
		if (!frame_at(buf, size, off, &f, &why)) {
			err = damaged(rp, name, off, off == size ?
				      "snapshot ends early" : why);
			break;
		}
		if (f.seq != index++) {
			err = damaged(rp, name, off, "record out of order");
			break;
		}
		if (off == 0) {
			if (f.type != T_SNAP_HEAD || f.len != 32 ||
			    memcmp(f.payload, snap_magic, 16) ||
			    f.version != seg) {
				err = damaged(rp, name, off,
					      "not a kstatefs snapshot");
				break;
			}
			rp->expected = get64(f.payload + 16);
			nstates = get64(f.payload + 24);
			ks_recovery_next_id(rp->r, f.state);
		} else if (f.type == T_SNAP_STATE) {
			const unsigned char *p = f.payload;
			struct ks_state_attr attr;
			struct timespec mtime;
			char sname[KS_NAME_MAX + 1];
			size_t nlen;

			err = EINVAL;
			if (f.len >= 38) {
				attr.uid = (uid_t)get32(p);
				attr.gid = (gid_t)get32(p + 4);
				attr.mode = (mode_t)get32(p + 8);
				nlen = get16(p + 36);
				if (!get_time(p + 12, &attr.ctime) &&
				    !get_time(p + 24, &mtime) && nlen &&
				    nlen <= KS_NAME_MAX &&
				    nlen <= f.len - 38 &&
				    !memchr(p + 38, 0, nlen)) {
					memcpy(sname, p + 38, nlen);
					sname[nlen] = 0;
					err = ks_recovery_put(rp->r, f.state,
						sname, &attr, f.version, &mtime,
						p + 38 + nlen, f.len - 38 - nlen);
				}
			}
			if (err == ENOMEM) {
				err = fail(rp->msg, rp->msglen, ENOMEM,
					   "out of memory");
				break;
			}
			if (err) {
				err = damaged(rp, name, off, "malformed state");
				break;
			}
			count++;
		} else if (f.type == T_SNAP_END) {
			if (f.version != count || count != nstates) {
				err = damaged(rp, name, off,
					      "wrong number of states");
			} else if (off + HDR + f.len != size) {
				err = damaged(rp, name, off + HDR + f.len,
					      "bytes after the end");
			}
			break;
		} else {
			err = damaged(rp, name, off, "unexpected record");
			break;
		}
		off += HDR + f.len;
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

	seg_name(name, sizeof(name), seg);
	fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	err = read_file(fd, &buf, &size);
	close(fd);
	if (err)
		return -1;
	/* The segment header is a frame too: look past it only. */
	has = size > SEG_HDR_LEN && any_frame_after(buf, size, SEG_HDR_LEN);
	free(buf);
	return has;
}

/* Replays segment SEG.  The last one may end in a torn record, which is
 * cut off; it is left open for appending. */
static int replay_segment(struct replay *rp, uint64_t seg, bool last)
{
	struct ks_log *log = rp->log;
	unsigned char *buf = NULL;
	size_t size = 0, off;
	struct frame f;
	const char *why;
	char name[32];
	int fd, err;

	seg_name(name, sizeof(name), seg);
	fd = openat(log->dirfd, name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return fail(rp->msg, rp->msglen, errno, "cannot open %s/%s: %s",
			    log->dir, name, strerror(errno));
	err = read_file(fd, &buf, &size);
	if (err) {
		close(fd);
		return fail(rp->msg, rp->msglen, err, "cannot read %s/%s: %s",
			    log->dir, name, strerror(err));
	}
	if (!frame_at(buf, size, 0, &f, &why) || f.type != T_SEGMENT ||
	    f.len != sizeof(seg_magic) ||
	    memcmp(f.payload, seg_magic, sizeof(seg_magic)) ||
	    f.version != seg) {
		err = damaged(rp, name, 0, "not a kstatefs log segment");
		goto out;
	}
	off = HDR + f.len;
	while (off < size) {
		if (frame_at(buf, size, off, &f, &why)) {
			if (f.seq != rp->expected) {
				char w[96];

				snprintf(w, sizeof(w), "sequence %" PRIu64
					 ", expected %" PRIu64, f.seq,
					 rp->expected);
				err = damaged(rp, name, off, w);
				goto out;
			}
			if (f.type != T_MULTI &&
			    !(f.type >= KS_REC_CREATE && f.type <= KS_REC_ATTR)) {
				err = damaged(rp, name, off,
					      "unexpected record type");
				goto out;
			}
			err = replay_frame(rp->r, &f, &rp->records);
			if (err == ENOMEM) {
				err = fail(rp->msg, rp->msglen, err,
					   "out of memory");
				goto out;
			}
			if (err) {
				err = damaged(rp, name, off,
					      "malformed record");
				goto out;
			}
			rp->expected++;
			off += HDR + f.len;
			continue;
		}
		/* Zeros to the end: the end (zeros written ahead).  Other bad
		 * bytes: a torn tail if it is the end of the log and nothing
		 * whole follows; otherwise damage. */
		if (all_zero(buf + off, size - off)) {
			if (!last) {
				size = off;
				break;
			}
		} else if (!last || any_frame_after(buf, size, off + 1)) {
			err = damaged(rp, name, off, why);
			goto out;
		} else {
			fprintf(stderr, "kstatefs: store %s: dropped a torn "
				"record at the end of %s (byte offset %zu, "
				"%zu bytes)\n", log->dir, name, off,
				size - off);
		}
		if (ftruncate(fd, (off_t)off) || fdatasync(fd)) {
			err = fail(rp->msg, rp->msglen, errno,
				   "cannot cut the torn end of %s/%s: %s",
				   log->dir, name, strerror(errno));
			goto out;
		}
		size = off;
		break;
	}
	if (last) {
		log->fd = fd;
		log->end = log->synced = log->alloc_end = size;
		fd = -1;
	} else {
		log->old_bytes += size;
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return err;
}

int ks_log_recover(struct ks_store *store, struct ks_engine *eng,
		   char *msg, size_t msglen)
{
	struct ks_log *log = (struct ks_log *)store;
	struct nums segs = { 0 }, snaps = { 0 };
	struct replay rp = { .log = log, .expected = 1, .msg = msg,
			     .msglen = msglen };
	uint64_t first, last, states, bytes;
	size_t i0;
	int err;

	if (log->eng)
		return fail(msg, msglen, EINVAL, "store already recovered");
	rp.r = ks_recovery_new();
	if (!rp.r)
		return fail(msg, msglen, ENOMEM, "out of memory");
	err = list_dir(log, &segs, &snaps);
	if (err) {
		err = fail(msg, msglen, err, "cannot list store %s: %s",
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
		seg_name(name, sizeof(name), segs.v[segs.n - 1]);
		unlinkat(log->dirfd, name, 0);
		segs.n--;
	}
	if (i0 == segs.n) {
		if (snaps.n || segs.n) {
			char name[32];

			seg_name(name, sizeof(name), first);
			err = fail(msg, msglen, EUCLEAN, "store %s is damaged: "
				   "%s/%s is missing", log->dir, log->dir, name);
			goto out;
		}
		/* A new store. */
		err = create_segment(log, 1, &log->fd);
		if (err) {
			err = fail(msg, msglen, err, "cannot create the log in "
				   "%s: %s", log->dir, strerror(err));
			goto out;
		}
		log->end = log->synced = log->alloc_end = SEG_HDR_LEN;
		last = 1;
	} else {
		last = segs.v[segs.n - 1];
		for (size_t i = i0; i < segs.n; i++) {
			if (segs.v[i] != first + (i - i0)) {
				char name[32];

				seg_name(name, sizeof(name), first + (i - i0));
				err = fail(msg, msglen, EUCLEAN,
					   "store %s is damaged: %s/%s is "
					   "missing", log->dir, log->dir, name);
				goto out;
			}
			err = replay_segment(&rp, segs.v[i], i + 1 == segs.n);
			if (err)
				goto out;
		}
	}
	ks_recovery_counts(rp.r, &states, &bytes);
	err = ks_recovery_finish(rp.r, eng, msg, msglen);
	if (err)
		goto out;
	for (size_t i = 0; i < i0; i++) {
		char name[32];

		seg_name(name, sizeof(name), segs.v[i]);
		unlinkat(log->dirfd, name, 0);
	}
	for (size_t i = 0; i + 1 < snaps.n; i++) {
		char name[32];

		snap_name(name, sizeof(name), snaps.v[i]);
		unlinkat(log->dirfd, name, 0);
	}
	pthread_mutex_lock(&log->mu);
	log->eng = eng;
	log->seg = last;
	log->next_seq = rp.expected;
	log->log_end = log->end;
	log->records = rp.records;
	log->nstates = states;
	pthread_mutex_unlock(&log->mu);
	/* A big log makes every start slow: compact it now, while nothing
	 * else runs. */
	if (log->old_bytes + log->end > KS_LOG_COMPACT_RATIO *
	    (bytes + states * 128) + KS_LOG_COMPACT_SLACK)
		compact_now(log);
	err = 0;
out:
	if (err && log->fd >= 0) {
		close(log->fd);
		log->fd = -1;
	}
	ks_recovery_free(rp.r);
	free(segs.v);
	free(snaps.v);
	return err;
}
