/*
 * Open files.  A handle is made at open with its inode and lives until
 * release; what it does is its fops, chosen by the kind's open.
 *
 * Every file is opened with direct I/O: a read at offset 0 must take the
 * latest version and pin it for this open file, which the kernel's page
 * cache (shared by all opens of an inode) cannot express.  Only files
 * with a flush operation (writes to data) ask the kernel for flush, so
 * that closing any other costs no round trip.
 */
#ifndef KSTATEFS_FS_HANDLE_H
#define KSTATEFS_FS_HANDLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "events.h"
#include "kind.h"
#include "lock.h"
#include "open_files.h"

struct ks_fh {
	const struct ks_file_ops *fops;
	struct ks_inode *inode;    /* a reference */
	struct ks_lock lock;      /* the handle lock */
	struct ks_open_link open;  /* in the daemon's open files, once
				    * replied to (open_files.h) */
	bool readable;
	struct ks_page *pinned;    /* data read: the version being read */
	struct ks_txn *txn;        /* data write, transaction files */
	/* data write */
	bool wrote;                /* written since the last commit */
	bool committed;            /* committed at least once */
	int owed;                  /* a close's failed commit, for the next
				    * fsync or close (kind_data.c) */
	/* .events */
	uint64_t cursor;
	struct ks_event_reader reader; /* its opener, for the lines it may
					* see; used if restricted */
	bool restricted;
	char *pending;             /* the rest of lines already taken */
	size_t pending_len, pending_off;
	bool nonblock;
	/* .stats: a text pinned at offset 0 */
	char *stats;
	size_t stats_len;
	/* version files */
	char text[24];
	size_t text_len;
	atomic_uint_fast64_t seen; /* the version this file last read */
	/* version files (under poll_lock) and .events (under events_lock):
	 * the poll handle and the list of handles polling */
	struct fuse_pollhandle *ph;
	struct ks_fh *poll_next;
	bool polled;
};

static inline struct ks_fh *fh_of(struct fuse_file_info *fi)
{
	return (struct ks_fh *)(uintptr_t)fi->fh;
}

/* A handle on in, taking over the caller's reference to it. */
struct ks_fh *fh_new(struct ks_inode *in);
/* Frees a handle that open set up without error. */
void fh_free(struct ks_daemon *d, struct ks_fh *fh);
/* Frees a handle whose open failed (its destroy is not called). */
void fh_discard(struct ks_daemon *d, struct ks_fh *fh);
/* Replies to open, or to create with the created inode; on a failed
 * reply (interrupted) the handle is freed, since no release will come. */
void reply_open(struct ks_daemon *d, fuse_req_t req,
		struct fuse_file_info *fi, struct ks_fh *fh,
		struct ks_inode *created);

#endif
