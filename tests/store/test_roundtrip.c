/*
 * Round trips through the log store: every record type, binary, empty and
 * max-size pages, units of several records, snapshots, and the lock that
 * keeps a second daemon out.
 */
#include "harness.h"

#include <sys/wait.h>

#include "store.h"

static unsigned char binary[256], big[4096], big2[4096];

static void fill(void)
{
	for (int i = 0; i < 256; i++)
		binary[i] = (unsigned char)i;
	srand(42);
	for (size_t i = 0; i < sizeof(big); i++) {
		big[i] = (unsigned char)rand();
		big2[i] = (unsigned char)rand();
	}
}

static void commit(struct st *s, const char *name, const void *bytes,
		   size_t len, uint64_t want)
{
	struct ks_state *st = st_find(s, name);
	uint64_t v = 0;

	CHECK(st);
	CHECK_ERR(ks_state_commit_bytes(st, bytes, len, &v), 0);
	CHECK_EQ(v, want);
	ks_state_unref(st);
}

static uint64_t id_of(struct st *s, const char *name)
{
	struct ks_state *st = st_find(s, name);
	uint64_t id;

	CHECK(st);
	id = ks_state_id(st);
	ks_state_unref(st);
	return id;
}

/* Everything the first session below leaves behind. */
static void check_all(struct st *s)
{
	struct ks_state_attr attr;
	struct ks_state *st;
	struct ks_page *page;

	st_expect(s, "bin", 2, binary, sizeof(binary));
	st_expect(s, "empty", 1, "", 0);
	st_expect(s, "max", 2, big2, sizeof(big2));
	st_expect(s, "never", 0, "", 0);
	st_expect(s, "renamed", 3, "three", 5);
	CHECK(st_find(s, "a") == NULL);
	CHECK(st_find(s, "gone") == NULL);

	st = st_find(s, "bin");
	ks_state_get_attr(st, &attr);
	CHECK_EQ(attr.uid, 1234);
	CHECK_EQ(attr.gid, 5678);
	CHECK_EQ(attr.mode, 0600);
	CHECK_EQ(attr.ctime.tv_sec, 1700000000);
	CHECK_EQ(attr.ctime.tv_nsec, 123456789);
	page = ks_state_current(st);
	CHECK_EQ(page->mtime.tv_sec == 0, 0);
	ks_page_unref(page);
	ks_state_unref(st);

	st = st_find(s, "renamed");
	ks_state_get_attr(st, &attr);
	CHECK_EQ(attr.mode, 0640);
	ks_state_unref(st);

	/* The unit of several records. */
	st_expect(s, "x2", 1, "X1", 2);
	st_expect(s, "y", 2, "Y2", 2);
	CHECK(st_find(s, "x") == NULL);
}

static void first_session(const char *dir, uint64_t *max_id)
{
	struct ks_state_attr attr = { .uid = 1000, .gid = 1000, .mode = 0640 };
	struct ks_state *st, *x, *y;
	struct st s;

	st_open_ok(&s, dir, KS_SYNC_FULL);
	clock_gettime(CLOCK_REALTIME, &attr.ctime);
	CHECK_ERR(ks_state_create(s.eng, "a", &attr, &st), 0);
	ks_state_unref(st);
	ks_state_unref(st_create(&s, "bin"));
	ks_state_unref(st_create(&s, "empty"));
	ks_state_unref(st_create(&s, "max"));
	ks_state_unref(st_create(&s, "never"));
	ks_state_unref(st_create(&s, "gone"));

	commit(&s, "a", "one", 3, 1);
	commit(&s, "a", "two", 3, 2);
	commit(&s, "a", "three", 5, 3);
	commit(&s, "bin", "x", 1, 1);
	commit(&s, "bin", binary, sizeof(binary), 2);
	commit(&s, "empty", "", 0, 1);
	commit(&s, "max", big, sizeof(big), 1);
	commit(&s, "max", big2, sizeof(big2), 2);
	commit(&s, "gone", "bye", 3, 1);
	CHECK_ERR(ks_state_rename(s.eng, "a", "renamed"), 0);
	st = st_find(&s, "bin");
	attr = (struct ks_state_attr){ .uid = 1234, .gid = 5678,
				       .mode = 0600,
				       .ctime = { 1700000000, 123456789 } };
	CHECK_ERR(ks_state_set_attr(st, &attr), 0);
	ks_state_unref(st);
	*max_id = id_of(&s, "gone");
	CHECK_ERR(ks_state_delete(s.eng, "gone"), 0);

	/* A unit of several records, as a transaction over several states
	 * gives the store: made durable all together. */
	x = st_create(&s, "x");
	y = st_create(&s, "y");
	CHECK_ERR(ks_state_commit_bytes(y, "Y1", 2, NULL), 0);
	{
		struct timespec now;
		struct ks_rec recs[3];

		clock_gettime(CLOCK_REALTIME, &now);
		recs[0] = (struct ks_rec){ .type = KS_REC_COMMIT,
					   .state_id = ks_state_id(x),
					   .version = 1, .bytes = "X1",
					   .len = 2, .time = now };
		recs[1] = (struct ks_rec){ .type = KS_REC_COMMIT,
					   .state_id = ks_state_id(y),
					   .version = 2, .bytes = "Y2",
					   .len = 2, .time = now };
		recs[2] = (struct ks_rec){ .type = KS_REC_RENAME,
					   .state_id = ks_state_id(x),
					   .name = "x2", .time = now };
		CHECK_ERR(s.store->ops->append(s.store, recs, 3), 0);
	}
	ks_state_unref(x);
	ks_state_unref(y);
	st_close(&s);
}

static void test_lock(const char *dir)
{
	struct ks_store *second;
	struct st s;
	char msg[512], want[64];
	pid_t pid;
	int status;

	st_open_ok(&s, dir, KS_SYNC_FULL);
	CHECK_ERR(ks_log_open(dir, KS_SYNC_FULL, &second, msg, sizeof(msg)),
		  EBUSY);
	snprintf(want, sizeof(want), "process %ld", (long)getpid());
	printf("second open: %s\n", msg);
	CHECK(strstr(msg, want));
	CHECK(strstr(msg, dir));

	/* After a fork, the daemon says who holds it now. */
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		ks_log_owner(s.store);
		_exit(0);
	}
	CHECK(waitpid(pid, &status, 0) == pid && status == 0);
	CHECK_ERR(ks_log_open(dir, KS_SYNC_FULL, &second, msg, sizeof(msg)),
		  EBUSY);
	snprintf(want, sizeof(want), "process %ld", (long)pid);
	CHECK(strstr(msg, want));
	ks_log_owner(s.store);
	st_close(&s);

	/* Released at close. */
	st_open_ok(&s, dir, KS_SYNC_FULL);
	st_close(&s);
}

int main(void)
{
	char *dir = st_tmpdir();
	uint64_t max_id, records, bytes;
	struct ks_state *st;
	struct st s;

	fill();
	first_session(dir, &max_id);

	st_open_ok(&s, dir, KS_SYNC_FULL);
	check_all(&s);
	/* Ids are never handed out again, not even a deleted state's. */
	st = st_create(&s, "new");
	CHECK(ks_state_id(st) > max_id);
	ks_state_unref(st);
	CHECK_ERR(ks_state_delete(s.eng, "new"), 0);
	ks_log_stats(s.store, &bytes, &records);
	CHECK(records >= 20);
	CHECK(bytes > sizeof(big) * 2);
	st_close(&s);
	printf("log replay: ok\n");

	/* Reopening twice changes nothing. */
	st_open_ok(&s, dir, KS_SYNC_NONE);
	check_all(&s);
	/* Into a snapshot, then more on top of it. */
	CHECK_ERR(ks_log_compact(s.store), 0);
	ks_log_stats(s.store, &bytes, &records);
	CHECK_EQ(records, 0);
	commit(&s, "bin", binary, 10, 3);
	st_close(&s);

	st_open_ok(&s, dir, KS_SYNC_FULL);
	st_expect(&s, "bin", 3, binary, 10);
	commit(&s, "bin", binary, sizeof(binary), 4);
	st_expect(&s, "empty", 1, "", 0);
	st_expect(&s, "never", 0, "", 0);
	st_expect(&s, "max", 2, big2, sizeof(big2));
	st_expect(&s, "x2", 1, "X1", 2);
	st = st_create(&s, "new2");
	CHECK(ks_state_id(st) > max_id + 1);
	ks_state_unref(st);
	/* Compacting twice in a row, and a snapshot replayed again over the
	 * log it was taken with. */
	CHECK_ERR(ks_log_compact(s.store), 0);
	CHECK_ERR(ks_log_compact(s.store), 0);
	st_close(&s);
	st_open_ok(&s, dir, KS_SYNC_FULL);
	st_expect(&s, "bin", 4, binary, sizeof(binary));
	st_expect(&s, "renamed", 3, "three", 5);
	st_expect(&s, "new2", 0, "", 0);
	st_close(&s);
	printf("snapshot: ok\n");

	test_lock(dir);
	printf("lock: ok\n");

	st_rmrf(dir);
	free(dir);
	printf("1 passed, 0 failed\n");
	return 0;
}
