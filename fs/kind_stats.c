/*
 * .stats: counters of the engine, the store and the daemon, one
 * "name value" line each.  A read at offset 0 takes a fresh text; later
 * offsets continue in it.
 */
#include "daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "events.h"
#include "notifier.h"
#include "store.h"
#include "views.h"

/* The store's "key value" pairs, in the order it gives them. */
struct store_lines {
	char text[2048];
	size_t used;
};

static void store_line(void *arg, const char *key, uint64_t value)
{
	struct store_lines *sl = arg;
	size_t room = sizeof(sl->text) - sl->used;
	int n = snprintf(sl->text + sl->used, room, "%s %" PRIu64 "\n", key,
			 value);

	if (n > 0 && (size_t)n < room)
		sl->used += (size_t)n;
	else
		sl->text[sl->used] = '\0'; /* no room: the line is left out */
}

static int stats_text(struct ks_daemon *d, char **text, size_t *len)
{
	enum { STATS_MAX = 4096 };
	struct ks_engine_stats s;
	struct ks_snapshot_stats snap;
	struct store_lines store = { .used = 0 };
	unsigned readers, waiting;
	struct timespec now;
	char *buf = malloc(STATS_MAX);
	int n;

	if (!buf)
		return ENOMEM;
	store.text[0] = '\0';
	ks_engine_stats(d->eng, &s);
	ks_engine_snapshot_stats(d->eng, &snap);
	ks_store_stats(d->store, store_line, &store);
	events_counts(d, &readers, &waiting);
	clock_gettime(CLOCK_REALTIME, &now);
	n = snprintf(buf, STATS_MAX,
		"states %" PRIu64 "\n"
		"transactions %" PRIu64 "\n"
		"commits %" PRIu64 "\n"
		"conflicts %" PRIu64 "\n"
		"bytes %" PRIu64 "\n"
		"snapshots_open %" PRIu64 "\n"
		"snapshot_versions %" PRIu64 "\n"
		"snapshot_bytes %" PRIu64 "\n"
		"snapshot_commits %" PRIu64 "\n"
		"%s"
		"views %u\n"
		"event_readers %u\n"
		"readers_waiting %u\n"
		"events_dropped %" PRIu64 "\n"
		"notifier_restarts %" PRIu64 "\n"
		"uptime %lld\n",
		s.states, s.txns, s.commits, s.conflicts, s.bytes,
		snap.open, snap.versions, snap.bytes, snap.commits,
		store.text, views_count(d), readers,
		waiting + poll_waiting(d),
		ks_events_dropped(ks_engine_events(d->eng)),
		notifier_restarts(d),
		(long long)(now.tv_sec - d->started.tv_sec));
	if (n < 0 || n >= STATS_MAX) {
		free(buf);
		return EIO;
	}
	*text = buf;
	*len = (size_t)n;
	return 0;
}

static void stats_getattr(struct ks_daemon *d, struct ks_inode *in,
			  struct stat *stbuf)
{
	attr_of_daemon(d, stbuf);
	/* Size 0, like /proc files: read it to the end. */
	stbuf->st_mode = S_IFREG | 0444;
}

static void stats_read(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		       size_t size, off_t off, struct fuse_file_info *fi)
{
	size_t n = 0;

	ks_lock(&fh->lock);
	if (off == 0 || !fh->stats) {
		free(fh->stats);
		fh->stats = NULL;
		if (stats_text(d, &fh->stats, &fh->stats_len)) {
			ks_unlock(&fh->lock);
			fuse_reply_err(req, ENOMEM);
			return;
		}
	}
	if (off >= 0 && (size_t)off < fh->stats_len) {
		n = fh->stats_len - (size_t)off;
		if (n > size)
			n = size;
	}
	/* The reply is made under the lock that destroy takes before it
	 * frees the text. */
	fuse_reply_buf(req, n ? fh->stats + off : NULL, n);
	ks_unlock(&fh->lock);
}

static void stats_destroy(struct ks_daemon *d, struct ks_fh *fh)
{
	ks_lock(&fh->lock);   /* a last reply may still be going */
	free(fh->stats);
	ks_unlock(&fh->lock);
}

static const struct ks_file_ops stats_fops = {
	.read = stats_read,
	.destroy = stats_destroy,
};

static int stats_open(struct ks_daemon *d, fuse_req_t req,
		      struct ks_inode *in, struct fuse_file_info *fi,
		      struct ks_fh *fh)
{
	fh->fops = &stats_fops;
	fh->readable = true;
	return (fi->flags & O_ACCMODE) == O_RDONLY ? 0 : EACCES;
}

const struct ks_kind_ops kind_stats = {
	.type = S_IFREG,
	.root_name = ".stats",
	.root_ino = INO_STATS,
	.getattr = stats_getattr,
	.setattr = setattr_read_only,
	.open = stats_open,
};
