/*
 * Rebuilding an engine from a store, and snapshots of a running engine.
 * See recover.h for the rules that make replaying idempotent.
 */
#include "recover.h"
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rstate {
	struct rstate *next;        /* bucket chain */
	uint64_t id;
	char name[KS_NAME_MAX + 1];
	struct ks_state_attr attr;
	struct ks_page *page;
};

struct ks_recovery {
	struct rstate **buckets;
	size_t nbuckets;
	size_t n;
	uint64_t next_id;
	uint64_t bytes;
	bool shared;
};

static size_t slot(const struct ks_recovery *r, uint64_t id)
{
	return (size_t)((id * 0x9E3779B97F4A7C15ULL) >> 20) &
	       (r->nbuckets - 1);
}

struct ks_recovery *ks_recovery_new(void)
{
	struct ks_recovery *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->nbuckets = 256;
	r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
	if (!r->buckets) {
		free(r);
		return NULL;
	}
	r->next_id = 1;
	return r;
}

void ks_recovery_free(struct ks_recovery *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nbuckets; i++) {
		struct rstate *s = r->buckets[i], *next;

		for (; s; s = next) {
			next = s->next;
			ks_page_unref(s->page);
			free(s);
		}
	}
	free(r->buckets);
	free(r);
}

static struct rstate *find(const struct ks_recovery *r, uint64_t id)
{
	for (struct rstate *s = r->buckets[slot(r, id)]; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void grow(struct ks_recovery *r)
{
	size_t old = r->nbuckets;
	struct rstate **ob = r->buckets, **nb;

	if (r->n < old)
		return;
	nb = calloc(old * 2, sizeof(*nb));
	if (!nb)
		return; /* only slower */
	r->buckets = nb;
	r->nbuckets = old * 2;
	for (size_t i = 0; i < old; i++) {
		struct rstate *s = ob[i], *next;

		for (; s; s = next) {
			size_t b = slot(r, s->id);

			next = s->next;
			s->next = nb[b];
			nb[b] = s;
		}
	}
	free(ob);
}

static int name_copy(char *dst, const char *name)
{
	if (!name || ks_name_check(name))
		return EINVAL;
	strcpy(dst, name);
	return 0;
}

static void note_id(struct ks_recovery *r, uint64_t id)
{
	if (id >= r->next_id)
		r->next_id = id + 1;
}

static int add(struct ks_recovery *r, uint64_t id, const char *name,
	       const struct ks_state_attr *attr, struct ks_page *page)
{
	struct rstate *s = calloc(1, sizeof(*s));
	size_t b;

	if (!s)
		return ENOMEM;
	if (name_copy(s->name, name)) {
		free(s);
		return EINVAL;
	}
	s->id = id;
	s->attr = *attr;
	s->attr.mode &= 07777;
	s->page = page;
	b = slot(r, id);
	s->next = r->buckets[b];
	r->buckets[b] = s;
	r->n++;
	r->bytes += page->len;
	note_id(r, id);
	grow(r);
	return 0;
}

static void drop(struct ks_recovery *r, uint64_t id)
{
	struct rstate **pp = &r->buckets[slot(r, id)], *s;

	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	s = *pp;
	if (!s)
		return;
	*pp = s->next;
	r->n--;
	r->bytes -= s->page->len;
	ks_page_unref(s->page);
	free(s);
}

int ks_recovery_apply(struct ks_recovery *r, const struct ks_rec *rec)
{
	struct rstate *s = find(r, rec->state_id);
	struct ks_state_attr attr;
	struct ks_page *page;
	int err;

	switch (rec->type) {
	case KS_REC_CREATE:
		note_id(r, rec->state_id);
		if (s)
			return 0;
		attr = (struct ks_state_attr){ .uid = rec->uid, .gid = rec->gid,
					       .mode = rec->mode,
					       .ctime = rec->time };
		page = ks_page_new(NULL, 0, 0, &rec->time);
		if (!page)
			return ENOMEM;
		err = add(r, rec->state_id, rec->name, &attr, page);
		if (err)
			ks_page_unref(page);
		return err;
	case KS_REC_DELETE:
		drop(r, rec->state_id);
		return 0;
	case KS_REC_RENAME:
		if (!s)
			return 0;
		if (name_copy(s->name, rec->name))
			return EINVAL;
		s->attr.ctime = rec->time;
		return 0;
	case KS_REC_ATTR:
		if (!s)
			return 0;
		s->attr.uid = rec->uid;
		s->attr.gid = rec->gid;
		s->attr.mode = rec->mode & 07777;
		s->attr.ctime = rec->time;
		return 0;
	case KS_REC_CHECK:
		return 0; /* validated, nothing changed */
	case KS_REC_COMMIT:
		if (!s || rec->version <= s->page->version)
			return 0;
		page = ks_page_new(rec->bytes, rec->len, rec->version,
				   &rec->time);
		if (!page)
			return ENOMEM;
		r->bytes += page->len;
		r->bytes -= s->page->len;
		ks_page_unref(s->page);
		s->page = page;
		return 0;
	}
	return EINVAL;
}

int ks_recovery_put(struct ks_recovery *r, uint64_t id, const char *name,
		    const struct ks_state_attr *attr, uint64_t version,
		    const struct timespec *mtime, const void *bytes,
		    size_t len)
{
	struct ks_page *page;
	int err;

	drop(r, id);
	page = ks_page_new(bytes, len, version, mtime);
	if (!page)
		return ENOMEM;
	err = add(r, id, name, attr, page);
	if (err)
		ks_page_unref(page);
	return err;
}

void ks_recovery_next_id(struct ks_recovery *r, uint64_t next_id)
{
	if (next_id > r->next_id)
		r->next_id = next_id;
}

void ks_recovery_counts(const struct ks_recovery *r, uint64_t *states,
			uint64_t *bytes)
{
	*states = r->n;
	*bytes = r->bytes;
}

void ks_recovery_shared(struct ks_recovery *r)
{
	r->shared = true;
}

int ks_recovery_finish(struct ks_recovery *r, struct ks_engine *eng,
		       char *msg, size_t msglen)
{
	uint64_t commits = atomic_load(&eng->commits);
	int err = 0;

	/* The states go in through the engine's own table, without appending
	 * them back to the store.  Ids are unique here (collected by id). */
	for (size_t i = 0; i < r->nbuckets && !err; i++) {
		for (struct rstate *s = r->buckets[i]; s && !err; s = s->next) {
			struct ks_state *st;

			err = r->shared ?
				ks_table_create_remote(eng, s->id, s->name,
						       &s->attr, &st) :
				ks_table_create(eng, s->id, s->name, &s->attr,
						false, &st);
			if (err == EEXIST) {
				snprintf(msg, msglen,
					 "two states are named \"%s\"",
					 s->name);
			} else if (err == ENOSPC) {
				snprintf(msg, msglen,
					 "the store holds more states than "
					 "max_states (%u)",
					 (unsigned)eng->cfg.max_states);
			} else if (err) {
				snprintf(msg, msglen,
					 "cannot rebuild state \"%s\": %s",
					 s->name, strerror(err));
			}
			if (err)
				break;
			if (s->page->version > 0) {
				ks_lock(&st->commit_lock);
				ks_state_install(st, ks_page_ref(s->page));
				ks_unlock(&st->commit_lock);
			}
			ks_state_unref(st);
		}
	}
	ks_wrlock(&eng->table_lock);
	if (r->next_id > eng->next_id)
		eng->next_id = r->next_id;
	ks_rwunlock(&eng->table_lock);
	atomic_store(&eng->commits, commits);
	return err;
}

/* ---- snapshots ---------------------------------------------------------- */

struct take {
	struct ks_snapshot *snap;
	size_t cap;
	int err;
};

static void take_one(void *arg, struct ks_state *st)
{
	struct take *t = arg;
	struct ks_snap_state *s;

	if (t->err)
		return;
	if (t->snap->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		void *ns = realloc(t->snap->states, cap * sizeof(*s));

		if (!ns) {
			t->err = ENOMEM;
			return;
		}
		t->snap->states = ns;
		t->cap = cap;
	}
	s = &t->snap->states[t->snap->n];
	/* The commit lock: a commit whose record is already in the store
	 * is installed before it lets go. */
	ks_lock(&st->commit_lock);
	ks_lock(&st->lock);
	s->id = st->id;
	strcpy(s->name, st->name);
	s->attr = st->attr;
	s->page = ks_page_ref(st->current);
	ks_unlock(&st->lock);
	ks_unlock(&st->commit_lock);
	t->snap->n++;
}

int ks_snapshot_take(struct ks_engine *eng, struct ks_snapshot *out)
{
	struct take t = { .snap = out };

	memset(out, 0, sizeof(*out));
	ks_rdlock(&eng->table_lock);
	out->next_id = eng->next_id;
	for (size_t i = 0; i < eng->nbuckets; i++)
		for (struct ks_state *st = eng->buckets[i]; st; st = st->hnext)
			take_one(&t, st);
	ks_rwunlock(&eng->table_lock);
	if (t.err)
		ks_snapshot_release(out);
	return t.err;
}

void ks_snapshot_release(struct ks_snapshot *snap)
{
	for (size_t i = 0; i < snap->n; i++)
		ks_page_unref(snap->states[i].page);
	free(snap->states);
	memset(snap, 0, sizeof(*snap));
}

uint64_t ks_engine_live_bytes(struct ks_engine *eng)
{
	return atomic_load_explicit(&eng->bytes, memory_order_relaxed);
}
