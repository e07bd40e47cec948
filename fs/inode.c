/*
 * The inode table.  Only this file touches the table's maps.
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>

#include "views.h"

static void inode_free(struct ks_daemon *d, struct ks_inode *in)
{
	ks_txn_unref(in->txn);
	if (in->multi)
		ks_multi_unref(in->multi);
	if (in->view)
		view_unref(d, in->view);
	ks_state_unref(in->st);
	free(in);
}

static bool is_permanent(const struct ks_inode *in)
{
	return kind_of(in->role)->root_ino != 0;
}

/* The root and its own entries, which live as long as the daemon. */
static int add_root(struct ks_inode_table *t)
{
	for (int role = 0; role < ROLE_COUNT; role++) {
		struct ks_inode *in;

		if (!kind_of(role)->root_ino)
			continue;
		in = calloc(1, sizeof(*in));
		if (!in)
			return ENOMEM;
		in->ino = kind_of(role)->root_ino;
		in->role = role;
		if (u64map_put(&t->by_ino, in->ino, in)) {
			free(in);
			return ENOMEM;
		}
	}
	return 0;
}

int inode_table_init(struct ks_daemon *d)
{
	struct ks_inode_table *t = &d->inodes;

	ks_lock_init(&t->lock, "inode_lock", KS_RANK_FS_INODES);
	u64map_init(&t->by_ino);
	u64map_init(&t->data_ino);
	t->next_ino = INO_TXN_BASE;
	return add_root(t);
}

void inode_table_free(struct ks_daemon *d)
{
	struct ks_inode_table *t = &d->inodes;
	struct u64map_iter it;
	void *in;

	u64map_iter_init(&it, &t->by_ino);
	while (u64map_next(&it, NULL, &in))
		inode_free(d, in);
	u64map_free(&t->by_ino);
	u64map_free(&t->data_ino);
	ks_lock_destroy(&t->lock);
}

uint64_t inode_state_ino(const struct ks_state *st, enum ks_role role)
{
	return ks_state_id(st) * INO_PER_STATE + (uint64_t)role;
}

uint64_t inode_data_ino(struct ks_daemon *d, struct ks_state *st)
{
	struct ks_inode_table *t = &d->inodes;
	uint64_t ino;
	void *v;

	ks_lock(&t->lock);
	v = u64map_get(&t->data_ino, ks_state_id(st));
	ino = v ? (uint64_t)(uintptr_t)v : inode_state_ino(st, ROLE_DATA);
	ks_unlock(&t->lock);
	return ino;
}

struct ks_inode *inode_get(struct ks_daemon *d, uint64_t ino)
{
	struct ks_inode_table *t = &d->inodes;
	struct ks_inode *in;

	ks_lock(&t->lock);
	in = u64map_get(&t->by_ino, ino);
	if (in)
		in->refs++;
	ks_unlock(&t->lock);
	return in;
}

/* Called with inode_lock held; returns the inode to free, if any. */
static struct ks_inode *release_locked(struct ks_inode_table *t,
				       struct ks_inode *in)
{
	ks_lock_assert_held(&t->lock);
	if (in->refs || in->nlookup || is_permanent(in))
		return NULL;
	u64map_del(&t->by_ino, in->ino);
	if (in->txn && ks_txn_tag(in->txn) == in->ino)
		ks_txn_set_tag(in->txn, 0);
	return in;
}

void inode_put(struct ks_daemon *d, struct ks_inode *in)
{
	struct ks_inode_table *t = &d->inodes;
	struct ks_inode *dead;

	if (!in)
		return;
	ks_lock(&t->lock);
	in->refs--;
	dead = release_locked(t, in);
	ks_unlock(&t->lock);
	if (dead)
		inode_free(d, dead);
}

void inode_forget(struct ks_daemon *d, uint64_t ino, uint64_t nlookup)
{
	struct ks_inode_table *t = &d->inodes;
	struct ks_inode *in, *dead = NULL;

	ks_lock(&t->lock);
	in = u64map_get(&t->by_ino, ino);
	if (in) {
		in->nlookup = nlookup < in->nlookup ? in->nlookup - nlookup : 0;
		dead = release_locked(t, in);
	}
	ks_unlock(&t->lock);
	if (dead)
		inode_free(d, dead);
}

/* Finds ino or inserts a new inode made by the caller's template, and
 * counts a kernel lookup and a reference of ours; inode_lock held. */
static struct ks_inode *lookup_or_insert_locked(struct ks_inode_table *t,
						uint64_t ino,
						const struct ks_inode *tmpl)
{
	struct ks_inode *in;

	ks_lock_assert_held(&t->lock);
	in = u64map_get(&t->by_ino, ino);
	if (!in) {
		in = malloc(sizeof(*in));
		if (!in)
			return NULL;
		*in = *tmpl;
		in->ino = ino;
		in->nlookup = 0;
		in->refs = 0;
		if (u64map_put(&t->by_ino, ino, in)) {
			free(in);
			return NULL;
		}
		/* None of these takes inode_lock. */
		if (in->st)
			ks_state_ref(in->st);
		if (in->txn)
			ks_txn_ref(in->txn);
		if (in->multi)
			ks_multi_ref(in->multi);
		if (in->view)
			view_ref(in->view);
	}
	in->nlookup++;
	in->refs++;
	return in;
}

struct ks_inode *inode_new(struct ks_daemon *d, uint64_t ino,
			   const struct ks_inode *tmpl)
{
	struct ks_inode_table *t = &d->inodes;
	struct ks_inode *in;

	ks_lock(&t->lock);
	in = lookup_or_insert_locked(t, ino, tmpl);
	ks_unlock(&t->lock);
	return in;
}

uint64_t inode_alloc_ino(struct ks_daemon *d, unsigned count)
{
	struct ks_inode_table *t = &d->inodes;
	uint64_t ino;

	ks_lock(&t->lock);
	ino = t->next_ino;
	t->next_ino += count;
	ks_unlock(&t->lock);
	return ino;
}

struct ks_inode *inode_lookup_state(struct ks_daemon *d, struct ks_state *st,
				    enum ks_role role)
{
	struct ks_inode tmpl = { .role = role, .st = st };
	uint64_t ino = role == ROLE_DATA ? inode_data_ino(d, st)
					 : inode_state_ino(st, role);

	return inode_new(d, ino, &tmpl);
}

struct ks_inode *inode_lookup_txn(struct ks_daemon *d, struct ks_txn *txn,
				  uid_t uid, gid_t gid, mode_t mode)
{
	struct ks_inode_table *t = &d->inodes;
	struct ks_inode tmpl = { .role = ROLE_TXN, .st = ks_txn_state(txn),
				 .txn = txn, .uid = uid, .gid = gid,
				 .mode = mode };
	struct ks_inode *in;
	uint64_t ino;

	/* The tag and the table change together: a forget in between
	 * would leave a transaction with an inode it does not know. */
	ks_lock(&t->lock);
	ino = ks_txn_tag(txn);
	if (!ino)
		ino = t->next_ino++;
	in = lookup_or_insert_locked(t, ino, &tmpl);
	if (in)
		ks_txn_set_tag(txn, ino);
	ks_unlock(&t->lock);
	return in;
}

struct ks_inode *inode_lookup_multi(struct ks_daemon *d, struct ks_multi *m)
{
	struct ks_inode_table *t = &d->inodes;
	struct ks_inode tmpl = { .role = ROLE_MULTI, .multi = m };
	struct ks_inode *in;
	uint64_t ino;

	ks_lock(&t->lock);
	ino = ks_multi_tag(m);
	if (!ino)
		ino = t->next_ino++;
	in = lookup_or_insert_locked(t, ino, &tmpl);
	if (in)
		ks_multi_set_tag(m, ino);
	ks_unlock(&t->lock);
	return in;
}

void inode_become_data(struct ks_daemon *d, struct ks_inode *in)
{
	struct ks_inode_table *t = &d->inodes;

	ks_lock(&t->lock);
	/* The transaction stays referenced until the inode is freed: a
	 * request that saw the old role may still be using it. */
	in->role = ROLE_DATA;
	if (in->txn && ks_txn_tag(in->txn) == in->ino)
		ks_txn_set_tag(in->txn, 0);
	/* If this allocation fails, lookups keep answering with the old
	 * data inode; both serve the same state, so nothing is lost. */
	(void)u64map_put(&t->data_ino, ks_state_id(in->st),
			 (void *)(uintptr_t)in->ino);
	ks_unlock(&t->lock);
}

void inode_state_deleted(struct ks_daemon *d, uint64_t id)
{
	struct ks_inode_table *t = &d->inodes;

	ks_lock(&t->lock);
	u64map_del(&t->data_ino, id);
	ks_unlock(&t->lock);
}

/* Tells the kernel to forget the attributes of these inodes. */
static void invalidate_attrs(struct ks_daemon *d, const uint64_t *inos,
			     size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct ks_inode *in = inode_get(d, inos[i]);

		/* Only inodes the kernel knows can be cached there. */
		if (!in)
			continue;
		if (in->nlookup)
			fuse_lowlevel_notify_inval_inode(d->se, inos[i], -1, 0);
		inode_put(d, in);
	}
}

void inode_invalidate_state(struct ks_daemon *d, struct ks_state *st)
{
	uint64_t inos[2] = {
		inode_data_ino(d, st),
		inode_state_ino(st, ROLE_VERSION),
	};

	invalidate_attrs(d, inos, 2);
}

void inode_invalidate_owner(struct ks_daemon *d, struct ks_state *st)
{
	uint64_t inos[3] = {
		inode_data_ino(d, st),
		inode_state_ino(st, ROLE_VERSION),
		inode_state_ino(st, ROLE_EVERY),
	};

	invalidate_attrs(d, inos, 3);
}

void inode_invalidate_state_dir(struct ks_daemon *d, struct ks_state *st)
{
	uint64_t ino = inode_state_ino(st, ROLE_STATE);

	invalidate_attrs(d, &ino, 1);
}
