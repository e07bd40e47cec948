/*
 * Structures shared by the engine's files (engine.c: the table and states;
 * txn.c: transactions).  Not for use outside core/.
 */
#ifndef KSTATEFS_CORE_INTERNAL_H
#define KSTATEFS_CORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine.h"
#include "events.h"
#include "store.h"

struct ks_engine {
	struct ks_engine_config cfg;
	struct ks_store *store;
	ks_commit_listener listener;
	void *listener_arg;

	pthread_rwlock_t table_lock;
	struct ks_state **buckets;   /* chained by name hash */
	size_t nbuckets;
	size_t nstates;
	uint64_t next_id;

	struct ks_events events;
	pthread_mutex_t multi_lock;
	struct ks_multi *multis;     /* transactions over several states */
	uint32_t nmultis;

	atomic_uint_fast64_t txns;
	atomic_uint_fast64_t commits;
	atomic_uint_fast64_t conflicts;
	atomic_uint_fast64_t bytes;
};

struct ks_state {
	atomic_uint refs;
	struct ks_engine *eng;
	uint64_t id;
	struct ks_state *hnext;     /* bucket chain, under table_lock */

	pthread_mutex_t commit_lock;
	pthread_mutex_t lock;
	/* Under lock (and table_lock for name/deleted changes): */
	char name[KS_NAME_MAX + 1];
	bool deleted;
	struct ks_page *current;
	struct ks_state_attr attr;
	struct ks_txn *txns;        /* named transactions */
	uint32_t ntxns;
	uint32_t open_files;
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
	pthread_mutex_t lock;
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
/* Appends through the store, if there is one. */
int ks_store_append(struct ks_engine *eng, const struct ks_rec *recs,
		    size_t n);
/* Swaps in a new current page; called with commit_lock held. */
void ks_state_install(struct ks_state *st, struct ks_page *page);
void ks_txn_unlink_locked(struct ks_txn *txn);
/* The page a commit of txn (txn->lock held) installs over cur. */
struct ks_page *ks_txn_build_page(struct ks_txn *txn, const struct ks_page *cur,
				  uint64_t version, const struct timespec *now);
/* After a commit the transaction goes on, based on page (txn->lock held). */
void ks_txn_rebase(struct ks_txn *txn, struct ks_page *page);
/* Formats the .events line of a commit of st at version v into buf. */
void ks_commit_line(struct ks_state *st, uint64_t v, char *buf, size_t len);
/* Appends one event line (a commit: with the state's commit lock held, so
 * that the stream is in commit order). */
void ks_emit(struct ks_engine *eng, const char *line);

#endif
