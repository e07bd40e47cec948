/*
 * kstate: read, write and wait for kstatefs states from a shell.
 *
 * Built on libkstate, so, like it, it uses nothing but the files of the
 * mount.  Waiting is always poll() on a state's version file with the
 * deadline as the poll timeout: no sleep-and-check loops.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kstate.h"

/* Exit statuses.  update also passes on its CMD's status. */
enum { EXIT_TIMEOUT = 1, EXIT_USAGE = 2, EXIT_ERROR = 3 };

/* Standard input or a command's output beyond this is refused: no page is
 * anywhere near it, and it keeps a runaway command from eating memory. */
#define INPUT_MAX (64u << 20)

/* ---- options -------------------------------------------------------------- */

enum { OPT_AFTER = 256, OPT_TIMEOUT, OPT_TRIES, OPT_MAX_RATE, OPT_RECHECK,
       OPT_UNTIL };

/* Which options a command takes. */
#define O_AFTER    (1u << 0)
#define O_TIMEOUT  (1u << 1)
#define O_TRIES    (1u << 2)
#define O_MAX_RATE (1u << 3)
#define O_NO_NL    (1u << 4)
#define O_NULL     (1u << 5)
#define O_RECHECK  (1u << 6)
#define O_UNTIL    (1u << 7)
/* NAME... -- CMD [ARG...]: the states end at "--" (parsed in main). */
#define O_CMD      (1u << 8)

struct opts {
	bool have_after;
	uint64_t after;
	double timeout;    /* seconds; < 0: none */
	long tries;        /* 0: no limit */
	double max_rate;   /* runs per second; 0: no limit */
	bool no_newline;
	int cmd_args;      /* update: arguments after "--"; -1: no "--" */
	bool null;         /* several pages: NUL after each, no headers */
	double recheck;    /* seconds; 0: only on changes */
	bool have_until;
	struct timespec until;  /* CLOCK_REALTIME */
	char **cmd;        /* O_CMD: the command, NULL-terminated */
};

struct command {
	const char *name;
	int (*run)(const struct opts *o, int argc, char **argv);
	int min_args, max_args;  /* positional arguments; -1: no limit */
	unsigned options;
	const char *usage;
	const char *help;
};

/* ---- messages ------------------------------------------------------------- */

/* Every error names what it is about and why: "kstate: PATH: WHAT: reason". */
static void error_at(const char *path, const char *what, int err)
{
	if (what)
		fprintf(stderr, "kstate: %s: %s: %s\n", path, what,
			strerror(err));
	else
		fprintf(stderr, "kstate: %s: %s\n", path, strerror(err));
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---- states ------------------------------------------------------------- */

/* statfs(2)'s f_type of every FUSE file system, kstatefs included. */
#define FUSE_SUPER_MAGIC 0x65735546

/* The directory PATH is in, into BUF. */
static const char *parent_of(const char *path, char *buf, size_t cap)
{
	char *end, *slash;

	snprintf(buf, cap, "%s", path);
	end = buf + strlen(buf);
	while (end > buf + 1 && end[-1] == '/')
		*--end = '\0';
	slash = strrchr(buf, '/');
	if (!slash)
		return ".";
	if (slash == buf)
		return "/";
	*slash = '\0';
	return buf;
}

/* Why PATH, which kstate_subscribe refused with ENOENT, is not a state;
 * NULL if it simply does not exist. */
static const char *why_not_state(const char *path, unsigned flags)
{
	char buf[PATH_MAX];
	struct statfs fs;
	struct stat st;

	if (stat(path, &st) < 0) {
		/* A new name, for a state to be made: where? */
		if (errno != ENOENT || !(flags & KSTATE_WRITE))
			return NULL;
		path = parent_of(path, buf, sizeof buf);
		if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
			return NULL;
		if (statfs(path, &fs) == 0 && fs.f_type != FUSE_SUPER_MAGIC)
			return "not on a kstatefs mount";
		return "states are made at the root of a kstatefs mount";
	}
	if (!S_ISDIR(st.st_mode))
		return "a file, not a state's directory";
	if (statfs(path, &fs) == 0 && fs.f_type != FUSE_SUPER_MAGIC)
		return "not on a kstatefs mount";
	snprintf(buf, sizeof buf, "%s/.stats", path);
	if (stat(buf, &st) == 0)
		return "the root of a kstatefs mount: its states are in it";
	return "not a directory at the root of a kstatefs mount, "
	       "nor a view NAME/every/PERIOD";
}

/* For a path kstate_subscribe took: is it a throttled view
 * (NAME/every/PERIOD) rather than a state, whose directory is at the root
 * (which holds .stats)? */
static bool is_view(const char *path)
{
	char up[PATH_MAX];
	struct stat st;

	snprintf(up, sizeof up, "%s/../.stats", path);
	return stat(up, &st) < 0 && errno == ENOENT;
}

/* Why the last component of PATH cannot be a state's name (kstatefs(1),
 * Names), or NULL.  libkstate refuses such names too (EINVAL,
 * ENAMETOOLONG); this is for a message that says why. */
static const char *bad_state_name(const char *path)
{
	const char *end = path + strlen(path), *start;

	while (end > path && end[-1] == '/')
		end--;
	for (start = end; start > path && start[-1] != '/'; start--)
		;
	if (end - start > NAME_MAX)
		return "not a state name: longer than 255 bytes";
	for (const char *p = start; p < end; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return "not a state name: it holds a control byte "
			       "(a newline, a tab, ...)";
	return NULL;
}

/* PATH for a message: a control byte in it must not start a new line or
 * move the cursor, so it is shown as \n, \t or \xHH. */
static void print_path(FILE *out, const char *path)
{
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if (*p == '\n')
			fputs("\\n", out);
		else if (*p == '\t')
			fputs("\\t", out);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\x%02x", *p);
		else
			fputc(*p, out);
	}
}

static struct kstate *open_state(const char *path, unsigned flags)
{
	const char *bad = bad_state_name(path);
	struct kstate *s;

	if (bad) {
		fputs("kstate: ", stderr);
		print_path(stderr, path);
		fprintf(stderr, ": %s\n", bad);
		return NULL;
	}
	s = kstate_subscribe(path, flags);
	if (s)
		return s;
	if (errno == ENOENT && (bad = why_not_state(path, flags))) {
		fputs("kstate: ", stderr);
		print_path(stderr, path);
		fprintf(stderr, ": not a kstatefs state (%s)\n", bad);
	} else {
		error_at(path, NULL, errno);
	}
	return NULL;
}

/* Reads the whole page, whatever its length, and its version. */
static char *read_state(struct kstate *s, size_t *len, uint64_t *version)
{
	size_t cap = 4096;

	for (;;) {
		char *buf = malloc(cap);
		ssize_t n;

		if (!buf)
			return NULL;
		n = kstate_read(s, buf, cap, version);
		if (n >= 0) {
			*len = (size_t)n;
			return buf;
		}
		free(buf);
		if (errno != ERANGE)
			return NULL;
		/* Larger than we guessed: ask for the length and try
		 * again (it may grow again meanwhile, hence the loop). */
		n = kstate_read(s, NULL, 0, NULL);
		if (n < 0)
			return NULL;
		cap = (size_t)n + 1;
	}
}

/* Waits for a version after AFTER until DEADLINE (monotonic ns; 0: none).
 * 0 and *VERSION set, 1 on timeout, -1 on error. */
static int wait_change(struct kstate *s, uint64_t after, uint64_t deadline,
		       uint64_t *version)
{
	for (;;) {
		int ms = -1;

		if (deadline) {
			uint64_t t = now_ns();
			uint64_t left = t < deadline ? deadline - t : 0;

			/* poll takes an int of ms: wait in pieces of at
			 * most ~24 days if we must. */
			left = (left + 999999) / 1000000;
			ms = left > INT_MAX ? INT_MAX : (int)left;
		}
		if (kstate_wait(s, after, ms, version) == 0)
			return 0;
		if (errno == ETIMEDOUT) {
			if (now_ns() >= deadline)
				return 1;
		} else if (errno != EINTR) {
			return -1;
		}
	}
}

static uint64_t deadline_after(double seconds)
{
	if (seconds < 0)
		return 0;
	if (seconds > 1e9)  /* thirty years is forever enough */
		seconds = 1e9;
	return now_ns() + (uint64_t)(seconds * 1e9) + 1;
}

/* ---- running commands ----------------------------------------------------- */

/* The signals that stop update, when and watch: set by SIGINT, SIGTERM or
 * SIGHUP, so that they pass it on to the command running, wait for it,
 * abort a transaction, and then die of the signal. */
static volatile sig_atomic_t stop_signal;

static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP };

static void note_signal(int sig)
{
	stop_signal = sig;
}

/* Only wakes run() from ppoll when its command ends. */
static void note_child(int sig)
{
	(void)sig;
}

/* SIGCHLD as it was at startup: a command gets it so. */
static struct sigaction startup_sigchld;

/* Catches the stop signals, and SIGCHLD for run().  A stop signal ignored
 * at startup stays ignored, for kstate and its commands: nohup, and a
 * background job of a script, which the shell starts with SIGINT and
 * SIGQUIT ignored, must not be stopped by it. */
static void catch_signals(void)
{
	struct sigaction sa = { .sa_handler = note_signal }, old;

	/* No SA_RESTART: the signal should interrupt whatever we do. */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof stop_signals / sizeof *stop_signals;
	     i++) {
		if (sigaction(stop_signals[i], NULL, &old) == 0 &&
		    old.sa_handler != SIG_IGN)
			sigaction(stop_signals[i], &sa, NULL);
	}
	sa.sa_handler = note_child;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, &startup_sigchld);
}

/* Dies of the stop signal that came, if one did, as if it had not been
 * caught. */
static void die_of_stop_signal(void)
{
	if (!stop_signal)
		return;
	signal(stop_signal, SIG_DFL);
	raise(stop_signal);
}

static void stop_signal_set(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < sizeof stop_signals / sizeof *stop_signals;
	     i++)
		sigaddset(set, stop_signals[i]);
}

/* poll(2) until WAKE (monotonic ns; 0: no limit), which a stop signal
 * always interrupts (-1, EINTR): the signals are blocked from the check of
 * stop_signal until ppoll unblocks them, so one that comes just before
 * the wait is not slept through. */
static int poll_until(struct pollfd *p, nfds_t n, uint64_t wake)
{
	sigset_t stops, old;
	struct timespec ts, *limit = NULL;
	int rc, saved;

	stop_signal_set(&stops);
	sigprocmask(SIG_BLOCK, &stops, &old);
	if (wake) {
		uint64_t t = now_ns(), left = t < wake ? wake - t : 0;

		ts.tv_sec = (time_t)(left / 1000000000u);
		ts.tv_nsec = (long)(left % 1000000000u);
		limit = &ts;
	}
	if (stop_signal) {
		errno = EINTR;
		rc = -1;
	} else {
		rc = ppoll(p, n, limit, &old);
	}
	saved = errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	errno = saved;
	return rc;
}

struct output {
	char *buf;
	size_t len, cap;
	bool too_big;
};

/* Makes FROM the descriptor TO in a child about to exec. */
static void move_fd(int from, int to)
{
	if (from == to)
		fcntl(to, F_SETFD, 0);  /* keep it across exec */
	else
		dup2(from, to);
}

static int append_bytes(struct output *o, const void *p, size_t len)
{
	if (o->len + len > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		char *b;

		while (cap < o->len + len)
			cap *= 2;
		b = realloc(o->buf, cap);
		if (!b)
			return -1;
		o->buf = b;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, p, len);
	o->len += len;
	return 0;
}

/* Reads what FD has into OUT, once: the number of bytes read (0 at the
 * end), or -1 with errno. */
static ssize_t collect_some(int fd, struct output *out)
{
	char chunk[4096];
	ssize_t n = read(fd, chunk, sizeof chunk);

	if (n <= 0)
		return n;
	if (out->too_big || out->len + (size_t)n > INPUT_MAX) {
		out->too_big = true;  /* drain it, keep nothing */
		return n;
	}
	return append_bytes(out, chunk, (size_t)n) ? -1 : n;
}

static int collect(int fd, struct output *out)
{
	for (;;) {
		ssize_t n = collect_some(fd, out);

		if (n == 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* Set when a command could not be executed at all: it would fail the same
 * way every time, so when and watch stop. */
static bool exec_failed;

/* Is kstate in the foreground of its controlling terminal?  Then its
 * command stays in kstate's process group: the terminal's ^C reaches it
 * there anyway, and it may read the terminal (a password prompt, an
 * editor), which a process group in the background may not. */
static bool terminal_foreground(void)
{
	int fd = open("/dev/tty", O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	bool fg;

	if (fd < 0)
		return false;  /* no controlling terminal */
	fg = tcgetpgrp(fd) == getpgrp();
	close(fd);
	return fg;
}

/* Sends SIG to the command PID, and to all of its process group if it has
 * one of its own: a command that is a shell script would otherwise die and
 * leave what it runs (a sleep, a pipeline) running on its own. */
static void pass_on(pid_t pid, int sig)
{
	if (getpgid(pid) == pid)
		kill(-pid, sig);
	else
		kill(pid, sig);
}

/* Waits for the command PID to end, collecting its standard output from
 * OUTFD into OUT (OUTFD -1: none), and passes a stop signal on to it
 * once.  SIGCHLD and the stop signals are blocked: ppoll unblocks them
 * (MASK), so neither the command's end nor a signal can come between a
 * check and the wait.  0 and *STATUS, or -1 with errno. */
static int wait_command(pid_t pid, int outfd, struct output *out,
			const sigset_t *mask, int *status)
{
	bool passed = false, ended = false;

	while (!ended || outfd >= 0) {
		struct pollfd p = { .fd = outfd, .events = POLLIN };
		pid_t r;

		if (stop_signal && !passed) {
			pass_on(pid, stop_signal);
			passed = true;
		}
		if (!ended) {
			r = waitpid(pid, status, WNOHANG);
			if (r < 0 && errno != EINTR)
				return -1;
			ended = r == pid;
		}
		if (ended && outfd < 0)
			break;
		/* With no output to read, ppoll only waits for a signal. */
		if (ppoll(&p, outfd >= 0, NULL, mask) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (outfd >= 0 && p.revents) {
			ssize_t n = collect_some(outfd, out);

			if (n < 0 && errno != EINTR && errno != EAGAIN)
				return -1;
			if (n == 0)
				outfd = -1;  /* the end of its output */
		}
	}
	return 0;
}

/* Runs ARGV with the page IN on standard input and, with OUT, collects its
 * standard output.  Returns its exit status (128 + N if signal N killed it;
 * 127 or 126 if it could not be executed), or -1 with errno.  A stop
 * signal that comes meanwhile is passed on to it, and it is waited for. */
static int run(char **argv, const char *in, size_t inlen, struct output *out)
{
	int page = -1, outp[2] = { -1, -1 }, errp[2] = { -1, -1 };
	int status, exec_errno = 0, rc = -1, saved;
	bool own_group = !terminal_foreground();
	sigset_t block, old, mask;
	pid_t pid;

	stop_signal_set(&block);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	mask = old;
	sigdelset(&mask, SIGCHLD);
	/* The page goes in through a memory file rather than a pipe: no
	 * deadlock between feeding it and reading the output, and no SIGPIPE
	 * for commands that do not read it. */
	page = memfd_create("kstate-page", MFD_CLOEXEC);
	if (page < 0 || write_all(page, in, inlen) < 0 ||
	    lseek(page, 0, SEEK_SET) < 0)
		goto out;
	if (out && pipe2(outp, O_CLOEXEC) < 0)
		goto out;
	/* Reports a failed exec: the pipe closes unread when exec works. */
	if (pipe2(errp, O_CLOEXEC) < 0)
		goto out;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		goto out;
	if (pid == 0) {
		int e;

		/* A process group of its own (set on both sides, so that
		 * it is there before either goes on), for the stop
		 * signals to reach all it runs; the signals as kstate
		 * found them. */
		if (own_group)
			setpgid(0, 0);
		sigaction(SIGCHLD, &startup_sigchld, NULL);
		/* Until exec, a stop signal passed on must not be taken
		 * for kstate's. */
		for (size_t i = 0;
		     i < sizeof stop_signals / sizeof *stop_signals; i++) {
			struct sigaction sa;

			if (sigaction(stop_signals[i], NULL, &sa) == 0 &&
			    sa.sa_handler == note_signal)
				signal(stop_signals[i], SIG_DFL);
		}
		sigprocmask(SIG_SETMASK, &old, NULL);
		move_fd(page, 0);
		if (out)
			move_fd(outp[1], 1);
		execvp(argv[0], argv);
		e = errno;
		if (write(errp[1], &e, sizeof e) < 0)
			_exit(127);
		_exit(e == ENOENT ? 127 : 126);
	}
	if (own_group)
		setpgid(pid, pid);
	close(errp[1]);
	errp[1] = -1;
	if (out) {
		close(outp[1]);
		outp[1] = -1;
	}
	if (wait_command(pid, out ? outp[0] : -1, out, &mask, &status) < 0) {
		saved = errno;
		pass_on(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		errno = saved;
		goto out;
	}
	/* It ended, so the pipe is closed: this read never waits. */
	while (read(errp[0], &exec_errno, sizeof exec_errno) < 0 &&
	       errno == EINTR)
		;
	if (exec_errno) {
		error_at(argv[0], NULL, exec_errno);
		exec_failed = true;
	}
	if (WIFEXITED(status))
		rc = WEXITSTATUS(status);
	else
		rc = 128 + WTERMSIG(status);
out:
	saved = errno;
	if (page >= 0)
		close(page);
	for (int i = 0; i < 2; i++) {
		if (outp[i] >= 0)
			close(outp[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	errno = saved;
	return rc;
}

/* ---- several states: one snapshot, one waiter ----------------------------- */

/* States read together.  Their pages come from one snapshot, a read-only
 * .txn/T of the mount (kstatefs(1)): mkdir .txn/T fixes the instant, each
 * .txn/T/NAME read shows NAME as it was then, and the commit that ends it
 * never fails.  Changes are waited for with one poll() over every state's
 * version file. */
struct readset {
	size_t n;
	char **paths;          /* as given */
	struct kstate *one;    /* n == 1: read through libkstate */
	int rootfd;            /* n > 1: the mount's root */
	char **names;          /* n > 1: the states' names in it */
	int *vfd;              /* each state's version file */
	bool null;
};

static void readset_close(struct readset *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		if (rs->vfd && rs->vfd[i] >= 0)
			close(rs->vfd[i]);
		if (rs->names)
			free(rs->names[i]);
	}
	free(rs->vfd);
	free(rs->names);
	if (rs->rootfd >= 0)
		close(rs->rootfd);
	kstate_unsubscribe(rs->one);
}

/* Opens PATHS; a message and -1 on failure.  Several states must be on
 * one mount: a snapshot is one mount's instant. */
static int readset_open(struct readset *rs, char **paths, size_t n, bool null)
{
	char *mount = NULL;

	*rs = (struct readset){ .n = n, .paths = paths, .rootfd = -1,
				.null = null };
	rs->vfd = malloc(n * sizeof(*rs->vfd));
	rs->names = calloc(n, sizeof(*rs->names));
	if (!rs->vfd || !rs->names) {
		error_at(paths[0], NULL, errno);
		free(rs->vfd);
		free(rs->names);
		rs->vfd = NULL;
		rs->names = NULL;
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		rs->vfd[i] = -1;
	for (size_t i = 0; i < n; i++) {
		char vpath[PATH_MAX], *real, *slash;
		struct kstate *s = open_state(paths[i], KSTATE_READ);

		/* open_state says what is wrong with a path that is no
		 * state; a state needs nothing more. */
		if (!s)
			goto fail;
		if (n == 1)
			rs->one = s;
		else
			kstate_unsubscribe(s);
		/* A view's page is not the state's as of the snapshot's
		 * instant, which is all a snapshot can read. */
		if (n > 1 && is_view(paths[i])) {
			fprintf(stderr, "kstate: %s: a throttled view cannot "
				"join a snapshot of several states\n",
				paths[i]);
			goto fail;
		}
		snprintf(vpath, sizeof vpath, "%s/version", paths[i]);
		rs->vfd[i] = open(vpath, O_RDONLY | O_CLOEXEC);
		if (rs->vfd[i] < 0) {
			error_at(paths[i], NULL, errno);
			goto fail;
		}
		if (n == 1)
			break;
		real = realpath(paths[i], NULL);
		if (!real) {
			error_at(paths[i], NULL, errno);
			goto fail;
		}
		slash = strrchr(real, '/');
		*slash = '\0';
		rs->names[i] = strdup(slash + 1);
		if (!rs->names[i]) {
			error_at(paths[i], NULL, errno);
			free(real);
			goto fail;
		}
		if (!mount) {
			mount = real;
			rs->rootfd = open(*mount ? mount : "/",
					  O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (rs->rootfd < 0) {
				error_at(*mount ? mount : "/", NULL, errno);
				goto fail;
			}
		} else {
			bool same = strcmp(mount, real) == 0;

			free(real);
			if (!same) {
				fprintf(stderr, "kstate: %s: not on the mount of "
					"%s: one snapshot is of one mount\n",
					paths[i], paths[0]);
				goto fail;
			}
		}
	}
	free(mount);
	return 0;
fail:
	free(mount);
	readset_close(rs);
	return -1;
}

/* Reads each version file from offset 0: from now on poll() reports any
 * later commit.  Done before the pages are read, so that a commit between
 * the two is seen by the next wait, never lost. */
static int readset_arm(struct readset *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		char text[32];

		if (rs->vfd[i] < 0)
			continue;
		while (pread(rs->vfd[i], text, sizeof text, 0) < 0) {
			if (errno != EINTR) {
				error_at(rs->paths[i], "cannot read the version",
					 errno);
				return -1;
			}
		}
	}
	return 0;
}

/* Appends the whole of FD to OUT.  -1 with errno. */
static int append_file(struct output *out, int fd)
{
	off_t off = 0;

	for (;;) {
		ssize_t n;

		if (out->cap - out->len < 4096) {
			size_t cap = out->cap ? out->cap * 2 : 8192;
			char *b = realloc(out->buf, cap);

			if (!b)
				return -1;
			out->buf = b;
			out->cap = cap;
		}
		n = pread(fd, out->buf + out->len, out->cap - out->len, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return 0;
		out->len += (size_t)n;
		off += n;
	}
}

/* A name for our .txn/T: new on this mount (pid, counter, time). */
static void snapshot_name(char *buf, size_t cap)
{
	static unsigned long counter;

	snprintf(buf, cap, "kstate.%ld.%lu.%llx", (long)getpid(), ++counter,
		 (unsigned long long)now_ns());
}

/* Ends our snapshot T: the commit of a T that only read always succeeds
 * and removes it; if that fails anyway, rm -r. */
static void snapshot_end(struct readset *rs, const char *t, int tfd,
			 size_t joined)
{
	char from[PATH_MAX], to[PATH_MAX];

	snprintf(from, sizeof from, ".txn/%s", t);
	snprintf(to, sizeof to, ".commit/%s", t);
	if (renameat(rs->rootfd, from, rs->rootfd, to) == 0)
		return;
	for (size_t i = 0; i < joined; i++)
		unlinkat(tfd, rs->names[i], 0);
	unlinkat(rs->rootfd, from, AT_REMOVEDIR);
}

/* The pages of every state as one text in *OUT: for one state, the page
 * itself; for several, from one snapshot, each page preceded by the line
 * "NAME LENGTH" (NAME as given) and followed by a newline, or with --null
 * followed by a NUL byte alone.  A message and -1 on failure. */
static int readset_read(struct readset *rs, struct output *out)
{
	char t[96], tpath[PATH_MAX];
	int tfd = -1, rc = -1;
	size_t i;

	out->len = 0;
	if (rs->n == 1) {
		size_t len;
		char *page = read_state(rs->one, &len, NULL);

		if (!page) {
			error_at(rs->paths[0], "cannot read", errno);
			return -1;
		}
		free(out->buf);
		out->buf = page;
		out->len = out->cap = len;
		return 0;
	}
	for (int tries = 0;; tries++) {
		snapshot_name(t, sizeof t);
		snprintf(tpath, sizeof tpath, ".txn/%s", t);
		if (mkdirat(rs->rootfd, tpath, 0700) == 0)
			break;
		if (errno != EEXIST || tries > 100) {
			error_at(rs->paths[0], "cannot take a snapshot", errno);
			return -1;
		}
	}
	tfd = openat(rs->rootfd, tpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tfd < 0) {
		error_at(rs->paths[0], "cannot take a snapshot", errno);
		unlinkat(rs->rootfd, tpath, AT_REMOVEDIR);
		return -1;
	}
	for (i = 0; i < rs->n; i++) {
		int fd = openat(tfd, rs->names[i], O_RDONLY | O_CLOEXEC);
		size_t at;
		int err;

		if (fd < 0) {
			error_at(rs->paths[i], "cannot read", errno);
			goto out;
		}
		if (!rs->null) {
			/* The header goes in after the page, once its length
			 * is known: make room for it by moving the page. */
			char head[PATH_MAX + 32];
			size_t hl, plen;

			at = out->len;
			err = append_file(out, fd) < 0 ? errno : 0;
			close(fd);
			if (err) {
				error_at(rs->paths[i], "cannot read", err);
				goto out;
			}
			plen = out->len - at;
			hl = (size_t)snprintf(head, sizeof head, "%s %zu\n",
					      rs->paths[i], plen);
			if (append_bytes(out, head, hl + 1) < 0) {
				error_at(rs->paths[i], NULL, errno);
				goto out;
			}
			memmove(out->buf + at + hl, out->buf + at, plen);
			memcpy(out->buf + at, head, hl);
			out->buf[at + hl + plen] = '\n';
		} else {
			err = append_file(out, fd) < 0 ? errno : 0;
			close(fd);
			if (err || append_bytes(out, "", 1) < 0) {
				error_at(rs->paths[i], "cannot read",
					 err ? err : errno);
				goto out;
			}
		}
	}
	rc = 0;
out:
	snapshot_end(rs, t, tfd, i);
	close(tfd);
	return rc;
}

/* Waits with one poll() over every version file until a commit to any
 * of them (0), or until WAKE (monotonic ns; 0: never) passes (1); -1 and
 * a message on error.  A stop signal ends the wait too (0). */
static int readset_wait(struct readset *rs, uint64_t wake)
{
	struct pollfd *p = calloc(rs->n, sizeof(*p));
	int rc = -1;

	if (!p) {
		error_at(rs->paths[0], "cannot wait", errno);
		return -1;
	}
	for (size_t i = 0; i < rs->n; i++)
		p[i] = (struct pollfd){ .fd = rs->vfd[i], .events = POLLPRI };
	for (;;) {
		int n;

		if (wake && now_ns() >= wake) {
			rc = 1;
			break;
		}
		n = poll_until(p, (nfds_t)rs->n, wake);
		if (n < 0 && errno == EINTR) {
			if (!stop_signal)
				continue;
			rc = 0;  /* the caller sees stop_signal */
			break;
		}
		if (n < 0) {
			error_at(rs->paths[0], "cannot wait", errno);
			break;
		}
		if (n == 0)
			continue;  /* the top decides whether WAKE passed */
		for (size_t i = 0; i < rs->n; i++)
			if (p[i].revents & (POLLERR | POLLNVAL | POLLHUP)) {
				/* A poll that fails would wake us forever. */
				error_at(rs->paths[i], "cannot wait", EIO);
				goto out;
			}
		rc = 0;
		break;
	}
out:
	free(p);
	return rc;
}

/* ---- get ------------------------------------------------------------------ */

/* Several states: their pages from one snapshot (readset_read). */
static int get_several(const struct opts *o, int argc, char **argv)
{
	struct readset rs;
	struct output out = { 0 };
	int rc = 0;

	if (readset_open(&rs, argv, (size_t)argc, o->null) < 0)
		return EXIT_ERROR;
	if (readset_read(&rs, &out) < 0) {
		rc = EXIT_ERROR;
	} else if (write_all(STDOUT_FILENO, out.buf, out.len) < 0) {
		error_at("standard output", NULL, errno);
		rc = EXIT_ERROR;
	}
	free(out.buf);
	readset_close(&rs);
	return rc;
}

static int cmd_get(const struct opts *o, int argc, char **argv)
{
	struct kstate *s;
	char *page;
	size_t len;
	int rc = 0;

	if (argc > 1)
		return get_several(o, argc, argv);
	s = open_state(argv[0], KSTATE_READ);
	if (!s)
		return EXIT_ERROR;
	page = read_state(s, &len, NULL);
	if (!page) {
		error_at(argv[0], "cannot read", errno);
		rc = EXIT_ERROR;
	} else if (write_all(STDOUT_FILENO, page, len) < 0) {
		error_at("standard output", NULL, errno);
		rc = EXIT_ERROR;
	}
	free(page);
	kstate_unsubscribe(s);
	return rc;
}

/* ---- set and update ------------------------------------------------------- */

struct body {
	char **cmd;           /* update: the command */
	const char *value;    /* set: the new page */
	size_t len;
	const char *failed;   /* what went wrong, for the message */
};

static int put_page(struct kstate_txn *txn, const char *buf, size_t len)
{
	if (kstate_set_length(txn, len) < 0)
		return -1;
	memcpy(kstate_get_ptr(txn), buf, len);
	return 0;
}

static int set_body(struct kstate_txn *txn, void *page, void *arg)
{
	struct body *b = arg;

	(void)page;
	b->failed = "cannot commit";
	return put_page(txn, b->value, b->len);
}

static int update_body(struct kstate_txn *txn, void *page, void *arg)
{
	struct body *b = arg;
	struct output out = { 0 };
	int rc;

	if (stop_signal)
		return 128 + stop_signal;
	b->failed = "cannot run command";
	rc = run(b->cmd, page, kstate_get_length(txn), &out);
	if (rc == 0 && stop_signal)
		rc = 128 + stop_signal;
	if (rc == 0 && out.too_big) {
		b->failed = "command output";
		errno = EFBIG;
		rc = -1;
	}
	if (rc == 0) {
		b->failed = "cannot commit";
		rc = put_page(txn, out.buf, out.len);
	}
	free(out.buf);
	/* Nonzero aborts the transaction; the CMD's status comes back out of
	 * kstate_transaction_using_fn unchanged. */
	return rc;
}

/* Commits through libkstate, whose fsync reports every error, EFBIG
 * included; a shell's close of data would lose it. */
static int commit_with(const struct opts *o, const char *path,
		       kstate_txn_fn *fn, struct body *b)
{
	struct kstate *s = open_state(path, KSTATE_WRITE);
	int rc;

	if (!s)
		return EXIT_ERROR;
	b->failed = "cannot begin a transaction";
	rc = kstate_transaction_using_fn(s, fn, b,
					 o->tries ? (int)(o->tries - 1)
						  : KSTATE_RETRY_FOREVER);
	if (rc < 0) {
		if (errno == EAGAIN && o->tries) {
			fprintf(stderr, "kstate: %s: cannot commit: %s "
				"(gave up after %ld tries)\n", path,
				strerror(errno), o->tries);
		} else {
			error_at(path, b->failed, errno);
		}
		rc = EXIT_ERROR;
	}
	kstate_unsubscribe(s);
	return rc;
}

static char *read_stdin(size_t *len)
{
	struct output in = { 0 };

	if (collect(STDIN_FILENO, &in) < 0) {
		free(in.buf);
		return NULL;
	}
	if (in.too_big) {
		free(in.buf);
		errno = EFBIG;
		return NULL;
	}
	*len = in.len;
	return in.buf ? in.buf : calloc(1, 1);
}

static int cmd_set(const struct opts *o, int argc, char **argv)
{
	struct body b = { 0 };
	char *value;
	int rc;

	if (argc == 2) {
		/* A value on the command line is a line of text, as echo
		 * writes it; -n leaves out the newline. */
		size_t n = strlen(argv[1]);

		value = malloc(n + 2);
		if (!value) {
			error_at(argv[0], NULL, errno);
			return EXIT_ERROR;
		}
		memcpy(value, argv[1], n);
		if (!o->no_newline)
			value[n++] = '\n';
		b.len = n;
	} else {
		value = read_stdin(&b.len);
		if (!value) {
			error_at("standard input", NULL, errno);
			return EXIT_ERROR;
		}
	}
	b.value = value;
	rc = commit_with(o, argv[0], set_body, &b);
	free(value);
	return rc;
}

/* update over several states: each page in a file of a private directory,
 * the files given to CMD as its last arguments, what it leaves in them
 * committed to all the states at once. */
struct multi_body {
	char **argv;          /* CMD, its arguments, the files, NULL */
	char **files;
	size_t n;
	const char *failed;   /* what went wrong, for the message */
	const char *what;     /* the file it went wrong with, if any */
};

static int write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc;

	if (fd < 0)
		return -1;
	rc = write_all(fd, buf, len);
	if (close(fd) < 0)
		rc = -1;
	return rc;
}

static int read_file(const char *path, struct output *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = collect(fd, out);
	close(fd);
	if (rc == 0 && out->too_big) {
		errno = EFBIG;
		rc = -1;
	}
	return rc;
}

static int update_multi_body(struct kstate_txn *const txn[], size_t n,
			     void *arg)
{
	struct multi_body *b = arg;
	int rc;

	if (stop_signal)
		return 128 + stop_signal;
	for (size_t i = 0; i < n; i++) {
		b->failed = "cannot write the page to";
		b->what = b->files[i];
		if (write_file(b->files[i], kstate_get_ptr(txn[i]),
			       kstate_get_length(txn[i])) < 0)
			return -1;
	}
	b->failed = "cannot run command";
	b->what = NULL;
	/* Standard input is empty: CMD may run several times, and could not
	 * read the same input again. */
	rc = run(b->argv, "", 0, NULL);
	if (rc == 0 && stop_signal)
		rc = 128 + stop_signal;
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		struct output out = { 0 };

		b->failed = "cannot read the page back from";
		b->what = b->files[i];
		rc = read_file(b->files[i], &out);
		if (rc == 0) {
			b->failed = "cannot commit";
			b->what = NULL;
			rc = put_page(txn[i], out.buf ? out.buf : "", out.len);
		}
		free(out.buf);
		if (rc < 0)
			return -1;
	}
	b->failed = "cannot commit";
	return 0;
}

/* The name of NAME's file: the state's name where that is a plain,
 * distinct one, else pageI. */
static char *page_file(const char *dir, char **names, size_t i)
{
	const char *name = names[i], *end = name + strlen(name), *start;
	char *path;
	bool plain;

	while (end > name + 1 && end[-1] == '/')
		end--;
	start = end;
	while (start > name && start[-1] != '/')
		start--;
	plain = end > start && *start != '.';
	for (size_t j = 0; plain && j < i; j++) {
		const char *other = strrchr(names[j], '/');

		other = other ? other + 1 : names[j];
		if (strlen(other) == (size_t)(end - start) &&
		    !memcmp(other, start, (size_t)(end - start)))
			plain = false;
	}
	if (plain) {
		if (asprintf(&path, "%s/%.*s", dir, (int)(end - start),
			     start) < 0)
			return NULL;
	} else if (asprintf(&path, "%s/page%zu", dir, i + 1) < 0) {
		return NULL;
	}
	return path;
}

/* nftw's step of remove_dir: each entry after what is in it. */
static int remove_entry(const char *path, const struct stat *st, int type,
			struct FTW *ftw)
{
	/* A directory it could not read is removed if it is empty. */
	bool is_dir = type == FTW_DP || type == FTW_DNR;

	(void)st;
	(void)ftw;
	if ((is_dir ? rmdir(path) : unlink(path)) < 0 &&
	    errno != ENOENT)
		return errno;
	return 0;
}

/* Removes DIR and everything in it: the page files, and anything CMD left,
 * subdirectories included.  Symbolic links are removed, never followed,
 * and no other file system is entered, so nothing outside DIR is
 * touched.  0 or an errno. */
static int remove_dir(const char *dir)
{
	int rc = nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);

	return rc < 0 ? errno : rc;
}

/* "A, B, C": what messages about the whole transaction name. */
static char *names_of(char **names, size_t n)
{
	size_t len = 1;
	char *all;

	for (size_t i = 0; i < n; i++)
		len += strlen(names[i]) + 2;
	all = malloc(len);
	if (!all)
		return NULL;
	all[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(all, ", ");
		strcat(all, names[i]);
	}
	return all;
}

static int update_several(const struct opts *o, char **names, size_t n,
			  char **cmd, size_t ncmd)
{
	struct kstate **states = calloc(n, sizeof *states);
	struct multi_body b = { .n = n };
	char dir[PATH_MAX], *all = names_of(names, n);
	const char *tmp = getenv("TMPDIR");
	int rc = EXIT_ERROR, err;
	size_t i;

	b.files = calloc(n, sizeof *b.files);
	b.argv = calloc(ncmd + n + 1, sizeof *b.argv);
	dir[0] = '\0';
	if (!states || !b.files || !b.argv || !all) {
		error_at("kstate", NULL, errno);
		goto out;
	}
	/* The states must exist: a misspelt name among several should not
	 * become a new, empty state that the others' amounts move to. */
	for (i = 0; i < n; i++) {
		struct kstate *s = open_state(names[i], KSTATE_READ);

		if (!s)
			goto out;
		kstate_unsubscribe(s);
		if (is_view(names[i])) {
			fprintf(stderr, "kstate: %s: a throttled view cannot "
				"join a transaction over several states\n",
				names[i]);
			goto out;
		}
		states[i] = open_state(names[i], KSTATE_READ | KSTATE_WRITE);
		if (!states[i])
			goto out;
	}
	snprintf(dir, sizeof dir, "%s/kstate.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		error_at(dir, "cannot make a directory for the pages", errno);
		dir[0] = '\0';
		goto out;
	}
	memcpy(b.argv, cmd, ncmd * sizeof *cmd);
	for (i = 0; i < n; i++) {
		b.files[i] = page_file(dir, names, i);
		if (!b.files[i]) {
			error_at("kstate", NULL, errno);
			goto out;
		}
		b.argv[ncmd + i] = b.files[i];
	}
	b.failed = "cannot begin a transaction";
	rc = kstate_multi_using_fn(states, n, update_multi_body, &b,
				   o->tries ? (int)(o->tries - 1)
					    : KSTATE_RETRY_FOREVER);
	if (rc < 0) {
		if (errno == EAGAIN && o->tries)
			fprintf(stderr, "kstate: %s: cannot commit: %s "
				"(gave up after %ld tries)\n", all,
				strerror(errno), o->tries);
		else if (b.what)
			fprintf(stderr, "kstate: %s: %s %s: %s\n", all,
				b.failed, b.what, strerror(errno));
		else
			error_at(all, b.failed, errno);
		rc = EXIT_ERROR;
	}
out:
	/* The commit stands whatever is left here: say so, but do not fail
	 * an update that happened. */
	if (dir[0] && (err = remove_dir(dir)) != 0)
		error_at(dir, "cannot remove", err);
	for (i = 0; states && i < n; i++)
		kstate_unsubscribe(states[i]);
	for (i = 0; b.files && i < n; i++)
		free(b.files[i]);
	free(b.files);
	free(b.argv);
	free(states);
	free(all);
	return rc;
}

static int cmd_update(const struct opts *o, int argc, char **argv)
{
	struct body b = { .cmd = argv + 1 };
	/* NAME... -- CMD: every argument before "--" is a state; without
	 * "--", the first one only. */
	int names = o->cmd_args >= 0 ? argc - o->cmd_args : 1;
	int rc;

	if (names < 1 || names == argc) {
		fprintf(stderr, "Usage: kstate update [--tries N] NAME... -- "
			"CMD [ARG...]\nTry 'kstate update --help'.\n");
		return EXIT_USAGE;
	}
	/* A stop signal aborts the transaction (leaving no file behind)
	 * before we die of it. */
	catch_signals();
	if (names == 1)
		rc = commit_with(o, argv[0], update_body, &b);
	else
		rc = update_several(o, argv, (size_t)names, argv + names,
				    (size_t)(argc - names));
	die_of_stop_signal();
	return rc;
}

/* ---- wait, when, watch ------------------------------------------------- */

static int cmd_wait(const struct opts *o, int argc, char **argv)
{
	struct kstate *s = open_state(argv[0], KSTATE_READ);
	uint64_t deadline = deadline_after(o->timeout);
	uint64_t after = o->after, v;
	int rc;

	if (!s)
		return EXIT_ERROR;
	if (!o->have_after && kstate_version(s, &after) < 0) {
		error_at(argv[0], "cannot read the version", errno);
		kstate_unsubscribe(s);
		return EXIT_ERROR;
	}
	rc = wait_change(s, after, deadline, &v);
	if (rc < 0) {
		error_at(argv[0], "cannot wait", errno);
		rc = EXIT_ERROR;
	} else if (rc == 0) {
		printf("%" PRIu64 "\n", v);
		if (fflush(stdout) != 0) {
			error_at("standard output", NULL, errno);
			rc = EXIT_ERROR;
		}
	} else {
		rc = EXIT_TIMEOUT;
	}
	kstate_unsubscribe(s);
	return rc;
}

/* The wall-clock time T as a CLOCK_MONOTONIC deadline in ns: what poll()
 * waits by.  A clock step after this is not followed. */
static uint64_t monotonic_at(const struct timespec *t)
{
	struct timespec now;
	double left;

	clock_gettime(CLOCK_REALTIME, &now);
	left = (double)(t->tv_sec - now.tv_sec) +
	       (double)(t->tv_nsec - now.tv_nsec) / 1e9;
	if (left < 0)
		left = 0;
	return deadline_after(left);
}

static uint64_t earliest(uint64_t a, uint64_t b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	return a < b ? a : b;
}

/* PRED runs on a snapshot of every state; again after a change of any of
 * them, after --recheck S, and once more at --until TIME; all of that is
 * one poll() (readset_wait). */
static int cmd_when(const struct opts *o, int argc, char **argv)
{
	struct readset rs;
	struct output page = { 0 };
	uint64_t timeout_at = deadline_after(o->timeout);
	uint64_t until_at = o->have_until ? monotonic_at(&o->until) : 0;
	bool last = false;
	int rc = EXIT_ERROR;

	catch_signals();
	if (readset_open(&rs, argv, (size_t)argc, o->null) < 0)
		return EXIT_ERROR;
	while (!stop_signal) {
		uint64_t wake, recheck_at = 0;
		int w;

		if (readset_arm(&rs) < 0 || readset_read(&rs, &page) < 0) {
			rc = EXIT_ERROR;
			break;
		}
		rc = run(o->cmd, page.buf, page.len, NULL);
		if (rc < 0) {
			error_at(o->cmd[0], "cannot run", errno);
			rc = EXIT_ERROR;
			break;
		}
		/* Killed by SIGPIPE: the reader of its output is gone, and
		 * a pipeline would stop here too. */
		if (rc == 0 || exec_failed || rc == 128 + SIGPIPE ||
		    stop_signal)
			break;
		if (last) {
			rc = EXIT_TIMEOUT;
			break;
		}
		/* PRED said no: it sees the same pages until a commit, so
		 * sleep until one, unless it depends on time too. */
		if (o->recheck > 0)
			recheck_at = deadline_after(o->recheck);
		wake = earliest(earliest(timeout_at, until_at), recheck_at);
		w = readset_wait(&rs, wake);
		if (w < 0) {
			rc = EXIT_ERROR;
			break;
		}
		if (w == 1 && timeout_at && now_ns() >= timeout_at) {
			rc = EXIT_TIMEOUT;
			break;
		}
		/* --until: at TIME, one last run decides. */
		if (until_at && now_ns() >= until_at)
			last = true;
	}
	free(page.buf);
	readset_close(&rs);
	die_of_stop_signal();
	return rc;
}

static int cmd_watch(const struct opts *o, int argc, char **argv)
{
	struct readset rs;
	struct output page = { 0 };
	uint64_t period = o->max_rate > 0 ? (uint64_t)(1e9 / o->max_rate) : 0;
	uint64_t last_run = 0;
	int rc = EXIT_ERROR;

	catch_signals();
	if (readset_open(&rs, argv, (size_t)argc, o->null) < 0)
		return EXIT_ERROR;
	while (!stop_signal) {
		/* Too soon after the last run: sleep out the rest of the
		 * period, then take whatever is newest.  The changes in
		 * between are coalesced into it, and the last one is
		 * never skipped: it is newer than what we read, so the
		 * wait below returns for it. */
		while (last_run && now_ns() < last_run + period &&
		       !stop_signal)
			poll_until(NULL, 0, last_run + period);
		if (stop_signal)
			break;
		if (readset_arm(&rs) < 0 || readset_read(&rs, &page) < 0) {
			rc = EXIT_ERROR;
			break;
		}
		last_run = now_ns();
		rc = run(o->cmd, page.buf, page.len, NULL);
		if (rc < 0) {
			error_at(o->cmd[0], "cannot run", errno);
			rc = EXIT_ERROR;
			break;
		}
		/* CMD's own failures do not stop the watch, but one killed
		 * by SIGPIPE does: the reader of its output is gone, as
		 * `kstate watch S -- cat | head -1` ends, and a pipeline
		 * would stop here too. */
		if (exec_failed || rc == 128 + SIGPIPE)
			break;
		if (readset_wait(&rs, 0) < 0) {
			rc = EXIT_ERROR;
			break;
		}
	}
	free(page.buf);
	readset_close(&rs);
	die_of_stop_signal();
	return rc;
}

/* ---- ls ------------------------------------------------------------------- */

struct row {
	char *name;
	char version[24];
	char size[24];
	char time[32];
};

static int visible(const struct dirent *d)
{
	/* Names beginning with a dot are the filesystem's own. */
	return d->d_name[0] != '.';
}

static int cmd_ls(const struct opts *o, int argc, char **argv)
{
	const char *mount = argc ? argv[0] : ".";
	struct dirent **names;
	struct row *rows;
	int n, nrows = 0, rc = 0;
	int wname = 0, wversion = 0, wsize = 0;
	int mfd;

	(void)o;
	mfd = open(mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mfd < 0) {
		error_at(mount, NULL, errno);
		return EXIT_ERROR;
	}
	/* Every kstatefs root has .stats; an empty listing of some other
	 * directory would look like a mount with no states. */
	if (faccessat(mfd, ".stats", F_OK, 0) < 0) {
		if (errno == ENOENT)
			fprintf(stderr, "kstate: %s: not the root of a kstatefs "
				"mount (it has no .stats file)\n", mount);
		else
			error_at(mount, NULL, errno);
		close(mfd);
		return EXIT_ERROR;
	}
	n = scandir(mount, &names, visible, alphasort);
	if (n < 0) {
		error_at(mount, NULL, errno);
		close(mfd);
		return EXIT_ERROR;
	}
	rows = calloc((size_t)n + 1, sizeof *rows);
	for (int i = 0; rows && i < n; i++) {
		const char *name = names[i]->d_name;
		char path[PATH_MAX];
		struct kstate *s;
		struct stat st;
		uint64_t v;
		struct tm tm;
		struct row *r = &rows[nrows];
		bool ok;

		if (fstatat(mfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISDIR(st.st_mode))
			continue;  /* gone meanwhile, or not a state */
		snprintf(path, sizeof path, "%s/%s", mount, name);
		s = kstate_subscribe(path, KSTATE_READ);
		ok = s && kstate_version(s, &v) == 0;
		snprintf(path, sizeof path, "%s/data", name);
		ok = ok && fstatat(mfd, path, &st, 0) == 0;
		if (!ok) {
			/* A state deleted while we list is not an error. */
			if (errno != ENOENT) {
				fprintf(stderr, "kstate: %s/%s: %s\n", mount,
					name, strerror(errno));
				rc = EXIT_ERROR;
			}
			kstate_unsubscribe(s);
			continue;
		}
		kstate_unsubscribe(s);
		r->name = names[i]->d_name;
		snprintf(r->version, sizeof r->version, "%" PRIu64, v);
		snprintf(r->size, sizeof r->size, "%jd", (intmax_t)st.st_size);
		/* data's mtime is the time of its last commit; a state never
		 * committed has none. */
		if (v == 0 || !localtime_r(&st.st_mtime, &tm))
			strcpy(r->time, "-");
		else
			strftime(r->time, sizeof r->time, "%Y-%m-%dT%H:%M:%S",
				 &tm);
		if ((int)strlen(r->name) > wname)
			wname = (int)strlen(r->name);
		if ((int)strlen(r->version) > wversion)
			wversion = (int)strlen(r->version);
		if ((int)strlen(r->size) > wsize)
			wsize = (int)strlen(r->size);
		nrows++;
	}
	if (!rows) {
		error_at(mount, NULL, errno);
		rc = EXIT_ERROR;
	}
	for (int i = 0; i < nrows; i++)
		printf("%-*s %*s %*s %s\n", wname, rows[i].name,
		       wversion, rows[i].version, wsize, rows[i].size,
		       rows[i].time);
	if (fflush(stdout) != 0) {
		error_at("standard output", NULL, errno);
		rc = EXIT_ERROR;
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(rows);
	close(mfd);
	return rc;
}

/* ---- the command table and main ----------------------------------------- */

static const struct command commands[] = {
	{ "get", cmd_get, 1, -1, O_NULL,
	  "get [-0] NAME [NAME...]",
	  "Print the page of state NAME (a whole committed version).  Given several\n"
	  "states (of one mount), print their pages as they all were at one instant\n"
	  "(a snapshot, which never fails): each page preceded by a line\n"
	  "\"NAME LENGTH\" (NAME as given, LENGTH in bytes) and followed by a newline.\n"
	  "\n"
	  "  -0, --null   several states: each page followed by a NUL byte, no\n"
	  "               header lines\n" },
	{ "set", cmd_set, 1, 2, O_TRIES | O_NO_NL,
	  "set [-n] [--tries N] NAME [VALUE]",
	  "Commit VALUE, followed by a newline, as the new page of NAME; without\n"
	  "VALUE, commit standard input exactly.  Creates NAME if needed.  It\n"
	  "commits with fsync on a read-write open of NAME/data and reports every\n"
	  "error.\n"
	  "\n"
	  "  -n, --no-newline  do not add a newline after VALUE\n"
	  "  --tries N         give up after N conflicting attempts (default: no limit)\n" },
	{ "update", cmd_update, 2, -1, O_TRIES,
	  "update [--tries N] NAME... -- CMD [ARG...]",
	  "Run CMD with the page on standard input and commit its standard output\n"
	  "as the new page.  If another commit came first, run it again on the new\n"
	  "page, after a random, exponentially growing pause.  If CMD fails, nothing\n"
	  "is committed and kstate exits with CMD's status.  Creates NAME if needed.\n"
	  "A SIGINT, SIGTERM or SIGHUP is passed on to CMD; once CMD ended, kstate\n"
	  "aborts and dies of it.\n"
	  "\n"
	  "With several NAMEs (which must exist), CMD gets the pages as files, its\n"
	  "last arguments in the order of the NAMEs, each named after its state;\n"
	  "what it leaves in them is committed to all the states at once, or to\n"
	  "none.  A page left unchanged keeps its version.  Standard input is empty.\n"
	  "\n"
	  "  --tries N   give up after N conflicting attempts (default: no limit)\n" },
	{ "wait", cmd_wait, 1, 1, O_AFTER | O_TIMEOUT,
	  "wait NAME [--after V] [--timeout S]",
	  "Wait until the version of NAME exceeds V (default: the current version),\n"
	  "then print it.  Exit status 1 if S seconds pass first.\n"
	  "\n"
	  "  --after V     the version to wait past\n"
	  "  --timeout S   give up after S seconds (decimals allowed)\n" },
	{ "when", cmd_when, 1, -1,
	  O_TIMEOUT | O_RECHECK | O_UNTIL | O_NULL | O_CMD,
	  "when NAME... [--timeout S] [--recheck S] [--until TIME] [-0] -- PRED [ARG...]",
	  "Wait until PRED, run with the page on standard input, succeeds.  PRED is\n"
	  "run now, and again only when a NAME changes.  Given several states (of one\n"
	  "mount), PRED gets their pages as they all were at one instant, in the\n"
	  "format of 'kstate get NAME...', and runs again when any of them changes.\n"
	  "Exit status 1 if S seconds pass first; 141 if PRED is killed by SIGPIPE\n"
	  "(its output's reader is gone).  A SIGINT, SIGTERM or SIGHUP is passed\n"
	  "on to PRED, and kstate dies of it once PRED ended.\n"
	  "\n"
	  "  --timeout S    give up after S seconds (decimals allowed)\n"
	  "  --recheck S    also run PRED again when S seconds passed without a\n"
	  "                 change (for a PRED that depends on the time)\n"
	  "  --until TIME   run PRED a last time at TIME, then give up (status 1);\n"
	  "                 TIME is @SECONDS since the epoch or a local\n"
	  "                 YYYY-MM-DD[THH:MM[:SS]] or HH:MM[:SS] (today)\n"
	  "  -0, --null     several states: pages separated by NUL bytes\n" },
	{ "watch", cmd_watch, 1, -1, O_MAX_RATE | O_NULL | O_CMD,
	  "watch NAME... [--max-rate HZ] [-0] -- CMD [ARG...]",
	  "Run CMD with the page on standard input now and after every change of\n"
	  "NAME, until interrupted.  Changes that come faster than CMD runs are\n"
	  "coalesced, but the last one is never skipped.  CMD failing does not\n"
	  "stop the watch; CMD killed by SIGPIPE (its output's reader is gone)\n"
	  "does, with status 141.  Given several states (of one mount), CMD gets\n"
	  "their pages as they all were at one instant, in the format of\n"
	  "'kstate get NAME...', after a change of any of them.  A SIGINT, SIGTERM\n"
	  "or SIGHUP is passed on to CMD, and kstate dies of it once CMD ended.\n"
	  "\n"
	  "  --max-rate HZ   run CMD at most HZ times a second (decimals allowed)\n"
	  "  -0, --null      several states: pages separated by NUL bytes\n" },
	{ "ls", cmd_ls, 0, 1, 0,
	  "ls [MOUNT]",
	  "List the states of the kstatefs mounted at MOUNT (default: the current\n"
	  "directory): name, version, size in bytes and time of the last commit\n"
	  "(\"-\" if never committed), one state a line.\n" },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
	fprintf(f, "Usage: kstate COMMAND [OPTION...] NAME ...\n"
		"Read, write and wait for kstatefs states.  NAME is the path of a\n"
		"state's directory on a kstatefs mount.\n\nCommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  kstate %s\n", commands[i].usage);
	fprintf(f, "\n'kstate COMMAND --help' describes a command.\n"
		"Exit status: 0 success; 1 timeout (wait, when); 2 usage error;\n"
		"3 any other error; update exits with CMD's status when CMD fails.\n");
}

static bool parse_seconds(const char *s, double *out)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(s, &end);
	if (errno || end == s || *end || !isfinite(d) || d < 0)
		return false;
	*out = d;
	return true;
}

/* TIME for --until: @SECONDS since the epoch (decimals allowed), or a
 * local date and time, or a time of today. */
static bool parse_time(const char *s, struct timespec *out)
{
	static const char *const formats[] = {
		"%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S",
		"%Y-%m-%d %H:%M", "%Y-%m-%d", "%H:%M:%S", "%H:%M",
	};
	double d;

	if (*s == '@') {
		if (!parse_seconds(s + 1, &d) || d > 1e15)
			return false;
		out->tv_sec = (time_t)d;
		out->tv_nsec = (long)((d - (double)out->tv_sec) * 1e9);
		return true;
	}
	for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
		time_t now = time(NULL);
		struct tm tm;
		const char *end;

		/* A time alone is today's: start from today's date. */
		if (!localtime_r(&now, &tm))
			return false;
		tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
		end = strptime(s, formats[i], &tm);
		if (!end || *end)
			continue;
		tm.tm_isdst = -1;
		out->tv_sec = mktime(&tm);
		out->tv_nsec = 0;
		return out->tv_sec != (time_t)-1;
	}
	return false;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')  /* strtoull would take "-1" */
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static int bad_value(const char *prog, const char *opt, const char *value)
{
	fprintf(stderr, "%s: invalid value for %s: '%s'\n"
		"Try '%s --help'.\n", prog, opt, value, prog);
	return -1;
}

/* Parses the options of CMD; returns the index of the first positional
 * argument, or -1 after a usage error. */
static int parse_options(const struct command *cmd, int argc, char **argv,
			 struct opts *o, const char *prog)
{
	static const struct option all[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "after", required_argument, NULL, OPT_AFTER },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "tries", required_argument, NULL, OPT_TRIES },
		{ "max-rate", required_argument, NULL, OPT_MAX_RATE },
		{ "no-newline", no_argument, NULL, 'n' },
		{ "null", no_argument, NULL, '0' },
		{ "recheck", required_argument, NULL, OPT_RECHECK },
		{ "until", required_argument, NULL, OPT_UNTIL },
	};
	static const unsigned needs[] = {
		0, O_AFTER, O_TIMEOUT, O_TRIES, O_MAX_RATE, O_NO_NL, O_NULL,
		O_RECHECK, O_UNTIL
	};
	char shortopts[8] = "h";
	struct option longopts[sizeof all / sizeof all[0] + 1];
	size_t k = 0;
	int c;

	/* Offer getopt only this command's options, so that it reports any
	 * other as unrecognized. */
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		if (!needs[i] || (cmd->options & needs[i]))
			longopts[k++] = all[i];
	memset(&longopts[k], 0, sizeof longopts[k]);

	if (cmd->options & O_NO_NL)
		strcat(shortopts, "n");
	if (cmd->options & O_NULL)
		strcat(shortopts, "0");
	argv[0] = (char *)prog;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		uint64_t n;

		switch (c) {
		case 'h':
			printf("Usage: kstate %s\n\n%s", cmd->usage, cmd->help);
			exit(fflush(stdout) ? EXIT_ERROR : 0);
		case 'n':
			o->no_newline = true;
			break;
		case '0':
			o->null = true;
			break;
		case OPT_AFTER:
			o->have_after = true;
			if (!parse_u64(optarg, &o->after))
				return bad_value(prog, "--after", optarg);
			break;
		case OPT_TIMEOUT:
			if (!parse_seconds(optarg, &o->timeout))
				return bad_value(prog, "--timeout", optarg);
			break;
		case OPT_TRIES:
			if (!parse_u64(optarg, &n) || n < 1 || n > INT_MAX)
				return bad_value(prog, "--tries", optarg);
			o->tries = (long)n;
			break;
		case OPT_RECHECK:
			if (!parse_seconds(optarg, &o->recheck) ||
			    o->recheck <= 0)
				return bad_value(prog, "--recheck", optarg);
			break;
		case OPT_UNTIL:
			if (!parse_time(optarg, &o->until))
				return bad_value(prog, "--until", optarg);
			o->have_until = true;
			break;
		case OPT_MAX_RATE:
			if (!parse_seconds(optarg, &o->max_rate) ||
			    o->max_rate <= 0)
				return bad_value(prog, "--max-rate", optarg);
			break;
		default:
			fprintf(stderr, "Try '%s --help'.\n", prog);
			return -1;
		}
	}
	return optind;
}

int main(int argc, char **argv)
{
	const struct command *cmd = NULL;
	struct opts o = { .timeout = -1 };
	char prog[64];
	int first, nargs, end;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return fflush(stdout) ? EXIT_ERROR : 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("kstate %s\n", KSTATEFS_VERSION);
		return fflush(stdout) ? EXIT_ERROR : 0;
	}
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (!strcmp(argv[1], commands[i].name))
			cmd = &commands[i];
	if (!cmd) {
		fprintf(stderr, "kstate: unknown command '%s'\n"
			"Try 'kstate --help'.\n", argv[1]);
		return EXIT_USAGE;
	}
	snprintf(prog, sizeof prog, "kstate %s", cmd->name);
	/* getopt drops the "--" that ends update's NAMEs: count what
	 * follows it first (an option's value is no "--"). */
	o.cmd_args = -1;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			o.cmd_args = argc - i - 1;
			break;
		}
		if (!strcmp(argv[i], "--tries") || !strcmp(argv[i], "--after") ||
		    !strcmp(argv[i], "--timeout") ||
		    !strcmp(argv[i], "--max-rate"))
			i++;
	}
	/* NAME... -- CMD: the states and options end at the first "--";
	 * what follows is CMD's, options included. */
	end = argc;
	if (cmd->options & O_CMD) {
		for (int i = 2; i < argc; i++)
			if (!strcmp(argv[i], "--")) {
				end = i;
				o.cmd = argv + i + 1;
				break;
			}
	}
	first = parse_options(cmd, end - 1, argv + 1, &o, prog);
	if (first < 0)
		return EXIT_USAGE;
	nargs = end - 1 - first;
	if ((cmd->options & O_CMD) && !o.cmd && nargs >= 2) {
		/* No "--": NAME CMD [ARG...], one state. */
		o.cmd = argv + 1 + first + 1;
		nargs = 1;
	}
	if ((cmd->options & O_CMD) && (!o.cmd || !o.cmd[0]))
		nargs = -1;  /* no command: a usage error */
	if (nargs < cmd->min_args ||
	    (cmd->max_args >= 0 && nargs > cmd->max_args)) {
		fprintf(stderr, "Usage: kstate %s\nTry '%s --help'.\n",
			cmd->usage, prog);
		return EXIT_USAGE;
	}
	return cmd->run(&o, nargs, argv + 1 + first);
}
