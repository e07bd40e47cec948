/*
 * The daemon's context: everything the FUSE operations share, each part
 * behind its own header.
 *
 *   kind.h       the kinds of files and their operations (kind_*.c)
 *   inode.h      the inode table
 *   handle.h     open files
 *   listing.h    open directories
 *   poll_table.h version files waiting in poll
 *   views.h      throttled views and their thread
 *   notifier.h   inotify events for the daemon's own changes
 *   kind_events.h  readers of .events
 *
 * Lock order, core and fs, outermost first.  A lock may be taken while
 * holding only locks above it; enum ks_lock_rank in core/lock.h is this
 * list as the checks enforce it (debug and sanitizer builds abort on a
 * lock taken out of order, naming both):
 *
 *   1. fh->lock, the handle lock (ks_fh.lock).  Held across
 *      ks_txn_commit (a write to data committing at close or fsync), and
 *      so across the engine's locks, the store's append and fdatasync,
 *      and the commit listener (on_commit in main.c), which takes the
 *      locks of 3. one at a time; also across a .stats text (3.) and
 *      view_shown (the views lock).
 *   2. the engine's and the store's outer locks (core/engine.h):
 *      log->compact_mu, engine->multi_lock, multi->lock, txn->lock (a
 *      .txn/T's in state id order), engine->table_lock, a state's
 *      commit_lock (several in state id order), then inside the store's
 *      append log->mu and the I/O shim's lock.  The engine calls nothing
 *      of ours under them but the callbacks of ks_engine_foreach,
 *      ks_txn_foreach and ks_multi_foreach, which take no lock of ours,
 *      and the listener when a store's catch_up delivers changes, which
 *      runs with only the committing file's txn->lock (and .txn/T's
 *      locks) held.
 *   3. inode_lock (ks_inode_table.lock), the views lock, poll_lock
 *      (ks_poll_table.lock), the notifier's lock, events_lock
 *      (ks_event_readers.lock), in the enum in this order but never two
 *      of them at once.  References taken under inode_lock are atomic
 *      counts; inodes, views and handles are freed after their lock is
 *      dropped.
 *   4. the engine's innermost: a state's lock, then the event stream's
 *      ring lock, each taken alone.  The only engine calls made under
 *      the locks of 3. take these or none: ks_state_current (the views
 *      lock), ks_events_read and ks_events_pending (events_lock).
 *
 * Replies and notifications to the kernel (fuse_reply_*,
 * fuse_lowlevel_notify_*) are made under the handle lock, poll_lock and
 * events_lock: writing to /dev/fuse does not wait on a request of ours.
 * Only the notifier's child process makes requests to the mount.
 */
#ifndef KSTATEFS_FS_DAEMON_H
#define KSTATEFS_FS_DAEMON_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <stdatomic.h>
#include <time.h>

#include "engine.h"
#include "handle.h"
#include "inode.h"
#include "kind.h"
#include "kind_events.h"
#include "listing.h"
#include "open_files.h"
#include "poll_table.h"

struct ks_notifier;
struct ks_shm;
struct ks_views;

struct ks_daemon {
	struct ks_engine *eng;
	struct ks_store *store;
	struct fuse_session *se;
	const char *mountpoint;
	/* The mount's superblock's device (main.c, mounted_dev), or 0 if
	 * unknown: the notifier looks for it in the mount table. */
	dev_t dev;
	double timeout;            /* entry/attr cache, seconds */
	struct timespec started;   /* the times of files of no state */
	/* The mount owner (the daemon's user) owns the root and the files
	 * of no state; the root's mode is -o root_mode (0755 by default),
	 * then whatever its owner's chmod made it.  Not kept in the store:
	 * -o root_mode in fstab gives it at every mount. */
	uid_t uid;
	gid_t gid;
	atomic_uint root_mode;
	/* -o allow_other: users other than the owner use the mount, so
	 * what one may see of another's states is checked (.events). */
	bool shared;

	struct ks_inode_table inodes;
	struct ks_open_files open_files;
	struct ks_poll_table polls;
	struct ks_event_readers events;
	struct ks_notifier *notifier;
	struct ks_views *views;
	struct ks_shm *shm;        /* shared mappings (shm.h), or NULL */
};

static inline struct ks_daemon *daemon_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ops.c: the FUSE entry points. */
extern const struct fuse_lowlevel_ops ks_ops;

#endif
