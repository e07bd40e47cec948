/*
 * Locks that know their place in the lock order.
 *
 * Every mutex and rwlock of kstatefs, in core/ and in fs/, is a struct
 * ks_lock or ks_rwlock with a rank from enum ks_lock_rank below.  A thread
 * may take a lock only if its rank is greater than the rank of every lock it
 * already holds; locks of one rank that are taken together (the commit locks
 * of a multi-state commit, in state-id order) carry an order key that must
 * rise.  In checked builds (KS_LOCK_CHECK: debug and sanitizer builds, see
 * meson.build) a lock taken out of order aborts at once with the names of
 * both locks, and ks_lock_assert_held() checks, as SQLite's
 * sqlite3_mutex_held() does, that a function documented "called with X
 * held" (every *_locked function) really runs with X held by the calling
 * thread.  In unchecked builds the wrappers are plain pthread calls.
 *
 * The one piece of per-thread state (the list of locks a thread holds)
 * exists only in checked builds; it is what lockdep-style checking needs,
 * and it is never read by anything but the checks.
 */
#ifndef KSTATEFS_CORE_LOCK_H
#define KSTATEFS_CORE_LOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/*
 * The whole lock order, core and fs, outermost first: the one list.
 * core/engine.h and fs/daemon.h explain what each lock guards and why it
 * sits where it does; this enum is the order the checks enforce.
 *
 * A state's lock and the .events ring come last, after fs/'s locks: the
 * engine takes nothing under them, and fs/ reads a state's current page
 * under the views lock and the ring under events_lock.
 */
enum ks_lock_rank {
	/* fs/: a FUSE request on an open file holds its handle while it
	 * commits (and while the store makes the commit durable) */
	KS_RANK_FS_HANDLE = 10,    /* fh->lock */
	/* core/stores: one compaction at a time; it then snapshots the
	 * engine, taking the engine's locks below */
	KS_RANK_STORE_COMPACT = 15, /* log->compact_mu */
	/* core/: the engine (core/engine.h says what each guards) */
	KS_RANK_MULTI_LIST = 20,   /* engine->multi_lock: the list of .txn/T */
	KS_RANK_MULTI = 30,        /* multi->lock: one .txn/T's members */
	KS_RANK_TXN = 40,          /* txn->lock: a transaction's private
				    * page; several in state-id order */
	KS_RANK_TABLE = 50,        /* engine->table_lock (rwlock) */
	KS_RANK_COMMIT = 60,       /* state->commit_lock; several in state-id
				    * order */
	KS_RANK_SNAP = 65,         /* engine->snap_lock: a commit installs
				    * its pages, a .txn/T pins every state's,
				    * each whole under it */
	/* core/stores: taken inside append, under commit locks */
	KS_RANK_STORE = 90,        /* log->mu: a store's own state (group
				    * commit) */
	KS_RANK_STORE_INNER = 95,  /* powerloss->mu: below it (I/O shims) */
	/* fs/: taken by requests and by the commit listener, which runs
	 * after the table and commit locks are released; never two of
	 * these at once */
	KS_RANK_FS_INODES = 110,   /* inode_lock: the inode table */
	KS_RANK_FS_VIEWS = 120,    /* views->lock: the views and their
				    * thread */
	KS_RANK_FS_POLL = 130,     /* poll_lock: the poll table */
	KS_RANK_FS_NOTIFIER = 140, /* notifier->lock: the inotify queue */
	KS_RANK_FS_EVENTS = 150,   /* events_lock: .events readers */
	/* core/: the engine's innermost, each taken alone */
	KS_RANK_STATE = 170,       /* state->lock */
	KS_RANK_EVENTS = 180,      /* events->lock: the .events ring */
	/* leaves: nothing is taken while one of these is held */
	KS_RANK_LEAF = 200,        /* etcd->pool_lock */
};

struct ks_lock {
	pthread_mutex_t mutex;
	const char *name;
	enum ks_lock_rank rank;
};

struct ks_rwlock {
	pthread_rwlock_t rwlock;
	const char *name;
	enum ks_lock_rank rank;
#ifdef KS_LOCK_CHECK
	pthread_t writer;
	bool written;
#endif
};

void ks_lock_init(struct ks_lock *l, const char *name,
		  enum ks_lock_rank rank);
void ks_lock_destroy(struct ks_lock *l);
void ks_lock(struct ks_lock *l);
/* For locks of one rank taken together: KEY must rise (state ids). */
void ks_lock_nested(struct ks_lock *l, uint64_t key);
void ks_unlock(struct ks_lock *l);

void ks_rwlock_init(struct ks_rwlock *l, const char *name,
		    enum ks_lock_rank rank);
void ks_rwlock_destroy(struct ks_rwlock *l);
void ks_rdlock(struct ks_rwlock *l);
void ks_wrlock(struct ks_rwlock *l);
void ks_rwunlock(struct ks_rwlock *l);

/* pthread_cond_wait / timedwait on a ks_lock (held by the caller). */
void ks_cond_wait(pthread_cond_t *cv, struct ks_lock *l);
int ks_cond_timedwait(pthread_cond_t *cv, struct ks_lock *l,
		      const struct timespec *abstime);

#ifdef KS_LOCK_CHECK
bool ks_lock_held(const struct ks_lock *l);
/* Held by this thread, shared or exclusive. */
bool ks_rwlock_held(const struct ks_rwlock *l);
bool ks_rwlock_held_exclusive(const struct ks_rwlock *l);
/* Aborts, naming the lock and the function, unless held. */
void ks_lock_fail_not_held(const char *name, const char *func);
#define ks_lock_assert_held(l)                                            \
	(ks_lock_held(l) ? (void)0 : ks_lock_fail_not_held((l)->name, __func__))
#define ks_rwlock_assert_held(l)                                          \
	(ks_rwlock_held(l) ? (void)0                                      \
			   : ks_lock_fail_not_held((l)->name, __func__))
#define ks_rwlock_assert_held_exclusive(l)                                \
	(ks_rwlock_held_exclusive(l)                                      \
		 ? (void)0                                                \
		 : ks_lock_fail_not_held((l)->name, __func__))
#else
#define ks_lock_assert_held(l) ((void)(l))
#define ks_rwlock_assert_held(l) ((void)(l))
#define ks_rwlock_assert_held_exclusive(l) ((void)(l))
#endif

#endif
