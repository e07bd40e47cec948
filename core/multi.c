/*
 * Transactions over several states (.txn/T).  Each member is an ordinary
 * conflict-checked transaction on one state, begun when the state joins.
 *
 * Every T is a snapshot: mkdir pins every state's current page at one
 * instant (ks_engine_pin_all, under the engine's snap_lock, which every
 * commit holds while it installs its pages), and a state that joins later
 * starts from its pinned page, not from its page at the time of joining.
 * Pages are immutable and reference-counted, so pinning copies nothing:
 * a snapshot costs a reference per state, and keeps alive only the
 * versions that were current at its instant and have been replaced since
 * (at most one per state), for as long as T exists.  A T that writes
 * nothing commits without validation and without taking a commit lock:
 * its reads were one instant's, so it never fails and never waits for a
 * writer.  A T that writes is validated as before, against the pinned
 * versions.
 *
 * The commit (through commit.c) locks every member in ascending state id
 * order, so that two commits over overlapping sets can never wait on each
 * other in a circle, validates every member (written or only read), and
 * applies the written ones as one store unit and one run of consecutive
 * events.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct member {
	struct ks_state *st;
	struct ks_txn *txn;
};

struct ks_multi {
	atomic_uint refs;
	struct ks_engine *eng;
	struct ks_multi *next;       /* in eng->multis, under multi_lock */
	char *name;
	atomic_bool gone;            /* removed or committed */
	atomic_uint_fast64_t tag;    /* the daemon's inode number */
	struct ks_lock lock;        /* members */
	struct member *members;
	size_t n, cap;
	struct timespec ctime;
	/* The snapshot: every state's page at mkdir, by state id.  Fixed
	 * once made; dropped (under lock) when T is committed or removed. */
	struct ks_pin *pins;
	size_t npins;
	/* Its creator, for the daemon: root's and closed (0700) until it
	 * says otherwise, so a T is never briefly open to everyone. */
	atomic_uint uid, gid, perm;
};

static void unpin(struct ks_pin *pins, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ks_page_unref(pins[i].page);
		ks_state_unref(pins[i].st);
	}
	free(pins);
}

struct ks_multi *ks_multi_ref(struct ks_multi *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

void ks_multi_unref(struct ks_multi *m)
{
	if (!m || atomic_fetch_sub_explicit(&m->refs, 1,
					    memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < m->n; i++) {
		ks_txn_unref(m->members[i].txn);
		ks_state_unref(m->members[i].st);
	}
	free(m->members);
	unpin(m->pins, m->npins);
	free(m->name);
	ks_lock_destroy(&m->lock);
	free(m);
}

static struct ks_multi *find_locked(struct ks_engine *eng, const char *name)
{
	ks_lock_assert_held(&eng->multi_lock);
	for (struct ks_multi *m = eng->multis; m; m = m->next)
		if (strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

int ks_multi_create(struct ks_engine *eng, const char *name,
		    struct ks_multi **out)
{
	struct ks_multi *m;
	int err = 0;

	err = ks_name_check(name);
	if (err)
		return err;
	m = calloc(1, sizeof(*m));
	if (!m || !(m->name = strdup(name))) {
		free(m);
		return ENOMEM;
	}
	atomic_init(&m->refs, 2); /* the table's and the caller's */
	atomic_init(&m->perm, 0700);
	m->eng = eng;
	ks_lock_init(&m->lock, "multi->lock", KS_RANK_MULTI);
	ks_now(&m->ctime);
	/* The instant of mkdir is the instant every member is read at. */
	err = ks_engine_pin_all(eng, &m->pins, &m->npins);
	if (err) {
		atomic_store(&m->refs, 1);
		ks_multi_unref(m);
		return err;
	}
	ks_lock(&eng->multi_lock);
	if (find_locked(eng, name))
		err = EEXIST;
	else if (eng->nmultis >= eng->cfg.max_txns)
		err = ENOSPC;
	if (!err) {
		m->next = eng->multis;
		eng->multis = m;
		eng->nmultis++;
	}
	ks_unlock(&eng->multi_lock);
	if (err) {
		atomic_store(&m->refs, 1);
		ks_multi_unref(m);
		return err;
	}
	*out = m;
	return 0;
}

int ks_multi_find(struct ks_engine *eng, const char *name,
		  struct ks_multi **out)
{
	struct ks_multi *m;

	ks_lock(&eng->multi_lock);
	m = find_locked(eng, name);
	if (m)
		*out = ks_multi_ref(m);
	ks_unlock(&eng->multi_lock);
	return m ? 0 : ENOENT;
}

/* Takes m out of the table (under multi_lock). */
static void unlist_locked(struct ks_engine *eng, struct ks_multi *m)
{
	struct ks_multi **pp = &eng->multis;
	struct ks_pin *pins;
	size_t npins;

	ks_lock_assert_held(&eng->multi_lock);
	while (*pp && *pp != m)
		pp = &(*pp)->next;
	if (!*pp)
		return;
	*pp = m->next;
	m->next = NULL;
	/* A finished T lets go of its versions now, not when the daemon
	 * forgets its inode. */
	ks_lock(&m->lock);
	atomic_store(&m->gone, true);
	pins = m->pins;
	npins = m->npins;
	m->pins = NULL;
	m->npins = 0;
	ks_unlock(&m->lock);
	unpin(pins, npins);
	eng->nmultis--;
	ks_multi_unref(m); /* the table's reference */
}

/* Takes m out if it is still listed and has no members but those of
 * deleted states (under multi_lock).  A deleted state's member is listed
 * nowhere and cannot be unjoined by name (the name may be another
 * state's by now), so it must not keep T from being aborted. */
static int remove_locked(struct ks_engine *eng, struct ks_multi *m)
{
	int err = 0;

	ks_lock_assert_held(&eng->multi_lock);
	if (!m || atomic_load(&m->gone))
		return ENOENT;
	ks_lock(&m->lock);
	for (size_t i = 0; i < m->n && !err; i++)
		if (!ks_state_deleted(m->members[i].st))
			err = ENOTEMPTY;
	ks_unlock(&m->lock);
	if (!err)
		unlist_locked(eng, m);
	return err;
}

int ks_multi_remove(struct ks_engine *eng, const char *name)
{
	int err;

	ks_lock(&eng->multi_lock);
	err = remove_locked(eng, find_locked(eng, name));
	ks_unlock(&eng->multi_lock);
	return err;
}

int ks_multi_abort(struct ks_multi *m)
{
	int err;

	ks_lock(&m->eng->multi_lock);
	err = remove_locked(m->eng, m);
	ks_unlock(&m->eng->multi_lock);
	return err;
}

/* At engine teardown. */
void ks_multi_free_all(struct ks_engine *eng)
{
	ks_lock(&eng->multi_lock);
	while (eng->multis)
		unlist_locked(eng, eng->multis);
	ks_unlock(&eng->multi_lock);
}

void ks_multi_set_tag(struct ks_multi *m, uint64_t tag)
{
	atomic_store(&m->tag, tag);
}

uint64_t ks_multi_tag(struct ks_multi *m)
{
	return atomic_load(&m->tag);
}

bool ks_multi_gone(struct ks_multi *m)
{
	return atomic_load(&m->gone);
}

uint32_t ks_multi_count(struct ks_engine *eng)
{
	uint32_t n;

	ks_lock(&eng->multi_lock);
	n = eng->nmultis;
	ks_unlock(&eng->multi_lock);
	return n;
}

void ks_multi_foreach(struct ks_engine *eng,
		      void (*fn)(void *arg, struct ks_multi *m,
				 const char *name),
		      void *arg)
{
	ks_lock(&eng->multi_lock);
	for (struct ks_multi *m = eng->multis; m; m = m->next)
		fn(arg, m, m->name);
	ks_unlock(&eng->multi_lock);
}

struct timespec ks_multi_ctime(const struct ks_multi *m)
{
	return m->ctime;
}

void ks_multi_set_owner(struct ks_multi *m, uid_t uid, gid_t gid, mode_t mode)
{
	atomic_store(&m->uid, uid);
	atomic_store(&m->gid, gid);
	atomic_store(&m->perm, mode & 07777);
}

void ks_multi_owner(struct ks_multi *m, uid_t *uid, gid_t *gid, mode_t *mode)
{
	*uid = atomic_load(&m->uid);
	*gid = atomic_load(&m->gid);
	*mode = atomic_load(&m->perm);
}

static struct member *member_of(struct ks_multi *m, struct ks_state *st)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->members[i].st == st)
			return &m->members[i];
	return NULL;
}

/* ST's pinned page in M's snapshot (m->lock held), or NULL: ST did not
 * exist at M's instant, or M is over. */
static struct ks_pin *pin_of(struct ks_multi *m, struct ks_state *st)
{
	size_t lo = 0, hi = m->npins;

	ks_lock_assert_held(&m->lock);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t id = m->pins[mid].st->id;

		if (id == st->id)
			return m->pins[mid].st == st ? &m->pins[mid] : NULL;
		if (id < st->id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct ks_page *ks_multi_snapshot_page(struct ks_multi *m, struct ks_state *st)
{
	struct ks_pin *pin;
	struct ks_page *page = NULL;

	ks_lock(&m->lock);
	pin = pin_of(m, st);
	if (pin)
		page = ks_page_ref(pin->page);
	ks_unlock(&m->lock);
	return page;
}

int ks_multi_member(struct ks_multi *m, struct ks_state *st,
		    struct ks_txn **out)
{
	struct member *mb;

	ks_lock(&m->lock);
	mb = member_of(m, st);
	if (mb)
		*out = ks_txn_ref(mb->txn);
	ks_unlock(&m->lock);
	return mb ? 0 : ENOENT;
}

int ks_multi_join(struct ks_multi *m, struct ks_state *st,
		  struct ks_txn **out)
{
	struct member *mb;
	struct ks_txn *txn;
	struct ks_pin *pin;
	int err = 0;

	ks_lock(&m->lock);
	if (atomic_load(&m->gone)) {
		err = ENOENT;
		goto out;
	}
	mb = member_of(m, st);
	if (mb) {
		*out = ks_txn_ref(mb->txn);
		goto out;
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 4;
		struct member *nm = realloc(m->members, cap * sizeof(*nm));

		if (!nm) {
			err = ENOMEM;
			goto out;
		}
		m->members = nm;
		m->cap = cap;
	}
	/* The base is the version at T's instant, whenever T reads it. */
	pin = pin_of(m, st);
	if (!pin) {
		err = ENOENT;
		goto out;
	}
	err = ks_txn_begin_at(st, pin->page, &txn);
	if (err)
		goto out;
	m->members[m->n].st = ks_state_ref(st);
	m->members[m->n].txn = txn;
	m->n++;
	*out = ks_txn_ref(txn);
out:
	ks_unlock(&m->lock);
	return err;
}

int ks_multi_leave(struct ks_multi *m, struct ks_state *st)
{
	struct member *mb, gone;

	ks_lock(&m->lock);
	mb = member_of(m, st);
	if (!mb) {
		ks_unlock(&m->lock);
		return ENOENT;
	}
	gone = *mb;
	*mb = m->members[--m->n];
	ks_unlock(&m->lock);
	ks_txn_unref(gone.txn);
	ks_state_unref(gone.st);
	return 0;
}

void ks_multi_foreach_member(struct ks_multi *m,
			     void (*fn)(void *arg, struct ks_state *st,
					struct ks_txn *txn),
			     void *arg)
{
	ks_lock(&m->lock);
	for (size_t i = 0; i < m->n; i++)
		fn(arg, m->members[i].st, m->members[i].txn);
	ks_unlock(&m->lock);
}

static int by_pointer(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(struct ks_page *const *)a;
	uintptr_t y = (uintptr_t)*(struct ks_page *const *)b;

	return x < y ? -1 : x > y;
}

static int by_state_id(const void *a, const void *b)
{
	uint64_t x = ((const struct ks_commit_member *)a)->st->id;
	uint64_t y = ((const struct ks_commit_member *)b)->st->id;

	return x < y ? -1 : x > y;
}

/* Validates every member and builds the pages of the written ones; every
 * commit lock and transaction lock held. */
static int prepare_multi(void *arg, struct ks_commit_member *mb, size_t n,
			 const struct timespec *now)
{
	for (size_t i = 0; i < n; i++) {
		struct ks_state *st = mb[i].st;
		struct ks_txn *txn = mb[i].txn;
		uint64_t base;

		ks_lock_assert_held(&st->commit_lock);
		ks_lock_assert_held(&txn->lock);
		if (mb[i].deleted)
			return ENOENT;
		/* A member a write to which failed: T commits nothing. */
		if (txn->error)
			return txn->error;
		ks_lock(&st->lock);
		base = txn->base_version;
		ks_unlock(&st->lock);
		if (mb[i].cur->version != base)
			return EAGAIN;
		if (!txn->written)
			continue;
		mb[i].version = mb[i].cur->version + 1;
		mb[i].page = ks_txn_build_page(txn, mb[i].cur, mb[i].version,
					       now);
		if (!mb[i].page)
			return ENOMEM;
		/* As for one state (txn.c): no commit makes a page larger
		 * than this mount's max_size. */
		if (mb[i].page->len > st->eng->cfg.max_size)
			return EFBIG;
	}
	return 0;
}

/* Each member goes on based on what it committed or validated, like a
 * single-state transaction. */
static void multi_applied(void *arg, struct ks_commit_member *mb, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ks_lock(&mb[i].st->lock);
		mb[i].txn->base_version = mb[i].version;
		ks_unlock(&mb[i].st->lock);
		ks_txn_rebase(mb[i].txn, mb[i].page ? mb[i].page : mb[i].cur);
	}
}

struct multi_commit {
	struct ks_multi *m;
	struct ks_commit_member *mb;
	size_t n;
};

static void multi_release(void *arg, int err)
{
	struct multi_commit *mc = arg;
	struct ks_multi *m = mc->m;

	for (size_t i = mc->n; i-- > 0;)
		ks_unlock(&mc->mb[i].txn->lock);
	ks_unlock(&m->lock);
	if (!err) {
		ks_lock(&m->eng->multi_lock);
		unlist_locked(m->eng, m);
		ks_unlock(&m->eng->multi_lock);
	}
}

/* Transaction locks held. */
static bool any_written(struct ks_commit_member *mb, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ks_lock_assert_held(&mb[i].txn->lock);
		if (mb[i].txn->written)
			return true;
	}
	return false;
}

void ks_engine_snapshot_stats(struct ks_engine *eng,
			      struct ks_snapshot_stats *out)
{
	struct ks_page **kept = NULL;
	size_t nkept = 0, cap = 0;

	memset(out, 0, sizeof(*out));
	out->commits = atomic_load_explicit(&eng->snapshots,
					    memory_order_relaxed);
	ks_lock(&eng->multi_lock);
	out->open = eng->nmultis;
	for (struct ks_multi *m = eng->multis; m; m = m->next) {
		ks_lock(&m->lock);
		for (size_t i = 0; i < m->npins; i++) {
			struct ks_pin *p = &m->pins[i];
			bool current;

			ks_lock(&p->st->lock);
			current = p->st->current == p->page && !p->st->deleted;
			ks_unlock(&p->st->lock);
			if (current)
				continue;
			if (nkept == cap) {
				size_t c = cap ? cap * 2 : 64;
				struct ks_page **k = realloc(kept,
							     c * sizeof(*k));

				if (!k)
					break;
				kept = k;
				cap = c;
			}
			kept[nkept++] = p->page;
		}
		ks_unlock(&m->lock);
	}
	ks_unlock(&eng->multi_lock);
	/* Several snapshots may hold one old version: count it once. */
	if (nkept)  /* qsort wants an array, even of nothing */
		qsort(kept, nkept, sizeof(*kept), by_pointer);
	for (size_t i = 0; i < nkept; i++) {
		if (i && kept[i] == kept[i - 1])
			continue;
		out->versions++;
		out->bytes += kept[i]->len;
	}
	free(kept);
}

int ks_multi_commit(struct ks_multi *m)
{
	struct ks_commit_member *mb;
	struct multi_commit mc = { .m = m };
	struct ks_commit c = { .kind = KS_COMMIT_CHECKED,
			       .prepare = prepare_multi,
			       .applied = multi_applied,
			       .release = multi_release, .arg = &mc };
	size_t n;

	ks_lock(&m->lock);
	if (atomic_load(&m->gone)) {
		ks_unlock(&m->lock);
		return ENOENT;
	}
	n = m->n;
	mb = calloc(n ? n : 1, sizeof(*mb));
	if (!mb) {
		ks_unlock(&m->lock);
		return ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		mb[i] = (struct ks_commit_member){ .st = m->members[i].st,
						   .txn = m->members[i].txn };
	/* Transaction locks, then commit locks, both in state id order, so
	 * two commits over overlapping sets never wait in a circle. */
	qsort(mb, n, sizeof(*mb), by_state_id);
	for (size_t i = 0; i < n; i++)
		ks_lock_nested(&mb[i].txn->lock, mb[i].st->id);
	if (!any_written(mb, n)) {
		/* A snapshot: every member was read at T's instant, which
		 * is all a read-only T asks for.  Nothing to validate, and
		 * no commit lock to wait for behind a writer's store. */
		mc.mb = mb;
		mc.n = n;
		multi_release(&mc, 0);
		free(mb);
		atomic_fetch_add_explicit(&m->eng->snapshots, 1,
					  memory_order_relaxed);
		return 0;
	}
	mc.mb = mb;
	mc.n = n;
	c.m = mb;
	c.n = n;
	{
		int err = ks_commit_run(m->eng, &c);

		free(mb);
		return err;
	}
}
