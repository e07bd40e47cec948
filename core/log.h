/*
 * The log store's parts, shared by its files (not for use outside them):
 *
 *   log_codec.c     the on-disk format: frames, checksums, file names
 *   log_io.c        the I/O table every system call goes through, and the
 *                   power-loss shim that can sit in it
 *   log_group.c     the writer: group commit, segments, failures
 *   log_snapshot.c  snapshots and compaction (its thread too)
 *   log_recover.c   reading a store back into an engine
 *   store_log.c     the store's ops: open, lock, start, stats, close
 *
 * STORE.md describes the layout and what it promises.
 */
#ifndef KSTATEFS_CORE_LOG_H
#define KSTATEFS_CORE_LOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "engine.h"
#include "lock.h"
#include "store_log.h"

struct ks_recovery;

/* ---- the record format (log_codec.c) -------------------------------------
 * Every record, in the log and in the snapshot, is a frame:
 *
 *   0  u32 crc32c    of the payload, then of bytes 4..35 of this header
 *   4  u32 length    of the payload
 *   8  u32 type      low 8 bits; the high 24: "in flight" (below)
 *  12  u64 sequence  log: 1, 2, 3 ... across segments; snapshot: index
 *  20  u64 state     state id
 *  28  u64 version
 *  36  payload
 *
 * all little-endian.  The checksum covers the payload first so that a
 * committer can checksum its page in parallel with the others, and the
 * leader only finishes it over the header once it has given the sequence.
 *
 * In flight: in a log record, how many records before it (in sequence)
 * were not yet known to be on disk when it was written: its place in its
 * group commit with --sync full, the records since the last sync with
 * --sync none.  So a record with sequence S and in-flight count N says that
 * records before S - N were durable before it was written, and recovery
 * can tell the torn end of the last group commit (damage only at or after
 * S - N for every whole record after it) from damage to records that had
 * been synced, and so acknowledged (STORE.md, "Starting").  Logs written
 * before the count existed have 0 everywhere, which forgives nothing but
 * a tail with no whole record after it, as those logs always were read.
 * Saturates at LOG_INFLIGHT_MAX, which errs towards refusing.  Frames
 * other than log records have 0.
 */
#define LOG_HDR 36
#define LOG_SUB_HDR 24          /* u32 len, u32 type, u64 state, u64 version */
#define LOG_TIME_LEN 12         /* i64 seconds, u32 nanoseconds */
#define LOG_MAX_PAYLOAD (1u << 30)
#define LOG_MAGIC_LEN 16
#define LOG_SEG_HDR_LEN (LOG_HDR + LOG_MAGIC_LEN)
#define LOG_SNAP_STATE_FIXED 38 /* uid gid mode ctime mtime namelen */
#define LOG_TYPE_MASK 0xffu
#define LOG_INFLIGHT_SHIFT 8
#define LOG_INFLIGHT_MAX 0xffffffu

enum {
	LOG_T_MULTI = 16,       /* several records of one unit; version = n */
	LOG_T_SEGMENT = 32,     /* first frame of a segment; version = number */
	LOG_T_SNAP_HEAD = 48,   /* state = next id, version = first segment */
	LOG_T_SNAP_STATE = 49,  /* one state */
	LOG_T_SNAP_END = 50,    /* version = number of states */
};

extern const char log_seg_magic[LOG_MAGIC_LEN];
extern const char log_snap_magic[LOG_MAGIC_LEN];

static inline void log_put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline void log_put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t log_get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t log_get64(const unsigned char *p)
{
	return (uint64_t)log_get32(p) | (uint64_t)log_get32(p + 4) << 32;
}

struct log_frame {
	uint32_t len;
	uint32_t type;          /* the low 8 bits of the field */
	uint32_t inflight;      /* the high 24 */
	uint64_t seq;
	uint64_t state;
	uint64_t version;
	const unsigned char *payload;
};

/* The bytes a unit takes as one frame (CHECK records take none: the log
 * has no other host to compare with). */
size_t log_unit_len(const struct ks_rec *recs, size_t n);
/* Encodes a unit into frame (log_unit_len bytes).  The sequence is left 0
 * and the crc field holds the payload's checksum only: the leader finishes
 * both (log_finish_frame). */
void log_encode_unit(unsigned char *frame, const struct ks_rec *recs,
		     size_t n);
void log_finish_frame(unsigned char *p, uint64_t seq);
/* Sets the in-flight count of an encoded record (before finishing it). */
static inline void log_set_inflight(unsigned char *p, uint64_t n)
{
	if (n > LOG_INFLIGHT_MAX)
		n = LOG_INFLIGHT_MAX;
	log_put32(p + 8, (log_get32(p + 8) & LOG_TYPE_MASK) |
		  (uint32_t)n << LOG_INFLIGHT_SHIFT);
}
/* A whole frame with its checksum, of len payload bytes already in
 * p + LOG_HDR. */
void log_seal_frame(unsigned char *p, uint32_t len, uint32_t type,
		    uint64_t seq, uint64_t state, uint64_t version);
/* Is there a whole, checksummed frame at buf[off]?  why (if not NULL)
 * gets what is wrong when there is not. */
bool log_frame_at(const unsigned char *buf, size_t size, size_t off,
		  struct log_frame *f, const char **why);
/* Does any whole frame start anywhere in buf[from..size)? */
bool log_any_frame_after(const unsigned char *buf, size_t size, size_t from);
/* The first whole frame starting in buf[*off..size): true with *off at it
 * and f filled in, or false. */
bool log_next_frame(const unsigned char *buf, size_t size, size_t *off,
		    struct log_frame *f);
/* Is f a record of the log (one change or a unit), not a segment header
 * or a snapshot's frame? */
bool log_is_record(const struct log_frame *f);
/* The header frame of segment SEG (LOG_SEG_HDR_LEN bytes). */
void log_seg_header(unsigned char *hdr, uint64_t seg);
bool log_all_zero(const unsigned char *p, size_t len);
/* Applies a log frame (one record or a unit) to r; *nrecs counts them.
 * EINVAL for a malformed one. */
int log_replay_frame(struct ks_recovery *r, const struct log_frame *f,
		     uint64_t *nrecs);

/* A state in a snapshot: the fixed part and the name, then the page. */
struct log_snap_state {
	struct ks_state_attr attr;
	struct timespec mtime;
	char name[KS_NAME_MAX + 1];
	const unsigned char *bytes;
	size_t len;
};
/* Writes the fixed part (LOG_SNAP_STATE_FIXED bytes) for a name of nlen. */
void log_snap_state_head(unsigned char *p, const struct ks_state_attr *attr,
			 const struct timespec *mtime, size_t nlen);
int log_snap_state_decode(const unsigned char *p, size_t len,
			  struct log_snap_state *out);

void log_seg_name(char *buf, size_t len, uint64_t seg);
void log_snap_name(char *buf, size_t len, uint64_t seg);
/* Parses "log.<16 hex>" / "snap.<16 hex>". */
bool log_parse_name(const char *name, const char *prefix, uint64_t *num);

struct log_buf {
	unsigned char *p;
	size_t len;
	size_t cap;
};
int log_buf_put(struct log_buf *b, const void *bytes, size_t len);

/* ---- the store -------------------------------------------------------- */

struct log_waiter {
	struct log_waiter *next;
	int err;
	bool done;
};

struct log_powerloss;

struct ks_log {
	struct ks_store base;
	char *dir;
	int dirfd;
	int lockfd;
	enum ks_sync sync;
	struct ks_log_io sys;   /* the system's calls, or a test's */
	struct ks_log_io io;    /* what the log calls: sys, or a shim over it */
	struct log_powerloss *powerloss; /* the shim, if the test hook is on */
	struct ks_engine *eng;  /* set by recovery */
	atomic_int fatal;       /* once set, every append fails with it */

	struct ks_lock mu;
	pthread_cond_t cv;      /* a leader finished */
	/* Under mu: */
	struct log_buf pend;    /* frames queued for the next leader */
	size_t pend_frames;
	struct log_waiter *pend_head;
	struct log_waiter **pend_tail;
	bool busy;              /* a leader (or a segment switch) owns fd */
	/* Group commit with --sync full (log_group.c, "The group"): */
	bool gathering;         /* a leader waits for the rest of its group */
	pthread_cond_t gather_cv; /* the group is complete */
	size_t expect;          /* committers seen around the last batch */
	int64_t sync_ns;        /* how long the last batch's write+sync took */
	uint64_t seg;           /* the segment being written */
	uint64_t log_end;       /* copy of end, for readers */
	uint64_t old_bytes;     /* older segments not yet compacted away */
	uint64_t snap_bytes;
	uint64_t records;       /* in the log since the snapshot */
	uint64_t syncs;         /* batches written and synced (.stats) */
	uint64_t nstates;       /* live states, for the compaction trigger */
	uint64_t compact_floor; /* after a failed compaction: retry past it */
	bool compact_wanted;
	bool compacting;
	bool closing;
	bool thread_started;
	pthread_t thread;
	pthread_cond_t compact_cv;
	struct ks_lock compact_mu; /* one compaction at a time */

	/* Owned by whoever has busy set: */
	int fd;
	uint64_t end;           /* end of the last good record */
	uint64_t alloc_end;     /* the file is zeros from end to here */
	uint64_t next_seq;
	uint64_t durable_seq;   /* records before it are known on disk */
	struct log_buf batch;   /* the spare buffer, swapped with pend */
};

/* log_io.c: the table, and helpers that loop over it. */
void log_io_init(struct ks_log *log);
void log_io_destroy(struct ks_log *log);
/* Installs io (NULL members: the real call) under the shim, if any. */
void log_io_set(struct ks_log *log, const struct ks_log_io *io);
int log_write_all(struct ks_log *log, int fd, const void *buf, size_t len,
		  uint64_t off);
int log_sync_fd(struct ks_log *log, int fd);
int log_fsync_dir(struct ks_log *log);
int log_read_file(struct ks_log *log, int fd, unsigned char **out,
		  size_t *size);
int log_open_file(struct ks_log *log, const char *name, int flags);
void log_close_file(struct ks_log *log, int fd);
int log_unlink(struct ks_log *log, const char *name);
/* Calls fn for every name in the store's directory. */
int log_list(struct ks_log *log, int (*fn)(void *arg, const char *name),
	     void *arg);

/* log_group.c */
int log_append(struct ks_store *store, const struct ks_rec *recs, size_t n);
int log_create_segment(struct ks_log *log, uint64_t seg, int *fdp);
/* Everything written so far made durable; any failure is fatal. */
int log_sync_point(struct ks_log *log);
void log_set_fatal(struct ks_log *log, const char *what, int err);
/* Taking the file for a segment switch or close: mu held. */
void log_own_file_locked(struct ks_log *log);
void log_release_file_locked(struct ks_log *log);
/* Has the log outgrown KS_LOG_COMPACT_RATIO times the live data plus
 * slack bytes? */
bool log_over_threshold(struct ks_log *log, uint64_t slack);
/* mu held: asks the compaction thread for a run if the log outgrew the
 * data (log_snapshot.c runs it). */
void log_maybe_compact_locked(struct ks_log *log);

/* log_snapshot.c */
int log_compact_now(struct ks_log *log);
void log_start_compaction_locked(struct ks_log *log);
void log_stop_compaction(struct ks_log *log);

/* log_recover.c */
int log_recover(struct ks_store *store, struct ks_engine *eng, char *msg,
		size_t msglen);


#endif
