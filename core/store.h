/*
 * The store interface: what the engine needs to make its changes durable
 * and to get them back after a restart.  The engine calls a store through
 * this table only, so a test can put a store in front that fails or drops
 * writes, and a remote store can come later behind the same calls.
 *
 * Without a store (NULL), states live in memory.
 */
#ifndef KSTATEFS_CORE_STORE_H
#define KSTATEFS_CORE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

enum ks_rec_type {
	KS_REC_CREATE = 1, /* state_id, name, uid, gid, mode, time */
	KS_REC_DELETE = 2, /* state_id */
	KS_REC_RENAME = 3, /* state_id, name (the new one), time */
	KS_REC_COMMIT = 4, /* state_id, version, bytes/len, time */
	KS_REC_ATTR = 5,   /* state_id, uid, gid, mode, time */
};

/* One change.  Pointers are borrowed for the duration of the call. */
struct ks_rec {
	enum ks_rec_type type;
	uint64_t state_id;
	uint64_t version;
	const char *name;
	uid_t uid;
	gid_t gid;
	mode_t mode;
	struct timespec time;
	const void *bytes;
	size_t len;
};

struct ks_store;

struct ks_store_ops {
	/* Makes recs[0..n) durable as one atomic unit (all or none survive
	 * a crash), and returns once they are as durable as the store
	 * promises (group commit: many callers may share one sync).  0, or
	 * an errno (EIO, ENOSPC) with nothing of the unit applied.  Called
	 * with the commit locks of the states involved held, and no other
	 * engine lock. */
	int (*append)(struct ks_store *store, const struct ks_rec *recs,
		      size_t n);
};

struct ks_store {
	const struct ks_store_ops *ops;
};

#endif
