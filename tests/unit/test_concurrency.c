/*
 * Many threads at once: no lost update, no skipped or repeated version, a
 * serializable history, whole pages for readers, and the store sees the
 * commits in version order.
 */
#include "harness.h"
#include "fake_store.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define NTHREADS 8

/* ---- running threads ---------------------------------------------------- */

struct worker {
	pthread_t thread;
	int id;
	void *shared;
	pthread_barrier_t *start;
	/* results */
	uint64_t commits;
	uint64_t conflicts;
	uint64_t failures;     /* store errors */
	int errors;            /* anything unexpected */
	unsigned rounds;
};

static void run_workers(struct worker *w, int n, void *shared,
			void *(*fn)(void *))
{
	pthread_barrier_t start;

	pthread_barrier_init(&start, NULL, (unsigned)n);
	for (int i = 0; i < n; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].id = i;
		w[i].shared = shared;
		w[i].start = &start;
		if (pthread_create(&w[i].thread, NULL, fn, &w[i]) != 0) {
			perror("pthread_create");
			exit(EXIT_FAILURE);
		}
	}
	for (int i = 0; i < n; i++)
		pthread_join(w[i].thread, NULL);
	pthread_barrier_destroy(&start);
}

static uint64_t parse_u64(const char *buf, size_t len)
{
	uint64_t n = 0;

	for (size_t i = 0; i < len && buf[i] >= '0' && buf[i] <= '9'; i++)
		n = n * 10 + (uint64_t)(buf[i] - '0');
	return n;
}

/* ---- the listener: every version it is told about ----------------------- */

static struct {
	pthread_mutex_t lock;
	struct ks_state *st;     /* only this state's calls are kept */
	uint64_t *versions;
	size_t n, cap;
	uint64_t highest;
	size_t out_of_order;     /* calls with a version below an earlier one */
} heard = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void hear(void *arg, struct ks_state *st, uint64_t version)
{
	(void)arg;
	pthread_mutex_lock(&heard.lock);
	if (st == heard.st) {
		if (heard.n < heard.cap)
			heard.versions[heard.n] = version;
		heard.n++;
		if (version < heard.highest)
			heard.out_of_order++;
		else
			heard.highest = version;
	}
	pthread_mutex_unlock(&heard.lock);
}

static void hear_start(struct ks_state *st, size_t cap)
{
	heard.st = st;
	heard.cap = cap + 64;
	heard.versions = calloc(heard.cap, sizeof(uint64_t));
	heard.n = 0;
	heard.highest = 0;
	heard.out_of_order = 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Is the multiset of versions heard exactly 1..n? */
static void check_heard_exactly(uint64_t n)
{
	size_t bad = 0;

	KT_EQ(heard.n, n);
	if (heard.n > heard.cap)
		return;
	qsort(heard.versions, heard.n, sizeof(uint64_t), cmp_u64);
	for (size_t i = 0; i < heard.n; i++)
		if (heard.versions[i] != i + 1) {
			if (bad++ < 5)
				printf("   version %zu heard as %" PRIu64 "\n",
				       i + 1, heard.versions[i]);
		}
	KT_EQ(bad, 0);
	printf("   listener: %zu calls, %zu delivered after a newer "
	       "version\n", heard.n, heard.out_of_order);
}

static void hear_stop(void)
{
	heard.st = NULL;
	free(heard.versions);
	heard.versions = NULL;
}

/* ---- counter: read-modify-write increments ------------------------------ */

#define NINCR 1000

struct counter {
	struct ks_state *st;
	int incr;
	bool retry_store_errors;
};

/* One increment in a CHECKED transaction; *t may carry over the one left by
 * the previous successful commit.  0, EAGAIN or a store error. */
static int increment(struct worker *w, struct ks_state *st,
		     struct ks_txn **t, const char *name)
{
	char buf[32];
	uint64_t n, v = 0, base;
	size_t len;
	int err;

	if (!*t) {
		err = ks_txn_begin(st, KS_TXN_CHECKED, false, name, t);
		if (err) {
			w->errors++;
			return err;
		}
	}
	base = ks_txn_base(*t);
	len = ks_txn_read(*t, buf, sizeof(buf) - 1, 0);
	n = parse_u64(buf, len);
	if (n != base)              /* the counter is its own version */
		w->errors++;
	len = (size_t)snprintf(buf, sizeof(buf), "%" PRIu64, n + 1);
	if (ks_txn_truncate(*t, 0) || ks_txn_write(*t, buf, len, 0))
		w->errors++;
	/* Widen the window between read and commit, so that other threads
	 * commit in it even on a machine with few cores. */
	if ((++w->rounds & 1) == 0)
		sched_yield();
	err = name ? ks_txn_commit_named(st, name, &v) : ks_txn_commit(*t, &v);
	if (!err && v != n + 1)
		w->errors++;
	return err;
}

static void *counter_worker(void *arg)
{
	struct worker *w = arg;
	struct counter *c = w->shared;
	struct ks_txn *t = NULL;
	char name[32];
	/* Even threads use named transactions (files), odd ones anonymous
	 * ones that go on after each commit (data opened read-write). */
	bool named = w->id % 2 == 0;

	snprintf(name, sizeof(name), "inc.%d", w->id);
	pthread_barrier_wait(w->start);
	for (int i = 0; i < c->incr;) {
		int err = increment(w, c->st, &t, named ? name : NULL);

		if (err == 0) {
			i++;
			w->commits++;
			if (named) {
				ks_txn_unref(t);
				t = NULL;
			}
			continue;
		}
		if (err == EAGAIN) {
			w->conflicts++;
		} else if (err == EIO && c->retry_store_errors) {
			w->failures++;
		} else {
			w->errors++;
			break;
		}
		/* Abort and start over from the latest page. */
		if (named)
			ks_txn_unlink(c->st, name);
		ks_txn_unref(t);
		t = NULL;
	}
	if (t)
		ks_txn_unref(t);
	return NULL;
}

static void test_counter(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "counter");
	struct counter c = { .st = st, .incr = NINCR };
	struct worker w[NTHREADS];
	struct ks_engine_stats stats;
	uint64_t commits = 0, conflicts = 0, total = NTHREADS * NINCR;
	char buf[64];
	int errors = 0;

	hear_start(st, total);
	ks_engine_set_listener(eng, hear, NULL);
	run_workers(w, NTHREADS, &c, counter_worker);
	ks_engine_set_listener(eng, NULL, NULL);
	for (int i = 0; i < NTHREADS; i++) {
		commits += w[i].commits;
		conflicts += w[i].conflicts;
		errors += w[i].errors;
	}
	printf("   %d threads x %d increments: %" PRIu64 " conflicts\n",
	       NTHREADS, NINCR, conflicts);
	KT_EQ(errors, 0);
	KT_EQ(commits, total);
	KT_EQ(kt_read_current(st, buf, sizeof(buf), NULL), total);
	KT_EQ(parse_u64(buf, strlen(buf)), total);
	KT_EQ(ks_state_version(st), total);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.commits, total);
	KT_EQ(stats.conflicts, conflicts);
	KT_EQ(stats.txns, 0);
	check_heard_exactly(total);
	hear_stop();
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* The same with a store that fails one append in 7: failed commits change
 * nothing, and the store gets every commit once, in version order. */
static void test_counter_store(void)
{
	struct fake_store fs;
	struct ks_engine *eng;
	struct ks_state *st;
	struct counter c = { .incr = 300, .retry_store_errors = true };
	struct worker w[NTHREADS];
	uint64_t commits = 0, failures = 0, total = NTHREADS * 300;
	size_t bad = 0, ncommits = 0;
	int errors = 0;

	fake_store_init(&fs);
	eng = kt_engine(4096, 16, 64, &fs.base);
	st = kt_state(eng, "counter");
	c.st = st;
	fake_store_fail_every(&fs, EIO, 7);
	hear_start(st, total);
	ks_engine_set_listener(eng, hear, NULL);
	run_workers(w, NTHREADS, &c, counter_worker);
	ks_engine_set_listener(eng, NULL, NULL);
	fake_store_fail_every(&fs, 0, 0);
	for (int i = 0; i < NTHREADS; i++) {
		commits += w[i].commits;
		failures += w[i].failures;
		errors += w[i].errors;
	}
	printf("   %" PRIu64 " commits failed in the store\n", failures);
	KT_EQ(errors, 0);
	KT_EQ(commits, total);
	KT_CHECK(failures > 0);
	KT_EQ(failures, fs.failed);
	KT_EQ(ks_state_version(st), total);
	for (size_t i = 0; i < fs.nrecs; i++) {
		const struct ks_rec *r = &fs.recs[i].rec;
		char want[32];
		int n;

		if (r->type != KS_REC_COMMIT)
			continue;
		ncommits++;
		n = snprintf(want, sizeof(want), "%zu", ncommits);
		if (r->version != ncommits || r->len != (size_t)n ||
		    memcmp(r->bytes, want, r->len) != 0 ||
		    r->state_id != ks_state_id(st))
			bad++;
	}
	KT_EQ(ncommits, total);
	KT_EQ(bad, 0);
	check_heard_exactly(total);
	hear_stop();
	ks_state_unref(st);
	ks_engine_free(eng);
	fake_store_destroy(&fs);
}

/* ---- serializability ---------------------------------------------------- */

#define SER_TXNS 400

struct ser_entry {
	uint64_t version;        /* from the commit */
	uint64_t base;           /* the version read */
	bool wrote;
	int writer;
	int seq;
	char read[48];           /* the page as the transaction read it */
	char wrote_page[48];
};

struct ser {
	struct ks_state *st;
	struct ser_entry *log[NTHREADS];
	int nlog[NTHREADS];
};

static void *ser_worker(void *arg)
{
	struct worker *w = arg;
	struct ser *s = w->shared;
	unsigned rnd = (unsigned)w->id * 2654435761u + 1;

	pthread_barrier_wait(w->start);
	for (int seq = 0; seq < SER_TXNS;) {
		struct ser_entry e = { .writer = w->id, .seq = seq };
		struct ks_txn *t;
		size_t len;
		int err;

		rnd = rnd * 1103515245u + 12345u;
		e.wrote = (rnd >> 16) % 4 != 0;  /* a quarter only read */
		if (ks_txn_begin(s->st, KS_TXN_CHECKED, false, NULL, &t)) {
			w->errors++;
			break;
		}
		e.base = ks_txn_base(t);
		len = ks_txn_read(t, e.read, sizeof(e.read) - 1, 0);
		e.read[len] = '\0';
		if ((rnd >> 20) % 3 == 0)
			sched_yield();
		if (e.wrote) {
			len = (size_t)snprintf(e.wrote_page,
					       sizeof(e.wrote_page),
					       "r=%" PRIu64 " w=%d s=%d",
					       e.base, w->id, seq);
			if (ks_txn_truncate(t, 0) ||
			    ks_txn_write(t, e.wrote_page, len, 0))
				w->errors++;
		}
		err = ks_txn_commit(t, &e.version);
		ks_txn_unref(t);
		if (err == EAGAIN) {
			w->conflicts++;
			continue;
		}
		if (err) {
			w->errors++;
			break;
		}
		s->log[w->id][s->nlog[w->id]++] = e;
		w->commits++;
		seq++;
	}
	return NULL;
}

static void test_serializable(void)
{
	struct fake_store fs;
	struct ks_engine *eng;
	struct ser s = { 0 };
	struct worker w[NTHREADS];
	struct ser_entry **history;   /* writing commits by version */
	size_t nwrites = 0, bad_order = 0, bad_read = 0, bad_ro = 0;
	size_t bad_thread = 0, bad_store = 0, ncommitrecs = 0, nro = 0;
	int errors = 0;
	char page[64];

	fake_store_init(&fs);
	eng = kt_engine(4096, 16, 64, &fs.base);
	s.st = kt_state(eng, "ser");
	for (int i = 0; i < NTHREADS; i++)
		s.log[i] = calloc(SER_TXNS, sizeof(struct ser_entry));
	run_workers(w, NTHREADS, &s, ser_worker);
	for (int i = 0; i < NTHREADS; i++)
		errors += w[i].errors;
	KT_EQ(errors, 0);
	{
		uint64_t conflicts = 0;

		for (int i = 0; i < NTHREADS; i++)
			conflicts += w[i].conflicts;
		printf("   %" PRIu64 " conflicts\n", conflicts);
	}

	/* Place every writing commit at its version; two at one version,
	 * or a hole, is a lost or phantom commit. */
	history = calloc(NTHREADS * SER_TXNS + 2, sizeof(*history));
	for (int i = 0; i < NTHREADS; i++)
		for (int j = 0; j < s.nlog[i]; j++) {
			struct ser_entry *e = &s.log[i][j];

			if (!e->wrote) {
				nro++;
				continue;
			}
			nwrites++;
			if (e->version == 0 ||
			    e->version > NTHREADS * SER_TXNS ||
			    history[e->version])
				bad_order++;
			else
				history[e->version] = e;
		}
	for (size_t v = 1; v <= nwrites; v++)
		if (!history[v])
			bad_order++;
	KT_EQ(bad_order, 0);
	KT_EQ(ks_state_version(s.st), nwrites);
	printf("   %zu writing and %zu read-only commits replayed\n", nwrites,
	       nro);
	if (bad_order)
		goto out;

	/* Replay: each writer read exactly the previous version, and saw
	 * the page that version's writer wrote. */
	for (size_t v = 1; v <= nwrites; v++) {
		struct ser_entry *e = history[v];
		const char *prev = v == 1 ? "" : history[v - 1]->wrote_page;

		if (e->base != v - 1)
			bad_read++;
		if (strcmp(e->read, prev) != 0)
			bad_read++;
		if (bad_read && bad_read < 4)
			printf("   version %zu read base %" PRIu64
			       " \"%s\", previous wrote \"%s\"\n", v, e->base,
			       e->read, prev);
	}
	KT_EQ(bad_read, 0);
	/* A read-only commit validated a version: it must have read that
	 * version's page. */
	for (int i = 0; i < NTHREADS; i++)
		for (int j = 0; j < s.nlog[i]; j++) {
			struct ser_entry *e = &s.log[i][j];
			const char *want;

			if (e->wrote)
				continue;
			if (e->version != e->base || e->version > nwrites) {
				bad_ro++;
				continue;
			}
			want = e->version ? history[e->version]->wrote_page
					  : "";
			if (strcmp(e->read, want) != 0)
				bad_ro++;
		}
	KT_EQ(bad_ro, 0);
	/* Each thread's transactions are in the history in its own order
	 * (writes strictly later, read-only ones not earlier). */
	for (int i = 0; i < NTHREADS; i++)
		for (int j = 1; j < s.nlog[i]; j++) {
			struct ser_entry *a = &s.log[i][j - 1];
			struct ser_entry *b = &s.log[i][j];

			if (b->version < a->version ||
			    (b->wrote && b->version == a->version))
				bad_thread++;
		}
	KT_EQ(bad_thread, 0);
	/* The store got the same history, in the same order. */
	for (size_t i = 0; i < fs.nrecs; i++) {
		const struct ks_rec *r = &fs.recs[i].rec;

		if (r->type != KS_REC_COMMIT)
			continue;
		ncommitrecs++;
		if (r->version != ncommitrecs || ncommitrecs > nwrites ||
		    r->len != strlen(history[ncommitrecs]->wrote_page) ||
		    memcmp(r->bytes, history[ncommitrecs]->wrote_page,
			   r->len) != 0)
			bad_store++;
	}
	KT_EQ(ncommitrecs, nwrites);
	KT_EQ(bad_store, 0);
	kt_read_current(s.st, page, sizeof(page), NULL);
	KT_CHECK(strcmp(page, history[nwrites]->wrote_page) == 0);
out:
	free(history);
	for (int i = 0; i < NTHREADS; i++)
		free(s.log[i]);
	ks_state_unref(s.st);
	ks_engine_free(eng);
	fake_store_destroy(&fs);
}

/* ---- whole pages for readers -------------------------------------------- */

#define TORN_WRITERS 4
#define TORN_READERS 4
#define TORN_COMMITS 400

struct torn {
	struct ks_state *st;
	atomic_int writers_left;
	atomic_ullong reads;
};

/* A page filled with byte b is b * 16 bytes long: a page mixing two
 * versions, or one length with another's bytes, is caught. */
static bool page_whole(const unsigned char *bytes, size_t len)
{
	if (len == 0)
		return true;
	if (len != (size_t)bytes[0] * 16)
		return false;
	for (size_t i = 1; i < len; i++)
		if (bytes[i] != bytes[0])
			return false;
	return true;
}

static int write_chunks(struct ks_txn *t, const unsigned char *buf,
			size_t len)
{
	size_t third = len / 3;
	int err = 0;

	/* Out of order, so that a half-built page would show. */
	err |= ks_txn_write(t, buf + third, len - third, (off_t)third);
	err |= ks_txn_write(t, buf, third, 0);
	return err;
}

static void *torn_writer(void *arg)
{
	struct worker *w = arg;
	struct torn *tn = w->shared;
	unsigned char buf[4096];

	pthread_barrier_wait(w->start);
	for (int i = 0; i < TORN_COMMITS; i++) {
		unsigned char b = (unsigned char)((w->id * 61 + i) % 255 + 1);
		size_t len = (size_t)b * 16;
		struct ks_txn *t = NULL;
		int err;

		memset(buf, b, len);
		switch (i % 4) {
		case 0:
			err = ks_state_commit_bytes(tn->st, buf, len, NULL);
			break;
		case 1:
			err = ks_txn_begin(tn->st, KS_TXN_REPLACE, true, NULL,
					   &t);
			if (!err)
				err = write_chunks(t, buf, len);
			if (!err)
				err = ks_txn_commit(t, NULL);
			break;
		case 2:
			do {
				ks_txn_unref(t);
				t = NULL;
				err = ks_txn_begin(tn->st, KS_TXN_CHECKED,
						   false, NULL, &t);
				if (!err)
					err = ks_txn_truncate(t, 0);
				if (!err)
					err = write_chunks(t, buf, len);
				if (!err)
					err = ks_txn_commit(t, NULL);
			} while (err == EAGAIN);
			break;
		default:
			err = ks_txn_begin(tn->st, KS_TXN_PATCH, false, NULL,
					   &t);
			if (!err)
				err = ks_txn_truncate(t, 0);
			if (!err)
				err = write_chunks(t, buf, len);
			if (!err)
				err = ks_txn_commit(t, NULL);
			break;
		}
		ks_txn_unref(t);
		if (err)
			w->errors++;
		else
			w->commits++;
	}
	atomic_fetch_sub(&tn->writers_left, 1);
	return NULL;
}

static void *torn_reader(void *arg)
{
	struct worker *w = arg;
	struct torn *tn = w->shared;
	unsigned char buf[4096];
	uint64_t last = 0;
	unsigned long long n = 0;

	pthread_barrier_wait(w->start);
	while (atomic_load(&tn->writers_left) > 0) {
		struct ks_page *p = ks_state_current(tn->st);

		if (!page_whole(p->bytes, p->len) || p->version < last)
			w->errors++;
		last = p->version;
		ks_page_unref(p);
		n++;
		if (n % 16 == 0) {
			/* A transaction's snapshot is whole too. */
			struct ks_txn *t;
			size_t len;

			if (ks_txn_begin(tn->st, KS_TXN_CHECKED, false, NULL,
					 &t)) {
				w->errors++;
				continue;
			}
			len = ks_txn_read(t, buf, sizeof(buf), 0);
			if (!page_whole(buf, len) ||
			    len != ks_txn_size(t) || ks_txn_base(t) < last)
				w->errors++;
			ks_txn_unref(t);
		}
	}
	atomic_fetch_add(&tn->reads, n);
	return NULL;
}

static void *torn_role(void *arg)
{
	struct worker *w = arg;

	return w->id < TORN_WRITERS ? torn_writer(arg) : torn_reader(arg);
}

static void test_torn(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct torn tn = { .st = kt_state(eng, "torn") };
	struct worker w[TORN_WRITERS + TORN_READERS];
	uint64_t commits = 0;
	int errors = 0;

	atomic_init(&tn.writers_left, TORN_WRITERS);
	atomic_init(&tn.reads, 0);
	run_workers(w, TORN_WRITERS + TORN_READERS, &tn, torn_role);
	for (int i = 0; i < TORN_WRITERS + TORN_READERS; i++) {
		commits += w[i].commits;
		errors += w[i].errors;
	}
	printf("   %" PRIu64 " commits, %llu reads\n", commits,
	       (unsigned long long)atomic_load(&tn.reads));
	KT_EQ(errors, 0);
	KT_EQ(commits, TORN_WRITERS * TORN_COMMITS);
	KT_EQ(ks_state_version(tn.st), TORN_WRITERS * TORN_COMMITS);
	KT_CHECK(atomic_load(&tn.reads) > 0);
	ks_state_unref(tn.st);
	ks_engine_free(eng);
}

/* ---- PATCH on disjoint ranges ------------------------------------------- */

#define PATCH_COMMITS 500

static void *patch_worker(void *arg)
{
	struct worker *w = arg;
	struct ks_state *st = w->shared;

	pthread_barrier_wait(w->start);
	for (int i = 1; i <= PATCH_COMMITS; i++) {
		char buf[16];
		struct ks_txn *t;

		snprintf(buf, sizeof(buf), "%07d|", i);
		if (ks_txn_begin(st, KS_TXN_PATCH, false, NULL, &t)) {
			w->errors++;
			break;
		}
		if (ks_txn_write(t, buf, 8, (off_t)w->id * 8) ||
		    ks_txn_commit(t, NULL))
			w->errors++;
		else
			w->commits++;
		ks_txn_unref(t);
	}
	return NULL;
}

static void test_patch_disjoint(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "patch");
	struct worker w[NTHREADS];
	struct ks_page *p;
	int errors = 0;

	run_workers(w, NTHREADS, st, patch_worker);
	for (int i = 0; i < NTHREADS; i++)
		errors += w[i].errors;
	KT_EQ(errors, 0);
	KT_EQ(ks_state_version(st), NTHREADS * PATCH_COMMITS);
	p = ks_state_current(st);
	KT_EQ(p->len, NTHREADS * 8);
	for (int i = 0; i < NTHREADS && p->len == NTHREADS * 8; i++) {
		char want[16];

		snprintf(want, sizeof(want), "%07d|", PATCH_COMMITS);
		KT_BYTES(p->bytes + i * 8, 8, want, 8);
	}
	ks_page_unref(p);
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* ---- limits under contention -------------------------------------------- */

#define TXN_LIMIT 16

static void *grab_worker(void *arg)
{
	struct worker *w = arg;
	struct ks_state *st = w->shared;

	pthread_barrier_wait(w->start);
	for (int i = 0; i < 8; i++) {
		char name[32];
		struct ks_txn *t;
		int err;

		snprintf(name, sizeof(name), "g.%d.%d", w->id, i);
		err = ks_txn_begin(st, KS_TXN_CHECKED, false, name, &t);
		if (err == 0) {
			w->commits++;        /* a slot taken */
			ks_txn_unref(t);
		} else if (err == ENOSPC) {
			w->conflicts++;
		} else {
			w->errors++;
		}
	}
	return NULL;
}

static void count_txn(void *arg, struct ks_txn *txn, const char *name)
{
	(void)txn;
	(void)name;
	(*(int *)arg)++;
}

static void test_max_txns_race(void)
{
	struct ks_engine *eng = kt_engine(4096, 16, TXN_LIMIT, NULL);
	struct ks_state *st = kt_state(eng, "limited");
	struct worker w[NTHREADS];
	struct ks_engine_stats stats;
	uint64_t taken = 0;
	int errors = 0, listed = 0;

	run_workers(w, NTHREADS, st, grab_worker);
	for (int i = 0; i < NTHREADS; i++) {
		taken += w[i].commits;
		errors += w[i].errors;
	}
	KT_EQ(errors, 0);
	KT_EQ(taken, TXN_LIMIT);
	ks_txn_foreach(st, count_txn, &listed);
	KT_EQ(listed, TXN_LIMIT);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.txns, TXN_LIMIT);
	for (int i = 0; i < NTHREADS; i++)
		for (int j = 0; j < 8; j++) {
			char name[32];

			snprintf(name, sizeof(name), "g.%d.%d", i, j);
			ks_txn_unlink(st, name);
		}
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* ---- the table under contention ----------------------------------------- */

static void *table_worker(void *arg)
{
	struct worker *w = arg;
	struct ks_engine *eng = w->shared;
	struct ks_state_attr a = kt_attr();

	pthread_barrier_wait(w->start);
	for (int i = 0; i < 300; i++) {
		char n1[32], n2[32];
		struct ks_state *st;

		snprintf(n1, sizeof(n1), "t%d-%d", w->id, i);
		snprintf(n2, sizeof(n2), "t%d-%d-renamed", w->id, i);
		if (ks_state_create(eng, n1, &a, &st)) {
			w->errors++;
			continue;
		}
		if (ks_state_commit_bytes(st, n1, strlen(n1), NULL))
			w->errors++;
		if (ks_state_rename(eng, n1, n2))
			w->errors++;
		ks_state_unref(st);
		/* Every other one stays; the rest is deleted. */
		if (i % 2 && ks_state_delete(eng, n2))
			w->errors++;
		/* Someone else's state, which may or may not exist. */
		snprintf(n1, sizeof(n1), "t%d-%d-renamed",
			 (w->id + 1) % NTHREADS, i);
		if (ks_state_lookup(eng, n1, &st) == 0) {
			char name[KS_NAME_MAX + 1];
			struct ks_page *p = ks_state_current(st);

			/* Renamed or deleted under us, but never torn. */
			if (ks_state_name(st, name) && strcmp(name, n1) != 0)
				w->errors++;
			ks_page_unref(p);
			ks_state_unref(st);
		}
	}
	return NULL;
}

static void test_table(void)
{
	struct ks_engine *eng = kt_engine(64, 100000, 4, NULL);
	struct worker w[NTHREADS];
	struct ks_engine_stats stats;
	int errors = 0, bad = 0;

	run_workers(w, NTHREADS, eng, table_worker);
	for (int i = 0; i < NTHREADS; i++)
		errors += w[i].errors;
	KT_EQ(errors, 0);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.states, NTHREADS * 150);
	for (int i = 0; i < NTHREADS; i++)
		for (int j = 0; j < 300; j++) {
			char name[64], orig[32];
			struct ks_state *st;
			int err;

			snprintf(orig, sizeof(orig), "t%d-%d", i, j);
			snprintf(name, sizeof(name), "%s-renamed", orig);
			err = ks_state_lookup(eng, name, &st);
			if (err != (j % 2 ? ENOENT : 0))
				bad++;
			if (!err) {
				char page[64];

				kt_read_current(st, page, sizeof(page), NULL);
				if (strcmp(page, orig) != 0)
					bad++;
				ks_state_unref(st);
			}
		}
	KT_EQ(bad, 0);
	ks_engine_free(eng);
}

int main(void)
{
	KT_RUN(test_counter,
	       "8 threads x 1000 CHECKED increments: no lost update, version "
	       "= commits, listener hears exactly 1..N*M");
	KT_RUN(test_counter_store,
	       "increments with a store failing 1 append in 7: failed commits "
	       "change nothing, the store sees versions 1..N*M in order");
	KT_RUN(test_serializable,
	       "serializability checker: replayed history, each commit read "
	       "exactly the previous version");
	KT_RUN(test_torn,
	       "readers never see a torn page while writers commit in all "
	       "modes");
	KT_RUN(test_patch_disjoint,
	       "PATCH commits to disjoint ranges never lose each other's "
	       "bytes");
	KT_RUN(test_max_txns_race,
	       "racing named begins never exceed max_txns");
	KT_RUN(test_table,
	       "concurrent create, commit, rename, delete and lookup");
	return kt_finish("test_concurrency");
}
