/*
 * u64map: insert, get, replace, remove, growth, and the iterator, also
 * while removing the entries it returns.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "u64map.h"

/* Any non-NULL value that tells which key it belongs to. */
static void *val_of(uint64_t key)
{
	return (void *)(uintptr_t)(key * 2 + 1);
}

static void test_empty(void)
{
	struct u64map m;
	struct u64map_iter it;

	u64map_init(&m);
	KT_CHECK(u64map_get(&m, 0) == NULL);
	KT_CHECK(u64map_get(&m, 42) == NULL);
	KT_CHECK(u64map_del(&m, 42) == NULL);
	KT_CHECK(u64map_len(&m) == 0);
	u64map_iter_init(&it, &m);
	KT_CHECK(!u64map_next(&it, NULL, NULL));
	u64map_free(&m);
}

static void test_put_get_del(void)
{
	struct u64map m;

	u64map_init(&m);
	KT_CHECK(u64map_put(&m, 7, val_of(7)) == 0);
	KT_CHECK(u64map_put(&m, 0, val_of(0)) == 0);
	KT_CHECK(u64map_put(&m, UINT64_MAX, val_of(UINT64_MAX)) == 0);
	KT_CHECK(u64map_len(&m) == 3);
	KT_CHECK(u64map_get(&m, 7) == val_of(7));
	KT_CHECK(u64map_get(&m, 0) == val_of(0));
	KT_CHECK(u64map_get(&m, UINT64_MAX) == val_of(UINT64_MAX));
	KT_CHECK(u64map_get(&m, 8) == NULL);

	/* Replacing a value keeps one entry. */
	KT_CHECK(u64map_put(&m, 7, val_of(9)) == 0);
	KT_CHECK(u64map_len(&m) == 3);
	KT_CHECK(u64map_get(&m, 7) == val_of(9));

	KT_CHECK(u64map_del(&m, 7) == val_of(9));
	KT_CHECK(u64map_get(&m, 7) == NULL);
	KT_CHECK(u64map_del(&m, 7) == NULL);
	KT_CHECK(u64map_len(&m) == 2);
	KT_CHECK(u64map_get(&m, 0) == val_of(0));
	u64map_free(&m);
	KT_CHECK(u64map_len(&m) == 0);
}

/* Many keys, some of them colliding runs (multiples of a power of two),
 * through several doublings; then every other removed. */
static void test_growth(void)
{
	enum { N = 5000 };
	struct u64map m;
	bool ok = true;

	u64map_init(&m);
	for (uint64_t k = 0; k < N; k++)
		ok &= u64map_put(&m, k << 20, val_of(k << 20)) == 0;
	KT_CHECK(ok);
	KT_CHECK(u64map_len(&m) == N);
	for (uint64_t k = 0; k < N; k++)
		ok &= u64map_get(&m, k << 20) == val_of(k << 20);
	KT_CHECK(ok);
	for (uint64_t k = 0; k < N; k += 2)
		ok &= u64map_del(&m, k << 20) == val_of(k << 20);
	KT_CHECK(ok);
	KT_CHECK(u64map_len(&m) == N / 2);
	for (uint64_t k = 0; k < N; k++)
		ok &= u64map_get(&m, k << 20) ==
		      (k % 2 ? val_of(k << 20) : NULL);
	KT_CHECK(ok);
	u64map_free(&m);
}

/* Counts how often each key 0..n-1 comes out of an iteration; removes
 * the keys remove() picks as they come. */
static bool iterate(struct u64map *m, unsigned *seen, size_t n,
		    bool (*remove)(uint64_t key))
{
	struct u64map_iter it;
	uint64_t key;
	void *val;
	bool ok = true;

	memset(seen, 0, n * sizeof(*seen));
	u64map_iter_init(&it, m);
	while (u64map_next(&it, &key, &val)) {
		if (key >= n || val != val_of(key)) {
			ok = false;
			continue;
		}
		seen[key]++;
		if (remove && remove(key))
			ok &= u64map_del(m, key) == val;
	}
	return ok;
}

static bool remove_odd(uint64_t key)
{
	return key % 2;
}

static bool remove_all(uint64_t key)
{
	return true;
}

static void test_iterate(void)
{
	enum { N = 3000 };
	static unsigned seen[N];
	struct u64map m;
	bool ok = true;

	u64map_init(&m);
	for (uint64_t k = 0; k < N; k++)
		u64map_put(&m, k, val_of(k));
	KT_CHECK(iterate(&m, seen, N, NULL));
	for (size_t k = 0; k < N; k++)
		ok &= seen[k] == 1;
	KT_CHECK(ok);

	/* Removing what it returned: every entry still comes out once. */
	KT_CHECK(iterate(&m, seen, N, remove_odd));
	for (size_t k = 0; k < N; k++)
		ok &= seen[k] == 1;
	KT_CHECK(ok);
	KT_CHECK(u64map_len(&m) == N / 2);
	KT_CHECK(iterate(&m, seen, N, NULL));
	for (size_t k = 0; k < N; k++)
		ok &= seen[k] == (k % 2 ? 0u : 1u);
	KT_CHECK(ok);

	KT_CHECK(iterate(&m, seen, N, remove_all));
	KT_CHECK(u64map_len(&m) == 0);
	u64map_free(&m);
}

/* Keys that collide and wrap around the end of the table, where removal
 * shifts entries across the end: a small table, every key in it. */
static void test_iterate_wrapping(void)
{
	static unsigned seen[64];
	struct u64map m;
	bool ok = true;

	for (unsigned n = 1; n <= 12; n++) {
		u64map_init(&m);
		for (uint64_t k = 0; k < n; k++)
			u64map_put(&m, k * 16, val_of(k * 16));
		/* Keys are k * 16: count them by k. */
		{
			struct u64map_iter it;
			uint64_t key;
			void *val;

			memset(seen, 0, sizeof(seen));
			u64map_iter_init(&it, &m);
			while (u64map_next(&it, &key, &val)) {
				ok &= val == val_of(key) && key / 16 < n;
				seen[key / 16 % 64]++;
				ok &= u64map_del(&m, key) == val;
			}
		}
		for (unsigned k = 0; k < n; k++)
			ok &= seen[k] == 1;
		ok &= u64map_len(&m) == 0;
		u64map_free(&m);
	}
	KT_CHECK(ok);
}

static void test_move(void)
{
	struct u64map a, b;

	u64map_init(&a);
	u64map_put(&a, 1, val_of(1));
	u64map_move(&b, &a);
	KT_CHECK(u64map_len(&a) == 0);
	KT_CHECK(u64map_get(&a, 1) == NULL);
	KT_CHECK(u64map_get(&b, 1) == val_of(1));
	/* The emptied map is usable again. */
	KT_CHECK(u64map_put(&a, 2, val_of(2)) == 0);
	KT_CHECK(u64map_get(&a, 2) == val_of(2));
	u64map_free(&a);
	u64map_free(&b);
}

int main(void)
{
	KT_RUN(test_empty, "empty");
	KT_RUN(test_put_get_del, "put get del");
	KT_RUN(test_growth, "growth");
	KT_RUN(test_iterate, "iterate");
	KT_RUN(test_iterate_wrapping, "iterate wrapping");
	KT_RUN(test_move, "move");
	return kt_finish("u64map");
}
