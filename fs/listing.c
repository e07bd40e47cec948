/*
 * Directory listings: the entries packed as readdir replies them, taken
 * whole at opendir and served from there.
 */
#include "daemon.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct ks_listing {
	fuse_req_t req;            /* the opendir, for fuse_add_direntry */
	struct ks_inode *dir;      /* once open: a reference */
	char *buf;                 /* packed fuse_add_direntry entries */
	size_t len, cap;
	size_t *ends;              /* where each entry ends */
	size_t n, ncap;
	int err;
	struct ks_open_link open;  /* once open (open_files.h) */
};

struct ks_listing *listing_new(fuse_req_t req)
{
	struct ks_listing *l = calloc(1, sizeof(*l));

	if (l)
		l->req = req;
	return l;
}

int listing_error(const struct ks_listing *l)
{
	return l->err;
}

void listing_free(struct ks_listing *l)
{
	if (!l)
		return;
	free(l->buf);
	free(l->ends);
	free(l);
}

void listing_add(struct ks_listing *l, const char *name, uint64_t ino,
		 mode_t type)
{
	struct stat st = { .st_ino = ino, .st_mode = type };
	size_t need;

	if (l->err)
		return;
	need = fuse_add_direntry(l->req, NULL, 0, name, NULL, 0);
	if (l->len + need > l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 1024;
		char *nb;

		while (cap < l->len + need)
			cap *= 2;
		nb = realloc(l->buf, cap);
		if (!nb) {
			l->err = ENOMEM;
			return;
		}
		l->buf = nb;
		l->cap = cap;
	}
	if (l->n == l->ncap) {
		size_t ncap = l->ncap ? l->ncap * 2 : 32;
		size_t *ne = realloc(l->ends, ncap * sizeof(*ne));

		if (!ne) {
			l->err = ENOMEM;
			return;
		}
		l->ends = ne;
		l->ncap = ncap;
	}
	/* Each entry's offset is where the next one starts. */
	fuse_add_direntry(l->req, l->buf + l->len, need, name, &st,
			  (off_t)(l->len + need));
	l->len += need;
	l->ends[l->n++] = l->len;
}

void listing_reply_open(struct ks_daemon *d, fuse_req_t req,
			struct fuse_file_info *fi, struct ks_listing *l,
			struct ks_inode *dir)
{
	l->dir = dir;
	l->req = NULL;             /* not valid past the reply */
	fi->fh = (uintptr_t)l;
	fi->cache_readdir = 0;
	/* Before the reply: its release may come at once. */
	open_files_add_dir(d, &l->open);
	if (fuse_reply_open(req, fi) != 0) {
		open_files_remove(d, &l->open);
		listing_free(l);
		inode_put(d, dir);
	}
}

void listing_read(fuse_req_t req, struct fuse_file_info *fi, size_t size,
		  off_t off)
{
	struct ks_listing *l = (struct ks_listing *)(uintptr_t)fi->fh;
	size_t start = (size_t)off, end = start;
	char *copy;

	if (off < 0 || start > l->len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* Whole entries only, from the first entry boundary at or after
	 * off (an offset from lseek may fall inside an entry). */
	if (start) {
		size_t i = 0;

		while (i < l->n && l->ends[i] < start)
			i++;
		start = end = i < l->n ? l->ends[i] : l->len;
	}
	for (size_t i = 0; i < l->n; i++) {
		if (l->ends[i] <= start)
			continue;
		if (l->ends[i] - start > size)
			break;
		end = l->ends[i];
	}
	/* Reply from a copy: once the kernel has the reply, the reader may
	 * close the directory and releasedir free the listing while
	 * fuse_reply_buf (or a sanitizer watching it) still looks at it. */
	copy = malloc(end - start + 1);
	if (!copy) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(copy, l->buf + start, end - start);
	fuse_reply_buf(req, copy, end - start);
	free(copy);
}

void listing_release(struct ks_daemon *d, struct fuse_file_info *fi)
{
	struct ks_listing *l = (struct ks_listing *)(uintptr_t)fi->fh;

	open_files_remove(d, &l->open);
	inode_put(d, l->dir);
	listing_free(l);
}

void listing_free_open(struct ks_daemon *d, struct ks_open_link *link)
{
	struct ks_listing *l = (struct ks_listing *)((char *)link -
						     offsetof(struct ks_listing,
							      open));

	inode_put(d, l->dir);
	listing_free(l);
}
