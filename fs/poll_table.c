/*
 * The poll table (poll_table.h).  Each key's files are a list through
 * fh->poll_next, its head in the map.
 */
#include "daemon.h"

void poll_table_init(struct ks_daemon *d)
{
	ks_lock_init(&d->polls.lock, "poll_lock", KS_RANK_FS_POLL);
	u64map_init(&d->polls.by_key);
}

void poll_table_free(struct ks_daemon *d)
{
	u64map_free(&d->polls.by_key);
	ks_lock_destroy(&d->polls.lock);
}

void poll_add(struct ks_daemon *d, uint64_t id, struct ks_fh *fh,
	      struct fuse_pollhandle *ph)
{
	struct fuse_pollhandle *old;

	ks_lock(&d->polls.lock);
	old = fh->ph;
	fh->ph = ph;
	if (!fh->polled) {
		fh->poll_next = u64map_get(&d->polls.by_key, id);
		if (u64map_put(&d->polls.by_key, id, fh) == 0) {
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
	ks_unlock(&d->polls.lock);
	if (old)
		fuse_pollhandle_destroy(old);
}

void poll_remove(struct ks_daemon *d, uint64_t id, struct ks_fh *fh)
{
	struct fuse_pollhandle *ph;

	ks_lock(&d->polls.lock);
	if (fh->polled) {
		struct ks_fh *head = u64map_get(&d->polls.by_key, id);

		if (head == fh) {
			if (fh->poll_next)
				u64map_put(&d->polls.by_key, id, fh->poll_next);
			else
				u64map_del(&d->polls.by_key, id);
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
	ks_unlock(&d->polls.lock);
	if (ph)
		fuse_pollhandle_destroy(ph);
}

unsigned poll_waiting(struct ks_daemon *d)
{
	struct u64map_iter it;
	unsigned n = 0;
	void *head;

	ks_lock(&d->polls.lock);
	u64map_iter_init(&it, &d->polls.by_key);
	while (u64map_next(&it, NULL, &head))
		for (struct ks_fh *fh = head; fh; fh = fh->poll_next)
			n += fh->ph != NULL;
	ks_unlock(&d->polls.lock);
	return n;
}

void poll_wake(struct ks_daemon *d, uint64_t id, uint64_t version)
{
	ks_lock(&d->polls.lock);
	for (struct ks_fh *fh = u64map_get(&d->polls.by_key, id); fh;
	     fh = fh->poll_next) {
		/* Every new version wakes a file not at it yet, ready
		 * before or not: that is the edge an EPOLLET reader waits
		 * for. */
		if (fh->ph && fh->seen < version) {
			fuse_lowlevel_notify_poll(fh->ph);
			fuse_pollhandle_destroy(fh->ph);
			fh->ph = NULL;
		}
	}
	ks_unlock(&d->polls.lock);
}
