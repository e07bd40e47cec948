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
 * Lock order, outermost first.  A lock may be taken while holding only
 * locks above it:
 *
 *   1. the handle lock (ks_fh.lock).  Held across ks_txn_commit (a write
 *      to data committing at close or fsync), and so across the engine's
 *      locks and the commit listener (on_commit in main.c), which takes
 *      the locks of 3. one at a time; also across a .stats text (3.) and
 *      view_shown (views lock).
 *   2. the engine's locks (core/engine.h): table_lock, a state's
 *      commit_lock, its lock.  The engine calls nothing of ours under
 *      them but the callbacks of ks_engine_foreach, ks_txn_foreach and
 *      ks_multi_foreach, which take no lock of ours.
 *   3. inode_lock (ks_inode_table.lock), poll_lock (ks_poll_table.lock),
 *      the notifier's lock, the views lock, events_lock
 *      (ks_event_readers.lock): never two of them at once.  Under them
 *      only engine calls that take a state's lock or none (the views
 *      lock: ks_state_current) and the event stream's lock (events_lock:
 *      ks_events_read, ks_events_pending).  References taken under
 *      inode_lock are atomic counts; inodes, views and handles are freed
 *      after their lock is dropped.
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
#include <time.h>

#include "engine.h"
#include "handle.h"
#include "inode.h"
#include "kind.h"
#include "kind_events.h"
#include "listing.h"
#include "poll_table.h"

struct ks_notifier;
struct ks_views;

struct ks_daemon {
	struct ks_engine *eng;
	struct ks_store *store;
	struct fuse_session *se;
	const char *mountpoint;
	double timeout;            /* entry/attr cache, seconds */
	struct timespec started;   /* the times of files of no state */

	struct ks_inode_table inodes;
	struct ks_poll_table polls;
	struct ks_event_readers events;
	struct ks_notifier *notifier;
	struct ks_views *views;
};

static inline struct ks_daemon *daemon_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/* ops.c: the FUSE entry points. */
extern const struct fuse_lowlevel_ops ks_ops;

#endif
