/*
 * The log store: a directory holding one append-only log shared by all
 * states, and a snapshot that the log is compacted into.  See STORE.md for
 * the layout and the durability it gives.
 *
 * Use, in the daemon:
 *
 *     ks_log_open(dir, sync, &store, msg, sizeof(msg));  takes the lock
 *     ks_engine_new(&cfg, store, &eng);
 *     ks_log_recover(store, eng, msg, sizeof(msg));      before anything else
 *     ... fork/daemonize: then ks_log_owner(store) ...
 *     ... the engine commits through store->ops->append ...
 *     ks_log_close(store);                                then ks_engine_free
 *
 * Every function returning int returns 0 or a positive errno value; on
 * failure msg (if not NULL) gets one line for a human, naming the file and,
 * for damage, the byte offset.
 */
#ifndef KSTATEFS_CORE_STORE_LOG_H
#define KSTATEFS_CORE_STORE_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

struct ks_engine;

enum ks_sync {
	KS_SYNC_FULL,  /* acknowledge once write + fdatasync returned */
	KS_SYNC_NONE,  /* acknowledge once write returned (survives kill -9) */
};

/* Opens the store in DIR, creating DIR if missing, and takes its lock
 * (flock on DIR/lock, which holds the owner's pid): EWOULDBLOCK, with a
 * message naming the holding process, if another daemon has it. */
int ks_log_open(const char *dir, enum ks_sync sync, struct ks_store **out,
		char *msg, size_t msglen);

/* Replays the snapshot and the log into ENG, a fresh engine created with
 * this store, before any other call on it.  A torn last record (a crash in
 * the middle of a write) is cut away; any other damage is refused with
 * EUCLEAN (or EIO for a read error) and a message naming the file and byte
 * offset.  Compacts at once if the log is much larger than the data. */
int ks_log_recover(struct ks_store *store, struct ks_engine *eng,
		   char *msg, size_t msglen);

/* Writes the calling process's pid into the lock file: call it in the
 * daemon after it forked away from the process that opened the store, so
 * that a second daemon is told the right holder. */
void ks_log_owner(struct ks_store *store);

/* Writes out and syncs what is pending, stops compaction, releases the
 * lock and frees the store.  Call it once the engine commits no more, and
 * before freeing the engine (compaction reads it). */
void ks_log_close(struct ks_store *store);

/* For .stats: bytes of the store's files (snapshot and log), and records
 * in the log since the snapshot. */
void ks_log_stats(struct ks_store *store, uint64_t *bytes_on_disk,
		  uint64_t *records);

/* ---- for tests -----------------------------------------------------------
 * The store does its writes through these calls, so that a test can make
 * them fail (like SQLite's test VFS).  NULL members keep the real call. */
struct ks_log_io {
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
	int (*fdatasync)(int fd);
	int (*ftruncate)(int fd, off_t len);
};
void ks_log_set_io(struct ks_store *store, const struct ks_log_io *io);

/* Compaction: it starts when the log holds more than
 * KS_LOG_COMPACT_RATIO times the live data plus KS_LOG_COMPACT_SLACK bytes.
 * ks_log_compact runs one now, in the calling thread (tests). */
#define KS_LOG_COMPACT_RATIO 4
#define KS_LOG_COMPACT_SLACK (64 * 1024)
int ks_log_compact(struct ks_store *store);

/* The power-loss test hook: with KSTATEFS_TEST_POWERLOSS=1 in the
 * environment of ks_log_open, written bytes stay in the daemon's memory
 * until the store syncs (every commit with --sync full; only compaction
 * and close with --sync none), so that killing the daemon loses exactly
 * what a power cut would lose.  Never needed by users. */
#define KS_LOG_POWERLOSS_ENV "KSTATEFS_TEST_POWERLOSS"

#endif
