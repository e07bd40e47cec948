/*
 * .events and .stats.
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
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "store.h"

struct parked_read {
	struct parked_read *next;
	fuse_req_t req;
	struct ks_fh *fh;
	size_t size;
};

void events_open(struct ks_daemon *d, struct ks_fh *fh, int flags)
{
	fh->cursor = ks_events_end(ks_engine_events(d->eng));
	fh->nonblock = (flags & O_NONBLOCK) != 0;
	pthread_mutex_lock(&d->events_lock);
	d->events_open++;
	pthread_mutex_unlock(&d->events_lock);
}

/* Fills fh->pending from the stream if it is empty; events_lock held.
 * Returns whether there is something to read. */
static bool take_lines(struct ks_daemon *d, struct ks_fh *fh)
{
	enum { BATCH = 64 * 1024 };
	size_t n;

	if (fh->pending_off < fh->pending_len)
		return true;
	if (!fh->pending) {
		fh->pending = malloc(BATCH);
		if (!fh->pending)
			return false;
	}
	n = ks_events_read(ks_engine_events(d->eng), &fh->cursor, fh->pending,
			   BATCH);
	fh->pending_len = n;
	fh->pending_off = 0;
	return n > 0;
}

/* Answers req from fh's pending lines; events_lock held. */
static void reply_lines(fuse_req_t req, struct ks_fh *fh, size_t size)
{
	size_t n = fh->pending_len - fh->pending_off;

	if (n > size)
		n = size;
	fuse_reply_buf(req, fh->pending + fh->pending_off, n);
	fh->pending_off += n;
}

static void on_interrupt(fuse_req_t req, void *data)
{
	struct ks_daemon *d = data;
	struct parked_read **pp, *p = NULL;

	pthread_mutex_lock(&d->events_lock);
	for (pp = &d->parked; *pp; pp = &(*pp)->next)
		if ((*pp)->req == req) {
			p = *pp;
			*pp = p->next;
			d->events_waiting--;
			break;
		}
	pthread_mutex_unlock(&d->events_lock);
	if (p) {
		fuse_reply_err(req, EINTR);
		free(p);
	}
}

void events_read(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		 size_t size)
{
	struct parked_read *p;

	/* Registered before the request can be parked, so that an
	 * interrupt that comes first is seen below. */
	fuse_req_interrupt_func(req, on_interrupt, d);
	pthread_mutex_lock(&d->events_lock);
	if (take_lines(d, fh)) {
		reply_lines(req, fh, size);
		pthread_mutex_unlock(&d->events_lock);
		return;
	}
	if (fh->nonblock || fuse_req_interrupted(req)) {
		pthread_mutex_unlock(&d->events_lock);
		fuse_reply_err(req, fh->nonblock ? EAGAIN : EINTR);
		return;
	}
	p = malloc(sizeof(*p));
	if (!p) {
		pthread_mutex_unlock(&d->events_lock);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->req = req;
	p->fh = fh;
	p->size = size;
	p->next = d->parked;
	d->parked = p;
	d->events_waiting++;
	pthread_mutex_unlock(&d->events_lock);
}

void events_poll(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		 struct fuse_pollhandle *ph)
{
	struct fuse_pollhandle *old = NULL;
	bool ready;

	pthread_mutex_lock(&d->events_lock);
	ready = fh->pending_off < fh->pending_len ||
		ks_events_pending(ks_engine_events(d->eng), fh->cursor);
	if (ph && !ready) {
		old = fh->ph;
		fh->ph = ph;
		if (!fh->polled) {
			fh->polled = true;
			fh->poll_next = d->event_pollers;
			d->event_pollers = fh;
		}
		ph = NULL;
	}
	pthread_mutex_unlock(&d->events_lock);
	if (old)
		fuse_pollhandle_destroy(old);
	if (ph)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, ready ? POLLIN | POLLRDNORM : 0);
}

void events_wake(struct ks_daemon *d)
{
	struct parked_read **pp;

	pthread_mutex_lock(&d->events_lock);
	for (pp = &d->parked; *pp;) {
		struct parked_read *p = *pp;

		if (!take_lines(d, p->fh)) {
			pp = &p->next;
			continue;
		}
		reply_lines(p->req, p->fh, p->size);
		*pp = p->next;
		d->events_waiting--;
		free(p);
	}
	for (struct ks_fh *fh = d->event_pollers; fh; fh = fh->poll_next)
		if (fh->ph) {
			fuse_lowlevel_notify_poll(fh->ph);
			fuse_pollhandle_destroy(fh->ph);
			fh->ph = NULL;
		}
	pthread_mutex_unlock(&d->events_lock);
}

void events_release(struct ks_daemon *d, struct ks_fh *fh)
{
	struct ks_fh **pp;

	pthread_mutex_lock(&d->events_lock);
	if (fh->polled) {
		for (pp = &d->event_pollers; *pp != fh; pp = &(*pp)->poll_next)
			;
		*pp = fh->poll_next;
	}
	if (fh->ph)
		fuse_pollhandle_destroy(fh->ph);
	fh->ph = NULL;
	d->events_open--;
	pthread_mutex_unlock(&d->events_lock);
	free(fh->pending);
}

/* At exit: readers still waiting are told the filesystem is going. */
void events_shutdown(struct ks_daemon *d)
{
	pthread_mutex_lock(&d->events_lock);
	while (d->parked) {
		struct parked_read *p = d->parked;

		d->parked = p->next;
		fuse_reply_err(p->req, ENOTCONN);
		free(p);
	}
	pthread_mutex_unlock(&d->events_lock);
}

/* The store's "key value" pairs, in the order it gives them. */
struct store_lines {
	char text[512];
	size_t used;
};

static void store_line(void *arg, const char *key, uint64_t value)
{
	struct store_lines *sl = arg;
	int n = snprintf(sl->text + sl->used, sizeof(sl->text) - sl->used,
			 "%s %" PRIu64 "\n", key, value);

	if (n > 0 && (size_t)n < sizeof(sl->text) - sl->used)
		sl->used += (size_t)n;
	else
		sl->text[sl->used] = 0; /* no room: the line is left out */
}

int stats_text(struct ks_daemon *d, char **text, size_t *len)
{
	struct ks_engine_stats s;
	struct store_lines store = { .used = 0 };
	unsigned readers, waiting;
	struct timespec now;
	char *buf = malloc(1024);
	int n;

	if (!buf)
		return ENOMEM;
	ks_engine_stats(d->eng, &s);
	ks_store_stats(d->store, store_line, &store);
	pthread_mutex_lock(&d->events_lock);
	readers = d->events_open;
	waiting = d->events_waiting;
	pthread_mutex_unlock(&d->events_lock);
	clock_gettime(CLOCK_REALTIME, &now);
	n = snprintf(buf, 1024,
		"states %" PRIu64 "\n"
		"transactions %" PRIu64 "\n"
		"commits %" PRIu64 "\n"
		"conflicts %" PRIu64 "\n"
		"bytes %" PRIu64 "\n"
		"%s"
		"views %u\n"
		"event_readers %u\n"
		"readers_waiting %u\n"
		"events_dropped %" PRIu64 "\n"
		"uptime %lld\n",
		s.states, s.txns, s.commits, s.conflicts, s.bytes,
		store.text, views_count(d), readers,
		waiting + poll_waiting(d),
		ks_events_dropped(ks_engine_events(d->eng)),
		(long long)(now.tv_sec - d->started.tv_sec));
	*text = buf;
	*len = (size_t)n;
	return 0;
}
