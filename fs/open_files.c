/*
 * The handles the kernel holds, for freeing those whose release never
 * comes (open_files.h says when).
 */
#include "daemon.h"

#include <stddef.h>

void open_files_init(struct ks_daemon *d)
{
	struct ks_open_files *of = &d->open_files;

	ks_lock_init(&of->lock, "open_files_lock", KS_RANK_LEAF);
	of->files.prev = of->files.next = &of->files;
	of->dirs.prev = of->dirs.next = &of->dirs;
}

static void add(struct ks_daemon *d, struct ks_open_link *head,
		struct ks_open_link *link)
{
	ks_lock(&d->open_files.lock);
	link->prev = head;
	link->next = head->next;
	head->next->prev = link;
	head->next = link;
	ks_unlock(&d->open_files.lock);
}

void open_files_add_file(struct ks_daemon *d, struct ks_open_link *link)
{
	add(d, &d->open_files.files, link);
}

void open_files_add_dir(struct ks_daemon *d, struct ks_open_link *link)
{
	add(d, &d->open_files.dirs, link);
}

static void unlink_locked(struct ks_open_link *link)
{
	link->prev->next = link->next;
	link->next->prev = link->prev;
	link->prev = link->next = NULL;
}

void open_files_remove(struct ks_daemon *d, struct ks_open_link *link)
{
	ks_lock(&d->open_files.lock);
	if (link->next)
		unlink_locked(link);
	ks_unlock(&d->open_files.lock);
}

/* The first link of head's list, unlinked, or NULL. */
static struct ks_open_link *take_first(struct ks_daemon *d,
				       struct ks_open_link *head)
{
	struct ks_open_link *link = NULL;

	ks_lock(&d->open_files.lock);
	if (head->next != head) {
		link = head->next;
		unlink_locked(link);
	}
	ks_unlock(&d->open_files.lock);
	return link;
}

size_t open_files_free_left(struct ks_daemon *d)
{
	struct ks_open_link *link;
	size_t n = 0;

	/* Each is freed outside the lock: freeing takes the fs/ locks
	 * (poll table, views, .events readers) and the engine's. */
	while ((link = take_first(d, &d->open_files.files))) {
		fh_free(d, (struct ks_fh *)((char *)link -
					    offsetof(struct ks_fh, open)));
		n++;
	}
	while ((link = take_first(d, &d->open_files.dirs))) {
		listing_free_open(d, link);
		n++;
	}
	return n;
}

void open_files_destroy(struct ks_daemon *d)
{
	ks_lock_destroy(&d->open_files.lock);
}
