/*
 * NAME/version: the number of the state's latest version, as text.  poll
 * on it waits for the next commit (the sysfs way: POLLPRI, then read from
 * offset 0).  Views' version files (kind_views.c) are opened as these,
 * showing their view's version instead.
 *
 * The only write is the notifier's, which exists for its inotify event.
 */
#include "daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "notifier.h"
#include "views.h"

static void version_getattr(struct ks_daemon *d, struct ks_inode *in,
			    struct stat *stbuf)
{
	struct ks_state_attr sa;
	struct ks_page *page = ks_state_current(in->st);

	attr_of_state(in, stbuf, &sa);
	attr_of_page(page, stbuf);
	stbuf->st_mode = S_IFREG | (sa.mode & 0444);
	stbuf->st_nlink = 1;
	attr_set_size(stbuf, (off_t)version_text_len(page->version));
	ks_page_unref(page);
}

uint64_t version_shown(struct ks_fh *fh)
{
	struct ks_page *page;
	uint64_t v;

	if (!fh->inode->view)
		return ks_state_version(fh->inode->st);
	page = view_shown(fh->inode->view);
	v = page->version;
	ks_page_unref(page);
	return v;
}

/* The poll table key of a version file. */
static uint64_t poll_key(struct ks_fh *fh)
{
	if (fh->inode->view)
		return view_version_key(fh->inode->view);
	return ks_state_id(fh->inode->st);
}

static void version_read(struct ks_daemon *d, fuse_req_t req,
			 struct ks_fh *fh, size_t size, off_t off,
			 struct fuse_file_info *fi)
{
	char text[24];
	size_t len, n = 0;

	ks_lock(&fh->lock);
	if (off == 0 || !fh->text_len) {
		uint64_t v = version_shown(fh);

		fh->text_len = (size_t)snprintf(fh->text, sizeof(fh->text),
						"%" PRIu64 "\n", v);
		atomic_store(&fh->seen, v);
	}
	len = fh->text_len;
	memcpy(text, fh->text, len);
	ks_unlock(&fh->lock);
	if (off >= 0 && (size_t)off < len) {
		n = len - (size_t)off;
		if (n > size)
			n = size;
	}
	fuse_reply_buf(req, text + (n ? off : 0), n);
}

static bool version_ready(struct ks_fh *fh)
{
	return version_shown(fh) > atomic_load(&fh->seen);
}

/* The handle is kept even when the file is ready already: an
 * edge-triggered epoll (EPOLLET) polls only when woken, so a file that
 * answered "ready" without keeping its handle would never be woken
 * again. */
static void version_poll(struct ks_daemon *d, fuse_req_t req,
			 struct ks_fh *fh, struct fuse_pollhandle *ph)
{
	const unsigned ready = POLLIN | POLLRDNORM | POLLPRI;

	if (ph)
		poll_add(d, poll_key(fh), fh, ph);
	/* Checked once the handle is registered: a commit before that is
	 * seen here, one after it wakes the handle. */
	fuse_reply_poll(req, version_ready(fh) ? ready : 0);
}

static void version_destroy(struct ks_daemon *d, struct ks_fh *fh)
{
	poll_remove(d, poll_key(fh), fh);
	/* A reader of a view's version is what keeps the view listed. */
	if (fh->inode->role == ROLE_VIEW_VERSION)
		view_closed(fh->inode->view);
}

void write_denied(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		  const char *buf, size_t size, off_t off)
{
	fuse_reply_err(req, EACCES);
}

const struct ks_file_ops version_fops = {
	.read = version_read,
	.write = write_denied,
	.poll = version_poll,
	.destroy = version_destroy,
};

static void notify_write(struct ks_daemon *d, fuse_req_t req,
			 struct ks_fh *fh, const char *buf, size_t size,
			 off_t off)
{
	fuse_reply_write(req, size);
}

const struct ks_file_ops notify_fops = {
	.write = notify_write,
	.uncounted = true,
};

static int version_open(struct ks_daemon *d, fuse_req_t req,
			struct ks_inode *in, struct fuse_file_info *fi,
			struct ks_fh *fh)
{
	if ((fi->flags & O_ACCMODE) == O_RDONLY) {
		fh->fops = &version_fops;
		fh->readable = true;
		atomic_store(&fh->seen, ks_state_version(in->st));
		return 0;
	}
	if (notifier_is_self(d, fuse_req_ctx(req)->pid)) {
		fh->fops = &notify_fops;
		return 0;
	}
	return EACCES;
}

const struct ks_kind_ops kind_version = {
	.type = S_IFREG,
	.getattr = version_getattr,
	.setattr = setattr_read_only,
	.open = version_open,
};
