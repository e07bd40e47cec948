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

#define INITIAL_BUCKETS 64

void ks_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

int ks_store_append(struct ks_engine *eng, const struct ks_rec *recs,
		    size_t n)
{
	if (!eng->store)
		return 0;
	return eng->store->ops->append(eng->store, recs, n);
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

	if (len == 0 || name[0] == '.' || strchr(name, '/'))
		return EINVAL;
	if (len > KS_NAME_MAX)
		return ENAMETOOLONG;
	return 0;
}

int ks_engine_new(const struct ks_engine_config *cfg, struct ks_store *store,
		  struct ks_engine **out)
{
	struct ks_engine *eng = calloc(1, sizeof(*eng));

	if (!eng)
		return ENOMEM;
	eng->cfg = *cfg;
	eng->store = store;
	eng->nbuckets = INITIAL_BUCKETS;
	eng->buckets = calloc(eng->nbuckets, sizeof(*eng->buckets));
	if (!eng->buckets) {
		free(eng);
		return ENOMEM;
	}
	if (ks_events_init(&eng->events, KS_EVENTS_CAPACITY)) {
		free(eng->buckets);
		free(eng);
		return ENOMEM;
	}
	eng->next_id = 1;
	pthread_rwlock_init(&eng->table_lock, NULL);
	pthread_mutex_init(&eng->multi_lock, NULL);
	*out = eng;
	return 0;
}

static void state_free(struct ks_state *st)
{
	ks_page_unref(st->current);
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->commit_lock);
	free(st);
}

void ks_engine_free(struct ks_engine *eng)
{
	if (!eng)
		return;
	ks_multi_free_all(eng);
	pthread_mutex_destroy(&eng->multi_lock);
	for (size_t i = 0; i < eng->nbuckets; i++) {
		struct ks_state *st = eng->buckets[i], *next;

		for (; st; st = next) {
			next = st->hnext;
			/* Named transactions hold the state: drop them. */
			pthread_mutex_lock(&st->lock);
			while (st->txns) {
				struct ks_txn *t = st->txns;

				ks_txn_ref(t);
				ks_txn_unlink_locked(t);
				pthread_mutex_unlock(&st->lock);
				ks_txn_unref(t);
				pthread_mutex_lock(&st->lock);
			}
			st->deleted = true;
			pthread_mutex_unlock(&st->lock);
			ks_state_unref(st);
		}
	}
	free(eng->buckets);
	ks_events_destroy(&eng->events);
	pthread_rwlock_destroy(&eng->table_lock);
	free(eng);
}

struct ks_events *ks_engine_events(struct ks_engine *eng)
{
	return &eng->events;
}

void ks_emit(struct ks_engine *eng, const char *line)
{
	ks_events_append(&eng->events, &line, 1);
}

void ks_commit_line(struct ks_state *st, uint64_t v, char *buf, size_t len)
{
	pthread_mutex_lock(&st->lock);
	snprintf(buf, len, "commit %s %" PRIu64 "\n", st->name, v);
	pthread_mutex_unlock(&st->lock);
}

static void emit_named(struct ks_engine *eng, const char *what,
		       const char *name)
{
	char line[KS_NAME_MAX + 16];

	snprintf(line, sizeof(line), "%s %s\n", what, name);
	ks_emit(eng, line);
}

void ks_engine_set_listener(struct ks_engine *eng, ks_commit_listener fn,
			    void *arg)
{
	eng->listener = fn;
	eng->listener_arg = arg;
}

const struct ks_engine_config *ks_engine_config(const struct ks_engine *eng)
{
	return &eng->cfg;
}

void ks_engine_stats(struct ks_engine *eng, struct ks_engine_stats *out)
{
	pthread_rwlock_rdlock(&eng->table_lock);
	out->states = eng->nstates;
	pthread_rwlock_unlock(&eng->table_lock);
	out->txns = atomic_load_explicit(&eng->txns, memory_order_relaxed);
	pthread_mutex_lock(&eng->multi_lock);
	out->txns += eng->nmultis;
	pthread_mutex_unlock(&eng->multi_lock);
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

	pthread_rwlock_rdlock(&eng->table_lock);
	for (size_t i = 0; i < eng->nbuckets; i++)
		for (struct ks_state *st = eng->buckets[i]; st; st = st->hnext) {
			fn(arg, st);
			n++;
		}
	pthread_rwlock_unlock(&eng->table_lock);
	return n;
}

/* ---- the hash table, under table_lock ----------------------------------- */

static struct ks_state **bucket_of(struct ks_engine *eng, const char *name)
{
	return &eng->buckets[name_hash(name) & (eng->nbuckets - 1)];
}

static struct ks_state *table_find(struct ks_engine *eng, const char *name)
{
	for (struct ks_state *st = *bucket_of(eng, name); st; st = st->hnext)
		if (strcmp(st->name, name) == 0)
			return st;
	return NULL;
}

static void table_remove(struct ks_engine *eng, struct ks_state *st)
{
	struct ks_state **pp = bucket_of(eng, st->name);

	while (*pp != st)
		pp = &(*pp)->hnext;
	*pp = st->hnext;
	st->hnext = NULL;
}

static void table_insert(struct ks_engine *eng, struct ks_state *st)
{
	struct ks_state **b = bucket_of(eng, st->name);

	st->hnext = *b;
	*b = st;
}

/* Doubles the buckets when the load passes 1; a failed allocation only
 * costs speed. */
static void table_grow(struct ks_engine *eng)
{
	size_t n = eng->nbuckets * 2;
	struct ks_state **nb;

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
	pthread_mutex_init(&st->lock, NULL);
	pthread_mutex_init(&st->commit_lock, NULL);
	return st;
}

int ks_state_create(struct ks_engine *eng, const char *name,
		    const struct ks_state_attr *attr, struct ks_state **out)
{
	struct ks_state *st;
	struct ks_rec rec;
	int err = ks_name_check(name);

	if (err)
		return err;
	pthread_rwlock_wrlock(&eng->table_lock);
	if (table_find(eng, name)) {
		err = EEXIST;
		goto out;
	}
	if (eng->nstates >= eng->cfg.max_states) {
		err = ENOSPC;
		goto out;
	}
	st = state_new(eng, eng->next_id, name, attr);
	if (!st) {
		err = ENOMEM;
		goto out;
	}
	rec = (struct ks_rec){ .type = KS_REC_CREATE, .state_id = st->id,
			       .name = name, .uid = attr->uid,
			       .gid = attr->gid, .mode = st->attr.mode,
			       .time = attr->ctime };
	err = ks_store_append(eng, &rec, 1);
	if (err) {
		state_free(st);
		goto out;
	}
	eng->next_id++;
	table_insert(eng, st);
	eng->nstates++;
	emit_named(eng, "create", name);
	table_grow(eng);
	if (out)
		*out = ks_state_ref(st);
out:
	pthread_rwlock_unlock(&eng->table_lock);
	return err;
}

int ks_state_lookup(struct ks_engine *eng, const char *name,
		    struct ks_state **out)
{
	struct ks_state *st;

	pthread_rwlock_rdlock(&eng->table_lock);
	st = table_find(eng, name);
	if (st)
		*out = ks_state_ref(st);
	pthread_rwlock_unlock(&eng->table_lock);
	return st ? 0 : ENOENT;
}

int ks_state_delete(struct ks_engine *eng, const char *name)
{
	struct ks_state *st;
	struct ks_rec rec;
	int err = 0;

	pthread_rwlock_wrlock(&eng->table_lock);
	st = table_find(eng, name);
	if (!st) {
		err = ENOENT;
		goto out;
	}
	/* The commit lock keeps commits out, and `deleted`, set in the same
	 * hold as the checks, keeps new files and transactions out while
	 * the store makes the deletion durable. */
	pthread_mutex_lock(&st->commit_lock);
	pthread_mutex_lock(&st->lock);
	if (st->ntxns)
		err = ENOTEMPTY;
	else if (st->open_files)
		err = EBUSY;
	else
		st->deleted = true;
	pthread_mutex_unlock(&st->lock);
	if (!err) {
		rec = (struct ks_rec){ .type = KS_REC_DELETE,
				       .state_id = st->id };
		err = ks_store_append(eng, &rec, 1);
		if (err) {
			pthread_mutex_lock(&st->lock);
			st->deleted = false;
			pthread_mutex_unlock(&st->lock);
		}
	}
	pthread_mutex_unlock(&st->commit_lock);
	if (err)
		goto out;
	table_remove(eng, st);
	eng->nstates--;
	emit_named(eng, "delete", name);
	pthread_mutex_lock(&st->lock);
	atomic_fetch_sub(&eng->bytes, st->current->len);
	pthread_mutex_unlock(&st->lock);
	ks_state_unref(st);
out:
	pthread_rwlock_unlock(&eng->table_lock);
	return err;
}

int ks_state_rename(struct ks_engine *eng, const char *oldname,
		    const char *newname)
{
	struct ks_state *st;
	struct ks_rec rec;
	int err = ks_name_check(newname);

	if (err)
		return err;
	pthread_rwlock_wrlock(&eng->table_lock);
	st = table_find(eng, oldname);
	if (!st) {
		err = ENOENT;
		goto out;
	}
	if (strcmp(oldname, newname) == 0)
		goto out;
	if (table_find(eng, newname)) {
		err = EEXIST;
		goto out;
	}
	rec = (struct ks_rec){ .type = KS_REC_RENAME, .state_id = st->id,
			       .name = newname };
	ks_now(&rec.time);
	err = ks_store_append(eng, &rec, 1);
	if (err)
		goto out;
	table_remove(eng, st);
	pthread_mutex_lock(&st->lock);
	strcpy(st->name, newname);
	st->attr.ctime = rec.time;
	pthread_mutex_unlock(&st->lock);
	table_insert(eng, st);
	/* .events knows creations and deletions only (SPEC 6): a rename is
	 * the old name going and the new one coming, consecutively. */
	{
		char gone[KS_NAME_MAX + 16], came[KS_NAME_MAX + 16];
		const char *lines[2] = { gone, came };

		snprintf(gone, sizeof(gone), "delete %s\n", oldname);
		snprintf(came, sizeof(came), "create %s\n", newname);
		ks_events_append(&eng->events, lines, 2);
	}
out:
	pthread_rwlock_unlock(&eng->table_lock);
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

	pthread_mutex_lock(&st->lock);
	alive = !st->deleted;
	strcpy(buf, st->name);
	pthread_mutex_unlock(&st->lock);
	return alive;
}

bool ks_state_deleted(struct ks_state *st)
{
	bool deleted;

	pthread_mutex_lock(&st->lock);
	deleted = st->deleted;
	pthread_mutex_unlock(&st->lock);
	return deleted;
}

void ks_state_get_attr(struct ks_state *st, struct ks_state_attr *out)
{
	pthread_mutex_lock(&st->lock);
	*out = st->attr;
	pthread_mutex_unlock(&st->lock);
}

int ks_state_set_attr(struct ks_state *st, const struct ks_state_attr *attr)
{
	struct ks_rec rec = { .type = KS_REC_ATTR, .state_id = st->id,
			      .uid = attr->uid, .gid = attr->gid,
			      .mode = attr->mode & 07777,
			      .time = attr->ctime };
	int err;

	/* The commit lock orders this against commits in the store. */
	pthread_mutex_lock(&st->commit_lock);
	if (ks_state_deleted(st)) {
		err = ENOENT;
	} else {
		err = ks_store_append(st->eng, &rec, 1);
		if (!err) {
			pthread_mutex_lock(&st->lock);
			st->attr = *attr;
			st->attr.mode &= 07777;
			pthread_mutex_unlock(&st->lock);
		}
	}
	pthread_mutex_unlock(&st->commit_lock);
	return err;
}

struct ks_page *ks_state_current(struct ks_state *st)
{
	struct ks_page *page;

	pthread_mutex_lock(&st->lock);
	page = ks_page_ref(st->current);
	pthread_mutex_unlock(&st->lock);
	return page;
}

uint64_t ks_state_version(struct ks_state *st)
{
	uint64_t v;

	pthread_mutex_lock(&st->lock);
	v = st->current->version;
	pthread_mutex_unlock(&st->lock);
	return v;
}

int ks_state_open_file(struct ks_state *st)
{
	int err = 0;

	pthread_mutex_lock(&st->lock);
	if (st->deleted)
		err = ENOENT;
	else
		st->open_files++;
	pthread_mutex_unlock(&st->lock);
	return err;
}

void ks_state_close_file(struct ks_state *st)
{
	pthread_mutex_lock(&st->lock);
	st->open_files--;
	pthread_mutex_unlock(&st->lock);
}

void ks_state_install(struct ks_state *st, struct ks_page *page)
{
	struct ks_engine *eng = st->eng;
	struct ks_page *old;

	pthread_mutex_lock(&st->lock);
	old = st->current;
	st->current = page;
	if (!st->deleted) {
		atomic_fetch_add(&eng->bytes, page->len);
		atomic_fetch_sub(&eng->bytes, old->len);
	}
	pthread_mutex_unlock(&st->lock);
	atomic_fetch_add_explicit(&eng->commits, 1, memory_order_relaxed);
	ks_page_unref(old);
}

int ks_state_commit_bytes(struct ks_state *st, const void *bytes, size_t len,
			  uint64_t *version)
{
	struct ks_engine *eng = st->eng;
	struct ks_page *page;
	struct timespec now;
	struct ks_rec rec;
	uint64_t v;
	int err;

	if (len > eng->cfg.max_size)
		return EFBIG;
	pthread_mutex_lock(&st->commit_lock);
	if (ks_state_deleted(st)) {
		err = ENOENT;
		goto out;
	}
	v = ks_state_version(st) + 1;
	ks_now(&now);
	page = ks_page_new(bytes, len, v, &now);
	if (!page) {
		err = ENOMEM;
		goto out;
	}
	rec = (struct ks_rec){ .type = KS_REC_COMMIT, .state_id = st->id,
			       .version = v, .bytes = page->bytes,
			       .len = len, .time = now };
	err = ks_store_append(eng, &rec, 1);
	if (err) {
		ks_page_unref(page);
		goto out;
	}
	ks_state_install(st, page);
	{
		char line[KS_NAME_MAX + 48];

		ks_commit_line(st, v, line, sizeof(line));
		ks_emit(eng, line);
	}
	if (version)
		*version = v;
out:
	pthread_mutex_unlock(&st->commit_lock);
	if (!err && eng->listener)
		eng->listener(eng->listener_arg, st, v);
	return err;
}
