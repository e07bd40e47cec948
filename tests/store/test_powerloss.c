/*
 * Crashes.  A child process commits to a store and records each
 * acknowledged version in shared memory; it is killed with SIGKILL at a
 * random moment; the store is reopened and every state must be at or past
 * its last acknowledged version, with exactly the page written for the
 * version it is at.
 *
 *  - --sync full under the power-loss hook (KSTATEFS_TEST_POWERLOSS=1:
 *    bytes not yet fdatasync'ed die with the process, as with a power cut):
 *    no acknowledged commit is lost.
 *  - --sync none, plain kill -9: no acknowledged commit is lost either
 *    (the kernel has the bytes).
 *  - --sync none under the hook: what was never synced is gone, which
 *    shows the hook drops what a power cut would.
 */
#include "harness.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define STATES 4

struct shared {
	atomic_uint_fast64_t acked[STATES];
	atomic_int ready;
	atomic_long commits;
};

static size_t page_for(int i, uint64_t v, unsigned char *buf)
{
	size_t len = (size_t)((v * 37 + (uint64_t)i * 11) % 300);
	int n = snprintf((char *)buf, 64, "%d:%llu;", i, (unsigned long long)v);

	if (len < (size_t)n)
		len = (size_t)n;
	for (size_t k = (size_t)n; k < len; k++)
		buf[k] = (unsigned char)(v + k * (uint64_t)(i + 1));
	return len;
}

static void child(const char *dir, enum ks_sync sync, struct shared *sh,
		  long max_commits)
{
	unsigned char buf[512];
	struct ks_state *st[STATES];
	struct st s;

	st_open_ok(&s, dir, sync);
	for (int i = 0; i < STATES; i++) {
		char name[8];

		snprintf(name, sizeof(name), "p%d", i);
		st[i] = st_find(&s, name);
		if (!st[i])
			st[i] = st_create(&s, name);
		atomic_store(&sh->acked[i], ks_state_version(st[i]));
	}
	atomic_store(&sh->ready, 1);
	for (long c = 0; max_commits < 0 || c < max_commits; c++) {
		int i = (int)(c % STATES);
		uint64_t v = atomic_load(&sh->acked[i]) + 1, got;
		size_t len = page_for(i, v, buf);

		CHECK_ERR(ks_state_commit_bytes(st[i], buf, len, &got), 0);
		CHECK_EQ(got, v);
		atomic_store(&sh->acked[i], v);
		atomic_fetch_add(&sh->commits, 1);
	}
	atomic_store(&sh->ready, 2);
	for (;;)
		pause();
}

/* Runs a child until killed; returns the versions it acknowledged. */
static void crash_once(const char *dir, enum ks_sync sync, bool hook,
		       long max_commits, int delay_ms, uint64_t *acked)
{
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid;
	int status;

	CHECK(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		if (hook)
			setenv(KS_LOG_POWERLOSS_ENV, "1", 1);
		child(dir, sync, sh, max_commits);
		_exit(0);
	}
	while (atomic_load(&sh->ready) == 0)
		usleep(1000);
	if (max_commits >= 0)
		while (atomic_load(&sh->ready) != 2)
			usleep(1000);
	else
		usleep((useconds_t)delay_ms * 1000);
	kill(pid, SIGKILL);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	for (int i = 0; i < STATES; i++)
		acked[i] = atomic_load(&sh->acked[i]);
	munmap(sh, sizeof(*sh));
}

/* Every state at or past what was acknowledged, with its exact page. */
static void verify(const char *dir, const uint64_t *acked, bool print)
{
	unsigned char buf[512];
	struct st s;

	st_open_ok(&s, dir, KS_SYNC_FULL);
	for (int i = 0; i < STATES; i++) {
		char name[8];
		struct ks_state *st;
		uint64_t v;

		snprintf(name, sizeof(name), "p%d", i);
		st = st_find(&s, name);
		CHECK(st);
		v = ks_state_version(st);
		if (v < acked[i]) {
			fprintf(stderr, "FAIL: %s at version %llu, but %llu "
				"was acknowledged\n", name,
				(unsigned long long)v,
				(unsigned long long)acked[i]);
			exit(1);
		}
		st_expect(&s, name, v, buf, page_for(i, v, buf));
		if (print && i == 0)
			printf("  acked %llu, found %llu\n",
			       (unsigned long long)acked[i],
			       (unsigned long long)v);
		ks_state_unref(st);
	}
	st_close(&s);
}

static void kill_loop(enum ks_sync sync, bool hook, int rounds)
{
	char *dir = st_tmpdir();
	uint64_t acked[STATES];

	srand((unsigned)getpid());
	for (int r = 0; r < rounds; r++) {
		crash_once(dir, sync, hook, -1, 20 + rand() % 200, acked);
		verify(dir, acked, r == 0);
	}
	printf("sync %s%s: %d rounds of SIGKILL, nothing acknowledged "
	       "lost\n", sync == KS_SYNC_FULL ? "full" : "none",
	       hook ? " with the power-loss hook" : "", rounds);
	st_rmrf(dir);
	free(dir);
}

static void hook_drops_unsynced(void)
{
	char *dir = st_tmpdir();
	uint64_t acked[STATES];
	struct ks_engine_stats stats;
	struct st s;

	/* 200 small commits stay under the compaction mark: with --sync
	 * none nothing syncs them, and under the hook nothing writes them. */
	crash_once(dir, KS_SYNC_NONE, true, 200, 0, acked);
	CHECK_EQ(acked[0], 50);
	st_open_ok(&s, dir, KS_SYNC_FULL);
	ks_engine_stats(s.eng, &stats);
	CHECK_EQ(stats.states, 0);
	st_close(&s);
	printf("sync none with the power-loss hook: 200 unsynced commits "
	       "lost, as a power cut would\n");
	st_rmrf(dir);
	free(dir);
}

int main(void)
{
	kill_loop(KS_SYNC_FULL, true, 10);
	kill_loop(KS_SYNC_NONE, false, 10);
	kill_loop(KS_SYNC_FULL, false, 3);
	hook_drops_unsynced();
	printf("1 passed, 0 failed\n");
	return 0;
}
