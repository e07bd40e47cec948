/*
 * Wake-up latency: from the moment a commit starts (just before the
 * committer's rename) to the moment a waiter in another thread returns
 * from its wait, having seen the new version.
 *
 *   bench_wake [-t SECONDS] [-s PAGE] NAME=MODE:PATH...
 *
 * Modes (PATH is a state directory, created if missing, except for events):
 *
 *   poll     the sysfs idiom on an open `version`: read, poll(POLLPRI),
 *            lseek 0, read
 *   inotify  inotify_add_watch(version, IN_MODIFY), read the event, then
 *            read `version`
 *   events   read `commit NAME VERSION` lines from PATH/.events (PATH is
 *            the mount; the state committed is PATH/ev)
 *   rtt      no commit: the latency of fstat of an open transaction file,
 *            one FUSE round trip that does nothing, for comparison
 *   gwwatch  no kstatefs: the committer makes the etcd store's commit txn
 *            (compare the version, put page, version, time) through etcd's
 *            JSON gateway (gateway.h; PATH is the key "/PREFIX/NAME", the
 *            endpoint in $KSTATEFS_BENCH_ETCD), and the waiter is an etcd
 *            watch on PREFIX (kstatefs' etcd client, core/etcd_client.h):
 *            the wake-up is the event's arrival
 *
 * For poll and inotify, PATH may be WAIT_DIR@COMMIT_DIR: the waiter on one
 * state directory, the committer on another, e.g. the same state through
 * two mounts of one etcd (two hosts).
 *
 * The committer makes one commit at a time, 200 to 1000 µs after the
 * waiter has reported the previous one, so the waiter is always asleep.
 * A commit not reported within a second counts as lost.  Prints
 * "NAME MEDIAN_US P99_US SAMPLES LOST RENAME_MEDIAN_US" (the last is how
 * long the committer's rename took; rtt has none).
 */
#include "bench.h"
#include "etcd_client.h"
#include "gateway.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct wake {
	const char *mode;
	char *dir;            /* the state directory */
	char *cdir;           /* the committer's: dir, or another mount's */
	struct gw_state *gw;  /* gwwatch: the committer's connection */
	char *root;           /* events: the mount */
	size_t page;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t target;      /* the version being committed, 0 if none */
	uint64_t t0;          /* when its commit started */
	uint64_t seen;        /* the newest version the waiter reported */
	bool ready, stop;
	struct bench_samples lat;  /* microseconds */
	struct bench_samples commit;  /* how long each rename took */
};

static uint64_t read_version(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	CHECK(n > 0, "read version");
	buf[n] = '\0';
	return strtoull(buf, NULL, 10);
}

/* The waiter saw version v at time t: a sample if it is the one awaited. */
static void saw(struct wake *w, uint64_t v, uint64_t t)
{
	pthread_mutex_lock(&w->lock);
	if (w->target && v >= w->target && w->seen < w->target) {
		bench_samples_add(&w->lat, (double)(t - w->t0) / 1e3);
		w->seen = w->target;
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
}

static void set_ready(struct wake *w)
{
	pthread_mutex_lock(&w->lock);
	w->ready = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static bool stopping(struct wake *w)
{
	bool stop;

	pthread_mutex_lock(&w->lock);
	stop = w->stop;
	pthread_mutex_unlock(&w->lock);
	return stop;
}

static void wait_poll(struct wake *w)
{
	char *path = bench_join(w->dir, "version");
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0, "open %s", path);
	read_version(fd);
	set_ready(w);
	while (!stopping(w)) {
		struct pollfd p = { .fd = fd, .events = POLLPRI };
		int r = poll(&p, 1, 100);
		uint64_t t = bench_now();
		char buf[32];
		ssize_t n;

		CHECK(r >= 0, "poll %s", path);
		if (r == 0)
			continue;
		CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek %s", path);
		n = read(fd, buf, sizeof(buf) - 1);
		CHECK(n > 0, "read %s", path);
		buf[n] = '\0';
		saw(w, strtoull(buf, NULL, 10), t);
	}
	close(fd);
	free(path);
}

static void wait_inotify(struct wake *w)
{
	char *path = bench_join(w->dir, "version");
	char buf[4096] __attribute__((aligned(8)));
	int in = inotify_init1(IN_CLOEXEC);
	int fd = open(path, O_RDONLY);

	CHECK(in >= 0 && fd >= 0, "inotify on %s", path);
	CHECK(inotify_add_watch(in, path, IN_MODIFY) >= 0,
	      "inotify_add_watch %s", path);
	set_ready(w);
	while (!stopping(w)) {
		struct pollfd p = { .fd = in, .events = POLLIN };
		int r = poll(&p, 1, 100);
		uint64_t t;

		CHECK(r >= 0, "poll inotify");
		if (r == 0)
			continue;
		CHECK(read(in, buf, sizeof(buf)) > 0, "read inotify");
		t = bench_now();
		saw(w, read_version(fd), t);
	}
	close(fd);
	close(in);
	free(path);
}

static void wait_events(struct wake *w)
{
	char *path = bench_join(w->root, ".events");
	char buf[8192];
	size_t have = 0;
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0, "open %s", path);
	set_ready(w);
	while (!stopping(w)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 100);
		uint64_t t, v, newest = 0;
		ssize_t n;
		char *line, *nl;

		CHECK(r >= 0, "poll %s", path);
		if (r == 0)
			continue;
		n = read(fd, buf + have, sizeof(buf) - 1 - have);
		t = bench_now();
		CHECK(n > 0, "read %s", path);
		have += (size_t)n;
		buf[have] = '\0';
		for (line = buf; (nl = strchr(line, '\n')); line = nl + 1) {
			*nl = '\0';
			if (sscanf(line, "commit ev %" SCNu64, &v) == 1 &&
			    v > newest)
				newest = v;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == sizeof(buf) - 1)
			have = 0;       /* a line too long to be ours */
		if (newest)
			saw(w, newest, t);
	}
	close(fd);
	free(path);
}

static void *waiter_main(void *arg)
{
	struct wake *w = arg;

	if (strcmp(w->mode, "poll") == 0)
		wait_poll(w);
	else if (strcmp(w->mode, "inotify") == 0)
		wait_inotify(w);
	else
		wait_events(w);
	return NULL;
}

static void sleep_us(long us)
{
	struct timespec ts = { 0, us * 1000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Commits one version after another, each once the previous one was
 * reported, for the given time.  Returns the number of lost wake-ups. */
static int commit_loop(struct wake *w, double seconds)
{
	unsigned char *page = bench_page(w->page, 1);
	char *vpath = w->gw ? NULL : bench_join(w->cdir, "version");
	int dirfd = -1, vfd = -1;
	uint64_t v, end = bench_now() + (uint64_t)(seconds * 1e9);
	unsigned seed = 1;
	int lost = 0;

	if (w->gw) {
		v = gw_state_version(w->gw);
	} else {
		dirfd = open(w->cdir, O_RDONLY | O_DIRECTORY);
		vfd = open(vpath, O_RDONLY);
		CHECK(dirfd >= 0 && vfd >= 0, "open %s", vpath);
		v = read_version(vfd);
	}
	while (bench_now() < end) {
		struct timespec limit;
		uint64_t t0;
		int err = 0;

		page[0] = (unsigned char)v;
		if (!w->gw) {
			int fd = openat(dirfd, "txn",
					O_WRONLY | O_CREAT | O_TRUNC, 0644);

			CHECK(fd >= 0, "open txn");
			CHECK(write(fd, page, w->page) == (ssize_t)w->page,
			      "write txn");
			CHECK(close(fd) == 0, "close txn");
		}
		sleep_us(200 + rand_r(&seed) % 800);

		pthread_mutex_lock(&w->lock);
		w->target = ++v;
		w->t0 = t0 = bench_now();
		pthread_mutex_unlock(&w->lock);
		if (w->gw) {
			errno = 0;
			CHECK(gw_state_cas(w->gw, v - 1, page, w->page),
			      "the commit txn of version %" PRIu64 " failed",
			      v);
		} else {
			CHECK(renameat(dirfd, "txn", dirfd, "data") == 0,
			      "rename txn data");
		}
		bench_samples_add(&w->commit, (double)(bench_now() - t0) / 1e3);

		clock_gettime(CLOCK_MONOTONIC, &limit);
		limit.tv_sec += 1;
		pthread_mutex_lock(&w->lock);
		while (w->seen < v && err == 0)
			err = pthread_cond_timedwait(&w->cond, &w->lock,
						     &limit);
		if (w->seen < v) {
			lost++;
			w->seen = v;    /* no late sample for it */
		}
		pthread_mutex_unlock(&w->lock);
	}
	if (vfd >= 0)
		close(vfd);
	if (dirfd >= 0)
		close(dirfd);
	free(vpath);
	free(page);
	return lost;
}

static void report(const char *name, struct bench_samples *s, int lost,
		   struct bench_samples *commit)
{
	bench_sort(s->v, s->n);
	printf("%s %.1f %.1f %zu %d", name, bench_quantile(s->v, s->n, 0.5),
	       bench_quantile(s->v, s->n, 0.99), s->n, lost);
	if (commit) {
		bench_sort(commit->v, commit->n);
		printf(" %.1f", bench_quantile(commit->v, commit->n, 0.5));
	}
	printf("\n");
	fflush(stdout);
}

/* gwwatch: the etcd watch's callback, on the client's thread. */
static int64_t on_watch(void *arg, const struct ks_etcd_watch_response *r)
{
	struct wake *w = arg;
	const char *vkey = gw_state_version_key(w->gw);
	uint64_t t = bench_now();

	if (r->kind == KS_ETCD_WATCH_CONNECTED) {
		set_ready(w);
		return 0;
	}
	if (r->kind != KS_ETCD_WATCH_EVENTS)
		return 0;
	for (size_t i = 0; i < r->n_events; i++) {
		const struct ks_etcd_event *e = &r->events[i];

		if (e->type == KS_ETCD_PUT && strcmp(e->kv.key, vkey) == 0)
			saw(w, strtoull(e->kv.value, NULL, 10), t);
	}
	return 0;
}

static struct ks_etcd *watch_start(struct wake *w)
{
	struct ks_etcd_options o = { .endpoints = gw_endpoint(),
				     .prefix = gw_state_prefix(w->gw),
				     .timeout = 5 };
	struct ks_etcd_status st;
	struct ks_etcd *c;
	char msg[512] = "";

	errno = ks_etcd_create(&o, &c);
	CHECK(errno == 0, "ks_etcd_create");
	errno = ks_etcd_status(c, 0, &st, msg, sizeof(msg));
	CHECK(errno == 0, "etcd status: %s", msg);
	errno = ks_etcd_watch_start(c, st.revision + 1, on_watch, w);
	CHECK(errno == 0, "ks_etcd_watch_start");
	return c;
}

static void measure_wake(const char *name, struct wake *w, double seconds)
{
	pthread_condattr_t ca;
	pthread_t th;
	struct ks_etcd *etcd = NULL;
	int lost;

	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	if (w->gw) {
		etcd = watch_start(w);
	} else {
		errno = pthread_create(&th, NULL, waiter_main, w);
		CHECK(errno == 0, "pthread_create");
	}
	pthread_mutex_lock(&w->lock);
	while (!w->ready)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);

	lost = commit_loop(w, seconds);
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_mutex_unlock(&w->lock);
	if (etcd)
		ks_etcd_free(etcd);   /* stops the watch */
	else
		pthread_join(th, NULL);
	report(name, &w->lat, lost, &w->commit);
	free(w->lat.v);
	free(w->commit.v);
}

static void measure_rtt(const char *name, const char *dir, double seconds)
{
	struct bench_samples s = { 0 };
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	int fd = openat(dirfd, "noop", O_RDWR | O_CREAT, 0644);
	uint64_t end = bench_now() + (uint64_t)(seconds * 1e9), t0, t1;
	struct stat st;

	CHECK(dirfd >= 0 && fd >= 0, "open %s/noop", dir);
	do {
		t0 = bench_now();
		CHECK(fstat(fd, &st) == 0, "fstat %s/noop", dir);
		t1 = bench_now();
		bench_samples_add(&s, (double)(t1 - t0) / 1e3);
	} while (t1 < end);
	report(name, &s, 0, NULL);
	close(fd);
	close(dirfd);
	free(s.v);
}

int main(int argc, char **argv)
{
	static const char usage[] =
		"[-t SECONDS] [-s PAGE] "
		"NAME=poll|inotify|events|rtt|gwwatch:PATH...";
	struct bench_opts o;
	int first = bench_parse_opts(argc, argv, &o, usage);

	for (int i = first; i < argc; i++) {
		struct bench_spec s;
		struct wake w = { 0 };

		bench_parse_spec(argv[i], &s);
		w.mode = s.mode;
		w.page = o.page;
		if (strcmp(s.mode, "gwwatch") == 0) {
			w.gw = gw_state_open(s.path);
			measure_wake(s.name, &w, o.seconds);
			gw_state_close(w.gw);
			continue;
		}
		if (strcmp(s.mode, "events") == 0) {
			w.root = s.path;
			w.dir = bench_join(s.path, "ev");
		} else {
			char *at = strchr(s.path, '@');

			if (at) {
				*at = '\0';
				w.cdir = strdup(at + 1);
				CHECK(w.cdir, "strdup");
			}
			w.dir = strdup(s.path);
			CHECK(w.dir, "strdup");
		}
		if (!w.cdir) {
			w.cdir = strdup(w.dir);
			CHECK(w.cdir, "strdup");
		}
		bench_mkdir(w.dir);
		if (strcmp(s.mode, "rtt") == 0)
			measure_rtt(s.name, w.dir, o.seconds);
		else if (strcmp(s.mode, "poll") == 0 ||
			 strcmp(s.mode, "inotify") == 0 ||
			 strcmp(s.mode, "events") == 0)
			measure_wake(s.name, &w, o.seconds);
		else
			bench_fail("no mode '%s'; usage: %s %s", s.mode,
				   argv[0], usage);
		free(w.dir);
		free(w.cdir);
	}
	return 0;
}
