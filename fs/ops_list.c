/*
 * Directory listings.  opendir takes a snapshot of the names, so that a
 * listing read in several calls is consistent while states and
 * transactions come and go.
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct listing {
	fuse_req_t req;
	char *buf;
	size_t len, cap;
	size_t *ends;      /* where each entry ends */
	size_t n, ncap;
	int err;
};

static void add(struct listing *l, const char *name, uint64_t ino,
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

static void add_any(void *arg, const char *name, uint64_t ino, mode_t type)
{
	add(arg, name, ino, type);
}

static void add_state(void *arg, struct ks_state *st)
{
	char name[KS_NAME_MAX + 1];

	if (ks_state_name(st, name))
		add(arg, name, inode_state_ino(st, ROLE_STATE), S_IFDIR);
}

struct txn_listing {
	struct listing *l;
	struct ks_daemon *d;
};

static void add_txn(void *arg, struct ks_txn *txn, const char *name)
{
	struct txn_listing *tl = arg;
	uint64_t ino = ks_txn_tag(txn);

	/* A transaction the kernel has not looked up yet has no inode
	 * number; any number will do until it does. */
	add(tl->l, name, ino ? ino : INO_TXN_BASE - 1, S_IFREG);
}

void ks_op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ks_daemon *d = daemon_of(req);
	struct ks_inode *in = inode_get(d, ino);
	struct listing l = { .req = req };
	struct ks_fh *fh;

	if (!in) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	add(&l, ".", in->ino, S_IFDIR);
	add(&l, "..", FUSE_ROOT_ID, S_IFDIR);
	if (in->role == ROLE_ROOT) {
		add(&l, ".txn", INO_TXN_ROOT, S_IFDIR);
		add(&l, ".commit", INO_COMMIT_DIR, S_IFDIR);
		add(&l, ".events", INO_EVENTS, S_IFREG);
		add(&l, ".stats", INO_STATS, S_IFREG);
		ks_engine_foreach(d->eng, add_state, &l);
	} else if (in->st && ks_state_deleted(in->st)) {
		l.err = ENOENT;
	} else if (in->role == ROLE_STATE) {
		struct txn_listing tl = { &l, d };

		add(&l, "data", inode_data_ino(d, in->st), S_IFREG);
		add(&l, "version", inode_state_ino(in->st, ROLE_VERSION),
		    S_IFREG);
		add(&l, "every", inode_state_ino(in->st, ROLE_EVERY), S_IFDIR);
		ks_txn_foreach(in->st, add_txn, &tl);
	} else if (in->role == ROLE_EVERY) {
		views_list(d, in->st, add_any, &l);
	} else if (in->role == ROLE_VIEW) {
		add(&l, "data", in->view ? view_version_key(in->view) - 1 : 0,
		    S_IFREG);
		add(&l, "version", in->view ? view_version_key(in->view) : 0,
		    S_IFREG);
	} else if (in->role == ROLE_TXN_ROOT || in->role == ROLE_MULTI ||
		   in->role == ROLE_COMMIT_DIR) {
		multi_list(d, in, add_any, &l);
	} else {
		l.err = ENOTDIR;
	}
	fh = l.err ? NULL : calloc(1, sizeof(*fh));
	if (!fh) {
		fuse_reply_err(req, l.err ? l.err : ENOMEM);
		free(l.buf);
		free(l.ends);
		inode_put(d, in);
		return;
	}
	fh->kind = FH_DIR;
	fh->inode = in;
	fh->listing = l.buf;
	fh->listing_len = l.len;
	fh->ends = l.ends;
	fh->nends = l.n;
	fi->fh = (uintptr_t)fh;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) != 0) {
		free(fh->listing);
		free(fh->ends);
		free(fh);
		inode_put(d, in);
	}
}

void ks_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct ks_fh *fh = fh_of(fi);
	size_t start = (size_t)off, end = start;
	char *copy;

	if (off < 0 || start > fh->listing_len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* Whole entries only, from the first entry boundary at or after
	 * off (an offset from lseek may fall inside an entry). */
	if (start) {
		size_t i = 0;

		while (i < fh->nends && fh->ends[i] < start)
			i++;
		start = end = i < fh->nends ? fh->ends[i] : fh->listing_len;
	}
	for (size_t i = 0; i < fh->nends; i++) {
		if (fh->ends[i] <= start)
			continue;
		if (fh->ends[i] - start > size)
			break;
		end = fh->ends[i];
	}
	/* Reply from a copy: once the kernel has the reply, the reader may
	 * close the directory and releasedir free the listing while
	 * fuse_reply_buf (or a sanitizer watching it) still looks at it. */
	copy = malloc(end - start + 1);
	if (!copy) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(copy, fh->listing + start, end - start);
	fuse_reply_buf(req, copy, end - start);
	free(copy);
}

void ks_op_releasedir(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi)
{
	struct ks_fh *fh = fh_of(fi);

	inode_put(daemon_of(req), fh->inode);
	free(fh->listing);
	free(fh->ends);
	free(fh);
	fuse_reply_err(req, 0);
}
