#include "period.h"

#include <string.h>

uint64_t period_parse(const char *name)
{
	unsigned long long n = 0;
	const char *p = name;
	uint64_t unit;

	if (*p < '1' || *p > '9')
		return 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (unsigned long long)(*p - '0');
		if (n > PERIOD_MAX_NS)
			return 0;
	}
	if (strcmp(p, "hz") == 0) {
		/* Rounded down: 3hz is 333333333 ns. */
		unit = PERIOD_NSEC / n;
		return unit >= PERIOD_MIN_NS ? unit : 0;
	}
	if (strcmp(p, "ms") == 0)
		unit = 1000000ULL;
	else if (strcmp(p, "s") == 0)
		unit = PERIOD_NSEC;
	else
		return 0;
	/* Compared before multiplying, which could wrap. */
	if (n > PERIOD_MAX_NS / unit || n * unit < PERIOD_MIN_NS)
		return 0;
	return n * unit;
}
