/*
 * A small hash map from 64-bit keys to pointers (open addressing, linear
 * probing, backward-shift deletion).  Not thread-safe: callers lock.
 */
#ifndef KSTATEFS_FS_U64MAP_H
#define KSTATEFS_FS_U64MAP_H

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

#endif
