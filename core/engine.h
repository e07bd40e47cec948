/*
 * The kstatefs engine: states, immutable versions and optimistic
 * transactions.  Nothing here knows about FUSE; the daemon (fs/) translates
 * file operations into these calls, and a store (core/store.h) makes them
 * durable.
 *
 * Errors: functions return 0 or a positive errno value (never -1/errno),
 * so that the daemon can hand them to fuse_reply_err unchanged.
 *
 * Locking.  Every path, in core/ and in the daemon, takes locks in this
 * order, outermost first, and skips those it does not need; enum
 * ks_lock_rank (core/lock.h) is the same list as the checks enforce it:
 *
 *   fh->lock               (fs/daemon.h) an open file's handle, held by a
 *                          request across its commit and the store's
 *                          fdatasync
 *   log->compact_mu        one compaction at a time; a compaction then
 *                          snapshots the engine, taking table_lock (read)
 *                          and commit locks
 *   engine->multi_lock     the list of .txn/T (create, find, remove, list;
 *                          a commit unlists T only after letting go of
 *                          m->lock)
 *   multi->lock            T's members, held through T's whole commit
 *   txn->lock              a transaction's private page; a commit holds it
 *                          throughout; .txn/T takes its members' in
 *                          ascending state id order
 *     (a blind commit that the store refused with EAGAIN calls the store's
 *      catch_up here, holding only the locks above; changes arriving from
 *      the store take the locks below, like local ones)
 *   engine->table_lock     the name table: create, delete, rename (write);
 *                          lookup, listing, a store's snapshot (read)
 *   state->commit_lock     serializes the changes of one state: commits,
 *                          delete, rename, chmod/chown; held while the
 *                          store makes the change durable, so that readers
 *                          never wait on the disk; several are taken in
 *                          ascending state id order (commit.c)
 *   engine->snap_lock      a commit installing its pages (all of them),
 *                          or a .txn/T pinning every state's current page
 *                          at its mkdir (under table_lock, read): so a
 *                          snapshot holds each commit whole or not at
 *                          all; held for pointer swaps only, never across
 *                          the store
 *   log->mu                inside append (group commit), reached with only
 *   powerloss->mu          table_lock and commit locks held; then the I/O
 *                          shim's under it
 *   inode_lock, views->lock, poll_lock, notifier->lock, events_lock
 *                          (fs/daemon.h) the daemon's tables, taken by
 *                          requests and by the commit listener, never two
 *                          at once
 *   state->lock            the current page pointer, name, the transaction
 *                          list, counters; never held across a call out of
 *                          the engine (but the mirror's page, which copies
 *                          memory and takes nothing, so that the mirror
 *                          changes in the same step as the page), nor
 *                          across the store, and nothing is taken under
 *                          it: so the daemon may read a state under its
 *                          own locks
 *   events->lock           the .events ring; likewise taken alone, by
 *                          commits (under commit locks) and by the
 *                          daemon's .events readers (under events_lock)
 *   etcd->pool_lock        a leaf of the etcd client
 *
 * The listener (ks_commit_listener) is called with none of the table,
 * commit, state or events locks held; the committing caller's own
 * transaction and .txn/T locks are released before it too, except when it
 * runs for changes the store delivers from inside catch_up.
 *
 * Every lock is a struct ks_lock or ks_rwlock (core/lock.h) whose rank is
 * its place in this list; several of one rank (commit locks, a .txn/T's
 * transaction locks) are taken with the state id as the order key.  Debug
 * and sanitizer builds abort on a lock taken out of order, and on a
 * *_locked function (or one documented "X held") entered without its lock,
 * naming both.
 */
#ifndef KSTATEFS_CORE_ENGINE_H
#define KSTATEFS_CORE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "page.h"

struct ks_store;
struct ks_engine;
struct ks_state;
struct ks_txn;
struct ks_state_attr;

#define KS_NAME_MAX 255

struct ks_engine_config {
	size_t max_size;      /* largest page, bytes */
	uint32_t max_states;  /* states in the table */
	uint32_t max_txns;    /* named transactions per state */
};

/* Called after every commit that changed a state, outside every engine lock,
 * from the committing thread.  Coalescing is the listener's business. */
typedef void (*ks_commit_listener)(void *arg, struct ks_state *st,
				   uint64_t version);

/* Called for every name that a change arriving from the store (another
 * host's create, delete or rename; for a rename both names) added to or
 * removed from the table, and for a state whose owner or mode another host
 * changed, outside every engine lock, from the thread that applied it.  Local changes go through the daemon, which knows of them;
 * these it learns only here, e.g. to make the kernel forget cached
 * directory entries. */
typedef void (*ks_name_listener)(void *arg, const char *name);

/* A mirror of states outside the engine, kept exactly in step with it:
 * the daemon's shared mappings (fs/shm.c), which readers on the host read
 * instead of asking the daemon.  Every call for one state is serialized
 * by the engine.
 *   created  a state joined the table (create, recovery, another host's
 *            create, or every state already there at
 *            ks_engine_set_mirror): returns its mirror, or NULL to leave
 *            the state unmirrored.  Called with table_lock held for
 *            writing; may read st's attributes, nothing more of the
 *            engine.
 *   page     the state's current page is now PAGE: called with the
 *            state's lock held, in the same hold that installs the page,
 *            so that a reader of the mirror and a reader of the engine
 *            never disagree about which commit came first.  Must take no
 *            lock and make no call (it copies memory).
 *   attr     the state's owner or mode changed: with its commit lock held.
 *   gone     the state was deleted for good, or the engine is being freed:
 *            the mirror's last call, with table_lock held (a delete) or
 *            none (ks_engine_free). */
struct ks_mirror_ops {
	void *(*created)(void *arg, struct ks_state *st);
	void (*page)(void *mirror, const struct ks_page *page);
	void (*attr)(void *mirror, const struct ks_state_attr *attr);
	void (*gone)(void *mirror);
};

/* Counters for .stats; read without locks (relaxed atomics). */
struct ks_engine_stats {
	uint64_t states;
	uint64_t txns;
	uint64_t commits;
	uint64_t conflicts;
	uint64_t bytes;       /* bytes in current pages */
	struct timespec names_changed; /* a state last made, removed or
					* renamed (0: none yet) */
};

/* ---- engine ------------------------------------------------------------- */

/* The engine does not own the store, which must outlive it; recovery
 * (ks_store_recover) must run before any other call.  store NULL: the
 * engine makes a memory store of its own (states live in memory only). */
int ks_engine_new(const struct ks_engine_config *cfg, struct ks_store *store,
		  struct ks_engine **out);
void ks_engine_free(struct ks_engine *eng);
void ks_engine_set_listener(struct ks_engine *eng, ks_commit_listener fn,
			    void *arg);
/* Optional; set before the store starts delivering changes. */
void ks_engine_set_name_listener(struct ks_engine *eng, ks_name_listener fn,
				 void *arg);
/* Sets the mirror (once, before the store starts delivering changes) and
 * mirrors every state already in the table.  ops must outlive the engine. */
void ks_engine_set_mirror(struct ks_engine *eng,
			  const struct ks_mirror_ops *ops, void *arg);
const struct ks_engine_config *ks_engine_config(const struct ks_engine *eng);
void ks_engine_stats(struct ks_engine *eng, struct ks_engine_stats *out);

/* The event stream (.events). */
struct ks_events *ks_engine_events(struct ks_engine *eng);

/* Is NAME acceptable as the name of a state or of a transaction (a file in
 * a state, a .txn/ directory)?  0; ENAMETOOLONG past KS_NAME_MAX bytes;
 * EINVAL if empty, beginning with '.', or holding a '/' or a control byte
 * (0x01-0x1f, 0x7f).  The one check of every name that enters. */
int ks_name_check(const char *name);

/* Calls fn(arg, state) for every state, in no particular order, with the
 * table read-locked: fn must not call back into the table.  Returns the
 * number of states visited. */
size_t ks_engine_foreach(struct ks_engine *eng,
			 void (*fn)(void *arg, struct ks_state *st), void *arg);

/* ---- states ------------------------------------------------------------- */

struct ks_state_attr {
	uid_t uid;
	gid_t gid;
	mode_t mode;             /* permission bits only */
	struct timespec ctime;   /* creation, or last chmod/chown/rename */
};

/* When a transaction name of ST last came or went (created, removed,
 * renamed, committed): its directory's modification time.  Zero if never
 * since the state was made or loaded. */
struct timespec ks_state_txns_changed(struct ks_state *st);

/* Creates state NAME; *out gets a reference.  EINVAL for a bad name, EEXIST,
 * ENOSPC past max_states. */
int ks_state_create(struct ks_engine *eng, const char *name,
		    const struct ks_state_attr *attr, struct ks_state **out);
/* Finds NAME; *out gets a reference.  ENOENT. */
int ks_state_lookup(struct ks_engine *eng, const char *name,
		    struct ks_state **out);
/* Deletes NAME: ENOENT, ENOTEMPTY while it has named transactions, EBUSY
 * while any of its files is open (ks_state_open_file). */
int ks_state_delete(struct ks_engine *eng, const char *name);
/* Renames OLD to NEW atomically: ENOENT, EEXIST, EINVAL. */
int ks_state_rename(struct ks_engine *eng, const char *oldname,
		    const char *newname);

struct ks_state *ks_state_ref(struct ks_state *st);
void ks_state_unref(struct ks_state *st);

/* A stable number for the state's lifetime, never reused by the engine. */
uint64_t ks_state_id(const struct ks_state *st);
/* Copies the current name into buf (KS_NAME_MAX + 1 bytes); false if the
 * state has been deleted. */
bool ks_state_name(struct ks_state *st, char *buf);
bool ks_state_deleted(struct ks_state *st);
void ks_state_get_attr(struct ks_state *st, struct ks_state_attr *out);
int ks_state_set_attr(struct ks_state *st, const struct ks_state_attr *attr);

/* The latest committed page, with a reference the caller must drop. */
struct ks_page *ks_state_current(struct ks_state *st);
uint64_t ks_state_version(struct ks_state *st);

/* Open-file accounting for rmdir's EBUSY.  open fails with ENOENT once the
 * state has been deleted. */
int ks_state_open_file(struct ks_state *st);
void ks_state_close_file(struct ks_state *st);

/* Replaces the page with LEN bytes at once (truncate(2), kstate set):
 * never conflicts.  *version gets the new version. */
int ks_state_commit_bytes(struct ks_state *st, const void *bytes, size_t len,
			  uint64_t *version);

/* ---- transactions ------------------------------------------------------- */

enum ks_txn_mode {
	/* A private copy of the page taken at begin; commit fails with EAGAIN
	 * if another commit came first.  Transaction files and read-write
	 * opens of data. */
	KS_TXN_CHECKED,
	/* The state becomes exactly the bytes written (data opened O_TRUNC). */
	KS_TXN_REPLACE,
	/* The written ranges are applied to the latest page at commit (data
	 * opened write-only without O_TRUNC). */
	KS_TXN_PATCH,
	/* The written bytes are appended to the latest page at commit, at
	 * whatever offset they were written (data opened O_APPEND, `>>`). */
	KS_TXN_APPEND,
};

/* Begins a transaction on ST.  empty: start from an empty page (O_TRUNC),
 * which counts as a write.  A named transaction (a file in the state
 * directory) is listed in the state and counts towards max_txns (ENOSPC);
 * name may be NULL for an anonymous one (direct writes to data).
 * EINVAL or ENAMETOOLONG if the name fails ks_name_check; EEXIST if it is
 * taken; ENOENT if the state has been deleted. */
int ks_txn_begin(struct ks_state *st, enum ks_txn_mode mode, bool empty,
		 const char *name, struct ks_txn **out);
struct ks_txn *ks_txn_ref(struct ks_txn *txn);
/* Dropping the last reference aborts the transaction. */
void ks_txn_unref(struct ks_txn *txn);

/* Named transactions of a state. */
int ks_txn_find(struct ks_state *st, const char *name, struct ks_txn **out);
/* Removes the name (rm): the transaction is aborted once unreferenced. */
int ks_txn_unlink(struct ks_state *st, const char *name);
/* mv T U inside a state.  If U exists it is replaced (and unlinked), and T
 * keeps the older base of the two.  U must pass ks_name_check. */
int ks_txn_rename(struct ks_state *st, const char *oldname,
		  const char *newname);
/* Calls fn for each named transaction, under the state lock. */
void ks_txn_foreach(struct ks_state *st,
		    void (*fn)(void *arg, struct ks_txn *txn, const char *name),
		    void *arg);

struct ks_state *ks_txn_state(const struct ks_txn *txn);
/* A number the daemon keeps with the transaction (its inode), 0 at begin. */
void ks_txn_set_tag(struct ks_txn *txn, uint64_t tag);
uint64_t ks_txn_tag(const struct ks_txn *txn);
/* Owner and mode of a transaction file, kept for the daemon. */
void ks_txn_set_owner(struct ks_txn *txn, uid_t uid, gid_t gid, mode_t mode);
void ks_txn_owner(struct ks_txn *txn, uid_t *uid, gid_t *gid, mode_t *mode);
uint64_t ks_txn_base(struct ks_txn *txn);
size_t ks_txn_size(struct ks_txn *txn);
bool ks_txn_named(struct ks_txn *txn);
/* Modification time of the private page (creation, or last write). */
struct timespec ks_txn_mtime(struct ks_txn *txn);
/* Bytes [off, off+len) of the private page into buf; returns the count. */
size_t ks_txn_read(struct ks_txn *txn, void *buf, size_t len, off_t off);
/* EFBIG past max_size, and nothing written.  The transaction itself is
 * unharmed; a writer whose failed write must doom the whole transaction
 * (every writer of the daemon's: the writes before it may be half of
 * what was meant) says so with ks_txn_set_error. */
int ks_txn_write(struct ks_txn *txn, const void *buf, size_t len, off_t off);
int ks_txn_truncate(struct ks_txn *txn, off_t len);
/* Empties the private page and forgets a failed write's error: the
 * transaction is written anew from its start (an O_TRUNC open of a
 * transaction file, or its truncation to 0). */
int ks_txn_restart(struct ks_txn *txn);
bool ks_txn_written(struct ks_txn *txn);
/* The first error a write returned, or 0; a failed transaction commits
 * nothing. */
int ks_txn_error(struct ks_txn *txn);
void ks_txn_set_error(struct ks_txn *txn, int err);

/* Commits.  0 on success (and *version, if given, gets the version now
 * current: new if the transaction wrote, the validated base otherwise);
 * EAGAIN if a CHECKED transaction's base is no longer current.  A named
 * transaction is unlinked on success.  After a successful commit the
 * transaction goes on as a fresh one based on the committed page. */
int ks_txn_commit(struct ks_txn *txn, uint64_t *version);

/* Drops what the transaction wrote: it goes on as a fresh one based on the
 * latest page, as after a commit.  For direct writes to data after a
 * failed commit, whose writes must never be sent again (a commit that
 * failed with ETIMEDOUT or EIO may still have been applied). */
void ks_txn_discard(struct ks_txn *txn);

/* Commits the named transaction NAME onto ST's data: mv NAME data. */
int ks_txn_commit_named(struct ks_state *st, const char *name,
			uint64_t *version);

/* ---- transactions over several states (.txn/T) ------------------------ */

struct ks_multi;

/* Begins transaction NAME (EEXIST, ENOSPC past max_txns; EINVAL or
 * ENAMETOOLONG if NAME fails ks_name_check); *out gets a reference.  Its
 * instant is now: every member it reads later is read as it was at this
 * moment (a snapshot of every state). */
int ks_multi_create(struct ks_engine *eng, const char *name,
		    struct ks_multi **out);
int ks_multi_find(struct ks_engine *eng, const char *name,
		  struct ks_multi **out);
/* Aborts NAME: ENOTEMPTY while states are joined (rm -r unjoins them
 * first; members of states deleted since do not count), ENOENT. */
int ks_multi_remove(struct ks_engine *eng, const char *name);
/* Aborts M itself, as ks_multi_remove does its name: ENOENT once it was
 * committed or removed, even if another T has its name by now. */
int ks_multi_abort(struct ks_multi *m);
struct ks_multi *ks_multi_ref(struct ks_multi *m);
void ks_multi_unref(struct ks_multi *m);
bool ks_multi_gone(struct ks_multi *m);
/* A number the daemon keeps with the transaction (its inode), 0 at first. */
void ks_multi_set_tag(struct ks_multi *m, uint64_t tag);
uint64_t ks_multi_tag(struct ks_multi *m);
struct timespec ks_multi_ctime(const struct ks_multi *m);
/* Owner and mode of .txn/T, kept for the daemon: root and 0700 until set. */
void ks_multi_set_owner(struct ks_multi *m, uid_t uid, gid_t gid, mode_t mode);
void ks_multi_owner(struct ks_multi *m, uid_t *uid, gid_t *gid, mode_t *mode);
/* How many .txn/T are open (the link count of .txn). */
uint32_t ks_multi_count(struct ks_engine *eng);
void ks_multi_foreach(struct ks_engine *eng,
		      void (*fn)(void *arg, struct ks_multi *m,
				 const char *name),
		      void *arg);
/* ST joins M (if not joined yet), based on its version at M's instant
 * (ks_multi_create pinned it): ENOENT if ST did not exist then.  *out
 * gets a reference to the member's private transaction. */
int ks_multi_join(struct ks_multi *m, struct ks_state *st,
		  struct ks_txn **out);
/* The member transaction of ST, if joined: ENOENT otherwise. */
int ks_multi_member(struct ks_multi *m, struct ks_state *st,
		    struct ks_txn **out);
/* ST leaves M, its changes dropped (rm .txn/T/NAME). */
int ks_multi_leave(struct ks_multi *m, struct ks_state *st);
void ks_multi_foreach_member(struct ks_multi *m,
			     void (*fn)(void *arg, struct ks_state *st,
					struct ks_txn *txn),
			     void *arg);
/* ST's page at M's instant (a reference), or NULL if ST did not exist
 * then or M is over. */
struct ks_page *ks_multi_snapshot_page(struct ks_multi *m,
				       struct ks_state *st);
/* Commits every member at once.  A T that wrote nothing is a snapshot:
 * always 0, nothing validated.  Otherwise 0, or EAGAIN (nothing applied)
 * if any member's state was committed since T's instant.  On success M
 * is removed. */
int ks_multi_commit(struct ks_multi *m);

/* What open snapshots (.txn/T) cost, for .stats: a walk over every open
 * T's pins, so not for hot paths. */
struct ks_snapshot_stats {
	uint64_t open;       /* open .txn/T, each a snapshot */
	uint64_t versions;   /* replaced versions kept only for them */
	uint64_t bytes;      /* their pages' bytes */
	uint64_t commits;    /* read-only T committed (never fails) */
};
void ks_engine_snapshot_stats(struct ks_engine *eng,
			      struct ks_snapshot_stats *out);

#endif
