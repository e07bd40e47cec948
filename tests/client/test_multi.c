/*
 * libkstate's transactions over several states (kstate_multi_*) against a
 * real mount: commits all or nothing, unchanged members keep their
 * version, a read-only transaction is a snapshot, conflicts leave nothing
 * behind, errors; then threads moving amounts between accounts while
 * others audit them: the total never changes.
 *
 *   test_multi MOUNT
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

#include "harness.h"
#include "kstate.h"

static char mount[4096];

static struct kstate *state(const char *name, unsigned flags)
{
	char p[4200];
	struct kstate *s;

	snprintf(p, sizeof p, "%s/%s", mount, name);
	s = kstate_subscribe(p, flags);
	CHECK(s);
	return s;
}

static void put(struct kstate_txn *t, const char *text)
{
	CHECK(kstate_set_length(t, strlen(text)) == 0);
	memcpy(kstate_get_ptr(t), text, strlen(text));
}

static bool page_is(struct kstate_txn *t, const char *text)
{
	return kstate_get_length(t) == strlen(text) &&
	       memcmp(kstate_get_ptr(t), text, strlen(text)) == 0;
}

static void set(struct kstate *s, const char *text)
{
	struct kstate_txn *t = kstate_start_transaction(s);

	CHECK(t);
	put(t, text);
	CHECK(kstate_commit(t) == 0);
}

static uint64_t version_of(struct kstate *s)
{
	uint64_t v;

	CHECK(kstate_version(s, &v) == 0);
	return v;
}

static bool read_is(struct kstate *s, const char *text)
{
	char buf[256];
	ssize_t n = kstate_read(s, buf, sizeof buf, NULL);

	return n == (ssize_t)strlen(text) && memcmp(buf, text, (size_t)n) == 0;
}

/* Transactions left in .txn. */
static int open_multis(void)
{
	char p[4200];
	DIR *d;
	struct dirent *e;
	int n = 0;

	snprintf(p, sizeof p, "%s/.txn", mount);
	d = opendir(p);
	CHECK(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_commit(void)
{
	struct kstate *a = state("m.a", KSTATE_READ | KSTATE_WRITE);
	struct kstate *b = state("m.b", KSTATE_READ | KSTATE_WRITE);
	struct kstate *c = state("m.c", KSTATE_READ | KSTATE_WRITE);
	struct kstate *all[] = { a, b, c };
	struct kstate_multi *m;

	set(a, "10\n");
	set(b, "20\n");
	set(c, "30\n");

	/* Both changed members commit, the unchanged one keeps its
	 * version; members are in the order given. */
	m = kstate_multi_begin(all, 3);
	CHECK(m);
	CHECK(page_is(kstate_multi_member(m, 0), "10\n"));
	CHECK(page_is(kstate_multi_member(m, 1), "20\n"));
	CHECK(page_is(kstate_multi_member(m, 2), "30\n"));
	CHECK(open_multis() == 1);
	put(kstate_multi_member(m, 0), "5\n");
	put(kstate_multi_member(m, 1), "25\n");
	CHECK(kstate_multi_commit(m) == 0);
	CHECK(read_is(a, "5\n") && read_is(b, "25\n") && read_is(c, "30\n"));
	CHECK(version_of(a) == 2 && version_of(b) == 2 && version_of(c) == 1);
	CHECK(open_multis() == 0);

	/* Read-only: a snapshot, no version. */
	m = kstate_multi_begin(all, 3);
	CHECK(m);
	CHECK(kstate_multi_commit(m) == 0);
	CHECK(version_of(a) == 2 && version_of(b) == 2 && version_of(c) == 1);

	/* A commit elsewhere to a member only read: EAGAIN, nothing
	 * applied, nothing left. */
	m = kstate_multi_begin(all, 3);
	CHECK(m);
	put(kstate_multi_member(m, 0), "0\n");
	set(c, "31\n");
	errno = 0;
	CHECK(kstate_multi_commit(m) == -1 && errno == EAGAIN);
	CHECK(read_is(a, "5\n") && version_of(a) == 2);
	CHECK(open_multis() == 0);

	/* Abort. */
	m = kstate_multi_begin(all, 2);
	CHECK(m);
	put(kstate_multi_member(m, 1), "x\n");
	CHECK(kstate_multi_abort(m) == 0);
	CHECK(read_is(b, "25\n") && version_of(b) == 2);
	CHECK(open_multis() == 0);

	/* Empty and shortened pages. */
	m = kstate_multi_begin(all, 2);
	CHECK(m);
	CHECK(kstate_set_length(kstate_multi_member(m, 0), 0) == 0);
	CHECK(kstate_set_length(kstate_multi_member(m, 1), 1) == 0);
	CHECK(kstate_multi_commit(m) == 0);
	CHECK(read_is(a, "") && read_is(b, "2"));

	/* Too large: EFBIG, nothing applied. */
	m = kstate_multi_begin(all, 2);
	CHECK(m);
	put(kstate_multi_member(m, 0), "1\n");
	CHECK(kstate_set_length(kstate_multi_member(m, 1), 100000) == 0);
	errno = 0;
	CHECK(kstate_multi_commit(m) == -1 && errno == EFBIG);
	CHECK(read_is(a, "") && read_is(b, "2"));
	CHECK(open_multis() == 0);

	kstate_unsubscribe(a);
	kstate_unsubscribe(b);
	kstate_unsubscribe(c);
}

static int fail_with_eperm(struct kstate_txn *const t[], size_t n, void *arg)
{
	put(t[0], "changed\n");
	errno = EPERM;
	return -1;
}

static void test_errors(void)
{
	struct kstate *a = state("m.a", KSTATE_READ | KSTATE_WRITE);
	struct kstate *b = state("m.b", KSTATE_READ | KSTATE_WRITE);
	struct kstate *ro = state("m.c", KSTATE_READ);
	struct kstate *gone = state("m.gone", KSTATE_READ | KSTATE_WRITE);
	struct kstate *two[] = { a, a }, *with_null[] = { a, NULL };
	struct kstate *with_ro[] = { a, ro }, *with_gone[] = { a, gone };
	struct kstate_multi *m;
	char from[4200], to[4200];
	uint64_t va = version_of(a);

	errno = 0;
	CHECK(!kstate_multi_begin(NULL, 1) && errno == EINVAL);
	errno = 0;
	CHECK(!kstate_multi_begin(two, 0) && errno == EINVAL);
	errno = 0;
	CHECK(!kstate_multi_begin(with_null, 2) && errno == EINVAL);
	errno = 0;
	CHECK(!kstate_multi_begin(two, 2) && errno == EINVAL);
	errno = 0;
	CHECK(!kstate_multi_member(NULL, 0) && errno == EINVAL);
	errno = 0;
	CHECK(kstate_multi_commit(NULL) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(kstate_multi_abort(NULL) == -1 && errno == EINVAL);
	errno = 0;
	CHECK(kstate_multi_using_fn(two, 1, NULL, NULL, 0) == -1 &&
	      errno == EINVAL);
	errno = 0;
	CHECK(kstate_multi_using_fn(two, 1, fail_with_eperm, NULL, -2) == -1 &&
	      errno == EINVAL);

	/* Members end with their transaction, not alone. */
	m = kstate_multi_begin(two, 1);
	CHECK(m);
	errno = 0;
	CHECK(!kstate_multi_member(m, 1) && errno == EINVAL);
	errno = 0;
	CHECK(kstate_commit(kstate_multi_member(m, 0)) == -1 &&
	      errno == EINVAL);
	errno = 0;
	CHECK(kstate_abort(kstate_multi_member(m, 0)) == -1 &&
	      errno == EINVAL);
	CHECK(kstate_multi_abort(m) == 0);

	/* A read-only handle's member may be read, not changed. */
	m = kstate_multi_begin(with_ro, 2);
	CHECK(m);
	CHECK(kstate_multi_commit(m) == 0);
	m = kstate_multi_begin(with_ro, 2);
	CHECK(m);
	put(kstate_multi_member(m, 0), "a\n");
	put(kstate_multi_member(m, 1), "c\n");
	errno = 0;
	CHECK(kstate_multi_commit(m) == -1 && errno == EBADF);
	CHECK(version_of(a) == va);

	/* The body aborts. */
	CHECK(kstate_multi_using_fn(two, 1, fail_with_eperm, NULL, 0) == -1 &&
	      errno == EPERM);
	CHECK(version_of(a) == va);

	/* A state renamed since it was subscribed: ENOENT, as for one
	 * deleted. */
	snprintf(from, sizeof from, "%s/m.gone", mount);
	snprintf(to, sizeof to, "%s/m.moved", mount);
	CHECK(rename(from, to) == 0);
	errno = 0;
	CHECK(!kstate_multi_begin(with_gone, 2) && errno == ENOENT);
	CHECK(open_multis() == 0);
	CHECK(version_of(a) == va);
	kstate_unsubscribe(gone);
	CHECK(rmdir(to) == 0);

	kstate_unsubscribe(a);
	kstate_unsubscribe(b);
	kstate_unsubscribe(ro);
}

/* Accounts and transfers between them. */
#define ACCOUNTS 4
#define MOVERS 4
#define MOVES 50
#define START 1000

static struct kstate *accounts[ACCOUNTS];
static atomic_bool moving;
static atomic_int snapshots;

static long amount_of(struct kstate_txn *t)
{
	char text[32];
	size_t len = kstate_get_length(t);

	if (len >= sizeof text)
		return -1000000;
	memcpy(text, kstate_get_ptr(t), len);
	text[len] = '\0';
	return strtol(text, NULL, 10);
}

static int set_amount(struct kstate_txn *t, long n)
{
	char text[32];
	int len = snprintf(text, sizeof text, "%ld\n", n);

	if (kstate_set_length(t, (size_t)len) < 0)
		return -1;
	memcpy(kstate_get_ptr(t), text, (size_t)len);
	return 0;
}

static int transfer(struct kstate_txn *const t[], size_t n, void *arg)
{
	long amount = *(long *)arg;

	return set_amount(t[0], amount_of(t[0]) - amount) ||
	       set_amount(t[1], amount_of(t[1]) + amount);
}

static int sum_up(struct kstate_txn *const t[], size_t n, void *arg)
{
	long *total = arg;

	*total = 0;
	for (size_t i = 0; i < n; i++)
		*total += amount_of(t[i]);
	return 0;
}

static void *mover(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	for (int i = 0; i < MOVES; i++) {
		size_t from = (size_t)rand_r(&seed) % ACCOUNTS;
		size_t to = (from + 1 + (size_t)rand_r(&seed) % (ACCOUNTS - 1)) %
			    ACCOUNTS;
		struct kstate *pair[] = { accounts[from], accounts[to] };
		long amount = rand_r(&seed) % 100;

		CHECK(kstate_multi_using_fn(pair, 2, transfer, &amount,
					    KSTATE_RETRY_FOREVER) == 0);
	}
	return NULL;
}

/* A read-only transaction over every account, committed: a snapshot, whose
 * sum is the total whatever the movers do. */
static void *auditor(void *arg)
{
	while (atomic_load(&moving)) {
		long total = -1;

		CHECK(kstate_multi_using_fn(accounts, ACCOUNTS, sum_up, &total,
					    KSTATE_RETRY_FOREVER) == 0);
		CHECK_EQ(total, (long)ACCOUNTS * START);
		atomic_fetch_add(&snapshots, 1);
	}
	return NULL;
}

static void test_transfers(void)
{
	pthread_t movers[MOVERS], audit;
	uint64_t versions = 0;
	long total = 0;

	for (int i = 0; i < ACCOUNTS; i++) {
		char name[32];
		char text[32];

		snprintf(name, sizeof name, "acct%d", i);
		accounts[i] = state(name, KSTATE_READ | KSTATE_WRITE);
		snprintf(text, sizeof text, "%d\n", START);
		set(accounts[i], text);
	}
	atomic_store(&moving, true);
	CHECK(pthread_create(&audit, NULL, auditor, NULL) == 0);
	for (int i = 0; i < MOVERS; i++)
		CHECK(pthread_create(&movers[i], NULL, mover,
				     (void *)(uintptr_t)(i + 1)) == 0);
	for (int i = 0; i < MOVERS; i++)
		CHECK(pthread_join(movers[i], NULL) == 0);
	atomic_store(&moving, false);
	CHECK(pthread_join(audit, NULL) == 0);
	CHECK(kstate_multi_using_fn(accounts, ACCOUNTS, sum_up, &total, 0) ==
	      0);
	CHECK_EQ(total, (long)ACCOUNTS * START);
	/* Every transfer committed both its accounts once (an amount of 0
	 * changes nothing, and commits nothing); no audit made a version. */
	for (int i = 0; i < ACCOUNTS; i++) {
		versions += version_of(accounts[i]) - 1;
		kstate_unsubscribe(accounts[i]);
	}
	CHECK(versions <= 2 * MOVERS * MOVES && versions % 2 == 0);
	CHECK(open_multis() == 0);
	printf("%d transfers, %llu versions, %d snapshots audited\n",
	       MOVERS * MOVES, (unsigned long long)versions,
	       atomic_load(&snapshots));
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_multi MOUNT\n");
		return 2;
	}
	snprintf(mount, sizeof mount, "%s", argv[1]);
	test_commit();
	test_errors();
	test_transfers();
	printf("test_multi: ok\n");
	return 0;
}
