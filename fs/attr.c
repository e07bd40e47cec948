/*
 * Attributes, entry replies and telling the kernel that cached attributes
 * went stale.
 *
 * Caching: the kernel may keep names and attributes for a long time (they
 * only change through this mount, or by commits, after which
 * invalidate_state runs before the commit is acknowledged).  Transaction
 * files and retired data inodes are the exception: several processes may
 * change them, so their attributes are never cached.
 */
#include "daemon.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static size_t version_text_len(uint64_t v)
{
	char buf[24];

	return (size_t)snprintf(buf, sizeof(buf), "%" PRIu64 "\n", v);
}

/* The files that belong to no state: the root, .txn and its
 * transactions, .commit, .events, .stats.  False for the others. */
static bool fill_daemon_attr(struct ks_daemon *d, struct ks_inode *in,
			     struct stat *stbuf)
{
	struct ks_engine_stats s;

	stbuf->st_uid = getuid();
	stbuf->st_gid = getgid();
	stbuf->st_atim = d->started;
	stbuf->st_mtim = d->started;
	stbuf->st_ctim = d->started;
	stbuf->st_nlink = 1;
	switch (in->role) {
	case ROLE_ROOT:
		ks_engine_stats(d->eng, &s);
		stbuf->st_mode = S_IFDIR | 0755;
		stbuf->st_nlink = 2 + s.states;
		return true;
	case ROLE_TXN_ROOT:
		/* Anyone may begin a transaction, like files in /tmp. */
		stbuf->st_mode = S_IFDIR | 01777;
		stbuf->st_nlink = 2;
		return true;
	case ROLE_COMMIT_DIR:
		stbuf->st_mode = S_IFDIR | 0777;
		stbuf->st_nlink = 2;
		return true;
	case ROLE_MULTI:
		stbuf->st_mode = S_IFDIR | 0755;
		stbuf->st_nlink = 2;
		stbuf->st_ctim = stbuf->st_mtim = stbuf->st_atim =
			ks_multi_ctime(in->multi);
		return true;
	case ROLE_EVENTS:
	case ROLE_STATS:
		/* Size 0, like /proc files: read them to the end. */
		stbuf->st_mode = S_IFREG | 0444;
		return true;
	default:
		return false;
	}
}

void fill_attr(struct ks_daemon *d, struct ks_inode *in, struct stat *stbuf)
{
	struct ks_state_attr sa;
	struct ks_page *page;

	memset(stbuf, 0, sizeof(*stbuf));
	stbuf->st_ino = in->ino;
	stbuf->st_blksize = 4096;
	if (fill_daemon_attr(d, in, stbuf))
		return;
	ks_state_get_attr(in->st, &sa);
	stbuf->st_uid = sa.uid;
	stbuf->st_gid = sa.gid;
	stbuf->st_ctim = sa.ctime;
	if (in->role == ROLE_TXN) {
		stbuf->st_mode = S_IFREG | (in->mode & 07777);
		stbuf->st_nlink = ks_txn_named(in->txn) ? 1 : 0;
		stbuf->st_uid = in->uid;
		stbuf->st_gid = in->gid;
		stbuf->st_size = (off_t)ks_txn_size(in->txn);
		stbuf->st_mtim = ks_txn_mtime(in->txn);
		stbuf->st_ctim = stbuf->st_mtim;
		stbuf->st_atim = stbuf->st_mtim;
		stbuf->st_blocks = (stbuf->st_size + 511) / 512;
		return;
	}
	if (in->role == ROLE_VIEW_DATA || in->role == ROLE_VIEW_VERSION)
		page = view_shown(in->view);
	else
		page = ks_state_current(in->st);
	stbuf->st_mtim = page->mtime;
	stbuf->st_atim = page->mtime;
	switch (in->role) {
	case ROLE_STATE:
		/* Commits do not touch the directory: its times are those of
		 * its creation, rename, chmod or chown. */
		stbuf->st_mtim = sa.ctime;
		stbuf->st_atim = sa.ctime;
		stbuf->st_mode = S_IFDIR | sa.mode;
		stbuf->st_nlink = 2;
		break;
	case ROLE_EVERY:
	case ROLE_VIEW:
		stbuf->st_mtim = sa.ctime;
		stbuf->st_atim = sa.ctime;
		stbuf->st_mode = S_IFDIR | (sa.mode & 0555);
		stbuf->st_nlink = 2;
		break;
	case ROLE_DATA:
		stbuf->st_mode = S_IFREG | (sa.mode & 0666);
		stbuf->st_nlink = 1;
		stbuf->st_size = (off_t)page->len;
		break;
	case ROLE_VIEW_DATA:
		stbuf->st_mode = S_IFREG | (sa.mode & 0444);
		stbuf->st_nlink = 1;
		stbuf->st_size = (off_t)page->len;
		break;
	case ROLE_MEMBER: {
		struct ks_txn *txn;

		stbuf->st_mode = S_IFREG | (sa.mode & 0666);
		stbuf->st_nlink = 1;
		if (ks_multi_member(in->multi, in->st, &txn) == 0) {
			stbuf->st_size = (off_t)ks_txn_size(txn);
			ks_txn_unref(txn);
		} else {
			stbuf->st_size = (off_t)page->len;
		}
		break;
	}
	case ROLE_VIEW_VERSION:
	case ROLE_VERSION:
		stbuf->st_mode = S_IFREG | (sa.mode & 0444);
		stbuf->st_nlink = 1;
		stbuf->st_size = (off_t)version_text_len(page->version);
		break;
	default:
		break;
	}
	stbuf->st_blocks = (stbuf->st_size + 511) / 512;
	ks_page_unref(page);
}

double attr_timeout(struct ks_daemon *d, struct ks_inode *in)
{
	switch (in->role) {
	case ROLE_TXN:
	case ROLE_MULTI:
	case ROLE_MEMBER:
	case ROLE_VIEW_DATA:
	case ROLE_VIEW_VERSION:
		/* Changed by others, or by moves of a view: never cached. */
		return 0;
	default:
		break;
	}
	if (in->role == ROLE_DATA && in->ino != inode_data_ino(d, in->st))
		return 0;
	return d->timeout;
}

double entry_timeout(struct ks_daemon *d, enum ks_role role)
{
	/* A committed .txn/T moves to .commit/T in the kernel's cache:
	 * looked up again, it is found gone. */
	return role == ROLE_MULTI || role == ROLE_MEMBER ? 0 : d->timeout;
}

void reply_entry(struct ks_daemon *d, fuse_req_t req, struct ks_inode *in)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = in->ino;
	e.generation = 0;
	fill_attr(d, in, &e.attr);
	e.attr_timeout = attr_timeout(d, in);
	e.entry_timeout = entry_timeout(d, in->role);
	if (fuse_reply_entry(req, &e) != 0) {
		/* The kernel did not take the lookup (interrupted). */
		inode_forget(d, in->ino, 1);
	}
	inode_put(d, in);
}

void invalidate_state(struct ks_daemon *d, struct ks_state *st)
{
	uint64_t inos[2] = {
		inode_data_ino(d, st),
		inode_state_ino(st, ROLE_VERSION),
	};

	for (size_t i = 0; i < 2; i++) {
		struct ks_inode *in = inode_get(d, inos[i]);

		/* Only inodes the kernel knows can be cached there. */
		if (!in)
			continue;
		if (in->nlookup)
			fuse_lowlevel_notify_inval_inode(d->se, inos[i], -1, 0);
		inode_put(d, in);
	}
}
