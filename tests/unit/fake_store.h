/*
 * A store for tests: it keeps a copy of every record appended, counts the
 * calls, and can be told to fail the next appends with an errno, as a disk
 * that is full or broken would.
 */
#ifndef KSTATEFS_TESTS_FAKE_STORE_H
#define KSTATEFS_TESTS_FAKE_STORE_H

#include <pthread.h>
#include <stdbool.h>

#include "store.h"

/* One record as it was appended, with its own copies of name and bytes. */
struct fake_rec {
	struct ks_rec rec;       /* name and bytes point into this record */
	size_t unit;             /* which append call it came in */
	size_t unit_size;        /* the n of that call */
};

struct fake_store {
	struct ks_store base;    /* first: the engine sees only this */
	pthread_mutex_t lock;
	size_t appends;          /* successful append calls */
	size_t failed;           /* append calls that failed */
	size_t nrecs;
	size_t cap;
	struct fake_rec *recs;
	int fail_err;            /* errno for failing calls, 0: none */
	long fail_left;          /* calls still to fail; -1: all */
	unsigned fail_every;     /* if > 0: fail one call in this many */
	int every_err;           /* ... with this errno */
	size_t calls;            /* every call, failed or not */
};

void fake_store_init(struct fake_store *fs);
void fake_store_destroy(struct fake_store *fs);
/* Fail the next COUNT appends (-1: all of them) with ERR; 0 clears. */
void fake_store_fail(struct fake_store *fs, int err, long count);
/* Fail one append in every EVERY calls with ERR; 0 clears. */
void fake_store_fail_every(struct fake_store *fs, int err, unsigned every);
/* Forget the records kept so far (the counters stay). */
void fake_store_clear(struct fake_store *fs);
/* The last record, or NULL. */
const struct fake_rec *fake_store_last(struct fake_store *fs);

#endif
