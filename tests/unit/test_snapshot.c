/*
 * Snapshots (.txn/T): every member is read as of T's creation, a T that
 * only reads always commits, one that writes is validated against the
 * versions of that instant, and the versions kept for open snapshots are
 * counted and let go.  Then the bank: writers move amounts between
 * accounts while readers take snapshots of all of them, and every
 * snapshot sums to the total, first time, every time.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

static void put(struct ks_state *st, const char *text)
{
	KT_ERR(ks_state_commit_bytes(st, text, strlen(text), NULL), 0);
}

/* The member's page as T sees it, NUL-terminated. */
static void member_text(struct ks_multi *m, struct ks_state *st, char *buf,
			size_t cap)
{
	struct ks_txn *t;
	size_t n;

	KT_ERR(ks_multi_join(m, st, &t), 0);
	n = ks_txn_read(t, buf, cap - 1, 0);
	buf[n] = '\0';
	ks_txn_unref(t);
}

static void test_instant(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *a = kt_state(eng, "a"), *b = kt_state(eng, "b"), *c;
	struct ks_multi *m;
	struct ks_txn *t;
	char buf[32];

	put(a, "a1");
	put(b, "b1");
	KT_ERR(ks_multi_create(eng, "T", &m), 0);
	/* Commits after mkdir, before the members are first read. */
	put(a, "a2");
	put(b, "b2");
	c = kt_state(eng, "c");
	member_text(m, b, buf, sizeof(buf));
	KT_CHECK(strcmp(buf, "b1") == 0);
	member_text(m, a, buf, sizeof(buf));
	KT_CHECK(strcmp(buf, "a1") == 0);
	/* A state made after the instant is not in the snapshot. */
	KT_ERR(ks_multi_join(m, c, &t), ENOENT);
	/* Read-only: never a conflict, though both moved. */
	KT_ERR(ks_multi_commit(m), 0);
	KT_CHECK(ks_multi_gone(m));
	ks_multi_unref(m);

	/* A T that writes keeps the rules: based on its instant, so a
	 * commit since then is EAGAIN even for a member joined after it. */
	KT_ERR(ks_multi_create(eng, "W", &m), 0);
	put(a, "a3");
	KT_ERR(ks_multi_join(m, b, &t), 0);
	KT_ERR(ks_txn_write(t, "bw", 2, 0), 0);
	ks_txn_unref(t);
	member_text(m, a, buf, sizeof(buf));
	KT_CHECK(strcmp(buf, "a2") == 0);
	KT_ERR(ks_multi_commit(m), EAGAIN);
	ks_multi_unref(m);

	/* Unmoved: the write commits. */
	KT_ERR(ks_multi_create(eng, "W2", &m), 0);
	KT_ERR(ks_multi_join(m, b, &t), 0);
	KT_ERR(ks_txn_write(t, "bw", 2, 0), 0);
	ks_txn_unref(t);
	KT_ERR(ks_multi_commit(m), 0);
	ks_multi_unref(m);
	KT_EQ(ks_state_version(b), 3);

	ks_state_unref(a);
	ks_state_unref(b);
	ks_state_unref(c);
	ks_engine_free(eng);
}

static void test_stats(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *a = kt_state(eng, "a"), *b = kt_state(eng, "b");
	struct ks_snapshot_stats s;
	struct ks_multi *m1, *m2;
	struct ks_page *p;

	put(a, "0123456789");
	put(b, "xy");
	KT_ERR(ks_multi_create(eng, "one", &m1), 0);
	KT_ERR(ks_multi_create(eng, "two", &m2), 0);
	ks_engine_snapshot_stats(eng, &s);
	KT_EQ(s.open, 2);
	KT_EQ(s.versions, 0);   /* nothing replaced yet: nothing kept */
	KT_EQ(s.bytes, 0);
	put(a, "new");
	ks_engine_snapshot_stats(eng, &s);
	KT_EQ(s.versions, 1);   /* held by both, counted once */
	KT_EQ(s.bytes, 10);
	p = ks_multi_snapshot_page(m2, a);
	KT_REQUIRE(p);
	KT_EQ(p->len, 10);
	ks_page_unref(p);
	KT_ERR(ks_multi_commit(m1), 0);
	KT_ERR(ks_multi_abort(m2), 0);
	ks_engine_snapshot_stats(eng, &s);
	KT_EQ(s.open, 0);
	KT_EQ(s.versions, 0);
	KT_EQ(s.commits, 1);
	/* Over, even if still referenced: its pins are gone. */
	KT_CHECK(ks_multi_snapshot_page(m2, a) == NULL);
	ks_multi_unref(m1);
	ks_multi_unref(m2);
	ks_state_unref(a);
	ks_state_unref(b);
	ks_engine_free(eng);
}

/* ---- the bank ------------------------------------------------------------ */

enum { ACCOUNTS = 6, START = 1000, WRITERS = 3, READERS = 2 };

struct bank {
	struct ks_engine *eng;
	struct ks_state *acct[ACCOUNTS];
	atomic_bool stop;
	atomic_long transfers, snapshots, bad, failed;
};

static long amount_of(struct ks_txn *t)
{
	char buf[32];
	size_t n = ks_txn_read(t, buf, sizeof(buf) - 1, 0);

	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

static void set_amount(struct ks_txn *t, long v)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld", v);

	ks_txn_truncate(t, 0);
	ks_txn_write(t, buf, (size_t)n, 0);
}

static void *writer(void *arg)
{
	struct bank *bk = arg;
	unsigned seed = (unsigned)(uintptr_t)pthread_self();

	while (!atomic_load(&bk->stop)) {
		int from = rand_r(&seed) % ACCOUNTS;
		int to = (from + 1 + rand_r(&seed) % (ACCOUNTS - 1)) % ACCOUNTS;
		long amt = rand_r(&seed) % 50;
		char name[32];
		struct ks_multi *m;
		struct ks_txn *tf, *tt;

		snprintf(name, sizeof(name), "w%lx",
			 (unsigned long)(uintptr_t)pthread_self());
		if (ks_multi_create(bk->eng, name, &m))
			continue;
		if (ks_multi_join(m, bk->acct[from], &tf) == 0) {
			if (ks_multi_join(m, bk->acct[to], &tt) == 0) {
				set_amount(tf, amount_of(tf) - amt);
				set_amount(tt, amount_of(tt) + amt);
				ks_txn_unref(tt);
			}
			ks_txn_unref(tf);
		}
		if (ks_multi_commit(m) == 0) {
			atomic_fetch_add(&bk->transfers, 1);
		} else {
			/* rm -r: unjoin, then remove. */
			ks_multi_leave(m, bk->acct[from]);
			ks_multi_leave(m, bk->acct[to]);
			ks_multi_abort(m);
		}
		ks_multi_unref(m);
	}
	return NULL;
}

static void *reader(void *arg)
{
	struct bank *bk = arg;
	char name[32];

	snprintf(name, sizeof(name), "r%lx",
		 (unsigned long)(uintptr_t)pthread_self());
	while (!atomic_load(&bk->stop)) {
		struct ks_multi *m;
		long sum = 0;

		if (ks_multi_create(bk->eng, name, &m)) {
			atomic_fetch_add(&bk->failed, 1);
			continue;
		}
		for (int i = 0; i < ACCOUNTS; i++) {
			struct ks_txn *t;

			if (ks_multi_join(m, bk->acct[i], &t)) {
				atomic_fetch_add(&bk->failed, 1);
				continue;
			}
			sum += amount_of(t);
			ks_txn_unref(t);
		}
		if (sum != (long)ACCOUNTS * START)
			atomic_fetch_add(&bk->bad, 1);
		if (ks_multi_commit(m))
			atomic_fetch_add(&bk->failed, 1);
		atomic_fetch_add(&bk->snapshots, 1);
		ks_multi_unref(m);
	}
	return NULL;
}

static void test_bank(void)
{
	struct bank bk = { .eng = kt_default_engine() };
	pthread_t w[WRITERS], r[READERS];
	struct ks_snapshot_stats s;

	for (int i = 0; i < ACCOUNTS; i++) {
		char name[16];

		snprintf(name, sizeof(name), "acct%d", i);
		bk.acct[i] = kt_state(bk.eng, name);
		snprintf(name, sizeof(name), "%d", START);
		put(bk.acct[i], name);
	}
	for (int i = 0; i < WRITERS; i++)
		pthread_create(&w[i], NULL, writer, &bk);
	for (int i = 0; i < READERS; i++)
		pthread_create(&r[i], NULL, reader, &bk);
	sleep_ms(600);
	atomic_store(&bk.stop, true);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	for (int i = 0; i < READERS; i++)
		pthread_join(r[i], NULL);
	printf("   %ld transfers, %ld snapshots\n",
	       atomic_load(&bk.transfers), atomic_load(&bk.snapshots));
	KT_CHECK(atomic_load(&bk.transfers) > 0);
	KT_CHECK(atomic_load(&bk.snapshots) > 0);
	KT_EQ(atomic_load(&bk.bad), 0);
	KT_EQ(atomic_load(&bk.failed), 0);
	ks_engine_snapshot_stats(bk.eng, &s);
	KT_EQ(s.open, 0);
	KT_EQ(s.versions, 0);
	for (int i = 0; i < ACCOUNTS; i++)
		ks_state_unref(bk.acct[i]);
	ks_engine_free(bk.eng);
}

int main(void)
{
	KT_RUN(test_instant,
	       "members are read as of mkdir; read-only always commits; a "
	       "writing T is checked against that instant");
	KT_RUN(test_stats,
	       "versions kept for open snapshots are counted once and let go "
	       "when the snapshot ends");
	KT_RUN(test_bank,
	       "snapshots under transfers: every one sums to the total and "
	       "commits first time");
	return kt_finish("test_snapshot");
}
