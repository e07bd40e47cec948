#include "period.h"

#include <string.h>

/* Parses "<int>[.<frac>]": the integer part without leading zeros (a lone
 * 0 before a fraction), at most 9 fraction digits, so that every period
 * has one spelling per value and unit.  *whole, *frac and *scale
 * (10^digits) get the number; returns the rest of the name, or NULL. */
static const char *parse_number(const char *p, unsigned long long *whole,
				unsigned long long *frac,
				unsigned long long *scale)
{
	*whole = 0;
	*frac = 0;
	*scale = 1;
	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '.'))
		return NULL;
	for (; *p >= '0' && *p <= '9'; p++) {
		*whole = *whole * 10 + (unsigned long long)(*p - '0');
		if (*whole > PERIOD_MAX_NS)
			return NULL;
	}
	if (*p != '.')
		return p;
	p++;
	if (*p < '0' || *p > '9')
		return NULL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (*scale == PERIOD_NSEC)
			return NULL;  /* finer than a nanosecond of a second */
		*frac = *frac * 10 + (unsigned long long)(*p - '0');
		*scale *= 10;
	}
	return p;
}

uint64_t period_parse(const char *name)
{
	unsigned long long whole, frac, scale;
	const char *p = parse_number(name, &whole, &frac, &scale);
	uint64_t unit, ns;

	if (!p || (whole == 0 && frac == 0))
		return 0;
	if (strcmp(p, "hz") == 0) {
		/* whole <= 1000 here, so whole * scale cannot wrap; rounded
		 * down: 3hz is 333333333 ns. */
		if (whole > PERIOD_NSEC / PERIOD_MIN_NS)
			return 0;
		ns = PERIOD_NSEC * scale / (whole * scale + frac);
		return ns >= PERIOD_MIN_NS && ns <= PERIOD_MAX_NS ? ns : 0;
	}
	if (strcmp(p, "ms") == 0)
		unit = 1000000ULL;
	else if (strcmp(p, "s") == 0)
		unit = PERIOD_NSEC;
	else
		return 0;
	/* Compared before multiplying, which could wrap; frac < scale <=
	 * 10^9 and unit <= 10^9, so frac * unit fits. */
	if (whole > PERIOD_MAX_NS / unit)
		return 0;
	ns = whole * unit + frac * unit / scale;
	return ns >= PERIOD_MIN_NS && ns <= PERIOD_MAX_NS ? ns : 0;
}
