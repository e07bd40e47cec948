/*
 * Structures shared by the engine's files (engine.c: the table and states;
 * txn.c: transactions; multi.c: transactions over several states;
 * commit.c: the one commit path).  Not for use outside core/.
 */
#ifndef KSTATEFS_CORE_INTERNAL_H
#define KSTATEFS_CORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine.h"
#include "events.h"
#include "lock.h"
#include "store.h"

struct ks_engine {
	struct ks_engine_config cfg;
	struct ks_store *store;      /* never NULL */
	struct ks_store *own_store;  /* the memory store made for a NULL one */
	ks_commit_listener listener;
	void *listener_arg;
	ks_name_listener name_listener;
	void *name_listener_arg;
	const struct ks_mirror_ops *mirror;  /* NULL: none */
	void *mirror_arg;

	struct ks_rwlock table_lock;
	struct ks_state **buckets;   /* chained by name hash */
	size_t nbuckets;
	size_t nstates;
	uint64_t next_id;
	struct timespec names_changed; /* a state made, removed or renamed */

	struct ks_events events;
	/* Held while a commit installs its pages and while a snapshot pins
	 * every state's current page, so that a snapshot sees each commit
	 * whole or not at all (multi.c).  Never held across the store. */
	struct ks_lock snap_lock;
	struct ks_lock multi_lock;
	struct ks_multi *multis;     /* transactions over several states */
	uint32_t nmultis;

	atomic_uint_fast64_t txns;
	atomic_uint_fast64_t commits;
	atomic_uint_fast64_t conflicts;
	atomic_uint_fast64_t bytes;
	atomic_uint_fast64_t snapshots;  /* read-only .txn/T committed */
};

struct ks_state {
	atomic_uint refs;
	struct ks_engine *eng;
	uint64_t id;
	struct ks_state *hnext;     /* bucket chain, under table_lock */

	struct ks_lock commit_lock;
	struct ks_lock lock;
	/* Under lock (and table_lock for name/deleted changes): */
	char name[KS_NAME_MAX + 1];
	bool deleted;
	struct ks_page *current;
	struct ks_state_attr attr;
	struct ks_txn *txns;        /* named transactions */
	uint32_t ntxns;
	struct timespec txns_changed; /* a name added or dropped; 0: never */
	uint32_t open_files;
	void *mirror;               /* eng->mirror's, or NULL */
};

struct ks_txn {
	atomic_uint refs;
	struct ks_state *st;        /* a reference */
	enum ks_txn_mode mode;
	atomic_uint_fast64_t tag;
	uid_t uid;                  /* under lock */
	gid_t gid;
	mode_t perm;

	/* Under st->lock: */
	char *name;                 /* NULL: anonymous or unlinked */
	struct ks_txn *next;
	uint64_t base_version;

	/* Under lock: the private page, copied on first write. */
	struct ks_lock lock;
	struct ks_page *base;       /* what the page is until buf exists */
	unsigned char *buf;
	size_t len;
	size_t cap;
	unsigned char *mask;        /* PATCH: one bit per byte written */
	long long set_len;          /* PATCH: truncated to this, or -1 */
	long long keep_len;         /* PATCH: the smallest truncation, or -1 */
	bool written;
	int error;
	struct timespec mtime;
};

void ks_now(struct timespec *ts);
void ks_multi_free_all(struct ks_engine *eng);

/* One state's page at a snapshot's instant. */
struct ks_pin {
	struct ks_state *st;    /* a reference */
	struct ks_page *page;   /* a reference */
};
/* Pins every state's current page at one instant, sorted by state id:
 * no commit is half in it.  Takes table_lock (read), then snap_lock. */
int ks_engine_pin_all(struct ks_engine *eng, struct ks_pin **out, size_t *n);
/* A transaction on st based on page (a version pinned earlier) rather
 * than the current one: KS_TXN_CHECKED, anonymous.  ENOENT if st has
 * been deleted. */
int ks_txn_begin_at(struct ks_state *st, struct ks_page *page,
		    struct ks_txn **out);
/* Swaps in a new current page; called with commit_lock held. */
void ks_state_install(struct ks_state *st, struct ks_page *page);
/* Drops txn's name; called with txn->st->lock held. */
void ks_txn_unlink_locked(struct ks_txn *txn);
/* The page a commit of txn (txn->lock held) installs over cur. */
struct ks_page *ks_txn_build_page(struct ks_txn *txn, const struct ks_page *cur,
				  uint64_t version, const struct timespec *now);
/* After a commit the transaction goes on, based on page (txn->lock held). */
void ks_txn_rebase(struct ks_txn *txn, struct ks_page *page);

/* ---- the commit path (commit.c) ------------------------------------------
 * Every commit, local or arriving from the store, is one ks_commit_run:
 *
 *   take the commit locks of every member, in ascending state id order
 *   prepare: decide each member's new page (or only validate it)
 *   append the unit to the store (not for changes from the store)
 *   install the pages, emit one run of .events lines, applied()
 *   release the commit locks, then release() the caller's own locks
 *   call the listener for every state that changed, outside every lock
 *
 * A store's EAGAIN on a blind commit repeats the middle after catch_up. */

struct ks_commit_member {
	struct ks_state *st;
	struct ks_txn *txn;          /* the transaction committing, or NULL */
	const struct ks_rec *rec;    /* a commit from the store, or NULL */
	/* Set by ks_commit_run before prepare: */
	struct ks_page *cur;         /* the current page, a reference */
	/* Set by prepare: */
	struct ks_page *page;        /* the new page (a reference), or NULL */
	uint64_t version;            /* page's version, or the one validated */
	bool deleted;                /* gone: ENOENT, or skipped if remote */
};

enum ks_commit_kind {
	KS_COMMIT_CHECKED,  /* a conflict (ours or the store's) is EAGAIN */
	KS_COMMIT_BLIND,    /* never conflicts: retried on the store's EAGAIN */
	KS_COMMIT_REMOTE,   /* from the store: not appended, deleted skipped */
};

struct ks_commit {
	enum ks_commit_kind kind;
	struct ks_commit_member *m;  /* sorted by state id by ks_commit_run */
	size_t n;
	/* With every commit lock held, cur, version (= cur's) and deleted
	 * set: sets page and version of each member.  0 or an errno
	 * (EAGAIN: a conflict, counted), nothing installed.  May run more
	 * than once (blind retries): each run starts with page NULL. */
	int (*prepare)(void *arg, struct ks_commit_member *m, size_t n,
		       const struct timespec *now);
	/* On success, commit locks still held, pages installed.  Optional. */
	void (*applied)(void *arg, struct ks_commit_member *m, size_t n);
	/* Always, once the commit locks are released and before the
	 * listener: the caller lets go of its own locks.  Optional. */
	void (*release)(void *arg, int err);
	void *arg;
};

int ks_commit_run(struct ks_engine *eng, struct ks_commit *c);

/* ---- the table, for the local calls and the store's (engine.c) ----------
 * append false: the change came from the store and is not appended back.
 * Each takes table_lock itself. */

/* id 0: the next free id; any other id must be free (the caller checks).
 * EEXIST if the name is taken. */
int ks_table_create(struct ks_engine *eng, uint64_t id, const char *name,
		    const struct ks_state_attr *attr, bool append,
		    struct ks_state **out);
/* Another host's creation: not appended, and taken past max_states (the
 * limit is on what this host makes; the namespace is every host's). */
int ks_table_create_remote(struct ks_engine *eng, uint64_t id,
			   const char *name, const struct ks_state_attr *attr,
			   struct ks_state **out);
/* expect: ENOENT unless st is still called that (NULL: any name).  force:
 * drop named transactions and ignore open files (a delete that already
 * happened elsewhere). */
int ks_table_delete(struct ks_engine *eng, struct ks_state *st,
		    const char *expect, bool force, bool append);
int ks_table_rename(struct ks_engine *eng, struct ks_state *st,
		    const char *expect, const char *newname,
		    const struct timespec *when, bool append);
int ks_attr_set(struct ks_state *st, const struct ks_state_attr *attr,
		bool append);
/* A state by id (a scan: by name is the fast way), with a reference. */
struct ks_state *ks_table_find_id(struct ks_engine *eng, uint64_t id);

#endif
