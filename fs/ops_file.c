/*
 * Open files: data, version and transaction files.
 *
 * Every file is opened with direct I/O: a read at offset 0 must take the
 * latest version and pin it for this open file, which the kernel's page
 * cache (shared by all opens of an inode) cannot express.  Read-only opens
 * and transaction files ask for no flush, so that close costs no round
 * trip; writes to data commit at flush (close) or fsync.
 */
#include "daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct ks_fh *fh_new(enum ks_fh_kind kind, struct ks_inode *in)
{
	struct ks_fh *fh = calloc(1, sizeof(*fh));

	if (!fh)
		return NULL;
	fh->kind = kind;
	fh->inode = in;
	pthread_mutex_init(&fh->lock, NULL);
	return fh;
}

/* The poll table key of a version file. */
static uint64_t poll_key(struct ks_fh *fh)
{
	if (fh->kind == FH_VIEW_VERSION)
		return view_version_key(fh->inode->view);
	return ks_state_id(fh->inode->st);
}

static void fh_free(struct ks_daemon *d, struct ks_fh *fh)
{
	if (fh->kind == FH_VERSION || fh->kind == FH_VIEW_VERSION)
		poll_remove(d, poll_key(fh), fh);
	if (fh->kind == FH_EVENTS)
		events_release(d, fh);
	pthread_mutex_lock(&fh->lock);   /* a last reply may still be going */
	free(fh->stats);
	pthread_mutex_unlock(&fh->lock);
	if (fh->kind != FH_NOTIFY && fh->inode->st)
		ks_state_close_file(fh->inode->st);
	ks_page_unref(fh->pinned);
	ks_txn_unref(fh->txn);
	inode_put(d, fh->inode);
	pthread_mutex_destroy(&fh->lock);
	free(fh);
}

/* Replies to open/create; on a failed reply (interrupted) the handle is
 * dropped, since no release will come for it. */
static void reply_open(struct ks_daemon *d, fuse_req_t req,
		       struct fuse_file_info *fi, struct ks_fh *fh,
		       struct ks_inode *created)
{
	fi->fh = (uintptr_t)fh;
	fi->direct_io = 1;
	fi->keep_cache = 0;
	/* A stream: the shell's `read` then takes what it needs. */
	fi->nonseekable = fh->kind == FH_EVENTS;
	/* Only a write to data has anything to do at close. */
	fi->noflush = fh->kind != FH_DATA_TXN;
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

void ks_op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		  mode_t mode, struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct ks_inode *dir = inode_get(d, parent), *in;
	mode_t perm = mode & ~ctx->umask & 07777;
	struct ks_txn *txn;
	struct ks_fh *fh;
	int err;

	if (!dir) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (dir->role != ROLE_STATE) {
		/* No regular files at the root; members of .txn/T are the
		 * states that exist. */
		fuse_reply_err(req, dir->role == ROLE_MULTI ? ENOENT : EPERM);
		inode_put(d, dir);
		return;
	}
	if (strcmp(name, "data") == 0 || strcmp(name, "version") == 0)
		err = EEXIST;
	else
		/* A copy of data, or empty with O_TRUNC; and empty with
		 * O_EXCL too: tools that write a new file through a
		 * temporary one (sed -i, cp, mkstemp) make it with O_EXCL
		 * and would otherwise leave the old tail behind. */
		err = ks_txn_begin(dir->st, KS_TXN_CHECKED,
				   (fi->flags & (O_TRUNC | O_EXCL)) != 0, name,
				   &txn);
	if (err) {
		fuse_reply_err(req, err);
		inode_put(d, dir);
		return;
	}
	ks_txn_set_owner(txn, ctx->uid, ctx->gid, perm);
	in = inode_lookup_txn(d, txn, ctx->uid, ctx->gid, perm);
	fh = in ? fh_new(FH_TXN, in) : NULL;
	if (!fh || ks_state_open_file(dir->st)) {
		if (in)
			inode_forget(d, in->ino, 1);
		inode_put(d, in);
		free(fh);
		ks_txn_unlink(dir->st, name);
		ks_txn_unref(txn);
		fuse_reply_err(req, fh ? ENOENT : ENOMEM);
		inode_put(d, dir);
		return;
	}
	inode_put(d, dir);
	/* The inode's reference taken by inode_lookup_txn is the handle's. */
	fh->txn = txn;
	fh->readable = (fi->flags & O_ACCMODE) != O_WRONLY;
	reply_open(d, req, fi, fh, in);
}

static int open_data(struct ks_inode *in, struct fuse_file_info *fi,
		     struct ks_fh *fh)
{
	int acc = fi->flags & O_ACCMODE;
	enum ks_txn_mode mode;

	if (acc == O_RDONLY) {
		fh->kind = FH_DATA_READ;
		fh->readable = true;
		return 0;
	}
	fh->kind = FH_DATA_TXN;
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

void ks_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *in = inode_get(d, ino);
	int acc = fi->flags & O_ACCMODE;
	struct ks_fh *fh;
	int err = 0;

	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (in->role == ROLE_ROOT || in->role == ROLE_STATE ||
	    in->role == ROLE_EVERY || in->role == ROLE_VIEW ||
	    in->role == ROLE_TXN_ROOT || in->role == ROLE_COMMIT_DIR ||
	    in->role == ROLE_MULTI) {
		fuse_reply_err(req, EISDIR);
		inode_put(d, in);
		return;
	}
	fh = fh_new(FH_TXN, in);
	if (!fh) {
		fuse_reply_err(req, ENOMEM);
		inode_put(d, in);
		return;
	}
	switch (in->role) {
	case ROLE_DATA:
		err = open_data(in, fi, fh);
		break;
	case ROLE_VERSION:
		if (acc == O_RDONLY) {
			fh->kind = FH_VERSION;
			fh->readable = true;
			atomic_store(&fh->seen, ks_state_version(in->st));
		} else if (notifier_is_self(d, fuse_req_ctx(req)->pid)) {
			fh->kind = FH_NOTIFY;
		} else {
			err = EACCES;
		}
		break;
	case ROLE_TXN:
		fh->txn = ks_txn_ref(in->txn);
		fh->readable = acc != O_WRONLY;
		if ((fi->flags & O_TRUNC) && acc != O_RDONLY)
			err = ks_txn_truncate(fh->txn, 0);
		break;
	case ROLE_MEMBER:
		err = multi_open(d, in, fi->flags, fh);
		break;
	case ROLE_VIEW_DATA:
		fh->kind = FH_VIEW_DATA;
		fh->readable = true;
		err = acc == O_RDONLY ? 0 : EACCES;
		break;
	case ROLE_VIEW_VERSION:
		if (acc == O_RDONLY) {
			struct ks_page *page = view_shown(in->view);

			fh->kind = FH_VIEW_VERSION;
			fh->readable = true;
			atomic_store(&fh->seen, page->version);
			ks_page_unref(page);
		} else if (notifier_is_self(d, fuse_req_ctx(req)->pid)) {
			fh->kind = FH_NOTIFY;
		} else {
			err = EACCES;
		}
		break;
	case ROLE_EVENTS:
	case ROLE_STATS:
		fh->kind = in->role == ROLE_EVENTS ? FH_EVENTS : FH_STATS;
		fh->readable = true;
		if (acc != O_RDONLY)
			err = EACCES;
		else if (fh->kind == FH_EVENTS)
			events_open(d, fh, fi->flags);
		break;
	default:
		err = EINVAL;
		break;
	}
	if (!err && fh->kind != FH_NOTIFY && in->st)
		err = ks_state_open_file(in->st);
	if (err) {
		ks_txn_unref(fh->txn);
		pthread_mutex_destroy(&fh->lock);
		free(fh);
		inode_put(d, in);
		fuse_reply_err(req, err);
		return;
	}
	reply_open(d, req, fi, fh, NULL);
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

static void reply_txn(fuse_req_t req, struct ks_txn *txn, size_t size,
		      off_t off)
{
	char *buf = malloc(size ? size : 1);

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fuse_reply_buf(req, buf, ks_txn_read(txn, buf, size, off));
	free(buf);
}

/* The version a version file reports: the state's, or its view's. */
static uint64_t shown_version(struct ks_fh *fh)
{
	struct ks_page *page;
	uint64_t v;

	if (fh->kind != FH_VIEW_VERSION)
		return ks_state_version(fh->inode->st);
	page = view_shown(fh->inode->view);
	v = page->version;
	ks_page_unref(page);
	return v;
}

/* .stats: offset 0 takes a fresh text, later offsets continue in it. */
static void read_stats(fuse_req_t req, struct ks_fh *fh, size_t size,
		       off_t off)
{
	size_t n = 0;

	pthread_mutex_lock(&fh->lock);
	if (off == 0 || !fh->stats) {
		free(fh->stats);
		fh->stats = NULL;
		if (stats_text(daemon_of(req), &fh->stats, &fh->stats_len)) {
			pthread_mutex_unlock(&fh->lock);
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	if (off >= 0 && (size_t)off < fh->stats_len) {
		n = fh->stats_len - (size_t)off;
		if (n > size)
			n = size;
	}
	/* The reply is made under the lock that release takes before it
	 * frees the text. */
	fuse_reply_buf(req, n ? fh->stats + off : NULL, n);
	pthread_mutex_unlock(&fh->lock);
}

void ks_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	struct ks_fh *fh = fh_of(fi);
	struct ks_page *page;

	switch (fh->kind) {
	case FH_DATA_READ:
	case FH_VIEW_DATA:
		/* Offset 0 takes the latest version (of the state, or of its
		 * view); later offsets go on in the pinned one, so a reader
		 * sees one whole version. */
		pthread_mutex_lock(&fh->lock);
		if (off == 0 || !fh->pinned) {
			ks_page_unref(fh->pinned);
			fh->pinned = fh->kind == FH_VIEW_DATA
				? view_shown(fh->inode->view)
				: ks_state_current(fh->inode->st);
		}
		page = ks_page_ref(fh->pinned);
		pthread_mutex_unlock(&fh->lock);
		reply_page(req, page, size, off);
		ks_page_unref(page);
		break;
	case FH_VERSION:
	case FH_VIEW_VERSION: {
		char text[24];
		size_t len, n = 0;

		pthread_mutex_lock(&fh->lock);
		if (off == 0 || !fh->text_len) {
			uint64_t v = shown_version(fh);

			fh->text_len = (size_t)snprintf(fh->text,
				sizeof(fh->text), "%" PRIu64 "\n", v);
			atomic_store(&fh->seen, v);
		}
		len = fh->text_len;
		memcpy(text, fh->text, len);
		pthread_mutex_unlock(&fh->lock);
		if (off >= 0 && (size_t)off < len) {
			n = len - (size_t)off;
			if (n > size)
				n = size;
		}
		fuse_reply_buf(req, text + (n ? off : 0), n);
		break;
	}
	case FH_DATA_TXN:
	case FH_TXN:
		if (fh->readable)
			reply_txn(req, fh->txn, size, off);
		else
			fuse_reply_err(req, EBADF);
		break;
	case FH_EVENTS:
		/* The flags of this read: fcntl may have changed them. */
		fh->nonblock = (fi->flags & O_NONBLOCK) != 0;
		events_read(daemon_of(req), req, fh, size);
		break;
	case FH_STATS:
		read_stats(req, fh, size, off);
		break;
	default:
		fuse_reply_err(req, EBADF);
		break;
	}
}

void ks_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		 size_t size, off_t off, struct fuse_file_info *fi)
{
	struct ks_fh *fh = fh_of(fi);
	int err;

	switch (fh->kind) {
	case FH_NOTIFY:
		/* The notifier's write exists only for its inotify event. */
		fuse_reply_write(req, size);
		return;
	case FH_DATA_TXN:
		err = ks_txn_write(fh->txn, buf, size, off);
		if (err) {
			/* A file on which a write failed commits nothing. */
			ks_txn_set_error(fh->txn, err);
			fuse_reply_err(req, err);
			return;
		}
		pthread_mutex_lock(&fh->lock);
		fh->wrote = true;
		pthread_mutex_unlock(&fh->lock);
		fuse_reply_write(req, size);
		return;
	case FH_TXN:
		err = ks_txn_write(fh->txn, buf, size, off);
		if (err)
			fuse_reply_err(req, err);
		else
			fuse_reply_write(req, size);
		return;
	case FH_VERSION:
	case FH_VIEW_VERSION:
	case FH_VIEW_DATA:
		fuse_reply_err(req, EACCES);
		return;
	default:
		fuse_reply_err(req, EBADF);
		return;
	}
}

/* Commits what an open data file wrote: at close and at fsync.
 *
 * A shell running `echo 42 > data` opens the file, dup2s it onto standard
 * output and closes the original first: that close flushes before anything
 * is written.  So a flush commits only what was written; the emptiness of
 * an O_TRUNC open alone (`: > data`) is committed at release, when the
 * last descriptor is gone. */
static int commit_data(struct ks_fh *fh, bool releasing)
{
	int err = ks_txn_error(fh->txn);

	if (err)
		return err;
	pthread_mutex_lock(&fh->lock);
	if (!fh->wrote && (!releasing || fh->committed ||
			   !ks_txn_written(fh->txn))) {
		pthread_mutex_unlock(&fh->lock);
		return 0;
	}
	err = ks_txn_commit(fh->txn, NULL);
	if (!err) {
		fh->wrote = false;
		fh->committed = true;
	}
	pthread_mutex_unlock(&fh->lock);
	return err;
}

void ks_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ks_fh *fh = fh_of(fi);

	fuse_reply_err(req, fh->kind == FH_DATA_TXN ? commit_data(fh, false)
						    : 0);
}

void ks_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi)
{
	struct ks_fh *fh = fh_of(fi);

	/* Transactions are never persisted: fsync of one is a no-op. */
	fuse_reply_err(req, fh->kind == FH_DATA_TXN ? commit_data(fh, false)
						    : 0);
}

void ks_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ks_fh *fh = fh_of(fi);

	if (fh->kind == FH_DATA_TXN)
		commit_data(fh, true);
	fh_free(daemon_of(req), fh);
	fuse_reply_err(req, 0);
}

static bool version_ready(struct ks_fh *fh)
{
	return shown_version(fh) > atomic_load(&fh->seen);
}

void ks_op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		struct fuse_pollhandle *ph)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_fh *fh = fh_of(fi);
	const unsigned ready = POLLIN | POLLRDNORM | POLLPRI;

	if (fh->kind == FH_EVENTS) {
		events_poll(d, req, fh, ph);
		return;
	}
	if (fh->kind != FH_VERSION && fh->kind != FH_VIEW_VERSION) {
		/* Nothing to wait for: answer at once. */
		if (ph)
			fuse_pollhandle_destroy(ph);
		fuse_reply_poll(req, POLLIN | POLLOUT | POLLRDNORM |
				     POLLWRNORM);
		return;
	}
	if (version_ready(fh)) {
		if (ph)
			fuse_pollhandle_destroy(ph);
		fuse_reply_poll(req, ready);
		return;
	}
	if (ph)
		poll_add(d, poll_key(fh), fh, ph);
	/* A commit between the check and poll_add found no handle: look
	 * again now that it is registered. */
	fuse_reply_poll(req, version_ready(fh) ? ready : 0);
}
