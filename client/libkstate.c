/*
 * libkstate: kstatefs states from C, through the files of the mount and,
 * for reads on the daemon's host, its shared mappings (kshm.c).
 *
 *   NAME/data     the committed page.  A read at offset 0 takes the latest
 *                 version and pins it for the later offsets of that read.
 *   NAME/version  the version in decimal.  poll() reports POLLPRI once a
 *                 version newer than the one this open file last read exists
 *                 (the sysfs idiom: read, poll, read again from offset 0).
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
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kshm.h"

/* The library is built with hidden visibility; only these are exported. */
#define EXPORT __attribute__((visibility("default")))

/* Pages are at most a page by default: allocate that much from the start, so
 * that ordinary edits never reallocate. */
#define MIN_CAPACITY 4096

/* kstate_read gives up with EAGAIN after this many attempts to see a page
 * and its version together (only a writer committing back to back, faster
 * than a read takes, could cause that). */
#define READ_ATTEMPTS 1000

struct kstate {
	/* The shared data and version files carry per-open-file state (the
	 * pinned version of data, the "last read" mark of version), so their
	 * use is serialized. */
	pthread_mutex_t lock;
	unsigned flags;
	int dirfd;      /* the state directory: every name is relative to it */
	int datafd;
	int versionfd;  /* also what kstate_fd hands out */
	char *page;     /* kstate_read's buffer: the last page read */
	size_t page_cap;
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
	int fd;              /* the transaction file, open read-write */
	char name[64];       /* its name in the state directory */
	char *buf;           /* the page the caller edits */
	size_t len, cap;
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

EXPORT struct kstate *kstate_subscribe(const char *path, unsigned flags)
{
	struct kstate *s;
	bool created = false;
	int saved;

	if (!path || !flags || (flags & ~(KSTATE_READ | KSTATE_WRITE))) {
		errno = EINVAL;
		return NULL;
	}
	if (flags & KSTATE_WRITE) {
		/* mkdir at the root of a mount creates a state. */
		if (mkdir(path, 0777) == 0)
			created = true;
		else if (errno != EEXIST)
			return NULL;
	}
	s = calloc(1, sizeof *s);
	if (!s)
		goto fail;
	s->flags = flags;
	s->datafd = s->versionfd = -1;
	s->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0)
		goto fail;
	s->versionfd = openat(s->dirfd, "version", O_RDONLY | O_CLOEXEC);
	if (s->versionfd < 0)
		goto fail;
	/* Kept open: a pread at offset 0 always returns the latest version. */
	s->datafd = openat(s->dirfd, "data", O_RDONLY | O_CLOEXEC);
	if (s->datafd < 0)
		goto fail;
	errno = pthread_mutex_init(&s->lock, NULL);
	if (errno)
		goto fail;
	errno = pthread_mutex_init(&s->ptr_lock, NULL);
	if (errno) {
		pthread_mutex_destroy(&s->lock);
		goto fail;
	}
	/* Any failure only means reads take the files: another host's
	 * mount, an old daemon, a mode that shuts us out.  KSTATE_NO_SHM
	 * asks for the files (to compare, or to test them). */
	if (!getenv("KSTATE_NO_SHM") && kshm_open(s->dirfd, &s->shm) != 0)
		s->shm = NULL;
	return s;

fail:
	saved = errno;
	if (s) {
		if (s->datafd >= 0)
			close(s->datafd);
		if (s->versionfd >= 0)
			close(s->versionfd);
		if (s->dirfd >= 0)
			close(s->dirfd);
		free(s);
	}
	/* We made a directory where there is no kstatefs (no version file
	 * in it): do not leave it behind. */
	if (created)
		rmdir(path);
	errno = saved;
	return NULL;
}

EXPORT void kstate_unsubscribe(struct kstate *s)
{
	if (!s)
		return;
	close(s->datafd);
	close(s->versionfd);
	close(s->dirfd);
	kshm_close(s->shm);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->ptr_lock);
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

EXPORT struct kstate_txn *kstate_start_transaction(struct kstate *s)
{
	static atomic_ulong counter;
	struct kstate_txn *t;
	ssize_t len;
	int i;

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
	/* Creating a file begins a transaction.  The name only has to be
	 * new: pid and counter make it unique here, the random part across
	 * hosts and pid namespaces, and mknod fails if it exists.  Not
	 * open(O_CREAT | O_EXCL): a file made that way starts empty (so
	 * that sed -i and cp work), and this one must start as a copy of
	 * data. */
	for (i = 0;; i++) {
		snprintf(t->name, sizeof t->name, "txn.%ld.%lu.%08x",
			 (long)getpid(), atomic_fetch_add(&counter, 1),
			 (unsigned)(rng_next() >> 32));
		if (mknodat(s->dirfd, t->name, S_IFREG | 0600, 0) == 0)
			break;
		if (errno != EEXIST || i == 10) {
			free(t);
			return NULL;
		}
	}
	t->fd = openat(s->dirfd, t->name, O_RDWR | O_CLOEXEC);
	if (t->fd < 0) {
		int e = errno;

		unlinkat(s->dirfd, t->name, 0);
		free(t);
		errno = e;
		return NULL;
	}
	/* The file starts as a copy of data at the transaction's base. */
	len = read_page(t->fd, &t->buf, &t->cap);
	if (len < 0)
		goto fail;
	t->len = (size_t)len;
	return t;

fail:
	/* The caller wants the read's error, not the clean-up's. */
	i = errno;
	kstate_abort(t);
	errno = i;
	return NULL;
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

static void txn_free(struct kstate_txn *t)
{
	free(t->buf);
	free(t);
}

EXPORT int kstate_commit(struct kstate_txn *t)
{
	int dirfd, err = 0;

	if (invalid(!t))
		return -1;
	dirfd = t->state->dirfd;
	/* A commit is a new version even if the page is unchanged or empty:
	 * that is what `kstate set` and anyone waiting for it expect, and a
	 * transaction that raises no version would not conflict with one
	 * begun at the same time either.  But a transaction file never
	 * written commits nothing (it only validates its base), and a write
	 * of 0 bytes never reaches the daemon.  Setting the length does,
	 * whatever the length, and counts as a write: so the length first,
	 * always, then the bytes. */
	if (ftruncate(t->fd, (off_t)t->len) < 0)
		err = errno;
	if (!err && write_all(t->fd, t->buf, t->len) < 0)
		err = errno;
	/* Close before the rename: close flushes anything the kernel still
	 * caches and reports write errors (EFBIG) that must stop the commit. */
	if (close(t->fd) < 0 && !err)
		err = errno;
	if (!err && renameat(dirfd, t->name, dirfd, "data") < 0)
		err = errno;
	/* A failed rename leaves the file: remove it, so that no failure
	 * leaves a transaction behind. */
	if (err)
		unlinkat(dirfd, t->name, 0);
	txn_free(t);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

EXPORT int kstate_abort(struct kstate_txn *t)
{
	int err = 0;

	if (invalid(!t))
		return -1;
	if (t->fd >= 0)
		close(t->fd);
	if (unlinkat(t->state->dirfd, t->name, 0) < 0)
		err = errno;
	txn_free(t);
	if (err) {
		errno = err;
		return -1;
	}
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

EXPORT int kstate_transaction_using_fn(struct kstate *s, kstate_txn_fn *fn,
				       void *arg, int retry)
{
	unsigned attempt;

	/* Below KSTATE_RETRY_FOREVER is no count of retries. */
	if (invalid(!s || !fn || retry < KSTATE_RETRY_FOREVER))
		return -1;
	for (attempt = 0;; attempt++) {
		uint64_t start = now_ns(), unit;
		struct kstate_txn *t = kstate_start_transaction(s);
		int rc;

		if (!t)
			return -1;
		rc = fn(t, t->buf, arg);
		if (rc != 0) {
			int saved = errno;

			kstate_abort(t);
			errno = saved;
			return rc;
		}
		if (kstate_commit(t) == 0)
			return 0;
		if (errno != EAGAIN)
			return -1;
		if (retry >= 0 && attempt >= (unsigned)retry)
			return -1;  /* errno is EAGAIN */
		unit = now_ns() - start;
		backoff(attempt + 1, unit > 20000 ? unit : 20000);
	}
}
