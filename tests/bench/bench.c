/*
 * The shared part of the benchmark programs: see bench.h.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_fail(const char *what, ...)
{
	int err = errno;
	va_list ap;

	fputs("bench: ", stderr);
	va_start(ap, what);
	vfprintf(stderr, what, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", err ? strerror(err) : "failed");
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

void bench_sort(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
}

double bench_quantile(const double *sorted, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(p * (double)n);
	if (i >= n)
		i = n - 1;
	return sorted[i];
}

void bench_samples_add(struct bench_samples *s, double x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 1024;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		CHECK(s->v, "realloc");
	}
	s->v[s->n++] = x;
}

int bench_parse_opts(int argc, char **argv, struct bench_opts *o,
		     const char *usage)
{
	int c;

	o->seconds = 0.5;
	o->rounds = 5;
	o->page = 4096;
	while ((c = getopt(argc, argv, "t:r:s:")) != -1) {
		switch (c) {
		case 't':
			o->seconds = atof(optarg);
			break;
		case 'r':
			o->rounds = atoi(optarg);
			break;
		case 's':
			o->page = (size_t)atol(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s %s\n", argv[0], usage);
			exit(2);
		}
	}
	if (o->seconds <= 0 || o->rounds < 1 || optind >= argc) {
		fprintf(stderr, "usage: %s %s\n", argv[0], usage);
		exit(2);
	}
	return optind;
}

void bench_parse_spec(char *arg, struct bench_spec *s)
{
	char *eq = strchr(arg, '='), *colon, *last;

	if (!eq || !(colon = strchr(eq + 1, ':'))) {
		fprintf(stderr, "bench: '%s' is not NAME=MODE:PATH[:THREADS]\n",
			arg);
		exit(2);
	}
	*eq = *colon = '\0';
	s->name = arg;
	s->mode = eq + 1;
	s->path = colon + 1;
	s->threads = 1;
	last = strrchr(s->path, ':');
	if (last) {
		*last = '\0';
		s->threads = atoi(last + 1);
		if (s->threads < 1)
			s->threads = 1;
	}
}

void bench_mkdir(const char *path)
{
	CHECK(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s", path);
}

char *bench_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	CHECK(p, "malloc");
	snprintf(p, n, "%s/%s", dir, name);
	return p;
}

unsigned char *bench_page(size_t size, unsigned seed)
{
	unsigned char *p = malloc(size ? size : 1);

	CHECK(p, "malloc");
	for (size_t i = 0; i < size; i++)
		p[i] = (unsigned char)('a' + (i + seed) % 26);
	return p;
}

void bench_put(const char *path, size_t size)
{
	unsigned char *page = bench_page(size, 0);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	CHECK(fd >= 0, "open %s", path);
	CHECK(write(fd, page, size) == (ssize_t)size, "write %s", path);
	CHECK(close(fd) == 0, "close %s", path);
	free(page);
}

/* One thread of a round: op in a loop until the deadline. */
struct worker {
	const struct bench_rate_mode *mode;
	void *ctx;
	uint64_t deadline;
	uint64_t ops;
	uint64_t end;
	pthread_barrier_t *start;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint64_t t;

	pthread_barrier_wait(w->start);
	w->ops = 0;
	do {
		w->mode->op(w->ctx);
		w->ops++;
	} while ((t = bench_now()) < w->deadline);
	w->end = t;
	return NULL;
}

struct rate_run {
	struct bench_spec spec;
	const struct bench_rate_mode *mode;
	void **ctx;          /* one per thread */
	double *rounds;      /* operations per second, by round */
};

static double run_round(struct rate_run *r, double seconds)
{
	int n = r->spec.threads;
	struct worker *w = calloc((size_t)n, sizeof(*w));
	pthread_t *th = calloc((size_t)n, sizeof(*th));
	pthread_barrier_t start;
	uint64_t t0, end = 0, ops = 0;

	CHECK(w && th, "calloc");
	pthread_barrier_init(&start, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++) {
		w[i].mode = r->mode;
		w[i].ctx = r->ctx[i];
		w[i].start = &start;
		errno = pthread_create(&th[i], NULL, worker_main, &w[i]);
		CHECK(errno == 0, "pthread_create");
	}
	t0 = bench_now();
	for (int i = 0; i < n; i++)
		w[i].deadline = t0 + (uint64_t)(seconds * 1e9);
	pthread_barrier_wait(&start);
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		ops += w[i].ops;
		if (w[i].end > end)
			end = w[i].end;
	}
	pthread_barrier_destroy(&start);
	free(w);
	free(th);
	return (double)ops / ((double)(end - t0) / 1e9);
}

int bench_rates(int argc, char **argv, const struct bench_rate_mode *modes,
		const char *usage)
{
	struct bench_opts o;
	int first = bench_parse_opts(argc, argv, &o, usage);
	int nrun = argc - first;
	struct rate_run *runs = calloc((size_t)nrun, sizeof(*runs));

	CHECK(runs, "calloc");
	for (int i = 0; i < nrun; i++) {
		struct rate_run *r = &runs[i];

		bench_parse_spec(argv[first + i], &r->spec);
		for (r->mode = modes; r->mode->name; r->mode++)
			if (strcmp(r->mode->name, r->spec.mode) == 0)
				break;
		if (!r->mode->name) {
			fprintf(stderr, "bench: no mode '%s'\nusage: %s %s\n",
				r->spec.mode, argv[0], usage);
			return 2;
		}
		r->ctx = calloc((size_t)r->spec.threads, sizeof(void *));
		r->rounds = calloc((size_t)o.rounds, sizeof(double));
		CHECK(r->ctx && r->rounds, "calloc");
		for (int t = 0; t < r->spec.threads; t++) {
			size_t len = strlen(r->spec.path) + 16;
			char *path = malloc(len);

			CHECK(path, "malloc");
			if (r->spec.threads > 1)
				snprintf(path, len, "%s%d", r->spec.path, t);
			else
				snprintf(path, len, "%s", r->spec.path);
			r->ctx[t] = r->mode->setup(path, &o);
			free(path);
		}
	}
	for (int round = 0; round < o.rounds; round++)
		for (int i = 0; i < nrun; i++)
			runs[i].rounds[round] = run_round(&runs[i], o.seconds);
	for (int i = 0; i < nrun; i++) {
		bench_sort(runs[i].rounds, (size_t)o.rounds);
		printf("%s %.0f\n", runs[i].spec.name,
		       bench_quantile(runs[i].rounds, (size_t)o.rounds, 0.5));
	}
	return 0;
}
