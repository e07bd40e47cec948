/*
 * The commit listener: once per commit that wrote, with the new version,
 * outside the engine's locks; never for a commit that failed or only read.
 */
#include "harness.h"
#include "fake_store.h"

#define MAX_CALLS 256

struct call {
	struct ks_state *st;
	uint64_t version;
	uint64_t seen_version;   /* ks_state_version from inside the call */
};

static struct call calls[MAX_CALLS];
static int ncalls;
static bool reenter;         /* call back into the engine from the listener */
static struct ks_engine *current_eng;

static void listener(void *arg, struct ks_state *st, uint64_t version)
{
	KT_CHECK(arg == &ncalls);
	if (ncalls < MAX_CALLS) {
		calls[ncalls].st = st;
		calls[ncalls].version = version;
		calls[ncalls].seen_version = ks_state_version(st);
	}
	ncalls++;
	if (reenter) {
		/* Each of these takes a lock the commit took: it would hang
		 * if the listener ran under one. */
		struct ks_page *p = ks_state_current(st);
		struct ks_state *found;
		struct ks_txn *t;
		char name[KS_NAME_MAX + 1];

		KT_CHECK(p->version >= version);
		ks_page_unref(p);
		KT_CHECK(ks_state_name(st, name));
		found = NULL;
		KT_ERR(ks_state_lookup(current_eng, name, &found), 0);
		KT_CHECK(found == st);
		ks_state_unref(found);
		KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, NULL, &t), 0);
		KT_ERR(ks_txn_commit(t, NULL), 0);   /* takes commit_lock */
		ks_txn_unref(t);
		KT_ERR(ks_state_create(current_eng, "made-in-listener",
				       &(struct ks_state_attr){ .mode = 0700 },
				       NULL), ncalls == 1 ? 0 : EEXIST);
	}
}

static struct ks_engine *listened(struct ks_store *store)
{
	struct ks_engine *eng = kt_engine(64, 16, 16, store);

	ks_engine_set_listener(eng, listener, &ncalls);
	ncalls = 0;
	reenter = false;
	current_eng = eng;
	return eng;
}

static void expect_call(int i, struct ks_state *st, uint64_t version)
{
	KT_CHECK(i < ncalls);
	if (i >= ncalls)
		return;
	KT_CHECK(calls[i].st == st);
	KT_EQ(calls[i].version, version);
	KT_EQ(calls[i].seen_version, version);
}

static void test_every_writing_commit(void)
{
	struct ks_engine *eng = listened(NULL);
	struct ks_state *a = kt_state(eng, "a"), *b = kt_state(eng, "b");
	struct ks_txn *t;
	uint64_t v;

	KT_EQ(ncalls, 0);                       /* create is no commit */
	KT_ERR(ks_state_commit_bytes(a, "1", 1, &v), 0);
	expect_call(0, a, 1);
	KT_ERR(ks_txn_begin(a, KS_TXN_CHECKED, false, "t", &t), 0);
	KT_ERR(ks_txn_write(t, "2", 1, 0), 0);
	KT_ERR(ks_txn_commit_named(a, "t", &v), 0);
	expect_call(1, a, 2);
	KT_ERR(ks_txn_write(t, "3", 1, 0), 0);  /* the txn goes on */
	KT_ERR(ks_txn_commit(t, &v), 0);
	expect_call(2, a, 3);
	ks_txn_unref(t);
	KT_ERR(ks_txn_begin(b, KS_TXN_REPLACE, true, NULL, &t), 0);
	KT_ERR(ks_txn_commit(t, &v), 0);        /* empty: a write */
	expect_call(3, b, 1);
	ks_txn_unref(t);
	KT_ERR(ks_txn_begin(a, KS_TXN_PATCH, false, NULL, &t), 0);
	KT_ERR(ks_txn_truncate(t, 0), 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	expect_call(4, a, 4);
	ks_txn_unref(t);
	KT_ERR(ks_state_commit_bytes(b, "", 0, &v), 0);
	expect_call(5, b, 2);
	KT_ERR(ks_txn_begin(b, KS_TXN_APPEND, false, NULL, &t), 0);
	KT_ERR(ks_txn_write(t, "+", 1, 0), 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	expect_call(6, b, 3);
	KT_ERR(ks_txn_commit(t, &v), 0);        /* nothing new: no call */
	ks_txn_unref(t);
	KT_EQ(ncalls, 7);

	/* Per state, versions rise by exactly one from call to call. */
	{
		uint64_t last_a = 0, last_b = 0;

		for (int i = 0; i < ncalls; i++) {
			uint64_t *last = calls[i].st == a ? &last_a : &last_b;

			KT_EQ(calls[i].version, *last + 1);
			*last = calls[i].version;
		}
	}
	ks_state_unref(a);
	ks_state_unref(b);
	ks_engine_free(eng);
}

static void test_no_call(void)
{
	struct ks_engine *eng = listened(NULL);
	struct ks_state_attr attr = kt_attr();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *t, *u, *ro;
	char big[65];

	memset(big, 'x', sizeof(big));
	KT_ERR(ks_state_commit_bytes(st, "base", 4, NULL), 0);
	KT_EQ(ncalls, 1);

	/* read-only commits, in each mode */
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "ro", &t), 0);
	KT_ERR(ks_txn_commit_named(st, "ro", NULL), 0);
	ks_txn_unref(t);
	KT_ERR(ks_txn_begin(st, KS_TXN_REPLACE, false, NULL, &t), 0);
	KT_ERR(ks_txn_commit(t, NULL), 0);
	ks_txn_unref(t);
	KT_ERR(ks_txn_begin(st, KS_TXN_PATCH, false, NULL, &t), 0);
	KT_ERR(ks_txn_commit(t, NULL), 0);
	ks_txn_unref(t);
	KT_EQ(ncalls, 1);

	/* a conflict, and a read-only validation that fails */
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, NULL, &t), 0);
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, NULL, &u), 0);
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, NULL, &ro), 0);
	KT_ERR(ks_txn_write(t, "t", 1, 0), 0);
	KT_ERR(ks_txn_write(u, "u", 1, 0), 0);
	KT_ERR(ks_txn_commit(t, NULL), 0);
	KT_EQ(ncalls, 2);
	KT_ERR(ks_txn_commit(u, NULL), EAGAIN);
	KT_ERR(ks_txn_commit(u, NULL), EAGAIN);
	KT_ERR(ks_txn_commit(ro, NULL), EAGAIN);
	ks_txn_unref(ro);
	ks_txn_unref(u);
	ks_txn_unref(t);
	KT_EQ(ncalls, 2);

	/* errors */
	KT_ERR(ks_state_commit_bytes(st, big, sizeof(big), NULL), EFBIG);
	KT_ERR(ks_txn_begin(st, KS_TXN_REPLACE, true, NULL, &t), 0);
	ks_txn_set_error(t, EIO);
	KT_ERR(ks_txn_commit(t, NULL), EIO);
	ks_txn_unref(t);
	KT_EQ(ncalls, 2);

	/* table operations */
	KT_ERR(ks_state_set_attr(st, &attr), 0);
	KT_ERR(ks_state_rename(eng, "s", "r"), 0);
	KT_ERR(ks_state_create(eng, "other", &attr, NULL), 0);
	KT_ERR(ks_state_delete(eng, "other"), 0);
	KT_EQ(ncalls, 2);

	/* commits to a deleted state */
	KT_ERR(ks_txn_begin(st, KS_TXN_REPLACE, true, NULL, &t), 0);
	KT_ERR(ks_state_delete(eng, "r"), 0);
	KT_ERR(ks_txn_commit(t, NULL), ENOENT);
	KT_ERR(ks_state_commit_bytes(st, "x", 1, NULL), ENOENT);
	ks_txn_unref(t);
	KT_EQ(ncalls, 2);

	/* No listener: commits go on fine. */
	ks_engine_set_listener(eng, NULL, NULL);
	ks_state_unref(st);
	st = kt_state(eng, "quiet");
	KT_ERR(ks_state_commit_bytes(st, "x", 1, NULL), 0);
	KT_EQ(ncalls, 2);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_store_failure(void)
{
	struct fake_store fs;
	struct ks_engine *eng;
	struct ks_state *st;
	struct ks_txn *t;

	fake_store_init(&fs);
	eng = listened(&fs.base);
	st = kt_state(eng, "s");
	fake_store_fail(&fs, EIO, 1);
	KT_ERR(ks_state_commit_bytes(st, "x", 1, NULL), EIO);
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, NULL, &t), 0);
	KT_ERR(ks_txn_write(t, "y", 1, 0), 0);
	fake_store_fail(&fs, ENOSPC, 1);
	KT_ERR(ks_txn_commit(t, NULL), ENOSPC);
	KT_EQ(ncalls, 0);
	KT_ERR(ks_txn_commit(t, NULL), 0);
	expect_call(0, st, 1);
	KT_EQ(ncalls, 1);
	ks_txn_unref(t);
	ks_state_unref(st);
	ks_engine_free(eng);
	fake_store_destroy(&fs);
}

static void test_outside_locks(void)
{
	struct ks_engine *eng = listened(NULL);
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *t;

	reenter = true;
	KT_ERR(ks_state_commit_bytes(st, "a", 1, NULL), 0);
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "t", &t), 0);
	KT_ERR(ks_txn_write(t, "b", 1, 0), 0);
	KT_ERR(ks_txn_commit_named(st, "t", NULL), 0);
	ks_txn_unref(t);
	reenter = false;
	KT_EQ(ncalls, 2);
	ks_state_unref(st);
	ks_engine_free(eng);
}

int main(void)
{
	KT_RUN(test_every_writing_commit,
	       "one call per writing commit, in every mode, with the new "
	       "version, rising by one per state");
	KT_RUN(test_no_call,
	       "no call for read-only, conflicting, failed or table-only "
	       "operations");
	KT_RUN(test_store_failure, "no call when the store append fails");
	KT_RUN(test_outside_locks,
	       "the listener runs outside the engine's locks: it may call "
	       "back in");
	return kt_finish("test_listener");
}
