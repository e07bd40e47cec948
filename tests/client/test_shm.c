/*
 * libkstate's reads through the shared mapping (SPEC 8) on a real mount.
 *
 *   test_shm MOUNT            readers and kstate_read_ptr while writers
 *                             commit: every read a whole committed version,
 *                             never older than a commit that returned
 *                             before it began; poll on kstate_fd still
 *                             re-arms
 *   test_shm probe STATE      prints how a reader of STATE fares: "mapped",
 *                             or the errno name kshm_open gave
 *   test_shm read STATE       reads through the mapping alone: "VERSION
 *                             PAGE", or the errno name
 *   test_shm reread STATE FILE
 *                             maps STATE and reads it, waits until FILE
 *                             exists, reads again through the same mapping
 *                             and through kstate_read, printing each
 *   test_shm hold STATE FILE  the same through the mapping alone (no file
 *                             of the state open: rmdir may go ahead)
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

#include "harness.h"
#include "kshm.h"
#include "kstate.h"

#define WRITERS 2
#define READERS 3
#define COMMITS 400   /* per writer */

static char path[4096];

/* The page of version V: its length and bytes follow from V. */
static size_t page_len(uint64_t v)
{
	return 16 + (size_t)(v * 37 % 4000);
}

static void page_fill(char *buf, uint64_t v)
{
	size_t n = page_len(v);
	char head[24];

	/* 16 digits, no terminator: versions here stay far below 10^16. */
	snprintf(head, sizeof(head), "%016llu", (unsigned long long)v);
	memcpy(buf, head, 16);
	for (size_t i = 16; i < n; i++)
		buf[i] = (char)('a' + (v + i) % 26);
}

static bool page_is(const char *buf, size_t len, uint64_t v)
{
	static _Thread_local char want[4096];

	if (len != page_len(v))
		return false;
	page_fill(want, v);
	return memcmp(buf, want, len) == 0;
}

static _Atomic uint64_t acked;   /* the newest version a commit returned */
static atomic_bool writers_done;
static atomic_ullong reads, bad, stale;

/* Each commit turns version N's page into N+1's: a read-modify-write, so
 * the page a reader sees names the version it must have. */
static int next_page(struct kstate_txn *t, void *page, void *arg)
{
	char head[17] = { 0 };
	uint64_t v = 0;

	if (kstate_get_length(t) >= 16) {
		memcpy(head, page, 16);
		v = strtoull(head, NULL, 10);
	}
	if (kstate_set_length(t, page_len(v + 1)) < 0)
		return -1;
	page_fill(kstate_get_ptr(t), v + 1);
	if (arg)
		*(uint64_t *)arg = v + 1;
	return 0;
}

static void *writer(void *arg)
{
	struct kstate *s = kstate_subscribe(path, KSTATE_READ | KSTATE_WRITE);

	CHECK(s);
	for (int i = 0; i < COMMITS; i++) {
		uint64_t v = 0, cur;

		/* The run that committed wrote version v's page. */
		CHECK(kstate_transaction_using_fn(s, next_page, &v,
						  KSTATE_RETRY_FOREVER) == 0);
		cur = atomic_load(&acked);
		while (cur < v && !atomic_compare_exchange_weak(&acked, &cur,
								 v))
			;
	}
	kstate_unsubscribe(s);
	return NULL;
}

static void *reader(void *arg)
{
	struct kstate *s = kstate_subscribe(path, KSTATE_READ);
	char *buf = malloc(8192);
	bool use_ptr = arg != NULL;

	CHECK(s && buf);
	while (!atomic_load(&writers_done)) {
		uint64_t floor = atomic_load(&acked), v = 0, v2 = 0;
		size_t len = 0;
		const char *p = buf;
		ssize_t n;

		if (use_ptr) {
			p = kstate_read_ptr(s, &len, &v);
			CHECK(p);
			/* Zero past the page. */
			if (len < 4096 && p[len] != 0)
				atomic_fetch_add(&bad, 1);
		} else {
			n = kstate_read(s, buf, 8192, &v);
			CHECK(n >= 0);
			len = (size_t)n;
		}
		atomic_fetch_add(&reads, 1);
		if (v < floor)
			atomic_fetch_add(&stale, 1);
		if (v > 0 && !page_is(p, len, v))
			atomic_fetch_add(&bad, 1);
		CHECK(kstate_version(s, &v2) == 0);
		if (v2 < v)
			atomic_fetch_add(&stale, 1);
	}
	free(buf);
	kstate_unsubscribe(s);
	return NULL;
}

static void test_readers_while_writing(void)
{
	pthread_t w[WRITERS], r[READERS];
	struct kstate *s;
	struct kshm *m;
	int dfd;

	snprintf(path, sizeof(path), "%s", getenv("SHM_STATE"));
	s = kstate_subscribe(path, KSTATE_READ | KSTATE_WRITE);
	CHECK(s);
	dfd = open(path, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);
	/* The mount offers a mapping and this test reads through it. */
	CHECK_EQ(kshm_open(dfd, &m), 0);
	close(dfd);
	for (int i = 0; i < WRITERS; i++)
		CHECK(pthread_create(&w[i], NULL, writer, NULL) == 0);
	for (int i = 0; i < READERS; i++)
		CHECK(pthread_create(&r[i], NULL, reader,
				     i == 0 ? (void *)1 : NULL) == 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	atomic_store(&writers_done, true);
	for (int i = 0; i < READERS; i++)
		pthread_join(r[i], NULL);
	printf("%llu reads, %llu retries, %llu not whole, %llu stale\n",
	       (unsigned long long)reads,
	       (unsigned long long)atomic_load(&m->retries),
	       (unsigned long long)bad, (unsigned long long)stale);
	CHECK_EQ(bad, 0);
	CHECK_EQ(stale, 0);
	{
		uint64_t v, len, mv;
		char buf[8192];

		CHECK(kstate_version(s, &v) == 0);
		CHECK_EQ(v, WRITERS * COMMITS);
		CHECK_EQ(kshm_read(m, buf, sizeof(buf), &len, &mv), 0);
		CHECK_EQ(mv, v);
		CHECK(page_is(buf, len, v));
	}
	kshm_close(m);
	kstate_unsubscribe(s);
}

/* kstate_fd: a read through the mapping marks what it saw, so poll does
 * not report it again, and reports the next commit. */
static void test_poll_rearms(void)
{
	struct kstate *s = kstate_subscribe(path, KSTATE_READ);
	struct kstate *w = kstate_subscribe(path, KSTATE_READ | KSTATE_WRITE);
	struct pollfd p;
	char buf[8192];
	uint64_t v;

	CHECK(s && w);
	p = (struct pollfd){ .fd = kstate_fd(s), .events = POLLPRI };
	CHECK(kstate_read(s, buf, sizeof(buf), &v) >= 0);
	CHECK_EQ(poll(&p, 1, 0), 0);
	CHECK(kstate_transaction_using_fn(w, next_page, NULL, 10) == 0);
	CHECK_EQ(poll(&p, 1, 5000), 1);
	CHECK(kstate_read(s, buf, sizeof(buf), &v) >= 0);
	CHECK(page_is(buf, page_len(v), v));
	CHECK_EQ(poll(&p, 1, 0), 0);
	kstate_unsubscribe(w);
	kstate_unsubscribe(s);
}

static const char *errname(int err)
{
	switch (err) {
	case 0: return "mapped";
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case ESTALE: return "ESTALE";
	case EPROTO: return "EPROTO";
	case EAGAIN: return "EAGAIN";
	case ENOTCONN: return "ENOTCONN";
	default: return strerror(err);
	}
}

static struct kshm *probe(const char *state, int *err)
{
	struct kshm *m = NULL;
	int dfd = open(state, O_RDONLY | O_DIRECTORY);

	if (dfd < 0) {
		*err = errno;
		return NULL;
	}
	*err = kshm_open(dfd, &m);
	close(dfd);
	return m;
}

static void print_read(struct kshm *m)
{
	char buf[8192];
	uint64_t len, v;
	int err = kshm_read(m, buf, sizeof(buf) - 1, &len, &v);

	if (err) {
		printf("%s\n", errname(err));
		return;
	}
	buf[len < sizeof(buf) ? len : sizeof(buf) - 1] = '\0';
	printf("%llu %s\n", (unsigned long long)v, buf);
}

int main(int argc, char **argv)
{
	int err;

	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc == 3 && strcmp(argv[1], "probe") == 0) {
		struct kshm *m = probe(argv[2], &err);

		printf("%s\n", errname(err));
		kshm_close(m);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "read") == 0) {
		struct kshm *m = probe(argv[2], &err);

		if (!m)
			printf("%s\n", errname(err));
		else
			print_read(m);
		kshm_close(m);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "hold") == 0) {
		struct kshm *m = probe(argv[2], &err);

		CHECK(m);
		print_read(m);
		while (access(argv[3], F_OK) != 0)
			sleep_ms(20);
		print_read(m);
		kshm_close(m);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "reread") == 0) {
		struct kstate *s = kstate_subscribe(argv[2], KSTATE_READ);
		struct kshm *m = probe(argv[2], &err);
		char buf[8192];
		uint64_t v;
		ssize_t n;

		CHECK(s && m);
		print_read(m);
		while (access(argv[3], F_OK) != 0)
			sleep_ms(20);
		print_read(m);
		n = kstate_read(s, buf, sizeof(buf) - 1, &v);
		if (n < 0) {
			printf("kstate_read %s\n", errname(errno));
		} else {
			buf[n] = '\0';
			printf("kstate_read %llu %s\n", (unsigned long long)v,
			       buf);
		}
		kshm_close(m);
		kstate_unsubscribe(s);
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: test_shm MOUNT | probe STATE | read "
				"STATE | reread|hold STATE FILE\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/shm-readers", argv[1]);
	setenv("SHM_STATE", path, 1);
	test_readers_while_writing();
	test_poll_rearms();
	printf("test_shm: ok\n");
	return 0;
}
