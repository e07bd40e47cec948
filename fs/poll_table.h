/*
 * The poll table: open version files with a poll handle, by key (a
 * state's id for its own version, view_version_key for a view's).  A
 * commit (or a view's move) wakes every one of them once and forgets
 * their handles; the kernel polls again and gets a fresh handle if the
 * reader keeps waiting.  Only the newest handle of an open file is kept.
 */
#ifndef KSTATEFS_FS_POLL_TABLE_H
#define KSTATEFS_FS_POLL_TABLE_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdint.h>

#include "lock.h"
#include "u64map.h"

struct ks_daemon;
struct ks_fh;

struct ks_poll_table {
	struct ks_lock lock;      /* poll_lock: the map, and fh->ph,
				    * poll_next, polled of its handles */
	struct u64map by_key;      /* key -> list of ks_fh waiting */
};

void poll_table_init(struct ks_daemon *d);
void poll_table_free(struct ks_daemon *d);
void poll_add(struct ks_daemon *d, uint64_t key, struct ks_fh *fh,
	      struct fuse_pollhandle *ph);
void poll_remove(struct ks_daemon *d, uint64_t key, struct ks_fh *fh);
/* Wakes the files under key that have not seen version yet. */
void poll_wake(struct ks_daemon *d, uint64_t key, uint64_t version);
/* How many files wait with a poll handle, for .stats. */
unsigned poll_waiting(struct ks_daemon *d);

#endif
