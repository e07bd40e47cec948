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
	ROLE_STATE,        /* a state's directory */
	ROLE_DATA,
	ROLE_VERSION,
	ROLE_EVERY,        /* NAME/every */
	ROLE_TXN,          /* a transaction file */
	ROLE_TXN_ROOT,     /* .txn */
	ROLE_COMMIT_DIR,   /* .commit */
	ROLE_MULTI,        /* .txn/T */
	ROLE_MEMBER,       /* .txn/T/NAME */
	ROLE_EVENTS,       /* .events */
	ROLE_STATS,        /* .stats */
	ROLE_VIEW,         /* NAME/every/PERIOD */
	ROLE_VIEW_DATA,
	ROLE_VIEW_VERSION,
};

#define INO_PER_STATE 8
#define INO_TXN_ROOT 2
#define INO_COMMIT_DIR 3
#define INO_EVENTS 4
#define INO_STATS 5
#define INO_TXN_BASE (1ULL << 62)

struct ks_view;

struct ks_inode {
	uint64_t ino;
	enum ks_role role;
	struct ks_state *st;    /* a reference; NULL for the root */
	struct ks_txn *txn;     /* ROLE_TXN, and after it ROLE_DATA: a ref */
	struct ks_multi *multi; /* ROLE_MULTI, ROLE_MEMBER: a reference */
	struct ks_view *view;   /* ROLE_VIEW*: a reference */
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
	FH_EVENTS,      /* .events */
	FH_STATS,       /* .stats: a text pinned at offset 0 */
	FH_VIEW_DATA,   /* NAME/every/P/data */
	FH_VIEW_VERSION,
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
	/* EVENTS */
	uint64_t cursor;
	char *pending;             /* the rest of lines already taken */
	size_t pending_len, pending_off;
	bool nonblock;
	/* STATS */
	char *stats;
	size_t stats_len;
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

	pthread_mutex_t events_lock;
	struct parked_read *parked;   /* .events reads waiting for events */
	struct ks_fh *event_pollers;  /* .events files with a poll handle */
	unsigned events_open;
	unsigned events_waiting;

	struct ks_views *views;
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
/* A new inode of the given role for dynamic objects (multi-state
 * transactions, their members, views), with one kernel lookup counted;
 * the template's references are taken. */
struct ks_inode *inode_new(struct ks_daemon *d, uint64_t ino,
			   const struct ks_inode *tmpl);
uint64_t inode_alloc_ino(struct ks_daemon *d, unsigned count);
/* The inode of a transaction: created if the transaction has none. */
struct ks_inode *inode_lookup_txn(struct ks_daemon *d, struct ks_txn *txn,
				  uid_t uid, gid_t gid, mode_t mode);
/* The inode of a transaction over several states (.txn/T). */
struct ks_inode *inode_lookup_multi(struct ks_daemon *d, struct ks_multi *m);
void inode_forget(struct ks_daemon *d, uint64_t ino, uint64_t nlookup);
/* Makes the transaction inode in the state's data inode (after mv T data). */
void inode_become_data(struct ks_daemon *d, struct ks_inode *in);
uint64_t inode_data_ino(struct ks_daemon *d, struct ks_state *st);
uint64_t inode_state_ino(const struct ks_state *st, enum ks_role role);

/* attr.c */
void fill_attr(struct ks_daemon *d, struct ks_inode *in, struct stat *st);
/* How long the kernel may cache this inode's attributes. */
double attr_timeout(struct ks_daemon *d, struct ks_inode *in);
double entry_timeout(struct ks_daemon *d, enum ks_role role);
void reply_entry(struct ks_daemon *d, fuse_req_t req, struct ks_inode *in);
/* Tells the kernel a state's data and version attributes changed; called
 * before a commit is acknowledged. */
void invalidate_state(struct ks_daemon *d, struct ks_state *st);

/* poll.c: the poll table, by key: a state's id for its version file, a
 * view's inode for the view's version. */
void poll_add(struct ks_daemon *d, uint64_t key, struct ks_fh *fh,
	      struct fuse_pollhandle *ph);
void poll_remove(struct ks_daemon *d, uint64_t key, struct ks_fh *fh);
void poll_wake(struct ks_daemon *d, uint64_t key, uint64_t version);
unsigned poll_waiting(struct ks_daemon *d);

/* notifier.c: makes inotify events by writing to version through the
 * mount, from a child process that serves no requests. */
int notifier_start(struct ks_daemon *d);
/* view: NULL for the state's own version, else the view's PERIOD name. */
void notifier_post(struct ks_daemon *d, struct ks_state *st,
		   const char *view, uint64_t key);
void notifier_stop(struct ks_daemon *d);
bool notifier_is_self(struct ks_daemon *d, pid_t pid);

/* events.c: .events and .stats */
void events_open(struct ks_daemon *d, struct ks_fh *fh, int flags);
void events_release(struct ks_daemon *d, struct ks_fh *fh);
void events_read(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		 size_t size);
void events_poll(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		 struct fuse_pollhandle *ph);
/* Something was appended to the stream: answer waiting readers. */
void events_wake(struct ks_daemon *d);
void events_shutdown(struct ks_daemon *d);
int stats_text(struct ks_daemon *d, char **text, size_t *len);

/* multi.c: .txn and .commit */
int multi_lookup(struct ks_daemon *d, struct ks_inode *dir, const char *name,
		 struct ks_inode **out);
int multi_mkdir(struct ks_daemon *d, struct ks_inode *dir, const char *name,
		struct ks_inode **out);
int multi_rmdir(struct ks_daemon *d, struct ks_inode *dir, const char *name);
int multi_unlink(struct ks_daemon *d, struct ks_inode *dir, const char *name);
int multi_rename(struct ks_daemon *d, struct ks_inode *from, const char *name,
		 struct ks_inode *to, const char *newname);
int multi_open(struct ks_daemon *d, struct ks_inode *in, int flags,
	       struct ks_fh *fh);
void multi_list(struct ks_daemon *d, struct ks_inode *dir,
		void (*add)(void *arg, const char *name, uint64_t ino,
			    mode_t type),
		void *arg);

/* views.c: NAME/every/PERIOD */
int views_init(struct ks_daemon *d);
int views_start(struct ks_daemon *d);
void views_stop(struct ks_daemon *d);
void views_free(struct ks_daemon *d);
int view_lookup(struct ks_daemon *d, struct ks_inode *dir, const char *name,
		struct ks_inode **out);
void views_list(struct ks_daemon *d, struct ks_state *st,
		void (*add)(void *arg, const char *name, uint64_t ino,
			    mode_t type),
		void *arg);
/* A commit of st: views that lag behind schedule their next move. */
void views_on_commit(struct ks_daemon *d, struct ks_state *st);
struct ks_page *view_shown(struct ks_view *v);
uint64_t view_version_key(const struct ks_view *v);
struct ks_view *view_ref(struct ks_view *v);
void view_unref(struct ks_daemon *d, struct ks_view *v);
unsigned views_count(struct ks_daemon *d);

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
