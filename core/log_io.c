/*
 * The log's I/O table.  Every system call the log store makes on its files
 * goes through log->io, so that a test can make any of them fail (like
 * SQLite's test VFS), and so that the power-loss simulation is one more
 * table in front of the real one instead of branches in the write path.
 *
 * The power-loss shim (KSTATEFS_TEST_POWERLOSS=1): bytes written to the
 * store's data files (log.*, snap.*) stay in the daemon's memory until an
 * fdatasync or fsync of that file, which writes them out and syncs; a
 * close drops what was never synced.  So killing the daemon loses exactly
 * what a power cut would lose.  The lock file is not data and passes
 * through: while the daemon runs, the page cache would serve its content
 * to whoever reads it.  Reads pass through too: the log reads its files
 * only when it recovers, before anything is written.
 */
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the real calls ----------------------------------------------------- */

static int sys_openat(void *ctx, int dirfd, const char *name, int flags,
		      mode_t mode)
{
	return openat(dirfd, name, flags, mode);
}

static int sys_close(void *ctx, int fd)
{
	return close(fd);
}

static ssize_t sys_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
	return pread(fd, buf, len, off);
}

static ssize_t sys_pwrite(void *ctx, int fd, const void *buf, size_t len,
			  off_t off)
{
	return pwrite(fd, buf, len, off);
}

static int sys_fdatasync(void *ctx, int fd)
{
	return fdatasync(fd);
}

static int sys_fsync(void *ctx, int fd)
{
	return fsync(fd);
}

static int sys_ftruncate(void *ctx, int fd, off_t len)
{
	return ftruncate(fd, len);
}

static int sys_fstat(void *ctx, int fd, struct stat *st)
{
	return fstat(fd, st);
}

static int sys_renameat(void *ctx, int dirfd, const char *from,
			const char *to)
{
	return renameat(dirfd, from, dirfd, to);
}

static int sys_unlinkat(void *ctx, int dirfd, const char *name)
{
	return unlinkat(dirfd, name, 0);
}

static int sys_mkdir(void *ctx, const char *path, mode_t mode)
{
	return mkdir(path, mode);
}

static int sys_flock(void *ctx, int fd, int op)
{
	return flock(fd, op);
}

static int sys_listdir(void *ctx, int dirfd,
		       int (*fn)(void *arg, const char *name), void *arg)
{
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int err = 0;

	if (!d) {
		err = errno;
		if (fd >= 0)
			close(fd);
		errno = err;
		return -1;
	}
	while (!err && (de = readdir(d)))
		err = fn(arg, de->d_name);
	closedir(d);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

static const struct ks_log_io sys_io = {
	.ctx = NULL,
	.openat = sys_openat,
	.close = sys_close,
	.pread = sys_pread,
	.pwrite = sys_pwrite,
	.fdatasync = sys_fdatasync,
	.fsync = sys_fsync,
	.ftruncate = sys_ftruncate,
	.fstat = sys_fstat,
	.renameat = sys_renameat,
	.unlinkat = sys_unlinkat,
	.mkdir = sys_mkdir,
	.flock = sys_flock,
	.listdir = sys_listdir,
};

/* ---- the power-loss shim ------------------------------------------------ */

struct pl_extent {
	struct pl_extent *next;
	off_t off;
	size_t len;
	unsigned char bytes[];
};

struct pl_file {
	struct pl_file *next;
	int fd;
	struct pl_extent *head;     /* in the order written */
	struct pl_extent **tail;
};

struct log_powerloss {
	const struct ks_log_io *lower;
	struct ks_lock mu;         /* the compactor writes beside commits */
	struct pl_file *files;      /* the data files open */
};

static bool pl_is_data(const char *name)
{
	return strncmp(name, "log.", 4) == 0 || strncmp(name, "snap.", 5) == 0;
}

/* The held writes of fd, or NULL if fd is not a data file.  mu held. */
static struct pl_file *pl_find(struct log_powerloss *pl, int fd)
{
	ks_lock_assert_held(&pl->mu);
	for (struct pl_file *f = pl->files; f; f = f->next)
		if (f->fd == fd)
			return f;
	return NULL;
}

static void pl_drop(struct pl_file *f)
{
	while (f->head) {
		struct pl_extent *e = f->head;

		f->head = e->next;
		free(e);
	}
	f->tail = &f->head;
}

static int pl_openat(void *ctx, int dirfd, const char *name, int flags,
		     mode_t mode)
{
	struct log_powerloss *pl = ctx;
	int fd = pl->lower->openat(pl->lower->ctx, dirfd, name, flags, mode);
	struct pl_file *f;

	if (fd < 0 || !pl_is_data(name) || (flags & O_ACCMODE) == O_RDONLY)
		return fd;
	f = calloc(1, sizeof(*f));
	if (!f) {
		pl->lower->close(pl->lower->ctx, fd);
		errno = ENOMEM;
		return -1;
	}
	f->fd = fd;
	f->tail = &f->head;
	ks_lock(&pl->mu);
	f->next = pl->files;
	pl->files = f;
	ks_unlock(&pl->mu);
	return fd;
}

static int pl_close(void *ctx, int fd)
{
	struct log_powerloss *pl = ctx;
	struct pl_file **pp, *f = NULL;

	ks_lock(&pl->mu);
	for (pp = &pl->files; *pp; pp = &(*pp)->next)
		if ((*pp)->fd == fd) {
			f = *pp;
			*pp = f->next;
			break;
		}
	ks_unlock(&pl->mu);
	if (f) {
		pl_drop(f); /* never synced: lost, as in a power cut */
		free(f);
	}
	return pl->lower->close(pl->lower->ctx, fd);
}

static ssize_t pl_pread(void *ctx, int fd, void *buf, size_t len, off_t off)
{
	struct log_powerloss *pl = ctx;

	return pl->lower->pread(pl->lower->ctx, fd, buf, len, off);
}

static ssize_t pl_pwrite(void *ctx, int fd, const void *buf, size_t len,
			 off_t off)
{
	struct log_powerloss *pl = ctx;
	struct pl_extent *e;
	struct pl_file *f;

	ks_lock(&pl->mu);
	f = pl_find(pl, fd);
	if (!f) {
		ks_unlock(&pl->mu);
		return pl->lower->pwrite(pl->lower->ctx, fd, buf, len, off);
	}
	e = malloc(sizeof(*e) + len);
	if (!e) {
		ks_unlock(&pl->mu);
		errno = ENOMEM;
		return -1;
	}
	e->next = NULL;
	e->off = off;
	e->len = len;
	memcpy(e->bytes, buf, len);
	*f->tail = e;
	f->tail = &e->next;
	ks_unlock(&pl->mu);
	return (ssize_t)len;
}

/* Writes the held bytes of fd out, in the order they were written. */
static int pl_flush(struct log_powerloss *pl, int fd)
{
	const struct ks_log_io *lo = pl->lower;
	struct pl_file *f;
	int err = 0;

	ks_lock(&pl->mu);
	f = pl_find(pl, fd);
	while (f && f->head && !err) {
		struct pl_extent *e = f->head;
		size_t done = 0;

		while (done < e->len) {
			ssize_t n = lo->pwrite(lo->ctx, fd, e->bytes + done,
					       e->len - done,
					       e->off + (off_t)done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				err = n < 0 && errno ? errno : EIO;
				break;
			}
			done += (size_t)n;
		}
		f->head = e->next;
		free(e);
	}
	if (f && err)
		pl_drop(f); /* a failed writeback loses the pages */
	if (f && !f->head)
		f->tail = &f->head;
	ks_unlock(&pl->mu);
	if (err)
		errno = err;
	return err ? -1 : 0;
}

static int pl_fdatasync(void *ctx, int fd)
{
	struct log_powerloss *pl = ctx;

	if (pl_flush(pl, fd))
		return -1;
	return pl->lower->fdatasync(pl->lower->ctx, fd);
}

static int pl_fsync(void *ctx, int fd)
{
	struct log_powerloss *pl = ctx;

	if (pl_flush(pl, fd))
		return -1;
	return pl->lower->fsync(pl->lower->ctx, fd);
}

/* Held bytes past len are cut as the file is. */
static int pl_ftruncate(void *ctx, int fd, off_t len)
{
	struct log_powerloss *pl = ctx;
	struct pl_file *f;

	ks_lock(&pl->mu);
	f = pl_find(pl, fd);
	if (f) {
		struct pl_extent **pp = &f->head;

		while (*pp) {
			struct pl_extent *e = *pp;

			if (e->off >= len) {
				*pp = e->next;
				free(e);
				continue;
			}
			if (e->off + (off_t)e->len > len)
				e->len = (size_t)(len - e->off);
			pp = &e->next;
		}
		f->tail = pp;
	}
	ks_unlock(&pl->mu);
	return pl->lower->ftruncate(pl->lower->ctx, fd, len);
}

static int pl_fstat(void *ctx, int fd, struct stat *st)
{
	struct log_powerloss *pl = ctx;

	return pl->lower->fstat(pl->lower->ctx, fd, st);
}

static int pl_renameat(void *ctx, int dirfd, const char *from,
		       const char *to)
{
	struct log_powerloss *pl = ctx;

	return pl->lower->renameat(pl->lower->ctx, dirfd, from, to);
}

static int pl_unlinkat(void *ctx, int dirfd, const char *name)
{
	struct log_powerloss *pl = ctx;

	return pl->lower->unlinkat(pl->lower->ctx, dirfd, name);
}

static int pl_mkdir(void *ctx, const char *path, mode_t mode)
{
	struct log_powerloss *pl = ctx;

	return pl->lower->mkdir(pl->lower->ctx, path, mode);
}

static int pl_flock(void *ctx, int fd, int op)
{
	struct log_powerloss *pl = ctx;

	return pl->lower->flock(pl->lower->ctx, fd, op);
}

static int pl_listdir(void *ctx, int dirfd,
		      int (*fn)(void *arg, const char *name), void *arg)
{
	struct log_powerloss *pl = ctx;

	return pl->lower->listdir(pl->lower->ctx, dirfd, fn, arg);
}

static struct log_powerloss *pl_new(const struct ks_log_io *lower)
{
	struct log_powerloss *pl = calloc(1, sizeof(*pl));

	if (!pl)
		return NULL;
	pl->lower = lower;
	ks_lock_init(&pl->mu, "powerloss->mu", KS_RANK_STORE_INNER);
	return pl;
}

static void pl_free(struct log_powerloss *pl)
{
	if (!pl)
		return;
	while (pl->files) {
		struct pl_file *f = pl->files;

		pl->files = f->next;
		pl_drop(f);
		free(f);
	}
	ks_lock_destroy(&pl->mu);
	free(pl);
}

static struct ks_log_io pl_table(struct log_powerloss *pl)
{
	return (struct ks_log_io){
		.ctx = pl,
		.openat = pl_openat,
		.close = pl_close,
		.pread = pl_pread,
		.pwrite = pl_pwrite,
		.fdatasync = pl_fdatasync,
		.fsync = pl_fsync,
		.ftruncate = pl_ftruncate,
		.fstat = pl_fstat,
		.renameat = pl_renameat,
		.unlinkat = pl_unlinkat,
		.mkdir = pl_mkdir,
		.flock = pl_flock,
		.listdir = pl_listdir,
	};
}

/* ---- setting the table up ----------------------------------------------- */

void log_io_init(struct ks_log *log)
{
	const char *env = getenv(KS_LOG_POWERLOSS_ENV);

	log->sys = sys_io;
	log->io = sys_io;
	if (env && *env && strcmp(env, "0") != 0) {
		log->powerloss = pl_new(&log->sys);
		if (log->powerloss)
			log->io = pl_table(log->powerloss);
		else
			fprintf(stderr, "kstatefs: no memory for the "
				"power-loss simulation\n");
	}
}

void log_io_destroy(struct ks_log *log)
{
	pl_free(log->powerloss);
	log->powerloss = NULL;
}

void log_io_set(struct ks_log *log, const struct ks_log_io *io)
{
	struct ks_log_io t = io ? *io : sys_io;

#define KEEP_REAL(member)                                                   \
	do {                                                                \
		if (!t.member)                                              \
			t.member = sys_io.member;                           \
	} while (0)
	KEEP_REAL(openat);
	KEEP_REAL(close);
	KEEP_REAL(pread);
	KEEP_REAL(pwrite);
	KEEP_REAL(fdatasync);
	KEEP_REAL(fsync);
	KEEP_REAL(ftruncate);
	KEEP_REAL(fstat);
	KEEP_REAL(renameat);
	KEEP_REAL(unlinkat);
	KEEP_REAL(mkdir);
	KEEP_REAL(flock);
	KEEP_REAL(listdir);
#undef KEEP_REAL
	/* The shim, if any, keeps pointing at log->sys: only what is under
	 * it changes. */
	log->sys = t;
	if (!log->powerloss)
		log->io = t;
}

/* ---- helpers over the table --------------------------------------------- */

int log_write_all(struct ks_log *log, int fd, const void *buf, size_t len,
		  uint64_t off)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t n = log->io.pwrite(log->io.ctx, fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EDQUOT ? ENOSPC : errno ? errno : EIO;
		if (n == 0)
			return EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int log_sync_fd(struct ks_log *log, int fd)
{
	while (log->io.fdatasync(log->io.ctx, fd) != 0)
		if (errno != EINTR)
			return errno ? errno : EIO;
	return 0;
}

int log_fsync_dir(struct ks_log *log)
{
	return log->io.fsync(log->io.ctx, log->dirfd) ? errno : 0;
}

int log_read_file(struct ks_log *log, int fd, unsigned char **out,
		  size_t *size)
{
	struct stat stbuf;
	unsigned char *buf;
	size_t done = 0;

	if (log->io.fstat(log->io.ctx, fd, &stbuf))
		return errno;
	buf = malloc(stbuf.st_size ? (size_t)stbuf.st_size : 1);
	if (!buf)
		return ENOMEM;
	while (done < (size_t)stbuf.st_size) {
		ssize_t n = log->io.pread(log->io.ctx, fd, buf + done,
					 (size_t)stbuf.st_size - done,
					 (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = n < 0 ? errno : EIO;

			free(buf);
			return err;
		}
		done += (size_t)n;
	}
	*out = buf;
	*size = done;
	return 0;
}

int log_open_file(struct ks_log *log, const char *name, int flags)
{
	return log->io.openat(log->io.ctx, log->dirfd, name,
			      flags | O_CLOEXEC, 0600);
}

void log_close_file(struct ks_log *log, int fd)
{
	log->io.close(log->io.ctx, fd);
}

int log_unlink(struct ks_log *log, const char *name)
{
	return log->io.unlinkat(log->io.ctx, log->dirfd, name) ? errno : 0;
}

int log_list(struct ks_log *log, int (*fn)(void *arg, const char *name),
	     void *arg)
{
	return log->io.listdir(log->io.ctx, log->dirfd, fn, arg) ? errno : 0;
}
