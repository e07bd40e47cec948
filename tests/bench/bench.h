/*
 * What the benchmark programs share: the clock, failing loudly, statistics
 * over samples, and the driver for rate measurements.
 *
 * Every program takes measurements as NAME=MODE:PATH[:THREADS] and prints
 * one line per measurement, "NAME FIGURE...", for scripts/bench to put in
 * its table.  Rate measurements run in rounds, all measurements of one
 * program taking turns, so that a machine that is busy for a moment slows
 * a round of each rather than all the rounds of one; the figure is the
 * median round.
 */
#ifndef KSTATEFS_BENCH_H
#define KSTATEFS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t bench_now(void);

/* Prints "bench: WHAT: strerror(errno)" and exits with status 1. */
_Noreturn void bench_fail(const char *what, ...)
	__attribute__((format(printf, 1, 2)));
#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond))                                                 \
			bench_fail(__VA_ARGS__);                             \
	} while (0)

/* Sorts the samples; then the p-quantile (0..1) by nearest rank. */
void bench_sort(double *v, size_t n);
double bench_quantile(const double *sorted, size_t n, double p);

/* A growable array of samples. */
struct bench_samples {
	double *v;
	size_t n, cap;
};
void bench_samples_add(struct bench_samples *s, double x);

/* Options common to all programs: -t SECONDS per round (or per latency
 * measurement), -r ROUNDS, -s PAGE_BYTES. */
struct bench_opts {
	double seconds;
	int rounds;
	size_t page;
};
/* Parses the options; returns the index of the first measurement. */
int bench_parse_opts(int argc, char **argv, struct bench_opts *o,
		     const char *usage);

struct bench_spec {
	char *name;
	char *mode;
	char *path;
	int threads;
};
void bench_parse_spec(char *arg, struct bench_spec *s);

/* A measurement of operations per second: setup once per thread (on
 * PATH, or on PATH0, PATH1, ... with several threads), then op in a loop. */
struct bench_rate_mode {
	const char *name;
	void *(*setup)(const char *path, const struct bench_opts *o);
	void (*op)(void *ctx);
};

/* Runs the rate measurements given on the command line, in alternating
 * rounds, and prints "NAME OPS_PER_SECOND" for each. */
int bench_rates(int argc, char **argv, const struct bench_rate_mode *modes,
		const char *usage);

/* Helpers for the modes. */
void bench_mkdir(const char *path);   /* a state, or a plain directory */
char *bench_join(const char *dir, const char *name);  /* malloc'd */
unsigned char *bench_page(size_t size, unsigned seed); /* malloc'd */
/* Replaces PATH's content by SIZE bytes (open O_TRUNC, write, close). */
void bench_put(const char *path, size_t size);

#endif
