#include "fake_store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		abort();
	return p;
}

static void keep(struct fake_store *fs, const struct ks_rec *rec,
		 size_t unit, size_t unit_size)
{
	struct fake_rec *fr;

	if (fs->nrecs == fs->cap) {
		fs->cap = fs->cap ? fs->cap * 2 : 64;
		fs->recs = realloc(fs->recs, fs->cap * sizeof(*fs->recs));
		if (!fs->recs)
			abort();
	}
	fr = &fs->recs[fs->nrecs++];
	fr->rec = *rec;
	fr->unit = unit;
	fr->unit_size = unit_size;
	if (rec->name) {
		char *name = xmalloc(strlen(rec->name) + 1);

		strcpy(name, rec->name);
		fr->rec.name = name;
	}
	if (rec->bytes) {
		void *bytes = xmalloc(rec->len);

		memcpy(bytes, rec->bytes, rec->len);
		fr->rec.bytes = bytes;
	}
}

static int fake_append(struct ks_store *store, const struct ks_rec *recs,
		       size_t n)
{
	struct fake_store *fs = (struct fake_store *)store;
	int err = 0;

	pthread_mutex_lock(&fs->lock);
	fs->calls++;
	if (fs->fail_err && fs->fail_left != 0) {
		err = fs->fail_err;
		if (fs->fail_left > 0 && --fs->fail_left == 0)
			fs->fail_err = 0;
	} else if (fs->fail_every && fs->calls % fs->fail_every == 0) {
		err = fs->every_err;
	}
	if (err) {
		fs->failed++;
	} else {
		for (size_t i = 0; i < n; i++)
			keep(fs, &recs[i], fs->appends, n);
		fs->appends++;
	}
	pthread_mutex_unlock(&fs->lock);
	return err;
}

static const struct ks_store_ops fake_ops = {
	.append = fake_append,
};

void fake_store_init(struct fake_store *fs)
{
	memset(fs, 0, sizeof(*fs));
	fs->base.ops = &fake_ops;
	pthread_mutex_init(&fs->lock, NULL);
}

void fake_store_clear(struct fake_store *fs)
{
	pthread_mutex_lock(&fs->lock);
	for (size_t i = 0; i < fs->nrecs; i++) {
		free((void *)fs->recs[i].rec.name);
		free((void *)fs->recs[i].rec.bytes);
	}
	fs->nrecs = 0;
	pthread_mutex_unlock(&fs->lock);
}

void fake_store_destroy(struct fake_store *fs)
{
	fake_store_clear(fs);
	free(fs->recs);
	pthread_mutex_destroy(&fs->lock);
}

void fake_store_fail(struct fake_store *fs, int err, long count)
{
	pthread_mutex_lock(&fs->lock);
	fs->fail_err = count ? err : 0;
	fs->fail_left = count;
	fs->fail_every = 0;
	pthread_mutex_unlock(&fs->lock);
}

void fake_store_fail_every(struct fake_store *fs, int err, unsigned every)
{
	pthread_mutex_lock(&fs->lock);
	fs->fail_err = 0;
	fs->fail_left = 0;
	fs->fail_every = err ? every : 0;
	fs->every_err = err;
	pthread_mutex_unlock(&fs->lock);
}

const struct fake_rec *fake_store_last(struct fake_store *fs)
{
	const struct fake_rec *r;

	pthread_mutex_lock(&fs->lock);
	r = fs->nrecs ? &fs->recs[fs->nrecs - 1] : NULL;
	pthread_mutex_unlock(&fs->lock);
	return r;
}
