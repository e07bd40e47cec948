/*
 * The readers of .events: reads parked until an event comes, and files
 * polling for one.
 */
#ifndef KSTATEFS_FS_KIND_EVENTS_H
#define KSTATEFS_FS_KIND_EVENTS_H

#include "lock.h"

struct ks_daemon;
struct ks_fh;
struct parked_read;

struct ks_event_readers {
	struct ks_lock lock;      /* events_lock: all of this, and the
				    * cursor and pending lines and poll
				    * fields of .events handles */
	struct parked_read *parked;   /* reads waiting for events */
	struct ks_fh *pollers;        /* files with a poll handle */
	unsigned open;                /* open .events files */
	unsigned waiting;             /* parked reads */
};

void events_init(struct ks_daemon *d);
void events_free(struct ks_daemon *d);
/* Something was appended to the stream: answer waiting readers. */
void events_wake(struct ks_daemon *d);
/* At exit: readers still waiting are told the filesystem is going. */
void events_shutdown(struct ks_daemon *d);
/* For .stats. */
void events_counts(struct ks_daemon *d, unsigned *open, unsigned *waiting);

#endif
