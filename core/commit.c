/*
 * The commit path, written once.  A commit of one state (data, a
 * transaction file, truncate), of several (.txn/T), or one arriving from
 * the store (another host's) all come here; the callers only decide what
 * the new pages are (prepare) and what happens to their transactions
 * afterwards (applied, release).  See internal.h for the steps.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef char state_name[KS_NAME_MAX + 1];

static int by_state_id(const void *a, const void *b)
{
	uint64_t x = ((const struct ks_commit_member *)a)->st->id;
	uint64_t y = ((const struct ks_commit_member *)b)->st->id;

	return x < y ? -1 : x > y;
}

/* In ascending state id order (c->m is sorted): the id is the lock's order
 * key, so the checks see several commit locks taken the one safe way. */
static void lock_all(struct ks_commit *c)
{
	for (size_t i = 0; i < c->n; i++)
		ks_lock_nested(&c->m[i].st->commit_lock, c->m[i].st->id);
}

static void unlock_all(struct ks_commit *c)
{
	for (size_t i = c->n; i-- > 0;)
		ks_unlock(&c->m[i].st->commit_lock);
}

/* Under the commit locks: each member's current page, name and whether it
 * is gone.  Names cannot change while the commit lock is held (rename
 * takes it), so the store and .events see the same one. */
static void take_current(struct ks_commit *c, state_name *names)
{
	for (size_t i = 0; i < c->n; i++) {
		struct ks_commit_member *m = &c->m[i];
		struct ks_state *st = m->st;

		ks_lock_assert_held(&st->commit_lock);
		ks_lock(&st->lock);
		m->cur = ks_page_ref(st->current);
		m->deleted = st->deleted;
		strcpy(names[i], st->name);
		ks_unlock(&st->lock);
		m->page = NULL;
		m->version = m->cur->version;
	}
}

static void drop_pages(struct ks_commit *c)
{
	for (size_t i = 0; i < c->n; i++) {
		ks_page_unref(c->m[i].page);
		ks_page_unref(c->m[i].cur);
		c->m[i].page = c->m[i].cur = NULL;
	}
}

/* The unit for the store: a COMMIT for every new page and a CHECK for
 * every member only validated (so a remote store can compare it too);
 * nothing at all if no page changes. */
static int append_unit(struct ks_engine *eng, struct ks_commit *c,
		       state_name *names)
{
	struct ks_rec one, *recs = &one;
	size_t nrec = 0, pages = 0;
	int err;

	for (size_t i = 0; i < c->n; i++)
		pages += c->m[i].page != NULL;
	if (!pages)
		return 0;
	if (c->n > 1) {
		recs = calloc(c->n, sizeof(*recs));
		if (!recs)
			return ENOMEM;
	}
	for (size_t i = 0; i < c->n; i++) {
		const struct ks_commit_member *m = &c->m[i];
		const struct ks_page *p = m->page;

		if (p)
			recs[nrec++] = (struct ks_rec){
				.type = KS_REC_COMMIT, .state_id = m->st->id,
				.name = names[i], .version = p->version,
				.base = p->version - 1, .bytes = p->bytes,
				.len = p->len, .time = p->mtime };
		else
			recs[nrec++] = (struct ks_rec){
				.type = KS_REC_CHECK, .state_id = m->st->id,
				.name = names[i], .version = m->version,
				.base = m->version };
	}
	err = ks_store_append(eng->store, recs, nrec);
	if (recs != &one)
		free(recs);
	return err;
}

/* Installs the new pages and emits their .events lines as one run of
 * consecutive events, under the commit locks so that the stream is in
 * commit order. */
static void install_all(struct ks_engine *eng, struct ks_commit *c,
			state_name *names)
{
	char one[KS_EVENT_LINE_MAX], *oneline = one;
	char (*lines)[KS_EVENT_LINE_MAX] = &one;
	const char **ptrs = (const char **)&oneline;
	struct ks_event_audience one_aud, *aud = &one_aud;
	size_t nl = 0;

	if (c->n > 1) {
		lines = malloc(c->n * sizeof(*lines));
		ptrs = malloc(c->n * sizeof(*ptrs));
		aud = malloc(c->n * sizeof(*aud));
	}
	/* Every page of the commit at once for snapshots (.txn/T pins all
	 * current pages under the same lock): none sees half of it. */
	ks_lock(&eng->snap_lock);
	for (size_t i = 0; i < c->n; i++)
		if (c->m[i].page)
			ks_state_install(c->m[i].st, ks_page_ref(c->m[i].page));
	ks_unlock(&eng->snap_lock);
	for (size_t i = 0; i < c->n; i++) {
		struct ks_commit_member *m = &c->m[i];

		if (!m->page)
			continue;
		/* Without memory for the lines the commit still stands; its
		 * readers lose the lines, as on a ring overflow. */
		if (lines && ptrs && aud) {
			struct ks_state_attr sa;

			ks_event_commit_line(lines[nl], sizeof(lines[nl]),
					     names[i], m->version);
			ptrs[nl] = lines[nl];
			/* For those who may read its version. */
			ks_state_get_attr(m->st, &sa);
			aud[nl] = (struct ks_event_audience){
				.restricted = true, .uid = sa.uid,
				.gid = sa.gid, .mode = sa.mode };
			nl++;
		}
	}
	if (nl)
		ks_events_append(&eng->events, ptrs, aud, nl);
	if (c->n > 1) {
		free(lines);
		free(ptrs);
		free(aud);
	}
}

int ks_commit_run(struct ks_engine *eng, struct ks_commit *c)
{
	state_name one, *names = &one;
	struct timespec now;
	int err, tries = 0;

	if (c->n > 1) {
		qsort(c->m, c->n, sizeof(*c->m), by_state_id);
		names = malloc(c->n * sizeof(*names));
		if (!names) {
			if (c->release)
				c->release(c->arg, ENOMEM);
			return ENOMEM;
		}
	}
	for (;;) {
		lock_all(c);
		take_current(c, names);
		ks_now(&now);
		err = c->prepare(c->arg, c->m, c->n, &now);
		if (err == EAGAIN) {
			atomic_fetch_add_explicit(&eng->conflicts, 1,
						  memory_order_relaxed);
		} else if (!err && c->kind != KS_COMMIT_REMOTE) {
			err = append_unit(eng, c, names);
			if (err == EAGAIN && c->kind == KS_COMMIT_BLIND &&
			    ++tries < KS_COMMIT_TRIES) {
				/* Another host committed first.  A blind
				 * write never conflicts: fetch the newer page
				 * and write over it. */
				unlock_all(c);
				drop_pages(c);
				ks_store_catch_up(eng->store);
				continue;
			}
			/* A blind write that kept losing (every try found
			 * another host first) is refused with EAGAIN too. */
			if (err == EAGAIN)
				atomic_fetch_add_explicit(&eng->conflicts, 1,
							  memory_order_relaxed);
		}
		if (!err) {
			install_all(eng, c, names);
			if (c->applied)
				c->applied(c->arg, c->m, c->n);
		}
		unlock_all(c);
		break;
	}
	if (c->release)
		c->release(c->arg, err);
	if (!err && eng->listener)
		for (size_t i = 0; i < c->n; i++)
			if (c->m[i].page)
				eng->listener(eng->listener_arg, c->m[i].st,
					      c->m[i].version);
	drop_pages(c);
	if (names != &one)
		free(names);
	return err;
}
