/*
 * The daemon's memory: its resident set idle, and after creating COUNT
 * states holding a page of PAGE bytes each.
 *
 *   bench_mem PID MOUNT COUNT [PAGE]
 *
 * Prints "idle KIB", "full KIB" (VmRSS of PID) and "live KIB" (the bytes
 * of the pages).  The states are named m0, m1, ... under MOUNT.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long rss_kib(const char *pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/status", pid);
	f = fopen(path, "r");
	CHECK(f, "open %s", path);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	CHECK(kib >= 0, "no VmRSS in %s", path);
	return kib;
}

int main(int argc, char **argv)
{
	long count;
	size_t page;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: %s PID MOUNT COUNT [PAGE]\n", argv[0]);
		return 2;
	}
	count = atol(argv[3]);
	page = argc > 4 ? (size_t)atol(argv[4]) : 4096;
	printf("idle %ld\n", rss_kib(argv[1]));
	for (long i = 0; i < count; i++) {
		char name[32], *dir, *data;

		snprintf(name, sizeof(name), "m%ld", i);
		dir = bench_join(argv[2], name);
		data = bench_join(dir, "data");
		bench_mkdir(dir);
		bench_put(data, page);
		free(data);
		free(dir);
	}
	printf("full %ld\n", rss_kib(argv[1]));
	printf("live %ld\n", (long)((size_t)count * page / 1024));
	return 0;
}
