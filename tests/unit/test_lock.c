/*
 * The lock-order checks (core/lock.h): locks taken in order are fine, a
 * lock taken out of order or a *_locked function called without its lock
 * aborts with a message naming both, and the per-thread bookkeeping follows
 * threads and condition waits.  Each violation runs in a child process,
 * whose death by SIGABRT and whose stderr are the result.
 *
 * Then the wiring: the engine's own locks are ks_locks with the right names
 * and ranks, and its *_locked functions really check (internal.h is
 * included for that alone), so a lock taken out of order or a missing lock
 * in the engine aborts the same way.
 */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>

#include "internal.h"
#include "lock.h"

#ifdef KS_LOCK_CHECK

/* Runs fn in a child; true if it died of SIGABRT and its stderr holds
 * both strings. */
static bool aborts_saying(void (*fn)(void), const char *a, const char *b)
{
	char path[] = "/tmp/kstatefs-lock-XXXXXX";
	int fd = mkstemp(path);
	char out[1024] = "";
	int status = 0;
	ssize_t n;
	pid_t pid;

	if (fd < 0)
		return false;
	unlink(path);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		dup2(fd, 2);
		signal(SIGABRT, SIG_DFL);
		fn();
		_exit(0);
	}
	waitpid(pid, &status, 0);
	n = pread(fd, out, sizeof(out) - 1, 0);
	close(fd);
	if (n > 0)
		out[n] = '\0';
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) {
		printf("   child status %d, stderr: %s\n", status, out);
		return false;
	}
	if (!strstr(out, a) || (b && !strstr(out, b))) {
		printf("   stderr: %s\n", out);
		return false;
	}
	return true;
}

static void inverted_order(void)
{
	struct ks_lock outer, inner;

	ks_lock_init(&outer, "state->commit_lock", KS_RANK_COMMIT);
	ks_lock_init(&inner, "state->lock", KS_RANK_STATE);
	ks_lock(&inner);
	ks_lock(&outer);
}

static void nested_keys_falling(void)
{
	struct ks_lock a, b;

	ks_lock_init(&a, "commit lock of state 7", KS_RANK_COMMIT);
	ks_lock_init(&b, "commit lock of state 3", KS_RANK_COMMIT);
	ks_lock_nested(&a, 7);
	ks_lock_nested(&b, 3);
}

static void same_rank_unkeyed(void)
{
	struct ks_lock a, b;

	ks_lock_init(&a, "first events ring", KS_RANK_EVENTS);
	ks_lock_init(&b, "second events ring", KS_RANK_EVENTS);
	ks_lock(&a);
	ks_lock(&b);
}

static void not_held(void)
{
	struct ks_lock l;

	ks_lock_init(&l, "engine->multi_lock", KS_RANK_MULTI_LIST);
	ks_lock_assert_held(&l);
}

static struct ks_lock shared_lock;

static void *hold_in_thread(void *arg)
{
	(void)arg;
	ks_lock(&shared_lock);
	return NULL;
}

/* Held by another thread is not held by this one. */
static void held_elsewhere(void)
{
	pthread_t t;

	ks_lock_init(&shared_lock, "the inode table", KS_RANK_FS_INODES);
	pthread_create(&t, NULL, hold_in_thread, NULL);
	pthread_join(t, NULL);
	ks_lock_assert_held(&shared_lock);
}

static void rwlock_inverted(void)
{
	struct ks_rwlock table;
	struct ks_lock st;

	ks_rwlock_init(&table, "engine->table_lock", KS_RANK_TABLE);
	ks_lock_init(&st, "state->lock", KS_RANK_STATE);
	ks_lock(&st);
	ks_rdlock(&table);
}

static void read_held_is_not_exclusive(void)
{
	struct ks_rwlock table;

	ks_rwlock_init(&table, "engine->table_lock", KS_RANK_TABLE);
	ks_rdlock(&table);
	ks_rwlock_assert_held_exclusive(&table);
}

/* ---- the engine's own locks ------------------------------------------- */

static void engine_unlink_unlocked(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *txn;

	if (ks_txn_begin(st, KS_TXN_CHECKED, false, "t", &txn))
		_exit(2);
	ks_txn_unlink_locked(txn);
}

static void engine_install_unlocked(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	ks_state_install(st, ks_page_new("x", 1, 1, &now));
}

/* A lookup (engine->table_lock) from inside state->lock: the inversion
 * the order forbids. */
static void engine_table_inside_state(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s"), *found;

	ks_lock(&st->lock);
	ks_state_lookup(eng, "s", &found);
}

/* A state's commit lock inside its own lock (state->lock is innermost). */
static void engine_commit_inside_state(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");

	ks_lock(&st->lock);
	ks_state_commit_bytes(st, "x", 1, NULL);
}

static void test_engine_locks_checked(void)
{
	KT_CHECK(aborts_saying(engine_unlink_unlocked,
			       "ks_txn_unlink_locked called without holding "
			       "state->lock", NULL));
	KT_CHECK(aborts_saying(engine_install_unlocked,
			       "ks_state_install called without holding "
			       "state->commit_lock", NULL));
	KT_CHECK(aborts_saying(engine_table_inside_state,
			       "taking engine->table_lock",
			       "holding state->lock"));
	KT_CHECK(aborts_saying(engine_commit_inside_state,
			       "taking state->commit_lock",
			       "holding state->lock"));
}

/* A .txn/T commit takes its members' transaction and commit locks several
 * at once, in state id order whatever order they joined in: the checks
 * accept it. */
static void test_engine_multi_commit_in_order(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st[3];
	struct ks_multi *m;
	struct ks_txn *txn;

	for (int i = 0; i < 3; i++) {
		char name[8];

		snprintf(name, sizeof(name), "s%d", i);
		st[i] = kt_state(eng, name);
	}
	KT_EQ(ks_multi_create(eng, "T", &m), 0);
	for (int i = 3; i-- > 0;) {
		KT_EQ(ks_multi_join(m, st[i], &txn), 0);
		KT_EQ(ks_txn_write(txn, "v", 1, 0), 0);
		ks_txn_unref(txn);
	}
	KT_EQ(ks_multi_commit(m), 0);
	for (int i = 0; i < 3; i++) {
		KT_EQ(ks_state_version(st[i]), 1);
		ks_state_unref(st[i]);
	}
	ks_multi_unref(m);
	ks_engine_free(eng);
}

/* The daemon reads a state's current page under its views lock and the
 * .events ring under events_lock (fs/daemon.h): the two engine locks rank
 * after the daemon's. */
static void test_daemon_reads_engine_under_its_locks(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_lock views, readers;
	uint64_t cursor = 0;
	char buf[KS_EVENT_LINE_MAX];

	ks_lock_init(&views, "views->lock", KS_RANK_FS_VIEWS);
	ks_lock_init(&readers, "events_lock", KS_RANK_FS_EVENTS);
	ks_lock(&views);
	ks_page_unref(ks_state_current(st));
	ks_unlock(&views);
	ks_lock(&readers);
	KT_CHECK(ks_events_read(ks_engine_events(eng), &cursor, buf,
				sizeof(buf), NULL) > 0);
	ks_unlock(&readers);
	ks_lock_destroy(&readers);
	ks_lock_destroy(&views);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_violations_abort(void)
{
	KT_CHECK(aborts_saying(inverted_order, "state->commit_lock",
			       "state->lock"));
	KT_CHECK(aborts_saying(nested_keys_falling, "state 3", "state 7"));
	KT_CHECK(aborts_saying(same_rank_unkeyed, "second events ring",
			       "first events ring"));
	KT_CHECK(aborts_saying(not_held, "not_held", "engine->multi_lock"));
	KT_CHECK(aborts_saying(held_elsewhere, "held_elsewhere",
			       "the inode table"));
	KT_CHECK(aborts_saying(rwlock_inverted, "engine->table_lock",
			       "state->lock"));
	KT_CHECK(aborts_saying(read_held_is_not_exclusive,
			       "engine->table_lock", NULL));
}

#endif /* KS_LOCK_CHECK */

static void test_in_order_is_fine(void)
{
	struct ks_rwlock table;
	struct ks_lock c1, c2, st, ev;
	pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
	struct timespec past = { 0, 0 };

	ks_rwlock_init(&table, "table", KS_RANK_TABLE);
	ks_lock_init(&c1, "commit 1", KS_RANK_COMMIT);
	ks_lock_init(&c2, "commit 2", KS_RANK_COMMIT);
	ks_lock_init(&st, "state", KS_RANK_STATE);
	ks_lock_init(&ev, "events", KS_RANK_EVENTS);

	ks_wrlock(&table);
	ks_lock_nested(&c1, 1);
	ks_lock_nested(&c2, 2);
	ks_lock(&st);
	ks_lock(&ev);
	ks_rwlock_assert_held_exclusive(&table);
	ks_lock_assert_held(&c1);
	ks_lock_assert_held(&ev);
	/* Released out of order, then taken again: still fine. */
	ks_unlock(&c1);
	ks_unlock(&ev);
	ks_lock(&ev);
	KT_EQ(ks_cond_timedwait(&cv, &ev, &past), ETIMEDOUT);
	ks_lock_assert_held(&ev);
	ks_unlock(&ev);
	ks_unlock(&st);
	ks_unlock(&c2);
	ks_rwunlock(&table);

	/* Nothing held: any order of single locks is fine. */
	ks_lock(&ev);
	ks_unlock(&ev);
	ks_rdlock(&table);
	ks_rwlock_assert_held(&table);
	ks_rwunlock(&table);

	ks_lock_destroy(&ev);
	ks_lock_destroy(&st);
	ks_lock_destroy(&c2);
	ks_lock_destroy(&c1);
	ks_rwlock_destroy(&table);
	pthread_cond_destroy(&cv);
}

int main(void)
{
	KT_RUN(test_in_order_is_fine, "locks taken in rank order are fine");
#ifdef KS_LOCK_CHECK
	KT_RUN(test_violations_abort,
	       "out-of-order locks and missing locks abort, naming both");
	KT_RUN(test_engine_locks_checked,
	       "the engine's locks and *_locked functions are checked");
	KT_RUN(test_engine_multi_commit_in_order,
	       "a multi-state commit takes its locks in checked order");
	KT_RUN(test_daemon_reads_engine_under_its_locks,
	       "the daemon may read a state and the ring under its locks");
#else
	printf("lock checks are compiled out in this build\n");
#endif
	return kt_finish("lock");
}
