/*
 * Transactions over several states: .txn/T directories, their member
 * files .txn/T/NAME, and the commit `mv .txn/T .commit/`.
 *
 * Member files and transaction directories get no entry or attribute
 * caching: a committed T's entry lands in .commit/ in the kernel's cache,
 * and must be looked up again (and found gone) on its next use.
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int multi_lookup(struct ks_daemon *d, struct ks_inode *dir, const char *name,
		 struct ks_inode **out)
{
	struct ks_multi *m;
	struct ks_state *st;

	switch (dir->role) {
	case ROLE_TXN_ROOT:
		if (ks_multi_find(d->eng, name, &m))
			return ENOENT;
		*out = inode_lookup_multi(d, m);
		ks_multi_unref(m);
		break;
	case ROLE_MULTI: {
		struct ks_inode tmpl = { .role = ROLE_MEMBER,
					 .multi = dir->multi };

		if (ks_multi_gone(dir->multi) ||
		    ks_state_lookup(d->eng, name, &st))
			return ENOENT;
		tmpl.st = st;
		*out = inode_new(d, inode_alloc_ino(d, 1), &tmpl);
		ks_state_unref(st);
		break;
	}
	default:
		/* .commit is always empty. */
		return ENOENT;
	}
	return *out ? 0 : ENOMEM;
}

int multi_mkdir(struct ks_daemon *d, struct ks_inode *dir, const char *name,
		struct ks_inode **out)
{
	struct ks_multi *m;
	int err;

	if (dir->role != ROLE_TXN_ROOT)
		return EPERM;
	err = ks_multi_create(d->eng, name, &m);
	if (err)
		return err;
	*out = inode_lookup_multi(d, m);
	ks_multi_unref(m);
	if (!*out) {
		ks_multi_remove(d->eng, name);
		return ENOMEM;
	}
	return 0;
}

int multi_rmdir(struct ks_daemon *d, struct ks_inode *dir, const char *name)
{
	if (dir->role == ROLE_TXN_ROOT)
		return ks_multi_remove(d->eng, name);
	if (dir->role == ROLE_MULTI)
		return ENOTDIR;
	return ENOENT;
}

int multi_unlink(struct ks_daemon *d, struct ks_inode *dir, const char *name)
{
	struct ks_state *st;
	int err;

	if (dir->role != ROLE_MULTI)
		return dir->role == ROLE_TXN_ROOT ? EISDIR : ENOENT;
	if (ks_state_lookup(d->eng, name, &st))
		return ENOENT;
	err = ks_multi_leave(dir->multi, st);
	ks_state_unref(st);
	return err;
}

int multi_rename(struct ks_daemon *d, struct ks_inode *from, const char *name,
		 struct ks_inode *to, const char *newname)
{
	struct ks_multi *m;
	int err;

	/* mv .txn/T .commit/ is the commit; nothing else moves here. */
	if (from->role != ROLE_TXN_ROOT || to->role != ROLE_COMMIT_DIR)
		return EPERM;
	err = ks_multi_find(d->eng, name, &m);
	if (err)
		return err;
	err = ks_multi_commit(m);
	ks_multi_unref(m);
	return err;
}

int multi_open(struct ks_daemon *d, struct ks_inode *in, int flags,
	       struct ks_fh *fh)
{
	int err;

	/* Opening is joining: the state's version now is the base. */
	err = ks_multi_join(in->multi, in->st, &fh->txn);
	if (err)
		return err;
	fh->kind = FH_TXN;
	fh->readable = (flags & O_ACCMODE) != O_WRONLY;
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
		err = ks_txn_truncate(fh->txn, 0);
	return err;
}

struct list_arg {
	void (*add)(void *arg, const char *name, uint64_t ino, mode_t type);
	void *arg;
	struct ks_daemon *d;
};

static void list_multi(void *arg, struct ks_multi *m, const char *name)
{
	struct list_arg *la = arg;
	uint64_t ino = ks_multi_tag(m);

	la->add(la->arg, name, ino ? ino : INO_TXN_BASE - 1, S_IFDIR);
}

static void list_member(void *arg, struct ks_state *st, struct ks_txn *txn)
{
	struct list_arg *la = arg;
	char name[KS_NAME_MAX + 1];

	if (ks_state_name(st, name))
		la->add(la->arg, name, INO_TXN_BASE - 1, S_IFREG);
}

void multi_list(struct ks_daemon *d, struct ks_inode *dir,
		void (*add)(void *arg, const char *name, uint64_t ino,
			    mode_t type),
		void *arg)
{
	struct list_arg la = { add, arg, d };

	if (dir->role == ROLE_TXN_ROOT)
		ks_multi_foreach(d->eng, list_multi, &la);
	else if (dir->role == ROLE_MULTI)
		ks_multi_foreach_member(dir->multi, list_member, &la);
}
