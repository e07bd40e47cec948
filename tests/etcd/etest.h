/*
 * A very small harness for the etcd client tests: checks that print what
 * failed and carry on, and a tally turned into the exit status.
 */
#ifndef KSTATEFS_TESTS_ETEST_H
#define KSTATEFS_TESTS_ETEST_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int et_failed;
static int et_checks;

#define ET_CHECK(cond)                                                      \
	do {                                                                \
		et_checks++;                                                \
		if (!(cond)) {                                              \
			printf("   FAIL %s:%d: %s\n", __FILE__, __LINE__,   \
			       #cond);                                      \
			fflush(stdout);                                     \
			et_failed++;                                        \
		}                                                           \
	} while (0)

#define ET_EQ(a, b)                                                         \
	do {                                                                \
		long long et_a_ = (long long)(a);                           \
		long long et_b_ = (long long)(b);                           \
		et_checks++;                                                \
		if (et_a_ != et_b_) {                                       \
			printf("   FAIL %s:%d: %s == %s (%lld != %lld)\n",  \
			       __FILE__, __LINE__, #a, #b, et_a_, et_b_);   \
			fflush(stdout);                                     \
			et_failed++;                                        \
		}                                                           \
	} while (0)

#define ET_RUN(fn)                                                          \
	do {                                                                \
		int et_before_ = et_failed;                                 \
		printf("-- %s\n", #fn);                                     \
		fflush(stdout);                                             \
		fn();                                                       \
		printf("%s %s\n", et_failed == et_before_ ? "ok" : "FAILED", \
		       #fn);                                                \
		fflush(stdout);                                             \
	} while (0)

static inline double et_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int et_finish(void)
{
	printf("%d checks, %d failed\n", et_checks, et_failed);
	return et_failed ? 1 : 0;
}

#endif
