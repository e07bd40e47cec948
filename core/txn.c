/*
 * Transactions: a private page, copied from the base version on first
 * write, committed by comparing the base with the current version under
 * the state's commit lock.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- naming, under st->lock --------------------------------------------- */

static struct ks_txn *find_locked(struct ks_state *st, const char *name)
{
	ks_lock_assert_held(&st->lock);
	for (struct ks_txn *t = st->txns; t; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* Drops the name: the state's list holds one reference, released here. */
void ks_txn_unlink_locked(struct ks_txn *txn)
{
	struct ks_state *st = txn->st;
	struct ks_txn **pp = &st->txns;

	ks_lock_assert_held(&st->lock);
	if (!txn->name)
		return;
	while (*pp != txn)
		pp = &(*pp)->next;
	*pp = txn->next;
	txn->next = NULL;
	free(txn->name);
	txn->name = NULL;
	st->ntxns--;
	ks_now(&st->txns_changed);
	atomic_fetch_sub(&st->eng->txns, 1);
	/* The caller holds a reference of its own, so this never frees. */
	atomic_fetch_sub_explicit(&txn->refs, 1, memory_order_acq_rel);
}

int ks_txn_begin(struct ks_state *st, enum ks_txn_mode mode, bool empty,
		 const char *name, struct ks_txn **out)
{
	struct ks_txn *txn;
	int err = name ? ks_name_check(name) : 0;

	if (err)
		return err;
	txn = calloc(1, sizeof(*txn));
	if (!txn)
		return ENOMEM;
	if (name) {
		txn->name = strdup(name);
		if (!txn->name) {
			free(txn);
			return ENOMEM;
		}
	}
	atomic_init(&txn->refs, name ? 2 : 1);
	txn->mode = mode;
	txn->set_len = -1;
	txn->keep_len = -1;
	ks_lock_init(&txn->lock, "txn->lock", KS_RANK_TXN);
	ks_now(&txn->mtime);

	ks_lock(&st->lock);
	if (st->deleted)
		err = ENOENT;
	else if (name && find_locked(st, name))
		err = EEXIST;
	else if (name && st->ntxns >= st->eng->cfg.max_txns)
		err = ENOSPC;
	if (!err) {
		txn->st = ks_state_ref(st);
		txn->base = ks_page_ref(st->current);
		txn->base_version = st->current->version;
		if (name) {
			txn->next = st->txns;
			st->txns = txn;
			st->ntxns++;
			st->txns_changed = txn->mtime;
			atomic_fetch_add(&st->eng->txns, 1);
		}
	}
	ks_unlock(&st->lock);
	if (err) {
		ks_lock_destroy(&txn->lock);
		free(txn->name);
		free(txn);
		return err;
	}
	if (empty) {
		/* O_TRUNC: an explicit, empty page. */
		txn->written = true;
		if (mode == KS_TXN_PATCH)
			txn->set_len = txn->keep_len = 0;
		else
			txn->buf = malloc(1);
		if (mode != KS_TXN_PATCH && !txn->buf) {
			ks_txn_unref(txn);
			if (name)
				ks_txn_unlink(st, name);
			return ENOMEM;
		}
	}
	*out = txn;
	return 0;
}

int ks_txn_begin_at(struct ks_state *st, struct ks_page *page,
		    struct ks_txn **out)
{
	struct ks_page *was;
	struct ks_txn *txn;
	int err = ks_txn_begin(st, KS_TXN_CHECKED, false, NULL, &txn);

	if (err)
		return err;
	/* Nobody else has txn yet: move its base back to the pinned page,
	 * so that it reads that version and its commit checks against it. */
	ks_lock(&st->lock);
	was = txn->base;
	txn->base = ks_page_ref(page);
	txn->base_version = page->version;
	ks_unlock(&st->lock);
	ks_page_unref(was);
	*out = txn;
	return 0;
}

struct ks_txn *ks_txn_ref(struct ks_txn *txn)
{
	atomic_fetch_add_explicit(&txn->refs, 1, memory_order_relaxed);
	return txn;
}

void ks_txn_unref(struct ks_txn *txn)
{
	if (!txn || atomic_fetch_sub_explicit(&txn->refs, 1,
					      memory_order_acq_rel) != 1)
		return;
	ks_page_unref(txn->base);
	free(txn->buf);
	free(txn->mask);
	free(txn->name);
	ks_lock_destroy(&txn->lock);
	ks_state_unref(txn->st);
	free(txn);
}

int ks_txn_find(struct ks_state *st, const char *name, struct ks_txn **out)
{
	struct ks_txn *txn;

	ks_lock(&st->lock);
	txn = st->deleted ? NULL : find_locked(st, name);
	if (txn)
		*out = ks_txn_ref(txn);
	ks_unlock(&st->lock);
	return txn ? 0 : ENOENT;
}

int ks_txn_unlink(struct ks_state *st, const char *name)
{
	struct ks_txn *txn;

	ks_lock(&st->lock);
	txn = find_locked(st, name);
	if (txn) {
		ks_txn_ref(txn);
		ks_txn_unlink_locked(txn);
	}
	ks_unlock(&st->lock);
	if (!txn)
		return ENOENT;
	ks_txn_unref(txn);
	return 0;
}

int ks_txn_rename(struct ks_state *st, const char *oldname,
		  const char *newname)
{
	struct ks_txn *from, *onto, *drop = NULL;
	char *copy;
	int err = ks_name_check(newname);

	if (err)
		return err;
	copy = strdup(newname);
	if (!copy)
		return ENOMEM;
	ks_lock(&st->lock);
	from = find_locked(st, oldname);
	onto = find_locked(st, newname);
	if (!from) {
		err = ENOENT;
	} else if (from != onto) {
		if (onto) {
			/* The result keeps the older base, so a tool that
			 * edits through a temporary file and a rename keeps
			 * the conflict check of the file it replaced. */
			if (onto->base_version < from->base_version)
				from->base_version = onto->base_version;
			drop = ks_txn_ref(onto);
			ks_txn_unlink_locked(onto);
		}
		free(from->name);
		from->name = copy;
		copy = NULL;
		ks_now(&st->txns_changed);
	}
	ks_unlock(&st->lock);
	free(copy);
	ks_txn_unref(drop);
	return err;
}

void ks_txn_foreach(struct ks_state *st,
		    void (*fn)(void *arg, struct ks_txn *txn, const char *name),
		    void *arg)
{
	ks_lock(&st->lock);
	for (struct ks_txn *t = st->txns; t; t = t->next)
		fn(arg, t, t->name);
	ks_unlock(&st->lock);
}

/* ---- the private page --------------------------------------------------- */

struct ks_state *ks_txn_state(const struct ks_txn *txn)
{
	return txn->st;
}

void ks_txn_set_tag(struct ks_txn *txn, uint64_t tag)
{
	atomic_store(&txn->tag, tag);
}

uint64_t ks_txn_tag(const struct ks_txn *txn)
{
	return atomic_load(&((struct ks_txn *)txn)->tag);
}

void ks_txn_set_owner(struct ks_txn *txn, uid_t uid, gid_t gid, mode_t mode)
{
	ks_lock(&txn->lock);
	txn->uid = uid;
	txn->gid = gid;
	txn->perm = mode & 07777;
	ks_unlock(&txn->lock);
}

void ks_txn_owner(struct ks_txn *txn, uid_t *uid, gid_t *gid, mode_t *mode)
{
	ks_lock(&txn->lock);
	*uid = txn->uid;
	*gid = txn->gid;
	*mode = txn->perm;
	ks_unlock(&txn->lock);
}

uint64_t ks_txn_base(struct ks_txn *txn)
{
	uint64_t v;

	ks_lock(&txn->st->lock);
	v = txn->base_version;
	ks_unlock(&txn->st->lock);
	return v;
}

bool ks_txn_named(struct ks_txn *txn)
{
	bool named;

	ks_lock(&txn->st->lock);
	named = txn->name != NULL;
	ks_unlock(&txn->st->lock);
	return named;
}

static const unsigned char *page_bytes(const struct ks_txn *txn, size_t *len)
{
	if (txn->buf) {
		*len = txn->len;
		return txn->buf;
	}
	*len = txn->base->len;
	return txn->base->bytes;
}

size_t ks_txn_size(struct ks_txn *txn)
{
	size_t len;

	ks_lock(&txn->lock);
	page_bytes(txn, &len);
	ks_unlock(&txn->lock);
	return len;
}

struct timespec ks_txn_mtime(struct ks_txn *txn)
{
	struct timespec t;

	ks_lock(&txn->lock);
	t = txn->mtime;
	ks_unlock(&txn->lock);
	return t;
}

size_t ks_txn_read(struct ks_txn *txn, void *buf, size_t len, off_t off)
{
	const unsigned char *bytes;
	size_t have, n = 0;

	ks_lock(&txn->lock);
	bytes = page_bytes(txn, &have);
	if (off >= 0 && (size_t)off < have) {
		n = have - (size_t)off;
		if (n > len)
			n = len;
		memcpy(buf, bytes + off, n);
	}
	ks_unlock(&txn->lock);
	return n;
}

/* Makes buf a private copy at least want bytes large, zero-filled. */
static int own_page(struct ks_txn *txn, size_t want)
{
	size_t cap;
	unsigned char *nb;

	if (txn->buf && txn->cap >= want)
		return 0;
	if (!txn->buf && txn->mode != KS_TXN_APPEND && txn->base->len > want)
		want = txn->base->len;
	cap = txn->cap ? txn->cap : 64;
	while (cap < want)
		cap *= 2;
	if (txn->buf) {
		nb = realloc(txn->buf, cap);
		if (!nb)
			return ENOMEM;
	} else {
		nb = malloc(cap);
		if (!nb)
			return ENOMEM;
		/* APPEND buffers only what is written. */
		txn->len = txn->mode == KS_TXN_APPEND ? 0 : txn->base->len;
		memcpy(nb, txn->base->bytes, txn->len);
	}
	memset(nb + txn->len, 0, cap - txn->len);
	txn->buf = nb;
	txn->cap = cap;
	return 0;
}

/* PATCH: the written bytes and a mask of which they are, grown as writes
 * come (never all of max_size up front: a descriptor per dd would). */
static int patch_write(struct ks_txn *txn, const void *buf, size_t len,
		       size_t off)
{
	size_t want = off + len;

	if (want > txn->cap) {
		size_t cap = txn->cap ? txn->cap : 64;
		unsigned char *nb, *nm;

		while (cap < want)
			cap *= 2;
		nb = realloc(txn->buf, cap);
		if (!nb)
			return ENOMEM;
		txn->buf = nb;
		nm = realloc(txn->mask, cap / 8 + 1);
		if (!nm)
			return ENOMEM;
		memset(nm + (txn->mask ? txn->cap / 8 + 1 : 0), 0,
		       cap / 8 + 1 - (txn->mask ? txn->cap / 8 + 1 : 0));
		memset(nb + txn->cap, 0, cap - txn->cap);
		txn->mask = nm;
		txn->cap = cap;
	}
	memcpy(txn->buf + off, buf, len);
	for (size_t i = off; i < off + len; i++)
		txn->mask[i / 8] |= (unsigned char)(1u << (i % 8));
	if (off + len > txn->len)
		txn->len = off + len;
	return 0;
}

int ks_txn_write(struct ks_txn *txn, const void *buf, size_t len, off_t off)
{
	size_t max = txn->st->eng->cfg.max_size;
	int err;

	if (off < 0)
		return EINVAL;
	if ((size_t)off > max || len > max - (size_t)off)
		return EFBIG;
	ks_lock(&txn->lock);
	if (txn->mode == KS_TXN_APPEND) {
		/* The offset is the kernel's idea of the end; the real end
		 * is the latest page's at commit. */
		if (len > max - txn->len)
			err = EFBIG;
		else
			err = own_page(txn, txn->len + len);
		if (!err) {
			memcpy(txn->buf + txn->len, buf, len);
			txn->len += len;
		}
	} else if (txn->mode == KS_TXN_PATCH) {
		err = patch_write(txn, buf, len, (size_t)off);
	} else {
		err = own_page(txn, (size_t)off + len);
		if (!err) {
			memcpy(txn->buf + off, buf, len);
			if ((size_t)off + len > txn->len)
				txn->len = (size_t)off + len;
		}
	}
	if (!err) {
		txn->written = true;
		ks_now(&txn->mtime);
	}
	ks_unlock(&txn->lock);
	return err;
}

/* restart: and forget a failed write's error, in the same hold of the
 * lock, so that no failing write in between is forgotten with it. */
static int truncate_txn(struct ks_txn *txn, off_t len, bool restart)
{
	size_t max = txn->st->eng->cfg.max_size;
	int err = 0;

	if (len < 0)
		return EINVAL;
	if ((size_t)len > max)
		return EFBIG;
	ks_lock(&txn->lock);
	if (txn->mode == KS_TXN_APPEND) {
		/* Cut the latest page at commit; what was appended so far
		 * is gone, later writes append to the cut page. */
		txn->len = 0;
		txn->set_len = len;
	} else if (txn->mode == KS_TXN_PATCH) {
		/* Writes past the new end are cut; later ones extend. */
		for (size_t i = (size_t)len; txn->mask && i < txn->len; i++)
			txn->mask[i / 8] &= (unsigned char)~(1u << (i % 8));
		if (txn->len > (size_t)len)
			txn->len = (size_t)len;
		txn->set_len = len;
		if (txn->keep_len < 0 || len < txn->keep_len)
			txn->keep_len = len;
	} else {
		err = own_page(txn, (size_t)len);
		if (!err) {
			if ((size_t)len < txn->len)
				memset(txn->buf + len, 0, txn->len - (size_t)len);
			txn->len = (size_t)len;
		}
	}
	if (!err) {
		txn->written = true;
		ks_now(&txn->mtime);
		if (restart)
			txn->error = 0;
	}
	ks_unlock(&txn->lock);
	return err;
}

int ks_txn_truncate(struct ks_txn *txn, off_t len)
{
	return truncate_txn(txn, len, false);
}

int ks_txn_restart(struct ks_txn *txn)
{
	return truncate_txn(txn, 0, true);
}

bool ks_txn_written(struct ks_txn *txn)
{
	bool w;

	ks_lock(&txn->lock);
	w = txn->written;
	ks_unlock(&txn->lock);
	return w;
}

int ks_txn_error(struct ks_txn *txn)
{
	int e;

	ks_lock(&txn->lock);
	e = txn->error;
	ks_unlock(&txn->lock);
	return e;
}

void ks_txn_set_error(struct ks_txn *txn, int err)
{
	ks_lock(&txn->lock);
	if (!txn->error)
		txn->error = err;
	ks_unlock(&txn->lock);
}

/* ---- commit ------------------------------------------------------------- */

/* The page a commit installs, built from the transaction (txn->lock held)
 * over cur, the current page (for PATCH). */
struct ks_page *ks_txn_build_page(struct ks_txn *txn, const struct ks_page *cur,
				  uint64_t version, const struct timespec *now)
{
	struct ks_page *page;
	size_t len;

	ks_lock_assert_held(&txn->lock);
	if (txn->mode == KS_TXN_APPEND) {
		size_t keep = cur->len;

		if (txn->set_len >= 0 && (size_t)txn->set_len < keep)
			keep = (size_t)txn->set_len;
		len = txn->set_len > (long long)keep ? (size_t)txn->set_len
						     : keep;
		page = ks_page_new(NULL, len + txn->len, version, now);
		if (!page)
			return NULL;
		memcpy(page->bytes, cur->bytes, keep);
		if (txn->len)
			memcpy(page->bytes + len, txn->buf, txn->len);
		return page;
	}
	if (txn->mode != KS_TXN_PATCH) {
		const unsigned char *bytes = page_bytes(txn, &len);

		return ks_page_new(bytes, len, version, now);
	}
	len = txn->set_len >= 0 ? (size_t)txn->set_len : cur->len;
	if (txn->len > len)
		len = txn->len;
	page = ks_page_new(NULL, len, version, now);
	if (!page)
		return NULL;
	{
		size_t keep = txn->keep_len >= 0 ? (size_t)txn->keep_len : len;

		if (keep > cur->len)
			keep = cur->len;
		memcpy(page->bytes, cur->bytes, keep);
	}
	for (size_t i = 0; txn->mask && i < txn->len; i++)
		if (txn->mask[i / 8] & (1u << (i % 8)))
			page->bytes[i] = txn->buf[i];
	return page;
}

/* After a commit the transaction goes on, based on the new page
 * (txn->lock held). */
void ks_txn_rebase(struct ks_txn *txn, struct ks_page *page)
{
	ks_lock_assert_held(&txn->lock);
	ks_page_unref(txn->base);
	txn->base = ks_page_ref(page);
	free(txn->buf);
	free(txn->mask);
	txn->buf = txn->mask = NULL;
	txn->len = txn->cap = 0;
	txn->set_len = -1;
	txn->keep_len = -1;
	txn->written = false;
}

/* Under the commit lock, txn->lock held by ks_txn_commit. */
static int prepare_txn(void *arg, struct ks_commit_member *m, size_t n,
		       const struct timespec *now)
{
	struct ks_txn *txn = arg;
	struct ks_engine *eng = m->st->eng;
	const struct ks_page *cur = m->cur;
	uint64_t base;

	ks_lock_assert_held(&m->st->commit_lock);
	ks_lock_assert_held(&txn->lock);
	if (m->deleted)
		return ENOENT;
	if (txn->error)
		return txn->error;
	ks_lock(&m->st->lock);
	base = txn->base_version;
	ks_unlock(&m->st->lock);
	if (txn->mode == KS_TXN_CHECKED && cur->version != base)
		return EAGAIN;
	if (!txn->written)
		return 0; /* read-only: validated, nothing to install */
	m->version = cur->version + 1;
	m->page = ks_txn_build_page(txn, cur, m->version, now);
	if (!m->page)
		return ENOMEM;
	/* Whatever the mode, no commit makes a page larger than this
	 * mount's max_size: an append past it, or a patch of a page from a
	 * store written under a larger -o max_size (which keeps its
	 * length). */
	if (m->page->len > eng->cfg.max_size) {
		ks_page_unref(m->page);
		m->page = NULL;
		m->version = cur->version;
		return EFBIG;
	}
	return 0;
}

/* The transaction goes on as a fresh one based on what it committed or
 * validated; a named one loses its name. */
static void txn_applied(void *arg, struct ks_commit_member *m, size_t n)
{
	struct ks_txn *txn = arg;
	struct ks_state *st = m->st;

	ks_lock(&st->lock);
	ks_txn_ref(txn);
	ks_txn_unlink_locked(txn);
	txn->base_version = m->version;
	ks_unlock(&st->lock);
	ks_txn_unref(txn);
	ks_txn_rebase(txn, m->page ? m->page : m->cur);
}

static void txn_release(void *arg, int err)
{
	struct ks_txn *txn = arg;

	ks_unlock(&txn->lock);
}

int ks_txn_commit(struct ks_txn *txn, uint64_t *version)
{
	struct ks_commit_member m = { .st = txn->st, .txn = txn };
	struct ks_commit c = {
		.kind = txn->mode == KS_TXN_CHECKED ? KS_COMMIT_CHECKED
						    : KS_COMMIT_BLIND,
		.m = &m, .n = 1, .prepare = prepare_txn,
		.applied = txn_applied, .release = txn_release, .arg = txn,
	};
	int err;

	ks_lock(&txn->lock);
	err = ks_commit_run(txn->st->eng, &c);
	if (!err && version)
		*version = m.version;
	return err;
}

void ks_txn_discard(struct ks_txn *txn)
{
	struct ks_state *st = txn->st;
	struct ks_page *cur;

	ks_lock(&txn->lock);
	ks_lock(&st->lock);
	cur = ks_page_ref(st->current);
	txn->base_version = cur->version;
	ks_unlock(&st->lock);
	ks_txn_rebase(txn, cur);
	ks_unlock(&txn->lock);
	ks_page_unref(cur);
}

int ks_txn_commit_named(struct ks_state *st, const char *name,
			uint64_t *version)
{
	struct ks_txn *txn;
	int err = ks_txn_find(st, name, &txn);

	if (err)
		return err;
	err = ks_txn_commit(txn, version);
	ks_txn_unref(txn);
	return err;
}
