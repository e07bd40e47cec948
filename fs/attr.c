/*
 * Pieces of attributes and attribute changes that several kinds share.
 */
#include "daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

size_t version_text_len(uint64_t v)
{
	char buf[24];

	return (size_t)snprintf(buf, sizeof(buf), "%" PRIu64 "\n", v);
}

void attr_of_daemon(struct ks_daemon *d, struct stat *stbuf)
{
	stbuf->st_uid = getuid();
	stbuf->st_gid = getgid();
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
