/*
 * libkstate: kstatefs states from C, through the files of the mount and,
 * for reads on the daemon's host, its shared mappings (kshm.c).
 *
 *   NAME/data     the committed page.  A read at offset 0 takes the latest
 *                 version and pins it for the later offsets of that read.
 *                 Opened read-write it is a transaction: its own copy of
 *                 the page, which fsync commits, after which the open file
 *                 goes on as a new transaction (SPEC 4.1).
 *   NAME/version  the version in decimal.  poll() reports POLLPRI once a
 *                 version newer than the one this open file last read exists
 *                 (the sysfs idiom: read, poll, read again from offset 0).
 *   .txn/T/NAME   T's copy of state NAME, for transactions over several
 *                 states; mv .txn/T .commit/ commits all of them (SPEC 5).
 *   NAME/T        any other file is a transaction, starting as a copy of
 *                 data; rename(T, data) commits it or fails with EAGAIN.
 *   .shm          at the mount's root: where the shared mappings are.  A
 *                 read of one is a copy under a sequence lock, with no
 *                 request to the daemon; the files answer whenever there
 *                 is no mapping, or it is no longer to be trusted.
 */
/* kstate_get_ptr is defined here as the function the header's _Generic
 * macro falls back to. */
#define KSTATE_NO_GENERIC
#include "kstate.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "kshm.h"

/* The library is built with hidden visibility; only these are exported. */
#define EXPORT __attribute__((visibility("default")))

/* Pages are at most a page by default: allocate that much from the start, so
 * that ordinary edits never reallocate. */
#define MIN_CAPACITY 4096

/* statfs(2)'s f_type of every FUSE file system, kstatefs included. */
#define FUSE_SUPER_MAGIC 0x65735546

/* kstate_read gives up with EAGAIN after this many attempts to see a page
 * and its version together (only a writer committing back to back, faster
 * than a read takes, could cause that). */
#define READ_ATTEMPTS 1000

/* A read-write open of data, kept between transactions: each transaction
 * on it is pread (its copy of the page), pwrite, fsync; a successful fsync
 * commits and the file goes on as a transaction based on that commit.  So
 * a writer that keeps it pays four requests or fewer per commit, where a
 * transaction file costs about eight. */
struct data_file {
	int fd;           /* -1: none */
	pid_t pid;        /* the process that opened it */
	/* A version the file's copy is of or newer than: a version read
	 * before the open, plus one per commit through the file.  So when
	 * the state's version is BASE the copy is current. */
	uint64_t base;
	bool page_known;  /* PAGE holds the copy (what the last commit wrote) */
	char *page;
	size_t len, cap;
};

struct kstate {
	/* The shared data and version files carry per-open-file state (the
	 * pinned version of data, the "last read" mark of version), so their
	 * use is serialized. */
	pthread_mutex_t lock;
	unsigned flags;
	bool view;      /* a throttled view, NAME/every/PERIOD: read-only */
	int dirfd;      /* the state directory: every name is relative to it */
	int datafd;
	int versionfd;  /* also what kstate_fd hands out */
	char *page;     /* kstate_read's buffer: the last page read */
	size_t page_cap;

	/* Transactions.  A version file of their own, so that reading the
	 * version to begin one never re-arms kstate_fd's poll; the data file
	 * the last transaction left, for the next one; and what is known of
	 * the daemon.  All under txn_lock. */
	pthread_mutex_t txn_lock;
	int txn_versionfd;
	struct data_file idle;
	/* After a conflict, does the daemon drop the file's writes and rebase
	 * it on the latest version (SPEC 4.1), or keep them on the old base,
	 * as daemons before that rule did?  -1 until the first conflict. */
	int rebases;
	char *name;     /* the state's name at the root of its mount */
	/* The shared mapping, or NULL: set at subscribe, unmapped at
	 * unsubscribe, so reads use it without the lock. */
	struct kshm *shm;
	/* kstate_fd was handed out, and the newest version a read of the
	 * version file marked as seen: a read through the mapping that finds
	 * a newer one must mark it too, or poll would report it forever. */
	atomic_bool fd_used;
	atomic_uint_fast64_t armed;
	/* kstate_read_ptr's copy, zero past the page, under its own lock. */
	pthread_mutex_t ptr_lock;
	char *snap;
	size_t snap_cap;
};

struct kstate_txn {
	struct kstate *state;
	struct kstate_multi *multi;  /* NULL: a transaction on one state */
	/* One state: the handle's data file (fd, pid, base), and the length
	 * of its copy, which a shorter page must truncate.  A member of a
	 * transaction over several states: .txn/T/NAME. */
	struct data_file file;
	size_t base_len;
	char *buf;           /* the page the caller edits */
	size_t len, cap;
	char *orig;          /* a member: the page as read, to see changes */
	size_t orig_len;
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A per-thread xorshift64* generator for backoff jitter and transaction
 * names: no lock, and no shared sequence that threads would follow in
 * lockstep. */
static uint64_t rng_next(void)
{
	static _Thread_local uint64_t s;

	while (s == 0) {
		if (getrandom(&s, sizeof s, GRND_NONBLOCK) != sizeof s)
			s = now_ns() ^ ((uint64_t)getpid() << 32) ^
			    (uint64_t)(uintptr_t)&s;
	}
	s ^= s >> 12;
	s ^= s << 25;
	s ^= s >> 27;
	return s * 2685821657736338717ull;
}

/* Grows *BUF to hold at least NEED bytes. */
static int reserve(char **buf, size_t *cap, size_t need)
{
	size_t n = *cap ? *cap : MIN_CAPACITY;
	char *p;

	if (need <= *cap)
		return 0;
	while (n < need) {
		if (n > SIZE_MAX / 2) {
			errno = ENOMEM;
			return -1;
		}
		n *= 2;
	}
	p = realloc(*buf, n);
	if (!p)
		return -1;
	*buf = p;
	*cap = n;
	return 0;
}

/* Reads a whole page from FD into *BUF: the first read, at offset 0, picks
 * the latest version and the following ones continue in it, so the result is
 * one whole version whatever its length. */
static ssize_t read_page(int fd, char **buf, size_t *cap)
{
	size_t len = 0;

	for (;;) {
		ssize_t n;

		if (reserve(buf, cap, len + 1) < 0)
			return -1;
		n = pread(fd, *buf + len, *cap - len, (off_t)len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return (ssize_t)len;
		len += (size_t)n;
	}
}

/* Reads the version file from offset 0, which also marks this version as
 * seen by that open file, re-arming poll(). */
static int read_version(int fd, uint64_t *version)
{
	char text[32];
	ssize_t n;
	uint64_t v = 0;
	ssize_t i;

	do
		n = pread(fd, text, sizeof text, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	/* Digits, then a newline: anything else is not a kstatefs version. */
	for (i = 0; i < n && text[i] >= '0' && text[i] <= '9'; i++) {
		unsigned d = (unsigned)(text[i] - '0');

		if (v > (UINT64_MAX - d) / 10)
			break;
		v = v * 10 + d;
	}
	if (i == 0 || i + 1 != n || text[i] != '\n') {
		errno = EPROTO;
		return -1;
	}
	*version = v;
	return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, buf + done, len - done, (off_t)done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}

/* Every public function checks its handles first: a NULL one is a
 * programming error that deserves an error, as in libc, not a crash
 * somewhere inside. */
static bool invalid(bool bad)
{
	if (bad)
		errno = EINVAL;
	return bad;
}

static void close_keep_errno(int fd)
{
	int saved = errno;

	if (fd >= 0)
		close(fd);
	errno = saved;
}

/* ---- states ------------------------------------------------------------- */

/* The rules of state names (kstatefs(1)) for the last component of PATH:
 * 0, ENAMETOOLONG past 255 bytes, EINVAL for a control byte.  Checked here
 * so that no such name reaches the mount, where a newline in a name could
 * pass for another line of .events.  "." and ".." name a state by where it
 * is, and the daemon checks the rest (a leading '.'). */
static int state_name_check(const char *path)
{
	const char *end = path + strlen(path), *start;

	while (end > path && end[-1] == '/')
		end--;
	for (start = end; start > path && start[-1] != '/'; start--)
		;
	if (end - start > 255)
		return ENAMETOOLONG;
	for (const unsigned char *p = (const unsigned char *)start;
	     p < (const unsigned char *)end; p++)
		if (*p < 0x20 || *p == 0x7f)
			return EINVAL;
	return 0;
}

/* The name of the state whose directory is PATH: its last component, or,
 * where that says nothing (".", "..", a symbolic link), the last component
 * of the real path.  Transactions over several states name their members
 * by it (.txn/T/NAME). */
static char *state_name(const char *path)
{
	char *real = NULL, *name;
	const char *end = path + strlen(path), *start;
	struct stat st;

	while (end > path + 1 && end[-1] == '/')
		end--;
	start = end;
	while (start > path && start[-1] != '/')
		start--;
	if (end - start == 0 || (end - start == 1 && *start == '.') ||
	    (end - start == 2 && start[0] == '.' && start[1] == '.') ||
	    lstat(path, &st) < 0 || S_ISLNK(st.st_mode)) {
		real = realpath(path, NULL);
		if (!real)
			return NULL;
		end = real + strlen(real);
		start = strrchr(real, '/') + 1;
	}
	name = strndup(start, (size_t)(end - start));
	free(real);
	return name;
}

/* Opens the directory above FD, for fstat and the *at calls only. */
static int open_up(int fd)
{
	return openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* Is FD (a directory on the mount DEV) the root of a kstatefs mount?
 * Every root holds the regular file .stats.  0, ENOENT, or the errno of
 * a call that failed otherwise. */
static int check_root(int fd, dev_t dev)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return errno;
	if (st.st_dev != dev)
		return ENOENT;  /* the directory above a mount's root */
	if (fstatat(fd, ".stats", &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOTDIR ? ENOENT : errno;
	return S_ISREG(st.st_mode) ? 0 : ENOENT;
}

/* Is FD on a FUSE file system?  0 or ENOENT (or a failed call's errno). */
static int check_fuse(int fd)
{
	struct statfs fs;

	if (fstatfs(fd, &fs) < 0)
		return errno;
	return fs.f_type == FUSE_SUPER_MAGIC ? 0 : ENOENT;
}

/* What the directory open at DIRFD is: 0 and *VIEW false for a state (a
 * directory at the root of a kstatefs mount), 0 and *VIEW true for a
 * throttled view of one (NAME/every/PERIOD), ENOENT for anything else.
 * The files data and version are not enough: a directory holding files of
 * those names anywhere would pass for a state, and a commit would
 * overwrite its data. */
static int state_kind(int dirfd, bool *view)
{
	struct stat st, every, there;
	int up, state = -1, root = -1, err;

	err = check_fuse(dirfd);
	if (err)
		return err;
	if (fstat(dirfd, &st) < 0)
		return errno;
	up = open_up(dirfd);
	if (up < 0)
		return errno;
	err = check_root(up, st.st_dev);
	*view = false;
	if (err != ENOENT)
		goto out;
	/* A view: UP must be the every/ directory of a state at the root. */
	state = open_up(up);
	if (state < 0) {
		err = errno;
		goto out;
	}
	if (fstat(up, &every) < 0 ||
	    fstatat(state, "every", &there, AT_SYMLINK_NOFOLLOW) < 0 ||
	    there.st_dev != st.st_dev || there.st_ino != every.st_ino ||
	    every.st_dev != st.st_dev) {
		err = ENOENT;
		goto out;
	}
	root = open_up(state);
	if (root < 0) {
		err = errno;
		goto out;
	}
	err = check_root(root, st.st_dev);
	*view = err == 0;
out:
	close_keep_errno(root);
	close_keep_errno(state);
	close_keep_errno(up);
	return err;
}

/* Makes the state PATH, which does not exist.  Only at the root of a
 * kstatefs mount does mkdir make a state: elsewhere it would make a plain
 * directory, or fail with EPERM inside a state, so any other parent is
 * ENOENT, as for a path that is no state.  Returns the new state's
 * directory, open, and in *PARENT and *NAME where it is, so that it can
 * be removed if the subscription fails (*PARENT stays -1 if someone else
 * made it first); -1 and errno on failure. */
static int create_state(const char *path, int *parent, char **name)
{
	char *dir = strdup(path), *end, *slash;
	const char *base;
	int pfd = -1, fd = -1, err;
	struct stat st;

	if (!dir)
		return -1;
	end = dir + strlen(dir);
	while (end > dir + 1 && end[-1] == '/')
		*--end = '\0';
	slash = strrchr(dir, '/');
	if (!slash) {
		base = dir;
		pfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	} else {
		base = slash + 1;
		*slash = '\0';
		pfd = open(slash == dir ? "/" : dir,
			   O_PATH | O_DIRECTORY | O_CLOEXEC);
	}
	if (pfd < 0) {
		err = errno == ENOTDIR ? ENOENT : errno;
		goto out;
	}
	err = check_fuse(pfd);
	if (!err)
		err = fstat(pfd, &st) < 0 ? errno : check_root(pfd, st.st_dev);
	if (err)
		goto out;
	*name = strdup(base);
	if (!*name) {
		err = errno;
		goto out;
	}
	if (mkdirat(pfd, base, 0777) == 0) {
		*parent = pfd;
		pfd = -1;
	} else if (errno != EEXIST) {
		err = errno;
		goto out;
	}
	fd = openat(*parent >= 0 ? *parent : pfd, base,
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		err = errno;
out:
	if (pfd >= 0)
		close(pfd);
	free(dir);
	errno = err;
	return fd;
}

EXPORT struct kstate *kstate_subscribe(const char *path, unsigned flags)
{
	struct kstate *s;
	int parent = -1;   /* where we made the state, if we did */
	char *made = NULL; /* and its name there */
	int saved;

	if (!path || !flags || (flags & ~(KSTATE_READ | KSTATE_WRITE))) {
		errno = EINVAL;
		return NULL;
	}
	saved = state_name_check(path);
	if (saved) {
		errno = saved;
		return NULL;
	}
	s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->flags = flags;
	s->datafd = s->versionfd = s->txn_versionfd = s->idle.fd = -1;
	s->rebases = -1;
	s->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0 && errno == ENOENT && (flags & KSTATE_WRITE))
		s->dirfd = create_state(path, &parent, &made);
	if (s->dirfd < 0) {
		/* A file (.stats, NAME/data) is not a state either. */
		if (errno == ENOTDIR)
			errno = ENOENT;
		goto fail;
	}
	errno = state_kind(s->dirfd, &s->view);
	if (errno)
		goto fail;
	s->versionfd = openat(s->dirfd, "version", O_RDONLY | O_CLOEXEC);
	if (s->versionfd < 0)
		goto fail;
	/* Kept open: a pread at offset 0 always returns the latest version. */
	s->datafd = openat(s->dirfd, "data", O_RDONLY | O_CLOEXEC);
	if (s->datafd < 0)
		goto fail;
	if (flags & KSTATE_WRITE) {
		s->txn_versionfd = openat(s->dirfd, "version",
					  O_RDONLY | O_CLOEXEC);
		if (s->txn_versionfd < 0)
			goto fail;
	}
	s->name = state_name(path);
	if (!s->name)
		goto fail;
	errno = pthread_mutex_init(&s->lock, NULL);
	if (errno)
		goto fail;
	errno = pthread_mutex_init(&s->txn_lock, NULL);
	if (!errno) {
		errno = pthread_mutex_init(&s->ptr_lock, NULL);
		if (errno)
			pthread_mutex_destroy(&s->txn_lock);
	}
	if (errno) {
		pthread_mutex_destroy(&s->lock);
		goto fail;
	}
	/* Any failure only means reads take the files: another host's
	 * mount, an old daemon, a mode that shuts us out.  KSTATE_NO_SHM
	 * asks for the files (to compare, or to test them). */
	if (!getenv("KSTATE_NO_SHM") && kshm_open(s->dirfd, &s->shm) != 0)
		s->shm = NULL;
	if (parent >= 0)
		close(parent);
	free(made);
	return s;

fail:
	saved = errno;
	free(s->name);
	if (s->txn_versionfd >= 0)
		close(s->txn_versionfd);
	if (s->datafd >= 0)
		close(s->datafd);
	if (s->versionfd >= 0)
		close(s->versionfd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s);
	/* A state we made for a subscription that failed: do not leave it
	 * behind. */
	if (parent >= 0) {
		unlinkat(parent, made, AT_REMOVEDIR);
		close(parent);
	}
	free(made);
	errno = saved;
	return NULL;
}

EXPORT void kstate_unsubscribe(struct kstate *s)
{
	if (!s)
		return;
	/* A data file opened by the process this one was forked from is
	 * shared with it: closing it here would flush, and a flush commits
	 * whatever that process has written to it so far. */
	if (s->idle.fd >= 0 && s->idle.pid == getpid())
		close(s->idle.fd);
	free(s->idle.page);
	if (s->txn_versionfd >= 0)
		close(s->txn_versionfd);
	close(s->datafd);
	close(s->versionfd);
	close(s->dirfd);
	kshm_close(s->shm);
	pthread_mutex_destroy(&s->txn_lock);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->ptr_lock);
	free(s->name);
	free(s->page);
	free(s->snap);
	free(s);
}

EXPORT int kstate_fd(const struct kstate *s)
{
	if (invalid(!s))
		return -1;
	/* The handle is never a const object (kstate_subscribe allocates
	 * it): only the header's signature promises not to change it. */
	atomic_store(&((struct kstate *)s)->fd_used, true);
	return s->versionfd;
}

/* The version file marked V as seen (the newest it marked, by any
 * thread). */
static void note_armed(struct kstate *s, uint64_t v)
{
	uint_fast64_t cur = atomic_load(&s->armed);

	while (cur < v && !atomic_compare_exchange_weak(&s->armed, &cur, v))
		;
}

/* A read through the mapping: 0, or an errno after which the files must
 * answer (ESTALE, EAGAIN) or that is the answer (from the version file).
 * With kstate_fd in use, a version newer than the one the version file
 * last marked is marked first (one request per new version seen), then
 * read again: the page returned is at least as new as the mark, so a poll
 * that follows cannot sleep through a commit the caller has not seen. */
static int shm_read(struct kstate *s, void *buf, size_t cap, uint64_t *len,
		    uint64_t *version)
{
	uint64_t marked;
	int err, rc;

	if (!s->shm)
		return ESTALE;
	err = kshm_read(s->shm, buf, cap, len, version);
	if (err || !atomic_load(&s->fd_used) ||
	    *version <= atomic_load(&s->armed))
		return err;
	pthread_mutex_lock(&s->lock);
	rc = read_version(s->versionfd, &marked);
	pthread_mutex_unlock(&s->lock);
	if (rc < 0)
		return errno;
	note_armed(s, marked);
	return kshm_read(s->shm, buf, cap, len, version);
}

/* Not an answer from the mapping: the files must give it. */
static bool use_files(int err)
{
	return err == ESTALE || err == EAGAIN;
}

EXPORT int kstate_version(struct kstate *s, uint64_t *version)
{
	int rc;

	uint64_t len;

	if (invalid(!s || !version))
		return -1;
	rc = shm_read(s, NULL, 0, &len, version);
	if (!use_files(rc)) {
		errno = rc;
		return rc ? -1 : 0;
	}
	pthread_mutex_lock(&s->lock);
	rc = read_version(s->versionfd, version);
	pthread_mutex_unlock(&s->lock);
	if (rc == 0)
		note_armed(s, *version);
	return rc;
}

EXPORT ssize_t kstate_read(struct kstate *s, void *buf, size_t size,
			   uint64_t *version)
{
	ssize_t len = -1;
	uint64_t before, after;
	int attempt;

	/* A size but nowhere to put the page: refused before any I/O, so
	 * that the call changes nothing (not even kstate_fd's mark). */
	if (invalid(!s || (!buf && size)))
		return -1;
	{
		uint64_t n, v;
		int err = shm_read(s, buf, size, &n, &v);

		if (!use_files(err)) {
			if (err) {
				errno = err;
				return -1;
			}
			if (buf && n > size) {
				errno = ERANGE;
				return -1;
			}
			if (version)
				*version = v;
			return (ssize_t)n;
		}
	}
	pthread_mutex_lock(&s->lock);
	for (attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
		/* Version first: it re-arms kstate_fd, and the page read after
		 * it is at least that new, so a poll that follows cannot miss
		 * a later commit. */
		if (read_version(s->versionfd, &before) < 0)
			break;
		note_armed(s, before);
		len = read_page(s->datafd, &s->page, &s->page_cap);
		if (len < 0 || !version)
			break;
		/* Commits raise the version, so an unchanged version around
		 * the read means the page is exactly that version (a seqlock
		 * read). */
		if (read_version(s->versionfd, &after) < 0) {
			len = -1;
			break;
		}
		if (before == after) {
			*version = after;
			break;
		}
		len = -1;
		errno = EAGAIN;
	}
	if (len >= 0 && buf) {
		if ((size_t)len > size) {
			errno = ERANGE;
			len = -1;
		} else {
			memcpy(buf, s->page, (size_t)len);
		}
	}
	pthread_mutex_unlock(&s->lock);
	return len;
}

EXPORT const void *kstate_read_ptr(struct kstate *s, size_t *length,
				   uint64_t *version)
{
	size_t want = MIN_CAPACITY;
	const void *ptr = NULL;
	uint64_t v;
	ssize_t n;

	if (invalid(!s))
		return NULL;
	if (s->shm && s->shm->max_size > want)
		want = s->shm->max_size;
	pthread_mutex_lock(&s->ptr_lock);
	for (;;) {
		if (want > s->snap_cap) {
			char *p = realloc(s->snap, want);

			if (!p)
				break;
			s->snap = p;
			s->snap_cap = want;
		}
		n = kstate_read(s, s->snap, s->snap_cap, &v);
		if (n >= 0) {
			/* All of the tail: an attempt a writer overtook
			 * may have copied a longer page there. */
			memset(s->snap + n, 0, s->snap_cap - (size_t)n);
			if (length)
				*length = (size_t)n;
			if (version)
				*version = v;
			ptr = s->snap;
			break;
		}
		if (errno != ERANGE)
			break;
		/* A longer page than the copy holds: make room. */
		n = kstate_read(s, NULL, 0, NULL);
		if (n < 0)
			break;
		want = (size_t)n + 1;
	}
	pthread_mutex_unlock(&s->ptr_lock);
	return ptr;
}

EXPORT int kstate_wait(struct kstate *s, uint64_t after, int timeout_ms,
		       uint64_t *version)
{
	uint64_t deadline = 0, v;
	int fd, rc = -1;

	if (invalid(!s))
		return -1;
	if (timeout_ms >= 0)
		deadline = now_ns() + (uint64_t)timeout_ms * 1000000u;
	/* A private open file of `version`: its "last read" mark is per open
	 * file, and another thread reading through a shared one between our
	 * read and our poll would make us sleep through the change. */
	fd = openat(s->dirfd, "version", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLPRI };
		int wait_ms = -1;
		int n;

		/* Reading re-arms poll; checking after the read and before
		 * the poll leaves no window for a lost wake-up. */
		if (read_version(fd, &v) < 0)
			break;
		if (v > after) {
			if (version)
				*version = v;
			rc = 0;
			break;
		}
		if (timeout_ms >= 0) {
			uint64_t t = now_ns();

			if (t >= deadline) {
				errno = ETIMEDOUT;
				break;
			}
			/* Round up: waking before the deadline would only
			 * poll again. */
			wait_ms = (int)((deadline - t + 999999) / 1000000);
		}
		/* The deadline is the poll timeout: one wait, either way. */
		n = poll(&p, 1, wait_ms);
		if (n < 0)
			break;  /* EINTR included: the caller decides */
		if (n > 0 && (p.revents & (POLLERR | POLLNVAL))) {
			/* A poll that fails would wake us forever. */
			errno = EIO;
			break;
		}
	}
	close_keep_errno(fd);
	return rc;
}

/* ---- transactions ------------------------------------------------------- */

/* Reads a transaction's whole copy of the page from offset 0.  Unlike
 * data's, that copy never changes under us, so a short read is its end:
 * asking for a byte more than a page reads a page in one request. */
static ssize_t read_copy(int fd, char **buf, size_t *cap)
{
	size_t len = 0;

	for (;;) {
		size_t want;
		ssize_t n;

		if (reserve(buf, cap, len + MIN_CAPACITY + 1) < 0)
			return -1;
		want = *cap - len;
		n = pread(fd, *buf + len, want, (off_t)len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		len += (size_t)n;
		if ((size_t)n < want)
			return (ssize_t)len;
	}
}

/* Makes a transaction's copy in FD exactly PAGE: the bytes, and the length
 * if it is shorter than the copy (BASE_LEN).  A page of the copy's length
 * or longer is one write; an empty page is one truncation, which counts as
 * a write however long the copy is (a write of 0 bytes never reaches the
 * daemon, and a transaction never written commits nothing). */
static int put_copy(int fd, const char *page, size_t len, size_t base_len)
{
	if ((len < base_len || len == 0) && ftruncate(fd, (off_t)len) < 0)
		return -1;
	return len ? write_all(fd, page, len) : 0;
}

/* A write past the largest page any mount allows (64 MiB) fails with
 * EFBIG, and a data file on which a write failed commits nothing, at fsync
 * or at close.  So a file whose commit failed for another reason than a
 * conflict (the store full, say) is closed without committing later. */
#define POISON_OFFSET ((off_t)(64 << 20) + 1)

static void close_data_file(int fd, bool poison)
{
	struct rlimit lim;
	int saved = errno;

	/* Not where the write would raise SIGXFSZ instead. */
	if (poison && getrlimit(RLIMIT_FSIZE, &lim) == 0 &&
	    (lim.rlim_cur == RLIM_INFINITY ||
	     lim.rlim_cur > (rlim_t)POISON_OFFSET + 1)) {
		ssize_t n = pwrite(fd, "", 1, POISON_OFFSET);

		(void)n;  /* it fails: that is the point */
	}
	close(fd);
	errno = saved;
}

/* Takes the handle's idle data file for T, if it has one of this process:
 * a child of fork() shares its parent's, and must leave it alone. */
static void take_data_file(struct kstate *s, struct kstate_txn *t)
{
	pthread_mutex_lock(&s->txn_lock);
	if (s->idle.fd >= 0 && s->idle.pid == getpid()) {
		char *page = t->file.page;
		size_t cap = t->file.cap;

		t->file = s->idle;
		s->idle.page = page;
		s->idle.cap = cap;
		s->idle.len = 0;
		s->idle.page_known = false;
	}
	s->idle.fd = -1;
	pthread_mutex_unlock(&s->txn_lock);
}

/* Gives T's data file back to the handle for the next transaction; with
 * PAGE_KNOWN, T's page is exactly the file's copy (it committed it).  The
 * file must have nothing written to it that is not committed: the next
 * transaction on it would commit that too. */
static void give_data_file(struct kstate *s, struct kstate_txn *t,
			   bool page_known)
{
	pthread_mutex_lock(&s->txn_lock);
	if (s->idle.fd < 0 || s->idle.pid != getpid()) {
		s->idle.fd = t->file.fd;
		s->idle.pid = t->file.pid;
		s->idle.base = t->file.base;
		s->idle.page_known = page_known;
		if (page_known) {
			/* Swap buffers: the committed page stays as the
			 * copy, and T frees the handle's old one. */
			char *page = s->idle.page;
			size_t cap = s->idle.cap;

			s->idle.page = t->buf;
			s->idle.cap = t->cap;
			s->idle.len = t->len;
			t->buf = page;
			t->cap = cap;
		}
		t->file.fd = -1;
	}
	pthread_mutex_unlock(&s->txn_lock);
	/* Another transaction's file is idle already: one is enough. */
	if (t->file.fd >= 0)
		close(t->file.fd);
	t->file.fd = -1;
}

static void txn_free(struct kstate_txn *t)
{
	free(t->buf);
	free(t->orig);
	free(t->file.page);
	free(t);
}

/* The version a transaction begins at: from the shared mapping where there
 * is one (no request: an increment is then the pwrite and the fsync), else
 * from the version file.  Either is at least the version of every commit
 * that returned before; a newer commit after it makes the fsync fail with
 * EAGAIN, as it must. */
static int begin_version(struct kstate *s, uint64_t *now)
{
	uint64_t len;

	if (s->shm && kshm_read(s->shm, NULL, 0, &len, now) == 0)
		return 0;
	return read_version(s->txn_versionfd, now);
}

/* Begins T on the state's data file: the handle's idle one if its copy is
 * current, else a new one.  Either way the version read first is the
 * moment the transaction begins. */
static int begin_on_data(struct kstate *s, struct kstate_txn *t)
{
	uint64_t now;
	ssize_t len;

	if (begin_version(s, &now) < 0)
		return -1;
	take_data_file(s, t);
	if (t->file.fd >= 0 && t->file.base != now) {
		/* Committed to since: its copy is stale. */
		close(t->file.fd);
		t->file.fd = -1;
	}
	if (t->file.fd < 0) {
		t->file.fd = openat(s->dirfd, "data", O_RDWR | O_CLOEXEC);
		if (t->file.fd < 0)
			return -1;
		t->file.pid = getpid();
		/* Read before the open, so the copy is of this version or
		 * a newer one, as BASE must be. */
		t->file.base = now;
		t->file.page_known = false;
	}
	if (t->file.page_known) {
		/* What the last commit wrote: take it instead of reading
		 * it again. */
		char *buf = t->buf;
		size_t cap = t->cap;

		t->buf = t->file.page;
		t->cap = t->file.cap;
		t->len = t->file.len;
		t->file.page = buf;
		t->file.cap = cap;
	} else {
		len = read_copy(t->file.fd, &t->buf, &t->cap);
		if (len < 0) {
			close_data_file(t->file.fd, false);
			t->file.fd = -1;
			return -1;
		}
		t->len = (size_t)len;
	}
	t->file.page_known = false;
	t->base_len = t->len;
	/* kstate_get_ptr never returns NULL for an empty page. */
	return reserve(&t->buf, &t->cap, 1);
}

EXPORT struct kstate_txn *kstate_start_transaction(struct kstate *s)
{
	struct kstate_txn *t;

	if (invalid(!s))
		return NULL;
	if (!(s->flags & KSTATE_WRITE)) {
		errno = EBADF;
		return NULL;
	}
	t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->state = s;
	t->file.fd = -1;
	if (begin_on_data(s, t) < 0) {
		int saved = errno;

		txn_free(t);
		errno = saved;
		return NULL;
	}
	return t;
}

/* The two accessors have no error value: NULL and 0 are also what a
 * caller that ignores errno sees, and the next call fails anyway. */
EXPORT void *kstate_get_ptr(struct kstate_txn *t)
{
	if (invalid(!t))
		return NULL;
	return t->buf;
}

EXPORT size_t kstate_get_length(const struct kstate_txn *t)
{
	if (invalid(!t))
		return 0;
	return t->len;
}

EXPORT int kstate_set_length(struct kstate_txn *t, size_t length)
{
	if (invalid(!t))
		return -1;
	if (reserve(&t->buf, &t->cap, length) < 0)
		return -1;
	if (length > t->len)
		memset(t->buf + t->len, 0, length - t->len);
	t->len = length;
	return 0;
}

/* After a conflict: does the daemon discard the file's writes and rebase it
 * on the latest version?  Asked once per handle, by a second fsync: one
 * that discarded them has nothing to commit and returns 0; one that kept
 * them fails again, since their base can never become current. */
static bool rebases_after_conflict(struct kstate *s, int fd)
{
	int r;

	pthread_mutex_lock(&s->txn_lock);
	r = s->rebases;
	pthread_mutex_unlock(&s->txn_lock);
	if (r < 0) {
		r = fsync(fd) == 0;
		pthread_mutex_lock(&s->txn_lock);
		s->rebases = r;
		pthread_mutex_unlock(&s->txn_lock);
	}
	return r;
}

static int commit_on_data(struct kstate_txn *t)
{
	struct kstate *s = t->state;
	int err = 0;

	/* A commit is a new version even if the page is unchanged or empty:
	 * that is what `kstate set` and anyone waiting for it expect, and a
	 * transaction that raises no version would not conflict with one
	 * begun at the same time either.  So the page is always written. */
	if (put_copy(t->file.fd, t->buf, t->len, t->base_len) < 0 ||
	    fsync(t->file.fd) < 0)
		err = errno;
	if (!err) {
		/* The file goes on from this commit: version BASE + 1 (or
		 * newer, if BASE was low), its copy this very page. */
		t->file.base++;
		give_data_file(s, t, true);
	} else if (err == EAGAIN && rebases_after_conflict(s, t->file.fd)) {
		/* It goes on from the version that beat us, at least
		 * BASE + 1; its copy is unknown. */
		t->file.base++;
		give_data_file(s, t, false);
	} else {
		/* An old daemon keeps the writes on the old base after a
		 * conflict, so they can never commit, at close either; any
		 * other failure must not commit at close. */
		close_data_file(t->file.fd, err != EAGAIN);
		t->file.fd = -1;
	}
	txn_free(t);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

EXPORT int kstate_commit(struct kstate_txn *t)
{
	/* A member ends with its transaction over several states. */
	if (invalid(!t || t->multi))
		return -1;
	return commit_on_data(t);
}

EXPORT int kstate_abort(struct kstate_txn *t)
{
	if (invalid(!t || t->multi))
		return -1;
	/* Nothing was written to the file: it goes on as it was, for the
	 * next transaction; the caller may have changed our page. */
	give_data_file(t->state, t, false);
	txn_free(t);
	return 0;
}

/* Sleeps before the next attempt after ATTEMPT conflicts.  "Full jitter": a
 * random time below UNIT * 2^ATTEMPT.  Exponential, so that any number of
 * contenders spread out until one of them fits; random, so that those that
 * collided do not collide again in lockstep; in units of one attempt's
 * duration, so the spread matches how long a transaction takes here. */
static void backoff(unsigned attempt, uint64_t unit_ns)
{
	const uint64_t cap = 1000000000u;  /* never more than a second */
	uint64_t limit = unit_ns << (attempt < 20 ? attempt : 20);
	uint64_t ns = rng_next() % (limit < cap ? limit : cap);
	struct timespec ts = {
		.tv_sec = (time_t)(ns / 1000000000u),
		.tv_nsec = (long)(ns % 1000000000u),
	};

	/* Interrupted: go on at once, a signal usually wants attention. */
	nanosleep(&ts, NULL);
}

/* Runs ATTEMPT (a transaction: begin, the caller's function, commit) until
 * it commits, the caller's function refuses (its value returned, *FN_RC),
 * it fails otherwise than by a conflict, or RETRY conflicts are spent
 * (-1 with errno EAGAIN); with backoff between attempts. */
static int with_retries(int retry, int (*attempt)(void *ctx, int *fn_rc),
			void *ctx)
{
	for (unsigned n = 0;; n++) {
		uint64_t start = now_ns(), unit;
		int fn_rc = 0;

		if (attempt(ctx, &fn_rc) == 0)
			return 0;
		if (fn_rc != 0)
			return fn_rc;
		if (errno != EAGAIN)
			return -1;
		if (retry >= 0 && n >= (unsigned)retry)
			return -1;  /* errno is EAGAIN */
		unit = now_ns() - start;
		backoff(n + 1, unit > 20000 ? unit : 20000);
	}
}

struct one_state_fn {
	struct kstate *s;
	kstate_txn_fn *fn;
	void *arg;
};

static int one_state_attempt(void *ctx, int *fn_rc)
{
	struct one_state_fn *c = ctx;
	struct kstate_txn *t = kstate_start_transaction(c->s);

	if (!t)
		return -1;
	*fn_rc = c->fn(t, t->buf, c->arg);
	if (*fn_rc != 0) {
		int saved = errno;

		kstate_abort(t);
		errno = saved;
		return -1;
	}
	return kstate_commit(t);
}

EXPORT int kstate_transaction_using_fn(struct kstate *s, kstate_txn_fn *fn,
				       void *arg, int retry)
{
	struct one_state_fn c = { s, fn, arg };

	/* Below KSTATE_RETRY_FOREVER is no count of retries. */
	if (invalid(!s || !fn || retry < KSTATE_RETRY_FOREVER))
		return -1;
	return with_retries(retry, one_state_attempt, &c);
}

/* ---- transactions over several states ----------------------------------- */

/* A directory .txn/T at the root of the mount, and a member file
 * .txn/T/NAME per state, opened (which joins the state, at its version of
 * that moment) and read at once.  mv .txn/T .commit/ commits every written
 * member and validates the others, all or nothing (SPEC 5). */
struct kstate_multi {
	int rootfd;              /* the root of the mount */
	char dir[80];            /* ".txn/T" */
	size_t n;
	struct kstate_txn **txns;
};

/* The member files are the transaction's: a flush commits nothing, so they
 * can be written in any order, and are closed after the commit. */
static void multi_free(struct kstate_multi *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct kstate_txn *t = m->txns[i];

		if (!t)
			continue;
		if (t->file.fd >= 0)
			close(t->file.fd);
		txn_free(t);
	}
	free(m->txns);
	if (m->rootfd >= 0)
		close(m->rootfd);
	free(m);
}

/* Removes .txn/T, which aborts it: its members first (rm -r), since a
 * transaction directory that has members is not empty. */
static int multi_remove(struct kstate_multi *m)
{
	for (size_t i = 0; i < m->n; i++) {
		char path[sizeof m->dir + NAME_MAX + 2];

		if (!m->txns[i] || m->txns[i]->file.fd < 0)
			continue;  /* never joined */
		snprintf(path, sizeof path, "%s/%s", m->dir,
			 m->txns[i]->state->name);
		unlinkat(m->rootfd, path, 0);
	}
	return unlinkat(m->rootfd, m->dir, AT_REMOVEDIR);
}

/* Ends M without committing. */
static void multi_discard(struct kstate_multi *m)
{
	int saved = errno;

	if (m->dir[0])
		multi_remove(m);
	multi_free(m);
	errno = saved;
}

/* Checks that the handles are on one mount, each state once, and that
 * each state is still at the root under the name the handle knows it by
 * (it may have been renamed or deleted since).  ROOTFD: the root. */
static int check_members(struct kstate *const states[], size_t n, int rootfd)
{
	struct stat *st = calloc(n, sizeof *st);
	int err = 0;

	if (!st)
		return -1;
	for (size_t i = 0; i < n && !err; i++) {
		struct stat there;

		if (fstat(states[i]->dirfd, &st[i]) < 0) {
			err = errno;
			break;
		}
		if (st[i].st_dev != st[0].st_dev)
			err = EXDEV;
		for (size_t j = 0; j < i && !err; j++)
			if (st[j].st_ino == st[i].st_ino)
				err = EINVAL;
		if (!err && (fstatat(rootfd, states[i]->name, &there,
				     AT_SYMLINK_NOFOLLOW) < 0 ||
			     there.st_dev != st[i].st_dev ||
			     there.st_ino != st[i].st_ino))
			err = ENOENT;
	}
	free(st);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

/* Joins state S to M as member I: opens .txn/T/NAME (read-write if the
 * handle may write) and reads T's copy of the page. */
static int join_member(struct kstate_multi *m, size_t i, struct kstate *s)
{
	struct kstate_txn *t = calloc(1, sizeof *t);
	char path[sizeof m->dir + NAME_MAX + 2];
	ssize_t len;

	if (!t)
		return -1;
	m->txns[i] = t;
	t->state = s;
	t->multi = m;
	t->file.fd = -1;
	if ((size_t)snprintf(path, sizeof path, "%s/%s", m->dir, s->name) >=
	    sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	t->file.fd = openat(m->rootfd, path,
			    ((s->flags & KSTATE_WRITE) ? O_RDWR : O_RDONLY) |
			    O_CLOEXEC);
	if (t->file.fd < 0)
		return -1;
	len = read_copy(t->file.fd, &t->buf, &t->cap);
	if (len < 0)
		return -1;
	t->len = t->base_len = t->orig_len = (size_t)len;
	t->orig = malloc(t->len ? t->len : 1);
	if (!t->orig)
		return -1;
	memcpy(t->orig, t->buf, t->len);
	return 0;
}

EXPORT struct kstate_multi *kstate_multi_begin(struct kstate *const states[],
					       size_t n)
{
	static atomic_ulong counter;
	struct kstate_multi *m;
	int i;

	if (invalid(!states || n == 0))
		return NULL;
	/* A view cannot join: .txn/T/NAME is the state as of T's instant,
	 * never the view's older page. */
	for (size_t k = 0; k < n; k++)
		if (invalid(!states[k] || states[k]->view))
			return NULL;
	m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->rootfd = -1;
	m->txns = calloc(n, sizeof *m->txns);
	if (!m->txns) {
		free(m);
		return NULL;
	}
	m->n = n;
	/* Every state is a directory at the root of its mount. */
	m->rootfd = openat(states[0]->dirfd, "..",
			   O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (m->rootfd < 0 || check_members(states, n, m->rootfd) < 0)
		goto fail;
	/* Named as transaction files were: new here, across hosts and pid
	 * namespaces. */
	for (i = 0;; i++) {
		snprintf(m->dir, sizeof m->dir, ".txn/kstate.%ld.%lu.%08x",
			 (long)getpid(), atomic_fetch_add(&counter, 1),
			 (unsigned)(rng_next() >> 32));
		if (mkdirat(m->rootfd, m->dir, 0700) == 0)
			break;
		if (errno != EEXIST || i == 10) {
			m->dir[0] = '\0';
			goto fail;
		}
	}
	for (size_t k = 0; k < n; k++)
		if (join_member(m, k, states[k]) < 0)
			goto fail;
	return m;

fail:
	multi_discard(m);
	return NULL;
}

EXPORT struct kstate_txn *kstate_multi_member(struct kstate_multi *m,
					      size_t i)
{
	if (invalid(!m || i >= m->n))
		return NULL;
	return m->txns[i];
}

/* A member changed if its bytes or its length did: only those are
 * written, so that states only read keep their version and a transaction
 * that changes nothing is a consistent snapshot. */
static bool member_changed(const struct kstate_txn *t)
{
	return t->len != t->orig_len || memcmp(t->buf, t->orig, t->len);
}

EXPORT int kstate_multi_commit(struct kstate_multi *m)
{
	char to[sizeof m->dir + 8];
	int err = 0;

	if (invalid(!m))
		return -1;
	for (size_t i = 0; i < m->n && !err; i++) {
		struct kstate_txn *t = m->txns[i];

		if (!member_changed(t))
			continue;
		if (!(t->state->flags & KSTATE_WRITE))
			err = EBADF;
		else if (put_copy(t->file.fd, t->buf, t->len, t->base_len) < 0)
			err = errno;
	}
	snprintf(to, sizeof to, ".commit/%s", m->dir + strlen(".txn/"));
	if (!err && renameat(m->rootfd, m->dir, m->rootfd, to) < 0)
		err = errno;
	if (err) {
		/* T is left as it was after a failed commit: remove it. */
		errno = err;
		multi_discard(m);
		return -1;
	}
	multi_free(m);
	return 0;
}

EXPORT int kstate_multi_abort(struct kstate_multi *m)
{
	int err = 0;

	if (invalid(!m))
		return -1;
	if (multi_remove(m) < 0)
		err = errno;
	multi_free(m);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

struct multi_fn {
	struct kstate *const *states;
	size_t n;
	kstate_multi_fn *fn;
	void *arg;
};

static int multi_attempt(void *ctx, int *fn_rc)
{
	struct multi_fn *c = ctx;
	struct kstate_multi *m = kstate_multi_begin(c->states, c->n);

	if (!m)
		return -1;
	*fn_rc = c->fn(m->txns, c->n, c->arg);
	if (*fn_rc != 0) {
		int saved = errno;

		kstate_multi_abort(m);
		errno = saved;
		return -1;
	}
	return kstate_multi_commit(m);
}

EXPORT int kstate_multi_using_fn(struct kstate *const states[], size_t n,
				 kstate_multi_fn *fn, void *arg, int retry)
{
	struct multi_fn c = { states, n, fn, arg };

	if (invalid(!states || n == 0 || !fn ||
		    retry < KSTATE_RETRY_FOREVER))
		return -1;
	return with_retries(retry, multi_attempt, &c);
}
