/*
 * Open files: making, replying to open, freeing.
 */
#include "daemon.h"

#include <stdlib.h>
#include <string.h>

struct ks_fh *fh_new(struct ks_inode *in)
{
	struct ks_fh *fh = calloc(1, sizeof(*fh));

	if (!fh)
		return NULL;
	fh->inode = in;
	ks_lock_init(&fh->lock, "fh->lock", KS_RANK_FS_HANDLE);
	return fh;
}

void fh_free(struct ks_daemon *d, struct ks_fh *fh)
{
	open_files_remove(d, &fh->open);
	if (fh->fops->destroy)
		fh->fops->destroy(d, fh);
	if (!fh->fops->uncounted && fh->inode->st)
		ks_state_close_file(fh->inode->st);
	ks_page_unref(fh->pinned);
	ks_txn_unref(fh->txn);
	inode_put(d, fh->inode);
	ks_lock_destroy(&fh->lock);
	free(fh);
}

void fh_discard(struct ks_daemon *d, struct ks_fh *fh)
{
	ks_txn_unref(fh->txn);
	ks_lock_destroy(&fh->lock);
	inode_put(d, fh->inode);
	free(fh);
}

void reply_open(struct ks_daemon *d, fuse_req_t req,
		struct fuse_file_info *fi, struct ks_fh *fh,
		struct ks_inode *created)
{
	fi->fh = (uintptr_t)fh;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fi->nonseekable = fh->fops->stream;
	fi->noflush = fh->fops->flush == NULL;
	/* Before the reply: its release may come at once. */
	open_files_add_file(d, &fh->open);
	if (created) {
		struct fuse_entry_param e;

		memset(&e, 0, sizeof(e));
		e.ino = created->ino;
		fill_attr(d, created, &e.attr);
		e.attr_timeout = attr_timeout(d, created);
		e.entry_timeout = d->timeout;
		if (fuse_reply_create(req, &e, fi) != 0) {
			inode_forget(d, created->ino, 1);
			fh_free(d, fh);
		}
	} else if (fuse_reply_open(req, fi) != 0) {
		fh_free(d, fh);
	}
}
