/*
 * The state table: names to states, creation, deletion, renaming, and the
 * parts of a state that are not transactions.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INITIAL_BUCKETS 64

void ks_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

static uint64_t name_hash(const char *name)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 1099511628211ULL;
	return h;
}

int ks_name_check(const char *name)
{
	size_t len = strlen(name);

	/* NAME_MAX first, as the kernel checks it: whatever a name holds,
	 * one too long is ENAMETOOLONG. */
	if (len > KS_NAME_MAX)
		return ENAMETOOLONG;
	if (len == 0 || name[0] == '.')
		return EINVAL;
	/* No '/', and no control byte: a name is one line of .events and of
	 * `kstate ls`, so a newline in it could forge another entry, and a
	 * tab or an escape sequence would garble what a terminal shows. */
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p == '/' || *p < 0x20 || *p == 0x7f)
			return EINVAL;
	return 0;
}

int ks_engine_new(const struct ks_engine_config *cfg, struct ks_store *store,
		  struct ks_engine **out)
{
	struct ks_engine *eng = calloc(1, sizeof(*eng));

	if (!eng)
		return ENOMEM;
	eng->cfg = *cfg;
	/* The one place a missing store is handled: states in memory. */
	if (!store) {
		int err = ks_store_open("memory", &eng->own_store, NULL, 0);

		if (err) {
			free(eng);
			return err;
		}
		store = eng->own_store;
	}
	eng->store = store;
	eng->nbuckets = INITIAL_BUCKETS;
	eng->buckets = calloc(eng->nbuckets, sizeof(*eng->buckets));
	if (!eng->buckets) {
		ks_store_close(eng->own_store);
		free(eng);
		return ENOMEM;
	}
	if (ks_events_init(&eng->events, KS_EVENTS_CAPACITY)) {
		ks_store_close(eng->own_store);
		free(eng->buckets);
		free(eng);
		return ENOMEM;
	}
	eng->next_id = 1;
	ks_rwlock_init(&eng->table_lock, "engine->table_lock",
		       KS_RANK_TABLE);
	ks_lock_init(&eng->multi_lock, "engine->multi_lock",
		     KS_RANK_MULTI_LIST);
	ks_lock_init(&eng->snap_lock, "engine->snap_lock", KS_RANK_SNAP);
	*out = eng;
	return 0;
}

static void state_free(struct ks_state *st)
{
	ks_page_unref(st->current);
	ks_lock_destroy(&st->lock);
	ks_lock_destroy(&st->commit_lock);
	free(st);
}

/* Drops every named transaction of st (st->lock held): a forced delete. */
static void drop_txns_locked(struct ks_state *st)
{
	ks_lock_assert_held(&st->lock);
	while (st->txns) {
		struct ks_txn *t = st->txns;

		ks_txn_ref(t);
		ks_txn_unlink_locked(t);
		ks_unlock(&st->lock);
		ks_txn_unref(t);
		ks_lock(&st->lock);
	}
}

void ks_engine_free(struct ks_engine *eng)
{
	if (!eng)
		return;
	ks_multi_free_all(eng);
	ks_lock_destroy(&eng->multi_lock);
	ks_lock_destroy(&eng->snap_lock);
	for (size_t i = 0; i < eng->nbuckets; i++) {
		struct ks_state *st = eng->buckets[i], *next;
		void *mirror;

		for (; st; st = next) {
			next = st->hnext;
			/* Named transactions hold the state: drop them. */
			ks_lock(&st->lock);
			drop_txns_locked(st);
			st->deleted = true;
			mirror = st->mirror;
			st->mirror = NULL;
			ks_unlock(&st->lock);
			if (mirror)
				eng->mirror->gone(mirror);
			ks_state_unref(st);
		}
	}
	free(eng->buckets);
	ks_events_destroy(&eng->events);
	ks_rwlock_destroy(&eng->table_lock);
	ks_store_close(eng->own_store);
	free(eng);
}

struct ks_events *ks_engine_events(struct ks_engine *eng)
{
	return &eng->events;
}

static void emit_named(struct ks_engine *eng, const char *what,
		       const char *name)
{
	char line[KS_EVENT_LINE_MAX];
	const char *lines[1] = { line };

	ks_event_name_line(line, sizeof(line), what, name);
	ks_events_append(&eng->events, lines, NULL, 1);
}

void ks_engine_set_listener(struct ks_engine *eng, ks_commit_listener fn,
			    void *arg)
{
	eng->listener = fn;
	eng->listener_arg = arg;
}

void ks_engine_set_name_listener(struct ks_engine *eng, ks_name_listener fn,
				 void *arg)
{
	eng->name_listener = fn;
	eng->name_listener_arg = arg;
}

/* Gives st (just in the table, table_lock held for writing) its mirror and
 * the mirror its first page. */
static void mirror_attach(struct ks_engine *eng, struct ks_state *st)
{
	void *mirror = eng->mirror->created(eng->mirror_arg, st);

	if (!mirror)
		return;
	ks_lock(&st->lock);
	st->mirror = mirror;
	eng->mirror->page(mirror, st->current);
	ks_unlock(&st->lock);
}

void ks_engine_set_mirror(struct ks_engine *eng,
			  const struct ks_mirror_ops *ops, void *arg)
{
	ks_wrlock(&eng->table_lock);
	eng->mirror = ops;
	eng->mirror_arg = arg;
	for (size_t i = 0; i < eng->nbuckets; i++)
		for (struct ks_state *st = eng->buckets[i]; st; st = st->hnext)
			mirror_attach(eng, st);
	ks_rwunlock(&eng->table_lock);
}

const struct ks_engine_config *ks_engine_config(const struct ks_engine *eng)
{
	return &eng->cfg;
}

void ks_engine_stats(struct ks_engine *eng, struct ks_engine_stats *out)
{
	ks_rdlock(&eng->table_lock);
	out->states = eng->nstates;
	out->names_changed = eng->names_changed;
	ks_rwunlock(&eng->table_lock);
	out->txns = atomic_load_explicit(&eng->txns, memory_order_relaxed);
	ks_lock(&eng->multi_lock);
	out->txns += eng->nmultis;
	ks_unlock(&eng->multi_lock);
	out->commits = atomic_load_explicit(&eng->commits,
					    memory_order_relaxed);
	out->conflicts = atomic_load_explicit(&eng->conflicts,
					      memory_order_relaxed);
	out->bytes = atomic_load_explicit(&eng->bytes, memory_order_relaxed);
}

size_t ks_engine_foreach(struct ks_engine *eng,
			 void (*fn)(void *arg, struct ks_state *st), void *arg)
{
	size_t n = 0;

	ks_rdlock(&eng->table_lock);
	for (size_t i = 0; i < eng->nbuckets; i++)
		for (struct ks_state *st = eng->buckets[i]; st; st = st->hnext) {
			fn(arg, st);
			n++;
		}
	ks_rwunlock(&eng->table_lock);
	return n;
}

static int by_pin_id(const void *a, const void *b)
{
	uint64_t x = ((const struct ks_pin *)a)->st->id;
	uint64_t y = ((const struct ks_pin *)b)->st->id;

	return x < y ? -1 : x > y;
}

int ks_engine_pin_all(struct ks_engine *eng, struct ks_pin **out, size_t *n)
{
	struct ks_pin *pins;
	size_t k = 0;

	ks_rdlock(&eng->table_lock);
	pins = malloc((eng->nstates ? eng->nstates : 1) * sizeof(*pins));
	if (!pins) {
		ks_rwunlock(&eng->table_lock);
		return ENOMEM;
	}
	/* Commits install their pages under snap_lock (commit.c): holding
	 * it, every current page below belongs to one instant, with each
	 * commit over several states wholly in it or wholly after it.
	 * Only references are taken here, no copies, so commits wait at
	 * most for a walk over the table. */
	ks_lock(&eng->snap_lock);
	for (size_t i = 0; i < eng->nbuckets; i++)
		for (struct ks_state *st = eng->buckets[i]; st; st = st->hnext) {
			ks_lock(&st->lock);
			pins[k].st = ks_state_ref(st);
			pins[k].page = ks_page_ref(st->current);
			ks_unlock(&st->lock);
			k++;
		}
	ks_unlock(&eng->snap_lock);
	ks_rwunlock(&eng->table_lock);
	qsort(pins, k, sizeof(*pins), by_pin_id);
	*out = pins;
	*n = k;
	return 0;
}

/* ---- the hash table, under table_lock ----------------------------------- */

static struct ks_state **bucket_of(struct ks_engine *eng, const char *name)
{
	return &eng->buckets[name_hash(name) & (eng->nbuckets - 1)];
}

static struct ks_state *table_find(struct ks_engine *eng, const char *name)
{
	ks_rwlock_assert_held(&eng->table_lock);
	for (struct ks_state *st = *bucket_of(eng, name); st; st = st->hnext)
		if (strcmp(st->name, name) == 0)
			return st;
	return NULL;
}

/* By id: a scan of every bucket.  Only the store's changes look states up
 * this way, and they usually come by name. */
static struct ks_state *ks_table_find_id_locked(struct ks_engine *eng,
						uint64_t id)
{
	ks_rwlock_assert_held(&eng->table_lock);
	for (size_t i = 0; i < eng->nbuckets; i++)
		for (struct ks_state *st = eng->buckets[i]; st; st = st->hnext)
			if (st->id == id)
				return st;
	return NULL;
}

static void table_remove(struct ks_engine *eng, struct ks_state *st)
{
	struct ks_state **pp;

	ks_rwlock_assert_held_exclusive(&eng->table_lock);
	pp = bucket_of(eng, st->name);
	while (*pp != st)
		pp = &(*pp)->hnext;
	*pp = st->hnext;
	st->hnext = NULL;
	ks_now(&eng->names_changed);
}

static void table_insert(struct ks_engine *eng, struct ks_state *st)
{
	struct ks_state **b;

	ks_rwlock_assert_held_exclusive(&eng->table_lock);
	b = bucket_of(eng, st->name);
	st->hnext = *b;
	*b = st;
	ks_now(&eng->names_changed);
}

/* Doubles the buckets when the load passes 1; a failed allocation only
 * costs speed. */
static void table_grow(struct ks_engine *eng)
{
	size_t n = eng->nbuckets * 2;
	struct ks_state **nb;

	ks_rwlock_assert_held_exclusive(&eng->table_lock);
	if (eng->nstates < eng->nbuckets)
		return;
	nb = calloc(n, sizeof(*nb));
	if (!nb)
		return;
	for (size_t i = 0; i < eng->nbuckets; i++) {
		struct ks_state *st = eng->buckets[i], *next;

		for (; st; st = next) {
			struct ks_state **b = &nb[name_hash(st->name) & (n - 1)];

			next = st->hnext;
			st->hnext = *b;
			*b = st;
		}
	}
	free(eng->buckets);
	eng->buckets = nb;
	eng->nbuckets = n;
}

/* ---- states ------------------------------------------------------------- */

static struct ks_state *state_new(struct ks_engine *eng, uint64_t id,
				  const char *name,
				  const struct ks_state_attr *attr)
{
	struct ks_state *st = calloc(1, sizeof(*st));
	struct timespec now;

	if (!st)
		return NULL;
	ks_now(&now);
	st->current = ks_page_new(NULL, 0, 0, &now);
	if (!st->current) {
		free(st);
		return NULL;
	}
	atomic_init(&st->refs, 1);
	st->eng = eng;
	st->id = id;
	strcpy(st->name, name);
	st->attr = *attr;
	st->attr.mode &= 07777;
	ks_lock_init(&st->lock, "state->lock", KS_RANK_STATE);
	ks_lock_init(&st->commit_lock, "state->commit_lock",
		     KS_RANK_COMMIT);
	return st;
}

/* limited: max_states applies (creations here and states loaded from the
 * store); a state another host made exists in the namespace all hosts
 * share whatever this host's limit, and is taken. */
static int table_create(struct ks_engine *eng, uint64_t id, const char *name,
			const struct ks_state_attr *attr, bool append,
			bool limited, struct ks_state **out)
{
	struct ks_state *st;
	struct ks_rec rec;
	int err = ks_name_check(name);

	if (err)
		return err;
	ks_wrlock(&eng->table_lock);
	if (!id)
		id = eng->next_id;
	if (table_find(eng, name)) {
		err = EEXIST;
		goto out;
	}
	if (limited && eng->nstates >= eng->cfg.max_states) {
		err = ENOSPC;
		goto out;
	}
	st = state_new(eng, id, name, attr);
	if (!st) {
		err = ENOMEM;
		goto out;
	}
	if (append) {
		rec = (struct ks_rec){ .type = KS_REC_CREATE, .state_id = id,
				       .name = name, .uid = attr->uid,
				       .gid = attr->gid,
				       .mode = st->attr.mode,
				       .time = attr->ctime };
		err = ks_store_append(eng->store, &rec, 1);
		if (err) {
			state_free(st);
			goto out;
		}
	}
	if (id >= eng->next_id)
		eng->next_id = id + 1;
	table_insert(eng, st);
	eng->nstates++;
	/* Before anyone can find the state, so before its first commit. */
	if (eng->mirror)
		mirror_attach(eng, st);
	emit_named(eng, "create", name);
	table_grow(eng);
	if (out)
		*out = ks_state_ref(st);
out:
	ks_rwunlock(&eng->table_lock);
	return err;
}

int ks_table_create(struct ks_engine *eng, uint64_t id, const char *name,
		    const struct ks_state_attr *attr, bool append,
		    struct ks_state **out)
{
	return table_create(eng, id, name, attr, append, true, out);
}

int ks_table_create_remote(struct ks_engine *eng, uint64_t id,
			   const char *name, const struct ks_state_attr *attr,
			   struct ks_state **out)
{
	return table_create(eng, id, name, attr, false, false, out);
}

int ks_state_create(struct ks_engine *eng, const char *name,
		    const struct ks_state_attr *attr, struct ks_state **out)
{
	return ks_table_create(eng, 0, name, attr, true, out);
}

int ks_state_lookup(struct ks_engine *eng, const char *name,
		    struct ks_state **out)
{
	struct ks_state *st;

	ks_rdlock(&eng->table_lock);
	st = table_find(eng, name);
	if (st)
		*out = ks_state_ref(st);
	ks_rwunlock(&eng->table_lock);
	return st ? 0 : ENOENT;
}

struct ks_state *ks_table_find_id(struct ks_engine *eng, uint64_t id)
{
	struct ks_state *st;

	ks_rdlock(&eng->table_lock);
	st = ks_table_find_id_locked(eng, id);
	if (st)
		ks_state_ref(st);
	ks_rwunlock(&eng->table_lock);
	return st;
}


int ks_table_delete(struct ks_engine *eng, struct ks_state *st,
		    const char *expect, bool force, bool append)
{
	char name[KS_NAME_MAX + 1];
	struct ks_rec rec;
	void *mirror;
	int err = 0;

	ks_wrlock(&eng->table_lock);
	/* The commit lock keeps commits out, and `deleted`, set in the same
	 * hold as the checks, keeps new files and transactions out while
	 * the store makes the deletion durable. */
	ks_lock(&st->commit_lock);
	ks_lock(&st->lock);
	if (st->deleted || (expect && strcmp(st->name, expect) != 0))
		err = ENOENT;
	else if (force)
		drop_txns_locked(st);
	else if (st->ntxns)
		err = ENOTEMPTY;
	else if (st->open_files)
		err = EBUSY;
	if (!err)
		st->deleted = true;
	strcpy(name, st->name);
	ks_unlock(&st->lock);
	if (!err && append) {
		rec = (struct ks_rec){ .type = KS_REC_DELETE,
				       .state_id = st->id, .name = name };
		err = ks_store_append(eng->store, &rec, 1);
		if (err) {
			ks_lock(&st->lock);
			st->deleted = false;
			ks_unlock(&st->lock);
		}
	}
	ks_unlock(&st->commit_lock);
	if (err)
		goto out;
	table_remove(eng, st);
	eng->nstates--;
	emit_named(eng, "delete", name);
	ks_lock(&st->lock);
	atomic_fetch_sub(&eng->bytes, st->current->len);
	mirror = st->mirror;
	st->mirror = NULL;
	ks_unlock(&st->lock);
	/* Before the delete returns: a reader who starts after it finds
	 * the mirror gone, as it finds the state gone. */
	if (mirror)
		eng->mirror->gone(mirror);
	ks_state_unref(st); /* the table's reference */
out:
	ks_rwunlock(&eng->table_lock);
	return err;
}

int ks_state_delete(struct ks_engine *eng, const char *name)
{
	struct ks_state *st;
	int err = ks_state_lookup(eng, name, &st);

	if (err)
		return err;
	err = ks_table_delete(eng, st, name, false, true);
	ks_state_unref(st);
	return err;
}

int ks_table_rename(struct ks_engine *eng, struct ks_state *st,
		    const char *expect, const char *newname,
		    const struct timespec *when, bool append)
{
	char oldname[KS_NAME_MAX + 1];
	struct ks_rec rec;
	int err = ks_name_check(newname);

	if (err)
		return err;
	ks_wrlock(&eng->table_lock);
	/* The commit lock too: a state's records reach the store in the
	 * order they take effect, and a commit names the state as the store
	 * knows it. */
	ks_lock(&st->commit_lock);
	ks_lock(&st->lock);
	strcpy(oldname, st->name);
	if (st->deleted || (expect && strcmp(oldname, expect) != 0))
		err = ENOENT;
	ks_unlock(&st->lock);
	if (err || strcmp(oldname, newname) == 0)
		goto out;
	if (table_find(eng, newname)) {
		err = EEXIST;
		goto out;
	}
	/* The old name, version and owner: a store that moves the state's
	 * keys (etcd) compares what it moves with what this host holds.
	 * They cannot change under the commit lock. */
	ks_lock(&st->lock);
	rec = (struct ks_rec){ .type = KS_REC_RENAME, .state_id = st->id,
			       .name = newname, .old_name = oldname,
			       .time = *when,
			       .version = st->current->version,
			       .uid = st->attr.uid, .gid = st->attr.gid,
			       .mode = st->attr.mode };
	ks_unlock(&st->lock);
	if (append) {
		err = ks_store_append(eng->store, &rec, 1);
		if (err)
			goto out;
	}
	table_remove(eng, st);
	ks_lock(&st->lock);
	strcpy(st->name, newname);
	st->attr.ctime = rec.time;
	ks_unlock(&st->lock);
	table_insert(eng, st);
	/* .events knows creations and deletions only (SPEC 6): a rename is
	 * the old name going and the new one coming, consecutively. */
	{
		char gone[KS_EVENT_LINE_MAX], came[KS_EVENT_LINE_MAX];
		const char *lines[2] = { gone, came };

		ks_event_name_line(gone, sizeof(gone), "delete", oldname);
		ks_event_name_line(came, sizeof(came), "create", newname);
		ks_events_append(&eng->events, lines, NULL, 2);
	}
out:
	ks_unlock(&st->commit_lock);
	ks_rwunlock(&eng->table_lock);
	return err;
}

static double mono_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A pause before the next try of a refused rename: 1 ms doubling to
 * 50 ms, each between half and all of that at random, so that a try
 * falls between two commits of a host that commits without pause. */
static void rename_pause(int tries, unsigned *seed)
{
	long max_ns = 1000000L << (tries < 6 ? tries : 6);
	struct timespec ts = { 0, 0 };

	if (max_ns > 50000000L)
		max_ns = 50000000L;
	ts.tv_nsec = max_ns / 2 + (long)(rand_r(seed) % (max_ns / 2 + 1));
	nanosleep(&ts, NULL);
}

int ks_state_rename(struct ks_engine *eng, const char *oldname,
		    const char *newname)
{
	struct ks_state *st;
	struct timespec now;
	double until;
	unsigned seed;
	int err = ks_name_check(newname);

	if (err)
		return err;
	err = ks_state_lookup(eng, oldname, &st);
	if (err)
		return err;
	ks_now(&now);
	seed = (unsigned)now.tv_nsec ^ (unsigned)st->id;
	until = mono_seconds() + KS_RENAME_SECONDS;
	for (int tries = 0;; tries++) {
		err = ks_table_rename(eng, st, oldname, newname, &now, true);
		if (err != EAGAIN)
			break;
		if (tries == KS_RENAME_TRIES || mono_seconds() >= until) {
			err = ETIMEDOUT;
			break;
		}
		rename_pause(tries, &seed);
		ks_now(&now);
	}
	ks_state_unref(st);
	return err;
}

struct ks_state *ks_state_ref(struct ks_state *st)
{
	atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed);
	return st;
}

void ks_state_unref(struct ks_state *st)
{
	if (st && atomic_fetch_sub_explicit(&st->refs, 1,
					    memory_order_acq_rel) == 1)
		state_free(st);
}

uint64_t ks_state_id(const struct ks_state *st)
{
	return st->id;
}

bool ks_state_name(struct ks_state *st, char *buf)
{
	bool alive;

	ks_lock(&st->lock);
	alive = !st->deleted;
	strcpy(buf, st->name);
	ks_unlock(&st->lock);
	return alive;
}

bool ks_state_deleted(struct ks_state *st)
{
	bool deleted;

	ks_lock(&st->lock);
	deleted = st->deleted;
	ks_unlock(&st->lock);
	return deleted;
}

void ks_state_get_attr(struct ks_state *st, struct ks_state_attr *out)
{
	ks_lock(&st->lock);
	*out = st->attr;
	ks_unlock(&st->lock);
}

struct timespec ks_state_txns_changed(struct ks_state *st)
{
	struct timespec t;

	ks_lock(&st->lock);
	t = st->txns_changed;
	ks_unlock(&st->lock);
	return t;
}

int ks_attr_set(struct ks_state *st, const struct ks_state_attr *attr,
		bool append)
{
	char name[KS_NAME_MAX + 1];
	struct ks_rec rec = { .type = KS_REC_ATTR, .state_id = st->id,
			      .name = name, .uid = attr->uid,
			      .gid = attr->gid, .mode = attr->mode & 07777,
			      .time = attr->ctime };
	void *mirror;
	int err;

	/* The commit lock orders this against commits in the store. */
	ks_lock(&st->commit_lock);
	if (!ks_state_name(st, name)) {
		err = ENOENT;
	} else {
		err = append ? ks_store_append(st->eng->store, &rec, 1) : 0;
		if (!err) {
			ks_lock(&st->lock);
			st->attr = *attr;
			st->attr.mode &= 07777;
			mirror = st->mirror;
			ks_unlock(&st->lock);
			/* Under the commit lock, which a delete needs too:
			 * the mirror is still there, and changes of one
			 * state's owner reach it in order. */
			if (mirror)
				st->eng->mirror->attr(mirror, &st->attr);
		}
	}
	ks_unlock(&st->commit_lock);
	return err;
}

int ks_state_set_attr(struct ks_state *st, const struct ks_state_attr *attr)
{
	return ks_attr_set(st, attr, true);
}

struct ks_page *ks_state_current(struct ks_state *st)
{
	struct ks_page *page;

	ks_lock(&st->lock);
	page = ks_page_ref(st->current);
	ks_unlock(&st->lock);
	return page;
}

uint64_t ks_state_version(struct ks_state *st)
{
	uint64_t v;

	ks_lock(&st->lock);
	v = st->current->version;
	ks_unlock(&st->lock);
	return v;
}

int ks_state_open_file(struct ks_state *st)
{
	int err = 0;

	ks_lock(&st->lock);
	if (st->deleted)
		err = ENOENT;
	else
		st->open_files++;
	ks_unlock(&st->lock);
	return err;
}

void ks_state_close_file(struct ks_state *st)
{
	ks_lock(&st->lock);
	st->open_files--;
	ks_unlock(&st->lock);
}

void ks_state_install(struct ks_state *st, struct ks_page *page)
{
	struct ks_engine *eng = st->eng;
	struct ks_page *old;

	ks_lock_assert_held(&st->commit_lock);
	ks_lock(&st->lock);
	old = st->current;
	st->current = page;
	if (st->mirror)
		eng->mirror->page(st->mirror, page);
	if (!st->deleted) {
		atomic_fetch_add(&eng->bytes, page->len);
		atomic_fetch_sub(&eng->bytes, old->len);
	}
	ks_unlock(&st->lock);
	atomic_fetch_add_explicit(&eng->commits, 1, memory_order_relaxed);
	ks_page_unref(old);
}

struct bytes_commit {
	const void *bytes;
	size_t len;
};

static int prepare_bytes(void *arg, struct ks_commit_member *m, size_t n,
			 const struct timespec *now)
{
	struct bytes_commit *bc = arg;

	ks_lock_assert_held(&m->st->commit_lock);
	if (m->deleted)
		return ENOENT;
	m->version = m->cur->version + 1;
	m->page = ks_page_new(bc->bytes, bc->len, m->version, now);
	return m->page ? 0 : ENOMEM;
}

int ks_state_commit_bytes(struct ks_state *st, const void *bytes, size_t len,
			  uint64_t *version)
{
	struct bytes_commit bc = { .bytes = bytes, .len = len };
	struct ks_commit_member m = { .st = st };
	struct ks_commit c = { .kind = KS_COMMIT_BLIND, .m = &m, .n = 1,
			       .prepare = prepare_bytes, .arg = &bc };
	int err;

	if (len > st->eng->cfg.max_size)
		return EFBIG;
	err = ks_commit_run(st->eng, &c);
	if (!err && version)
		*version = m.version;
	return err;
}
