/*
 * Compaction: 100,000 overwrites of one 4 KiB state leave a store that is
 * a small multiple of the live data and reopens in well under a second;
 * with many states, and with states created, renamed and deleted while
 * compactions run, everything comes back.
 */
#include "harness.h"

#define OVERWRITES 100000
/* The log is compacted when it passes 4x the live data plus the slack; at
 * rest the store is at most that plus a snapshot. */
#define SMALL (KS_LOG_COMPACT_RATIO * 4300 + KS_LOG_COMPACT_SLACK + \
	       2 * 4300 + 1024)

static void page_for(unsigned char *buf, size_t len, uint64_t v)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(v * 7 + i);
	memcpy(buf, &v, sizeof(v));
}

static void test_overwrites(enum ks_sync sync, int n)
{
	char *dir = st_tmpdir();
	unsigned char buf[4096];
	uint64_t v, bytes, max_bytes = 0, du;
	struct ks_state *st;
	struct st s;
	double t0, dt;

	st_open_ok(&s, dir, sync);
	st = st_create(&s, "hot");
	t0 = st_now();
	for (int i = 1; i <= n; i++) {
		page_for(buf, sizeof(buf), (uint64_t)i);
		CHECK_ERR(ks_state_commit_bytes(st, buf, sizeof(buf), &v), 0);
		CHECK_EQ(v, (uint64_t)i);
		if (i % 1000 == 0) {
			du = st_du(dir);
			if (du > max_bytes)
				max_bytes = du;
		}
	}
	dt = st_now() - t0;
	ks_state_unref(st);
	/* Once the writer stops, compaction catches up by itself. */
	t0 = st_now();
	do {
		usleep(10000);
		ks_log_stats(s.store, &bytes, NULL);
	} while (bytes > SMALL && st_now() - t0 < 5);
	printf("idle store: %llu bytes after %.0f ms\n",
	       (unsigned long long)bytes, (st_now() - t0) * 1000);
	CHECK(bytes <= SMALL);
	st_close(&s);
	du = st_du(dir);
	printf("%d overwrites of 4 KiB (sync %s, %.0f/s): store %llu bytes "
	       "after close (%.1fx the page), at most %llu while writing\n",
	       n, sync == KS_SYNC_FULL ? "full" : "none", n / dt,
	       (unsigned long long)du, du / 4096.0,
	       (unsigned long long)max_bytes);
	CHECK(du <= SMALL);

	t0 = st_now();
	st_open_ok(&s, dir, sync);
	dt = st_now() - t0;
	page_for(buf, sizeof(buf), (uint64_t)n);
	st_expect(&s, "hot", (uint64_t)n, buf, sizeof(buf));
	st_close(&s);
	printf("reopen: %.1f ms\n", dt * 1000);
	CHECK(dt < 0.25);
	st_rmrf(dir);
	free(dir);
}

/* Many states, and the table changing under compactions. */
static void test_churn(void)
{
	char *dir = st_tmpdir(), name[32], name2[32];
	unsigned char buf[1000];
	struct ks_state *st;
	struct st s;
	int alive = 0;

	st_open_ok(&s, dir, KS_SYNC_NONE);
	for (int i = 0; i < 3000; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		st = st_create(&s, name);
		page_for(buf, (size_t)(i % 1000), (uint64_t)i);
		CHECK_ERR(ks_state_commit_bytes(st, buf, (size_t)(i % 1000),
						NULL), 0);
		ks_state_unref(st);
		if (i % 3 == 1) {
			snprintf(name2, sizeof(name2), "r%d", i);
			CHECK_ERR(ks_state_rename(s.eng, name, name2), 0);
		} else if (i % 3 == 2) {
			CHECK_ERR(ks_state_delete(s.eng, name), 0);
		}
		if (i % 500 == 0)
			CHECK_ERR(ks_log_compact(s.store), 0);
	}
	st_close(&s);

	st_open_ok(&s, dir, KS_SYNC_NONE);
	for (int i = 0; i < 3000; i++) {
		page_for(buf, (size_t)(i % 1000), (uint64_t)i);
		snprintf(name, sizeof(name), "n%d", i);
		snprintf(name2, sizeof(name2), "r%d", i);
		if (i % 3 == 0) {
			st_expect(&s, name, 1, buf, (size_t)(i % 1000));
			alive++;
		} else if (i % 3 == 1) {
			st_expect(&s, name2, 1, buf, (size_t)(i % 1000));
			CHECK(st_find(&s, name) == NULL);
			alive++;
		} else {
			CHECK(st_find(&s, name) == NULL);
		}
	}
	st_close(&s);
	printf("churn: %d states back after compactions: ok\n", alive);
	st_rmrf(dir);
	free(dir);
}

int main(void)
{
	test_overwrites(KS_SYNC_NONE, OVERWRITES);
	test_overwrites(KS_SYNC_FULL, 2000);
	test_churn();
	printf("1 passed, 0 failed\n");
	return 0;
}
