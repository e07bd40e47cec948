/*
 * The store contract: everything a backend implements to keep the engine's
 * states somewhere, and everything the engine and the daemon may ask of it.
 * The daemon includes this header only; "memory" (store_memory.c) and "log"
 * (store_log.c, a directory on disk) are two implementations, and a store
 * shared by many hosts ("etcd", store_etcd.c) is the third.
 *
 * Life of a store, in the daemon:
 *
 *     ks_store_open("log:dir=/var/lib/x,sync=none", &store, msg, len);
 *     ks_engine_new(&cfg, store, &eng);
 *     ks_store_recover(store, eng, msg, len);   replays, binds to eng
 *     ... fork/daemonize ...
 *     ks_store_start(store);                    threads, owner pid
 *     ... the engine appends a unit per change, ks_store_stats for .stats ...
 *     ks_store_close(store);                    then ks_engine_free(eng)
 *
 * Every function returning int returns 0 or a positive errno value; where
 * there is a msg, it gets one line for a human on failure.
 *
 * ---- Options --------------------------------------------------------------
 * A store is chosen by one string, KIND or KIND:KEY=VALUE,KEY=VALUE...
 *
 *     memory                               states vanish with the daemon
 *     log:dir=PATH[,sync=full|none]        a directory on disk (STORE.md)
 *     etcd:endpoints=URL[;URL...][,prefix=P][,timeout=SECONDS]
 *                                          a cluster shared by hosts
 *
 * A value runs to the next ',' (so a list inside a value uses ';'); a
 * backslash takes the next byte literally ("\\," for a comma in a path).
 * Keys a kind does not know are refused with EINVAL and a message, as is a
 * kind nobody registered (core/store.c holds the table of kinds).
 *
 * ---- Units ----------------------------------------------------------------
 * Every change reaches the store as one unit, recs[0..n), made durable (or
 * sent) all or nothing:
 *
 *   create       one CREATE
 *   delete       one DELETE
 *   rename       one RENAME
 *   chmod/chown  one ATTR
 *   commit       one COMMIT (a single state: data, a transaction file)
 *   multi        the COMMITs of every state a .txn/T commit wrote, plus one
 *                CHECK for every member it only read, in ascending state id
 *                order; a unit with no COMMIT is never appended (a read-only
 *                commit changes nothing)
 *
 * Every record of a state is appended with that state's commit lock held
 * (create: the table lock, before the state exists), so a store receives
 * the records of one state in the order they take effect.
 *
 * Names.  Engine records always carry the state's name at the time of the
 * record (RENAME: the new name), so a store that keys by name needs no
 * table of its own; a store may also keep id -> name from CREATE and RENAME
 * records and from what it replayed at recovery.  State ids are the
 * engine's, local to one daemon: a store shared between hosts maps names,
 * not ids.
 *
 * Versions.  COMMIT: version is the new version, base the one it replaces
 * (always version - 1: versions rise by one per commit, on every host).
 * CHECK: version == base == the version the transaction read and validated,
 * so that a remote store can compare it in the same transaction as the
 * writes.  RENAME: the state's current version, with its current uid, gid
 * and mode, so that a store that moves the state's keys (etcd) can tell
 * whether what it moved is what this host holds.  Other records carry
 * version 0.
 *
 * ---- Append and EAGAIN ----------------------------------------------------
 * append returns once the unit is as durable as the store promises, or an
 * errno with nothing of the unit applied (EIO, ENOSPC, ETIMEDOUT ...).
 * EAGAIN is special: it means the store's own compare failed, another host
 * committed first.  The engine then:
 *   - for a CHECKED transaction (and every multi-state commit): counts a
 *     conflict and returns EAGAIN, nothing applied, the transaction left as
 *     it was, like a local conflict;
 *   - for a blind commit (ks_state_commit_bytes, REPLACE, PATCH, APPEND),
 *     which by the SPEC never conflicts: drops its locks, calls catch_up
 *     (if the store has one) so the newer page arrives, and commits again
 *     over it, up to KS_COMMIT_TRIES times, then gives up with EAGAIN.
 * Local stores (memory, log) never return EAGAIN.
 */
#ifndef KSTATEFS_CORE_STORE_H
#define KSTATEFS_CORE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* The largest max_size the etcd store accepts (the daemon refuses more
 * at mount, before it contacts etcd).  etcd refuses requests over
 * --max-request-bytes (1.5 MiB = 1,572,864 by default); a txn with one put
 * fits about 1,572,792 bytes of value.  A commit puts the page, its
 * version and its mtime (two short values) and compares the version, with
 * keys of up to prefix + 263 bytes each: 1,500,000 leaves room for all of
 * that with a long prefix. */
#define KS_ETCD_MAX_PAGE 1500000u

struct ks_engine;

enum ks_rec_type {
	KS_REC_CREATE = 1, /* state_id, name, uid, gid, mode, time */
	KS_REC_DELETE = 2, /* state_id, name */
	KS_REC_RENAME = 3, /* state_id, name (the new one), old_name, time,
			    * version, uid, gid, mode */
	KS_REC_COMMIT = 4, /* state_id, name, version, base, bytes/len, time */
	KS_REC_ATTR = 5,   /* state_id, name, uid, gid, mode, time */
	KS_REC_CHECK = 6,  /* state_id, name, version == base: read only */
};

/* One change.  Pointers are borrowed for the duration of the call. */
struct ks_rec {
	enum ks_rec_type type;
	uint64_t state_id;
	uint64_t version;
	uint64_t base;
	const char *name;
	/* RENAME: the name before.  Set by the engine; a record from a store
	 * (ks_engine_apply_remote) may leave it NULL. */
	const char *old_name;
	uid_t uid;
	gid_t gid;
	mode_t mode;
	struct timespec time;
	const void *bytes;
	size_t len;
};

struct ks_store;

/* For stats: one "key value" pair. */
typedef void (*ks_store_stat_fn)(void *arg, const char *key, uint64_t value);

struct ks_store_ops {
	const char *kind;          /* "memory", "log", ... */

	/* Replays what the store holds into ENG, a fresh engine created with
	 * this store on which nothing else has been called, and binds the
	 * store to it (compaction reads it, remote changes go into it).
	 * Damage is refused with EUCLEAN and a message naming the place.
	 * NULL: nothing to replay. */
	int (*recover)(struct ks_store *store, struct ks_engine *eng,
		       char *msg, size_t msglen);

	/* After the daemon forked (threads do not survive a fork): the log
	 * writes its owner's pid and may compact; a remote store starts the
	 * thread that follows other hosts.  NULL: nothing to start. */
	int (*start)(struct ks_store *store);

	/* Makes recs[0..n) durable as one atomic unit (see Units, and Append
	 * and EAGAIN above).  Called with the commit locks of the states
	 * involved held (create, delete, rename: the table lock too), never
	 * with a state lock or the events lock; it must not call back into
	 * the engine's table or commit paths for those states.  Many callers
	 * may be in append at once (group commit). */
	int (*append)(struct ks_store *store, const struct ks_rec *recs,
		      size_t n);
	/* (A remote store may also answer ENOENT or EEXIST, when another
	 * host deleted, renamed or created the state first; E2BIG for a unit
	 * larger than it can take at once; EAGAIN for a RENAME when another
	 * host kept committing to the state, which the engine tries again
	 * after a pause with no lock held, KS_RENAME_TRIES.) */

	/* Blocks, for a bounded time, until every change that exists in the
	 * store remotely has been delivered into the engine
	 * (ks_engine_apply_remote).  Called after append returned EAGAIN,
	 * with no table, commit, state or events lock held; the committing
	 * transaction's lock (and its .txn/T's) may be, and rank before
	 * everything apply_remote takes (core/engine.h).  0, or
	 * ETIMEDOUT/EIO.  NULL for local stores, where nothing happens
	 * remotely. */
	int (*catch_up)(struct ks_store *store);

	/* Calls emit for each of the store's counters, for .stats; must not
	 * block on the disk or the network.  NULL: none. */
	void (*stats)(struct ks_store *store, ks_store_stat_fn emit,
		      void *arg);

	/* Makes everything acknowledged durable, stops the store's threads,
	 * releases what it holds and frees it.  Called once the engine
	 * commits no more, and before the engine is freed. */
	void (*close)(struct ks_store *store);
};

struct ks_store {
	const struct ks_store_ops *ops;
};

/* How many times a blind commit is tried against a store that keeps
 * answering EAGAIN (another host keeps committing first). */
#define KS_COMMIT_TRIES 16
/* A rename of a state that a remote store refuses (EAGAIN: another host
 * committed to it between the store's read and its write) is tried again,
 * after pauses doubling from 1 ms to 50 ms with jitter, with no lock held,
 * at most this often and for this long; then it fails with ETIMEDOUT. */
#define KS_RENAME_TRIES 100
#define KS_RENAME_SECONDS 5

/* ---- the registry and the calls the daemon makes ------------------------ */

/* Opens the store OPTIONS describes (see Options); NULL means "memory". */
int ks_store_open(const char *options, struct ks_store **out, char *msg,
		  size_t msglen);
int ks_store_recover(struct ks_store *store, struct ks_engine *eng,
		     char *msg, size_t msglen);
int ks_store_start(struct ks_store *store);
int ks_store_append(struct ks_store *store, const struct ks_rec *recs,
		    size_t n);
/* 0 at once for a store without catch_up. */
int ks_store_catch_up(struct ks_store *store);
void ks_store_stats(struct ks_store *store, ks_store_stat_fn emit,
		    void *arg);
void ks_store_close(struct ks_store *store);
const char *ks_store_kind(const struct ks_store *store);

/* For implementations: writes a message for a human into msg (if not
 * NULL) and returns err, so that a failing open or recover can say why in
 * one statement. */
int ks_store_fail(char *msg, size_t msglen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* For implementations: one KEY=VALUE of an option string at a time.
 * *pos starts at the first byte after "KIND:" (or at "" for none); returns
 * 1 with key and value (NUL-terminated copies into the buffers, escapes
 * undone), 0 at the end, or EINVAL for a pair without '=' or too long for
 * the buffers. */
int ks_store_next_option(const char **pos, char *key, size_t keylen,
			 char *value, size_t valuelen);

/* The kinds, for the registry in store.c. */
int ks_store_memory_open(const char *options, struct ks_store **out,
			 char *msg, size_t msglen);
int ks_store_log_open(const char *options, struct ks_store **out,
		      char *msg, size_t msglen);
int ks_store_etcd_open(const char *options, struct ks_store **out,
		       char *msg, size_t msglen);

/* ---- engine calls a store may make --------------------------------------
 * recover: the rebuilding calls in core/recover.h (ks_recovery_new, _apply,
 *   _put, _next_id, _finish), which install states without appending.
 * compaction, or any consistent copy: ks_snapshot_take / _release and
 *   ks_engine_live_bytes (core/recover.h).
 * changes that arrive from the store (other hosts): ks_engine_apply_remote
 *   below.  From the store's own threads (a watch), or from catch_up; never
 *   from inside append.
 * Nothing else: in particular a store never calls the user-facing
 * ks_state_* or ks_txn_* functions, which would append again. */

/* Applies recs[0..n), a unit whose versions are already decided elsewhere,
 * through the same commit path as local commits minus the append: pages
 * installed under the commit locks, one run of .events lines for the unit,
 * the listener called after unlocking for every state that changed.
 *
 *   CREATE  a state named rec.name; state_id 0 lets the engine pick the id
 *           (look the name up for it afterwards).  Skipped if a state of
 *           that name or id exists (a host sees its own create come back).
 *   DELETE  by state_id, or by name if state_id is 0.  Forced: named
 *           transactions are dropped and open files stay open; both then
 *           get ENOENT, as after a local delete.  Skipped if missing.
 *   RENAME  state_id to rec.name; EEXIST if another state has that name.
 *   ATTR    uid, gid, mode, ctime of state_id.
 *   COMMIT  installed only if rec.version is newer than the local version
 *           (idempotent: a host sees its own commits come back, and skips
 *           them); skipped for a missing state.  All COMMITs of the unit
 *           are installed together, under every commit lock at once.
 *   CHECK   nothing.
 *
 * Records are applied in order, the COMMITs last, together.  The name
 * listener (ks_engine_set_name_listener) hears every name a CREATE, DELETE
 * or RENAME (old and new) changed.  For DELETE,
 * ATTR and COMMIT a state_id of 0 means "by rec.name"; RENAME needs the id
 * (ks_state_lookup of the old name gives it).  0, or ENOMEM / EEXIST /
 * EINVAL (bad name) / ENOSPC (max_states) for the first record that could
 * not be applied; the records before it stay applied. */
int ks_engine_apply_remote(struct ks_engine *eng, const struct ks_rec *recs,
			   size_t n);

#endif
