/*
 * Power cuts, simulated from a record of the store's system calls.
 *
 * The store runs a scenario (a new store's first start, single commits,
 * group commits of several units, compactions, a clean stop and a restart)
 * with a recording I/O table under it (ks_log_set_io, installed before
 * recovery so that a new store's first segment is recorded too).  The
 * table does every call for real and notes each write, ftruncate, create,
 * rename, unlink, fdatasync/fsync and directory fsync, file by file.
 *
 * Then, for every point between two calls, and for many random choices of
 * what of the unsynced rest reached the disk, it builds the directory a
 * power cut there could leave, and opens it:
 *
 *  - a file holds what its last fdatasync/fsync made durable; of each
 *    write since, every 512-byte sector independently holds its content
 *    as of any moment since that sync (blocks of 4 KiB mostly go whole or
 *    not at all, some torn), so later blocks of one write may land while
 *    earlier ones do not; its size is its size at any moment since;
 *  - the directory holds every create, rename and unlink up to its last
 *    fsync and any prefix of those after (a journal commits them in
 *    order).
 *
 * Each such directory must open (never refused as damaged), and every
 * state must be at or past its last version acknowledged before the cut,
 * with exactly the bytes committed for the version it is at; then the
 * store must take another commit and keep it over a restart.  With
 * --sync none the same, except that only what a clean stop or a
 * compaction made durable must be there.
 *
 * Reproducible: KS_CRASHSIM_SEED=N (printed at the start and on failure)
 * gives the same scenario and the same choices.  KS_CRASHSIM_TRIALS sets
 * the random choices per point (default 6), KS_CRASHSIM_STARTS the cut
 * stores started again (default 16); KS_CRASHSIM_VERBOSE=1 shows
 * what recovery said of each cut.  The directories live in
 * /dev/shm when it exists (KS_CRASHSIM_DIR to choose): what is checked is
 * what a cut leaves, not the disk's speed.
 */
#include "harness.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "store.h"

#define NSTATES 7           /* state 0 is ballast: keeps compaction manual */
#define BALLAST (128 * 1024)
#define MAX_SIZE (256 * 1024)
#define MAXNAME 64
#define SECTOR 512
#define BLOCK 4096

static uint64_t seed;
static int trials_per_point = 6;
static int saved_stderr = -1;
static int quiet_stderr = -1;   /* where recovery's messages go meanwhile */

/* A crash while stderr is silenced (a sanitizer report, a lock-order
 * abort) must still say why: the signal puts stderr back and shows what
 * was written to it since it was silenced, then dies of the signal. */
static void show_quiet_stderr(int sig)
{
	char buf[4096];
	off_t size = quiet_stderr >= 0 ? lseek(quiet_stderr, 0, SEEK_END) : 0;
	off_t from = size > 65536 ? size - 65536 : 0;
	ssize_t n;

	if (saved_stderr >= 0)
		dup2(saved_stderr, 2);
	if (quiet_stderr >= 0) {
		lseek(quiet_stderr, from, SEEK_SET);
		while ((n = read(quiet_stderr, buf, sizeof(buf))) > 0)
			if (write(2, buf, (size_t)n) < 0)
				break;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- a seedable generator ------------------------------------------------ */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *g)
{
	/* xorshift64*: fast, and the same everywhere for a seed */
	g->s ^= g->s >> 12;
	g->s ^= g->s << 25;
	g->s ^= g->s >> 27;
	return g->s * 2685821657736338717ULL;
}

static uint64_t below(struct rng *g, uint64_t n)
{
	return n ? rnd(g) % n : 0;
}

static uint64_t mix(uint64_t a, uint64_t b)
{
	uint64_t x = a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL);

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return x;
}

/* ---- what was committed ----------------------------------------------- */

/* The page of state i at version v: a function of the seed, so that any
 * version found after a cut can be checked byte for byte.  Some pages
 * span several blocks, so that one record is written across blocks. */
static size_t page_for(int i, uint64_t v, unsigned char *buf)
{
	uint64_t h = mix(seed, (uint64_t)i << 32 | v);
	size_t len;
	int n;

	if (i == 0)
		len = v < 3 ? BALLAST >> (3 - v) : BALLAST;
	else if (h % 5 == 0)
		len = 2000 + (size_t)(h >> 8) % 9000;
	else
		len = 16 + (size_t)(h >> 8) % 400;
	n = snprintf((char *)buf, 64, "state %d version %llu;", i,
		     (unsigned long long)v);
	for (size_t k = (size_t)n; k < len; k++)
		buf[k] = (unsigned char)(mix(h, k / 8) >> (8 * (k % 8)));
	return len;
}

/* ---- the recorder -------------------------------------------------------- */

enum op_kind {
	OP_CREATE,     /* dir: name -> a new, empty inode */
	OP_RENAME,     /* dir */
	OP_UNLINK,     /* dir */
	OP_DIRSYNC,    /* fsync of the directory */
	OP_WRITE,      /* inode: bytes at off */
	OP_TRUNCATE,   /* inode: size = off */
	OP_SYNC,       /* inode: fdatasync or fsync */
};

struct op {
	enum op_kind kind;
	int ino;
	char name[MAXNAME];
	char to[MAXNAME];
	uint64_t off;
	size_t len;
	unsigned char *data;
};

struct nsent {
	char name[MAXNAME];
	int ino;
};

struct ns {
	struct nsent e[64];
	int n;
};

struct file0 {           /* an inode's content when recording began */
	unsigned char *p;
	size_t len;
};

/* Acknowledgements and durable points, by op count: a commit is
 * acknowledged at a cut at point c if it returned when at <= c calls had
 * been made. */
struct mark {
	size_t at;
	int state;
	uint64_t version;   /* 0: the state's create */
};

struct rec {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct op *ops;
	size_t nops, capops;
	struct file0 *init;     /* by inode */
	int ninit;
	int nino;
	struct ns now;          /* the namespace as the store sees it */
	struct ns start;        /* and when recording began */
	int fdino[4096];        /* fd -> inode + 1 */
	struct mark *acks;
	size_t nacks, capacks;
	size_t *durable;        /* points after a clean stop or compaction */
	size_t ndurable, capdurable;
	/* Holds the next writer of a log segment in its pwrite, to line
	 * committers up behind it for one group commit. */
	bool gate_armed, gate_hit, gate_open;
};

static struct rec R;

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	CHECK(p);
	return p;
}

/* R.mu held. */
static struct op *add_op(enum op_kind kind, int ino)
{
	struct op *o;

	if (R.nops == R.capops) {
		R.capops = R.capops ? R.capops * 2 : 1024;
		R.ops = xrealloc(R.ops, R.capops * sizeof(*R.ops));
	}
	o = &R.ops[R.nops++];
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->ino = ino;
	return o;
}

static int ns_find(const struct ns *ns, const char *name)
{
	for (int i = 0; i < ns->n; i++)
		if (strcmp(ns->e[i].name, name) == 0)
			return i;
	return -1;
}

static void ns_set(struct ns *ns, const char *name, int ino)
{
	int i = ns_find(ns, name);

	if (i < 0) {
		CHECK(ns->n < 64);
		CHECK(strlen(name) < MAXNAME);
		i = ns->n++;
		memcpy(ns->e[i].name, name, strlen(name) + 1);
	}
	ns->e[i].ino = ino;
}

static void ns_del(struct ns *ns, const char *name)
{
	int i = ns_find(ns, name);

	if (i >= 0)
		ns->e[i] = ns->e[--ns->n];
}

static int new_ino(void)
{
	if (R.nino >= R.ninit) {
		R.ninit = R.nino + 16;
		R.init = xrealloc(R.init, (size_t)R.ninit * sizeof(*R.init));
	}
	R.init[R.nino] = (struct file0){ NULL, 0 };
	return R.nino++;
}

static int fd_ino(int fd)
{
	return fd >= 0 && fd < 4096 ? R.fdino[fd] - 1 : -1;
}

static int rec_openat(void *ctx, int dirfd, const char *name, int flags,
		      mode_t mode)
{
	int fd = openat(dirfd, name, flags, mode), ino;

	(void)ctx;
	if (fd < 0 || dirfd == AT_FDCWD || fd >= 4096)
		return fd;
	pthread_mutex_lock(&R.mu);
	ino = ns_find(&R.now, name) >= 0 ?
	      R.now.e[ns_find(&R.now, name)].ino : -1;
	if (ino < 0 && (flags & O_CREAT)) {
		struct op *o;

		ino = new_ino();
		o = add_op(OP_CREATE, ino);
		snprintf(o->name, MAXNAME, "%s", name);
		ns_set(&R.now, name, ino);
	} else if (ino >= 0 && (flags & O_TRUNC)) {
		add_op(OP_TRUNCATE, ino)->off = 0;
	}
	R.fdino[fd] = ino + 1;
	pthread_mutex_unlock(&R.mu);
	return fd;
}

static int rec_close(void *ctx, int fd)
{
	(void)ctx;
	pthread_mutex_lock(&R.mu);
	if (fd >= 0 && fd < 4096)
		R.fdino[fd] = 0;
	pthread_mutex_unlock(&R.mu);
	return close(fd);
}

static bool is_segment(int ino)
{
	for (int i = 0; i < R.now.n; i++)
		if (R.now.e[i].ino == ino &&
		    strncmp(R.now.e[i].name, "log.", 4) == 0)
			return true;
	return false;
}

static ssize_t rec_pwrite(void *ctx, int fd, const void *buf, size_t len,
			  off_t off)
{
	ssize_t n;
	int ino;

	(void)ctx;
	pthread_mutex_lock(&R.mu);
	ino = fd_ino(fd);
	if (R.gate_armed && ino >= 0 && is_segment(ino)) {
		R.gate_armed = false;
		R.gate_hit = true;
		pthread_cond_broadcast(&R.cv);
		while (!R.gate_open)
			pthread_cond_wait(&R.cv, &R.mu);
	}
	n = pwrite(fd, buf, len, off);
	if (n > 0 && ino >= 0) {
		struct op *o = add_op(OP_WRITE, ino);

		o->off = (uint64_t)off;
		o->len = (size_t)n;
		o->data = malloc((size_t)n);
		CHECK(o->data);
		memcpy(o->data, buf, (size_t)n);
	}
	pthread_mutex_unlock(&R.mu);
	return n;
}

static int rec_sync(int fd, bool data_only)
{
	int ret = data_only ? fdatasync(fd) : fsync(fd), ino;
	struct stat sb;

	if (ret)
		return ret;
	pthread_mutex_lock(&R.mu);
	ino = fd_ino(fd);
	if (ino >= 0)
		add_op(OP_SYNC, ino);
	else if (fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode))
		add_op(OP_DIRSYNC, -1);
	pthread_mutex_unlock(&R.mu);
	return 0;
}

static int rec_fdatasync(void *ctx, int fd)
{
	(void)ctx;
	return rec_sync(fd, true);
}

static int rec_fsync(void *ctx, int fd)
{
	(void)ctx;
	return rec_sync(fd, false);
}

static int rec_ftruncate(void *ctx, int fd, off_t len)
{
	int ret = ftruncate(fd, len), ino;

	(void)ctx;
	if (ret)
		return ret;
	pthread_mutex_lock(&R.mu);
	ino = fd_ino(fd);
	if (ino >= 0)
		add_op(OP_TRUNCATE, ino)->off = (uint64_t)len;
	pthread_mutex_unlock(&R.mu);
	return 0;
}

static int rec_renameat(void *ctx, int dirfd, const char *from,
			const char *to)
{
	int ret = renameat(dirfd, from, dirfd, to), i;

	(void)ctx;
	if (ret)
		return ret;
	pthread_mutex_lock(&R.mu);
	i = ns_find(&R.now, from);
	if (i >= 0) {
		struct op *o = add_op(OP_RENAME, R.now.e[i].ino);
		int ino = R.now.e[i].ino;

		snprintf(o->name, MAXNAME, "%s", from);
		snprintf(o->to, MAXNAME, "%s", to);
		ns_del(&R.now, from);
		ns_set(&R.now, to, ino);
	}
	pthread_mutex_unlock(&R.mu);
	return 0;
}

static int rec_unlinkat(void *ctx, int dirfd, const char *name)
{
	int ret = unlinkat(dirfd, name, 0);

	(void)ctx;
	if (ret)
		return ret;
	pthread_mutex_lock(&R.mu);
	if (ns_find(&R.now, name) >= 0) {
		snprintf(add_op(OP_UNLINK, -1)->name, MAXNAME, "%s", name);
		ns_del(&R.now, name);
	}
	pthread_mutex_unlock(&R.mu);
	return 0;
}

static const struct ks_log_io rec_io = {
	.openat = rec_openat,
	.close = rec_close,
	.pwrite = rec_pwrite,
	.fdatasync = rec_fdatasync,
	.fsync = rec_fsync,
	.ftruncate = rec_ftruncate,
	.renameat = rec_renameat,
	.unlinkat = rec_unlinkat,
};

static void rec_free(void)
{
	for (size_t i = 0; i < R.nops; i++)
		free(R.ops[i].data);
	for (int i = 0; i < R.nino; i++)
		free(R.init[i].p);
	free(R.ops);
	free(R.init);
	free(R.acks);
	free(R.durable);
	memset(&R, 0, sizeof(R));
}

/* Starts a record over DIR as it is now: its files are what the disk
 * holds durably. */
static void rec_begin(const char *dir)
{
	char path[4608];
	int dfd;

	rec_free();
	pthread_mutex_init(&R.mu, NULL);
	pthread_cond_init(&R.cv, NULL);
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);
	{
		DIR *d = fdopendir(dfd);
		struct dirent *de;

		CHECK(d);
		while ((de = readdir(d))) {
			struct stat sb;
			int ino;

			if (de->d_name[0] == '.' ||
			    strcmp(de->d_name, "lock") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			CHECK(stat(path, &sb) == 0);
			ino = new_ino();
			R.init[ino].len = (size_t)sb.st_size;
			R.init[ino].p = malloc((size_t)sb.st_size + 1);
			CHECK(R.init[ino].p);
			{
				int fd = open(path, O_RDONLY);

				CHECK(fd >= 0);
				CHECK(pread(fd, R.init[ino].p, R.init[ino].len,
					    0) == (ssize_t)R.init[ino].len);
				close(fd);
			}
			ns_set(&R.now, de->d_name, ino);
		}
		closedir(d);
	}
	R.start = R.now;
}

static void mark_ack(int state, uint64_t version)
{
	pthread_mutex_lock(&R.mu);
	if (R.nacks == R.capacks) {
		R.capacks = R.capacks ? R.capacks * 2 : 256;
		R.acks = xrealloc(R.acks, R.capacks * sizeof(*R.acks));
	}
	R.acks[R.nacks++] = (struct mark){ R.nops, state, version };
	pthread_mutex_unlock(&R.mu);
}

/* What was in the directory when recording began is on disk: owed from
 * the first point on. */
static void mark_present(int state, uint64_t version)
{
	mark_ack(state, version);
	R.acks[R.nacks - 1].at = 0;
}

static void mark_durable(void)
{
	pthread_mutex_lock(&R.mu);
	if (R.ndurable == R.capdurable) {
		R.capdurable = R.capdurable ? R.capdurable * 2 : 16;
		R.durable = xrealloc(R.durable,
				     R.capdurable * sizeof(*R.durable));
	}
	R.durable[R.ndurable++] = R.nops;
	pthread_mutex_unlock(&R.mu);
}

/* ---- the scenario -------------------------------------------------------- */

struct sim {
	char *dir;
	enum ks_sync sync;
	struct st s;
	struct ks_state *st[NSTATES];
	uint64_t cur[NSTATES];       /* last committed version */
	bool created[NSTATES];
	int commits, groups, compactions;
};

static void sim_open(struct sim *m)
{
	struct ks_engine_config cfg = { .max_size = MAX_SIZE,
					.max_states = 1024,
					.max_txns = 16 };

	memset(&m->s, 0, sizeof(m->s));
	CHECK_ERR(ks_log_open(m->dir, m->sync, &m->s.store, m->s.msg,
			      sizeof(m->s.msg)), 0);
	ks_log_set_io(m->s.store, &rec_io);
	CHECK_ERR(ks_engine_new(&cfg, m->s.store, &m->s.eng), 0);
	if (ks_log_recover(m->s.store, m->s.eng, m->s.msg,
			   sizeof(m->s.msg))) {
		fprintf(stderr, "FAIL: recovery: %s\n", m->s.msg);
		exit(1);
	}
	for (int i = 0; i < NSTATES; i++) {
		char name[16];

		snprintf(name, sizeof(name), "s%d", i);
		m->st[i] = m->created[i] ? st_find(&m->s, name) : NULL;
		CHECK(!m->created[i] || m->st[i]);
	}
}

static void sim_close(struct sim *m)
{
	for (int i = 0; i < NSTATES; i++)
		if (m->st[i])
			ks_state_unref(m->st[i]);
	memset(m->st, 0, sizeof(m->st));
	st_close(&m->s);
	mark_durable();
}

static void sim_create(struct sim *m, int i)
{
	char name[16];

	snprintf(name, sizeof(name), "s%d", i);
	m->st[i] = st_create(&m->s, name);
	m->created[i] = true;
	mark_ack(i, 0);
}

static void commit_one(struct sim *m, int i)
{
	static unsigned char buf[MAX_SIZE];
	uint64_t v = m->cur[i] + 1, got;
	size_t len = page_for(i, v, buf);

	CHECK_ERR(ks_state_commit_bytes(m->st[i], buf, len, &got), 0);
	CHECK_EQ(got, v);
	m->cur[i] = v;
	m->commits++;
	mark_ack(i, v);
}

struct worker {
	struct sim *m;
	int i;
	uint64_t v;
	unsigned char buf[12000];
	pthread_t t;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	size_t len = page_for(w->i, w->v, w->buf);
	uint64_t got;

	CHECK_ERR(ks_state_commit_bytes(w->m->st[w->i], w->buf, len, &got),
		  0);
	CHECK_EQ(got, w->v);
	mark_ack(w->i, w->v);
	return NULL;
}

/* One commit on plug (held in its write), then the commits of k other
 * states queued behind it, written and synced as one group. */
static void group(struct sim *m, int plug, const int *others, int k)
{
	struct worker *w = calloc((size_t)k + 1, sizeof(*w));

	CHECK(w);
	pthread_mutex_lock(&R.mu);
	R.gate_armed = true;
	R.gate_hit = R.gate_open = false;
	pthread_mutex_unlock(&R.mu);
	for (int j = 0; j <= k; j++) {
		int i = j == 0 ? plug : others[j - 1];

		w[j].m = m;
		w[j].i = i;
		w[j].v = m->cur[i] + 1;
		CHECK(pthread_create(&w[j].t, NULL, work, &w[j]) == 0);
		if (j == 0) {
			pthread_mutex_lock(&R.mu);
			while (!R.gate_hit)
				pthread_cond_wait(&R.cv, &R.mu);
			pthread_mutex_unlock(&R.mu);
		} else {
			while (ks_log_queued(m->s.store) < (size_t)j)
				sleep_ms(1);
		}
	}
	pthread_mutex_lock(&R.mu);
	R.gate_open = true;
	pthread_cond_broadcast(&R.cv);
	pthread_mutex_unlock(&R.mu);
	for (int j = 0; j <= k; j++) {
		CHECK(pthread_join(w[j].t, NULL) == 0);
		m->cur[w[j].i] = w[j].v;
		m->commits++;
	}
	m->groups++;
	free(w);
}

static void run_scenario(struct sim *m, struct rng *g, int rounds)
{
	sim_open(m);
	sim_create(m, 0);
	/* The ballast grows in steps: the log's compaction mark is checked
	 * before a commit's page counts as live, and one commit of it all
	 * would start a compaction of its own. */
	for (int k = 0; k < 3; k++)
		commit_one(m, 0);
	for (int i = 1; i < 4; i++)
		sim_create(m, i);
	for (int r = 0; r < rounds; r++) {
		uint64_t what = below(g, 100);

		if (r == rounds / 3 || r == 2 * rounds / 3) {
			CHECK_ERR(ks_log_compact(m->s.store), 0);
			m->compactions++;
			mark_durable();
		} else if (r == rounds / 2) {
			sim_close(m);
			sim_open(m);
		} else if (what < 8) {
			for (int i = 1; i < NSTATES; i++)
				if (!m->created[i]) {
					sim_create(m, i);
					break;
				}
		} else if (what < 40) {
			commit_one(m, 1 + (int)below(g, 3));
		} else {
			int live[NSTATES], n = 0, k;

			for (int i = 1; i < NSTATES; i++)
				if (m->created[i])
					live[n++] = i;
			/* shuffle; the first is the plug */
			for (int i = n - 1; i > 0; i--) {
				int j = (int)below(g, (uint64_t)i + 1), t;

				t = live[i];
				live[i] = live[j];
				live[j] = t;
			}
			k = 2 + (int)below(g, (uint64_t)n - 2);
			group(m, live[0], live + 1, k);
		}
	}
	/* No clean stop: the last cuts fall on a running store. */
	for (int i = 0; i < NSTATES; i++)
		if (m->st[i])
			ks_state_unref(m->st[i]);
	memset(m->st, 0, sizeof(m->st));
	ks_log_set_io(m->s.store, NULL);
}

/* ---- building what a cut leaves ----------------------------------------- */

static void fail(const char *fmt, ...)
{
	va_list ap;
	FILE *f = saved_stderr >= 0 ? fdopen(dup(saved_stderr), "w") : stderr;

	va_start(ap, fmt);
	fprintf(f, "FAIL: ");
	vfprintf(f, fmt, ap);
	va_end(ap);
	fprintf(f, "\n(rerun with KS_CRASHSIM_SEED=%llu)\n",
		(unsigned long long)seed);
	fflush(f);
	exit(1);
}

/* What one cut left: how a file's pending writes landed, for the report. */
struct cut_note {
	char text[512];
	size_t len;
};

static void note(struct cut_note *n, const char *fmt, ...)
{
	va_list ap;

	if (n->len >= sizeof(n->text) - 1)
		return;
	va_start(ap, fmt);
	n->len += (size_t)vsnprintf(n->text + n->len, sizeof(n->text) - n->len,
				    fmt, ap);
	va_end(ap);
	if (n->len > sizeof(n->text) - 1)
		n->len = sizeof(n->text) - 1;
}

/* mode: 0 random, 1 nothing unsynced lands, 2 everything lands. */
static void build_file(int ino, size_t c, struct rng *g, int mode,
		       const char *path, const char *name,
		       struct cut_note *nt)
{
	size_t last_sync = 0, m = 0, maxlen, size, final_size;
	size_t *pend = NULL, *sizes, npend = 0;
	unsigned char *out;
	unsigned *js;
	int fd;

	for (size_t i = 0; i < c; i++)
		if (R.ops[i].ino == ino && R.ops[i].kind == OP_SYNC)
			last_sync = i + 1;
	size = R.init[ino].len;
	/* the durable image, first as a size */
	for (size_t i = 0; i < last_sync; i++) {
		const struct op *o = &R.ops[i];

		if (o->ino != ino)
			continue;
		if (o->kind == OP_WRITE && o->off + o->len > size)
			size = o->off + o->len;
		else if (o->kind == OP_TRUNCATE)
			size = o->off;
	}
	for (size_t i = last_sync; i < c; i++)
		if (R.ops[i].ino == ino && (R.ops[i].kind == OP_WRITE ||
					    R.ops[i].kind == OP_TRUNCATE))
			npend++;
	pend = malloc((npend + 1) * sizeof(*pend));
	sizes = malloc((npend + 1) * sizeof(*sizes));
	CHECK(pend && sizes);
	sizes[0] = size;
	/* every byte this file ever held up to the cut fits in maxlen */
	maxlen = R.init[ino].len;
	for (size_t i = 0; i < c; i++)
		if (R.ops[i].ino == ino && R.ops[i].kind == OP_WRITE &&
		    R.ops[i].off + R.ops[i].len > maxlen)
			maxlen = R.ops[i].off + R.ops[i].len;
	for (size_t i = last_sync; i < c; i++) {
		const struct op *o = &R.ops[i];

		if (o->ino != ino ||
		    (o->kind != OP_WRITE && o->kind != OP_TRUNCATE))
			continue;
		pend[++m] = i;
		if (o->kind == OP_WRITE)
			sizes[m] = o->off + o->len > sizes[m - 1] ?
				   o->off + o->len : sizes[m - 1];
		else
			sizes[m] = o->off;
		if (sizes[m] > maxlen)
			maxlen = sizes[m];
	}
	out = calloc(maxlen + 1, 1);
	CHECK(out);
	if (R.init[ino].len)
		memcpy(out, R.init[ino].p, R.init[ino].len);
	/* the durable image */
	{
		size_t cur = R.init[ino].len;

		for (size_t i = 0; i < last_sync; i++) {
			const struct op *o = &R.ops[i];

			if (o->ino != ino)
				continue;
			if (o->kind == OP_WRITE) {
				memcpy(out + o->off, o->data, o->len);
				if (o->off + o->len > cur)
					cur = o->off + o->len;
			} else if (o->kind == OP_TRUNCATE) {
				if (o->off < cur)
					memset(out + o->off, 0, cur - o->off);
				cur = o->off;
			}
		}
	}
	/* Each sector lands as of some pending op: js[s] ops applied. */
	{
		size_t nsec = maxlen / SECTOR + 1;

		js = calloc(nsec, sizeof(*js));
		CHECK(js);
		for (size_t b = 0; b < nsec; b += BLOCK / SECTOR) {
			uint64_t r = below(g, 100);
			unsigned whole = r < 40 ? 0 : r < 75 ? (unsigned)m :
					 (unsigned)below(g, m + 1);

			for (size_t s = b; s < nsec && s < b + BLOCK / SECTOR;
			     s++) {
				js[s] = mode == 1 ? 0 : mode == 2 ? (unsigned)m :
					whole;
				/* torn within the block */
				if (mode == 0 && r >= 90)
					js[s] = (unsigned)below(g, m + 1);
			}
		}
		for (size_t j = 1; j <= m; j++) {
			const struct op *o = &R.ops[pend[j]];

			if (o->kind == OP_WRITE) {
				for (size_t k = 0; k < o->len; k++)
					if (js[(o->off + k) / SECTOR] >= j)
						out[o->off + k] = o->data[k];
			} else {
				for (size_t k = o->off; k < maxlen; k++)
					if (js[k / SECTOR] >= j)
						out[k] = 0;
			}
		}
	}
	{
		uint64_t r = below(g, 100);
		size_t k = mode == 1 ? 0 : mode == 2 ? m :
			   r < 50 ? m : r < 70 ? 0 : (size_t)below(g, m + 1);

		final_size = sizes[k];
		if (m)
			note(nt, " %s:%zu pending, size %zu of %zu..%zu;",
			     name, m, final_size, sizes[0], sizes[m]);
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK(write(fd, out, final_size) == (ssize_t)final_size);
	close(fd);
	free(out);
	free(js);
	free(pend);
	free(sizes);
}

/* Builds in DIR what a power cut after c calls could leave. */
static void build_cut(size_t c, struct rng *g, int mode, const char *dir,
		      struct cut_note *nt)
{
	struct ns ns = R.start;
	size_t last_dsync = 0, ndir = 0, keep;
	char path[4300];

	for (size_t i = 0; i < c; i++)
		if (R.ops[i].kind == OP_DIRSYNC)
			last_dsync = i + 1;
	for (size_t i = last_dsync; i < c; i++)
		if (R.ops[i].kind <= OP_UNLINK)
			ndir++;
	keep = mode == 1 ? 0 : mode == 2 ? ndir : (size_t)below(g, ndir + 1);
	if (ndir)
		note(nt, " dir: %zu of %zu unsynced ops;", keep, ndir);
	for (size_t i = 0; i < c; i++) {
		const struct op *o = &R.ops[i];

		if (o->kind > OP_UNLINK)
			continue;
		if (i >= last_dsync && keep-- == 0)
			break;
		if (o->kind == OP_CREATE) {
			ns_set(&ns, o->name, o->ino);
		} else if (o->kind == OP_RENAME) {
			int k = ns_find(&ns, o->name);

			if (k >= 0) {
				int ino = ns.e[k].ino;

				ns_del(&ns, o->name);
				ns_set(&ns, o->to, ino);
			}
		} else {
			ns_del(&ns, o->name);
		}
	}
	st_rmrf(dir);
	CHECK(mkdir(dir, 0700) == 0);
	for (int i = 0; i < ns.n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, ns.e[i].name);
		build_file(ns.e[i].ino, c, g, mode, path, ns.e[i].name, nt);
	}
}

/* ---- checking one cut ---------------------------------------------------- */

struct tally {
	long points, cuts, reopened;
};

static void check_cut(struct sim *m, size_t c, const char *dir,
		      const struct cut_note *nt, struct rng *g)
{
	static unsigned char want[MAX_SIZE];
	int64_t need[NSTATES];
	uint64_t maxv[NSTATES] = { 0 };
	size_t floor = 0;
	struct st s;
	int err;

	if (m->sync == KS_SYNC_NONE) {
		/* only what a clean stop or compaction synced is owed */
		for (size_t i = 0; i < R.ndurable; i++)
			if (R.durable[i] <= c)
				floor = R.durable[i];
	} else {
		floor = c;
	}
	for (int i = 0; i < NSTATES; i++)
		need[i] = -1;
	for (size_t k = 0; k < R.nacks; k++) {
		const struct mark *a = &R.acks[k];

		if (a->version > maxv[a->state])
			maxv[a->state] = a->version;
		if (a->at <= floor && (int64_t)a->version > need[a->state])
			need[a->state] = (int64_t)a->version;
	}
	err = st_open_cfg(&s, dir, KS_SYNC_FULL, MAX_SIZE);
	if (err)
		fail("cut after call %zu of %zu: refused: %s: %s\n"
		     "  what landed:%s\n  the directory: %s", c, R.nops,
		     strerror(err), s.msg, nt->text, dir);
	for (int i = 0; i < NSTATES; i++) {
		char name[16];
		struct ks_state *st;
		struct ks_page *p;
		size_t len;

		snprintf(name, sizeof(name), "s%d", i);
		st = st_find(&s, name);
		if (!st) {
			if (need[i] >= 0)
				fail("cut after call %zu: %s, acknowledged "
				     "(version %lld), is gone\n  what landed:%s",
				     c, name, (long long)need[i], nt->text);
			continue;
		}
		p = ks_state_current(st);
		if ((int64_t)p->version < need[i] || p->version > maxv[i])
			fail("cut after call %zu: %s at version %llu, "
			     "acknowledged %lld, committed up to %llu\n"
			     "  what landed:%s", c, name,
			     (unsigned long long)p->version,
			     (long long)need[i], (unsigned long long)maxv[i],
			     nt->text);
		len = p->version ? page_for(i, p->version, want) : 0;
		if (p->len != len || memcmp(p->bytes, want, len))
			fail("cut after call %zu: %s version %llu has other "
			     "bytes than committed\n  what landed:%s", c, name,
			     (unsigned long long)p->version, nt->text);
		ks_page_unref(p);
		/* Now and then: the store goes on from here. */
		if (i == 1 && below(g, 4) == 0) {
			uint64_t v = ks_state_version(st) + 1, got;
			unsigned char b[32];
			int n = snprintf((char *)b, sizeof(b), "after %llu",
					 (unsigned long long)v);

			CHECK_ERR(ks_state_commit_bytes(st, b, (size_t)n, &got),
				  0);
			ks_state_unref(st);
			st_close(&s);
			err = st_open_cfg(&s, dir, KS_SYNC_FULL, MAX_SIZE);
			if (err)
				fail("cut after call %zu: a commit after "
				     "recovering, then a restart: refused: %s"
				     "\n  what landed:%s", c, s.msg, nt->text);
			st_expect(&s, name, v, b, (size_t)n);
			continue;
		}
		ks_state_unref(st);
	}
	st_close(&s);
}

static const char *op_name(const struct op *o)
{
	static const char *names[] = { "create", "rename", "unlink",
				       "dir fsync", "write", "truncate",
				       "sync" };

	return names[o->kind];
}

/* Cuts every point of what R holds, trials times each (the first two:
 * nothing unsynced landed, everything did). */
static void cut_all(struct sim *m, struct rng *g, const char *cut,
		    struct tally *t)
{
	for (size_t c = 0; c <= R.nops; c++) {
		t->points++;
		for (int k = 0; k < trials_per_point; k++) {
			struct cut_note nt = { "", 0 };

			if (c < R.nops)
				note(&nt, " [next call: %s]",
				     op_name(&R.ops[c]));
			build_cut(c, g, k < 2 ? k + 1 : 0, cut, &nt);
			check_cut(m, c, cut, &nt, g);
			t->cuts++;
		}
	}
}

/* A directory a cut left, started again under the recorder (recovery
 * cutting a torn end, dropping leftovers, compacting), committed to, and
 * cut again at every point: what recovery found is owed from the start. */
static void second_start(enum ks_sync sync, const char *dir, const char *cut,
			 struct rng *g, struct tally *t)
{
	struct sim m = { .sync = sync, .dir = (char *)dir };
	int live[NSTATES], n = 0;

	rec_begin(dir);
	sim_open(&m);
	for (int i = 0; i < NSTATES; i++) {
		char name[16];

		snprintf(name, sizeof(name), "s%d", i);
		m.st[i] = st_find(&m.s, name);
		if (m.st[i]) {
			m.created[i] = true;
			m.cur[i] = ks_state_version(m.st[i]);
			mark_present(i, m.cur[i]);
		} else if (i >= 1 && i <= 3) {
			sim_create(&m, i);
		}
		if (i && m.created[i])
			live[n++] = i;
	}
	commit_one(&m, live[0]);
	group(&m, live[1], live + 2, n - 2);
	if (below(g, 2)) {
		CHECK_ERR(ks_log_compact(m.s.store), 0);
		mark_durable();
	}
	commit_one(&m, live[n - 1]);
	for (int i = 0; i < NSTATES; i++)
		if (m.st[i])
			ks_state_unref(m.st[i]);
	ks_log_set_io(m.s.store, NULL);
	cut_all(&m, g, cut, t);
	ks_log_close(m.s.store);
	ks_engine_free(m.s.eng);
}

static void simulate(enum ks_sync sync, const char *base, int rounds,
		     int starts)
{
	struct sim m = { .sync = sync };
	struct rng g = { mix(seed, sync) | 1 };
	char dir[4200], cut[4200];
	struct tally t = { 0 };
	double t0 = st_now();

	snprintf(dir, sizeof(dir), "%s/run", base);
	snprintf(cut, sizeof(cut), "%s/cut", base);
	CHECK(mkdir(dir, 0700) == 0);
	m.dir = dir;
	rec_begin(dir);
	run_scenario(&m, &g, rounds);
	printf("sync %s: %d commits (%d group commits), %d compactions, a "
	       "restart: %zu calls recorded\n",
	       sync == KS_SYNC_FULL ? "full" : "none", m.commits, m.groups,
	       m.compactions, R.nops);
	fflush(stdout);
	cut_all(&m, &g, cut, &t);
	printf("sync %s: %ld cut points, %ld directories, all recovered with "
	       "every acknowledged commit (%.1f s)\n",
	       sync == KS_SYNC_FULL ? "full" : "none", t.points, t.cuts,
	       st_now() - t0);
	fflush(stdout);
	/* Cuts at random points, each started again and cut again. */
	{
		char again[4200];
		struct tally t2 = { 0 };
		double t1 = st_now();

		snprintf(again, sizeof(again), "%s/again", base);
		for (int k = 0; k < starts; k++) {
			struct cut_note nt = { "", 0 };
			size_t c = (size_t)below(&g, R.nops + 1);
			struct rec first = R;

			build_cut(c, &g, 0, again, &nt);
			/* the first record stays for the next round */
			memset(&R, 0, sizeof(R));
			second_start(sync, again, cut, &g, &t2);
			rec_free();
			R = first;
			pthread_mutex_init(&R.mu, NULL);
			pthread_cond_init(&R.cv, NULL);
		}
		printf("sync %s: %d cut stores started again: %ld cut points, "
		       "%ld directories, all recovered (%.1f s)\n",
		       sync == KS_SYNC_FULL ? "full" : "none", starts,
		       t2.points, t2.cuts, st_now() - t1);
		fflush(stdout);
		st_rmrf(again);
	}
	ks_log_close(m.s.store);
	ks_engine_free(m.s.eng);
	st_rmrf(dir);
	st_rmrf(cut);
}

int main(void)
{
	const char *env = getenv("KS_CRASHSIM_SEED");
	const char *base = getenv("KS_CRASHSIM_DIR");
	char root[4200];
	int null, starts = 16;

	seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^
	       (uint64_t)getpid() << 16;
	env = getenv("KS_CRASHSIM_STARTS");
	if (env && atoi(env) > 0)
		starts = atoi(env);
	env = getenv("KS_CRASHSIM_TRIALS");
	if (env && atoi(env) > 0)
		trials_per_point = atoi(env);
	if (!base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/var/tmp";
	snprintf(root, sizeof(root), "%s/ks-crashsim-XXXXXX", base);
	CHECK(mkdtemp(root));
	printf("seed %llu (KS_CRASHSIM_SEED), %d cuts per point, in %s\n",
	       (unsigned long long)seed, trials_per_point, root);
	fflush(stdout);
	/* Recovery says on stderr what torn end it dropped, every cut
	 * (KS_CRASHSIM_VERBOSE=1 to see it). */
	saved_stderr = dup(2);
	if (!getenv("KS_CRASHSIM_VERBOSE")) {
		char quiet[] = "/tmp/ks-crashsim-stderr-XXXXXX";

		null = mkstemp(quiet);
		CHECK(null >= 0);
		unlink(quiet);
		quiet_stderr = dup(null);
		dup2(null, 2);
		close(null);
		signal(SIGABRT, show_quiet_stderr);
		signal(SIGSEGV, show_quiet_stderr);
		signal(SIGBUS, show_quiet_stderr);
	}
	{
		char a[4300], b[4300];

		snprintf(a, sizeof(a), "%s/full", root);
		snprintf(b, sizeof(b), "%s/none", root);
		CHECK(mkdir(a, 0700) == 0 && mkdir(b, 0700) == 0);
		simulate(KS_SYNC_FULL, a, 40, starts);
		simulate(KS_SYNC_NONE, b, 40, starts);
	}
	dup2(saved_stderr, 2);
	if (quiet_stderr >= 0)
		close(quiet_stderr);
	quiet_stderr = -1;
	st_rmrf(root);
	rec_free();
	printf("1 passed, 0 failed\n");
	return 0;
}
