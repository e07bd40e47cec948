/*
 * Transactions over several states: .txn/T directories, their member
 * files .txn/T/NAME, and the commit `mv .txn/T .commit/`.
 *
 * Every T is a snapshot taken at its mkdir (core/multi.c): a member shows
 * its state as it was then, whenever it is first looked up or opened, and
 * a T that writes nothing always commits.  States made after the mkdir
 * are not in it (ENOENT).
 *
 * Member files and transaction directories get no entry or attribute
 * caching: a committed T's entry lands in .commit/ in the kernel's cache,
 * and must be looked up again (and found gone) on its next use.  Nor are
 * names found missing in these directories remembered: transactions come
 * and go by commits too.
 *
 * This costs a LOOKUP of .txn/T at every path through T (each member's
 * open, the rename), and a second one of .commit/T at the next commit of
 * that name (the kernel revalidates the moved entry, finds it gone, and
 * looks the name up afresh).  T's entry cannot carry a timeout even though
 * only this kernel removes a T (rmdir, rename; the daemon never does):
 * the rename moves the entry, timeout and all, to .commit/T, where the
 * committing process itself would find the committed T until the kernel
 * is told to forget it.  Telling it (fuse_lowlevel_notify_inval_entry)
 * can only happen after the rename's reply, from another thread, and that
 * thread waits uninterruptibly for .commit's lock, which the next rename
 * holds while its requests are answered: a daemon killed meanwhile never
 * finishes dying (HACKING.md, "Other rules").  Members are looked up once
 * per T anyway, and states can be renamed or deleted under them.
 */
#include "daemon.h"

#include <errno.h>

/* .txn/T and its members are the user's who made T: only they (or root)
 * enter, commit or abort it.  0 or EPERM. */
static int multi_check_owner(fuse_req_t req, struct ks_multi *m)
{
	uid_t uid;
	gid_t gid;
	mode_t mode;

	ks_multi_owner(m, &uid, &gid, &mode);
	return caller_owns(req, uid) ? 0 : EPERM;
}

/* .txn */

static void txn_root_getattr(struct ks_daemon *d, struct ks_inode *in,
			     struct stat *stbuf)
{
	attr_of_daemon(d, stbuf);
	/* Anyone may begin a transaction, like files in /tmp. */
	stbuf->st_mode = S_IFDIR | 01777;
	/* Its own "." and "..", and each T's "..". */
	stbuf->st_nlink = 2 + ks_multi_count(d->eng);
}

static int txn_root_lookup(struct ks_daemon *d, struct ks_inode *dir,
			   const char *name, struct ks_inode **out)
{
	struct ks_multi *m;

	if (ks_multi_find(d->eng, name, &m))
		return ENOENT;
	*out = inode_lookup_multi(d, m);
	ks_multi_unref(m);
	return *out ? 0 : ENOMEM;
}

/* mkdir .txn/T begins a transaction. */
static int txn_root_mkdir(struct ks_daemon *d, fuse_req_t req,
			  struct ks_inode *dir, const char *name, mode_t mode,
			  struct ks_inode **out)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct ks_multi *m;
	int err = ks_multi_create(d->eng, name, &m);

	if (err)
		return err;
	/* Closed to others whatever mkdir asked: the members it holds are
	 * the creator's private pages. */
	ks_multi_set_owner(m, ctx->uid, ctx->gid, mode & ~ctx->umask & 0700);
	*out = inode_lookup_multi(d, m);
	ks_multi_unref(m);
	if (!*out) {
		ks_multi_remove(d->eng, name);
		return ENOMEM;
	}
	return 0;
}

/* rmdir .txn/T aborts it: that T, whose owner was checked, even if it
 * is committed meanwhile and another user makes a T of the same name. */
static int txn_root_rmdir(struct ks_daemon *d, fuse_req_t req,
			  struct ks_inode *dir, const char *name)
{
	struct ks_multi *m;
	int err = ks_multi_find(d->eng, name, &m);

	if (err)
		return err;
	err = multi_check_owner(req, m);
	if (!err)
		err = ks_multi_abort(m);
	ks_multi_unref(m);
	return err;
}

static int txn_root_unlink(struct ks_daemon *d, fuse_req_t req,
			   struct ks_inode *dir, const char *name)
{
	return EISDIR;
}

/* mv .txn/T .commit/ is the commit; nothing else moves here. */
static int txn_root_rename(struct ks_daemon *d, fuse_req_t req,
			   struct ks_inode *from, const char *name,
			   struct ks_inode *to, const char *newname,
			   unsigned int flags)
{
	struct ks_multi *m;
	int err;

	if (to->role != ROLE_COMMIT_DIR)
		return EPERM;
	err = ks_multi_find(d->eng, name, &m);
	if (err)
		return err;
	err = multi_check_owner(req, m);
	if (!err)
		err = ks_multi_commit(m);
	ks_multi_unref(m);
	return err;
}

static void list_multi(void *arg, struct ks_multi *m, const char *name)
{
	uint64_t ino = ks_multi_tag(m);

	listing_add(arg, name, ino ? ino : INO_TXN_BASE - 1, S_IFDIR);
}

static void txn_root_list(struct ks_daemon *d, struct ks_inode *dir,
			  struct ks_listing *l)
{
	ks_multi_foreach(d->eng, list_multi, l);
}

const struct ks_kind_ops kind_txn_root = {
	.type = S_IFDIR,
	.root_name = ".txn",
	.root_ino = INO_TXN_ROOT,
	.uncached_negative = true,
	.getattr = txn_root_getattr,
	.lookup = txn_root_lookup,
	.mkdir = txn_root_mkdir,
	.rmdir = txn_root_rmdir,
	.unlink = txn_root_unlink,
	.rename = txn_root_rename,
	.list = txn_root_list,
};

/* .commit: always empty, the target of commits. */

static void commit_dir_getattr(struct ks_daemon *d, struct ks_inode *in,
			       struct stat *stbuf)
{
	attr_of_daemon(d, stbuf);
	stbuf->st_mode = S_IFDIR | 0777;
	stbuf->st_nlink = 2;
}

static int commit_dir_lookup(struct ks_daemon *d, struct ks_inode *dir,
			     const char *name, struct ks_inode **out)
{
	return ENOENT;
}

static int commit_dir_remove(struct ks_daemon *d, fuse_req_t req,
			     struct ks_inode *dir, const char *name)
{
	return ENOENT;
}

static void commit_dir_list(struct ks_daemon *d, struct ks_inode *dir,
			    struct ks_listing *l)
{
}

const struct ks_kind_ops kind_commit_dir = {
	.type = S_IFDIR,
	.root_name = ".commit",
	.root_ino = INO_COMMIT_DIR,
	.uncached_negative = true,
	.getattr = commit_dir_getattr,
	.lookup = commit_dir_lookup,
	.rmdir = commit_dir_remove,
	.unlink = commit_dir_remove,
	.list = commit_dir_list,
};

/* .txn/T: its members are the states, each joined when first opened. */

static void multi_getattr(struct ks_daemon *d, struct ks_inode *in,
			  struct stat *stbuf)
{
	uid_t uid;
	gid_t gid;
	mode_t mode;

	ks_multi_owner(in->multi, &uid, &gid, &mode);
	attr_of_daemon(d, stbuf);
	stbuf->st_uid = uid;
	stbuf->st_gid = gid;
	stbuf->st_mode = S_IFDIR | mode;
	stbuf->st_nlink = 2;
	stbuf->st_ctim = stbuf->st_mtim = stbuf->st_atim =
		ks_multi_ctime(in->multi);
}

/* chmod and chown of .txn/T, as of a transaction file: T is private
 * (private_owner_change), so `mkdir -m 755 .txn/T`, which sets the mode
 * after making it, works and leaves T 0700. */
static int multi_setattr(struct ks_daemon *d, fuse_req_t req,
			 struct ks_inode *in, struct stat *attr, int to_set,
			 struct ks_fh *fh)
{
	uid_t uid;
	gid_t gid;
	mode_t mode;
	int err;

	if (to_set & FUSE_SET_ATTR_SIZE)
		return EISDIR;
	if (!(to_set & SETATTR_OWNER_BITS))
		return 0;
	ks_multi_owner(in->multi, &uid, &gid, &mode);
	err = private_owner_change(req, attr, to_set, &uid, &gid, &mode);
	if (!err)
		ks_multi_set_owner(in->multi, uid, gid, mode);
	return err;
}

/* Members are the existing states only: a name no state can have is
 * EINVAL or ENAMETOOLONG, as everywhere else, any other ENOENT. */
static int no_such_member(const char *name)
{
	int err = ks_name_check(name);

	return err ? err : ENOENT;
}

static int multi_lookup(struct ks_daemon *d, struct ks_inode *dir,
			const char *name, struct ks_inode **out)
{
	struct ks_inode tmpl = { .role = ROLE_MEMBER, .multi = dir->multi };
	struct ks_state *st;
	struct ks_page *page;

	/* A name no state can have is simply not there (ENOENT), as at the
	 * root; only creating one is EINVAL (no_such_member). */
	if (ks_multi_gone(dir->multi) || ks_state_lookup(d->eng, name, &st))
		return ENOENT;
	/* Only the states of T's instant are members. */
	page = ks_multi_snapshot_page(dir->multi, st);
	if (!page) {
		ks_state_unref(st);
		return ENOENT;
	}
	ks_page_unref(page);
	tmpl.st = st;
	*out = inode_new(d, inode_alloc_ino(d, 1), &tmpl);
	ks_state_unref(st);
	return *out ? 0 : ENOMEM;
}

/* rm .txn/T/NAME leaves NAME out of the transaction. */
static int multi_unlink(struct ks_daemon *d, fuse_req_t req,
			struct ks_inode *dir, const char *name)
{
	struct ks_state *st;
	int err = multi_check_owner(req, dir->multi);

	if (err)
		return err;
	if (ks_state_lookup(d->eng, name, &st))
		return ENOENT;
	err = ks_multi_leave(dir->multi, st);
	ks_state_unref(st);
	return err;
}

static int multi_mknod(struct ks_daemon *d, fuse_req_t req,
		       struct ks_inode *dir, const char *name, mode_t mode,
		       struct ks_inode **out)
{
	return no_such_member(name);
}

static int multi_create(struct ks_daemon *d, fuse_req_t req,
			struct ks_inode *dir, const char *name, mode_t mode,
			struct fuse_file_info *fi, struct ks_inode **out,
			struct ks_fh **fh)
{
	return no_such_member(name);
}

static void list_member(void *arg, struct ks_state *st, struct ks_txn *txn)
{
	char name[KS_NAME_MAX + 1];

	if (ks_state_name(st, name))
		listing_add(arg, name, INO_TXN_BASE - 1, S_IFREG);
}

static void multi_list(struct ks_daemon *d, struct ks_inode *dir,
		       struct ks_listing *l)
{
	ks_multi_foreach_member(dir->multi, list_member, l);
}

const struct ks_kind_ops kind_multi = {
	.type = S_IFDIR,
	.uncached_entry = true,
	.uncached_negative = true,
	.getattr = multi_getattr,
	.attr_timeout = attr_uncached,
	.setattr = multi_setattr,
	.lookup = multi_lookup,
	.unlink = multi_unlink,
	.mknod = multi_mknod,
	.create = multi_create,
	.list = multi_list,
};

/* .txn/T/NAME */

/* A member is T's owner's, read and write to them; what they may do with
 * the state behind it is the state's mode, which the daemon checks when
 * the member is opened or truncated (member_access). */
static void member_getattr(struct ks_daemon *d, struct ks_inode *in,
			   struct stat *stbuf)
{
	struct ks_state_attr sa;
	struct ks_page *page = ks_multi_snapshot_page(in->multi, in->st);
	struct ks_txn *txn;
	mode_t mode;

	/* The page of T's instant; T over, the state's own. */
	if (!page)
		page = ks_state_current(in->st);
	attr_of_state(in, stbuf, &sa);
	attr_of_page(page, stbuf);
	ks_multi_owner(in->multi, &stbuf->st_uid, &stbuf->st_gid, &mode);
	stbuf->st_mode = S_IFREG | 0600;
	stbuf->st_nlink = 1;
	if (ks_multi_member(in->multi, in->st, &txn) == 0) {
		attr_set_size(stbuf, (off_t)ks_txn_size(txn));
		ks_txn_unref(txn);
	}
	ks_page_unref(page);
}

/* What the caller may do with a member: T must be theirs, and the state
 * must let them do it to its data: read (04) and write (02), and reach
 * it (01), as the kernel would check NAME/data.  The kernel cannot check
 * this itself: the member's owner and mode are T's, not the state's. */
static int member_access(fuse_req_t req, struct ks_inode *in, mode_t want)
{
	struct ks_state_attr sa;

	if (multi_check_owner(req, in->multi))
		return EACCES;
	ks_state_get_attr(in->st, &sa);
	return caller_may(req, &sa, want | 01);
}

static int member_setattr(struct ks_daemon *d, fuse_req_t req,
			  struct ks_inode *in, struct stat *attr, int to_set,
			  struct ks_fh *fh)
{
	struct ks_txn *txn;
	int err;

	if (to_set & SETATTR_OWNER_BITS)
		return EPERM;
	if (!(to_set & FUSE_SET_ATTR_SIZE))
		return 0;
	err = member_access(req, in, 02);
	if (err)
		return err;
	if (fh && fh->txn)
		return attr->st_size == 0 ? ks_txn_restart(fh->txn) :
			ks_txn_truncate(fh->txn, attr->st_size);
	/* truncate by path joins, like an open. */
	err = ks_multi_join(in->multi, in->st, &txn);
	if (err)
		return err;
	err = attr->st_size == 0 ? ks_txn_restart(txn) :
		ks_txn_truncate(txn, attr->st_size);
	ks_txn_unref(txn);
	return err;
}

static int member_open(struct ks_daemon *d, fuse_req_t req,
		       struct ks_inode *in, struct fuse_file_info *fi,
		       struct ks_fh *fh)
{
	int flags = fi->flags;
	int acc = flags & O_ACCMODE;
	int err = member_access(req, in, (acc != O_WRONLY ? 04 : 0) |
					 (acc != O_RDONLY ? 02 : 0));

	if (err)
		return err;
	/* Opening is joining: the state's version now is the base. */
	err = ks_multi_join(in->multi, in->st, &fh->txn);
	if (err)
		return err;
	fh->fops = &txn_fops;
	fh->readable = (flags & O_ACCMODE) != O_WRONLY;
	if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY)
		err = ks_txn_restart(fh->txn);
	return err;
}

const struct ks_kind_ops kind_member = {
	.type = S_IFREG,
	.uncached_entry = true,
	.getattr = member_getattr,
	.attr_timeout = attr_uncached,
	.setattr = member_setattr,
	.open = member_open,
};
