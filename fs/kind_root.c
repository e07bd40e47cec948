/*
 * The root: the states, by name, and the root's own entries (the kinds
 * with a root_name).  Names that begin with a dot are the daemon's.
 */
#include "daemon.h"
#include "shm.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static void root_getattr(struct ks_daemon *d, struct ks_inode *in,
			 struct stat *stbuf)
{
	struct ks_engine_stats s;

	attr_of_daemon(d, stbuf);
	ks_engine_stats(d->eng, &s);
	stbuf->st_mode = S_IFDIR | atomic_load(&d->root_mode);
	/* "." and "..", and the ".." of every state, .txn and .commit. */
	stbuf->st_nlink = 4 + s.states;
	/* Its entries are the states: their names coming and going are
	 * its modifications. */
	if (s.names_changed.tv_sec > d->started.tv_sec ||
	    (s.names_changed.tv_sec == d->started.tv_sec &&
	     s.names_changed.tv_nsec > d->started.tv_nsec))
		stbuf->st_mtim = stbuf->st_ctim = s.names_changed;
}

/* The root is the mount owner's: its chmod is theirs (and root's), and
 * nobody gives it away. */
static int root_setattr(struct ks_daemon *d, fuse_req_t req,
			struct ks_inode *in, struct stat *attr, int to_set,
			struct ks_fh *fh)
{
	if (to_set & FUSE_SET_ATTR_SIZE)
		return EISDIR;
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
		return EPERM;
	if (!(to_set & FUSE_SET_ATTR_MODE))
		return 0;
	if (!caller_owns(req, d->uid))
		return EPERM;
	atomic_store(&d->root_mode, attr->st_mode & 07777);
	ks_shm_root_mode(d->shm, &d->root_mode);
	return 0;
}

/* In a sticky root (chmod 1777) only a state's owner, the root's owner or
 * root removes or renames it, as in /tmp.  The kernel checks this too,
 * with attributes it may have cached; this is the daemon's word. */
static int sticky_check(struct ks_daemon *d, fuse_req_t req,
			const char *name)
{
	struct ks_state_attr sa;
	struct ks_state *st;
	uid_t uid = fuse_req_ctx(req)->uid;

	if (!(atomic_load(&d->root_mode) & S_ISVTX) || caller_owns(req, d->uid))
		return 0;
	if (ks_state_lookup(d->eng, name, &st))
		return 0;   /* the operation itself says ENOENT */
	ks_state_get_attr(st, &sa);
	ks_state_unref(st);
	return sa.uid == uid ? 0 : EPERM;
}

/* Counts a lookup of a root entry, which always exists. */
static struct ks_inode *lookup_root_entry(struct ks_daemon *d, uint64_t ino)
{
	struct ks_inode *in = inode_get(d, ino);
	struct ks_inode *counted;

	if (!in)
		return NULL;
	counted = inode_new(d, ino, in);   /* finds it: counts the lookup */
	inode_put(d, in);
	return counted;
}

static int root_lookup(struct ks_daemon *d, struct ks_inode *dir,
		       const char *name, struct ks_inode **out)
{
	uint64_t fixed = kind_root_entry(name);
	struct ks_state *st;

	if (fixed) {
		*out = lookup_root_entry(d, fixed);
	} else {
		if (name[0] == '.' || ks_state_lookup(d->eng, name, &st))
			return ENOENT;
		*out = inode_lookup_state(d, st, ROLE_STATE);
		ks_state_unref(st);
	}
	return *out ? 0 : ENOMEM;
}

/* mkdir NAME makes a state. */
static int root_mkdir(struct ks_daemon *d, fuse_req_t req,
		      struct ks_inode *dir, const char *name, mode_t mode,
		      struct ks_inode **out)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct ks_state_attr sa;
	struct ks_state *st;
	int err;

	if (kind_root_entry(name))
		return EEXIST;
	sa.uid = ctx->uid;
	sa.gid = ctx->gid;
	sa.mode = mode & ~ctx->umask & 07777;
	clock_gettime(CLOCK_REALTIME, &sa.ctime);
	err = ks_state_create(d->eng, name, &sa, &st);
	if (err)
		return err == ENAMETOOLONG ? EINVAL : err;
	events_wake(d);
	*out = inode_lookup_state(d, st, ROLE_STATE);
	ks_state_unref(st);
	return *out ? 0 : ENOMEM;
}

/* rmdir NAME deletes a state. */
static int root_rmdir(struct ks_daemon *d, fuse_req_t req,
		      struct ks_inode *dir, const char *name)
{
	struct ks_state *st;
	uint64_t id;
	int err;

	if (kind_root_entry(name))
		return EPERM;
	err = sticky_check(d, req, name);
	if (!err)
		err = ks_state_lookup(d->eng, name, &st);
	if (err)
		return err;
	id = ks_state_id(st);
	err = ks_state_delete(d->eng, name);
	/* The kernel sends release after close has returned: a program
	 * that closes its last file and removes the state at once may get
	 * here first.  Give releases in flight a moment before calling the
	 * state busy. */
	for (int i = 0; err == EBUSY && i < 50; i++) {
		usleep(1000);
		err = ks_state_delete(d->eng, name);
	}
	if (!err) {
		inode_state_deleted(d, id);
		events_wake(d);
	}
	ks_state_unref(st);
	return err;
}

static int root_unlink(struct ks_daemon *d, fuse_req_t req,
		       struct ks_inode *dir, const char *name)
{
	return kind_root_entry(name) ? EPERM : EISDIR;
}

/* mv NAME NEW renames a state. */
static int root_rename(struct ks_daemon *d, fuse_req_t req,
		       struct ks_inode *from, const char *name,
		       struct ks_inode *to, const char *newname,
		       unsigned int flags)
{
	int err;

	if (to->role != ROLE_ROOT)
		return EPERM;
	err = kind_root_entry(name) || kind_root_entry(newname)
		? EPERM : sticky_check(d, req, name);
	if (!err)
		err = ks_state_rename(d->eng, name, newname);
	if (!err)
		events_wake(d);
	return err;
}

static void list_state(void *arg, struct ks_state *st)
{
	char name[KS_NAME_MAX + 1];

	if (ks_state_name(st, name))
		listing_add(arg, name, inode_state_ino(st, ROLE_STATE),
			    S_IFDIR);
}

static void root_list(struct ks_daemon *d, struct ks_inode *dir,
		      struct ks_listing *l)
{
	for (int role = 0; role < ROLE_COUNT; role++) {
		const struct ks_kind_ops *k = kind_of(role);

		if (k->root_name)
			listing_add(l, k->root_name, k->root_ino, k->type);
	}
	ks_engine_foreach(d->eng, list_state, l);
}

const struct ks_kind_ops kind_root = {
	.type = S_IFDIR,
	.root_ino = FUSE_ROOT_ID,
	.getattr = root_getattr,
	.setattr = root_setattr,
	.lookup = root_lookup,
	.mkdir = root_mkdir,
	.rmdir = root_rmdir,
	.unlink = root_unlink,
	.rename = root_rename,
	.list = root_list,
};
