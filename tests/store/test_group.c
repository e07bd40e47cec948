/*
 * Group commit: 8 threads committing to 8 states with --sync full share
 * fdatasyncs, and every acknowledged commit is there after a reopen; the
 * same while compactions run underneath.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

#include "store.h"

#define THREADS 8
#define COMMITS 400

static atomic_long syncs;

static int counting_fdatasync(void *ctx, int fd)
{
	atomic_fetch_add(&syncs, 1);
	return fdatasync(fd);
}

struct worker {
	struct st *s;
	int i;
	int commits;
	size_t size;
};

static size_t page_of(int i, uint64_t v, size_t size, unsigned char *buf)
{
	int n = snprintf((char *)buf, size, "state %d version %llu ", i,
			 (unsigned long long)v);

	for (size_t k = (size_t)n; k < size; k++)
		buf[k] = (unsigned char)(i * 31 + v + k);
	return size;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	unsigned char buf[4096];
	char name[16];
	struct ks_state *st;

	snprintf(name, sizeof(name), "s%d", w->i);
	st = st_find(w->s, name);
	CHECK(st);
	for (int c = 1; c <= w->commits; c++) {
		size_t len = page_of(w->i, (uint64_t)c, w->size, buf);
		uint64_t v;

		CHECK_ERR(ks_state_commit_bytes(st, buf, len, &v), 0);
		CHECK_EQ(v, (uint64_t)c);
	}
	ks_state_unref(st);
	return NULL;
}

static atomic_bool stop;

static void *compactor(void *arg)
{
	struct st *s = arg;
	int n = 0;

	while (!atomic_load(&stop)) {
		CHECK_ERR(ks_log_compact(s->store), 0);
		n++;
		usleep(2000);
	}
	printf("  %d compactions ran alongside\n", n);
	return NULL;
}

static void run(const char *dir, enum ks_sync sync, int commits, size_t size,
		bool compacting)
{
	struct ks_log_io io = { .fdatasync = counting_fdatasync };
	pthread_t th[THREADS], ct;
	struct worker w[THREADS];
	unsigned char buf[4096];
	struct st s;
	double t0, dt;
	char name[16];

	st_open_ok(&s, dir, sync);
	ks_log_set_io(s.store, &io);
	for (int i = 0; i < THREADS; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		ks_state_unref(st_create(&s, name));
	}
	atomic_store(&syncs, 0);
	atomic_store(&stop, false);
	if (compacting)
		CHECK(pthread_create(&ct, NULL, compactor, &s) == 0);
	t0 = st_now();
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .s = &s, .i = i, .commits = commits,
					.size = size };
		CHECK(pthread_create(&th[i], NULL, work, &w[i]) == 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	dt = st_now() - t0;
	atomic_store(&stop, true);
	if (compacting)
		pthread_join(ct, NULL);
	printf("  %d threads x %d commits of %zu bytes, sync %s%s: %.0f "
	       "commits/s, %ld fdatasyncs\n", THREADS, commits, size,
	       sync == KS_SYNC_FULL ? "full" : "none",
	       compacting ? ", compacting" : "", THREADS * commits / dt,
	       atomic_load(&syncs));
	if (sync == KS_SYNC_FULL && !compacting)
		/* Each commit is durable once acknowledged, with fewer
		 * syncs than commits: they were shared. */
		CHECK(atomic_load(&syncs) < THREADS * commits);
	st_close(&s);

	st_open_ok(&s, dir, sync);
	for (int i = 0; i < THREADS; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		page_of(i, (uint64_t)commits, size, buf);
		st_expect(&s, name, (uint64_t)commits, buf, size);
		CHECK_ERR(ks_state_delete(s.eng, name), 0);
	}
	st_close(&s);
}

int main(void)
{
	char *dir = st_tmpdir();

	printf("group commit:\n");
	run(dir, KS_SYNC_FULL, COMMITS, 4096, false);
	run(dir, KS_SYNC_FULL, COMMITS, 100, false);
	run(dir, KS_SYNC_NONE, COMMITS * 5, 4096, false);
	printf("compaction under load:\n");
	run(dir, KS_SYNC_FULL, COMMITS, 4096, true);
	run(dir, KS_SYNC_NONE, COMMITS * 5, 4096, true);
	st_rmrf(dir);
	free(dir);
	printf("1 passed, 0 failed\n");
	return 0;
}
