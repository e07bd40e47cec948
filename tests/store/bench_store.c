/*
 * Store throughput against its baselines, measured in the same run on the
 * same disk:
 *   raw        pwrite + fdatasync of the bytes one commit writes, appended
 *   full x1    durable commits of one 4 KiB state, one writer
 *   full x8    eight writers on eight states (group commit)
 *   none x1    --sync none, one writer;  memory x1: no store at all
 *
 *   bench_store [SECONDS] [PAGE_BYTES]     (KS_STORE_TEST_DIR: where)
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

static double seconds = 2.0;
static size_t page = 4096;

/* The bytes of one commit record: header, time, page. */
#define RECORD_OVERHEAD (36 + 12)

static double bench_raw(const char *dir)
{
	char path[4200];
	unsigned char *buf = calloc(1, page + RECORD_OVERHEAD);
	off_t off = 0;
	long n = 0;
	double t0, dt;
	int fd;

	snprintf(path, sizeof(path), "%s/raw", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && buf);
	t0 = st_now();
	do {
		buf[0] = (unsigned char)n;
		CHECK(pwrite(fd, buf, page + RECORD_OVERHEAD, off) ==
		      (ssize_t)(page + RECORD_OVERHEAD));
		CHECK(fdatasync(fd) == 0);
		off += (off_t)(page + RECORD_OVERHEAD);
		n++;
	} while ((dt = st_now() - t0) < seconds);
	close(fd);
	unlink(path);
	free(buf);
	return n / dt;
}

struct writer {
	struct ks_state *st;
	atomic_bool *stop;
	long n;
};

static void *write_loop(void *arg)
{
	struct writer *w = arg;
	unsigned char *buf = calloc(1, page ? page : 1);

	CHECK(buf);
	while (!atomic_load(w->stop)) {
		buf[w->n % (page ? page : 1)]++;
		CHECK_ERR(ks_state_commit_bytes(w->st, buf, page, NULL), 0);
		w->n++;
	}
	free(buf);
	return NULL;
}

/* sync < 0: no store. */
static double bench_engine(const char *dir, int sync, int writers)
{
	struct ks_engine_config cfg = { .max_size = page, .max_states = 64,
					.max_txns = 16 };
	struct writer w[16];
	pthread_t th[16];
	atomic_bool stop = false;
	struct st s = { 0 };
	char name[16];
	double t0, dt;
	long total = 0;

	if (sync >= 0)
		st_open_ok(&s, dir, (enum ks_sync)sync);
	else
		CHECK_ERR(ks_engine_new(&cfg, NULL, &s.eng), 0);
	for (int i = 0; i < writers; i++) {
		snprintf(name, sizeof(name), "b%d", i);
		w[i] = (struct writer){ .st = st_create(&s, name),
					.stop = &stop };
	}
	t0 = st_now();
	for (int i = 0; i < writers; i++)
		CHECK(pthread_create(&th[i], NULL, write_loop, &w[i]) == 0);
	usleep((useconds_t)(seconds * 1e6));
	atomic_store(&stop, true);
	for (int i = 0; i < writers; i++) {
		pthread_join(th[i], NULL);
		total += w[i].n;
	}
	dt = st_now() - t0;
	for (int i = 0; i < writers; i++) {
		snprintf(name, sizeof(name), "b%d", i);
		ks_state_unref(w[i].st);
		CHECK_ERR(ks_state_delete(s.eng, name), 0);
	}
	if (sync >= 0)
		st_close(&s);
	else
		ks_engine_free(s.eng);
	return total / dt;
}

int main(int argc, char **argv)
{
	char *dir = st_tmpdir();
	double raw = 0, full1 = 0, full8 = 0, none1 = 0, mem1 = 0;
	int rounds = 3;

	if (argc > 1)
		seconds = atof(argv[1]);
	if (argc > 2)
		page = (size_t)atol(argv[2]);
	/* Rounds, interleaved, so that a disk that slows down or speeds up
	 * (other work on the machine) weighs on every figure alike. */
	seconds /= rounds;
	for (int r = 0; r < rounds; r++) {
		raw += bench_raw(dir) / rounds;
		full1 += bench_engine(dir, KS_SYNC_FULL, 1) / rounds;
		full8 += bench_engine(dir, KS_SYNC_FULL, 8) / rounds;
		none1 += bench_engine(dir, KS_SYNC_NONE, 1) / rounds;
		mem1 += bench_engine(dir, -1, 1) / rounds;
	}
	printf("page %zu bytes, %d rounds of %.1f s each, in %s\n", page,
	       rounds, seconds, dir);
	printf("raw write+fdatasync   %9.0f /s\n", raw);
	printf("store full, 1 writer  %9.0f /s  (%.0f%% of raw)\n", full1,
	       100 * full1 / raw);
	printf("store full, 8 writers %9.0f /s  (%.1fx raw)\n", full8,
	       full8 / raw);
	printf("store none, 1 writer  %9.0f /s\n", none1);
	printf("memory, 1 writer      %9.0f /s\n", mem1);
	st_rmrf(dir);
	free(dir);
	return 0;
}
