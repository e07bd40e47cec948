/*
 * counter: count events in a kstatefs state, from any number of processes.
 *
 *   cc -o counter counter.c $(pkg-config --cflags --libs kstate)
 *   ./counter /mnt/state/hits          adds 1 and prints the new count
 *   ./counter -w /mnt/state/hits       prints the count now and on every change
 *
 * The page is the count in decimal and a newline, so the shell sees the same
 * thing: cat /mnt/state/hits/data.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kstate.h>

/* The transaction body: may run several times, if other writers get in
 * first, so it only reads and writes the page it is given. */
static int add_one(struct kstate_txn *txn, void *page, void *arg)
{
	char text[32];
	size_t len = kstate_get_length(txn);
	long long *count = arg;
	int n;

	if (len >= sizeof text) {
		errno = EINVAL;  /* not a counter */
		return -1;
	}
	memcpy(text, page, len);
	text[len] = '\0';
	*count = strtoll(text, NULL, 10) + 1;
	n = snprintf(text, sizeof text, "%lld\n", *count);
	if (kstate_set_length(txn, (size_t)n) < 0)
		return -1;
	memcpy(kstate_get_ptr(txn), text, (size_t)n);  /* the page may move */
	return 0;
}

static int watch(struct kstate *s, const char *path)
{
	struct pollfd p = { .fd = kstate_fd(s), .events = POLLPRI };
	char page[4096];

	for (;;) {
		uint64_t version;
		ssize_t n = kstate_read(s, page, sizeof page, &version);

		if (n < 0) {
			fprintf(stderr, "counter: %s: %s\n", path, strerror(errno));
			return 1;
		}
		printf("version %" PRIu64 ": %.*s", version, (int)n, page);
		fflush(stdout);
		/* Reading re-armed the descriptor: this sleeps until the next
		 * commit, from whatever process. */
		if (poll(&p, 1, -1) < 0) {
			perror("counter: poll");
			return 1;
		}
	}
}

int main(int argc, char **argv)
{
	int watching = argc == 3 && strcmp(argv[1], "-w") == 0;
	const char *path = argv[argc - 1];
	struct kstate *s;
	long long count;
	int rc;

	if (argc != 2 && !watching) {
		fprintf(stderr, "usage: counter [-w] STATE\n");
		return 2;
	}
	s = kstate_subscribe(path, watching ? KSTATE_READ : KSTATE_WRITE);
	if (!s) {
		fprintf(stderr, "counter: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (watching) {
		rc = watch(s, path);
	} else {
		/* Retry on conflicts, backing off, until the increment lands. */
		rc = kstate_transaction_using_fn(s, add_one, &count,
						 KSTATE_RETRY_FOREVER);
		if (rc == 0)
			printf("%lld\n", count);
		else
			fprintf(stderr, "counter: %s: %s\n", path,
				strerror(errno));
	}
	kstate_unsubscribe(s);
	return rc == 0 ? 0 : 1;
}
