/*
 * inotify for changes the daemon makes on its own.
 *
 * The kernel makes inotify events only for operations that pass through
 * the VFS, and a commit by fsync, close or another state's transaction is
 * the daemon's own doing.  So after every commit the state's `version` is
 * opened through the mount and written to: the kernel then reports
 * IN_MODIFY and IN_CLOSE_WRITE on `version` to its watchers.  The daemon
 * recognises the writer by its process id and makes the write a no-op.
 *
 * The writes come from a small child process, the toucher, fed paths
 * through a socket by the notifier thread.  Not from a thread of the
 * daemon: a thread waiting in a request to its own mount when the daemon
 * is killed (kill -9) never returns, the daemon never finishes dying,
 * /dev/fuse is never closed, and the mount hangs for everyone.  A child's
 * request is aborted when the daemon's /dev/fuse closes, and the child
 * then exits at the end of its socket.
 *
 * The child writes through a copy of the mount of its own, made with
 * open_tree(2) (OPEN_TREE_CLONE) as it starts (clone_mount): a mount
 * detached from every mount table that shares the mount's superblock.  A
 * file open there keeps the copy busy, not the user's mount, so that
 * `fusermount3 -u` or `umount` right after a commit is not refused with
 * EBUSY, as it was a few times in a hundred when the child opened the
 * files by their full path.  But the superblock, and with it the FUSE
 * connection and the daemon, now lives until the copy goes too.  So the
 * notifier thread also watches the daemon's mount table
 * (/proc/self/mountinfo, which the kernel reports POLLPRI on at every
 * change) for the mount's device, and when no mount of it is left there
 * (fusermount3 -u, umount, umount -l) it has the child finish the write
 * in hand and exit, the copy going with it, and starts no other
 * (mount_gone, release_child): the superblock then goes,
 * the connection ends and the daemon exits as it would without a copy.
 * The copy is the child's, never the daemon's: its last close ends the
 * superblock, which waits for the connection's requests to be over, and
 * no thread of the daemon may wait for that.  Neither open_tree nor the
 * statx that tells the mount's device (mounted_dev in main.c) makes a
 * request: the path ends at the mount's root, and AT_STATX_DONT_SYNC has
 * FUSE answer from the inode it holds.  After kill -9 of the daemon the
 * child ends at the end of its socket, and the copy with it; the user's
 * mount can be unmounted at once.  Where the mount cannot be cloned
 * (EPERM: a daemon without CAP_SYS_ADMIN, mounted by a user through
 * fusermount3) the child writes by full path, as before, and an unmount
 * at that moment can still be refused.
 *
 * The child execs the daemon's own binary (/proc/self/exe: still the
 * right one after an upgrade replaced the file) as "kstatefs-notify", and
 * main hands it to notifier_child_main, which makes it the toucher first
 * thing.  So `pidof kstatefs` and `pgrep -x kstatefs` find the daemon
 * alone, and the child is small: not a copy of the daemon's memory for
 * the OOM killer to weigh.
 *
 * Commits only mark their state pending, and the notifier takes what is
 * pending at most once per interval: under a stream of commits each write
 * (three requests: open, write, release) then serves every commit of that
 * interval, and the last commit is always followed by one, at most an
 * interval later.  The interval is BATCH_INTERVAL, and doubles, up to
 * BATCH_INTERVAL_MAX, for as long as each batch merged several commits of
 * one file: a write (two context switches per request, the child's and
 * this thread's wake-ups) cost a compare-and-swap loop pinned to one CPU
 * a third of its speed at one write a millisecond.  Commits that come one
 * at a time, each waited for (a watcher that reacts to every event), keep
 * it at BATCH_INTERVAL.
 *
 * The child can die (the OOM killer, a mistaken kill) and inotify would
 * then stop for good while everything else goes on, so the notifier
 * thread watches it: its pidfd and its socket (which reports the hang-up
 * even without pidfds) are polled with the thread's wake-up eventfd.  On
 * a death it reaps the child and starts another, at once if the dead one
 * had lived a while, else after a delay that doubles up to
 * BACKOFF_MAX_MS; it never stops trying.  It does all of it alone: a
 * FUSE thread only puts a job in `pending` and pokes the eventfd.
 *
 * No wake-up is lost to a death.  A job leaves `pending` only for the
 * sent queue, and leaves that queue only when the child acknowledges the
 * path (it writes back how many paths it has finished: opened, written,
 * closed), or when the child dies, and then it goes back to `pending`
 * (where a job for the same file, posted later, may already wait; one
 * write serves both).  Every job taken after a commit therefore ends in a
 * finished write after that commit: by this child or by a later one.
 * What dies with a child (paths in its socket, one read but not yet
 * written, one written but not yet acknowledged) is written again: a
 * watcher may see one event more, never one less.  The write shows the
 * version current when it is made, so sending a job again is always
 * right.
 */
#include "notifier.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

#define BATCH_INTERVAL_NS 1000000LL   /* 1 ms */
#define BATCH_INTERVAL_MAX_NS 8000000LL /* 8 ms */
/* A child that dies sooner than this after its start is restarted after
 * a delay, doubled at each such death: a child that cannot live (no
 * memory, no processes left) must not take a core being restarted. */
#define HEALTHY_NS 1000000000LL       /* 1 s */
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 5000
/* A read of the mount table that failed (no memory, or the table changed
 * during each of TABLE_TRIES reads) is tried again this much later: the
 * unmount it may hide must not keep the daemon alive. */
#define RESCAN_MS 100
#define TABLE_TRIES 8
/* How long a child told to go (mount_gone) may take to finish the path in
 * hand before it is killed: longer than any write takes, unless the child
 * is stopped. */
#define GRACE_MS 5000

/* The child's argv[0] and comm (15 characters: all of it fits in comm),
 * and the argument that tells it from a daemon started by that name. */
#define CHILD_NAME "kstatefs-notify"
#define CHILD_FLAG "--notifier"
#define CHILD_FD 3                    /* its socket */
#define CHILD_MIN_ARGS 3              /* name, flag, mountpoint[, device] */

/* One version file to touch: a state's, or one of its views'. */
struct job {
	struct ks_state *st;     /* a reference */
	char view[32];           /* the PERIOD name, or "" */
};

/* A job taken from pending, in the order it goes to the child. */
struct sent {
	uint64_t key;
	struct job *job;
};

struct ks_notifier {
	pthread_t thread;
	struct ks_lock lock;
	struct u64map pending;   /* key -> struct job; under lock */
	bool stop;               /* under lock */
	bool merged;             /* under lock: a post found its job pending */
	int wake_fd;             /* eventfd: a post, or the stop */
	_Atomic pid_t toucher;   /* the live child, 0 while there is none */
	atomic_uint_fast64_t restarts;
	const char *mountpoint;
	bool gone;               /* under lock: the mount left the table */

	/* The notifier thread's own (notifier_start's before the thread,
	 * notifier_stop's after it). */
	pid_t child;             /* to reap; 0 while there is none */
	int sock;                /* our end of the child's socket */
	int pidfd;               /* the child's, or -1 (kernels before 5.3) */
	struct sent *queue;      /* [head, len): taken, not acknowledged */
	size_t head, len, cap;
	size_t unsent;           /* queue[len - unsent, len) not yet sent */
	uint64_t acked;          /* paths the child says it finished */
	long long started_ns;    /* when this child started */
	long long restart_ns;    /* when to start the next one */
	long long next_batch_ns; /* when pending may be taken next */
	long long interval_ns;   /* the time between two batches */
	long backoff_ms;

	/* The mount in the daemon's mount table (watch_mount). */
	int mounts_fd;           /* /proc/self/mountinfo; -1: not watched */
	unsigned dev_major, dev_minor;
	char dev_arg[24];        /* "MAJOR:MINOR" for the child, or "" */
	long long rescan_ns;     /* when to read the table again, or 0 */
	char *table;             /* the last read of it */
	size_t table_cap;
};

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void free_job(struct job *job)
{
	ks_state_unref(job->st);
	free(job);
}

/* ---- the child -------------------------------------------------------- */

/* The daemon is gone, or ends this child.  Its copy of the mount may be
 * the superblock's last hold, and then closing it ends the FUSE
 * connection, dropping every request the daemon has not read yet: among
 * them the RELEASE of the file this child wrote last, which the kernel
 * sends in the background after close returns, and whose open file the
 * daemon would then never free.  The daemon reads requests in the order
 * they come: once a request made now is answered, it has read that
 * RELEASE.  On a dead daemon's connection the request fails at once. */
static _Noreturn void child_finish(int root)
{
	struct statx sx;

	if (root >= 0)
		(void)statx(root, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC,
			    STATX_TYPE, &sx);
	_exit(0);
}

/* The toucher: opens each path it is sent (relative to the mount's root),
 * writes a byte, closes, and tells the daemon how many paths it has
 * finished.  Through root, its own copy of the mount (clone_mount), when
 * it has one: a file open there keeps the copy busy, not the user's
 * mount, which `fusermount3 -u` can then take away at any moment.
 * Without one, by full path each time, as a descriptor kept open on the
 * mount would make every unmount fail with EBUSY.  One path per message
 * (SOCK_SEQPACKET).  Async-signal-safe calls only: a child whose exec
 * failed runs this straight after the fork. */
static _Noreturn void touch_paths(int sock, int root, const char *mountpoint)
{
	char path[2 * PATH_MAX + 2];
	size_t pre = 0;
	uint64_t done = 0;

	if (root < 0) {
		/* A realpath: shorter than PATH_MAX. */
		pre = strlen(mountpoint);
		memcpy(path, mountpoint, pre);
		path[pre++] = '/';
	}
	for (;;) {
		ssize_t r = recv(sock, path + pre, PATH_MAX, 0);
		int fd;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			child_finish(root); /* the daemon is gone or stopping */
		path[pre + (size_t)r] = '\0';
		if (root >= 0)
			fd = openat(root, path, O_WRONLY | O_CLOEXEC);
		else
			fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			/* Only the event matters; errors too. */
			if (write(fd, "", 1) < 0)
				(void)0;
			close(fd);
		}
		done++;
		/* Blocking is fine: the notifier thread always reads. */
		while (send(sock, &done, sizeof(done), MSG_NOSIGNAL) < 0)
			if (errno != EINTR)
				child_finish(root);
	}
}

/* The toucher's own copy of the mount at mountpoint, detached from every
 * mount table (open_tree(2) with OPEN_TREE_CLONE), or -1.  It shares the
 * mount's superblock, so the daemon's FUSE connection lives until the
 * copy is closed too: the daemon ends the toucher when the mount leaves
 * its table (mount_gone).  dev is the superblock's "MAJOR:MINOR", as the
 * daemon found it in its mount table: a copy of anything else (the
 * directory under the mount, after an unmount that came first) is no
 * use.  -1 also where cloning is not allowed (EPERM: no CAP_SYS_ADMIN,
 * a daemon mounted by a user through fusermount3) or not known (ENOSYS):
 * the toucher then writes by full path, as before there were copies.
 * Neither call makes a request to the mount: the path ends at its root,
 * which needs no lookup, and AT_STATX_DONT_SYNC has FUSE answer from the
 * inode it holds. */
static int clone_mount(const char *mountpoint, const char *dev)
{
	unsigned major_want, minor_want;
	struct statx sx;
	char end;
	int fd;

	if (!dev || sscanf(dev, "%u:%u%c", &major_want, &minor_want,
			   &end) != 2)
		return -1;
	fd = (int)syscall(SYS_open_tree, AT_FDCWD, mountpoint,
			  OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (fd < 0)
		return -1;
	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, 0, &sx) != 0 ||
	    sx.stx_dev_major != major_want || sx.stx_dev_minor != minor_want) {
		close(fd);
		return -1;
	}
	return fd;
}

/* In the forked child: only async-signal-safe calls until the exec. */
static _Noreturn void child_exec(int sock, char *const argv[])
{
	sigset_t none;

	/* The forking thread's mask would outlive the exec. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* A ^C to the foreground job must not take the child before the
	 * daemon has unmounted; the daemon ends it.  Ignoring outlives the
	 * exec. */
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	if (sock == CHILD_FD) {
		if (fcntl(sock, F_SETFD, 0) < 0)
			_exit(1);
	} else if (dup2(sock, CHILD_FD) < 0) {
		_exit(1);
	}
	/* Keep nothing of the daemon's: not /dev/fuse (the kernel must see
	 * it close when the daemon dies), not the store's lock. */
	if (syscall(SYS_close_range, CHILD_FD + 1U, ~0U, 0U) < 0)
		for (int fd = CHILD_FD + 1; fd < 65536; fd++)
			close(fd);
	execv("/proc/self/exe", argv);
	/* No /proc: be the toucher as forked, under its name at least, and
	 * by full paths (clone_mount is not async-signal-safe). */
	prctl(PR_SET_NAME, CHILD_NAME, 0, 0, 0);
	touch_paths(CHILD_FD, -1, argv[2]);
}

/* Starts a child; the pid is the daemon's own from here on. */
static int start_child(struct ks_notifier *n)
{
	char *const argv[] = { CHILD_NAME, CHILD_FLAG,
			       (char *)n->mountpoint,
			       n->dev_arg[0] ? n->dev_arg : NULL, NULL };
	int sv[2], err;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return errno;
	pid = fork();
	if (pid == 0)
		child_exec(sv[1], argv);
	err = errno;
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		return err;
	}
	n->child = pid;
	n->sock = sv[0];
	n->pidfd = (int)syscall(SYS_pidfd_open, pid, 0U);
	n->acked = 0;
	n->started_ns = now_ns();
	/* Before any path is sent: its first open must be recognised. */
	atomic_store(&n->toucher, pid);
	return 0;
}

/* ---- the queue -------------------------------------------------------- */

/* Room for `more` entries at the end of the queue. */
static int queue_reserve(struct ks_notifier *n, size_t more)
{
	struct sent *q;
	size_t cap;

	if (n->head == n->len) {
		n->head = n->len = 0;
	} else if (n->head && n->len + more > n->cap) {
		memmove(n->queue, n->queue + n->head,
			(n->len - n->head) * sizeof(*n->queue));
		n->len -= n->head;
		n->head = 0;
	}
	if (n->len + more <= n->cap)
		return 0;
	cap = n->cap ? n->cap : 64;
	while (cap < n->len + more)
		cap *= 2;
	q = realloc(n->queue, cap * sizeof(*q));
	if (!q)
		return ENOMEM;
	n->queue = q;
	n->cap = cap;
	return 0;
}

/* Moves what is pending to the end of the queue, if there is room. */
/* Returns whether a job taken had merged several commits. */
static bool take_pending(struct ks_notifier *n)
{
	struct u64map batch;
	struct u64map_iter it;
	uint64_t key;
	void *val;
	bool merged;

	ks_lock(&n->lock);
	if (queue_reserve(n, u64map_len(&n->pending))) {
		ks_unlock(&n->lock);
		return false; /* it stays pending: tried again next interval */
	}
	u64map_move(&batch, &n->pending);
	merged = n->merged;
	n->merged = false;
	ks_unlock(&n->lock);
	u64map_iter_init(&it, &batch);
	while (u64map_next(&it, &key, &val)) {
		n->queue[n->len++] = (struct sent){ .key = key, .job = val };
		n->unsent++;
	}
	u64map_free(&batch);
	return merged;
}

/* Puts every job of the queue back in pending: the child that had them
 * died, and may not have written some of them. */
static void requeue_all(struct ks_notifier *n)
{
	ks_lock(&n->lock);
	for (size_t i = n->head; i < n->len; i++) {
		struct sent *s = &n->queue[i];

		/* One already pending serves this one too. */
		if (!n->stop && !u64map_get(&n->pending, s->key) &&
		    u64map_put(&n->pending, s->key, s->job) == 0)
			s->job = NULL;
	}
	ks_unlock(&n->lock);
	/* The last reference to a state goes outside the lock. */
	for (size_t i = n->head; i < n->len; i++)
		if (n->queue[i].job)
			free_job(n->queue[i].job);
	n->head = n->len = n->unsent = 0;
}

/* The child finished its first `done` paths. */
static void acknowledge(struct ks_notifier *n, uint64_t done)
{
	size_t sent = n->len - n->head - n->unsent;

	while (n->acked < done && sent) {
		free_job(n->queue[n->head++].job);
		n->acked++;
		sent--;
	}
}

/* ---- the notifier thread --------------------------------------------- */

static bool read_acks(struct ks_notifier *n);

static void child_died(struct ks_daemon *d, const char *how)
{
	struct ks_notifier *n = d->notifier;
	long long lived = now_ns() - n->started_ns;
	pid_t pid = n->child;
	int status = 0;

	/* Not ours any more: its pid may be reused once reaped. */
	atomic_store(&n->toucher, 0);
	/* What it finished before dying need not be written again. */
	read_acks(n);
	close(n->sock);
	if (n->pidfd >= 0)
		close(n->pidfd);
	/* A child that lost its socket is of no use alive. */
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	n->child = 0;
	n->sock = n->pidfd = -1;
	requeue_all(n);

	if (lived >= HEALTHY_NS) {
		n->backoff_ms = 0;
	} else {
		n->backoff_ms = n->backoff_ms ? n->backoff_ms * 2
					      : BACKOFF_MIN_MS;
		if (n->backoff_ms > BACKOFF_MAX_MS)
			n->backoff_ms = BACKOFF_MAX_MS;
	}
	n->restart_ns = now_ns() + n->backoff_ms * 1000000LL;
	if (WIFSIGNALED(status))
		fprintf(stderr, "kstatefs: the inotify child %d was killed by "
			"signal %d (%s); starting another in %ld ms\n",
			(int)pid, WTERMSIG(status), how, n->backoff_ms);
	else
		fprintf(stderr, "kstatefs: the inotify child %d exited with "
			"status %d (%s); starting another in %ld ms\n",
			(int)pid, WEXITSTATUS(status), how, n->backoff_ms);
}

/* Sends what is unsent, until the socket is full.  False if the child is
 * gone. */
static bool send_unsent(struct ks_daemon *d)
{
	struct ks_notifier *n = d->notifier;

	while (n->unsent) {
		size_t i = n->len - n->unsent;
		struct job *job = n->queue[i].job;
		char name[KS_NAME_MAX + 1], path[PATH_MAX];
		int len = -1;

		if (ks_state_name(job->st, name)) {
			/* Relative to the mount's root: the child
			 * adds its copy of the mount or the
			 * mountpoint. */
			if (job->view[0])
				len = snprintf(path, sizeof(path),
					       "%s/every/%s/version",
					       name, job->view);
			else
				len = snprintf(path, sizeof(path),
					       "%s/version", name);
		}
		if (len <= 0 || len >= (int)sizeof(path)) {
			/* Deleted, or no path to write: nothing to wake.
			 * Unsent jobs are in no order. */
			free_job(job);
			n->queue[i] = n->queue[--n->len];
			n->unsent--;
			continue;
		}
		if (send(n->sock, path, (size_t)len,
			 MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			return false;
		}
		n->unsent--;
	}
	return true;
}

/* Reads the child's acknowledgements.  False if the child is gone. */
static bool read_acks(struct ks_notifier *n)
{
	for (;;) {
		uint64_t done;
		ssize_t r = recv(n->sock, &done, sizeof(done), MSG_DONTWAIT);

		if (r == (ssize_t)sizeof(done)) {
			acknowledge(n, done);
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
	}
}

/* ---- the mount table ------------------------------------------------ */

/* Ends the child for good: nothing is left for it to write.  SIGKILL, not
 * just the end of its socket, ends a stopped child too; with it goes its
 * copy of the mount. */
static void end_child(struct ks_notifier *n)
{
	atomic_store(&n->toucher, 0);
	if (n->sock >= 0)
		close(n->sock);
	kill(n->child, SIGKILL);
	while (waitpid(n->child, NULL, 0) < 0 && errno == EINTR)
		;
	if (n->pidfd >= 0)
		close(n->pidfd);
	n->child = 0;
	n->sock = n->pidfd = -1;
}

/* Ends the child once it has finished the path in hand, if it does within
 * GRACE_MS: the end of its socket ends it (child_finish), after the file
 * it writes is closed and its RELEASE read by the daemon.  Killed in the
 * middle of a write, the child would close that file as it dies, and its
 * copy of the mount at once after: the RELEASE would be lost. */
static void release_child(struct ks_notifier *n)
{
	long long deadline = now_ns() + GRACE_MS * 1000000LL;

	close(n->sock);
	n->sock = -1;
	for (;;) {
		siginfo_t si;

		/* WNOWAIT: the pid stays the child's, and its writes the
		 * daemon's own, until end_child reaps it. */
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)n->child, &si,
			   WEXITED | WNOHANG | WNOWAIT) != 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (si.si_pid == n->child || now_ns() >= deadline)
			break;
		/* Most children are done within a millisecond. */
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	end_child(n);
}

/* Reads the whole mount table into n->table.  Its length, or -1. */
static ssize_t read_table(struct ks_notifier *n)
{
	size_t len = 0;

	if (lseek(n->mounts_fd, 0, SEEK_SET) < 0)
		return -1;
	for (;;) {
		ssize_t r;

		if (n->table_cap - len < 4096 + 1) {
			size_t cap = n->table_cap ? 2 * n->table_cap : 16384;
			char *t = realloc(n->table, cap);

			if (!t)
				return -1;
			n->table = t;
			n->table_cap = cap;
		}
		r = read(n->mounts_fd, n->table + len, n->table_cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		len += (size_t)r;
	}
	n->table[len] = '\0';
	return (ssize_t)len;
}

/*
 * Whether the mount is in the daemon's mount table: 1, 0, or -1 if the
 * table could not be read whole.  The mount is found by its superblock's
 * device, "MAJOR:MINOR" (the third field of a mountinfo line), which no
 * other superblock can have while the toucher's copy holds this one; and
 * so is any bind mount of it, which serves the same files and keeps the
 * notifier going.  A mount's id could name another mount soon after an
 * unmount.  Only the daemon's own mount namespace is seen: a copy of the
 * mount in another namespace (unshare -m after the mount) keeps the
 * superblock, but the notifier then ends all the same.
 */
static int mount_listed(struct ks_notifier *n)
{
	struct pollfd pfd = { .fd = n->mounts_fd, .events = POLLPRI };

	for (int tries = 0; tries < TABLE_TRIES; tries++) {
		char *line, *next;
		int found = 0;

		if (read_table(n) < 0)
			return -1;
		for (line = n->table; *line; line = next) {
			unsigned id, parent, maj, min;
			char *sep;

			next = strchr(line, '\n');
			if (next)
				*next++ = '\0';
			else
				next = line + strlen(line);
			if (sscanf(line, "%u %u %u:%u", &id, &parent, &maj,
				   &min) != 4 ||
			    maj != n->dev_major || min != n->dev_minor)
				continue;
			/* The file system type follows " - "; paths
			 * have their spaces escaped. */
			sep = strstr(line, " - ");
			if (sep && strncmp(sep + 3, "fuse", 4) == 0 &&
			    (sep[7] == ' ' || sep[7] == '.')) {
				found = 1;
				break;
			}
		}
		/* A table read in several pieces while it changed may have
		 * lost a line: a mount gone by mistake is gone for good.
		 * The table changed if poll says so (and that poll takes the
		 * change: the next ppoll waits for a newer one). */
		if (poll(&pfd, 1, 0) == 1 &&
		    (pfd.revents & (POLLPRI | POLLERR)))
			continue;
		return found;
	}
	return -1;
}

/* At the start: watch the daemon's mount table for the mount of device
 * dev, if the mount is in it, and tell the children its device. */
static void watch_mount(struct ks_notifier *n, dev_t dev)
{
	if (!dev)
		return;
	n->dev_major = major(dev);
	n->dev_minor = minor(dev);
	n->mounts_fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	if (n->mounts_fd < 0)
		return;
	if (mount_listed(n) == 1) {
		snprintf(n->dev_arg, sizeof(n->dev_arg), "%u:%u",
			 n->dev_major, n->dev_minor);
		return;
	}
	/* Unmounted already, or not to be seen from here: no copies, and
	 * the child is restarted as long as the daemon lives. */
	close(n->mounts_fd);
	n->mounts_fd = -1;
}

/*
 * The mount left the daemon's mount table: fusermount3 -u, umount,
 * umount -l.  The child and its copy of the mount go, and no child is
 * started again, so that the superblock, then the FUSE connection and
 * then the daemon end as they would with no copy: at once, or once the
 * last file open on a lazily unmounted mount is closed.  What is pending
 * has no one left to wake.
 */
static void mount_gone(struct ks_notifier *n)
{
	struct u64map left;
	struct u64map_iter it;
	void *val;

	close(n->mounts_fd);
	n->mounts_fd = -1;
	n->rescan_ns = 0;
	ks_lock(&n->lock);
	n->gone = true;
	u64map_move(&left, &n->pending);
	n->merged = false;
	ks_unlock(&n->lock);
	if (n->child)
		release_child(n);
	/* The last reference to a state goes outside the lock. */
	u64map_iter_init(&it, &left);
	while (u64map_next(&it, NULL, &val))
		free_job(val);
	u64map_free(&left);
	for (size_t i = n->head; i < n->len; i++)
		free_job(n->queue[i].job);
	n->head = n->len = n->unsent = 0;
}

/* The table changed: is the mount still in it? */
static void check_mount(struct ks_notifier *n)
{
	int listed = mount_listed(n);

	if (listed < 0)
		n->rescan_ns = now_ns() + RESCAN_MS * 1000000LL;
	else if (!listed)
		mount_gone(n);
	else
		n->rescan_ns = 0;
}

static void *notifier_main(void *arg)
{
	struct ks_daemon *d = arg;
	struct ks_notifier *n = d->notifier;

	for (;;) {
		struct pollfd pfd[4];
		struct timespec ts, *timeout = NULL;
		long long now = now_ns(), wake = -1;
		int nfds = 0, sock_i = -1, pidfd_i = -1, mounts_i = -1, err;
		bool pending;

		ks_lock(&n->lock);
		if (n->stop) {
			ks_unlock(&n->lock);
			break;
		}
		pending = u64map_len(&n->pending) > 0;
		ks_unlock(&n->lock);

		/* Once the mount is gone, no child: see mount_gone. */
		if (!n->child && !n->gone && now >= n->restart_ns) {
			err = start_child(n);
			if (!err) {
				atomic_fetch_add(&n->restarts, 1);
			} else {
				n->backoff_ms = n->backoff_ms ?
					n->backoff_ms * 2 : BACKOFF_MIN_MS;
				if (n->backoff_ms > BACKOFF_MAX_MS)
					n->backoff_ms = BACKOFF_MAX_MS;
				n->restart_ns = now + n->backoff_ms * 1000000LL;
				fprintf(stderr, "kstatefs: cannot start the "
					"inotify child: %s; trying again in "
					"%ld ms\n", strerror(err),
					n->backoff_ms);
			}
		}
		/* A new batch only once the last is sent: until then commits
		 * gather in pending, one job per file. */
		if (n->child && pending && !n->unsent &&
		    now >= n->next_batch_ns) {
			if (!take_pending(n) ||
			    n->interval_ns < BATCH_INTERVAL_NS)
				n->interval_ns = BATCH_INTERVAL_NS;
			else if (n->interval_ns < BATCH_INTERVAL_MAX_NS)
				n->interval_ns *= 2;
			n->next_batch_ns = now + n->interval_ns;
			pending = false;
		}
		if (n->child && !send_unsent(d)) {
			child_died(d, "its socket broke");
			continue;
		}

		pfd[nfds++] = (struct pollfd){ .fd = n->wake_fd,
					       .events = POLLIN };
		if (n->mounts_fd >= 0) {
			/* The kernel reports every change of the mount
			 * namespace's table as POLLPRI | POLLERR. */
			mounts_i = nfds;
			pfd[nfds++] = (struct pollfd){ .fd = n->mounts_fd,
						       .events = POLLPRI };
			if (n->rescan_ns)
				wake = n->rescan_ns;
		}
		if (n->child) {
			sock_i = nfds;
			pfd[nfds++] = (struct pollfd){
				.fd = n->sock,
				.events = POLLIN | (n->unsent ? POLLOUT : 0) };
			if (n->pidfd >= 0) {
				pidfd_i = nfds;
				pfd[nfds++] = (struct pollfd){
					.fd = n->pidfd, .events = POLLIN };
			}
			if (pending && !n->unsent) {
				/* Past due only if the queue had no room. */
				long long batch = n->next_batch_ns > now ?
					n->next_batch_ns :
					now + 10 * BATCH_INTERVAL_NS;

				if (wake < 0 || batch < wake)
					wake = batch;
			}
		} else if (!n->gone && (wake < 0 || n->restart_ns < wake)) {
			wake = n->restart_ns;
		}
		if (wake >= 0) {
			long long left = wake > now ? wake - now : 0;

			ts.tv_sec = (time_t)(left / 1000000000LL);
			ts.tv_nsec = (long)(left % 1000000000LL);
			timeout = &ts;
		}
		if (ppoll(pfd, (nfds_t)nfds, timeout, NULL) < 0)
			continue; /* EINTR; nothing else can fail here */

		if (pfd[0].revents & POLLIN) {
			uint64_t count;

			if (read(n->wake_fd, &count, sizeof(count)) < 0)
				(void)0; /* EAGAIN: another read took it */
		}
		if ((mounts_i >= 0 &&
		     (pfd[mounts_i].revents & (POLLPRI | POLLERR))) ||
		    (n->rescan_ns && now_ns() >= n->rescan_ns)) {
			check_mount(n);
			if (n->gone)
				continue; /* the child's fds are closed */
		}
		if (sock_i < 0)
			continue;
		if ((pfd[sock_i].revents & POLLIN) && !read_acks(n))
			child_died(d, "it closed its socket");
		else if (pfd[sock_i].revents & (POLLHUP | POLLERR))
			child_died(d, "it closed its socket");
		else if (pidfd_i >= 0 && (pfd[pidfd_i].revents & POLLIN))
			child_died(d, "its pidfd");
	}
	return NULL;
}

/* ---- the daemon's side ----------------------------------------------- */

int notifier_start(struct ks_daemon *d)
{
	struct ks_notifier *n = calloc(1, sizeof(*n));
	int err;

	if (!n)
		return ENOMEM;
	n->mountpoint = d->mountpoint;
	n->sock = n->pidfd = n->mounts_fd = -1;
	atomic_init(&n->toucher, 0);
	atomic_init(&n->restarts, 0);
	n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->wake_fd < 0) {
		err = errno;
		free(n);
		return err;
	}
	ks_lock_init(&n->lock, "notifier->lock", KS_RANK_FS_NOTIFIER);
	u64map_init(&n->pending);
	/* Before the first child: it is told the mount's device. */
	watch_mount(n, d->dev);
	/* The first child here: a daemon that cannot start one says so
	 * and does not mount. */
	err = start_child(n);
	if (!err) {
		d->notifier = n;
		err = pthread_create(&n->thread, NULL, notifier_main, d);
		if (err)
			d->notifier = NULL;
	}
	if (err) {
		if (n->child) {
			close(n->sock);
			kill(n->child, SIGKILL);
			waitpid(n->child, NULL, 0);
			if (n->pidfd >= 0)
				close(n->pidfd);
		}
		u64map_free(&n->pending);
		ks_lock_destroy(&n->lock);
		close(n->wake_fd);
		if (n->mounts_fd >= 0)
			close(n->mounts_fd);
		free(n->table);
		free(n);
	}
	return err;
}

void notifier_post(struct ks_daemon *d, struct ks_state *st,
		   const char *view, uint64_t key)
{
	struct ks_notifier *n = d->notifier;
	struct job *job;
	bool first;

	if (!n)
		return;
	ks_lock(&n->lock);
	if (n->gone) {
		/* No child any more, and no watcher left to wake. */
		ks_unlock(&n->lock);
		return;
	}
	if (n->stop || u64map_get(&n->pending, key)) {
		/* Already queued: one write serves every commit so far. */
		n->merged = true;
		ks_unlock(&n->lock);
		return;
	}
	job = calloc(1, sizeof(*job));
	if (job) {
		job->st = ks_state_ref(st);
		if (view)
			snprintf(job->view, sizeof(job->view), "%s", view);
		first = u64map_len(&n->pending) == 0;
		if (u64map_put(&n->pending, key, job) != 0) {
			free_job(job);
		} else if (first) {
			/* Never blocks: an eventfd only counts. */
			uint64_t one = 1;

			if (write(n->wake_fd, &one, sizeof(one)) < 0)
				(void)0; /* EAGAIN: it is awake anyway */
		}
	}
	ks_unlock(&n->lock);
}

bool notifier_is_self(struct ks_daemon *d, pid_t pid)
{
	return d->notifier && pid > 0 &&
	       atomic_load(&d->notifier->toucher) == pid;
}

uint64_t notifier_restarts(struct ks_daemon *d)
{
	return d->notifier ? atomic_load(&d->notifier->restarts) : 0;
}

void notifier_stop(struct ks_daemon *d)
{
	struct ks_notifier *n = d->notifier;
	struct u64map_iter it;
	uint64_t one = 1;
	void *val;

	if (!n)
		return;
	ks_lock(&n->lock);
	n->stop = true;
	ks_unlock(&n->lock);
	if (write(n->wake_fd, &one, sizeof(one)) < 0)
		(void)0; /* EAGAIN: it is awake anyway */
	pthread_join(n->thread, NULL);
	/* The mount is gone: nothing left to write. */
	if (n->child)
		end_child(n);
	if (n->mounts_fd >= 0)
		close(n->mounts_fd);
	free(n->table);
	for (size_t i = n->head; i < n->len; i++)
		free_job(n->queue[i].job);
	free(n->queue);
	u64map_iter_init(&it, &n->pending);
	while (u64map_next(&it, NULL, &val))
		free_job(val);
	u64map_free(&n->pending);
	close(n->wake_fd);
	ks_lock_destroy(&n->lock);
	free(n);
	d->notifier = NULL;
}

/* ---- the child's entry ----------------------------------------------- */

/*
 * A child started by start_child runs the daemon's binary again, and main
 * hands it over here before anything of the daemon's startup (options,
 * store, session), which the toucher needs none of.  It is told apart by
 * its arguments, which no daemon is started with, and by a socket on
 * CHILD_FD.  Its comm would be "exe" after the exec of /proc/self/exe: set
 * it, for pgrep -x and ps.
 */
bool notifier_child_requested(int argc, char *argv[])
{
	struct stat sb;

	return argc >= CHILD_MIN_ARGS && strcmp(argv[0], CHILD_NAME) == 0 &&
	       strcmp(argv[1], CHILD_FLAG) == 0 &&
	       fstat(CHILD_FD, &sb) == 0 && S_ISSOCK(sb.st_mode);
}

_Noreturn void notifier_child_main(int argc, char *argv[])
{
	const char *dev = argc > CHILD_MIN_ARGS ? argv[3] : NULL;

	prctl(PR_SET_NAME, CHILD_NAME, 0, 0, 0);
	touch_paths(CHILD_FD, clone_mount(argv[2], dev), argv[2]);
}
