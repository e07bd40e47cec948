/*
 * The log store: a directory holding one append-only log shared by all
 * states, and a snapshot that the log is compacted into.  See STORE.md for
 * the layout and the durability it gives.
 *
 * The daemon opens it through the registry (store.h) as
 * "log:dir=PATH,sync=full|none" and uses only the store.h calls.  This
 * header is for the log's tests and tools: opening one by directory, its
 * counters as numbers, compaction on demand, and the I/O table that lets
 * a test make any system call of the store fail.
 *
 * Every function returning int returns 0 or a positive errno value; on
 * failure msg (if not NULL) gets one line for a human, naming the file and,
 * for damage, the byte offset.
 */
#ifndef KSTATEFS_CORE_STORE_LOG_H
#define KSTATEFS_CORE_STORE_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "store.h"

struct ks_engine;

enum ks_sync {
	KS_SYNC_FULL,  /* acknowledge once write + fdatasync returned */
	KS_SYNC_NONE,  /* acknowledge once write returned (survives kill -9) */
};

/* Opens the store in DIR, creating DIR if missing, and takes its lock
 * (flock on DIR/lock, which holds the owner's pid): EBUSY, with a message
 * naming the holding process, if another daemon has it.  The same as
 * ks_store_open("log:dir=DIR,sync=...") */
int ks_log_open(const char *dir, enum ks_sync sync, struct ks_store **out,
		char *msg, size_t msglen);

/* ks_store_recover: replays the snapshot and the log into ENG, a fresh
 * engine created with this store, before any other call on it.  A torn
 * last record (a crash in the middle of a write) is cut away; any other
 * damage is refused with EUCLEAN (or EIO for a read error) and a message
 * naming the file and byte offset.  Compacts at once if the log is much
 * larger than the data. */
int ks_log_recover(struct ks_store *store, struct ks_engine *eng,
		   char *msg, size_t msglen);

/* ks_store_start: writes the calling process's pid into the lock file:
 * call it after the daemon forked away from the process that opened the
 * store, so that a second daemon is told the right holder.  (Compaction's
 * thread starts on first need, which is after the fork.) */
void ks_log_owner(struct ks_store *store);

/* ks_store_close: writes out and syncs what is pending, stops compaction,
 * releases the lock and frees the store.  Call it once the engine commits
 * no more, and before freeing the engine (compaction reads it). */
void ks_log_close(struct ks_store *store);

/* Bytes of the store's files (snapshot and log), and records in the log
 * since the snapshot: what ks_store_stats reports as store_bytes and
 * store_records. */
/* Batches written (and, with --sync full, synced) since the mount. */
uint64_t ks_log_syncs(struct ks_store *store);
void ks_log_stats(struct ks_store *store, uint64_t *bytes_on_disk,
		  uint64_t *records);

/* ---- for tests -----------------------------------------------------------
 * Every system call the store makes on its directory and files goes
 * through this table, so that a test can make any of them fail (like
 * SQLite's test VFS).  ctx is passed to every call.  NULL members keep the
 * real call.  The power-loss simulation (below) sits in front of it. */
struct ks_log_io {
	void *ctx;
	int (*openat)(void *ctx, int dirfd, const char *name, int flags,
		      mode_t mode);
	int (*close)(void *ctx, int fd);
	ssize_t (*pread)(void *ctx, int fd, void *buf, size_t len, off_t off);
	ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t len,
			  off_t off);
	int (*fdatasync)(void *ctx, int fd);
	int (*fsync)(void *ctx, int fd);
	int (*ftruncate)(void *ctx, int fd, off_t len);
	int (*fstat)(void *ctx, int fd, struct stat *st);
	int (*renameat)(void *ctx, int dirfd, const char *from,
			const char *to);
	int (*unlinkat)(void *ctx, int dirfd, const char *name);
	int (*mkdir)(void *ctx, const char *path, mode_t mode);
	int (*flock)(void *ctx, int fd, int op);
	/* Calls fn for each entry of the directory; fn's nonzero return
	 * stops the listing and is returned as errno. */
	int (*listdir)(void *ctx, int dirfd,
		       int (*fn)(void *arg, const char *name), void *arg);
};
/* Installs io for the calls from now on.  Called between ks_log_open and
 * ks_log_recover, it sees everything recovery does (creating a new store's
 * first segment too); opening itself (mkdir, the lock) has happened. */
void ks_log_set_io(struct ks_store *store, const struct ks_log_io *io);

/* Units queued for the next group commit and not yet taken by a leader:
 * lets a test build a group commit of a known size (hold the leader in its
 * write, start committers until this many wait, let it go). */
size_t ks_log_queued(struct ks_store *store);

/* Compaction: it starts when the log holds more than
 * KS_LOG_COMPACT_RATIO times the live data plus KS_LOG_COMPACT_SLACK bytes.
 * The slack sets how often a small store compacts: each compaction costs
 * five syncs and a directory change, and with 64 KiB a store of one 4 KiB
 * state compacted every 20 commits, which with --sync none was most of
 * the disk's work (and stalled a commit on the old segment's sync).  With
 * 1 MiB it is every 250 commits; recovery reads at most that much more.
 * ks_log_compact runs one now, in the calling thread (tests). */
#define KS_LOG_COMPACT_RATIO 4
#define KS_LOG_COMPACT_SLACK (1024 * 1024)
/* A clean stop compacts a log past the ratio plus this, so that a store
 * at rest stays small whatever the slack while running. */
#define KS_LOG_REST_SLACK (64 * 1024)
int ks_log_compact(struct ks_store *store);

/* The power-loss test hook: with KSTATEFS_TEST_POWERLOSS=1 in the
 * environment of ks_log_open, a shim in the I/O table keeps written bytes
 * of the data files in the daemon's memory until the store syncs them
 * (every commit with --sync full; only compaction and close with --sync
 * none), so that killing the daemon loses exactly what a power cut would
 * lose.  Never needed by users. */
#define KS_LOG_POWERLOSS_ENV "KSTATEFS_TEST_POWERLOSS"

#endif
