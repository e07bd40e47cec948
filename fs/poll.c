/*
 * The poll table: open `version` files with a poll handle, by key (a
 * state's id, or a view's inode).  A
 * commit wakes every one of them once and forgets their handles; the kernel
 * polls again and gets a fresh handle if the reader keeps waiting.  Only
 * the newest handle of an open file is kept.
 */
#include "daemon.h"

void poll_add(struct ks_daemon *d, uint64_t id, struct ks_fh *fh,
	      struct fuse_pollhandle *ph)
{
	struct fuse_pollhandle *old;

	pthread_mutex_lock(&d->poll_lock);
	old = fh->ph;
	fh->ph = ph;
	if (!fh->polled) {
		fh->poll_next = u64map_get(&d->pollers, id);
		if (u64map_put(&d->pollers, id, fh) == 0) {
			fh->polled = true;
		} else {
			/* Out of memory: wake the reader now rather than
			 * leave it waiting for a wake-up that cannot come. */
			fh->ph = NULL;
			old = ph;
			if (ph)
				fuse_lowlevel_notify_poll(ph);
		}
	}
	pthread_mutex_unlock(&d->poll_lock);
	if (old)
		fuse_pollhandle_destroy(old);
}

void poll_remove(struct ks_daemon *d, uint64_t id, struct ks_fh *fh)
{
	struct fuse_pollhandle *ph;

	pthread_mutex_lock(&d->poll_lock);
	if (fh->polled) {
		struct ks_fh *head = u64map_get(&d->pollers, id);

		if (head == fh) {
			if (fh->poll_next)
				u64map_put(&d->pollers, id, fh->poll_next);
			else
				u64map_del(&d->pollers, id);
		} else {
			while (head->poll_next != fh)
				head = head->poll_next;
			head->poll_next = fh->poll_next;
		}
		fh->polled = false;
		fh->poll_next = NULL;
	}
	ph = fh->ph;
	fh->ph = NULL;
	pthread_mutex_unlock(&d->poll_lock);
	if (ph)
		fuse_pollhandle_destroy(ph);
}

unsigned poll_waiting(struct ks_daemon *d)
{
	unsigned n = 0;

	pthread_mutex_lock(&d->poll_lock);
	for (size_t i = 0; i < d->pollers.cap; i++)
		for (struct ks_fh *fh = d->pollers.vals[i]; fh;
		     fh = fh->poll_next)
			n += fh->ph != NULL;
	pthread_mutex_unlock(&d->poll_lock);
	return n;
}

void poll_wake(struct ks_daemon *d, uint64_t id, uint64_t version)
{
	pthread_mutex_lock(&d->poll_lock);
	for (struct ks_fh *fh = u64map_get(&d->pollers, id); fh;
	     fh = fh->poll_next) {
		if (fh->ph && fh->seen < version) {
			fuse_lowlevel_notify_poll(fh->ph);
			fuse_pollhandle_destroy(fh->ph);
			fh->ph = NULL;
		}
	}
	pthread_mutex_unlock(&d->poll_lock);
}
