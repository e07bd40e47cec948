/*
 * libkstate against a real mount: reads, transactions and their errors,
 * waiting and poll on kstate_fd; every commit a version (empty and unchanged
 * pages too), conflicts between transactions begun together, EINVAL for
 * bad arguments, commits under contention.
 *
 *   test_lib MOUNT
 */
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include "harness.h"
#include "kstate.h"

static char path[4096];

/* Commits PAGE through a handle of its own, after DELAY_MS. */
struct later {
	const char *page;
	long delay_ms;
};

static void commit_page_at(const char *state, const char *page)
{
	struct kstate *s = kstate_subscribe(state, KSTATE_WRITE);
	struct kstate_txn *t;

	CHECK(s);
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_set_length(t, strlen(page)) == 0);
	memcpy(kstate_get_ptr(t), page, strlen(page));
	CHECK(kstate_commit(t) == 0);
	kstate_unsubscribe(s);
}

static void commit_page(const char *page)
{
	commit_page_at(path, page);
}

static void *commit_later(void *arg)
{
	struct later *l = arg;

	sleep_ms(l->delay_ms);
	commit_page(l->page);
	return NULL;
}

static uint64_t version_of(struct kstate *s)
{
	uint64_t v;

	CHECK(kstate_version(s, &v) == 0);
	return v;
}

/* Transaction files left in the state directory. */
static int leftovers_in(const char *state)
{
	DIR *d = opendir(state);
	struct dirent *e;
	int n = 0;

	CHECK(d);
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    strcmp(e->d_name, "data") && strcmp(e->d_name, "version") &&
		    strcmp(e->d_name, "every"))
			n++;
	}
	closedir(d);
	return n;
}

static int leftovers(void)
{
	return leftovers_in(path);
}

static int abort_with(struct kstate_txn *t, void *page, void *arg)
{
	memcpy(page, "x", 1);
	return *(int *)arg;
}

static int fail_with_eperm(struct kstate_txn *t, void *page, void *arg)
{
	errno = EPERM;
	return -1;
}

static int leave_as_is(struct kstate_txn *t, void *page, void *arg)
{
	return 0;
}

/* The page is a counter in decimal, then a newline. */
static int add_one(struct kstate_txn *t, void *page, void *arg)
{
	char text[32];
	size_t len = kstate_get_length(t);
	int n;

	if (len >= sizeof text) {
		errno = EPROTO;
		return -1;
	}
	memcpy(text, page, len);
	text[len] = '\0';
	n = snprintf(text, sizeof text, "%ld\n", strtol(text, NULL, 10) + 1);
	if (kstate_set_length(t, (size_t)n) < 0)
		return -1;
	memcpy(kstate_get_ptr(t), text, (size_t)n);
	return 0;
}

static void test_subscribe(const char *mount)
{
	char missing[4200];
	struct kstate *s;

	snprintf(missing, sizeof missing, "%s/no-such-state-%ld", mount,
		 (long)getpid());
	errno = 0;
	CHECK(!kstate_subscribe(missing, KSTATE_READ));
	CHECK(errno == ENOENT);
	CHECK(!kstate_subscribe(path, 0) && errno == EINVAL);
	CHECK(!kstate_subscribe(path, 8) && errno == EINVAL);

	/* Writing creates the state, at version 0 with an empty page. */
	s = kstate_subscribe(path, KSTATE_WRITE);
	CHECK(s);
	CHECK(version_of(s) == 0);
	CHECK(kstate_read(s, NULL, 0, NULL) == 0);
	kstate_unsubscribe(s);
	kstate_unsubscribe(NULL);
}

static void test_transactions(void)
{
	struct kstate *s = kstate_subscribe(path, KSTATE_WRITE | KSTATE_READ);
	struct kstate *ro = kstate_subscribe(path, KSTATE_READ);
	struct kstate_txn *t, *u;
	char buf[64];
	uint64_t v;
	int code;

	CHECK(s && ro);

	/* Commit, then read back the page and its version. */
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_get_length(t) == 0);
	CHECK(kstate_set_length(t, 6) == 0);
	memcpy(kstate_get_ptr(t), "hello\n", 6);
	CHECK(kstate_commit(t) == 0);
	CHECK(kstate_read(ro, buf, sizeof buf, &v) == 6);
	CHECK(memcmp(buf, "hello\n", 6) == 0 && v == 1);

	/* A transaction starts as a copy of the page; shortening works. */
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_get_length(t) == 6);
	CHECK(memcmp(kstate_get_ptr(t), "hello\n", 6) == 0);
	CHECK(kstate_set_length(t, 3) == 0);
	CHECK(kstate_commit(t) == 0);
	CHECK(kstate_read(ro, buf, sizeof buf, &v) == 3 && v == 2);
	CHECK(memcmp(buf, "hel", 3) == 0);

	/* Too small a buffer: ERANGE; no buffer: the length. */
	CHECK(kstate_read(ro, buf, 2, NULL) == -1 && errno == ERANGE);
	CHECK(kstate_read(ro, NULL, 0, NULL) == 3);

	/* An unchanged page is still a commit: a new version. */
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_commit(t) == 0);
	CHECK(version_of(s) == 3);

	/* Two transactions from the same base: the second one conflicts,
	 * and its file is gone. */
	t = kstate_start_transaction(s);
	u = kstate_start_transaction(s);
	CHECK(t && u);
	memcpy(kstate_get_ptr(t), "one", 3);
	memcpy(kstate_get_ptr(u), "two", 3);
	CHECK(kstate_commit(t) == 0);
	errno = 0;
	CHECK(kstate_commit(u) == -1 && errno == EAGAIN);
	CHECK(kstate_read(ro, buf, sizeof buf, &v) == 3 && v == 4);
	CHECK(memcmp(buf, "one", 3) == 0);
	CHECK(leftovers() == 0);

	/* Even an unchanged transaction conflicts if its base is stale. */
	t = kstate_start_transaction(s);
	CHECK(t);
	commit_page("three");
	CHECK(kstate_commit(t) == -1 && errno == EAGAIN);
	CHECK(leftovers() == 0);

	/* Abort changes nothing.  A transaction is the handle's read-write
	 * open of data (SPEC 4.1): it makes no file in the state. */
	t = kstate_start_transaction(s);
	CHECK(t);
	/* It begins on the page committed elsewhere, not on what this
	 * handle had. */
	CHECK(kstate_get_length(t) == 5);
	CHECK(memcmp(kstate_get_ptr(t), "three", 5) == 0);
	memcpy(kstate_get_ptr(t), "zzz", 3);
	CHECK(leftovers() == 0);
	CHECK(kstate_abort(t) == 0);
	CHECK(leftovers() == 0);
	CHECK(version_of(s) == 5);

	/* A handle that committed last still begins on a commit made
	 * elsewhere since, and commits on top of it. */
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_commit(t) == 0);
	commit_page("four!");
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_get_length(t) == 5);
	CHECK(memcmp(kstate_get_ptr(t), "four!", 5) == 0);
	memcpy(kstate_get_ptr(t), "three", 5);
	CHECK(kstate_commit(t) == 0);
	CHECK(kstate_read(ro, buf, sizeof buf, &v) == 5 && v == 8);
	CHECK(memcmp(buf, "three", 5) == 0);

	/* Larger than the mount allows (default 4096): EFBIG at commit,
	 * nothing changed, nothing left behind. */
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_set_length(t, 100000) == 0);
	memset(kstate_get_ptr(t), 'x', 100000);
	errno = 0;
	CHECK(kstate_commit(t) == -1 && errno == EFBIG);
	CHECK(version_of(s) == 8);
	CHECK(kstate_read(ro, buf, sizeof buf, NULL) == 5);
	CHECK(leftovers() == 0);

	/* Growing zero-fills. */
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_set_length(t, 2) == 0);
	CHECK(kstate_set_length(t, 8) == 0);
	CHECK(memcmp(kstate_get_ptr(t), "th\0\0\0\0\0\0", 8) == 0);
	CHECK(kstate_abort(t) == 0);

	/* The body decides: nonzero aborts and comes back unchanged. */
	code = 42;
	CHECK(kstate_transaction_using_fn(s, abort_with, &code, 0) == 42);
	CHECK(kstate_transaction_using_fn(s, fail_with_eperm, NULL, 0) == -1);
	CHECK(errno == EPERM);
	CHECK(version_of(s) == 8 && leftovers() == 0);

	/* Read-only handles cannot begin transactions. */
	CHECK(!kstate_start_transaction(ro) && errno == EBADF);

	kstate_unsubscribe(ro);
	kstate_unsubscribe(s);
}

static void test_poll(void)
{
	struct kstate *s = kstate_subscribe(path, KSTATE_READ);
	struct later l = { "polled\n", 200 };
	struct pollfd p;
	pthread_t th;
	char buf[64];
	double t0, waited;
	uint64_t v, v0;
	int n;

	CHECK(s);
	CHECK(kstate_read(s, buf, sizeof buf, &v0) >= 0);

	/* Nothing new: poll times out. */
	p = (struct pollfd){ .fd = kstate_fd(s), .events = POLLPRI };
	t0 = now_ms();
	CHECK(poll(&p, 1, 100) == 0);
	CHECK(now_ms() - t0 >= 90);

	/* A commit from elsewhere wakes it, with POLLPRI. */
	CHECK(pthread_create(&th, NULL, commit_later, &l) == 0);
	t0 = now_ms();
	n = poll(&p, 1, 5000);
	waited = now_ms() - t0;
	CHECK(n == 1 && (p.revents & POLLPRI));
	CHECK(waited >= 150 && waited < 2000);
	CHECK(pthread_join(th, NULL) == 0);
	CHECK(kstate_read(s, buf, sizeof buf, &v) == 7);
	CHECK(memcmp(buf, "polled\n", 7) == 0 && v == v0 + 1);
	printf("poll woke %.1f ms after the commit was due\n", waited - 200);

	/* Reading re-armed it. */
	CHECK(poll(&p, 1, 0) == 0);

	/* A commit between the read and the poll is not lost. */
	commit_page("missed?\n");
	CHECK(poll(&p, 1, 2000) == 1);
	CHECK(kstate_version(s, &v) == 0 && v == v0 + 2);
	CHECK(poll(&p, 1, 0) == 0);
	kstate_unsubscribe(s);
}

static void test_wait(void)
{
	struct kstate *s = kstate_subscribe(path, KSTATE_READ);
	struct later l = { "waited\n", 150 };
	pthread_t th;
	double t0, waited;
	uint64_t v0, v = 0;

	CHECK(s);
	v0 = version_of(s);

	/* The deadline is kept, and reported as ETIMEDOUT. */
	t0 = now_ms();
	errno = 0;
	CHECK(kstate_wait(s, v0, 200, &v) == -1 && errno == ETIMEDOUT);
	waited = now_ms() - t0;
	CHECK(waited >= 195 && waited < 1000);
	printf("a 200 ms wait took %.1f ms\n", waited);

	/* Already past AFTER: at once. */
	CHECK(kstate_wait(s, v0 - 1, 0, &v) == 0 && v == v0);

	/* A commit ends the wait. */
	CHECK(pthread_create(&th, NULL, commit_later, &l) == 0);
	t0 = now_ms();
	CHECK(kstate_wait(s, v0, 5000, &v) == 0);
	waited = now_ms() - t0;
	CHECK(v == v0 + 1);
	CHECK(waited >= 100 && waited < 2000);
	CHECK(pthread_join(th, NULL) == 0);
	kstate_unsubscribe(s);
}

/* A state of its own for a test, fresh and empty at version 0. */
static struct kstate *fresh_state(char *name, size_t size, const char *what)
{
	struct kstate *s;

	snprintf(name, size, "%s.%s", path, what);
	s = kstate_subscribe(name, KSTATE_READ | KSTATE_WRITE);
	CHECK(s);
	CHECK(version_of(s) == 0);
	return s;
}

/* kstate(3): a commit makes the page the next version even if it is
 * unchanged, and an empty page is a page like any other.  A transaction
 * file that is never written commits nothing (SPEC 4.3), so these are what
 * tells whether the library really writes the page. */
static void test_commit_is_a_version(void)
{
	char name[4200], buf[64];
	struct kstate *s = fresh_state(name, sizeof name, "versions");
	struct kstate_txn *t;
	uint64_t v;

	/* Empty and unchanged, from version 0. */
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_get_length(t) == 0);
	CHECK(kstate_commit(t) == 0);
	CHECK(kstate_read(s, buf, sizeof buf, &v) == 0 && v == 1);

	/* Non-empty and unchanged. */
	commit_page_at(name, "same\n");
	CHECK(version_of(s) == 2);
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_commit(t) == 0);
	CHECK(kstate_read(s, buf, sizeof buf, &v) == 5 && v == 3);
	CHECK(memcmp(buf, "same\n", 5) == 0);

	/* Emptied: the state becomes the empty page. */
	t = kstate_start_transaction(s);
	CHECK(t);
	CHECK(kstate_set_length(t, 0) == 0);
	CHECK(kstate_commit(t) == 0);
	CHECK(kstate_read(s, buf, sizeof buf, &v) == 0 && v == 4);

	/* Through kstate_transaction_using_fn, whose body changes nothing. */
	CHECK(kstate_transaction_using_fn(s, leave_as_is, NULL, 0) == 0);
	CHECK(version_of(s) == 5);
	CHECK(leftovers_in(name) == 0);
	kstate_unsubscribe(s);
	CHECK(rmdir(name) == 0);
}

/* Two transactions begun together: the first commit wins, the second gets
 * EAGAIN, whatever the pages hold, empty and unchanged included. */
static void test_begun_together(void)
{
	static const char *const pages[] = { "", "page\n" };
	char name[4200], buf[64];
	struct kstate *s = fresh_state(name, sizeof name, "together");
	struct kstate_txn *t, *u;
	uint64_t v, v0;

	for (size_t i = 0; i < 2; i++) {
		/* Both unchanged. */
		commit_page_at(name, pages[i]);
		v0 = version_of(s);
		t = kstate_start_transaction(s);
		u = kstate_start_transaction(s);
		CHECK(t && u);
		CHECK(kstate_commit(t) == 0);
		errno = 0;
		CHECK(kstate_commit(u) == -1 && errno == EAGAIN);
		CHECK(version_of(s) == v0 + 1);

		/* The second one changed, the first one not. */
		t = kstate_start_transaction(s);
		u = kstate_start_transaction(s);
		CHECK(t && u);
		CHECK(kstate_set_length(u, 1) == 0);
		memcpy(kstate_get_ptr(u), "u", 1);
		CHECK(kstate_commit(t) == 0);
		errno = 0;
		CHECK(kstate_commit(u) == -1 && errno == EAGAIN);
		CHECK(kstate_read(s, buf, sizeof buf, &v) ==
		      (ssize_t)strlen(pages[i]) && v == v0 + 2);
		CHECK(memcmp(buf, pages[i], strlen(pages[i])) == 0);
	}
	CHECK(leftovers_in(name) == 0);
	kstate_unsubscribe(s);
	CHECK(rmdir(name) == 0);
}

/* Every function given a NULL handle, or an argument it cannot use, fails
 * with EINVAL and changes nothing: a programming error is reported, not a
 * crash.  (tests/client/test_null.c does the NULL handles without a
 * mount, under meson test.) */
static void test_bad_arguments(void)
{
	char name[4200], buf[8];
	struct kstate *s = fresh_state(name, sizeof name, "args");
	struct kstate_txn *t;
	uint64_t v = 7;

	errno = 0;
	CHECK(kstate_fd(NULL) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(kstate_version(NULL, &v) == -1 && errno == EINVAL && v == 7);
	errno = 0;
	CHECK(kstate_version(s, NULL) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(kstate_read(NULL, buf, sizeof buf, &v) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(kstate_read(s, NULL, sizeof buf, &v) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(kstate_wait(NULL, 0, 0, &v) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(!kstate_start_transaction(NULL) && errno == EINVAL);
	errno = 0;
	CHECK(!kstate_get_ptr(NULL) && errno == EINVAL);
	errno = 0;
	CHECK(kstate_get_length(NULL) == 0 && errno == EINVAL);
	errno = 0;
	CHECK(kstate_set_length(NULL, 1) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(kstate_commit(NULL) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(kstate_abort(NULL) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(kstate_transaction_using_fn(NULL, leave_as_is, NULL, 0) == -1 &&
	      errno == EINVAL);
	errno = 0;
	CHECK(kstate_transaction_using_fn(s, NULL, NULL, 0) == -1 &&
	      errno == EINVAL);
	errno = 0;
	CHECK(kstate_transaction_using_fn(s, leave_as_is, NULL, -2) == -1 &&
	      errno == EINVAL);
	errno = 0;
	CHECK(!kstate_subscribe(NULL, KSTATE_READ) && errno == EINVAL);

	/* A page too large to hold in memory: ENOMEM, and the transaction
	 * goes on as it was. */
	t = kstate_start_transaction(s);
	CHECK(t);
	errno = 0;
	CHECK(kstate_set_length(t, SIZE_MAX) == -1 && errno == ENOMEM);
	CHECK(kstate_get_length(t) == 0 && kstate_get_ptr(t));
	CHECK(kstate_abort(t) == 0);

	/* None of it made a version or left a transaction behind. */
	CHECK(version_of(s) == 0);
	CHECK(leftovers_in(name) == 0);
	kstate_unsubscribe(s);
	CHECK(rmdir(name) == 0);
}

/* Threads committing through kstate_transaction_using_fn on one state, some
 * adding one to a counter and some leaving the page as it is: the counter
 * ends exact and every commit, unchanged ones included, is a version. */
struct contender {
	struct kstate *s;
	kstate_txn_fn *fn;
};

#define CONTENDERS 4
#define CONTENDED_COMMITS 40

static void *contend(void *arg)
{
	struct contender *c = arg;

	for (int i = 0; i < CONTENDED_COMMITS; i++)
		CHECK(kstate_transaction_using_fn(c->s, c->fn, NULL,
						  KSTATE_RETRY_FOREVER) == 0);
	return NULL;
}

static void test_contention(void)
{
	char name[4200], buf[64];
	struct kstate *s = fresh_state(name, sizeof name, "contention");
	struct contender c[CONTENDERS];
	pthread_t th[CONTENDERS];
	uint64_t v;
	ssize_t n;

	for (int i = 0; i < CONTENDERS; i++) {
		c[i] = (struct contender){ s, i % 2 ? add_one : leave_as_is };
		CHECK(pthread_create(&th[i], NULL, contend, &c[i]) == 0);
	}
	for (int i = 0; i < CONTENDERS; i++)
		CHECK(pthread_join(th[i], NULL) == 0);
	n = kstate_read(s, buf, sizeof buf - 1, &v);
	CHECK(n > 0);
	buf[n] = '\0';
	CHECK(strtol(buf, NULL, 10) == CONTENDERS / 2 * CONTENDED_COMMITS);
	CHECK(v == CONTENDERS * CONTENDED_COMMITS);
	CHECK(leftovers_in(name) == 0);
	kstate_unsubscribe(s);
	CHECK(rmdir(name) == 0);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_lib MOUNT\n");
		return 2;
	}
	snprintf(path, sizeof path, "%s/test_lib.%ld", argv[1], (long)getpid());
	test_subscribe(argv[1]);
	test_transactions();
	test_poll();
	test_wait();
	test_commit_is_a_version();
	test_begun_together();
	test_bad_arguments();
	test_contention();
	CHECK(rmdir(path) == 0);
	printf("test_lib: ok\n");
	return 0;
}
