/*
 * Names: lookup, attributes, and the operations that create, remove and
 * rename states and transaction files.
 */
#include "daemon.h"

#include <errno.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool is_fixed_name(const char *name)
{
	return strcmp(name, "data") == 0 || strcmp(name, "version") == 0 ||
	       strcmp(name, "every") == 0;
}

/* The root's own entries, or 0. */
static uint64_t root_entry(const char *name)
{
	if (strcmp(name, ".txn") == 0)
		return INO_TXN_ROOT;
	if (strcmp(name, ".commit") == 0)
		return INO_COMMIT_DIR;
	if (strcmp(name, ".events") == 0)
		return INO_EVENTS;
	if (strcmp(name, ".stats") == 0)
		return INO_STATS;
	return 0;
}

static void reply_negative(struct ks_daemon *d, fuse_req_t req,
			   enum ks_role dir_role)
{
	struct fuse_entry_param e;

	/* Names change only through this mount, so the kernel may remember
	 * that one does not exist; transactions over several states come
	 * and go by commits too. */
	memset(&e, 0, sizeof(e));
	e.entry_timeout = dir_role == ROLE_TXN_ROOT || dir_role == ROLE_MULTI ||
			  dir_role == ROLE_COMMIT_DIR ? 0 : d->timeout;
	fuse_reply_entry(req, &e);
}

static struct ks_inode *lookup_root_entry(struct ks_daemon *d, uint64_t ino)
{
	struct ks_inode *in = inode_get(d, ino);
	struct ks_inode *counted;

	if (!in)
		return NULL;
	counted = inode_new(d, ino, in);   /* finds it: counts the lookup */
	inode_put(d, in);
	return counted;
}

void ks_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *dir = inode_get(d, parent), *in = NULL;
	struct ks_state *st;
	struct ks_txn *txn;
	int err = 0;

	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	switch (dir->role) {
	case ROLE_ROOT:
		if (root_entry(name)) {
			in = lookup_root_entry(d, root_entry(name));
			break;
		}
		if (name[0] == '.' || ks_state_lookup(d->eng, name, &st)) {
			err = ENOENT;
			break;
		}
		in = inode_lookup_state(d, st, ROLE_STATE);
		ks_state_unref(st);
		break;
	case ROLE_EVERY:
	case ROLE_VIEW:
		err = ks_state_deleted(dir->st) ? ENOENT
						: view_lookup(d, dir, name, &in);
		break;
	case ROLE_TXN_ROOT:
	case ROLE_COMMIT_DIR:
	case ROLE_MULTI:
		err = multi_lookup(d, dir, name, &in);
		break;
	case ROLE_STATE:
		if (ks_state_deleted(dir->st))
			err = ENOENT;
		else if (strcmp(name, "data") == 0)
			in = inode_lookup_state(d, dir->st, ROLE_DATA);
		else if (strcmp(name, "version") == 0)
			in = inode_lookup_state(d, dir->st, ROLE_VERSION);
		else if (strcmp(name, "every") == 0)
			in = inode_lookup_state(d, dir->st, ROLE_EVERY);
		else if (ks_txn_find(dir->st, name, &txn) == 0) {
			uid_t uid;
			gid_t gid;
			mode_t mode;

			ks_txn_owner(txn, &uid, &gid, &mode);
			in = inode_lookup_txn(d, txn, uid, gid, mode);
			ks_txn_unref(txn);
		} else {
			err = ENOENT;
		}
		break;
	default:
		err = ENOTDIR;
		break;
	}
	if (in)
		reply_entry(d, req, in);
	else if (err == ENOENT)
		reply_negative(d, req, dir->role);
	else
		fuse_reply_err(req, err ? err : ENOMEM);
	inode_put(d, dir);
}

void ks_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	inode_forget(daemon_of(req), ino, nlookup);
	fuse_reply_none(req);
}

void ks_op_forget_multi(fuse_req_t req, size_t count,
			struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		inode_forget(daemon_of(req), forgets[i].ino,
			     forgets[i].nlookup);
	fuse_reply_none(req);
}

void ks_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *in = inode_get(d, ino);
	struct stat stbuf;

	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	fill_attr(d, in, &stbuf);
	fuse_reply_attr(req, &stbuf, attr_timeout(d, in));
	inode_put(d, in);
}

/* chmod and chown of a state: its owner (or root) may; only root gives it
 * away to another user. */
static int set_state_owner(struct ks_state *st, const struct fuse_ctx *ctx,
			   struct stat *attr, int to_set)
{
	struct ks_state_attr sa;

	ks_state_get_attr(st, &sa);
	if (ctx->uid != 0 && ctx->uid != sa.uid)
		return EPERM;
	if (to_set & FUSE_SET_ATTR_UID) {
		if (ctx->uid != 0 && attr->st_uid != sa.uid)
			return EPERM;
		sa.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID)
		sa.gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_MODE)
		sa.mode = attr->st_mode & 07777;
	clock_gettime(CLOCK_REALTIME, &sa.ctime);
	return ks_state_set_attr(st, &sa);
}

/* truncate(2) of data by path, or of a file opened read-only: a commit of
 * its own, applied to the latest version. */
static int truncate_data(struct ks_state *st, off_t size)
{
	struct ks_txn *txn;
	int err = ks_txn_begin(st, KS_TXN_PATCH, false, NULL, &txn);

	if (err)
		return err;
	err = ks_txn_truncate(txn, size);
	if (!err)
		err = ks_txn_commit(txn, NULL);
	ks_txn_unref(txn);
	return err;
}

static int setattr_inode(struct ks_daemon *d, fuse_req_t req,
			 struct ks_inode *in, struct stat *attr, int to_set,
			 struct fuse_file_info *fi)
{
	const int owner_bits = FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
			       FUSE_SET_ATTR_GID;
	struct ks_fh *fh = fi ? fh_of(fi) : NULL;

	switch (in->role) {
	case ROLE_ROOT:
		return (to_set & (owner_bits | FUSE_SET_ATTR_SIZE)) ? EPERM : 0;
	case ROLE_STATE:
		if (to_set & FUSE_SET_ATTR_SIZE)
			return EISDIR;
		if (to_set & owner_bits)
			return set_state_owner(in->st, fuse_req_ctx(req), attr,
					       to_set);
		return 0;
	case ROLE_DATA:
		if (to_set & owner_bits)
			return EPERM;
		if (!(to_set & FUSE_SET_ATTR_SIZE))
			return 0;
		if (fh && fh->kind == FH_DATA_TXN) {
			int err = ks_txn_truncate(fh->txn, attr->st_size);

			pthread_mutex_lock(&fh->lock);
			if (err == EFBIG)
				ks_txn_set_error(fh->txn, err);
			else if (!err)
				fh->wrote = true;
			pthread_mutex_unlock(&fh->lock);
			return err;
		}
		return truncate_data(in->st, attr->st_size);
	case ROLE_VERSION:
		if (to_set & FUSE_SET_ATTR_SIZE)
			return EACCES;
		return (to_set & owner_bits) ? EPERM : 0;
	case ROLE_MEMBER:
		if (to_set & owner_bits)
			return EPERM;
		if (to_set & FUSE_SET_ATTR_SIZE) {
			struct ks_txn *txn;
			int err = fh && fh->txn
				? 0 : ks_multi_join(in->multi, in->st, &txn);

			if (err)
				return err;
			if (fh && fh->txn)
				return ks_txn_truncate(fh->txn, attr->st_size);
			err = ks_txn_truncate(txn, attr->st_size);
			ks_txn_unref(txn);
			return err;
		}
		return 0;
	case ROLE_TXN:
		if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
			      FUSE_SET_ATTR_MODE)) {
			uid_t uid;
			gid_t gid;
			mode_t mode;

			const struct fuse_ctx *ctx = fuse_req_ctx(req);

			ks_txn_owner(in->txn, &uid, &gid, &mode);
			/* Its owner (or root) may; only root gives it away. */
			if (ctx->uid != 0 && ctx->uid != uid)
				return EPERM;
			if ((to_set & FUSE_SET_ATTR_UID) && ctx->uid != 0 &&
			    attr->st_uid != uid)
				return EPERM;
			if (to_set & FUSE_SET_ATTR_UID)
				uid = attr->st_uid;
			if (to_set & FUSE_SET_ATTR_GID)
				gid = attr->st_gid;
			if (to_set & FUSE_SET_ATTR_MODE)
				mode = attr->st_mode;
			ks_txn_set_owner(in->txn, uid, gid, mode);
			in->uid = uid;
			in->gid = gid;
			in->mode = mode & 07777;
		}
		if (to_set & FUSE_SET_ATTR_SIZE)
			return ks_txn_truncate(in->txn, attr->st_size);
		return 0;
	case ROLE_VIEW_DATA:
	case ROLE_VIEW_VERSION:
	case ROLE_EVENTS:
	case ROLE_STATS:
		if (to_set & FUSE_SET_ATTR_SIZE)
			return EACCES;
		return (to_set & owner_bits) ? EPERM : 0;
	default:
		return (to_set & (owner_bits | FUSE_SET_ATTR_SIZE)) ? EPERM : 0;
	}
}

void ks_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		   int to_set, struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *in = inode_get(d, ino);
	struct stat stbuf;
	int err;

	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (in->st && ks_state_deleted(in->st))
		err = ENOENT;
	else
		err = setattr_inode(d, req, in, attr, to_set, fi);
	if (err) {
		fuse_reply_err(req, err);
	} else {
		fill_attr(d, in, &stbuf);
		fuse_reply_attr(req, &stbuf, attr_timeout(d, in));
	}
	inode_put(d, in);
}

void ks_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode)
{
	struct ks_daemon *d = daemon_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct ks_inode *dir = inode_get(d, parent), *in;
	struct ks_state_attr sa;
	struct ks_state *st;
	int err;

	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (dir->role == ROLE_TXN_ROOT || dir->role == ROLE_COMMIT_DIR ||
	    dir->role == ROLE_MULTI) {
		err = multi_mkdir(d, dir, name, &in);
		inode_put(d, dir);
		if (err)
			fuse_reply_err(req, err);
		else
			reply_entry(d, req, in);
		return;
	}
	if (dir->role != ROLE_ROOT) {
		/* Directories inside a state are not a thing. */
		fuse_reply_err(req, dir->role == ROLE_STATE ||
				    dir->role == ROLE_EVERY ||
				    dir->role == ROLE_VIEW ? EPERM : ENOTDIR);
		inode_put(d, dir);
		return;
	}
	if (root_entry(name)) {
		fuse_reply_err(req, EEXIST);
		inode_put(d, dir);
		return;
	}
	inode_put(d, dir);
	sa.uid = ctx->uid;
	sa.gid = ctx->gid;
	sa.mode = mode & ~ctx->umask & 07777;
	clock_gettime(CLOCK_REALTIME, &sa.ctime);
	err = ks_state_create(d->eng, name, &sa, &st);
	if (err) {
		fuse_reply_err(req, err == ENAMETOOLONG ? EINVAL : err);
		return;
	}
	events_wake(d);
	in = inode_lookup_state(d, st, ROLE_STATE);
	ks_state_unref(st);
	if (in)
		reply_entry(d, req, in);
	else
		fuse_reply_err(req, ENOMEM);
}

void ks_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *dir = inode_get(d, parent);
	struct ks_state *st;
	int err;

	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (dir->role == ROLE_ROOT && root_entry(name)) {
		err = EPERM;
	} else if (dir->role == ROLE_ROOT) {
		err = ks_state_lookup(d->eng, name, &st);
		if (!err) {
			uint64_t id = ks_state_id(st);

			err = ks_state_delete(d->eng, name);
			/* The kernel sends release after close has returned:
			 * a program that closes its last file and removes the
			 * state at once may get here first.  Give releases
			 * in flight a moment before calling the state busy. */
			for (int i = 0; err == EBUSY && i < 50; i++) {
				usleep(1000);
				err = ks_state_delete(d->eng, name);
			}
			if (!err) {
				pthread_mutex_lock(&d->inode_lock);
				u64map_del(&d->data_ino, id);
				pthread_mutex_unlock(&d->inode_lock);
				events_wake(d);
			}
			ks_state_unref(st);
		}
	} else if (dir->role == ROLE_TXN_ROOT || dir->role == ROLE_MULTI ||
		   dir->role == ROLE_COMMIT_DIR) {
		err = multi_rmdir(d, dir, name);
	} else if (dir->role == ROLE_EVERY) {
		err = EPERM;
	} else if (dir->role == ROLE_STATE && strcmp(name, "every") == 0) {
		err = EPERM;
	} else if (dir->role == ROLE_STATE) {
		struct ks_txn *txn;

		if (is_fixed_name(name) ||
		    ks_txn_find(dir->st, name, &txn) == 0) {
			if (!is_fixed_name(name))
				ks_txn_unref(txn);
			err = ENOTDIR;
		} else {
			err = ENOENT;
		}
	} else {
		err = ENOTDIR;
	}
	inode_put(d, dir);
	fuse_reply_err(req, err);
}

void ks_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *dir = inode_get(d, parent);
	int err;

	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (dir->role == ROLE_STATE) {
		/* rm T aborts the transaction. */
		err = is_fixed_name(name) ? EPERM : ks_txn_unlink(dir->st, name);
	} else if (dir->role == ROLE_ROOT) {
		err = root_entry(name) ? EPERM : EISDIR;
	} else if (dir->role == ROLE_TXN_ROOT || dir->role == ROLE_MULTI ||
		   dir->role == ROLE_COMMIT_DIR) {
		err = multi_unlink(d, dir, name);
	} else if (dir->role == ROLE_EVERY || dir->role == ROLE_VIEW) {
		err = EPERM;
	} else {
		err = ENOTDIR;
	}
	inode_put(d, dir);
	fuse_reply_err(req, err);
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

static int rename_in_state(struct ks_daemon *d, struct ks_state *st,
			   const char *name, const char *newname,
			   unsigned int flags)
{
	struct ks_txn *txn;

	if (is_fixed_name(name) || strcmp(newname, "version") == 0)
		return EPERM;
	if (ks_txn_find(st, name, &txn))
		return ENOENT;
	ks_txn_unref(txn);
	if (strcmp(newname, "data") == 0)
		return (flags & RENAME_NOREPLACE) ? EEXIST
						  : commit_by_rename(d, st, name);
	if ((flags & RENAME_NOREPLACE) && ks_txn_find(st, newname, &txn) == 0) {
		ks_txn_unref(txn);
		return EEXIST;
	}
	return ks_txn_rename(st, name, newname);
}

void ks_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		  fuse_ino_t newparent, const char *newname,
		  unsigned int flags)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *from = inode_get(d, parent);
	struct ks_inode *to = inode_get(d, newparent);
	int err;

	if (!from || !to)
		err = ESTALE;
	else if (flags & RENAME_EXCHANGE)
		err = EINVAL;
	else if (flags & ~(unsigned)RENAME_NOREPLACE)
		err = EINVAL;
	else if (from->role == ROLE_TXN_ROOT || to->role == ROLE_COMMIT_DIR)
		err = multi_rename(d, from, name, to, newname);
	else if (from->role == ROLE_ROOT && to->role == ROLE_ROOT)
		err = root_entry(name) || root_entry(newname)
			? EPERM : ks_state_rename(d->eng, name, newname);
	else if (from->role == ROLE_STATE && to->role == ROLE_STATE)
		/* Never EXDEV across states: mv would fall back to copying
		 * and turn a commit into a blind write. */
		err = from->st != to->st ? EPERM
					 : rename_in_state(d, from->st, name,
							   newname, flags);
	else
		err = EPERM;
	if (err == ENAMETOOLONG)
		err = EINVAL;
	if (!err && from->role == ROLE_ROOT)
		events_wake(d);
	inode_put(d, from);
	inode_put(d, to);
	fuse_reply_err(req, err);
}

void ks_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode, dev_t rdev)
{
	struct ks_daemon *d = daemon_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct ks_inode *dir = inode_get(d, parent), *in = NULL;
	struct ks_txn *txn;
	int err = EPERM;

	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	/* A regular file made by mknod is a transaction like any other. */
	if (dir->role == ROLE_STATE && S_ISREG(mode)) {
		err = is_fixed_name(name)
			      ? EEXIST
			      : ks_txn_begin(dir->st, KS_TXN_CHECKED, false,
					     name, &txn);
		if (!err) {
			mode_t perm = mode & ~ctx->umask & 07777;

			ks_txn_set_owner(txn, ctx->uid, ctx->gid, perm);
			in = inode_lookup_txn(d, txn, ctx->uid, ctx->gid, perm);
			ks_txn_unref(txn);
			if (!in) {
				ks_txn_unlink(dir->st, name);
				err = ENOMEM;
			}
		}
	} else if (dir->role == ROLE_MULTI) {
		/* Members are the existing states only. */
		err = ENOENT;
	}
	inode_put(d, dir);
	if (in)
		reply_entry(d, req, in);
	else
		fuse_reply_err(req, err);
}

void ks_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		   const char *name)
{
	fuse_reply_err(req, EPERM);
}

void ks_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		const char *newname)
{
	fuse_reply_err(req, EPERM);
}

void ks_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct ks_daemon *d = daemon_of(req);
	const struct ks_engine_config *cfg = ks_engine_config(d->eng);
	struct ks_engine_stats s;
	struct statvfs sv;

	ks_engine_stats(d->eng, &s);
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = ((uint64_t)cfg->max_states * cfg->max_size) / 4096;
	sv.f_bfree = sv.f_blocks - (s.bytes + 4095) / 4096;
	sv.f_bavail = sv.f_bfree;
	sv.f_files = cfg->max_states;
	sv.f_ffree = cfg->max_states - s.states;
	sv.f_favail = sv.f_ffree;
	sv.f_namemax = KS_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}
