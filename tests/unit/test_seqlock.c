/*
 * The shared mappings' sequence lock (core/shm_layout.h) and the engine's
 * mirror that feeds it: threads hammer one mapping, and every read must be
 * one whole publication, never older than one that finished before the
 * read began; the mirror must hold every commit before the commit returns.
 */
#include "harness.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>

#include "shm_layout.h"

#define READERS 3

struct mapping {
	struct ks_shm_state *h;
	uint64_t max_size, slot_size;
	size_t size;
};

static void map_new(struct mapping *m, uint64_t max_size)
{
	m->max_size = max_size;
	m->slot_size = ks_shm_slot_size(max_size);
	m->size = ks_shm_file_size(max_size);
	/* Shared, as the daemon's: the same memory the readers map. */
	m->h = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m->h == MAP_FAILED) {
		perror("mmap");
		exit(EXIT_FAILURE);
	}
	m->h->max_size = max_size;
	m->h->slot_size = m->slot_size;
}

/* Publication V's page: its length and every byte follow from V, so a
 * page made of two publications cannot pass the check. */
static uint64_t page_len(uint64_t v, uint64_t max_size)
{
	return (v * 2654435761u) % (max_size + 1);
}

static void fill(unsigned char *buf, uint64_t v, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(v + i / 64);
}

static bool whole(const unsigned char *buf, uint64_t v, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (buf[i] != (unsigned char)(v + i / 64))
			return false;
	return true;
}

struct hammer {
	struct mapping *m;
	_Atomic uint64_t done;   /* the last publication finished */
	atomic_bool stop;
	atomic_ullong reads, retries, bad;
};

static void *writer(void *arg)
{
	struct hammer *hm = arg;
	unsigned char *buf = malloc(hm->m->max_size + 1);

	for (uint64_t v = 1; !atomic_load(&hm->stop); v++) {
		uint64_t len = page_len(v, hm->m->max_size);

		fill(buf, v, len);
		ks_shm_publish(hm->m->h, hm->m->slot_size, buf, len, v,
			       (int64_t)v, 0);
		atomic_store(&hm->done, v);
	}
	free(buf);
	return NULL;
}

static void *reader(void *arg)
{
	struct hammer *hm = arg;
	unsigned char *buf = malloc(hm->m->max_size + 1);
	uint64_t last = 0;

	while (!atomic_load(&hm->stop)) {
		/* Whatever was finished before this read began, the read
		 * must see it or something newer. */
		uint64_t floor = atomic_load(&hm->done), len = 0, v = 0;
		enum ks_shm_read_result r;

		while ((r = ks_shm_read_once(hm->m->h, hm->m->slot_size,
					     hm->m->max_size, buf,
					     hm->m->max_size, &len, &v)) ==
		       KS_SHM_READ_RETRY)
			atomic_fetch_add(&hm->retries, 1);
		if (r == KS_SHM_READ_EMPTY)
			continue;
		atomic_fetch_add(&hm->reads, 1);
		if (r != KS_SHM_READ_OK || v < floor || v < last ||
		    len != page_len(v, hm->m->max_size) ||
		    !whole(buf, v, len))
			atomic_fetch_add(&hm->bad, 1);
		last = v;
	}
	free(buf);
	return NULL;
}

static void hammer_run(uint64_t max_size, int ms)
{
	struct mapping m;
	struct hammer hm = { .m = &m };
	pthread_t w, r[READERS];

	map_new(&m, max_size);
	pthread_create(&w, NULL, writer, &hm);
	for (int i = 0; i < READERS; i++)
		pthread_create(&r[i], NULL, reader, &hm);
	sleep_ms(ms);
	atomic_store(&hm.stop, true);
	pthread_join(w, NULL);
	for (int i = 0; i < READERS; i++)
		pthread_join(r[i], NULL);
	printf("   max_size %llu: %llu publications, %llu reads, %llu "
	       "retries\n", (unsigned long long)max_size,
	       (unsigned long long)atomic_load(&hm.done),
	       (unsigned long long)hm.reads, (unsigned long long)hm.retries);
	KT_EQ(hm.bad, 0);
	KT_CHECK(hm.reads > 0);
	KT_CHECK(atomic_load(&hm.done) > 0);
	munmap(m.h, m.size);
}

static void test_small_pages(void)
{
	hammer_run(4096, 700);
}

static void test_large_pages(void)
{
	/* A copy far longer than a publication: readers are overtaken
	 * often, and must never keep what they copied then. */
	hammer_run(256 * 1024, 700);
}

static void test_tiny_pages(void)
{
	hammer_run(8, 300);
}

static void test_empty_and_bounds(void)
{
	struct mapping m;
	unsigned char buf[16];
	uint64_t len = 99, v = 99;

	map_new(&m, 16);
	KT_EQ(ks_shm_read_once(m.h, m.slot_size, 16, buf, sizeof(buf), &len,
			       &v), KS_SHM_READ_EMPTY);
	ks_shm_publish(m.h, m.slot_size, "abc", 3, 7, 0, 0);
	KT_EQ(ks_shm_read_once(m.h, m.slot_size, 16, buf, sizeof(buf), &len,
			       &v), KS_SHM_READ_OK);
	KT_EQ(v, 7);
	KT_BYTES(buf, len, "abc", 3);
	/* A caller's buffer shorter than the page: no overrun, and the
	 * length says how much there is. */
	memset(buf, 0, sizeof(buf));
	KT_EQ(ks_shm_read_once(m.h, m.slot_size, 16, buf, 2, &len, &v),
	      KS_SHM_READ_OK);
	KT_EQ(len, 3);
	KT_EQ(buf[2], 0);
	/* A length past max_size (a damaged or hostile file) is refused,
	 * never copied. */
	ks_shm_slot(m.h, m.slot_size, 1)->len = 1u << 30;
	KT_EQ(ks_shm_read_once(m.h, m.slot_size, 16, buf, sizeof(buf), &len,
			       &v), KS_SHM_READ_BAD);
	munmap(m.h, m.size);
}

/* A reader that loaded the header's seq n just before the writer finished
 * publications n + 1 and n + 2 (the second into the slot of n), but not
 * yet the header's raise to n + 2: the slot holds n + 2 whole, yet taking
 * it would let the next read, which loads seq n + 1, go back a version.
 * Such a read must try again, and then get n + 1 or newer. */
static void test_lapped_reader(void)
{
	struct mapping m;
	unsigned char buf[16];
	uint64_t len = 0, v = 0;

	map_new(&m, 16);
	ks_shm_publish(m.h, m.slot_size, "v1", 2, 1, 0, 0);
	ks_shm_publish(m.h, m.slot_size, "v2", 2, 2, 0, 0);
	ks_shm_publish(m.h, m.slot_size, "v3", 2, 3, 0, 0);
	ks_shm_publish(m.h, m.slot_size, "v4", 2, 4, 0, 0);
	/* The header as that reader saw it: publication 2. */
	atomic_store(&m.h->seq, 2);
	KT_EQ(ks_shm_read_once(m.h, m.slot_size, 16, buf, sizeof(buf), &len,
			       &v), KS_SHM_READ_RETRY);
	/* Publication 3 as the newest: its slot is not lapped. */
	atomic_store(&m.h->seq, 3);
	KT_EQ(ks_shm_read_once(m.h, m.slot_size, 16, buf, sizeof(buf), &len,
			       &v), KS_SHM_READ_OK);
	KT_EQ(v, 3);
	KT_BYTES(buf, len, "v3", 2);
	atomic_store(&m.h->seq, 4);
	KT_EQ(ks_shm_read_once(m.h, m.slot_size, 16, buf, sizeof(buf), &len,
			       &v), KS_SHM_READ_OK);
	KT_EQ(v, 4);
	munmap(m.h, m.size);
}

/* ---- the engine's mirror ------------------------------------------------ */

struct test_mirror {
	struct mapping m;
	bool gone;
	mode_t mode;
};

static atomic_int mirrors_made, mirrors_gone;

static void *t_created(void *arg, struct ks_state *st)
{
	struct test_mirror *tm = calloc(1, sizeof(*tm));
	struct ks_state_attr a;

	map_new(&tm->m, *(size_t *)arg);
	ks_state_get_attr(st, &a);
	tm->mode = a.mode;
	atomic_fetch_add(&mirrors_made, 1);
	return tm;
}

static void t_page(void *mirror, const struct ks_page *p)
{
	struct test_mirror *tm = mirror;

	ks_shm_publish(tm->m.h, tm->m.slot_size, p->bytes, p->len, p->version,
		       p->mtime.tv_sec, p->mtime.tv_nsec);
}

static void t_attr(void *mirror, const struct ks_state_attr *a)
{
	((struct test_mirror *)mirror)->mode = a->mode;
}

static void t_gone(void *mirror)
{
	struct test_mirror *tm = mirror;

	munmap(tm->m.h, tm->m.size);
	free(tm);
	atomic_fetch_add(&mirrors_gone, 1);
}

static const struct ks_mirror_ops t_ops = {
	.created = t_created, .page = t_page, .attr = t_attr, .gone = t_gone,
};

/* What the engine gave st's mirror (the engine keeps it in the state;
 * the test finds it through its own list). */
static struct test_mirror *last_made;

static void *t_created_keep(void *arg, struct ks_state *st)
{
	last_made = t_created(arg, st);
	return last_made;
}

static const struct ks_mirror_ops t_ops_keep = {
	.created = t_created_keep, .page = t_page, .attr = t_attr,
	.gone = t_gone,
};

struct committer {
	struct ks_state *st;
	struct test_mirror *tm;
	atomic_bool stop;
	atomic_ullong late;      /* commits the mirror did not hold yet */
	_Atomic uint64_t done;
};

static void *commit_loop(void *arg)
{
	struct committer *c = arg;
	unsigned char buf[300];

	for (uint64_t i = 1; !atomic_load(&c->stop); i++) {
		uint64_t v, mv = 0, len = 0;
		unsigned char got[300];

		fill(buf, i, sizeof(buf) - i % 64);
		if (ks_state_commit_bytes(c->st, buf, sizeof(buf) - i % 64,
					  &v) != 0)
			continue;
		/* Returned: the mirror must already have it (or newer). */
		while (ks_shm_read_once(c->tm->m.h, c->tm->m.slot_size,
					c->tm->m.max_size, got, sizeof(got),
					&len, &mv) == KS_SHM_READ_RETRY)
			;
		if (mv < v)
			atomic_fetch_add(&c->late, 1);
		atomic_store(&c->done, v);
	}
	return NULL;
}

static void test_mirror_in_step(void)
{
	size_t max = 4096;
	struct ks_engine *eng = kt_engine(max, 64, 16, NULL);
	struct ks_state *early = kt_state(eng, "early"), *st;
	struct committer c[2];
	pthread_t t[2];
	unsigned char buf[512];
	uint64_t len = 0, v = 0, floor, last = 0, reads = 0, bad = 0;

	mirrors_made = mirrors_gone = 0;
	KT_ERR(ks_state_commit_bytes(early, "x", 1, NULL), 0);
	/* States already there are mirrored at once, with their page. */
	ks_engine_set_mirror(eng, &t_ops_keep, &max);
	KT_EQ(mirrors_made, 1);
	KT_EQ(ks_shm_read_once(last_made->m.h, last_made->m.slot_size, max,
			       buf, sizeof(buf), &len, &v), KS_SHM_READ_OK);
	KT_EQ(v, 1);
	KT_BYTES(buf, len, "x", 1);

	st = kt_state(eng, "busy");
	KT_EQ(mirrors_made, 2);
	for (int i = 0; i < 2; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].st = st;
		c[i].tm = last_made;
		pthread_create(&t[i], NULL, commit_loop, &c[i]);
	}
	for (uint64_t until = now_ms() + 500; now_ms() < until;) {
		enum ks_shm_read_result r;

		floor = atomic_load(&c[0].done);
		if (atomic_load(&c[1].done) > floor)
			floor = atomic_load(&c[1].done);
		while ((r = ks_shm_read_once(last_made->m.h,
					     last_made->m.slot_size, max, buf,
					     sizeof(buf), &len, &v)) ==
		       KS_SHM_READ_RETRY)
			;
		reads++;
		/* Version 0 is the empty page; every later one is one
		 * committer's page whole: its first byte says which, and
		 * so its length and every other byte. */
		if (r != KS_SHM_READ_OK || v < floor || v < last)
			bad++;
		else if (v && (len != 300 - buf[0] % 64u ||
			       !whole(buf, buf[0], len)))
			bad++;
		last = v;
	}
	for (int i = 0; i < 2; i++) {
		atomic_store(&c[i].stop, true);
		pthread_join(t[i], NULL);
		KT_EQ(c[i].late, 0);
	}
	KT_EQ(bad, 0);
	KT_CHECK(reads > 0);
	/* At rest, the mirror is the state. */
	KT_EQ(ks_shm_read_once(last_made->m.h, last_made->m.slot_size, max,
			       buf, sizeof(buf), &len, &v), KS_SHM_READ_OK);
	KT_EQ(v, ks_state_version(st));

	/* chmod reaches the mirror; delete ends it before it returns. */
	{
		struct ks_state_attr a;

		ks_state_get_attr(st, &a);
		a.mode = 0700;
		KT_ERR(ks_state_set_attr(st, &a), 0);
		KT_EQ(last_made->mode, 0700);
	}
	KT_ERR(ks_state_delete(eng, "busy"), 0);
	KT_EQ(mirrors_gone, 1);
	ks_state_unref(st);
	ks_state_unref(early);
	ks_engine_free(eng);
	KT_EQ(mirrors_gone, 2);
}

static void test_unmirrored(void)
{
	/* A mirror that declines (NULL) leaves the state as it was. */
	struct ks_engine *eng = kt_engine(64, 8, 8, NULL);
	struct ks_state *st;

	ks_engine_set_mirror(eng, &t_ops, &(size_t){ 64 });
	st = kt_state(eng, "s");
	KT_ERR(ks_state_commit_bytes(st, "y", 1, NULL), 0);
	ks_state_unref(st);
	ks_engine_free(eng);
	KT_EQ(mirrors_gone, mirrors_made);
}

int main(void)
{
	KT_RUN(test_empty_and_bounds,
	       "nothing published, a short buffer, a length out of range");
	KT_RUN(test_small_pages,
	       "one writer, three readers, 4 KiB pages: every read whole and "
	       "never older than a finished publication");
	KT_RUN(test_large_pages, "the same with 256 KiB pages");
	KT_RUN(test_tiny_pages, "the same with 8-byte pages");
	KT_RUN(test_lapped_reader,
	       "a reader whose seq a writer lapped tries again, never going back a version");
	KT_RUN(test_mirror_in_step,
	       "the engine's mirror holds every commit before it returns, "
	       "follows chmod, and goes with the state");
	KT_RUN(test_unmirrored, "every mirror made is gone with the engine");
	return kt_finish("test_seqlock");
}
