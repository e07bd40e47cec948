#include "u64map.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot_of(uint64_t key, size_t cap)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return (size_t)key & (cap - 1);
}

void u64map_init(struct u64map *m)
{
	m->keys = NULL;
	m->vals = NULL;
	m->cap = 0;
	m->len = 0;
}

void u64map_free(struct u64map *m)
{
	free(m->keys);
	free(m->vals);
	u64map_init(m);
}

void *u64map_get(const struct u64map *m, uint64_t key)
{
	if (!m->cap)
		return NULL;
	for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (!m->vals[i])
			return NULL;
		if (m->keys[i] == key)
			return m->vals[i];
	}
}

static int grow(struct u64map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	uint64_t *keys = calloc(cap, sizeof(*keys));
	void **vals = calloc(cap, sizeof(*vals));

	if (!keys || !vals) {
		free(keys);
		free(vals);
		return ENOMEM;
	}
	for (size_t j = 0; j < m->cap; j++) {
		size_t i;

		if (!m->vals[j])
			continue;
		i = slot_of(m->keys[j], cap);
		while (vals[i])
			i = (i + 1) & (cap - 1);
		keys[i] = m->keys[j];
		vals[i] = m->vals[j];
	}
	free(m->keys);
	free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
	return 0;
}

int u64map_put(struct u64map *m, uint64_t key, void *val)
{
	size_t i;

	if ((m->len + 1) * 4 > m->cap * 3 && grow(m))
		return ENOMEM;
	for (i = slot_of(key, m->cap); m->vals[i]; i = (i + 1) & (m->cap - 1))
		if (m->keys[i] == key) {
			m->vals[i] = val;
			return 0;
		}
	m->keys[i] = key;
	m->vals[i] = val;
	m->len++;
	return 0;
}

void *u64map_del(struct u64map *m, uint64_t key)
{
	size_t i, j;
	void *val;

	if (!m->cap)
		return NULL;
	for (i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (!m->vals[i])
			return NULL;
		if (m->keys[i] == key)
			break;
	}
	val = m->vals[i];
	m->vals[i] = NULL;
	m->len--;
	/* Shift back later members of the probe run so lookups still find
	 * them without tombstones. */
	for (j = (i + 1) & (m->cap - 1); m->vals[j]; j = (j + 1) & (m->cap - 1)) {
		size_t home = slot_of(m->keys[j], m->cap);

		if (((j - home) & (m->cap - 1)) >= ((j - i) & (m->cap - 1))) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			m->vals[j] = NULL;
			i = j;
		}
	}
	return val;
}

size_t u64map_len(const struct u64map *m)
{
	return m->len;
}

void u64map_move(struct u64map *to, struct u64map *from)
{
	*to = *from;
	u64map_init(from);
}

/*
 * The walk goes backwards from an empty slot.  Removing an entry shifts
 * back only entries that follow it in its probe run, and a run never
 * passes the empty slot: so they all lie between the removed entry and
 * the start of the walk, already visited, and the slots still to visit do
 * not change.
 */
void u64map_iter_init(struct u64map_iter *it, const struct u64map *m)
{
	it->m = m;
	it->slot = 0;
	it->left = m->cap;
	/* At most three quarters full: there is an empty slot. */
	while (it->left && m->vals[it->slot])
		it->slot++;
}

bool u64map_next(struct u64map_iter *it, uint64_t *key, void **val)
{
	const struct u64map *m = it->m;

	while (it->left) {
		it->left--;
		it->slot = (it->slot - 1) & (m->cap - 1);
		if (m->vals[it->slot]) {
			if (key)
				*key = m->keys[it->slot];
			if (val)
				*val = m->vals[it->slot];
			return true;
		}
	}
	return false;
}
