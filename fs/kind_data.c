/*
 * NAME/data: the state's page.  A read-only open reads one whole version,
 * taken at offset 0; any open for writing is a transaction, committed by
 * each close (flush) or fsync that follows a write.
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>

#include "views.h"

static void data_getattr(struct ks_daemon *d, struct ks_inode *in,
			 struct stat *stbuf)
{
	struct ks_state_attr sa;
	struct ks_page *page = ks_state_current(in->st);

	attr_of_state(in, stbuf, &sa);
	attr_of_page(page, stbuf);
	stbuf->st_mode = S_IFREG | (sa.mode & 0666);
	stbuf->st_nlink = 1;
	ks_page_unref(page);
}

/* A retired data inode (replaced by mv T data) lives on for the files
 * open on it; others may change it, so it is never cached. */
static double data_attr_timeout(struct ks_daemon *d, struct ks_inode *in)
{
	return in->ino != inode_data_ino(d, in->st) ? 0 : d->timeout;
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

static const struct ks_file_ops data_write_fops;

static int data_setattr(struct ks_daemon *d, fuse_req_t req,
			struct ks_inode *in, struct stat *attr, int to_set,
			struct ks_fh *fh)
{
	int err;

	if (to_set & SETATTR_OWNER_BITS)
		return EPERM;
	if (!(to_set & FUSE_SET_ATTR_SIZE))
		return 0;
	if (!fh || fh->fops != &data_write_fops)
		return truncate_data(in->st, attr->st_size);
	/* ftruncate of a file open for writing: part of its transaction. */
	err = ks_txn_truncate(fh->txn, attr->st_size);
	ks_lock(&fh->lock);
	if (err == EFBIG)
		ks_txn_set_error(fh->txn, err);
	else if (!err)
		fh->wrote = true;
	ks_unlock(&fh->lock);
	return err;
}

static void reply_page(fuse_req_t req, struct ks_page *page, size_t size,
		       off_t off)
{
	size_t n = 0;

	if (off >= 0 && (size_t)off < page->len) {
		n = page->len - (size_t)off;
		if (n > size)
			n = size;
	}
	fuse_reply_buf(req, n ? (const char *)page->bytes + off : NULL, n);
}

void data_read_pinned(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		      size_t size, off_t off, struct fuse_file_info *fi)
{
	struct ks_page *page;

	/* Offset 0 takes the latest version (of the state, or of its view);
	 * later offsets go on in the pinned one, so a reader sees one whole
	 * version. */
	ks_lock(&fh->lock);
	if (off == 0 || !fh->pinned) {
		ks_page_unref(fh->pinned);
		fh->pinned = fh->inode->view ? view_shown(fh->inode->view)
					     : ks_state_current(fh->inode->st);
	}
	page = ks_page_ref(fh->pinned);
	ks_unlock(&fh->lock);
	reply_page(req, page, size, off);
	ks_page_unref(page);
}

static const struct ks_file_ops data_read_fops = {
	.read = data_read_pinned,
};

static void data_read_txn(struct ks_daemon *d, fuse_req_t req,
			  struct ks_fh *fh, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	txn_fops.read(d, req, fh, size, off, fi);
}

static void data_write(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		       const char *buf, size_t size, off_t off)
{
	int err = ks_txn_write(fh->txn, buf, size, off);

	if (err) {
		/* A file on which a write failed commits nothing. */
		ks_txn_set_error(fh->txn, err);
		fuse_reply_err(req, err);
		return;
	}
	ks_lock(&fh->lock);
	fh->wrote = true;
	ks_unlock(&fh->lock);
	fuse_reply_write(req, size);
}

/* Commits what an open data file wrote: at close and at fsync.
 *
 * A shell running `echo 42 > data` opens the file, dup2s it onto standard
 * output and closes the original first: that close flushes before anything
 * is written.  So a flush commits only what was written; the emptiness of
 * an O_TRUNC open alone (`: > data`) is committed at release, when the
 * last descriptor is gone. */
/* Where a commit of an open data file comes from. */
enum commit_at { AT_FSYNC, AT_FLUSH, AT_RELEASE };

static int commit_data(struct ks_fh *fh, enum commit_at at)
{
	int err = ks_txn_error(fh->txn);

	if (err)
		return err;
	ks_lock(&fh->lock);
	/* A close that failed to commit owes its error to the next fsync or
	 * close of this open file: the close may have been another
	 * process's, holding an inherited copy, while this one's writes went
	 * with it; committing what it writes next over the latest version
	 * would be half an update, and answering 0 a lost one. */
	if (fh->owed && at != AT_RELEASE) {
		err = fh->owed;
		fh->owed = 0;
		if (fh->wrote)
			ks_txn_discard(fh->txn);
		fh->wrote = false;
		ks_unlock(&fh->lock);
		return err;
	}
	if (!fh->wrote && (at != AT_RELEASE || fh->committed ||
			   !ks_txn_written(fh->txn))) {
		ks_unlock(&fh->lock);
		return 0;
	}
	err = ks_txn_commit(fh->txn, NULL);
	if (!err) {
		fh->committed = true;
	} else {
		/* A failed commit's writes are discarded and the file goes
		 * on based on the latest version (SPEC 4.1), so that pread,
		 * pwrite, fsync is a compare-and-swap loop.  Never commit
		 * them again at the next flush or at release: with --etcd a
		 * commit that failed with ETIMEDOUT or EIO may have been
		 * applied, and a blind write sent again then lands twice,
		 * after its close has returned the error. */
		ks_txn_discard(fh->txn);
		if (at == AT_FLUSH)
			fh->owed = err;
	}
	fh->wrote = false;
	ks_unlock(&fh->lock);
	return err;
}

static int data_flush(struct ks_daemon *d, struct ks_fh *fh)
{
	return commit_data(fh, AT_FLUSH);
}

static int data_fsync(struct ks_daemon *d, struct ks_fh *fh)
{
	return commit_data(fh, AT_FSYNC);
}

static void data_release(struct ks_daemon *d, struct ks_fh *fh)
{
	commit_data(fh, AT_RELEASE);
}

static const struct ks_file_ops data_write_fops = {
	.read = data_read_txn,
	.write = data_write,
	.flush = data_flush,
	.fsync = data_fsync,
	.release = data_release,
};

static int data_open(struct ks_daemon *d, fuse_req_t req, struct ks_inode *in,
		     struct fuse_file_info *fi, struct ks_fh *fh)
{
	int acc = fi->flags & O_ACCMODE;
	enum ks_txn_mode mode;

	if (acc == O_RDONLY) {
		fh->fops = &data_read_fops;
		fh->readable = true;
		return 0;
	}
	fh->fops = &data_write_fops;
	fh->readable = acc == O_RDWR;
	if (fi->flags & O_TRUNC)
		mode = KS_TXN_REPLACE;      /* echo 42 > data */
	else if (acc == O_RDWR)
		mode = KS_TXN_CHECKED;      /* its own copy, conflict-checked */
	else if (fi->flags & O_APPEND)
		mode = KS_TXN_APPEND;       /* echo line >> data */
	else
		mode = KS_TXN_PATCH;        /* dd conv=notrunc */
	return ks_txn_begin(in->st, mode, (fi->flags & O_TRUNC) != 0, NULL,
			    &fh->txn);
}

const struct ks_kind_ops kind_data = {
	.type = S_IFREG,
	.getattr = data_getattr,
	.attr_timeout = data_attr_timeout,
	.setattr = data_setattr,
	.open = data_open,
};
