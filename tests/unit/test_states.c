/*
 * The state table: create, lookup, delete, rename, name rules and limits.
 */
#include "harness.h"
#include "store_etcd.h"

#include <sys/stat.h>

static void test_create_lookup(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state_attr a = kt_attr(), got;
	struct ks_state *st = NULL, *again = NULL;
	char name[KS_NAME_MAX + 1];

	a.mode = S_IFDIR | 04750;
	KT_ERR(ks_state_create(eng, "counter", &a, &st), 0);
	KT_REQUIRE(st);
	KT_ERR(ks_state_lookup(eng, "counter", &again), 0);
	KT_CHECK(again == st);
	KT_CHECK(ks_state_name(st, name));
	KT_CHECK(strcmp(name, "counter") == 0);
	KT_CHECK(!ks_state_deleted(st));
	KT_CHECK(ks_state_id(st) != 0);

	ks_state_get_attr(st, &got);
	KT_EQ(got.uid, a.uid);
	KT_EQ(got.gid, a.gid);
	KT_EQ(got.mode, 04750);     /* permission bits only */
	KT_EQ(got.ctime.tv_sec, a.ctime.tv_sec);
	KT_EQ(got.ctime.tv_nsec, a.ctime.tv_nsec);

	/* out may be NULL */
	KT_ERR(ks_state_create(eng, "other", &a, NULL), 0);
	ks_state_unref(again);
	KT_ERR(ks_state_lookup(eng, "other", &again), 0);
	KT_CHECK(ks_state_id(again) != ks_state_id(st));
	ks_state_unref(again);

	KT_ERR(ks_state_lookup(eng, "missing", &again), ENOENT);
	KT_ERR(ks_state_lookup(eng, "", &again), ENOENT);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_initial_state(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "fresh");
	struct ks_page *p;

	KT_EQ(ks_state_version(st), 0);
	p = ks_state_current(st);
	KT_REQUIRE(p);
	KT_EQ(p->version, 0);
	KT_EQ(p->len, 0);
	ks_page_unref(p);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_name_rules(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state_attr a = kt_attr();
	struct ks_state *st;
	char longest[KS_NAME_MAX + 1], toolong[KS_NAME_MAX + 2];
	struct ks_engine_stats stats;

	memset(longest, 'x', KS_NAME_MAX);
	longest[KS_NAME_MAX] = '\0';
	memset(toolong, 'y', KS_NAME_MAX + 1);
	toolong[KS_NAME_MAX + 1] = '\0';

	KT_ERR(ks_name_check("a"), 0);
	KT_ERR(ks_name_check("x.y"), 0);
	KT_ERR(ks_name_check("a b-c_d"), 0);
	KT_ERR(ks_name_check(longest), 0);
	KT_ERR(ks_name_check(""), EINVAL);
	KT_ERR(ks_name_check("."), EINVAL);
	KT_ERR(ks_name_check(".."), EINVAL);
	KT_ERR(ks_name_check(".txn"), EINVAL);
	KT_ERR(ks_name_check(".hidden"), EINVAL);
	KT_ERR(ks_name_check("a/b"), EINVAL);
	KT_ERR(ks_name_check("/"), EINVAL);
	KT_ERR(ks_name_check("trailing/"), EINVAL);
	KT_ERR(ks_name_check(toolong), ENAMETOOLONG);
	/* Control bytes: a name is one line of .events and of kstate ls. */
	KT_ERR(ks_name_check("x\ncommit other 99"), EINVAL);
	KT_ERR(ks_name_check("\n"), EINVAL);
	KT_ERR(ks_name_check("tab\there"), EINVAL);
	KT_ERR(ks_name_check("del\x7f"), EINVAL);
	KT_ERR(ks_name_check("\x01start"), EINVAL);
	KT_ERR(ks_name_check("unit\x1fsep"), EINVAL);
	KT_ERR(ks_name_check("cr\r"), EINVAL);
	KT_ERR(ks_name_check("\x1b[31mred"), EINVAL);
	/* Bytes past 0x7f are UTF-8 (or any other charset): names. */
	KT_ERR(ks_name_check("caf\xc3\xa9"), 0);
	KT_ERR(ks_name_check("\x80\xff"), 0);
	KT_ERR(ks_name_check(" "), 0);
	KT_ERR(ks_name_check("~"), 0);
	/* Too long wins over anything else wrong, as NAME_MAX in the kernel. */
	toolong[100] = '\n';
	KT_ERR(ks_name_check(toolong), ENAMETOOLONG);
	toolong[0] = '.';
	KT_ERR(ks_name_check(toolong), ENAMETOOLONG);
	toolong[0] = toolong[100] = 'y';
	longest[KS_NAME_MAX - 1] = '\t';
	KT_ERR(ks_name_check(longest), EINVAL);
	longest[KS_NAME_MAX - 1] = 'x';

	KT_ERR(ks_state_create(eng, "", &a, &st), EINVAL);
	KT_ERR(ks_state_create(eng, ".events", &a, &st), EINVAL);
	KT_ERR(ks_state_create(eng, "a/b", &a, &st), EINVAL);
	KT_ERR(ks_state_create(eng, toolong, &a, &st), ENAMETOOLONG);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.states, 0);

	KT_ERR(ks_state_create(eng, longest, &a, &st), 0);
	ks_state_unref(st);
	KT_ERR(ks_state_lookup(eng, longest, &st), 0);
	ks_state_unref(st);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.states, 1);
	ks_engine_free(eng);
}

/* Transactions have the names of states: a file in a state, a renamed
 * one, a .txn/ directory. */
static void test_txn_names(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *txn;
	struct ks_multi *m;
	char longest[KS_NAME_MAX + 1], toolong[1101];
	static const char *const bad[] = {
		"x\ncommit other 99", "t\tab", "d\x7f", "\x01", "\x1f", ".dot",
		"a/b", "",
	};

	memset(longest, 't', KS_NAME_MAX);
	longest[KS_NAME_MAX] = '\0';
	memset(toolong, 'u', sizeof(toolong) - 1);
	toolong[sizeof(toolong) - 1] = '\0';

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, bad[i], &txn),
		       EINVAL);
		KT_ERR(ks_multi_create(eng, bad[i], &m), EINVAL);
	}
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, toolong, &txn),
	       ENAMETOOLONG);
	toolong[KS_NAME_MAX + 1] = '\0';
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, true, toolong, &txn),
	       ENAMETOOLONG);
	KT_ERR(ks_multi_create(eng, toolong, &m), ENAMETOOLONG);
	KT_CHECK(ks_txn_find(st, toolong, &txn) == ENOENT);

	/* The longest name is a name; renames obey the same rules. */
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, longest, &txn), 0);
	ks_txn_unref(txn);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		KT_ERR(ks_txn_rename(st, longest, bad[i]), EINVAL);
	KT_ERR(ks_txn_rename(st, longest, toolong), ENAMETOOLONG);
	KT_ERR(ks_txn_find(st, longest, &txn), 0);
	ks_txn_unref(txn);
	KT_ERR(ks_txn_rename(st, longest, "ok"), 0);
	KT_ERR(ks_txn_unlink(st, "ok"), 0);

	KT_ERR(ks_multi_create(eng, longest, &m), 0);
	ks_multi_unref(m);
	KT_ERR(ks_multi_remove(eng, longest), 0);

	/* An anonymous transaction (writes to data) has no name to check. */
	KT_ERR(ks_txn_begin(st, KS_TXN_PATCH, false, NULL, &txn), 0);
	ks_txn_unref(txn);
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* Keys another etcd client wrote under the prefix: a key that is no name
 * is nobody's state, whatever it holds. */
static void test_etcd_key_names(void)
{
	static const char *const bad[] = {
		"x\ncommit other 99", ".version/x\ny", ".meta/t\tab",
		".mtime/d\x7f", "\x01", ".hidden", "a/b",
	};
	const char *name;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		KT_EQ(ke_parse_key(bad[i], strlen(bad[i]), &name), KE_OTHER);
	KT_EQ(ke_parse_key("caf\xc3\xa9", 5, &name), KE_PAGE);
	KT_EQ(ke_parse_key(".version/ok", 11, &name), KE_VERSION);
	KT_CHECK(strcmp(name, "ok") == 0);
}

static void test_eexist(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state_attr a = kt_attr();
	struct ks_state *st = kt_state(eng, "dup"), *other = NULL;

	KT_ERR(ks_state_create(eng, "dup", &a, &other), EEXIST);
	KT_CHECK(other == NULL);
	/* The existing state is untouched. */
	KT_ERR(ks_state_commit_bytes(st, "x", 1, NULL), 0);
	KT_ERR(ks_state_create(eng, "dup", &a, &other), EEXIST);
	KT_EQ(ks_state_version(st), 1);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_max_states(void)
{
	struct ks_engine *eng = kt_engine(4096, 3, 16, NULL);
	struct ks_state_attr a = kt_attr();
	struct ks_engine_stats stats;

	KT_ERR(ks_state_create(eng, "s1", &a, NULL), 0);
	KT_ERR(ks_state_create(eng, "s2", &a, NULL), 0);
	KT_ERR(ks_state_create(eng, "s3", &a, NULL), 0);
	KT_ERR(ks_state_create(eng, "s4", &a, NULL), ENOSPC);
	/* EEXIST still wins for an existing name. */
	KT_ERR(ks_state_create(eng, "s1", &a, NULL), EEXIST);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.states, 3);
	/* Deleting one makes room again. */
	KT_ERR(ks_state_delete(eng, "s2"), 0);
	KT_ERR(ks_state_create(eng, "s4", &a, NULL), 0);
	KT_ERR(ks_state_create(eng, "s5", &a, NULL), ENOSPC);
	ks_engine_free(eng);
}

static void count_state(void *arg, struct ks_state *st)
{
	(void)st;
	(*(size_t *)arg)++;
}

static void test_many_states(void)
{
	/* Enough to make the table grow several times. */
	struct ks_engine *eng = kt_engine(64, 100000, 4, NULL);
	struct ks_state_attr a = kt_attr();
	struct ks_engine_stats stats;
	char name[32];
	int bad = 0;

	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "state-%d", i);
		if (ks_state_create(eng, name, &a, NULL) != 0)
			bad++;
	}
	KT_EQ(bad, 0);
	for (int i = 0; i < 2000; i++) {
		struct ks_state *st;
		char got[KS_NAME_MAX + 1];

		snprintf(name, sizeof(name), "state-%d", i);
		if (ks_state_lookup(eng, name, &st) != 0) {
			bad++;
			continue;
		}
		if (!ks_state_name(st, got) || strcmp(got, name) != 0)
			bad++;
		ks_state_unref(st);
	}
	KT_EQ(bad, 0);
	for (int i = 0; i < 2000; i += 2) {
		snprintf(name, sizeof(name), "state-%d", i);
		if (ks_state_delete(eng, name) != 0)
			bad++;
	}
	KT_EQ(bad, 0);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.states, 1000);
	{
		size_t seen = 0;

		KT_EQ(ks_engine_foreach(eng, count_state, &seen), 1000);
		KT_EQ(seen, 1000);
	}
	ks_engine_free(eng);
}

static void test_foreach(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state_attr a = kt_attr();
	size_t seen = 0;

	KT_EQ(ks_engine_foreach(eng, count_state, &seen), 0);
	KT_ERR(ks_state_create(eng, "one", &a, NULL), 0);
	KT_ERR(ks_state_create(eng, "two", &a, NULL), 0);
	KT_ERR(ks_state_create(eng, "three", &a, NULL), 0);
	KT_ERR(ks_state_delete(eng, "two"), 0);
	KT_EQ(ks_engine_foreach(eng, count_state, &seen), 2);
	KT_EQ(seen, 2);
	ks_engine_free(eng);
}

static void test_delete(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "gone"), *again;
	struct ks_txn *txn;
	struct ks_engine_stats stats;
	char name[KS_NAME_MAX + 1];

	KT_ERR(ks_state_commit_bytes(st, "hello", 5, NULL), 0);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.bytes, 5);
	KT_ERR(ks_state_delete(eng, "gone"), 0);
	KT_ERR(ks_state_lookup(eng, "gone", &again), ENOENT);
	KT_ERR(ks_state_delete(eng, "gone"), ENOENT);
	KT_ERR(ks_state_delete(eng, "never"), ENOENT);
	KT_ERR(ks_state_rename(eng, "gone", "back"), ENOENT);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.states, 0);
	KT_EQ(stats.bytes, 0);

	/* The reference we hold still works, but the state is dead. */
	KT_CHECK(ks_state_deleted(st));
	KT_CHECK(!ks_state_name(st, name));
	KT_ERR(ks_state_open_file(st), ENOENT);
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, NULL, &txn), ENOENT);
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "t", &txn), ENOENT);
	KT_ERR(ks_state_commit_bytes(st, "x", 1, NULL), ENOENT);
	KT_PAGE_IS(st, "hello");
	KT_EQ(ks_state_version(st), 1);

	/* The name can be used again, by a new state. */
	KT_ERR(ks_state_lookup(eng, "gone", &again), ENOENT);
	again = kt_state(eng, "gone");
	KT_CHECK(again != st);
	KT_CHECK(ks_state_id(again) != ks_state_id(st));
	KT_EQ(ks_state_version(again), 0);
	ks_state_unref(again);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_delete_enotempty(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "busy");
	struct ks_txn *named, *anon;

	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "t1", &named), 0);
	KT_ERR(ks_state_delete(eng, "busy"), ENOTEMPTY);
	KT_CHECK(!ks_state_deleted(st));
	/* Dropping our reference leaves the name: still not empty. */
	ks_txn_unref(named);
	KT_ERR(ks_state_delete(eng, "busy"), ENOTEMPTY);
	KT_ERR(ks_txn_unlink(st, "t1"), 0);

	/* An anonymous transaction (a direct write to data) is not a file
	 * in the directory: it does not block rmdir by itself. */
	KT_ERR(ks_txn_begin(st, KS_TXN_REPLACE, true, NULL, &anon), 0);
	KT_ERR(ks_state_delete(eng, "busy"), 0);
	KT_ERR(ks_txn_write(anon, "x", 1, 0), 0);
	KT_ERR(ks_txn_commit(anon, NULL), ENOENT);
	KT_EQ(ks_state_version(st), 0);
	ks_txn_unref(anon);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_delete_ebusy(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "open");

	KT_ERR(ks_state_open_file(st), 0);
	KT_ERR(ks_state_open_file(st), 0);
	KT_ERR(ks_state_delete(eng, "open"), EBUSY);
	ks_state_close_file(st);
	KT_ERR(ks_state_delete(eng, "open"), EBUSY);
	ks_state_close_file(st);
	KT_ERR(ks_state_delete(eng, "open"), 0);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_rename(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "old"), *other = kt_state(eng, "taken");
	struct ks_state *found;
	struct ks_state_attr before, after;
	char name[KS_NAME_MAX + 1], toolong[KS_NAME_MAX + 2];
	uint64_t id = ks_state_id(st);

	memset(toolong, 'z', KS_NAME_MAX + 1);
	toolong[KS_NAME_MAX + 1] = '\0';

	KT_ERR(ks_state_commit_bytes(st, "payload", 7, NULL), 0);
	ks_state_get_attr(st, &before);
	KT_ERR(ks_state_rename(eng, "old", "new"), 0);
	KT_ERR(ks_state_lookup(eng, "old", &found), ENOENT);
	KT_ERR(ks_state_lookup(eng, "new", &found), 0);
	KT_CHECK(found == st);
	ks_state_unref(found);
	KT_CHECK(ks_state_name(st, name));
	KT_CHECK(strcmp(name, "new") == 0);
	KT_EQ(ks_state_id(st), id);
	KT_EQ(ks_state_version(st), 1);
	KT_PAGE_IS(st, "payload");
	ks_state_get_attr(st, &after);
	KT_EQ(after.uid, before.uid);
	KT_EQ(after.mode, before.mode);
	KT_CHECK(after.ctime.tv_sec > before.ctime.tv_sec ||
		 (after.ctime.tv_sec == before.ctime.tv_sec &&
		  after.ctime.tv_nsec >= before.ctime.tv_nsec));

	KT_ERR(ks_state_rename(eng, "new", "taken"), EEXIST);
	KT_ERR(ks_state_rename(eng, "missing", "whatever"), ENOENT);
	KT_ERR(ks_state_rename(eng, "new", ""), EINVAL);
	KT_ERR(ks_state_rename(eng, "new", ".dot"), EINVAL);
	KT_ERR(ks_state_rename(eng, "new", "a/b"), EINVAL);
	KT_ERR(ks_state_rename(eng, "new", toolong), ENAMETOOLONG);
	KT_ERR(ks_state_rename(eng, "new", "new"), 0);
	KT_ERR(ks_state_lookup(eng, "new", &found), 0);
	ks_state_unref(found);
	KT_ERR(ks_state_lookup(eng, "taken", &found), 0);
	KT_CHECK(found == other);
	ks_state_unref(found);

	/* The old name is free for a new state. */
	KT_ERR(ks_state_create(eng, "old", &before, NULL), 0);
	ks_state_unref(other);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_set_attr(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "perm");
	struct ks_state_attr a = kt_attr(), got;

	a.uid = 42;
	a.gid = 43;
	a.mode = S_IFDIR | 0700;
	a.ctime.tv_sec += 10;
	KT_ERR(ks_state_set_attr(st, &a), 0);
	ks_state_get_attr(st, &got);
	KT_EQ(got.uid, 42);
	KT_EQ(got.gid, 43);
	KT_EQ(got.mode, 0700);
	KT_EQ(got.ctime.tv_sec, a.ctime.tv_sec);
	KT_EQ(ks_state_version(st), 0);   /* not a commit */
	KT_ERR(ks_state_delete(eng, "perm"), 0);
	KT_ERR(ks_state_set_attr(st, &a), ENOENT);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_free_with_txns(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "left");
	struct ks_txn *t;

	/* Transaction files left at unmount: freeing the engine must free
	 * them with their state.  (Only LeakSanitizer sees a failure.) */
	KT_ERR(ks_state_commit_bytes(st, "page", 4, NULL), 0);
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "t1", &t), 0);
	KT_ERR(ks_txn_write(t, "x", 1, 0), 0);
	ks_txn_unref(t);
	KT_ERR(ks_txn_begin(st, KS_TXN_REPLACE, true, "t2", &t), 0);
	ks_txn_unref(t);
	ks_state_unref(st);
	ks_engine_free(eng);
}

int main(void)
{
	KT_RUN(test_create_lookup, "create, lookup, name, id and attributes");
	KT_RUN(test_initial_state,
	       "a new state has version 0 and an empty page");
	KT_RUN(test_name_rules,
	       "names: empty, leading '.', '/' give EINVAL, >255 bytes "
	       "ENAMETOOLONG, 255 bytes is fine");
	KT_RUN(test_txn_names, "transaction and .txn names: the rules of "
			       "state names (EINVAL, ENAMETOOLONG)");
	KT_RUN(test_etcd_key_names, "etcd keys that are no names are "
				    "nobody's state");
	KT_RUN(test_eexist, "creating an existing name gives EEXIST");
	KT_RUN(test_max_states, "ENOSPC past max_states, room after delete");
	KT_RUN(test_many_states,
	       "2000 states survive table growth and deletes");
	KT_RUN(test_foreach, "foreach visits every live state once");
	KT_RUN(test_delete,
	       "delete: ENOENT afterwards, dead state refuses new work");
	KT_RUN(test_delete_enotempty,
	       "delete is ENOTEMPTY while a named transaction exists");
	KT_RUN(test_delete_ebusy, "delete is EBUSY while a file is open");
	KT_RUN(test_rename,
	       "rename keeps id, page and version; EEXIST, ENOENT, EINVAL");
	KT_RUN(test_set_attr, "set_attr changes owner and mode, not version");
	KT_RUN(test_free_with_txns,
	       "engine_free releases states that still have named "
	       "transactions");
	return kt_finish("test_states");
}
