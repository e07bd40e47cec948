/*
 * The daemon's context and the pieces the FUSE operations share: the inode
 * table, open-file handles, the poll table and the notifier.
 *
 * Inode numbers: the root is 1; a state with engine id N has its directory
 * at 8N+1, its first `data` at 8N+2 and `version` at 8N+3.  Transaction
 * files get numbers from a counter above 2^62.  After `mv T data` the
 * kernel's `data` entry points at T's inode, so that inode becomes the
 * state's data inode (data_ino below) and the old one lives on only for the
 * files still open on it.
 */
#ifndef KSTATEFS_FS_DAEMON_H
#define KSTATEFS_FS_DAEMON_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "u64map.h"

enum ks_role {
	ROLE_ROOT,
	ROLE_STATE,    /* a state's directory */
	ROLE_DATA,
	ROLE_VERSION,
	ROLE_TXN,      /* a transaction file */
};

#define INO_PER_STATE 8
#define INO_TXN_BASE (1ULL << 62)

struct ks_inode {
	uint64_t ino;
	enum ks_role role;
	struct ks_state *st;    /* a reference; NULL for the root */
	struct ks_txn *txn;     /* ROLE_TXN: a reference */
	uint64_t nlookup;       /* the kernel's references */
	unsigned refs;          /* ours: open handles, calls in progress */
	uid_t uid;              /* ROLE_TXN: creator and mode */
	gid_t gid;
	mode_t mode;
};

enum ks_fh_kind {
	FH_DATA_READ,   /* pinned versions, read-only */
	FH_DATA_TXN,    /* writes to data: a transaction committed at close */
	FH_VERSION,
	FH_NOTIFY,      /* the notifier's own write to version */
	FH_TXN,         /* a transaction file */
	FH_DIR,         /* a directory listing, taken at opendir */
};

struct ks_fh {
	enum ks_fh_kind kind;
	struct ks_inode *inode;    /* a reference */
	pthread_mutex_t lock;
	struct ks_page *pinned;    /* DATA_READ, VERSION */
	struct ks_txn *txn;        /* DATA_TXN, TXN */
	bool readable;
	bool wrote;                /* DATA_TXN: written since the last commit */
	bool committed;            /* DATA_TXN: committed at least once */
	/* VERSION */
	char text[24];
	size_t text_len;
	atomic_uint_fast64_t seen; /* the version this file last read */
	struct fuse_pollhandle *ph;
	struct ks_fh *poll_next;   /* in the poll table, under poll_lock */
	bool polled;
	/* DIR */
	char *listing;             /* packed fuse_add_direntry buffer */
	size_t listing_len;
	size_t *ends;              /* where each entry ends */
	size_t nends;
};

struct ks_notifier;

struct ks_daemon {
	struct ks_engine *eng;
	struct ks_store *store;
	struct fuse_session *se;
	const char *mountpoint;
	double timeout;            /* entry/attr cache, seconds */
	struct timespec started;   /* the root's times */

	pthread_mutex_t inode_lock;
	struct u64map inodes;      /* ino -> struct ks_inode */
	struct u64map data_ino;    /* state id -> current data ino */
	uint64_t next_txn_ino;

	pthread_mutex_t poll_lock;
	struct u64map pollers;     /* state id -> list of ks_fh waiting */

	struct ks_notifier *notifier;
};

/* inode.c */
void inode_table_init(struct ks_daemon *d);
void inode_table_free(struct ks_daemon *d);
/* The inode for ino with a reference of ours (inode_put), or NULL. */
struct ks_inode *inode_get(struct ks_daemon *d, uint64_t ino);
void inode_put(struct ks_daemon *d, struct ks_inode *in);
/* The inode of a state's directory/data/version, created if needed, with
 * one kernel lookup counted (for entry replies). */
struct ks_inode *inode_lookup_state(struct ks_daemon *d, struct ks_state *st,
				    enum ks_role role);
/* The inode of a transaction: created if the transaction has none. */
struct ks_inode *inode_lookup_txn(struct ks_daemon *d, struct ks_txn *txn,
				  uid_t uid, gid_t gid, mode_t mode);
void inode_forget(struct ks_daemon *d, uint64_t ino, uint64_t nlookup);
/* Makes the transaction inode in the state's data inode (after mv T data). */
void inode_become_data(struct ks_daemon *d, struct ks_inode *in);
uint64_t inode_data_ino(struct ks_daemon *d, struct ks_state *st);
uint64_t inode_state_ino(const struct ks_state *st, enum ks_role role);

/* attr.c */
void fill_attr(struct ks_daemon *d, struct ks_inode *in, struct stat *st);
/* How long the kernel may cache this inode's attributes. */
double attr_timeout(struct ks_daemon *d, struct ks_inode *in);
void reply_entry(struct ks_daemon *d, fuse_req_t req, struct ks_inode *in);
/* Tells the kernel a state's data and version attributes changed; called
 * before a commit is acknowledged. */
void invalidate_state(struct ks_daemon *d, struct ks_state *st);

/* poll.c */
void poll_add(struct ks_daemon *d, struct ks_fh *fh, struct fuse_pollhandle *ph);
void poll_remove(struct ks_daemon *d, struct ks_fh *fh);
void poll_wake(struct ks_daemon *d, struct ks_state *st, uint64_t version);

/* notifier.c: makes inotify events by writing to version through the
 * mount, from a thread that serves no requests. */
int notifier_start(struct ks_daemon *d);
void notifier_post(struct ks_daemon *d, struct ks_state *st);
void notifier_stop(struct ks_daemon *d);
bool notifier_is_self(struct ks_daemon *d, pid_t tid);

/* ops_*.c */
extern const struct fuse_lowlevel_ops ks_ops;
void ks_op_init(void *userdata, struct fuse_conn_info *conn);
void ks_op_destroy(void *userdata);
void ks_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void ks_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void ks_op_forget_multi(fuse_req_t req, size_t count,
			struct fuse_forget_data *forgets);
void ks_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ks_op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		   int to_set, struct fuse_file_info *fi);
void ks_op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode);
void ks_op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void ks_op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void ks_op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		  fuse_ino_t newparent, const char *newname,
		  unsigned int flags);
void ks_op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode, dev_t rdev);
void ks_op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		   const char *name);
void ks_op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		const char *newname);
void ks_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ks_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi);
void ks_op_releasedir(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi);
void ks_op_statfs(fuse_req_t req, fuse_ino_t ino);
void ks_op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		  mode_t mode, struct fuse_file_info *fi);
void ks_op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ks_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void ks_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		 size_t size, off_t off, struct fuse_file_info *fi);
void ks_op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ks_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		 struct fuse_file_info *fi);
void ks_op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ks_op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		struct fuse_pollhandle *ph);

static inline struct ks_daemon *daemon_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct ks_fh *fh_of(struct fuse_file_info *fi)
{
	return (struct ks_fh *)(uintptr_t)fi->fh;
}

#endif
