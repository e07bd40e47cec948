/*
 * The PERIOD names of views: valid names, the bounds 1 ms and one day,
 * and junk.
 */
#include <stdint.h>

#include "harness.h"
#include "period.h"

#define MS 1000000ULL
#define S 1000000000ULL

static void test_valid(void)
{
	KT_CHECK(period_parse("250ms") == 250 * MS);
	KT_CHECK(period_parse("2s") == 2 * S);
	KT_CHECK(period_parse("10hz") == S / 10);
	KT_CHECK(period_parse("1hz") == S);
	KT_CHECK(period_parse("3hz") == S / 3);
	KT_CHECK(period_parse("1000ms") == S);
	KT_CHECK(period_parse("60s") == 60 * S);
	/* Decimals. */
	KT_CHECK(period_parse("0.5s") == S / 2);
	KT_CHECK(period_parse("1.5s") == 3 * S / 2);
	KT_CHECK(period_parse("2.25ms") == 2250000ULL);
	KT_CHECK(period_parse("0.5hz") == 2 * S);
	KT_CHECK(period_parse("2.5hz") == 400 * MS);
	KT_CHECK(period_parse("0.001s") == MS);
	KT_CHECK(period_parse("0.000000001s") == 0);   /* below 1 ms */
	KT_CHECK(period_parse("86400.0s") == PERIOD_MAX_NS);
	KT_CHECK(period_parse("0.0000115741hz") == 0); /* past one day */
}

static void test_bounds(void)
{
	KT_CHECK(period_parse("1ms") == PERIOD_MIN_NS);
	KT_CHECK(period_parse("1000hz") == PERIOD_MIN_NS);
	KT_CHECK(period_parse("1001hz") == 0);
	KT_CHECK(period_parse("86400s") == PERIOD_MAX_NS);
	KT_CHECK(period_parse("86400000ms") == PERIOD_MAX_NS);
	KT_CHECK(period_parse("86401s") == 0);
	KT_CHECK(period_parse("86400001ms") == 0);
	/* Numbers whose product would wrap around 64 bits. */
	KT_CHECK(period_parse("86400000000000ms") == 0);
	KT_CHECK(period_parse("18446744073710ms") == 0);
	KT_CHECK(period_parse("18446744074s") == 0);
	KT_CHECK(period_parse("99999999999999999999999s") == 0);
	KT_CHECK(period_parse("1000000000hz") == 0);
}

static void test_junk(void)
{
	const char *junk[] = {
		"", "ms", "s", "hz", "0s", "0ms", "0hz", "05s", "-1s", "+1s",
		" 1s", "1s ", "1", "1m", "1h", "1S", "1Hz", "1MS", "1 s",
		"1e3ms", "0.0s", "0.s", ".5s", "1.s", "00.5s", "01.5s",
		"1..5s", "1.5.5s", "0.1234567891s", "-0.5s", "1sec", "1mss", "1shz", "0x10s", "data",
		"version", ".", "..",
	};

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		if (period_parse(junk[i]) != 0) {
			printf("accepted \"%s\"\n", junk[i]);
			KT_CHECK(period_parse(junk[i]) == 0);
		}
	}
}

int main(void)
{
	KT_RUN(test_valid, "valid");
	KT_RUN(test_bounds, "bounds");
	KT_RUN(test_junk, "junk");
	return kt_finish("period");
}
