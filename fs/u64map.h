/*
 * A small hash map from 64-bit keys to pointers (open addressing, linear
 * probing, backward-shift deletion).  Not thread-safe: callers lock.
 *
 * The fields are this file's business only: everyone else goes through
 * the functions below, the iterator included.
 */
#ifndef KSTATEFS_FS_U64MAP_H
#define KSTATEFS_FS_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct u64map {
	uint64_t *keys;
	void **vals;      /* NULL marks an empty slot */
	size_t cap;       /* a power of two */
	size_t len;
};

void u64map_init(struct u64map *m);
void u64map_free(struct u64map *m);
void *u64map_get(const struct u64map *m, uint64_t key);
/* 0, or ENOMEM.  val must not be NULL. */
int u64map_put(struct u64map *m, uint64_t key, void *val);
/* Returns the removed value, or NULL. */
void *u64map_del(struct u64map *m, uint64_t key);
size_t u64map_len(const struct u64map *m);
/* Moves every entry of from into an empty to, leaving from empty. */
void u64map_move(struct u64map *to, struct u64map *from);

/*
 * Visits every entry once, in no particular order.  While iterating, the
 * entry last returned (and any returned before it) may be removed, and
 * values of existing keys replaced; nothing may be inserted.
 */
struct u64map_iter {
	const struct u64map *m;
	size_t slot;      /* the slot visited last */
	size_t left;      /* slots not visited yet */
};

void u64map_iter_init(struct u64map_iter *it, const struct u64map *m);
/* The next entry into *key and *val (either may be NULL); false at the
 * end. */
bool u64map_next(struct u64map_iter *it, uint64_t *key, void **val);

#endif
