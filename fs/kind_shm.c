/*
 * .shm: where this mount's shared mappings are (SPEC 8, kstate(3)): the
 * directory's path and a newline, or nothing when the daemon offers none.
 * Readers find a state's mapping as DIR/INO, INO being the st_ino of the
 * state's directory; the file itself says which daemon made it.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>

#include "shm.h"

static size_t shm_text(struct ks_daemon *d, char *buf, size_t cap)
{
	const char *dir = ks_shm_dir(d->shm);
	size_t n = dir ? strlen(dir) : 0;

	if (!n || n + 1 > cap)
		return 0;
	memcpy(buf, dir, n);
	buf[n] = '\n';
	return n + 1;
}

static void shm_getattr(struct ks_daemon *d, struct ks_inode *in,
			struct stat *stbuf)
{
	char text[PATH_MAX + 1];

	attr_of_daemon(d, stbuf);
	stbuf->st_mode = S_IFREG | 0444;
	attr_set_size(stbuf, (off_t)shm_text(d, text, sizeof(text)));
}

static void shm_read(struct ks_daemon *d, fuse_req_t req, struct ks_fh *fh,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	char text[PATH_MAX + 1];
	size_t len = shm_text(d, text, sizeof(text)), n = 0;

	/* The text never changes while the daemon lives. */
	if (off >= 0 && (size_t)off < len) {
		n = len - (size_t)off;
		if (n > size)
			n = size;
	}
	fuse_reply_buf(req, n ? text + off : NULL, n);
}

static const struct ks_file_ops shm_fops = {
	.read = shm_read,
};

static int shm_open_file(struct ks_daemon *d, fuse_req_t req,
			 struct ks_inode *in, struct fuse_file_info *fi,
			 struct ks_fh *fh)
{
	fh->fops = &shm_fops;
	fh->readable = true;
	return (fi->flags & O_ACCMODE) == O_RDONLY ? 0 : EACCES;
}

const struct ks_kind_ops kind_shm = {
	.type = S_IFREG,
	.root_name = ".shm",
	.root_ino = INO_SHM,
	.getattr = shm_getattr,
	.setattr = setattr_read_only,
	.open = shm_open_file,
};
