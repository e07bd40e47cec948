/*
 * NAME/every/ and the views in it, NAME/every/PERIOD/{data,version}: a
 * view exists once looked up by its PERIOD, and its files read like the
 * state's own, showing the view's version (views.c).  A view moves
 * without a request, so the attributes of its files are never cached.
 */
#include "daemon.h"

#include <errno.h>
#include <string.h>

#include "notifier.h"
#include "views.h"

static void count_view(void *arg, const char *name, uint64_t ino)
{
	(*(nlink_t *)arg)++;
}

static void every_getattr(struct ks_daemon *d, struct ks_inode *in,
			  struct stat *stbuf)
{
	attr_of_state_dir(in, stbuf, 0555);
	/* The ".." of each view it lists. */
	views_foreach(d, in->st, count_view, &stbuf->st_nlink);
}

static int every_lookup(struct ks_daemon *d, struct ks_inode *dir,
			const char *name, struct ks_inode **out)
{
	struct ks_inode tmpl = { .role = ROLE_VIEW, .st = dir->st };
	struct ks_view *v;
	int err = views_get(d, dir->st, name, &v);

	if (err)
		return err;
	tmpl.view = v;
	*out = inode_new(d, view_ino(v), &tmpl);
	view_unref(d, v);
	return *out ? 0 : ENOMEM;
}

static int every_rmdir(struct ks_daemon *d, fuse_req_t req,
		       struct ks_inode *dir, const char *name)
{
	return EPERM;
}

static int views_unlink(struct ks_daemon *d, fuse_req_t req,
			struct ks_inode *dir, const char *name)
{
	return EPERM;
}

static void list_view(void *arg, const char *name, uint64_t ino)
{
	listing_add(arg, name, ino, S_IFDIR);
}

static void every_list(struct ks_daemon *d, struct ks_inode *dir,
		       struct ks_listing *l)
{
	views_foreach(d, dir->st, list_view, l);
}

const struct ks_kind_ops kind_every = {
	.type = S_IFDIR,
	.getattr = every_getattr,
	/* Its link count moves with lookups of views, which the kernel
	 * does not take for changes of the directory. */
	.attr_timeout = attr_uncached,
	.lookup = every_lookup,
	.rmdir = every_rmdir,
	.unlink = views_unlink,
	.list = every_list,
};

static int view_lookup(struct ks_daemon *d, struct ks_inode *dir,
		       const char *name, struct ks_inode **out)
{
	struct ks_inode tmpl = { .st = dir->st, .view = dir->view };
	uint64_t ino;

	if (strcmp(name, "data") == 0) {
		tmpl.role = ROLE_VIEW_DATA;
		ino = view_ino(dir->view) + 1;
	} else if (strcmp(name, "version") == 0) {
		tmpl.role = ROLE_VIEW_VERSION;
		ino = view_ino(dir->view) + 2;
	} else {
		return ENOENT;
	}
	*out = inode_new(d, ino, &tmpl);
	return *out ? 0 : ENOMEM;
}

static void view_list(struct ks_daemon *d, struct ks_inode *dir,
		      struct ks_listing *l)
{
	uint64_t ino = dir->view ? view_ino(dir->view) : 0;

	listing_add(l, "data", dir->view ? ino + 1 : 0, S_IFREG);
	listing_add(l, "version", dir->view ? ino + 2 : 0, S_IFREG);
}

static void view_getattr(struct ks_daemon *d, struct ks_inode *in,
			 struct stat *stbuf)
{
	attr_of_state_dir(in, stbuf, 0555);
}

const struct ks_kind_ops kind_view = {
	.type = S_IFDIR,
	.getattr = view_getattr,
	.lookup = view_lookup,
	.unlink = views_unlink,
	.list = view_list,
};

/* A file of a view: the view's version in place of the state's. */
static struct ks_page *view_file_attr(struct ks_inode *in, struct stat *stbuf)
{
	struct ks_state_attr sa;
	struct ks_page *page = view_shown(in->view);

	attr_of_state(in, stbuf, &sa);
	attr_of_page(page, stbuf);
	stbuf->st_mode = S_IFREG | (sa.mode & 0444);
	stbuf->st_nlink = 1;
	return page;
}

static void view_data_getattr(struct ks_daemon *d, struct ks_inode *in,
			      struct stat *stbuf)
{
	ks_page_unref(view_file_attr(in, stbuf));
}

static void view_data_destroy(struct ks_daemon *d, struct ks_fh *fh)
{
	view_closed(fh->inode->view);
}

static const struct ks_file_ops view_data_fops = {
	.read = data_read_pinned,
	.write = write_denied,
	.destroy = view_data_destroy,
};

static int view_data_open(struct ks_daemon *d, fuse_req_t req,
			  struct ks_inode *in, struct fuse_file_info *fi,
			  struct ks_fh *fh)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return EACCES;
	fh->fops = &view_data_fops;
	fh->readable = true;
	view_opened(in->view);
	return 0;
}

const struct ks_kind_ops kind_view_data = {
	.type = S_IFREG,
	.getattr = view_data_getattr,
	.attr_timeout = attr_uncached,
	.setattr = setattr_read_only,
	.open = view_data_open,
};

static void view_version_getattr(struct ks_daemon *d, struct ks_inode *in,
				 struct stat *stbuf)
{
	struct ks_page *page = view_file_attr(in, stbuf);

	attr_set_size(stbuf, (off_t)version_text_len(page->version));
	ks_page_unref(page);
}

static int view_version_open(struct ks_daemon *d, fuse_req_t req,
			     struct ks_inode *in, struct fuse_file_info *fi,
			     struct ks_fh *fh)
{
	if ((fi->flags & O_ACCMODE) == O_RDONLY) {
		struct ks_page *page = view_shown(in->view);

		fh->fops = &version_fops;
		fh->readable = true;
		atomic_store(&fh->seen, page->version);
		ks_page_unref(page);
		view_opened(in->view);
		return 0;
	}
	if (notifier_is_self(d, fuse_req_ctx(req)->pid)) {
		fh->fops = &notify_fops;
		return 0;
	}
	return EACCES;
}

const struct ks_kind_ops kind_view_version = {
	.type = S_IFREG,
	.getattr = view_version_getattr,
	.attr_timeout = attr_uncached,
	.setattr = setattr_read_only,
	.open = view_version_open,
};
