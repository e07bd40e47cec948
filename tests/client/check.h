/*
 * A minimal harness for the libkstate tests: they run against a real
 * kstatefs mount, given as the first argument.
 */
#ifndef KSTATE_TEST_CHECK_H
#define KSTATE_TEST_CHECK_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Fails the test, showing the condition and errno, which is what the
 * library reports through. */
#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s (errno %d: %s)\n", \
				__FILE__, __LINE__, #cond, errno,            \
				strerror(errno));                            \
			exit(1);                                             \
		}                                                            \
	} while (0)

static inline double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

#endif
