/*
 * The engine in front of a store: what it appends, and that a failing
 * append changes nothing.
 */
#include "harness.h"
#include "fake_store.h"

#include <sys/stat.h>

static struct fake_store fs;
static int listener_calls;

static void count_commits(void *arg, struct ks_state *st, uint64_t version)
{
	(void)arg;
	(void)st;
	(void)version;
	listener_calls++;
}

static struct ks_engine *store_engine(void)
{
	struct ks_engine *eng;

	fake_store_init(&fs);
	eng = kt_engine(4096, 16, 16, &fs.base);
	listener_calls = 0;
	ks_engine_set_listener(eng, count_commits, NULL);
	return eng;
}

static void store_done(struct ks_engine *eng)
{
	ks_engine_free(eng);
	fake_store_destroy(&fs);
}

static bool same_time(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static const struct fake_rec *last_rec(size_t want_nrecs)
{
	KT_EQ(fs.nrecs, want_nrecs);
	if (fs.nrecs != want_nrecs || !fs.nrecs)
		return NULL;
	KT_EQ(fs.recs[fs.nrecs - 1].unit_size, 1);
	return &fs.recs[fs.nrecs - 1];
}

static void test_state_records(void)
{
	struct ks_engine *eng = store_engine();
	struct ks_state_attr a = kt_attr(), got;
	struct ks_state *st;
	const struct fake_rec *r;

	a.uid = 7;
	a.gid = 8;
	a.mode = S_IFDIR | 02751;
	KT_ERR(ks_state_create(eng, "alpha", &a, &st), 0);
	r = last_rec(1);
	KT_REQUIRE(r);
	KT_EQ(r->rec.type, KS_REC_CREATE);
	KT_EQ(r->rec.state_id, ks_state_id(st));
	KT_CHECK(r->rec.name && strcmp(r->rec.name, "alpha") == 0);
	KT_EQ(r->rec.uid, 7);
	KT_EQ(r->rec.gid, 8);
	KT_EQ(r->rec.mode, 02751);
	KT_CHECK(same_time(r->rec.time, a.ctime));

	KT_ERR(ks_state_rename(eng, "alpha", "beta"), 0);
	r = last_rec(2);
	KT_REQUIRE(r);
	KT_EQ(r->rec.type, KS_REC_RENAME);
	KT_EQ(r->rec.state_id, ks_state_id(st));
	KT_CHECK(r->rec.name && strcmp(r->rec.name, "beta") == 0);
	ks_state_get_attr(st, &got);
	KT_CHECK(same_time(r->rec.time, got.ctime));
	/* Nothing to record for a rename onto itself, or a failed one. */
	KT_ERR(ks_state_rename(eng, "beta", "beta"), 0);
	KT_ERR(ks_state_rename(eng, "beta", ".x"), EINVAL);
	KT_ERR(ks_state_rename(eng, "nope", "x"), ENOENT);
	KT_EQ(fs.nrecs, 2);

	a.uid = 70;
	a.gid = 80;
	a.mode = S_IFDIR | 0600;
	a.ctime.tv_sec += 5;
	KT_ERR(ks_state_set_attr(st, &a), 0);
	r = last_rec(3);
	KT_REQUIRE(r);
	KT_EQ(r->rec.type, KS_REC_ATTR);
	KT_EQ(r->rec.state_id, ks_state_id(st));
	KT_EQ(r->rec.uid, 70);
	KT_EQ(r->rec.gid, 80);
	KT_EQ(r->rec.mode, 0600);
	KT_CHECK(same_time(r->rec.time, a.ctime));

	/* Nothing recorded for refused operations. */
	KT_ERR(ks_state_create(eng, "beta", &a, NULL), EEXIST);
	KT_ERR(ks_state_create(eng, ".bad", &a, NULL), EINVAL);
	KT_ERR(ks_state_delete(eng, "nope"), ENOENT);
	KT_ERR(ks_state_open_file(st), 0);
	KT_ERR(ks_state_delete(eng, "beta"), EBUSY);
	ks_state_close_file(st);
	KT_EQ(fs.nrecs, 3);

	KT_ERR(ks_state_delete(eng, "beta"), 0);
	r = last_rec(4);
	KT_REQUIRE(r);
	KT_EQ(r->rec.type, KS_REC_DELETE);
	KT_EQ(r->rec.state_id, ks_state_id(st));
	KT_EQ(fs.appends, 4);
	KT_EQ(listener_calls, 0);
	ks_state_unref(st);
	store_done(eng);
}

static void check_commit_rec(const struct fake_rec *r, struct ks_state *st,
			     uint64_t version, const char *bytes)
{
	struct ks_page *p = ks_state_current(st);

	KT_EQ(r->rec.type, KS_REC_COMMIT);
	KT_EQ(r->rec.state_id, ks_state_id(st));
	KT_EQ(r->rec.version, version);
	KT_BYTES(r->rec.bytes ? r->rec.bytes : "", r->rec.len, bytes,
		 strlen(bytes));
	/* The record describes the page that was installed. */
	KT_EQ(p->version, version);
	KT_CHECK(same_time(r->rec.time, p->mtime));
	ks_page_unref(p);
}

static void test_commit_records(void)
{
	struct ks_engine *eng = store_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *t;
	const struct fake_rec *r;
	uint64_t v;

	KT_ERR(ks_state_commit_bytes(st, "bytes", 5, &v), 0);
	r = last_rec(2);
	KT_REQUIRE(r);
	check_commit_rec(r, st, 1, "bytes");

	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "t", &t), 0);
	KT_ERR(ks_txn_write(t, "BY", 2, 0), 0);
	KT_ERR(ks_txn_commit_named(st, "t", &v), 0);
	r = last_rec(3);
	KT_REQUIRE(r);
	check_commit_rec(r, st, 2, "BYtes");

	/* A read-only commit, and a conflicting one, record nothing. */
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_ERR(ks_txn_write(t, "x", 1, 0), 0);
	KT_ERR(ks_state_commit_bytes(st, "", 0, &v), 0);
	r = last_rec(4);
	KT_REQUIRE(r);
	check_commit_rec(r, st, 3, "");
	KT_ERR(ks_txn_commit(t, &v), EAGAIN);
	KT_EQ(fs.nrecs, 4);
	ks_txn_unref(t);

	/* PATCH: the record holds the merged page. */
	KT_ERR(ks_state_commit_bytes(st, "0123456789", 10, &v), 0);
	KT_ERR(ks_txn_begin(st, KS_TXN_PATCH, false, NULL, &t), 0);
	KT_ERR(ks_txn_write(t, "ab", 2, 2), 0);
	KT_ERR(ks_state_commit_bytes(st, "ABCDEFGHIJKL", 12, &v), 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 6);
	r = last_rec(7);
	KT_REQUIRE(r);
	check_commit_rec(r, st, 6, "ABabEFGHIJKL");
	ks_txn_unref(t);

	/* REPLACE */
	KT_ERR(ks_txn_begin(st, KS_TXN_REPLACE, true, NULL, &t), 0);
	KT_ERR(ks_txn_write(t, "r", 1, 0), 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	r = last_rec(8);
	KT_REQUIRE(r);
	check_commit_rec(r, st, 7, "r");
	ks_txn_unref(t);

	KT_EQ(listener_calls, 7);
	KT_EQ(fs.failed, 0);
	ks_state_unref(st);
	store_done(eng);
}

/* ---- failing appends ---------------------------------------------------- */

static void test_create_fails(void)
{
	static const int errs[] = { EIO, ENOSPC };
	struct ks_engine *eng = store_engine();
	struct ks_state_attr a = kt_attr();
	struct ks_engine_stats stats;
	struct ks_state *st = NULL;

	for (int i = 0; i < 2; i++) {
		fake_store_fail(&fs, errs[i], 1);
		KT_ERR(ks_state_create(eng, "s", &a, &st), errs[i]);
		KT_CHECK(st == NULL);
		KT_ERR(ks_state_lookup(eng, "s", &st), ENOENT);
		ks_engine_stats(eng, &stats);
		KT_EQ(stats.states, 0);
	}
	KT_EQ(fs.failed, 2);
	KT_EQ(fs.nrecs, 0);
	/* The name is still free. */
	KT_ERR(ks_state_create(eng, "s", &a, &st), 0);
	KT_EQ(fs.nrecs, 1);
	ks_state_unref(st);
	store_done(eng);
}

static void test_state_ops_fail(void)
{
	struct ks_engine *eng = store_engine();
	struct ks_state_attr a = kt_attr(), before, got;
	struct ks_state *st = kt_state(eng, "s"), *found;
	struct ks_engine_stats stats;
	char name[KS_NAME_MAX + 1];

	KT_ERR(ks_state_commit_bytes(st, "keep", 4, NULL), 0);

	fake_store_fail(&fs, EIO, 1);
	KT_ERR(ks_state_delete(eng, "s"), EIO);
	KT_ERR(ks_state_lookup(eng, "s", &found), 0);
	KT_CHECK(found == st);
	ks_state_unref(found);
	KT_CHECK(!ks_state_deleted(st));
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.states, 1);
	KT_EQ(stats.bytes, 4);

	fake_store_fail(&fs, ENOSPC, 1);
	KT_ERR(ks_state_rename(eng, "s", "t"), ENOSPC);
	KT_ERR(ks_state_lookup(eng, "t", &found), ENOENT);
	KT_ERR(ks_state_lookup(eng, "s", &found), 0);
	ks_state_unref(found);
	KT_CHECK(ks_state_name(st, name) && strcmp(name, "s") == 0);

	ks_state_get_attr(st, &before);
	a.uid = 99;
	a.mode = 0600;
	a.ctime.tv_sec += 100;
	fake_store_fail(&fs, EIO, 1);
	KT_ERR(ks_state_set_attr(st, &a), EIO);
	ks_state_get_attr(st, &got);
	KT_EQ(got.uid, before.uid);
	KT_EQ(got.mode, before.mode);
	KT_CHECK(same_time(got.ctime, before.ctime));

	KT_EQ(ks_state_version(st), 1);
	KT_PAGE_IS(st, "keep");
	KT_EQ(fs.nrecs, 2);
	KT_EQ(fs.failed, 3);
	KT_EQ(listener_calls, 1);
	ks_state_unref(st);
	store_done(eng);
}

static void test_commit_fails(void)
{
	static const int errs[] = { EIO, ENOSPC };
	struct ks_engine *eng = store_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_engine_stats before, after;
	struct ks_page *p0, *p1;
	struct ks_txn *t, *found;
	uint64_t v;

	KT_ERR(ks_state_commit_bytes(st, "stable", 6, NULL), 0);
	ks_engine_stats(eng, &before);
	p0 = ks_state_current(st);

	for (int i = 0; i < 2; i++) {
		int err = errs[i];

		fake_store_fail(&fs, err, 1);
		KT_ERR(ks_state_commit_bytes(st, "new", 3, &v), err);

		KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "c", &t), 0);
		KT_ERR(ks_txn_write(t, "CHECK", 5, 0), 0);
		fake_store_fail(&fs, err, 1);
		KT_ERR(ks_txn_commit_named(st, "c", &v), err);
		/* The transaction is left as it was, name and all. */
		KT_ERR(ks_txn_find(st, "c", &found), 0);
		ks_txn_unref(found);
		KT_CHECK(ks_txn_written(t));
		KT_EQ(ks_txn_base(t), 1);
		KT_TXN_IS(t, "CHECKe");
		ks_txn_unref(t);
		KT_ERR(ks_txn_unlink(st, "c"), 0);

		KT_ERR(ks_txn_begin(st, KS_TXN_REPLACE, true, NULL, &t), 0);
		KT_ERR(ks_txn_write(t, "R", 1, 0), 0);
		fake_store_fail(&fs, err, 1);
		KT_ERR(ks_txn_commit(t, &v), err);
		ks_txn_unref(t);

		KT_ERR(ks_txn_begin(st, KS_TXN_PATCH, false, NULL, &t), 0);
		KT_ERR(ks_txn_write(t, "P", 1, 0), 0);
		fake_store_fail(&fs, err, 1);
		KT_ERR(ks_txn_commit(t, &v), err);
		ks_txn_unref(t);

		/* Version and page unchanged: the very same page. */
		KT_EQ(ks_state_version(st), 1);
		p1 = ks_state_current(st);
		KT_CHECK(p1 == p0);
		KT_BYTES(p1->bytes, p1->len, "stable", 6);
		ks_page_unref(p1);
	}
	ks_engine_stats(eng, &after);
	KT_EQ(after.commits, before.commits);
	KT_EQ(after.bytes, before.bytes);
	KT_EQ(after.txns, 0);
	KT_EQ(fs.failed, 8);
	KT_EQ(fs.nrecs, 2);
	KT_EQ(listener_calls, 1);

	/* Once the store works again, the same transaction commits. */
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "c", &t), 0);
	KT_ERR(ks_txn_write(t, "again", 5, 0), 0);
	fake_store_fail(&fs, EIO, 1);
	KT_ERR(ks_txn_commit(t, &v), EIO);
	v = 0;
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 2);
	KT_PAGE_IS(st, "againe");
	KT_EQ(fs.nrecs, 3);
	KT_EQ(listener_calls, 2);
	ks_txn_unref(t);

	/* A read-only commit does not touch the store: it cannot fail. */
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, NULL, &t), 0);
	fake_store_fail(&fs, EIO, -1);
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 2);
	fake_store_fail(&fs, 0, 0);
	ks_txn_unref(t);

	ks_page_unref(p0);
	ks_state_unref(st);
	store_done(eng);
}

int main(void)
{
	KT_RUN(test_state_records,
	       "create, rename, attr and delete records carry the right "
	       "fields; refused operations record nothing");
	KT_RUN(test_commit_records,
	       "commit records carry id, version, bytes and time, one per "
	       "writing commit");
	KT_RUN(test_create_fails,
	       "a failing append (EIO, ENOSPC) makes create fail and leaves "
	       "nothing");
	KT_RUN(test_state_ops_fail,
	       "a failing append leaves delete, rename and set_attr undone");
	KT_RUN(test_commit_fails,
	       "a failing append leaves version and page unchanged, returns "
	       "the errno, calls no listener");
	return kt_finish("test_store");
}
