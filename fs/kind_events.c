/*
 * .events: the stream of lines about commits and states (core/events.h),
 * read from the end it had when opened.
 *
 * A read of .events with nothing to return does not hold a thread: the
 * request is parked and answered when an event comes, or with EINTR when
 * the reader is interrupted (a signal: the kernel sends an interrupt).
 * Lines are handed out whole where they fit; a reader that asks for less
 * (a shell's `read` takes one byte at a time from a file it cannot seek)
 * gets the rest of the line on its next reads.
 */
#include "daemon.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"

struct parked_read {
	struct parked_read *next;
	fuse_req_t req;
	struct ks_fh *fh;
	size_t size;
};

/* Fills fh->pending from the stream if it is empty; events_lock held.
 * Returns whether there is something to read. */
static bool take_lines(struct ks_daemon *d, struct ks_fh *fh)
{
	enum { BATCH = 64 * 1024 };
	size_t n;

	ks_lock_assert_held(&d->events.lock);
	if (fh->pending_off < fh->pending_len)
		return true;
	if (!fh->pending) {
		fh->pending = malloc(BATCH);
		if (!fh->pending)
			return false;
	}
	n = ks_events_read(ks_engine_events(d->eng), &fh->cursor, fh->pending,
			   BATCH, fh->restricted ? &fh->reader : NULL);
	fh->pending_len = n;
	fh->pending_off = 0;
	return n > 0;
}

/* Answers req from fh's pending lines; events_lock held. */
static void reply_lines(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
			size_t size)
{
	ks_lock_assert_held(&d->events.lock);
	size_t n = fh->pending_len - fh->pending_off;

	if (n > size)
		n = size;
	fuse_reply_buf(req, fh->pending + fh->pending_off, n);
	fh->pending_off += n;
}

static void on_interrupt(fuse_req_t req, void *data)
{
	struct ks_daemon *d = data;
	struct ks_event_readers *ev = &d->events;
	struct parked_read **pp, *p = NULL;

	ks_lock(&ev->lock);
	for (pp = &ev->parked; *pp; pp = &(*pp)->next)
		if ((*pp)->req == req) {
			p = *pp;
			*pp = p->next;
			ev->waiting--;
			break;
		}
	ks_unlock(&ev->lock);
	if (p) {
		fuse_reply_err(req, EINTR);
		free(p);
	}
}

static void events_read(struct ks_daemon *d, fuse_req_t req,
			struct ks_fh *fh, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	struct ks_event_readers *ev = &d->events;
	struct parked_read *p;

	/* The flags of this read: fcntl may have changed them. */
	fh->nonblock = (fi->flags & O_NONBLOCK) != 0;
	/* Registered before the request can be parked, so that an
	 * interrupt that comes first is seen below. */
	fuse_req_interrupt_func(req, on_interrupt, d);
	ks_lock(&ev->lock);
	if (take_lines(d, fh)) {
		reply_lines(d, req, fh, size);
		ks_unlock(&ev->lock);
		return;
	}
	if (fh->nonblock || fuse_req_interrupted(req)) {
		ks_unlock(&ev->lock);
		fuse_reply_err(req, fh->nonblock ? EAGAIN : EINTR);
		return;
	}
	p = malloc(sizeof(*p));
	if (!p) {
		ks_unlock(&ev->lock);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->req = req;
	p->fh = fh;
	p->size = size;
	p->next = ev->parked;
	ev->parked = p;
	ev->waiting++;
	ks_unlock(&ev->lock);
}

static void events_poll(struct ks_daemon *d, fuse_req_t req,
			struct ks_fh *fh, struct fuse_pollhandle *ph)
{
	struct ks_event_readers *ev = &d->events;
	struct fuse_pollhandle *old = NULL;
	bool ready;

	ks_lock(&ev->lock);
	/* Taken now, so that lines this reader may not see make it no
	 * readier. */
	ready = take_lines(d, fh);
	/* Kept even when ready: an edge-triggered epoll is woken only by
	 * a notification (kind_version.c says more). */
	if (ph) {
		old = fh->ph;
		fh->ph = ph;
		if (!fh->polled) {
			fh->polled = true;
			fh->poll_next = ev->pollers;
			ev->pollers = fh;
		}
		ph = NULL;
	}
	ks_unlock(&ev->lock);
	if (old)
		fuse_pollhandle_destroy(old);
	if (ph)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, ready ? POLLIN | POLLRDNORM : 0);
}

void events_wake(struct ks_daemon *d)
{
	struct ks_event_readers *ev = &d->events;
	struct parked_read **pp;

	ks_lock(&ev->lock);
	for (pp = &ev->parked; *pp;) {
		struct parked_read *p = *pp;

		if (!take_lines(d, p->fh)) {
			pp = &p->next;
			continue;
		}
		reply_lines(d, p->req, p->fh, p->size);
		*pp = p->next;
		ev->waiting--;
		free(p);
	}
	for (struct ks_fh *fh = ev->pollers; fh; fh = fh->poll_next)
		if (fh->ph) {
			fuse_lowlevel_notify_poll(fh->ph);
			fuse_pollhandle_destroy(fh->ph);
			fh->ph = NULL;
		}
	ks_unlock(&ev->lock);
}

static void events_destroy(struct ks_daemon *d, struct ks_fh *fh)
{
	struct ks_event_readers *ev = &d->events;
	struct ks_fh **pp;

	ks_lock(&ev->lock);
	if (fh->polled) {
		for (pp = &ev->pollers; *pp != fh; pp = &(*pp)->poll_next)
			;
		*pp = fh->poll_next;
	}
	if (fh->ph)
		fuse_pollhandle_destroy(fh->ph);
	fh->ph = NULL;
	ev->open--;
	ks_unlock(&ev->lock);
	free(fh->pending);
	free((gid_t *)fh->reader.groups);
}

/* At exit: readers still waiting are told the filesystem is going. */
void events_shutdown(struct ks_daemon *d)
{
	struct ks_event_readers *ev = &d->events;
	ks_lock(&ev->lock);
	while (ev->parked) {
		struct parked_read *p = ev->parked;

		ev->parked = p->next;
		fuse_reply_err(p->req, ENOTCONN);
		free(p);
	}
	ks_unlock(&ev->lock);
}

void events_counts(struct ks_daemon *d, unsigned *open, unsigned *waiting)
{
	struct ks_event_readers *ev = &d->events;

	ks_lock(&ev->lock);
	*open = ev->open;
	*waiting = ev->waiting;
	ks_unlock(&ev->lock);
}

void events_init(struct ks_daemon *d)
{
	struct ks_event_readers *ev = &d->events;

	ks_lock_init(&ev->lock, "events_lock", KS_RANK_FS_EVENTS);
	ev->parked = NULL;
	ev->pollers = NULL;
	ev->open = 0;
	ev->waiting = 0;
}

void events_free(struct ks_daemon *d)
{
	ks_lock_destroy(&d->events.lock);
}

static void events_getattr(struct ks_daemon *d, struct ks_inode *in,
			   struct stat *stbuf)
{
	attr_of_daemon(d, stbuf);
	/* Size 0, like /proc files: read it to the end. */
	stbuf->st_mode = S_IFREG | 0444;
}

static const struct ks_file_ops events_fops = {
	.read = events_read,
	.poll = events_poll,
	.destroy = events_destroy,
	.stream = true,   /* a shell's `read` then takes what it needs */
};

/* On a mount shared with other users, a reader sees the commits of the
 * states whose version it may read (SPEC 3: `chmod 700` makes a state
 * private), judged by its credentials at open, as a file's are. */
static int note_reader(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t few[32], *groups = NULL;
	int n;

	if (!d->shared || ctx->uid == 0)
		return 0;
	n = fuse_req_getgroups(req, 32, few);
	if (n > 32) {
		int got;

		groups = malloc((size_t)n * sizeof(*groups));
		if (!groups)
			return ENOMEM;
		/* The list may have grown since: at most what fits. */
		got = fuse_req_getgroups(req, n, groups);
		n = got < n ? got : n;
	} else if (n > 0) {
		groups = malloc((size_t)n * sizeof(*groups));
		if (!groups)
			return ENOMEM;
		memcpy(groups, few, (size_t)n * sizeof(*groups));
	}
	/* No groups known (ENOSYS, a process already gone): the primary
	 * group alone, which can only narrow what it sees. */
	fh->reader = (struct ks_event_reader){
		.uid = ctx->uid, .gid = ctx->gid, .groups = groups,
		.ngroups = n > 0 ? (size_t)n : 0 };
	fh->restricted = true;
	return 0;
}

static int events_open(struct ks_daemon *d, fuse_req_t req,
		       struct ks_inode *in, struct fuse_file_info *fi,
		       struct ks_fh *fh)
{
	struct ks_event_readers *ev = &d->events;
	int err;

	fh->fops = &events_fops;
	fh->readable = true;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return EACCES;
	err = note_reader(d, req, fh);
	if (err)
		return err;
	fh->cursor = ks_events_end(ks_engine_events(d->eng));
	fh->nonblock = (fi->flags & O_NONBLOCK) != 0;
	ks_lock(&ev->lock);
	ev->open++;
	ks_unlock(&ev->lock);
	return 0;
}

const struct ks_kind_ops kind_events = {
	.type = S_IFREG,
	.root_name = ".events",
	.root_ino = INO_EVENTS,
	.getattr = events_getattr,
	.setattr = setattr_read_only,
	.open = events_open,
};
