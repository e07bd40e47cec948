/*
 * Changes that arrive from the store (another host's), and a store whose
 * own compare fails (EAGAIN): they go through the same commit path as local
 * commits, wake the listener, show in .events, and never lose a write.
 */
#include "harness.h"
#include "events.h"
#include "fake_store.h"
#include "store.h"

#include <stdbool.h>

/* ---- a store that says "another host committed first" ------------------ */

struct racing_store {
	struct ks_store base;
	struct ks_engine *eng;
	int eagain_left;           /* appends still to refuse */
	int appends;               /* appends accepted */
	int catch_ups;
	/* What "the other host" committed, delivered by catch_up. */
	struct ks_rec pending;
	bool has_pending;
};

static int racing_append(struct ks_store *store, const struct ks_rec *recs,
			 size_t n)
{
	struct racing_store *rs = (struct racing_store *)store;

	if (rs->eagain_left > 0) {
		rs->eagain_left--;
		return EAGAIN;
	}
	rs->appends++;
	return 0;
}

static int racing_catch_up(struct ks_store *store)
{
	struct racing_store *rs = (struct racing_store *)store;

	rs->catch_ups++;
	if (rs->has_pending) {
		rs->has_pending = false;
		return ks_engine_apply_remote(rs->eng, &rs->pending, 1);
	}
	return 0;
}

static const struct ks_store_ops racing_ops = {
	.kind = "racing",
	.append = racing_append,
	.catch_up = racing_catch_up,
};

/* ---- listening ---------------------------------------------------------- */

struct heard {
	int calls;
	uint64_t last_version;
	struct ks_state *last_state;
};

static void hear(void *arg, struct ks_state *st, uint64_t version)
{
	struct heard *h = arg;

	h->calls++;
	h->last_version = version;
	h->last_state = st;
}

static struct ks_rec commit_rec(const char *name, uint64_t version,
				const char *bytes)
{
	struct ks_rec r = { .type = KS_REC_COMMIT, .name = name,
			    .version = version, .base = version - 1,
			    .bytes = bytes, .len = strlen(bytes) };

	clock_gettime(CLOCK_REALTIME, &r.time);
	return r;
}

/* Everything .events holds after cursor, as one string. */
static void read_events(struct ks_engine *eng, uint64_t *cursor, char *buf,
			size_t len)
{
	size_t n = ks_events_read(ks_engine_events(eng), cursor, buf, len - 1, NULL);

	buf[n] = 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_remote_commit(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct heard h = { 0 };
	struct ks_rec r = commit_rec("s", 1, "from afar");
	uint64_t cursor = ks_events_end(ks_engine_events(eng));
	char ev[512];

	ks_engine_set_listener(eng, hear, &h);
	KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);
	KT_EQ(ks_state_version(st), 1);
	KT_PAGE_IS(st, "from afar");
	KT_EQ(h.calls, 1);
	KT_EQ(h.last_version, 1);
	KT_CHECK(h.last_state == st);
	read_events(eng, &cursor, ev, sizeof(ev));
	KT_CHECK(strcmp(ev, "commit s 1\n") == 0);

	/* By id as well as by name. */
	r = commit_rec(NULL, 2, "by id");
	r.state_id = ks_state_id(st);
	KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);
	KT_PAGE_IS(st, "by id");
	KT_EQ(h.calls, 2);

	/* A version not newer than ours is ours come back: skipped. */
	r = commit_rec("s", 2, "again");
	KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);
	r = commit_rec("s", 1, "older");
	KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);
	KT_PAGE_IS(st, "by id");
	KT_EQ(ks_state_version(st), 2);
	KT_EQ(h.calls, 2);
	read_events(eng, &cursor, ev, sizeof(ev));
	KT_CHECK(strcmp(ev, "commit s 2\n") == 0);

	/* A transaction begun before a remote commit conflicts. */
	{
		struct ks_txn *t;

		KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, NULL, &t), 0);
		KT_ERR(ks_txn_write(t, "mine", 4, 0), 0);
		r = commit_rec("s", 3, "theirs");
		KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);
		KT_ERR(ks_txn_commit(t, NULL), EAGAIN);
		KT_PAGE_IS(st, "theirs");
		ks_txn_unref(t);
	}
	ks_engine_set_listener(eng, NULL, NULL);
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* What the name listener heard: the names, one a line. */
struct names_heard {
	char log[512];
};

static void hear_name(void *arg, const char *name)
{
	struct names_heard *h = arg;
	size_t len = strlen(h->log);

	snprintf(h->log + len, sizeof(h->log) - len, "%s\n", name);
}

static void test_remote_table(void)
{
	struct names_heard names = { "" };
	struct ks_engine *eng = kt_default_engine();
	struct ks_rec r = { .type = KS_REC_CREATE, .name = "new", .mode = 0640,
			    .uid = 5, .gid = 6 };
	uint64_t cursor = ks_events_end(ks_engine_events(eng));
	struct ks_state_attr a;
	struct ks_state *st, *st2;
	struct ks_txn *t, *found;
	char ev[512], name[KS_NAME_MAX + 1];

	ks_engine_set_name_listener(eng, hear_name, &names);
	clock_gettime(CLOCK_REALTIME, &r.time);
	KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);
	KT_ERR(ks_state_lookup(eng, "new", &st), 0);
	ks_state_get_attr(st, &a);
	KT_EQ(a.mode, 0640);
	KT_EQ(a.uid, 5);
	/* Twice is once. */
	KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);

	r = (struct ks_rec){ .type = KS_REC_RENAME,
			     .state_id = ks_state_id(st), .name = "renamed" };
	KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);
	KT_CHECK(ks_state_name(st, name) && strcmp(name, "renamed") == 0);

	/* A remote delete is forced: open files and named transactions do
	 * not hold it, and both find the state gone afterwards. */
	KT_ERR(ks_state_open_file(st), 0);
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "t", &t), 0);
	KT_ERR(ks_txn_write(t, "x", 1, 0), 0);
	KT_ERR(ks_state_delete(eng, "renamed"), ENOTEMPTY);
	r = (struct ks_rec){ .type = KS_REC_DELETE, .name = "renamed" };
	KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);
	KT_CHECK(ks_state_deleted(st));
	KT_ERR(ks_state_lookup(eng, "renamed", &st2), ENOENT);
	KT_ERR(ks_txn_find(st, "t", &found), ENOENT);
	KT_ERR(ks_txn_commit(t, NULL), ENOENT);
	KT_ERR(ks_state_commit_bytes(st, "y", 1, NULL), ENOENT);
	KT_ERR(ks_state_open_file(st), ENOENT);
	ks_state_close_file(st);
	ks_txn_unref(t);
	/* Deleting what is gone already is nothing. */
	KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);

	read_events(eng, &cursor, ev, sizeof(ev));
	KT_CHECK(strcmp(ev, "create new\ndelete new\ncreate renamed\n"
			"delete renamed\n") == 0);
	/* Every name a remote change added or removed, once each; local
	 * changes and skipped ones are not heard. */
	KT_CHECK(strcmp(names.log, "new\nnew\nrenamed\nrenamed\n") == 0);
	KT_ERR(ks_state_create(eng, "local", &a, &st2), 0);
	r = (struct ks_rec){ .type = KS_REC_CREATE, .name = "local" };
	KT_ERR(ks_engine_apply_remote(eng, &r, 1), 0);
	KT_ERR(ks_state_delete(eng, "local"), 0);
	ks_state_unref(st2);
	KT_CHECK(strcmp(names.log, "new\nnew\nrenamed\nrenamed\n") == 0);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_remote_multi(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *a = kt_state(eng, "a"), *b = kt_state(eng, "b");
	struct heard h = { 0 };
	struct ks_rec u[3];
	uint64_t cursor;
	char ev[512];

	KT_ERR(ks_state_commit_bytes(a, "a1", 2, NULL), 0);
	cursor = ks_events_end(ks_engine_events(eng));
	ks_engine_set_listener(eng, hear, &h);
	u[0] = commit_rec("b", 1, "b1");
	u[1] = (struct ks_rec){ .type = KS_REC_CHECK, .name = "a",
				.version = 1, .base = 1 };
	u[2] = commit_rec("a", 2, "a2");
	KT_ERR(ks_engine_apply_remote(eng, u, 3), 0);
	KT_PAGE_IS(a, "a2");
	KT_PAGE_IS(b, "b1");
	KT_EQ(h.calls, 2);
	/* One run of lines, in state id order, like a local .txn commit. */
	read_events(eng, &cursor, ev, sizeof(ev));
	KT_CHECK(strcmp(ev, "commit a 2\ncommit b 1\n") == 0);

	/* Half of it already here: the rest still comes. */
	u[0] = commit_rec("a", 2, "a2");
	u[1] = commit_rec("b", 2, "b2");
	KT_ERR(ks_engine_apply_remote(eng, u, 2), 0);
	KT_PAGE_IS(a, "a2");
	KT_PAGE_IS(b, "b2");
	KT_EQ(h.calls, 3);
	ks_engine_set_listener(eng, NULL, NULL);
	ks_state_unref(a);
	ks_state_unref(b);
	ks_engine_free(eng);
}

static void test_store_eagain(void)
{
	struct racing_store rs = { .base.ops = &racing_ops };
	struct ks_engine *eng = kt_engine(4096, 16, 16, &rs.base);
	struct ks_engine_stats stats;
	struct ks_state *st;
	struct ks_txn *t;
	struct heard h = { 0 };
	uint64_t v = 0;

	rs.eng = eng;
	st = kt_state(eng, "s");
	ks_engine_set_listener(eng, hear, &h);

	/* Blind: another host's commit comes in through catch_up, and the
	 * write goes over it. */
	rs.eagain_left = 1;
	rs.pending = commit_rec("s", 1, "theirs");
	rs.has_pending = true;
	KT_ERR(ks_state_commit_bytes(st, "mine", 4, &v), 0);
	KT_EQ(v, 2);
	KT_PAGE_IS(st, "mine");
	KT_EQ(rs.catch_ups, 1);
	KT_EQ(h.calls, 2);

	/* APPEND is blind too, and appends to the newer page. */
	KT_ERR(ks_txn_begin(st, KS_TXN_APPEND, false, NULL, &t), 0);
	KT_ERR(ks_txn_write(t, "+", 1, 4), 0);
	rs.eagain_left = 1;
	rs.pending = commit_rec("s", 3, "newer");
	rs.has_pending = true;
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 4);
	KT_PAGE_IS(st, "newer+");
	ks_txn_unref(t);

	/* CHECKED: the store's conflict is a conflict; nothing applied, the
	 * transaction left as it was, and it commits once the store lets
	 * it (here: nobody else came, so the base is still current). */
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.conflicts, 0);
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "c", &t), 0);
	KT_ERR(ks_txn_write(t, "C", 1, 0), 0);
	rs.eagain_left = 1;
	KT_ERR(ks_txn_commit(t, &v), EAGAIN);
	KT_EQ(ks_state_version(st), 4);
	KT_PAGE_IS(st, "newer+");
	KT_TXN_IS(t, "Cewer+");
	KT_EQ(ks_txn_base(t), 4);
	KT_CHECK(ks_txn_named(t));
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.conflicts, 1);
	KT_EQ(rs.catch_ups, 2); /* no catch_up for a checked commit */
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 5);
	ks_txn_unref(t);

	/* A store that never lets a blind write through: bounded. */
	rs.eagain_left = 1000;
	KT_ERR(ks_state_commit_bytes(st, "never", 5, &v), EAGAIN);
	KT_EQ(rs.eagain_left, 1000 - KS_COMMIT_TRIES);
	KT_EQ(ks_state_version(st), 5);
	rs.eagain_left = 0;

	ks_engine_set_listener(eng, NULL, NULL);
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* What a remote store needs to compare: a multi-state commit's unit has a
 * COMMIT (version and base) per written state and a CHECK per state only
 * read, every record named. */
static void test_unit_records(void)
{
	struct fake_store fs;
	struct ks_engine *eng;
	struct ks_state *a, *b;
	struct ks_multi *m;
	struct ks_txn *ta, *tb;
	char buf[8];

	fake_store_init(&fs);
	eng = kt_engine(4096, 16, 16, &fs.base);
	a = kt_state(eng, "a");
	b = kt_state(eng, "b");
	KT_ERR(ks_state_commit_bytes(a, "a1", 2, NULL), 0);
	KT_EQ(fs.recs[fs.nrecs - 1].rec.base, 0);
	KT_CHECK(strcmp(fs.recs[fs.nrecs - 1].rec.name, "a") == 0);

	/* Read-only: nothing appended. */
	KT_ERR(ks_multi_create(eng, "ro", &m), 0);
	KT_ERR(ks_multi_join(m, a, &ta), 0);
	KT_EQ(ks_txn_read(ta, buf, sizeof(buf), 0), 2);
	fake_store_clear(&fs);
	KT_ERR(ks_multi_commit(m), 0);
	KT_EQ(fs.nrecs, 0);
	ks_txn_unref(ta);
	ks_multi_unref(m);

	KT_ERR(ks_multi_create(eng, "T", &m), 0);
	KT_ERR(ks_multi_join(m, b, &tb), 0);
	KT_ERR(ks_multi_join(m, a, &ta), 0);
	KT_ERR(ks_txn_write(tb, "b1", 2, 0), 0);
	KT_ERR(ks_multi_commit(m), 0);
	KT_EQ(fs.nrecs, 2);
	if (fs.nrecs == 2) {
		const struct ks_rec *r0 = &fs.recs[0].rec, *r1 = &fs.recs[1].rec;

		KT_EQ(fs.recs[0].unit_size, 2);
		KT_EQ(r0->type, KS_REC_CHECK);
		KT_EQ(r0->state_id, ks_state_id(a));
		KT_EQ(r0->version, 1);
		KT_EQ(r0->base, 1);
		KT_CHECK(strcmp(r0->name, "a") == 0);
		KT_EQ(r1->type, KS_REC_COMMIT);
		KT_EQ(r1->version, 1);
		KT_EQ(r1->base, 0);
		KT_CHECK(strcmp(r1->name, "b") == 0);
	}
	ks_txn_unref(ta);
	ks_txn_unref(tb);
	ks_multi_unref(m);
	ks_state_unref(a);
	ks_state_unref(b);
	ks_engine_free(eng);
	fake_store_destroy(&fs);
}

int main(void)
{
	KT_RUN(test_unit_records,
	       "records name their state and carry base versions; a "
	       "multi-state unit has a CHECK per state only read");
	KT_RUN(test_remote_commit,
	       "a remote commit wakes the listener and appears in .events; "
	       "an older or equal version is skipped");
	KT_RUN(test_remote_table,
	       "remote create, rename and delete; a remote delete with an "
	       "open file and a transaction is forced; the name listener "
	       "hears each name they change");
	KT_RUN(test_remote_multi,
	       "a remote multi-state unit installs together, one run of "
	       "events");
	KT_RUN(test_store_eagain,
	       "a store's EAGAIN: blind commits catch up and retry, a "
	       "CHECKED commit fails with EAGAIN and stays as it was");
	return kt_finish("test_remote");
}
