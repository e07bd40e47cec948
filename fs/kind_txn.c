/*
 * NAME/T: a transaction file, made by creating T in a state's directory
 * and committed by `mv T data`.  Until then it is a private copy, its
 * creator's alone (or root's), changed by any of their processes, so its
 * attributes are never cached.
 * Members of .txn/T (kind_multi.c) are opened as these.
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>

static void txn_getattr(struct ks_daemon *d, struct ks_inode *in,
			struct stat *stbuf)
{
	stbuf->st_mode = S_IFREG | (in->mode & 07777);
	stbuf->st_nlink = ks_txn_named(in->txn) ? 1 : 0;
	stbuf->st_uid = in->uid;
	stbuf->st_gid = in->gid;
	attr_set_size(stbuf, (off_t)ks_txn_size(in->txn));
	stbuf->st_mtim = ks_txn_mtime(in->txn);
	stbuf->st_ctim = stbuf->st_mtim;
	stbuf->st_atim = stbuf->st_mtim;
}

/* Its owner (or root) may chmod and chown it: a transaction is private
 * (private_owner_change). */
static int set_txn_owner(struct ks_inode *in, fuse_req_t req,
			 struct stat *attr, int to_set)
{
	uid_t uid;
	gid_t gid;
	mode_t mode;
	int err;

	ks_txn_owner(in->txn, &uid, &gid, &mode);
	err = private_owner_change(req, attr, to_set, &uid, &gid, &mode);
	if (err)
		return err;
	ks_txn_set_owner(in->txn, uid, gid, mode);
	in->uid = uid;
	in->gid = gid;
	in->mode = mode & 07777;
	return 0;
}

/* Whether the caller made the transaction (or is root).  The kernel sees
 * the file's mode too; this holds also where it does not check modes. */
static bool txn_is_callers(fuse_req_t req, struct ks_txn *txn)
{
	uid_t uid;
	gid_t gid;
	mode_t mode;

	ks_txn_owner(txn, &uid, &gid, &mode);
	return caller_owns(req, uid);
}

static int txn_setattr(struct ks_daemon *d, fuse_req_t req,
		       struct ks_inode *in, struct stat *attr, int to_set,
		       struct ks_fh *fh)
{
	if (to_set & SETATTR_OWNER_BITS) {
		int err = set_txn_owner(in, req, attr, to_set);

		if (err)
			return err;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (!txn_is_callers(req, in->txn))
			return EACCES;
		return attr->st_size == 0 ? ks_txn_restart(in->txn) :
			ks_txn_truncate(in->txn, attr->st_size);
	}
	return 0;
}

static void txn_read(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	char *buf;

	if (!fh->readable) {
		fuse_reply_err(req, EBADF);
		return;
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fuse_reply_buf(req, buf, ks_txn_read(fh->txn, buf, size, off));
	free(buf);
}

static void txn_write(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		      const char *buf, size_t size, off_t off)
{
	int err = ks_txn_write(fh->txn, buf, size, off);

	/* A write that failed (EFBIG) may leave half of what was meant:
	 * `echo big > T` writes in pieces, and the first got in.  The
	 * transaction then commits nothing (its commit fails with the
	 * error) until it is written anew from its start. */
	if (err)
		ks_txn_set_error(fh->txn, err);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_write(req, size);
}

const struct ks_file_ops txn_fops = {
	.read = txn_read,
	.write = txn_write,
};

static int txn_open(struct ks_daemon *d, fuse_req_t req, struct ks_inode *in,
		    struct fuse_file_info *fi, struct ks_fh *fh)
{
	int acc = fi->flags & O_ACCMODE;

	if (!txn_is_callers(req, in->txn))
		return EACCES;
	fh->fops = &txn_fops;
	fh->txn = ks_txn_ref(in->txn);
	fh->readable = acc != O_WRONLY;
	if ((fi->flags & O_TRUNC) && acc != O_RDONLY)
		return ks_txn_restart(fh->txn);
	return 0;
}

const struct ks_kind_ops kind_txn = {
	.type = S_IFREG,
	.getattr = txn_getattr,
	.attr_timeout = attr_uncached,
	.setattr = txn_setattr,
	.open = txn_open,
};
