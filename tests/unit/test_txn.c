/*
 * Transactions, single-threaded: the three modes, limits, naming, and what
 * a transaction becomes after it commits.
 */
#include "harness.h"

static void put(struct ks_state *st, const char *s)
{
	KT_ERR(ks_state_commit_bytes(st, s, strlen(s), NULL), 0);
}

static void wr(struct ks_txn *txn, const char *s, off_t off)
{
	KT_ERR(ks_txn_write(txn, s, strlen(s), off), 0);
}

static struct ks_txn *begin(struct ks_state *st, enum ks_txn_mode mode,
			    bool empty, const char *name)
{
	struct ks_txn *txn = NULL;
	int err = ks_txn_begin(st, mode, empty, name, &txn);

	if (err || !txn) {
		fprintf(stderr, "ks_txn_begin: %s\n", strerror(err));
		exit(EXIT_FAILURE);
	}
	return txn;
}

/* ---- CHECKED ------------------------------------------------------------ */

static void test_checked_private_copy(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *a, *b;
	uint64_t v = 0;

	put(st, "abc");
	a = begin(st, KS_TXN_CHECKED, false, "a");
	b = begin(st, KS_TXN_CHECKED, false, "b");
	KT_EQ(ks_txn_base(a), 1);
	KT_TXN_IS(a, "abc");
	KT_CHECK(!ks_txn_written(a));
	KT_CHECK(ks_txn_named(a));
	KT_CHECK(ks_txn_state(a) == st);

	wr(a, "XY", 1);
	KT_CHECK(ks_txn_written(a));
	KT_TXN_IS(a, "aXY");
	wr(a, "!", 5);                 /* a hole reads as zeros */
	{
		char buf[16];
		size_t n = ks_txn_read(a, buf, sizeof(buf), 0);

		KT_BYTES(buf, n, "aXY\0\0!", 6);
		n = ks_txn_read(a, buf, 2, 4);
		KT_BYTES(buf, n, "\0!", 2);
		KT_EQ(ks_txn_read(a, buf, sizeof(buf), 6), 0);
		KT_EQ(ks_txn_read(a, buf, sizeof(buf), 100), 0);
	}
	/* Nobody else sees it. */
	KT_PAGE_IS(st, "abc");
	KT_EQ(ks_state_version(st), 1);
	KT_TXN_IS(b, "abc");

	KT_ERR(ks_txn_truncate(a, 2), 0);
	KT_TXN_IS(a, "aX");
	KT_ERR(ks_txn_truncate(a, 4), 0);  /* grows with zeros */
	{
		char buf[16];
		size_t n = ks_txn_read(a, buf, sizeof(buf), 0);

		KT_BYTES(buf, n, "aX\0\0", 4);
	}
	KT_ERR(ks_txn_truncate(a, 2), 0);

	KT_ERR(ks_txn_commit(a, &v), 0);
	KT_EQ(v, 2);
	KT_EQ(ks_state_version(st), 2);
	KT_PAGE_IS(st, "aX");
	/* b was based on version 1: it keeps its snapshot, and conflicts. */
	KT_TXN_IS(b, "abc");
	KT_ERR(ks_txn_commit(b, &v), EAGAIN);
	ks_txn_unref(a);
	ks_txn_unref(b);
	KT_ERR(ks_txn_unlink(st, "b"), 0);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_checked_conflict(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_engine_stats stats;
	struct ks_txn *t, *found;
	uint64_t v = 99;

	put(st, "one");
	t = begin(st, KS_TXN_CHECKED, false, "t");
	wr(t, "mine", 0);
	put(st, "two");
	KT_ERR(ks_txn_commit(t, &v), EAGAIN);
	KT_EQ(v, 99);                  /* untouched on failure */
	KT_EQ(ks_state_version(st), 2);
	KT_PAGE_IS(st, "two");
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.conflicts, 1);
	/* T is left as it was: named, written, same base, same content. */
	KT_ERR(ks_txn_find(st, "t", &found), 0);
	KT_CHECK(found == t);
	ks_txn_unref(found);
	KT_CHECK(ks_txn_named(t));
	KT_CHECK(ks_txn_written(t));
	KT_EQ(ks_txn_base(t), 1);
	KT_TXN_IS(t, "mine");
	/* and fails again, the same way. */
	KT_ERR(ks_txn_commit_named(st, "t", &v), EAGAIN);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.conflicts, 2);
	KT_EQ(stats.txns, 1);
	ks_txn_unref(t);
	KT_ERR(ks_txn_unlink(st, "t"), 0);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.txns, 0);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_checked_readonly(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_engine_stats stats;
	struct ks_txn *t, *found;
	uint64_t v = 99;

	/* Base current: 0, nothing committed, and the name is gone. */
	put(st, "x");
	t = begin(st, KS_TXN_CHECKED, false, "ro");
	KT_ERR(ks_txn_commit_named(st, "ro", &v), 0);
	KT_EQ(v, 1);
	KT_EQ(ks_state_version(st), 1);
	KT_PAGE_IS(st, "x");
	KT_ERR(ks_txn_find(st, "ro", &found), ENOENT);
	KT_CHECK(!ks_txn_named(t));
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.commits, 1);
	KT_EQ(stats.txns, 0);
	ks_txn_unref(t);

	/* Base not current: EAGAIN, and the transaction stays. */
	t = begin(st, KS_TXN_CHECKED, false, "ro");
	put(st, "y");
	v = 99;
	KT_ERR(ks_txn_commit_named(st, "ro", &v), EAGAIN);
	KT_EQ(v, 99);
	KT_EQ(ks_state_version(st), 2);
	KT_ERR(ks_txn_find(st, "ro", &found), 0);
	ks_txn_unref(found);
	ks_txn_unref(t);
	KT_ERR(ks_txn_unlink(st, "ro"), 0);

	/* An anonymous read-only one, on a state never committed. */
	{
		struct ks_state *fresh = kt_state(eng, "fresh");

		t = begin(fresh, KS_TXN_CHECKED, false, NULL);
		KT_CHECK(!ks_txn_named(t));
		KT_EQ(ks_txn_base(t), 0);
		KT_EQ(ks_txn_size(t), 0);
		v = 99;
		KT_ERR(ks_txn_commit(t, &v), 0);
		KT_EQ(v, 0);
		KT_EQ(ks_state_version(fresh), 0);
		ks_txn_unref(t);
		ks_state_unref(fresh);
	}
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.commits, 2);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_checked_empty(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *t;
	uint64_t v = 0;

	put(st, "full");
	/* O_TRUNC on a transaction file: an empty page, which is a write. */
	t = begin(st, KS_TXN_CHECKED, true, "t");
	KT_CHECK(ks_txn_written(t));
	KT_TXN_IS(t, "");
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 2);
	KT_PAGE_IS(st, "");
	ks_txn_unref(t);

	/* ... and it still checks its base. */
	t = begin(st, KS_TXN_CHECKED, true, "t");
	wr(t, "new", 0);
	put(st, "other");
	KT_ERR(ks_txn_commit(t, &v), EAGAIN);
	KT_PAGE_IS(st, "other");
	ks_txn_unref(t);
	KT_ERR(ks_txn_unlink(st, "t"), 0);

	/* An empty transaction that grows by truncate only. */
	t = begin(st, KS_TXN_CHECKED, true, NULL);
	KT_ERR(ks_txn_truncate(t, 3), 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	{
		struct ks_page *p = ks_state_current(st);

		KT_BYTES(p->bytes, p->len, "\0\0\0", 3);
		ks_page_unref(p);
	}
	ks_txn_unref(t);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_checked_big_page(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "big");
	unsigned char page[1000], want[1000];
	struct ks_txn *t;
	struct ks_page *p;

	memset(page, 'p', sizeof(page));
	KT_ERR(ks_state_commit_bytes(st, page, sizeof(page), NULL), 0);

	/* The first write, near the start of a page larger than the first
	 * allocation, copies the whole base page. */
	t = begin(st, KS_TXN_CHECKED, false, NULL);
	wr(t, "X", 0);
	KT_EQ(ks_txn_size(t), sizeof(page));
	KT_ERR(ks_txn_commit(t, NULL), 0);
	memcpy(want, page, sizeof(want));
	want[0] = 'X';
	p = ks_state_current(st);
	KT_BYTES(p->bytes, p->len, want, sizeof(want));
	ks_page_unref(p);
	ks_txn_unref(t);

	/* The same for a first truncate that shrinks. */
	t = begin(st, KS_TXN_REPLACE, false, NULL);
	KT_ERR(ks_txn_truncate(t, 10), 0);
	KT_ERR(ks_txn_commit(t, NULL), 0);
	p = ks_state_current(st);
	KT_BYTES(p->bytes, p->len, want, 10);
	ks_page_unref(p);
	ks_txn_unref(t);
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* ---- REPLACE ------------------------------------------------------------ */

static void test_replace(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *t;
	uint64_t v = 0;

	put(st, "a long old value");
	t = begin(st, KS_TXN_REPLACE, true, NULL);
	KT_TXN_IS(t, "");
	wr(t, "abc", 0);
	put(st, "someone else was here");
	put(st, "and here");
	KT_ERR(ks_txn_commit(t, &v), 0);   /* never conflicts */
	KT_EQ(v, 4);
	KT_PAGE_IS(st, "abc");             /* exactly the bytes written */
	ks_txn_unref(t);

	/* Written nothing, with empty: the state becomes empty. */
	t = begin(st, KS_TXN_REPLACE, true, NULL);
	put(st, "between");
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 6);
	KT_PAGE_IS(st, "");
	ks_txn_unref(t);

	/* Several writes, out of order. */
	t = begin(st, KS_TXN_REPLACE, true, NULL);
	wr(t, "world", 6);
	wr(t, "hello ", 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_PAGE_IS(st, "hello world");
	ks_txn_unref(t);

	/* Not empty and never written: commits nothing. */
	t = begin(st, KS_TXN_REPLACE, false, NULL);
	put(st, "later");
	v = 0;
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 8);
	KT_EQ(ks_state_version(st), 8);
	KT_PAGE_IS(st, "later");
	ks_txn_unref(t);
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* ---- PATCH -------------------------------------------------------------- */

/* Commits a PATCH transaction built by fn over page BEFORE, with the state
 * moved to page LATEST in between, and checks the result. */
static void patch_case(const char *before, const char *latest,
		       void (*fn)(struct ks_txn *), const void *want,
		       size_t wantlen)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "p");
	struct ks_txn *t;
	struct ks_page *p;
	uint64_t v = 0;

	put(st, before);
	t = begin(st, KS_TXN_PATCH, false, NULL);
	fn(t);
	if (latest)
		put(st, latest);
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, latest ? 3 : 2);
	p = ks_state_current(st);
	KT_BYTES(p->bytes, p->len, want, wantlen);
	ks_page_unref(p);
	ks_txn_unref(t);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void p_write_head(struct ks_txn *t) { wr(t, "J", 0); }
static void p_write_past(struct ks_txn *t) { wr(t, "XY", 5); }
static void p_trunc_write(struct ks_txn *t)
{
	KT_ERR(ks_txn_truncate(t, 3), 0);
	wr(t, "XY", 5);
}
static void p_write_trunc(struct ks_txn *t)
{
	wr(t, "ABCDEFG", 0);
	KT_ERR(ks_txn_truncate(t, 3), 0);
}
static void p_write_trunc_up(struct ks_txn *t)
{
	wr(t, "XY", 0);
	KT_ERR(ks_txn_truncate(t, 5), 0);
}
static void p_trunc_only(struct ks_txn *t) { KT_ERR(ks_txn_truncate(t, 5), 0); }
static void p_trunc_grow(struct ks_txn *t) { KT_ERR(ks_txn_truncate(t, 8), 0); }
static void p_shrink_grow(struct ks_txn *t)
{
	KT_ERR(ks_txn_truncate(t, 2), 0);
	KT_ERR(ks_txn_truncate(t, 6), 0);
}
static void p_write_shrink_grow(struct ks_txn *t)
{
	wr(t, "ABCDEFGH", 0);
	KT_ERR(ks_txn_truncate(t, 2), 0);
	KT_ERR(ks_txn_truncate(t, 6), 0);
}

static void test_patch(void)
{
	/* A written range lands on the latest page, not on the one at
	 * begin. */
	patch_case("hello world", "goodbye world!", p_write_head,
		   "Joodbye world!", 14);
	patch_case("hello world", NULL, p_write_head, "Jello world", 11);
	/* Writing past the end extends with zeros. */
	patch_case("abc", NULL, p_write_past, "abc\0\0XY", 7);
	patch_case("abc", "abcdefghij", p_write_past, "abcdeXYhij", 10);
	/* truncate then write */
	patch_case("hello world", NULL, p_trunc_write, "hel\0\0XY", 7);
	patch_case("x", "hello world", p_trunc_write, "hel\0\0XY", 7);
	/* write then truncate */
	patch_case("hello world", NULL, p_write_trunc, "ABC", 3);
	patch_case("hello world", NULL, p_write_trunc_up, "XYllo", 5);
	/* truncate alone applies to the latest page */
	patch_case("hello world", "HELLO WORLD", p_trunc_only, "HELLO", 5);
	patch_case("abc", NULL, p_trunc_grow, "abc\0\0\0\0\0", 8);
}

static void test_patch_shrink_then_grow(void)
{
	/* ftruncate(fd, 2) then ftruncate(fd, 6) on any file leaves two
	 * bytes and four zeros: the cut bytes do not come back. */
	patch_case("hello world", NULL, p_shrink_grow, "he\0\0\0\0", 6);
	patch_case("hello world", NULL, p_write_shrink_grow, "AB\0\0\0\0", 6);
}

static void test_patch_misc(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "p");
	struct ks_txn *t;
	uint64_t v = 0;

	put(st, "data");
	/* Never written: nothing committed, no conflict. */
	t = begin(st, KS_TXN_PATCH, false, NULL);
	put(st, "newer");
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 2);
	KT_EQ(ks_state_version(st), 2);
	KT_PAGE_IS(st, "newer");
	/* It goes on: a second round on the same transaction. */
	wr(t, "N", 0);
	put(st, "other");
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 4);
	KT_PAGE_IS(st, "Nther");
	/* A third round with nothing written commits nothing. */
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 4);
	ks_txn_unref(t);

	/* empty: the page is cut to zero, then written. */
	t = begin(st, KS_TXN_PATCH, true, NULL);
	KT_CHECK(ks_txn_written(t));
	wr(t, "ab", 0);
	put(st, "zzzzzz");
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_PAGE_IS(st, "ab");
	ks_txn_unref(t);

	/* A write at the very end of the largest page. */
	t = begin(st, KS_TXN_PATCH, false, NULL);
	wr(t, "E", 4095);
	KT_ERR(ks_txn_commit(t, &v), 0);
	{
		struct ks_page *p = ks_state_current(st);

		KT_EQ(p->len, 4096);
		KT_CHECK(p->len == 4096 && p->bytes[0] == 'a' &&
			 p->bytes[2] == 0 && p->bytes[4095] == 'E');
		ks_page_unref(p);
	}
	ks_txn_unref(t);
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* ---- APPEND ------------------------------------------------------------- */

static void test_append(void)
{
	struct ks_engine *eng = kt_engine(16, 16, 16, NULL);
	struct ks_state *st = kt_state(eng, "log");
	struct ks_txn *t;
	uint64_t v = 0;

	put(st, "ab");
	t = begin(st, KS_TXN_APPEND, false, NULL);
	wr(t, "cd", 2);
	put(st, "XYZ");
	/* Appended to the latest page, wherever the kernel thought the end
	 * was; never conflicts. */
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 3);
	KT_PAGE_IS(st, "XYZcd");
	/* It goes on: the next round appends to the new latest page. */
	wr(t, "1", 0);
	wr(t, "2", 0);
	put(st, "xyz");
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 5);
	KT_PAGE_IS(st, "xyz12");
	/* Nothing written: nothing committed. */
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 5);
	/* truncate drops what was appended and cuts the latest page. */
	wr(t, "lost", 0);
	KT_ERR(ks_txn_truncate(t, 1), 0);
	wr(t, "Q", 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_PAGE_IS(st, "xQ");
	/* ... or extends it with zeros. */
	KT_ERR(ks_txn_truncate(t, 4), 0);
	wr(t, "c", 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	{
		struct ks_page *p = ks_state_current(st);

		KT_BYTES(p->bytes, p->len, "xQ\0\0c", 5);
		ks_page_unref(p);
	}
	/* Past max_size once appended to the latest page: EFBIG at commit,
	 * and nothing changes. */
	v = ks_state_version(st);
	wr(t, "0123456789", 0);       /* 5 + 10 fits ... */
	put(st, "ABCDEFGHIJ");        /* ... 10 + 10 does not */
	KT_ERR(ks_txn_commit(t, NULL), EFBIG);
	KT_EQ(ks_state_version(st), v + 1);
	KT_PAGE_IS(st, "ABCDEFGHIJ");
	KT_ERR(ks_txn_write(t, "0123456", 7, 0), EFBIG);   /* 17 buffered */
	ks_txn_unref(t);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_append_grow_efbig(void)
{
	struct ks_engine *eng = kt_engine(16, 16, 16, NULL);
	struct ks_state *st = kt_state(eng, "log");
	struct ks_txn *t;
	struct ks_page *p;

	/* A truncate that grows the page counts towards max_size too:
	 * 10 bytes, then 10 appended, is 20 > 16. */
	put(st, "ab");
	t = begin(st, KS_TXN_APPEND, false, NULL);
	KT_ERR(ks_txn_truncate(t, 10), 0);
	wr(t, "0123456789", 0);
	KT_ERR(ks_txn_commit(t, NULL), EFBIG);
	ks_txn_unref(t);
	t = begin(st, KS_TXN_APPEND, false, NULL);
	KT_ERR(ks_txn_truncate(t, 16), 0);
	wr(t, "x", 0);
	KT_ERR(ks_txn_commit(t, NULL), EFBIG);
	ks_txn_unref(t);
	/* No page larger than max_size was ever installed. */
	p = ks_state_current(st);
	KT_CHECK(p->len <= 16);
	KT_EQ(p->version, 1);
	ks_page_unref(p);
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* ---- limits and errors -------------------------------------------------- */

static void test_efbig(void)
{
	static const enum ks_txn_mode modes[] = {
		KS_TXN_CHECKED, KS_TXN_REPLACE, KS_TXN_PATCH,
	};
	struct ks_engine *eng = kt_engine(16, 16, 16, NULL);
	struct ks_state *st = kt_state(eng, "small");
	char big[17];

	memset(big, 'b', sizeof(big));
	for (size_t m = 0; m < 3; m++) {
		struct ks_txn *t = begin(st, modes[m], false, NULL);

		KT_ERR(ks_txn_write(t, big, 16, 0), 0);       /* exactly max */
		KT_ERR(ks_txn_write(t, big, 17, 0), EFBIG);
		KT_ERR(ks_txn_write(t, big, 2, 15), EFBIG);
		KT_ERR(ks_txn_write(t, big, 1, 16), EFBIG);
		KT_ERR(ks_txn_write(t, big, 0, 17), EFBIG);
		KT_ERR(ks_txn_write(t, big, 1, -1), EINVAL);
		KT_ERR(ks_txn_truncate(t, 17), EFBIG);
		KT_ERR(ks_txn_truncate(t, -1), EINVAL);
		KT_ERR(ks_txn_truncate(t, 16), 0);
		/* The failed writes did not change the private page. */
		KT_EQ(ks_txn_size(t), 16);
		ks_txn_unref(t);
	}
	KT_ERR(ks_state_commit_bytes(st, big, 17, NULL), EFBIG);
	KT_EQ(ks_state_version(st), 0);
	KT_ERR(ks_state_commit_bytes(st, big, 16, NULL), 0);
	KT_EQ(ks_state_version(st), 1);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_efbig_fails_txn(void)
{
	static const enum ks_txn_mode modes[] = {
		KS_TXN_CHECKED, KS_TXN_REPLACE, KS_TXN_PATCH, KS_TXN_APPEND,
	};
	struct ks_engine *eng = kt_engine(16, 16, 16, NULL);
	struct ks_state *st = kt_state(eng, "small");
	char big[17];

	memset(big, 'b', sizeof(big));
	/* engine.h: a write past max_size writes nothing and leaves the
	 * transaction committable; the daemon dooms direct writes to data
	 * with ks_txn_set_error, so a failed "echo big > data" never
	 * commits (SPEC 4.1). */
	for (size_t m = 0; m < 4; m++) {
		struct ks_txn *t = begin(st, modes[m], m == 1, NULL);
		uint64_t before = ks_state_version(st);

		wr(t, "ok", 0);
		KT_ERR(ks_txn_write(t, big, 17, 0), EFBIG);
		KT_ERR(ks_txn_error(t), 0);
		ks_txn_set_error(t, EFBIG);
		KT_ERR(ks_txn_commit(t, NULL), EFBIG);
		KT_EQ(ks_state_version(st), before);
		KT_PAGE_IS(st, "");
		ks_txn_unref(t);
	}
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_set_error(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *t = begin(st, KS_TXN_REPLACE, true, "t"), *found;

	KT_ERR(ks_txn_error(t), 0);
	wr(t, "doomed", 0);
	ks_txn_set_error(t, EIO);
	ks_txn_set_error(t, ENOSPC);       /* the first error stays */
	KT_ERR(ks_txn_error(t), EIO);
	KT_ERR(ks_txn_commit(t, NULL), EIO);
	KT_EQ(ks_state_version(st), 0);
	KT_PAGE_IS(st, "");
	KT_ERR(ks_txn_find(st, "t", &found), 0);
	ks_txn_unref(found);
	ks_txn_unref(t);
	KT_ERR(ks_txn_unlink(st, "t"), 0);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_max_txns(void)
{
	struct ks_engine *eng = kt_engine(4096, 16, 3, NULL);
	struct ks_state *st = kt_state(eng, "s"), *st2 = kt_state(eng, "s2");
	struct ks_engine_stats stats;
	struct ks_txn *t[3], *extra = NULL, *anon[5];
	uint64_t v;

	t[0] = begin(st, KS_TXN_CHECKED, false, "t0");
	t[1] = begin(st, KS_TXN_CHECKED, false, "t1");
	t[2] = begin(st, KS_TXN_CHECKED, true, "t2");
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "t3", &extra), ENOSPC);
	KT_CHECK(extra == NULL);
	/* EEXIST for a taken name */
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "t1", &extra), EEXIST);
	/* Anonymous transactions do not count, nor other states'. */
	for (int i = 0; i < 5; i++)
		anon[i] = begin(st, KS_TXN_REPLACE, true, NULL);
	ks_txn_unref(begin(st2, KS_TXN_CHECKED, false, "t3"));
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.txns, 4);

	/* An aborted one frees its slot ... */
	KT_ERR(ks_txn_unlink(st, "t0"), 0);
	KT_ERR(ks_txn_unlink(st, "t0"), ENOENT);
	ks_txn_unref(t[0]);
	t[0] = begin(st, KS_TXN_CHECKED, false, "t3");
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "t4", &extra), ENOSPC);
	/* ... and so does a committed one, read-only or not ... */
	KT_ERR(ks_txn_commit_named(st, "t1", &v), 0);
	ks_txn_unref(t[1]);
	t[1] = begin(st, KS_TXN_CHECKED, false, "t1");
	KT_ERR(ks_txn_commit_named(st, "t2", &v), 0);
	ks_txn_unref(t[2]);
	t[2] = begin(st, KS_TXN_CHECKED, false, "t4");
	/* ... but not a failed commit. */
	put(st, "moved on");
	KT_ERR(ks_txn_commit_named(st, "t1", &v), EAGAIN);
	KT_ERR(ks_txn_begin(st, KS_TXN_CHECKED, false, "t5", &extra), ENOSPC);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.txns, 4);

	for (int i = 0; i < 3; i++)
		ks_txn_unref(t[i]);
	for (int i = 0; i < 5; i++)
		ks_txn_unref(anon[i]);
	KT_ERR(ks_txn_unlink(st, "t1"), 0);
	KT_ERR(ks_txn_unlink(st, "t3"), 0);
	KT_ERR(ks_txn_unlink(st, "t4"), 0);
	KT_ERR(ks_txn_unlink(st2, "t3"), 0);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.txns, 0);
	ks_state_unref(st);
	ks_state_unref(st2);
	ks_engine_free(eng);
}

/* ---- naming ------------------------------------------------------------- */

struct names {
	int n;
	char seen[8][32];
};

static void collect(void *arg, struct ks_txn *txn, const char *name)
{
	struct names *ns = arg;

	(void)txn;
	if (ns->n < 8)
		snprintf(ns->seen[ns->n], sizeof(ns->seen[0]), "%s", name);
	ns->n++;
}

static bool listed(const struct names *ns, const char *name)
{
	for (int i = 0; i < ns->n && i < 8; i++)
		if (strcmp(ns->seen[i], name) == 0)
			return true;
	return false;
}

static void test_find_unlink(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *t = begin(st, KS_TXN_CHECKED, false, "edit"), *found;
	struct names ns = { 0 };

	KT_ERR(ks_txn_find(st, "edit", &found), 0);
	KT_CHECK(found == t);
	ks_txn_unref(found);
	KT_ERR(ks_txn_find(st, "other", &found), ENOENT);
	ks_txn_unref(begin(st, KS_TXN_CHECKED, false, "second"));
	ks_txn_foreach(st, collect, &ns);
	KT_EQ(ns.n, 2);
	KT_CHECK(listed(&ns, "edit") && listed(&ns, "second"));

	/* rm: the name goes; the holder's reference stays valid. */
	wr(t, "abc", 0);
	KT_ERR(ks_txn_unlink(st, "edit"), 0);
	KT_ERR(ks_txn_find(st, "edit", &found), ENOENT);
	KT_CHECK(!ks_txn_named(t));
	KT_TXN_IS(t, "abc");
	KT_ERR(ks_txn_unlink(st, "edit"), ENOENT);
	KT_ERR(ks_txn_commit_named(st, "edit", NULL), ENOENT);
	/* The name can be reused at once. */
	ks_txn_unref(begin(st, KS_TXN_CHECKED, false, "edit"));
	ks_txn_unref(t);
	ns.n = 0;
	ks_txn_foreach(st, collect, &ns);
	KT_EQ(ns.n, 2);
	KT_ERR(ks_txn_unlink(st, "edit"), 0);
	KT_ERR(ks_txn_unlink(st, "second"), 0);
	ns.n = 0;
	ks_txn_foreach(st, collect, &ns);
	KT_EQ(ns.n, 0);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_txn_rename(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_engine_stats stats;
	struct ks_txn *t, *u, *found;
	uint64_t v = 0;

	/* To a free name. */
	t = begin(st, KS_TXN_CHECKED, false, "T");
	wr(t, "content", 0);
	KT_ERR(ks_txn_rename(st, "T", "U"), 0);
	KT_ERR(ks_txn_find(st, "T", &found), ENOENT);
	KT_ERR(ks_txn_find(st, "U", &found), 0);
	KT_CHECK(found == t);
	ks_txn_unref(found);
	KT_ERR(ks_txn_rename(st, "missing", "X"), ENOENT);
	KT_ERR(ks_txn_rename(st, "U", "U"), 0);
	KT_ERR(ks_txn_find(st, "U", &found), 0);
	ks_txn_unref(found);
	KT_ERR(ks_txn_commit_named(st, "U", &v), 0);
	KT_EQ(v, 1);
	KT_PAGE_IS(st, "content");
	ks_txn_unref(t);

	/* sed -i: U is the file being edited (older base), T the temporary
	 * copy made after someone else committed; mv T U must conflict. */
	u = begin(st, KS_TXN_CHECKED, false, "U");
	put(st, "someone else");
	t = begin(st, KS_TXN_CHECKED, true, "T");
	KT_EQ(ks_txn_base(u), 1);
	KT_EQ(ks_txn_base(t), 2);
	wr(t, "edited", 0);
	KT_ERR(ks_txn_rename(st, "T", "U"), 0);
	KT_ERR(ks_txn_find(st, "T", &found), ENOENT);
	KT_ERR(ks_txn_find(st, "U", &found), 0);
	KT_CHECK(found == t);
	ks_txn_unref(found);
	KT_CHECK(!ks_txn_named(u));        /* the replaced one is gone */
	KT_EQ(ks_txn_base(t), 1);          /* the older base */
	KT_TXN_IS(t, "edited");
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.txns, 1);
	KT_ERR(ks_txn_commit_named(st, "U", &v), EAGAIN);
	KT_PAGE_IS(st, "someone else");
	ks_txn_unref(t);
	ks_txn_unref(u);
	KT_ERR(ks_txn_unlink(st, "U"), 0);

	/* The other way round: the moved one is older; it keeps its base. */
	t = begin(st, KS_TXN_CHECKED, false, "T");
	put(st, "again");
	u = begin(st, KS_TXN_CHECKED, false, "U");
	KT_ERR(ks_txn_rename(st, "T", "U"), 0);
	KT_EQ(ks_txn_base(t), 2);
	KT_ERR(ks_txn_commit_named(st, "U", &v), EAGAIN);
	ks_txn_unref(t);
	ks_txn_unref(u);
	KT_ERR(ks_txn_unlink(st, "U"), 0);

	/* Both current: the moved content commits. */
	u = begin(st, KS_TXN_CHECKED, true, "U");
	t = begin(st, KS_TXN_CHECKED, true, "T");
	wr(u, "lost", 0);
	wr(t, "kept", 0);
	KT_ERR(ks_txn_rename(st, "T", "U"), 0);
	KT_ERR(ks_txn_commit_named(st, "U", &v), 0);
	KT_EQ(v, 4);
	KT_PAGE_IS(st, "kept");
	ks_txn_unref(t);
	ks_txn_unref(u);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.txns, 0);
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* ---- after a commit ----------------------------------------------------- */

static void test_goes_on(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *t = begin(st, KS_TXN_CHECKED, false, "t"), *found;
	uint64_t v = 0;

	wr(t, "first", 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 1);
	/* A fresh, anonymous transaction based on the committed page. */
	KT_ERR(ks_txn_find(st, "t", &found), ENOENT);
	KT_CHECK(!ks_txn_named(t));
	KT_EQ(ks_txn_base(t), 1);
	KT_CHECK(!ks_txn_written(t));
	KT_TXN_IS(t, "first");
	/* Writing it changes neither the state nor the committed page. */
	wr(t, "FI", 0);
	KT_TXN_IS(t, "FIrst");
	KT_PAGE_IS(st, "first");
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 2);
	KT_PAGE_IS(st, "FIrst");
	/* A third round that only reads validates its new base. */
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 2);
	/* A commit by someone else makes its next commit conflict. */
	wr(t, "x", 0);
	put(st, "other");
	KT_ERR(ks_txn_commit(t, &v), EAGAIN);
	KT_EQ(ks_state_version(st), 3);
	KT_PAGE_IS(st, "other");
	ks_txn_unref(t);

	/* The same for a REPLACE transaction (fsync on data, then more). */
	t = begin(st, KS_TXN_REPLACE, true, NULL);
	wr(t, "r1", 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 4);
	KT_TXN_IS(t, "r1");
	KT_ERR(ks_txn_commit(t, &v), 0);     /* nothing new written */
	KT_EQ(v, 4);
	wr(t, "2", 1);
	put(st, "between");
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 6);
	KT_PAGE_IS(st, "r2");
	ks_txn_unref(t);
	ks_state_unref(st);
	ks_engine_free(eng);
}

/* ks_txn_discard (data after a failed commit): the writes are gone, the
 * transaction goes on based on the latest page, and commits nothing until
 * written again. */
static void test_discard(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_txn *t;
	uint64_t v = 0;

	put(st, "one");
	t = begin(st, KS_TXN_CHECKED, false, NULL);
	wr(t, "mine", 0);
	put(st, "two");
	KT_ERR(ks_txn_commit(t, &v), EAGAIN);
	ks_txn_discard(t);
	KT_CHECK(!ks_txn_written(t));
	KT_EQ(ks_txn_base(t), 2);
	KT_TXN_IS(t, "two");
	KT_ERR(ks_txn_commit(t, &v), 0);     /* validates, writes nothing */
	KT_EQ(v, 2);
	wr(t, "T", 0);
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 3);
	KT_PAGE_IS(st, "Two");
	ks_txn_unref(t);

	/* a blind one (O_TRUNC) no longer counts its emptiness as a write */
	t = begin(st, KS_TXN_REPLACE, true, NULL);
	wr(t, "gone", 0);
	ks_txn_discard(t);
	KT_CHECK(!ks_txn_written(t));
	KT_ERR(ks_txn_commit(t, &v), 0);
	KT_EQ(v, 3);
	KT_PAGE_IS(st, "Two");
	ks_txn_unref(t);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_commit_bytes(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_engine_stats stats;
	struct ks_txn *t;
	struct ks_page *p;
	struct timespec before;
	uint64_t v = 0;

	clock_gettime(CLOCK_REALTIME, &before);
	KT_ERR(ks_state_commit_bytes(st, "12345", 5, &v), 0);
	KT_EQ(v, 1);
	p = ks_state_current(st);
	KT_EQ(p->version, 1);
	KT_BYTES(p->bytes, p->len, "12345", 5);
	KT_CHECK(p->mtime.tv_sec > before.tv_sec ||
		 (p->mtime.tv_sec == before.tv_sec &&
		  p->mtime.tv_nsec >= before.tv_nsec));
	ks_page_unref(p);

	/* It never conflicts, and it makes CHECKED transactions conflict. */
	t = begin(st, KS_TXN_CHECKED, false, NULL);
	wr(t, "t", 0);
	KT_ERR(ks_state_commit_bytes(st, "", 0, &v), 0);
	KT_EQ(v, 2);
	KT_PAGE_IS(st, "");
	KT_ERR(ks_txn_commit(t, &v), EAGAIN);
	ks_txn_unref(t);
	KT_ERR(ks_state_commit_bytes(st, NULL, 0, NULL), 0);
	KT_EQ(ks_state_version(st), 3);

	ks_engine_stats(eng, &stats);
	KT_EQ(stats.commits, 3);
	KT_EQ(stats.bytes, 0);
	KT_ERR(ks_state_commit_bytes(st, "abcd", 4, NULL), 0);
	ks_engine_stats(eng, &stats);
	KT_EQ(stats.bytes, 4);
	ks_state_unref(st);
	ks_engine_free(eng);
}

static void test_pinned_pages(void)
{
	struct ks_engine *eng = kt_default_engine();
	struct ks_state *st = kt_state(eng, "s");
	struct ks_page *old, *cur;

	put(st, "version one");
	old = ks_state_current(st);
	put(st, "version two");
	cur = ks_state_current(st);
	/* A reader's pinned page is immutable and outlives the commit. */
	KT_EQ(old->version, 1);
	KT_BYTES(old->bytes, old->len, "version one", 11);
	KT_EQ(cur->version, 2);
	KT_BYTES(cur->bytes, cur->len, "version two", 11);
	KT_CHECK(old != cur);
	ks_page_unref(cur);
	ks_state_unref(st);
	ks_engine_free(eng);
	/* Even past the engine's life. */
	KT_BYTES(old->bytes, old->len, "version one", 11);
	ks_page_unref(old);
}

int main(void)
{
	KT_RUN(test_checked_private_copy,
	       "CHECKED: a private copy-on-write page, invisible until commit");
	KT_RUN(test_checked_conflict,
	       "CHECKED: EAGAIN after another commit, the txn left as it was");
	KT_RUN(test_checked_readonly,
	       "CHECKED never written: commits nothing, 0 if base current, "
	       "EAGAIN otherwise");
	KT_RUN(test_checked_empty,
	       "CHECKED with empty: an empty page that counts as a write");
	KT_RUN(test_checked_big_page,
	       "the first write or truncate of a txn on a 1000-byte page "
	       "copies the whole page (no overflow)");
	KT_RUN(test_replace,
	       "REPLACE: exactly the bytes written, never conflicts");
	KT_RUN(test_patch,
	       "PATCH: written ranges and truncation applied to the latest "
	       "page");
	KT_RUN(test_patch_shrink_then_grow,
	       "PATCH: truncate down then up leaves zeros, not old bytes");
	KT_RUN(test_patch_misc,
	       "PATCH: unwritten commits nothing, goes on after commit, "
	       "empty, last byte");
	KT_RUN(test_append,
	       "APPEND: written bytes go to the end of the latest page");
	KT_RUN(test_append_grow_efbig,
	       "APPEND: a truncate that grows counts towards max_size");
	KT_RUN(test_efbig, "EFBIG past max_size in every mode, EINVAL < 0");
	KT_RUN(test_efbig_fails_txn,
	       "a write past max_size fails with EFBIG and writes nothing; a "
	       "txn marked failed commits nothing");
	KT_RUN(test_set_error, "a txn with an error commits nothing");
	KT_RUN(test_max_txns,
	       "ENOSPC past max_txns named txns per state; slots freed by "
	       "unlink and commit");
	KT_RUN(test_find_unlink, "named txns: find, foreach, unlink");
	KT_RUN(test_txn_rename,
	       "txn rename: to a free name, onto an existing one keeps the "
	       "older base");
	KT_RUN(test_goes_on,
	       "after commit the txn goes on based on the new page");
	KT_RUN(test_discard,
	       "ks_txn_discard: writes dropped, based on the latest page");
	KT_RUN(test_commit_bytes, "ks_state_commit_bytes");
	KT_RUN(test_pinned_pages, "pinned pages stay whole after commits");
	return kt_finish("test_txn");
}
