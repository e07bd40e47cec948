/*
 * The FUSE entry points.  Each finds its inode, does what is the same for
 * every kind of file, and calls the inode's kind (ks_kinds) or the open
 * file's operations (fh->fops): no kind is named here.
 */
#include "daemon.h"

#include <errno.h>
#include <linux/fs.h>
#include <poll.h>
#include <string.h>

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* O_TRUNC comes with open, so `echo x > data` is one transaction
	 * and not a truncate followed by a write. */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~(unsigned)(FUSE_CAP_WRITEBACK_CACHE |
				  FUSE_CAP_AUTO_INVAL_DATA);
}

static void op_destroy(void *userdata)
{
}

/* The inode of a request, or NULL after replying ESTALE. */
static struct ks_inode *req_inode(fuse_req_t req, fuse_ino_t ino)
{
	struct ks_inode *in = inode_get(daemon_of(req), ino);

	if (!in)
		fuse_reply_err(req, ESTALE);
	return in;
}

static bool state_gone(const struct ks_inode *in)
{
	return in->st && ks_state_deleted(in->st);
}

/* Replies to a call that may have made an inode. */
static void reply_made(struct ks_daemon *d, fuse_req_t req, int err,
		       struct ks_inode *in)
{
	if (err)
		fuse_reply_err(req, err);
	else
		reply_entry(d, req, in);
}

static void reply_negative(struct ks_daemon *d, fuse_req_t req,
			   const struct ks_kind_ops *dir_kind)
{
	struct fuse_entry_param e;

	/* Names change only through this mount, so the kernel may remember
	 * that one does not exist, unless the directory says otherwise. */
	memset(&e, 0, sizeof(e));
	e.entry_timeout = dir_kind->uncached_negative ? 0 : d->timeout;
	fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *dir = req_inode(req, parent), *in = NULL;
	const struct ks_kind_ops *k;
	int err;

	if (!dir)
		return;
	k = kind_of(dir->role);
	if (!k->lookup)
		err = ENOTDIR;
	else if (strlen(name) > KS_NAME_MAX)
		/* The kernel passes on names far past NAME_MAX, which
		 * statfs promises (KS_NAME_MAX): refuse them as a local
		 * file system does, whatever the call. */
		err = ENAMETOOLONG;
	else if (state_gone(dir))
		err = ENOENT;
	else
		err = k->lookup(d, dir, name, &in);
	if (err == ENOENT)
		reply_negative(d, req, k);
	else
		reply_made(d, req, err, in);
	inode_put(d, dir);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	inode_forget(daemon_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		inode_forget(daemon_of(req), forgets[i].ino,
			     forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *in = req_inode(req, ino);
	struct stat stbuf;

	if (!in)
		return;
	fill_attr(d, in, &stbuf);
	fuse_reply_attr(req, &stbuf, attr_timeout(d, in));
	inode_put(d, in);
}

/* The owner and mode bits of to_set that would change nothing: cp -p,
 * tar x and rsync set the mode and owner a file has already, and a file
 * whose mode or owner cannot change (data follows its state's) must not
 * fail them for it. */
static int unchanged_owner_bits(struct ks_daemon *d, struct ks_inode *in,
				const struct stat *attr, int to_set)
{
	struct stat now;
	int same = 0;

	if (!(to_set & SETATTR_OWNER_BITS))
		return 0;
	fill_attr(d, in, &now);
	if ((to_set & FUSE_SET_ATTR_MODE) &&
	    (attr->st_mode & 07777) == (now.st_mode & 07777))
		same |= FUSE_SET_ATTR_MODE;
	if ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid == now.st_uid)
		same |= FUSE_SET_ATTR_UID;
	if ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid == now.st_gid)
		same |= FUSE_SET_ATTR_GID;
	return same;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *in = req_inode(req, ino);
	const struct ks_kind_ops *k;
	struct stat stbuf;
	int err;

	if (!in)
		return;
	k = kind_of(in->role);
	to_set &= ~unchanged_owner_bits(d, in, attr, to_set);
	if (state_gone(in))
		err = ENOENT;
	else if (!k->setattr)
		err = setattr_fixed(to_set);
	else
		/* A directory's fi->fh is its listing, not a ks_fh. */
		err = k->setattr(d, req, in, attr, to_set,
				 fi && k->type != S_IFDIR ? fh_of(fi) : NULL);
	if (err) {
		fuse_reply_err(req, err);
	} else {
		fill_attr(d, in, &stbuf);
		fuse_reply_attr(req, &stbuf, attr_timeout(d, in));
	}
	inode_put(d, in);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *dir = req_inode(req, parent), *in = NULL;
	const struct ks_kind_ops *k;
	int err;

	if (!dir)
		return;
	k = kind_of(dir->role);
	if (k->mkdir)
		err = k->mkdir(d, req, dir, name, mode, &in);
	else
		/* Directories inside a state are not a thing. */
		err = k->type == S_IFDIR ? EPERM : ENOTDIR;
	inode_put(d, dir);
	reply_made(d, req, err, in);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *dir = req_inode(req, parent), *in = NULL;
	const struct ks_kind_ops *k;
	int err;

	if (!dir)
		return;
	k = kind_of(dir->role);
	err = k->mknod ? k->mknod(d, req, dir, name, mode, &in) : EPERM;
	inode_put(d, dir);
	reply_made(d, req, err, in);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *dir = req_inode(req, parent);
	const struct ks_kind_ops *k;
	int err;

	if (!dir)
		return;
	k = kind_of(dir->role);
	err = k->rmdir ? k->rmdir(d, req, dir, name) : ENOTDIR;
	inode_put(d, dir);
	fuse_reply_err(req, err);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *dir = req_inode(req, parent);
	const struct ks_kind_ops *k;
	int err;

	if (!dir)
		return;
	k = kind_of(dir->role);
	err = k->unlink ? k->unlink(d, req, dir, name) : ENOTDIR;
	inode_put(d, dir);
	fuse_reply_err(req, err);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *from = inode_get(d, parent);
	struct ks_inode *to = inode_get(d, newparent);
	const struct ks_kind_ops *k = from ? kind_of(from->role) : NULL;
	int err;

	if (!from || !to)
		err = ESTALE;
	else if (flags & RENAME_EXCHANGE)
		err = EINVAL;
	else if (flags & ~(unsigned)RENAME_NOREPLACE)
		err = EINVAL;
	else if (!k->rename)
		err = EPERM;
	else
		err = k->rename(d, req, from, name, to, newname, flags);
	if (err == ENAMETOOLONG)
		err = EINVAL;
	inode_put(d, from);
	inode_put(d, to);
	fuse_reply_err(req, err);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	fuse_reply_err(req, EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	fuse_reply_err(req, EPERM);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *in = req_inode(req, ino);
	const struct ks_kind_ops *k;
	struct ks_listing *l;
	int err = 0;

	if (!in)
		return;
	k = kind_of(in->role);
	l = listing_new(req);
	if (l) {
		listing_add(l, ".", in->ino, S_IFDIR);
		listing_add(l, "..", FUSE_ROOT_ID, S_IFDIR);
		if (state_gone(in))
			err = ENOENT;
		else if (!k->list)
			err = ENOTDIR;
		else
			k->list(d, in, l);
	}
	err = !l ? ENOMEM : err ? err : listing_error(l);
	if (err) {
		fuse_reply_err(req, err);
		listing_free(l);
		inode_put(d, in);
		return;
	}
	listing_reply_open(d, req, fi, l, in);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	listing_read(req, fi, size, off);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	listing_release(daemon_of(req), fi);
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct ks_daemon *d = daemon_of(req);
	const struct ks_engine_config *cfg = ks_engine_config(d->eng);
	struct ks_engine_stats s;
	struct statvfs sv;
	uint64_t used;

	ks_engine_stats(d->eng, &s);
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = ((uint64_t)cfg->max_states * cfg->max_size) / 4096;
	/* Other hosts' states and pages may pass this host's limits (and a
	 * store written under larger ones): then nothing is free. */
	used = (s.bytes + 4095) / 4096;
	sv.f_bfree = used < sv.f_blocks ? sv.f_blocks - used : 0;
	sv.f_bavail = sv.f_bfree;
	sv.f_files = cfg->max_states;
	sv.f_ffree = s.states < cfg->max_states ? cfg->max_states - s.states : 0;
	sv.f_favail = sv.f_ffree;
	sv.f_namemax = KS_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *dir = req_inode(req, parent), *in = NULL;
	const struct ks_kind_ops *k;
	struct ks_fh *fh = NULL;
	int err;

	if (!dir)
		return;
	k = kind_of(dir->role);
	/* No regular files outside states. */
	err = k->create ? k->create(d, req, dir, name, mode, fi, &in, &fh)
			: EPERM;
	inode_put(d, dir);
	if (err)
		fuse_reply_err(req, err);
	else
		reply_open(d, req, fi, fh, in);
}

static void op_open(fuse_req_t req, fuse_ino_t ino,
		    struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *in = req_inode(req, ino);
	const struct ks_kind_ops *k;
	struct ks_fh *fh;
	int err;

	if (!in)
		return;
	k = kind_of(in->role);
	if (k->type == S_IFDIR || !k->open) {
		fuse_reply_err(req, k->type == S_IFDIR ? EISDIR : EINVAL);
		inode_put(d, in);
		return;
	}
	fh = fh_new(in);
	if (!fh) {
		fuse_reply_err(req, ENOMEM);
		inode_put(d, in);
		return;
	}
	err = k->open(d, req, in, fi, fh);
	if (!err && !fh->fops->uncounted && in->st)
		err = ks_state_open_file(in->st);
	if (err) {
		fh_discard(d, fh);
		fuse_reply_err(req, err);
		return;
	}
	reply_open(d, req, fi, fh, NULL);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct ks_fh *fh = fh_of(fi);

	if (fh->fops->read)
		fh->fops->read(daemon_of(req), req, fh, size, off, fi);
	else
		fuse_reply_err(req, EBADF);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct ks_fh *fh = fh_of(fi);

	if (fh->fops->write)
		fh->fops->write(daemon_of(req), req, fh, buf, size, off);
	else
		fuse_reply_err(req, EBADF);
}

static int flush_fh(fuse_req_t req, struct ks_fh *fh)
{
	return fh->fops->flush ? fh->fops->flush(daemon_of(req), fh) : 0;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino,
		     struct fuse_file_info *fi)
{
	fuse_reply_err(req, flush_fh(req, fh_of(fi)));
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct ks_fh *fh = fh_of(fi);

	/* Transactions are never persisted: fsync of one is a no-op. */
	if (fh->fops->fsync)
		fuse_reply_err(req, fh->fops->fsync(daemon_of(req), fh));
	else
		fuse_reply_err(req, flush_fh(req, fh));
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_fh *fh = fh_of(fi);

	if (fh->fops->release)
		fh->fops->release(d, fh);
	fh_free(d, fh);
	fuse_reply_err(req, 0);
}

static void op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct fuse_pollhandle *ph)
{
	struct ks_fh *fh = fh_of(fi);

	if (fh->fops->poll) {
		fh->fops->poll(daemon_of(req), req, fh, ph);
		return;
	}
	/* Nothing to wait for: answer at once. */
	if (ph)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM);
}

/* Extended attributes are not supported (SPEC 4: ENOTSUP).  Answering
 * ENOSYS says so once for the whole connection: the kernel then fails
 * every xattr call with EOPNOTSUPP (ENOTSUP's value) by itself.  Above
 * all it stops asking for security.capability before every truncating
 * open (`echo x > T`, an O_TRUNC member of .txn/T): a round trip each. */
static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	fuse_reply_err(req, ENOSYS);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	fuse_reply_err(req, ENOSYS);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	fuse_reply_err(req, ENOSYS);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, ENOSYS);
}

const struct fuse_lowlevel_ops ks_ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.mkdir = op_mkdir,
	.rmdir = op_rmdir,
	.unlink = op_unlink,
	.rename = op_rename,
	.mknod = op_mknod,
	.symlink = op_symlink,
	.link = op_link,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.statfs = op_statfs,
	.create = op_create,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.fsync = op_fsync,
	.release = op_release,
	.poll = op_poll,
	.getxattr = op_getxattr,
	.setxattr = op_setxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
};
