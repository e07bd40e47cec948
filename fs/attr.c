/*
 * Pieces of attributes and attribute changes that several kinds share.
 */
#include "daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

size_t version_text_len(uint64_t v)
{
	char buf[24];

	return (size_t)snprintf(buf, sizeof(buf), "%" PRIu64 "\n", v);
}

void attr_of_daemon(struct ks_daemon *d, struct stat *stbuf)
{
	stbuf->st_uid = d->uid;
	stbuf->st_gid = d->gid;
	stbuf->st_atim = d->started;
	stbuf->st_mtim = d->started;
	stbuf->st_ctim = d->started;
	stbuf->st_nlink = 1;
}

void attr_of_state(struct ks_inode *in, struct stat *stbuf,
		   struct ks_state_attr *sa)
{
	ks_state_get_attr(in->st, sa);
	stbuf->st_uid = sa->uid;
	stbuf->st_gid = sa->gid;
	stbuf->st_ctim = sa->ctime;
}

void attr_of_state_dir(struct ks_inode *in, struct stat *stbuf,
		       mode_t perm_mask)
{
	struct ks_state_attr sa;

	attr_of_state(in, stbuf, &sa);
	/* Commits do not touch directories. */
	stbuf->st_mtim = sa.ctime;
	stbuf->st_atim = sa.ctime;
	stbuf->st_mode = S_IFDIR | (sa.mode & perm_mask);
	stbuf->st_nlink = 2;
}

void attr_of_page(const struct ks_page *page, struct stat *stbuf)
{
	stbuf->st_mtim = page->mtime;
	stbuf->st_atim = page->mtime;
	attr_set_size(stbuf, (off_t)page->len);
}

void attr_set_size(struct stat *stbuf, off_t size)
{
	stbuf->st_size = size;
	stbuf->st_blocks = (size + 511) / 512;
}

double attr_uncached(struct ks_daemon *d, struct ks_inode *in)
{
	return 0;
}

int setattr_fixed(int to_set)
{
	return (to_set & (SETATTR_OWNER_BITS | FUSE_SET_ATTR_SIZE)) ? EPERM : 0;
}

int setattr_read_only(struct ks_daemon *d, fuse_req_t req,
		      struct ks_inode *in, struct stat *attr, int to_set,
		      struct ks_fh *fh)
{
	if (to_set & FUSE_SET_ATTR_SIZE)
		return EACCES;
	return (to_set & SETATTR_OWNER_BITS) ? EPERM : 0;
}

bool caller_owns(fuse_req_t req, uid_t owner)
{
	uid_t uid = fuse_req_ctx(req)->uid;

	return uid == 0 || uid == owner;
}

bool caller_in_group(fuse_req_t req, gid_t gid)
{
	gid_t few[32], *list = few;
	int n, cap = 32;
	bool in = fuse_req_ctx(req)->gid == gid;

	if (in)
		return true;
	/* The supplementary groups come from /proc: asked only when the
	 * primary group does not settle it. */
	n = fuse_req_getgroups(req, cap, list);
	if (n > cap) {
		cap = n;
		list = malloc((size_t)cap * sizeof(*list));
		n = list ? fuse_req_getgroups(req, cap, list) : 0;
		if (n > cap)
			n = cap;
	}
	for (int i = 0; i < n && !in; i++)
		in = list[i] == gid;
	if (list != few)
		free(list);
	return in;
}

int private_owner_change(fuse_req_t req, const struct stat *attr, int to_set,
			 uid_t *uid, gid_t *gid, mode_t *mode)
{
	uid_t caller = fuse_req_ctx(req)->uid;

	if (!caller_owns(req, *uid))
		return EPERM;
	if ((to_set & FUSE_SET_ATTR_UID) && caller != 0 &&
	    attr->st_uid != *uid)
		return EPERM;
	if ((to_set & FUSE_SET_ATTR_GID) && caller != 0 &&
	    attr->st_gid != *gid && !caller_in_group(req, attr->st_gid))
		return EPERM;
	if (to_set & FUSE_SET_ATTR_UID)
		*uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID)
		*gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_MODE)
		*mode = attr->st_mode & 0700;
	return 0;
}

int caller_may(fuse_req_t req, const struct ks_state_attr *sa, mode_t want)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	mode_t bits;

	if (ctx->uid == 0)
		return 0;
	if (ctx->uid == sa->uid)
		bits = sa->mode >> 6;
	else if (caller_in_group(req, sa->gid))
		bits = sa->mode >> 3;
	else
		bits = sa->mode;
	return (bits & want & 07) == (want & 07) ? 0 : EACCES;
}
