/*
 * A state's directory: its fixed files data, version and every/, and its
 * transaction files, made by creating any other name in it.
 */
#include "daemon.h"

#include <errno.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>

static bool is_fixed_name(const char *name)
{
	return strcmp(name, "data") == 0 || strcmp(name, "version") == 0 ||
	       strcmp(name, "every") == 0;
}

static void state_getattr(struct ks_daemon *d, struct ks_inode *in,
			  struct stat *stbuf)
{
	struct timespec t = ks_state_txns_changed(in->st);

	attr_of_state_dir(in, stbuf, 07777);
	stbuf->st_nlink = 3; /* and every/'s ".." */
	/* Commits do not touch the directory; transaction files coming and
	 * going do, as files do in any directory. */
	if (t.tv_sec > stbuf->st_mtim.tv_sec ||
	    (t.tv_sec == stbuf->st_mtim.tv_sec &&
	     t.tv_nsec > stbuf->st_mtim.tv_nsec))
		stbuf->st_mtim = stbuf->st_ctim = t;
}

/* chmod and chown of a state: its owner (or root) may; only root gives it
 * away to another user, and the owner gives it only to a group of their
 * own, as chown(2) says. */
static int set_state_owner(struct ks_state *st, fuse_req_t req,
			   struct stat *attr, int to_set)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct ks_state_attr sa;

	ks_state_get_attr(st, &sa);
	if (!caller_owns(req, sa.uid))
		return EPERM;
	if (to_set & FUSE_SET_ATTR_UID) {
		if (ctx->uid != 0 && attr->st_uid != sa.uid)
			return EPERM;
		sa.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		if (ctx->uid != 0 && attr->st_gid != sa.gid &&
		    !caller_in_group(req, attr->st_gid))
			return EPERM;
		sa.gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_MODE)
		sa.mode = attr->st_mode & 07777;
	clock_gettime(CLOCK_REALTIME, &sa.ctime);
	return ks_state_set_attr(st, &sa);
}

static int state_setattr(struct ks_daemon *d, fuse_req_t req,
			 struct ks_inode *in, struct stat *attr, int to_set,
			 struct ks_fh *fh)
{
	if (to_set & FUSE_SET_ATTR_SIZE)
		return EISDIR;
	if (to_set & SETATTR_OWNER_BITS) {
		int err = set_state_owner(in->st, req, attr, to_set);

		if (!err)
			inode_invalidate_owner(d, in->st);
		return err;
	}
	return 0;
}

/* Transaction files are their creator's: only they (or root) commit,
 * rename, replace or abort one, whoever else may write the directory.
 * 0, ENOENT, or EPERM. */
static int txn_check_owner(fuse_req_t req, struct ks_state *st,
			   const char *name)
{
	struct ks_txn *txn;
	uid_t uid;
	gid_t gid;
	mode_t mode;

	if (ks_txn_find(st, name, &txn))
		return ENOENT;
	ks_txn_owner(txn, &uid, &gid, &mode);
	ks_txn_unref(txn);
	return caller_owns(req, uid) ? 0 : EPERM;
}

static int state_lookup(struct ks_daemon *d, struct ks_inode *dir,
			const char *name, struct ks_inode **out)
{
	struct ks_txn *txn;

	if (strcmp(name, "data") == 0) {
		*out = inode_lookup_state(d, dir->st, ROLE_DATA);
	} else if (strcmp(name, "version") == 0) {
		*out = inode_lookup_state(d, dir->st, ROLE_VERSION);
	} else if (strcmp(name, "every") == 0) {
		*out = inode_lookup_state(d, dir->st, ROLE_EVERY);
	} else if (ks_txn_find(dir->st, name, &txn) == 0) {
		uid_t uid;
		gid_t gid;
		mode_t mode;

		ks_txn_owner(txn, &uid, &gid, &mode);
		*out = inode_lookup_txn(d, txn, uid, gid, mode);
		ks_txn_unref(txn);
	} else {
		return ENOENT;
	}
	return *out ? 0 : ENOMEM;
}

static int state_rmdir(struct ks_daemon *d, fuse_req_t req,
		       struct ks_inode *dir, const char *name)
{
	struct ks_txn *txn;

	if (strcmp(name, "every") == 0)
		return EPERM;
	if (is_fixed_name(name))
		return ENOTDIR;
	if (ks_txn_find(dir->st, name, &txn) == 0) {
		ks_txn_unref(txn);
		return ENOTDIR;
	}
	return ENOENT;
}

/* rm T aborts the transaction. */
static int state_unlink(struct ks_daemon *d, fuse_req_t req,
			struct ks_inode *dir, const char *name)
{
	int err = is_fixed_name(name) ? EPERM
				      : txn_check_owner(req, dir->st, name);

	return err ? err : ks_txn_unlink(dir->st, name);
}

/* A transaction is private to its creator: no group or other bits, so
 * that with default_permissions the kernel lets nobody else read or
 * write it either. */
static mode_t txn_perm(const struct fuse_ctx *ctx, mode_t mode)
{
	return mode & ~ctx->umask & 0700;
}

/* A regular file made by mknod is a transaction like any other. */
static int state_mknod(struct ks_daemon *d, fuse_req_t req,
		       struct ks_inode *dir, const char *name, mode_t mode,
		       struct ks_inode **out)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	mode_t perm = txn_perm(ctx, mode);
	struct ks_txn *txn;
	int err;

	if (!S_ISREG(mode))
		return EPERM;
	if (is_fixed_name(name))
		return EEXIST;
	err = ks_txn_begin(dir->st, KS_TXN_CHECKED, false, name, &txn);
	if (err)
		return err;
	ks_txn_set_owner(txn, ctx->uid, ctx->gid, perm);
	*out = inode_lookup_txn(d, txn, ctx->uid, ctx->gid, perm);
	ks_txn_unref(txn);
	if (!*out) {
		ks_txn_unlink(dir->st, name);
		return ENOMEM;
	}
	return 0;
}

static int state_create(struct ks_daemon *d, fuse_req_t req,
			struct ks_inode *dir, const char *name, mode_t mode,
			struct fuse_file_info *fi, struct ks_inode **out,
			struct ks_fh **out_fh)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	mode_t perm = txn_perm(ctx, mode);
	struct ks_inode *in;
	struct ks_txn *txn;
	struct ks_fh *fh;
	int err;

	if (strcmp(name, "data") == 0 || strcmp(name, "version") == 0)
		return EEXIST;
	/* A copy of data, or empty with O_TRUNC; and empty with O_EXCL
	 * too: tools that write a new file through a temporary one (sed -i,
	 * cp, mkstemp) make it with O_EXCL and would otherwise leave the
	 * old tail behind. */
	err = ks_txn_begin(dir->st, KS_TXN_CHECKED,
			   (fi->flags & (O_TRUNC | O_EXCL)) != 0, name, &txn);
	if (err)
		return err;
	ks_txn_set_owner(txn, ctx->uid, ctx->gid, perm);
	in = inode_lookup_txn(d, txn, ctx->uid, ctx->gid, perm);
	fh = in ? fh_new(in) : NULL;
	if (!fh || ks_state_open_file(dir->st)) {
		if (in)
			inode_forget(d, in->ino, 1);
		inode_put(d, in);
		free(fh);
		ks_txn_unlink(dir->st, name);
		ks_txn_unref(txn);
		return fh ? ENOENT : ENOMEM;
	}
	/* The inode's reference taken by inode_lookup_txn is the handle's,
	 * and so is the transaction's. */
	fh->fops = &txn_fops;
	fh->txn = txn;
	fh->readable = (fi->flags & O_ACCMODE) != O_WRONLY;
	*out = in;
	*out_fh = fh;
	return 0;
}

/* mv T data: commits T.  The kernel moves its `data` entry to T's inode,
 * which becomes the state's data inode. */
static int commit_by_rename(struct ks_daemon *d, struct ks_state *st,
			    const char *name)
{
	struct ks_inode *in = NULL;
	struct ks_txn *txn;
	int err = ks_txn_find(st, name, &txn);

	if (err)
		return err;
	in = inode_get(d, ks_txn_tag(txn));
	err = ks_txn_commit(txn, NULL);
	if (!err && in && in->role == ROLE_TXN && in->txn == txn) {
		inode_become_data(d, in);
		/* The kernel cached nothing for this inode (transaction
		 * attributes are never cached); its new attributes are the
		 * state's. */
	}
	inode_put(d, in);
	ks_txn_unref(txn);
	return err;
}

static int state_rename(struct ks_daemon *d, fuse_req_t req,
			struct ks_inode *from, const char *name,
			struct ks_inode *to, const char *newname,
			unsigned int flags)
{
	struct ks_state *st = from->st;
	struct ks_txn *txn;
	int err;

	/* Never EXDEV across states: mv would fall back to copying and
	 * turn a commit into a blind write. */
	if (to->role != ROLE_STATE || to->st != st)
		return EPERM;
	if (is_fixed_name(name) || strcmp(newname, "version") == 0)
		return EPERM;
	err = txn_check_owner(req, st, name);
	if (err)
		return err;
	if (strcmp(newname, "data") == 0)
		return (flags & RENAME_NOREPLACE) ? EEXIST
						  : commit_by_rename(d, st, name);
	if ((flags & RENAME_NOREPLACE) && ks_txn_find(st, newname, &txn) == 0) {
		ks_txn_unref(txn);
		return EEXIST;
	}
	/* Replacing U aborts it: U's owner's to do, as rm U would be. */
	err = txn_check_owner(req, st, newname);
	if (err && err != ENOENT)
		return err;
	return ks_txn_rename(st, name, newname);
}

static void list_txn(void *arg, struct ks_txn *txn, const char *name)
{
	uint64_t ino = ks_txn_tag(txn);

	/* A transaction the kernel has not looked up yet has no inode
	 * number; any number will do until it does. */
	listing_add(arg, name, ino ? ino : INO_TXN_BASE - 1, S_IFREG);
}

static void state_list(struct ks_daemon *d, struct ks_inode *dir,
		       struct ks_listing *l)
{
	listing_add(l, "data", inode_data_ino(d, dir->st), S_IFREG);
	listing_add(l, "version", inode_state_ino(dir->st, ROLE_VERSION),
		    S_IFREG);
	listing_add(l, "every", inode_state_ino(dir->st, ROLE_EVERY),
		    S_IFDIR);
	ks_txn_foreach(dir->st, list_txn, l);
}

const struct ks_kind_ops kind_state = {
	.type = S_IFDIR,
	.getattr = state_getattr,
	.setattr = state_setattr,
	.lookup = state_lookup,
	.rmdir = state_rmdir,
	.unlink = state_unlink,
	.mknod = state_mknod,
	.create = state_create,
	.rename = state_rename,
	.list = state_list,
};
