/*
 * No lost update: THREADS threads each add 1 to a counter COUNT times
 * through kstate_transaction_using_fn, half of them sharing one handle (the
 * library is thread-safe per handle), half with handles of their own.  The
 * counter must end at exactly THREADS * COUNT, and the version must have
 * risen by exactly as much.
 *
 *   test_counter MOUNT [THREADS [COUNT]]
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "harness.h"
#include "kstate.h"

static char path[4096];
static struct kstate *shared;
static long count;
static atomic_long attempts;

/* The page is the counter in decimal, then a newline: what a shell sees. */
static int increment(struct kstate_txn *txn, void *page, void *arg)
{
	char text[32];
	size_t len = kstate_get_length(txn);
	long n = 0;
	int out;

	atomic_fetch_add(&attempts, 1);
	if (len >= sizeof text) {
		errno = EPROTO;
		return -1;
	}
	memcpy(text, page, len);
	text[len] = '\0';
	if (len)
		n = strtol(text, NULL, 10);
	out = snprintf(text, sizeof text, "%ld\n", n + 1);
	if (kstate_set_length(txn, (size_t)out) < 0)
		return -1;
	memcpy(kstate_get_ptr(txn), text, (size_t)out);
	return 0;
}

static void *worker(void *arg)
{
	struct kstate *s = arg ? shared : kstate_subscribe(path, KSTATE_WRITE);

	CHECK(s);
	for (long i = 0; i < count; i++)
		CHECK(kstate_transaction_using_fn(s, increment, NULL,
						  KSTATE_RETRY_FOREVER) == 0);
	if (s != shared)
		kstate_unsubscribe(s);
	return NULL;
}

int main(int argc, char **argv)
{
	long threads = argc > 2 ? atol(argv[2]) : 8;
	pthread_t th[64];
	char buf[64];
	uint64_t v0, v;
	ssize_t len;
	double t0, ms;

	count = argc > 3 ? atol(argv[3]) : 200;
	if (argc < 2 || threads < 1 || threads > 64 || count < 1) {
		fprintf(stderr, "usage: test_counter MOUNT [THREADS [COUNT]]\n");
		return 2;
	}
	snprintf(path, sizeof path, "%s/test_counter.%ld", argv[1],
		 (long)getpid());
	shared = kstate_subscribe(path, KSTATE_READ | KSTATE_WRITE);
	CHECK(shared);
	CHECK(kstate_version(shared, &v0) == 0);

	t0 = now_ms();
	for (long i = 0; i < threads; i++)
		CHECK(pthread_create(&th[i], NULL, worker,
				     i % 2 ? NULL : shared) == 0);
	for (long i = 0; i < threads; i++)
		CHECK(pthread_join(th[i], NULL) == 0);
	ms = now_ms() - t0;

	len = kstate_read(shared, buf, sizeof buf - 1, &v);
	CHECK(len > 0);
	buf[len] = '\0';
	printf("%ld threads x %ld increments: %.0f commits/s, %ld attempts "
	       "(%.1f%% conflicts)\n", threads, count,
	       (double)(threads * count) / ms * 1e3, atomic_load(&attempts),
	       100.0 * (double)(atomic_load(&attempts) - threads * count) /
		       (double)atomic_load(&attempts));
	if (strtol(buf, NULL, 10) != threads * count || v - v0 !=
	    (uint64_t)(threads * count)) {
		fprintf(stderr, "counter %s at version %" PRIu64 ", expected "
			"%ld at %ld\n", buf, v - v0, threads * count,
			threads * count);
		return 1;
	}
	kstate_unsubscribe(shared);
	CHECK(rmdir(path) == 0);
	printf("test_counter: ok\n");
	return 0;
}
