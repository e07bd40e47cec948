/*
 * The kinds by role, and what goes through them for every kind:
 * attributes and entry replies.
 *
 * Caching: the kernel may keep names and attributes for a long time (they
 * only change through this mount, or by commits, after which
 * inode_invalidate_state runs before the commit is acknowledged).  Kinds
 * that others change say so in their table (attr_timeout,
 * uncached_entry, uncached_negative).
 */
#include "daemon.h"

#include <string.h>

const struct ks_kind_ops *const ks_kinds[ROLE_COUNT] = {
	[ROLE_ROOT] = &kind_root,
	[ROLE_STATE] = &kind_state,
	[ROLE_DATA] = &kind_data,
	[ROLE_VERSION] = &kind_version,
	[ROLE_EVERY] = &kind_every,
	[ROLE_TXN] = &kind_txn,
	[ROLE_TXN_ROOT] = &kind_txn_root,
	[ROLE_COMMIT_DIR] = &kind_commit_dir,
	[ROLE_MULTI] = &kind_multi,
	[ROLE_MEMBER] = &kind_member,
	[ROLE_EVENTS] = &kind_events,
	[ROLE_STATS] = &kind_stats,
	[ROLE_VIEW] = &kind_view,
	[ROLE_VIEW_DATA] = &kind_view_data,
	[ROLE_VIEW_VERSION] = &kind_view_version,
	[ROLE_SHM] = &kind_shm,
};

uint64_t kind_root_entry(const char *name)
{
	for (int role = 0; role < ROLE_COUNT; role++)
		if (ks_kinds[role]->root_name &&
		    strcmp(ks_kinds[role]->root_name, name) == 0)
			return ks_kinds[role]->root_ino;
	return 0;
}

void fill_attr(struct ks_daemon *d, struct ks_inode *in, struct stat *stbuf)
{
	memset(stbuf, 0, sizeof(*stbuf));
	stbuf->st_ino = in->ino;
	stbuf->st_blksize = 4096;
	kind_of(in->role)->getattr(d, in, stbuf);
}

double attr_timeout(struct ks_daemon *d, struct ks_inode *in)
{
	const struct ks_kind_ops *k = kind_of(in->role);

	return k->attr_timeout ? k->attr_timeout(d, in) : d->timeout;
}

double entry_timeout(struct ks_daemon *d, struct ks_inode *in)
{
	return kind_of(in->role)->uncached_entry ? 0 : d->timeout;
}

void reply_entry(struct ks_daemon *d, fuse_req_t req, struct ks_inode *in)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = in->ino;
	e.generation = 0;
	fill_attr(d, in, &e.attr);
	e.attr_timeout = attr_timeout(d, in);
	e.entry_timeout = entry_timeout(d, in);
	if (fuse_reply_entry(req, &e) != 0) {
		/* The kernel did not take the lookup (interrupted). */
		inode_forget(d, in->ino, 1);
	}
	inode_put(d, in);
}
