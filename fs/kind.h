/*
 * Kinds of files.  Each role an inode can have is one kind, with its
 * behaviour behind one struct ks_kind_ops in one kind_*.c file; the FUSE
 * entry points (ops.c) find the inode, do what is common to every kind,
 * and call through ks_kinds[role].  Like the kernel's inode_operations and
 * file_operations, open files have an operations table of their own,
 * struct ks_file_ops, chosen by the kind's open: an inode can change kind
 * (a transaction file becomes `data` after `mv T data`) while files opened
 * as the old kind go on as they were.
 *
 * To add a file to the root: a role below, a kind_*.c file with its
 * ks_kind_ops (root_name, and root_ino a free INO_* of inode.h), and its
 * row in ks_kinds (kind.c).  The root's lookup and listing, and the
 * inode table's permanent inodes, follow from the table.
 */
#ifndef KSTATEFS_FS_KIND_H
#define KSTATEFS_FS_KIND_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "engine.h"

/* ROLE_STATE to ROLE_EVERY are part of a state's inode numbers
 * (inode_state_ino), and the root lists its own entries in this order:
 * add new roles at the end. */
enum ks_role {
	ROLE_ROOT,         /* kind_root.c */
	ROLE_STATE,        /* kind_state.c: a state's directory */
	ROLE_DATA,         /* kind_data.c */
	ROLE_VERSION,      /* kind_version.c */
	ROLE_EVERY,        /* kind_views.c: NAME/every */
	ROLE_TXN,          /* kind_txn.c: a transaction file NAME/T */
	ROLE_TXN_ROOT,     /* kind_multi.c: .txn */
	ROLE_COMMIT_DIR,   /* kind_multi.c: .commit */
	ROLE_MULTI,        /* kind_multi.c: .txn/T */
	ROLE_MEMBER,       /* kind_multi.c: .txn/T/NAME */
	ROLE_EVENTS,       /* kind_events.c: .events */
	ROLE_STATS,        /* kind_stats.c: .stats */
	ROLE_VIEW,         /* kind_views.c: NAME/every/PERIOD */
	ROLE_VIEW_DATA,    /* kind_views.c */
	ROLE_VIEW_VERSION, /* kind_views.c */
	ROLE_SHM,          /* kind_shm.c: .shm */
	ROLE_COUNT
};

struct ks_daemon;
struct ks_fh;
struct ks_inode;
struct ks_listing;

/*
 * What a kind does.  Every operation gets the daemon and the inode (for
 * directories: the directory) with a reference held by the caller, and
 * returns 0 or an errno value for the caller to reply with.  Operations
 * that make an inode return it in *out with one kernel lookup and one
 * reference counted (inode.h), for the caller's entry reply.  A NULL
 * operation answers with the error noted.
 */
struct ks_kind_ops {
	mode_t type;               /* S_IFDIR or S_IFREG */
	/* A file of the root that lives as long as the daemon: its name
	 * (NULL for the root itself) and fixed inode number; 0 if not. */
	const char *root_name;
	uint64_t root_ino;
	/* Names and attributes the kernel must not keep: entries of this
	 * kind, and names found missing in this directory. */
	bool uncached_entry;
	bool uncached_negative;

	/* Attributes; stbuf comes zeroed, with st_ino and st_blksize. */
	void (*getattr)(struct ks_daemon *d, struct ks_inode *in,
			struct stat *stbuf);
	/* How long the kernel may cache them; NULL: d->timeout. */
	double (*attr_timeout)(struct ks_daemon *d, struct ks_inode *in);
	/* fh: the open file of ftruncate/fchmod (files only), or NULL.  Not called for
	 * files of a deleted state (ENOENT).  NULL: changes of owner, mode
	 * or size are EPERM, the rest (times) are accepted and ignored. */
	int (*setattr)(struct ks_daemon *d, fuse_req_t req,
		       struct ks_inode *in, struct stat *attr, int to_set,
		       struct ks_fh *fh);

	/* Directories.  lookup is not called in a deleted state (ENOENT);
	 * NULL: ENOTDIR. */
	int (*lookup)(struct ks_daemon *d, struct ks_inode *dir,
		      const char *name, struct ks_inode **out);
	/* NULL: EPERM in a directory, ENOTDIR in a file. */
	int (*mkdir)(struct ks_daemon *d, fuse_req_t req, struct ks_inode *dir,
		     const char *name, mode_t mode, struct ks_inode **out);
	/* NULL: ENOTDIR.  req: who asks (fuse_req_ctx), for the ownership
	 * rules the kernel does not know (transactions are their
	 * creator's). */
	int (*rmdir)(struct ks_daemon *d, fuse_req_t req, struct ks_inode *dir,
		     const char *name);
	/* NULL: ENOTDIR. */
	int (*unlink)(struct ks_daemon *d, fuse_req_t req,
		      struct ks_inode *dir, const char *name);
	/* Regular files only; NULL: EPERM. */
	int (*mknod)(struct ks_daemon *d, fuse_req_t req, struct ks_inode *dir,
		     const char *name, mode_t mode, struct ks_inode **out);
	/* Makes the file and opens *fh on it; NULL: EPERM. */
	int (*create)(struct ks_daemon *d, fuse_req_t req,
		      struct ks_inode *dir, const char *name, mode_t mode,
		      struct fuse_file_info *fi, struct ks_inode **out,
		      struct ks_fh **fh);
	/* A rename from this directory (flags: only RENAME_NOREPLACE);
	 * NULL: EPERM. */
	int (*rename)(struct ks_daemon *d, fuse_req_t req,
		      struct ks_inode *from, const char *name,
		      struct ks_inode *to, const char *newname,
		      unsigned int flags);
	/* The entries after "." and "..", at opendir; not called in a
	 * deleted state (ENOENT).  NULL: ENOTDIR. */
	void (*list)(struct ks_daemon *d, struct ks_inode *dir,
		     struct ks_listing *l);

	/* Files.  Sets up fh, which comes zeroed with its inode (a
	 * reference) and lock, and chooses fh->fops.  NULL: EISDIR in a
	 * directory, EINVAL in a file. */
	int (*open)(struct ks_daemon *d, fuse_req_t req, struct ks_inode *in,
		    struct fuse_file_info *fi, struct ks_fh *fh);
};

/*
 * What an open file does.  A NULL operation: read and write answer EBADF,
 * flush does nothing, poll answers "ready" at once.
 */
struct ks_file_ops {
	/* These reply themselves. */
	void (*read)(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		     size_t size, off_t off, struct fuse_file_info *fi);
	void (*write)(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		      const char *buf, size_t size, off_t off);
	void (*poll)(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		     struct fuse_pollhandle *ph);
	/* At close (flush) and fsync; the kernel asks only if set.  fsync:
	 * NULL to use flush for both. */
	int (*flush)(struct ks_daemon *d, struct ks_fh *fh);
	int (*fsync)(struct ks_daemon *d, struct ks_fh *fh);
	/* At release, the last close, before the handle goes. */
	void (*release)(struct ks_daemon *d, struct ks_fh *fh);
	/* Whenever the handle goes, also when the open's reply failed:
	 * undoes what open set up besides the handle's own fields. */
	void (*destroy)(struct ks_daemon *d, struct ks_fh *fh);
	bool stream;               /* not seekable */
	bool uncounted;            /* not counted as a file open on the state
				    * (ks_state_open_file) */
};

/* kind.c: the table, by role. */
extern const struct ks_kind_ops *const ks_kinds[ROLE_COUNT];

static inline const struct ks_kind_ops *kind_of(enum ks_role role)
{
	return ks_kinds[role];
}

/* The inode number of the root's own entry name, or 0. */
uint64_t kind_root_entry(const char *name);

/* Attributes and entry replies, through the kinds. */
void fill_attr(struct ks_daemon *d, struct ks_inode *in, struct stat *stbuf);
double attr_timeout(struct ks_daemon *d, struct ks_inode *in);
double entry_timeout(struct ks_daemon *d, struct ks_inode *in);
/* Replies with the entry of in, and drops the caller's reference. */
void reply_entry(struct ks_daemon *d, fuse_req_t req, struct ks_inode *in);

/* attr.c: pieces several kinds share. */
/* A file of no state: the daemon's owner, times of its start, one link. */
void attr_of_daemon(struct ks_daemon *d, struct stat *stbuf);
/* A state's file: the state's owner and ctime; *sa gets them all. */
void attr_of_state(struct ks_inode *in, struct stat *stbuf,
		   struct ks_state_attr *sa);
/* A state's directory: times of its creation, rename, chmod or chown. */
void attr_of_state_dir(struct ks_inode *in, struct stat *stbuf,
		       mode_t perm_mask);
/* A regular file showing page: its times and size. */
void attr_of_page(const struct ks_page *page, struct stat *stbuf);
void attr_set_size(struct stat *stbuf, off_t size);
size_t version_text_len(uint64_t v);
/* The attribute timeout of files others change: never cached. */
double attr_uncached(struct ks_daemon *d, struct ks_inode *in);
/* setattr of a read-only file: size EACCES, owner and mode EPERM. */
int setattr_read_only(struct ks_daemon *d, fuse_req_t req,
		      struct ks_inode *in, struct stat *attr, int to_set,
		      struct ks_fh *fh);
int setattr_fixed(int to_set);

/* Who asks.  The kernel checks modes (default_permissions); these are the
 * rules it cannot check, because the file it sees is not the one whose
 * owner or mode decides. */
/* The caller is owner, or root: who may commit, abort, rename, chmod. */
bool caller_owns(fuse_req_t req, uid_t owner);
/* gid is the caller's group, or one of its supplementary groups. */
bool caller_in_group(fuse_req_t req, gid_t gid);
/* chmod and chown of something private to its owner (a transaction file,
 * a .txn/T), as chown(2) has it: the owner's (or root's) to do; only root
 * gives it away, the owner only to a group of their own; the mode keeps
 * the owner's bits alone.  Sets *uid, *gid, *mode (the current ones) to
 * what they become, or returns EPERM. */
int private_owner_change(fuse_req_t req, const struct stat *attr, int to_set,
			 uid_t *uid, gid_t *gid, mode_t *mode);
/* 0 if the state's mode grants the caller every bit of want (04 read, 02
 * write, 01 search, as the kernel would for the state's owner, group and
 * others; root always), else EACCES. */
int caller_may(fuse_req_t req, const struct ks_state_attr *sa, mode_t want);

#define SETATTR_OWNER_BITS \
	(FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)

/* Open files that several kinds share. */
/* kind_data.c: reads of a version pinned at offset 0, the state's or its
 * view's (fh->inode->view). */
void data_read_pinned(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		      size_t size, off_t off, struct fuse_file_info *fi);
/* kind_version.c: version files, the state's or its view's. */
extern const struct ks_file_ops version_fops;
/* The notifier's own open of a version file, for its write. */
extern const struct ks_file_ops notify_fops;
uint64_t version_shown(struct ks_fh *fh);
/* kind_txn.c: transaction files, also members of .txn/T. */
extern const struct ks_file_ops txn_fops;
/* Writes to files that can only be read. */
void write_denied(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		  const char *buf, size_t size, off_t off);

/* The kinds, one file each. */
extern const struct ks_kind_ops kind_root;
extern const struct ks_kind_ops kind_state;
extern const struct ks_kind_ops kind_data;
extern const struct ks_kind_ops kind_version;
extern const struct ks_kind_ops kind_txn;
extern const struct ks_kind_ops kind_every;
extern const struct ks_kind_ops kind_view;
extern const struct ks_kind_ops kind_view_data;
extern const struct ks_kind_ops kind_view_version;
extern const struct ks_kind_ops kind_txn_root;
extern const struct ks_kind_ops kind_commit_dir;
extern const struct ks_kind_ops kind_multi;
extern const struct ks_kind_ops kind_member;
extern const struct ks_kind_ops kind_events;
extern const struct ks_kind_ops kind_stats;
extern const struct ks_kind_ops kind_shm;

#endif
