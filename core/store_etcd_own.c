/*
 * The etcd store's table of this host's own changes, and catch_up.
 *
 * A host sees its own changes come back through the watch.  Applying them
 * again is mostly harmless (the engine skips commits it has and creates of
 * names it has), but not always: the echo of a mkdir that arrives after the
 * rmdir that followed it would bring the state back.  So every txn's
 * revision is kept by name until the watch has passed it, and the watch
 * skips exactly those events; and since the echo may arrive before the txn's
 * answer does, the watch first waits for an append of that name under way.
 *
 * catch_up waits, bounded by the timeout, for what a refused commit found
 * in etcd (ke_note_refusal) to reach the engine.
 */
#include "store_etcd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* An absolute CLOCK_REALTIME time for pthread_cond_timedwait, `sec` from
 * now (capped by the caller). */
static struct timespec abs_after(double sec)
{
	struct timespec ts;
	long long ns;

	clock_gettime(CLOCK_REALTIME, &ts);
	ns = (long long)ts.tv_nsec + (long long)(sec * 1e9);
	ts.tv_sec += (time_t)(ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	return ts;
}

/* ---- this host's own changes ---------------------------------------------- */

static size_t own_slot(const char *name)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ULL;
	return (size_t)h & (KE_OWN_BUCKETS - 1);
}

/* s->mu held. */
static struct ke_own *own_find(struct ke_store *s, const char *name,
			       bool make)
{
	struct ke_own **b = &s->own[own_slot(name)], *e;

	ks_lock_assert_held(&s->mu);
	for (e = *b; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	if (!make || !(e = calloc(1, sizeof(*e))))
		return NULL;
	strcpy(e->name, name);
	e->next = *b;
	*b = e;
	return e;
}

/* Without memory for an entry the mark is missing: the watch then does
 * not wait for that append, and an early echo is applied as another
 * host's change (idempotent but for the rare mkdir/rmdir race above). */
void ke_own_begin(struct ke_store *s, const char *const *names, size_t n)
{
	ks_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		struct ke_own *e = own_find(s, names[i], true);

		if (e)
			e->busy++;
	}
	ks_unlock(&s->mu);
}

/* The append ended; rev > 0 is the revision of its changes to the names
 * with mine[i] (the others' events must still be applied). */
void ke_own_end(struct ke_store *s, const char *const *names,
		    const bool *mine, size_t n, int64_t rev,
		    enum ke_covers covers)
{
	ks_lock(&s->mu);
	for (size_t i = 0; i < n; i++) {
		struct ke_own *e = own_find(s, names[i], false);

		if (!e)
			continue;
		if (e->busy)
			e->busy--;
		e->epoch++;
		/* Whether or not its echo is skipped (mine), the unit
		 * supersedes what came before it. */
		if (rev > 0 && covers == KE_COVERS_ALL && rev > e->whole_rev)
			e->whole_rev = rev;
		if (rev > 0 && covers != KE_COVERS_NOTHING &&
		    rev > e->meta_rev)
			e->meta_rev = rev;
		if (rev > 0 && mine[i]) {
			if (e->nrevs == sizeof(e->revs) / sizeof(e->revs[0])) {
				memmove(e->revs, e->revs + 1,
					(e->nrevs - 1) * sizeof(e->revs[0]));
				e->nrevs--;
			}
			e->revs[e->nrevs++] = rev;
		}
	}
	pthread_cond_broadcast(&s->cv);
	ks_unlock(&s->mu);
}

/* s->mu held: waits until the append for NAME under way (if any) ends, for
 * at most the timeout and a second (an append never takes longer). */
static struct ke_own *own_settled(struct ke_store *s, const char *name)
{
	struct ke_own *e;
	struct timespec until = abs_after(s->timeout + 1);

	ks_lock_assert_held(&s->mu);
	e = own_find(s, name, false);
	if (e && e->busy) {
		uint64_t epoch = e->epoch;

		while ((e = own_find(s, name, false)) && e->busy &&
		       e->epoch == epoch)
			if (ks_cond_timedwait(&s->cv, &s->mu, &until))
				break;
	}
	return own_find(s, name, false);
}

unsigned ke_own_seen(struct ke_store *s, const char *name, int64_t rev)
{
	struct ke_own *e;
	unsigned seen = 0;

	ks_lock(&s->mu);
	e = own_settled(s, name);
	for (size_t i = 0; e && i < e->nrevs; i++)
		if (e->revs[i] == rev)
			seen |= KE_OWN_ECHO;
	if (e && rev < e->whole_rev)
		seen |= KE_OWN_STALE;
	if (e && rev < e->meta_rev)
		seen |= KE_OWN_STALE_META;
	ks_unlock(&s->mu);
	return seen;
}

bool ke_own_after(struct ke_store *s, const char *name, int64_t rev)
{
	struct ke_own *e;
	bool after = false;

	ks_lock(&s->mu);
	e = own_settled(s, name);
	for (size_t i = 0; e && i < e->nrevs; i++)
		after |= e->revs[i] > rev;
	after |= e && (e->busy || e->whole_rev > rev || e->meta_rev > rev);
	ks_unlock(&s->mu);
	return after;
}

void ke_own_forget(struct ke_store *s)
{
	ks_lock(&s->mu);
	atomic_store(&s->applied, 0);
	/* What refusals asked catch_up to wait for is of the old history:
	 * waited for now, it would never come. */
	s->catch_target = 0;
	s->n_absent = 0;
	for (size_t b = 0; b < KE_OWN_BUCKETS; b++) {
		struct ke_own **pp = &s->own[b], *e;

		while ((e = *pp)) {
			e->nrevs = 0;
			e->whole_rev = e->meta_rev = 0;
			if (!e->busy) {
				*pp = e->next;
				free(e);
			} else {
				pp = &e->next;
			}
		}
	}
	ks_unlock(&s->mu);
}

void ke_applied(struct ke_store *s, int64_t rev)
{
	ks_lock(&s->mu);
	if (rev > atomic_load(&s->applied))
		atomic_store(&s->applied, rev);
	/* Echoes up to rev have come: their revisions are of no more use. */
	for (size_t b = 0; b < KE_OWN_BUCKETS; b++) {
		struct ke_own **pp = &s->own[b], *e;

		while ((e = *pp)) {
			size_t k = 0;

			for (size_t i = 0; i < e->nrevs; i++)
				if (e->revs[i] > rev)
					e->revs[k++] = e->revs[i];
			e->nrevs = k;
			if (e->whole_rev <= rev)
				e->whole_rev = 0;
			if (e->meta_rev <= rev)
				e->meta_rev = 0;
			if (!e->nrevs && !e->busy && !e->whole_rev &&
			    !e->meta_rev) {
				*pp = e->next;
				free(e);
			} else {
				pp = &e->next;
			}
		}
	}
	pthread_cond_broadcast(&s->cv);
	ks_unlock(&s->mu);
}

/* A refused commit: what catch_up must wait for before the engine tries
 * again.  Each compared version key was read in the failure branch. */
void ke_note_refusal(struct ke_store *s, const struct ks_rec *recs,
			 const struct ks_etcd_txn_result *res, size_t n)
{
	ks_lock(&s->mu);
	for (size_t i = 0; i < n && i < res->n_responses; i++) {
		const struct ks_etcd_kvs *kv = &res->responses[i].kvs;

		if (kv->n) {
			/* The watch brings the version there now. */
			if (kv->kvs[0].mod_revision > s->catch_target)
				s->catch_target = kv->kvs[0].mod_revision;
			continue;
		}
		/* Gone: deleted or renamed elsewhere.  Its revision is not
		 * known; catch_up waits until the state is gone here too,
		 * or the watch reached this txn's revision. */
		if (s->n_absent < KE_ABSENT_MAX) {
			s->absent_rev[s->n_absent] = res->revision;
			strcpy(s->absent[s->n_absent++], recs[i].name);
		}
	}
	ks_unlock(&s->mu);
}

/* ---- catch_up ---------------------------------------------------------------- */

/* Is every absent name gone here, or the watch past its revision?  Drops
 * those that are.  Takes s->mu, then (without it) the engine's table. */
static bool absent_settled(struct ke_store *s)
{
	char name[KS_NAME_MAX + 1];
	bool all = true;
	size_t i = 0;

	for (;;) {
		struct ks_state *st;
		int64_t rev;
		bool gone;

		ks_lock(&s->mu);
		if (i >= s->n_absent) {
			ks_unlock(&s->mu);
			return all;
		}
		strcpy(name, s->absent[i]);
		rev = s->absent_rev[i];
		ks_unlock(&s->mu);
		/* The table lock is outside s->mu in the lock order. */
		gone = atomic_load(&s->applied) >= rev ||
		       ks_state_lookup(s->eng, name, &st) != 0;
		if (!gone)
			ks_state_unref(st);
		ks_lock(&s->mu);
		if (gone && i < s->n_absent &&
		    strcmp(s->absent[i], name) == 0) {
			s->n_absent--;
			memmove(&s->absent[i], &s->absent[i + 1],
				(s->n_absent - i) * sizeof(s->absent[0]));
			memmove(&s->absent_rev[i], &s->absent_rev[i + 1],
				(s->n_absent - i) * sizeof(s->absent_rev[0]));
		} else {
			all &= gone;
			i++;
		}
		ks_unlock(&s->mu);
	}
}

int ke_catch_up(struct ks_store *store)
{
	struct ke_store *s = (struct ke_store *)store;
	double deadline = mono_now() + s->timeout;
	int64_t target;
	bool any;

	if (!s->eng)
		return 0;
	ks_lock(&s->mu);
	target = s->catch_target;
	any = target > atomic_load(&s->applied) || s->n_absent;
	ks_unlock(&s->mu);
	if (!any) {
		/* No refused commit to go by: etcd's current revision.  (If
		 * the newest changes are outside the prefix, the watch never
		 * reports them, and this waits out the timeout.) */
		struct ks_etcd_keys k = { .key = ".version/" };
		struct ks_etcd_kvs kvs = { 0 };
		int err = ks_etcd_range(s->c, &k, 0, &kvs);

		if (err)
			return err;
		target = kvs.revision;
		ks_etcd_kvs_free(&kvs);
	}
	for (;;) {
		int64_t seen = atomic_load(&s->applied);
		struct timespec until;
		double left = deadline - mono_now();

		if (seen >= target && absent_settled(s))
			return 0;
		if (left <= 0)
			return ETIMEDOUT;
		/* Absent names are checked in the engine, not under s->mu:
		 * wake now and then even without news. */
		until = abs_after(left < 0.05 ? left : 0.05);
		ks_lock(&s->mu);
		if (atomic_load(&s->applied) == seen)
			ks_cond_timedwait(&s->cv, &s->mu, &until);
		ks_unlock(&s->mu);
	}
}

