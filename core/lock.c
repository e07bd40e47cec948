/*
 * Locks that know their place in the lock order: see lock.h.
 */
#include "lock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef KS_LOCK_CHECK

/* Deeper than any real nesting: a multi-state commit holds two locks per
 * member, and members are few; past this the checks stop tracking (and
 * say so) rather than fail. */
#define HELD_MAX 256

struct held {
	const void *lock;
	const char *name;
	enum ks_lock_rank rank;
	uint64_t key;
	bool keyed;
};

/* The locks this thread holds, in the order it took them. */
static _Thread_local struct {
	struct held locks[HELD_MAX];
	unsigned n;
	bool overflowed;
} held_by_me;

static void order_violation(const struct held *have, const char *name,
			    enum ks_lock_rank rank)
{
	fprintf(stderr,
		"kstatefs: lock order violated: taking %s (rank %d) while "
		"holding %s (rank %d)\n",
		name, (int)rank, have->name, (int)have->rank);
	abort();
}

/* Checks that LOCK may be taken now, before blocking on it: a deadlock
 * caught here is reported, not hung. */
static void check_order(const void *lock, const char *name,
			enum ks_lock_rank rank, bool keyed, uint64_t key)
{
	for (unsigned i = 0; i < held_by_me.n; i++) {
		const struct held *h = &held_by_me.locks[i];

		if (h->lock == lock) {
			fprintf(stderr,
				"kstatefs: lock %s taken twice by one "
				"thread\n", name);
			abort();
		}
		if (h->rank < rank)
			continue;
		if (h->rank == rank && keyed && h->keyed && h->key < key)
			continue;
		order_violation(h, name, rank);
	}
}

static void push(const void *lock, const char *name, enum ks_lock_rank rank,
		 bool keyed, uint64_t key)
{
	if (held_by_me.n == HELD_MAX) {
		if (!held_by_me.overflowed)
			fprintf(stderr, "kstatefs: lock checks: more than %d "
				"locks held; not tracking deeper\n", HELD_MAX);
		held_by_me.overflowed = true;
		return;
	}
	held_by_me.locks[held_by_me.n++] = (struct held){
		.lock = lock, .name = name, .rank = rank, .keyed = keyed,
		.key = key };
}

static void pop(const void *lock, const char *name)
{
	for (unsigned i = held_by_me.n; i-- > 0;) {
		if (held_by_me.locks[i].lock != lock)
			continue;
		for (unsigned j = i + 1; j < held_by_me.n; j++)
			held_by_me.locks[j - 1] = held_by_me.locks[j];
		held_by_me.n--;
		return;
	}
	if (held_by_me.overflowed)
		return;
	fprintf(stderr, "kstatefs: lock %s released by a thread that does "
		"not hold it\n", name);
	abort();
}

static bool held_here(const void *lock)
{
	for (unsigned i = 0; i < held_by_me.n; i++)
		if (held_by_me.locks[i].lock == lock)
			return true;
	return held_by_me.overflowed;
}

bool ks_lock_held(const struct ks_lock *l)
{
	return held_here(l);
}

bool ks_rwlock_held(const struct ks_rwlock *l)
{
	return held_here(l);
}

bool ks_rwlock_held_exclusive(const struct ks_rwlock *l)
{
	return held_here(l) && l->written &&
	       pthread_equal(l->writer, pthread_self());
}

void ks_lock_fail_not_held(const char *name, const char *func)
{
	fprintf(stderr, "kstatefs: %s called without holding %s\n", func,
		name);
	abort();
}

#else /* !KS_LOCK_CHECK */

static inline void check_order(const void *lock, const char *name,
			       enum ks_lock_rank rank, bool keyed,
			       uint64_t key)
{
	(void)lock, (void)name, (void)rank, (void)keyed, (void)key;
}

static inline void push(const void *lock, const char *name,
			enum ks_lock_rank rank, bool keyed, uint64_t key)
{
	(void)lock, (void)name, (void)rank, (void)keyed, (void)key;
}

static inline void pop(const void *lock, const char *name)
{
	(void)lock, (void)name;
}

#endif

/* pthread calls on our own, correctly initialised locks fail only on
 * programming errors; carrying on would corrupt what the lock guards. */
static void must(int err, const char *what, const char *name)
{
	if (err == 0)
		return;
	fprintf(stderr, "kstatefs: %s of %s failed: error %d\n", what, name,
		err);
	abort();
}

void ks_lock_init(struct ks_lock *l, const char *name,
		  enum ks_lock_rank rank)
{
	must(pthread_mutex_init(&l->mutex, NULL), "init", name);
	l->name = name;
	l->rank = rank;
}

void ks_lock_destroy(struct ks_lock *l)
{
	pthread_mutex_destroy(&l->mutex);
}

static void lock_mutex(struct ks_lock *l, bool keyed, uint64_t key)
{
	check_order(l, l->name, l->rank, keyed, key);
	must(pthread_mutex_lock(&l->mutex), "lock", l->name);
	push(l, l->name, l->rank, keyed, key);
}

void ks_lock(struct ks_lock *l)
{
	lock_mutex(l, false, 0);
}

void ks_lock_nested(struct ks_lock *l, uint64_t key)
{
	lock_mutex(l, true, key);
}

void ks_unlock(struct ks_lock *l)
{
	pop(l, l->name);
	must(pthread_mutex_unlock(&l->mutex), "unlock", l->name);
}

void ks_cond_wait(pthread_cond_t *cv, struct ks_lock *l)
{
	ks_lock_assert_held(l);
	must(pthread_cond_wait(cv, &l->mutex), "wait", l->name);
}

int ks_cond_timedwait(pthread_cond_t *cv, struct ks_lock *l,
		      const struct timespec *abstime)
{
	int err;

	ks_lock_assert_held(l);
	err = pthread_cond_timedwait(cv, &l->mutex, abstime);
	if (err && err != ETIMEDOUT)
		must(err, "timed wait", l->name);
	return err;
}

void ks_rwlock_init(struct ks_rwlock *l, const char *name,
		    enum ks_lock_rank rank)
{
	must(pthread_rwlock_init(&l->rwlock, NULL), "init", name);
	l->name = name;
	l->rank = rank;
#ifdef KS_LOCK_CHECK
	l->written = false;
#endif
}

void ks_rwlock_destroy(struct ks_rwlock *l)
{
	pthread_rwlock_destroy(&l->rwlock);
}

void ks_rdlock(struct ks_rwlock *l)
{
	check_order(l, l->name, l->rank, false, 0);
	must(pthread_rwlock_rdlock(&l->rwlock), "read lock", l->name);
	push(l, l->name, l->rank, false, 0);
}

void ks_wrlock(struct ks_rwlock *l)
{
	check_order(l, l->name, l->rank, false, 0);
	must(pthread_rwlock_wrlock(&l->rwlock), "write lock", l->name);
	push(l, l->name, l->rank, false, 0);
#ifdef KS_LOCK_CHECK
	l->writer = pthread_self();
	l->written = true;
#endif
}

void ks_rwunlock(struct ks_rwlock *l)
{
#ifdef KS_LOCK_CHECK
	if (l->written && pthread_equal(l->writer, pthread_self()))
		l->written = false;
#endif
	pop(l, l->name);
	must(pthread_rwlock_unlock(&l->rwlock), "unlock", l->name);
}
