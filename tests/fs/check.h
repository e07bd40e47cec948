/*
 * A minimal harness for the tests of fs/ pieces: CHECK prints the failing
 * expression and counts it, and check_exit turns the count into the exit
 * status meson expects.
 */
#ifndef KSTATEFS_TESTS_FS_CHECK_H
#define KSTATEFS_TESTS_FS_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_failures;

#define CHECK(cond)                                                         \
	do {                                                                \
		if (!(cond)) {                                              \
			printf("FAIL %s:%d: %s\n", __FILE__, __LINE__,      \
			       #cond);                                      \
			check_failures++;                                   \
		}                                                           \
	} while (0)

static inline int check_exit(void)
{
	if (check_failures)
		printf("%d check(s) failed\n", check_failures);
	return check_failures ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
