/*
 * The etcd client against a real etcd (started here, on free loopback ports,
 * in a temporary directory; killed at the end whatever happens): round trips
 * of binary values, paging, txns, errors, the watch (grouping, revisions,
 * resume after etcd restarts, compaction, a stopped etcd noticed), bounded
 * timeouts, and failover past a dead endpoint.  Prints the latencies it saw.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "etcd_client.h"
#include "etcd_proc.h"
#include "harness.h"

static struct etcd_proc etcd;   /* for the atexit cleanup */

static void cleanup_etcd(void)
{
	etcd_proc_cleanup(&etcd);
}

static struct ks_etcd *client(const char *endpoints, const char *prefix,
			      double timeout)
{
	struct ks_etcd_options o = {
		.endpoints = endpoints,
		.prefix = prefix,
		.timeout = timeout,
		.keepalive = 0.5,
		.dead_after = 1.0,
	};
	struct ks_etcd *c = NULL;
	int err = ks_etcd_create(&o, &c);

	if (err) {
		printf("ks_etcd_create: %s\n", strerror(err));
		exit(1);
	}
	return c;
}

static int put(struct ks_etcd *c, const char *key, const void *v, size_t len,
	       int64_t *rev)
{
	struct ks_etcd_op op = {
		.type = KS_ETCD_OP_PUT,
		.keys = { .key = key },
		.value = v,
		.value_len = len,
	};
	struct ks_etcd_txn_result r = { 0 };
	int err = ks_etcd_txn(c, NULL, 0, &op, 1, NULL, 0, &r);

	if (rev != NULL)
		*rev = r.revision;
	ks_etcd_txn_result_free(&r);
	return err;
}

static int del(struct ks_etcd *c, const char *key, int64_t *rev)
{
	struct ks_etcd_op op = {
		.type = KS_ETCD_OP_DELETE,
		.keys = { .key = key },
	};
	struct ks_etcd_txn_result r = { 0 };
	int err = ks_etcd_txn(c, NULL, 0, &op, 1, NULL, 0, &r);

	if (rev != NULL)
		*rev = r.revision;
	ks_etcd_txn_result_free(&r);
	return err;
}

static int get(struct ks_etcd *c, const char *key, struct ks_etcd_kvs *out)
{
	struct ks_etcd_keys k = { .key = key };

	return ks_etcd_range(c, &k, 0, out);
}

/* ---- a watch callback that records what it gets ---------------------------- */

#define REC_MAX 512
#define REC_EVENTS 8

struct rec_event {
	enum ks_etcd_event_type type;
	char key[64];
	char value[64];
	size_t value_len;
	int64_t create_revision, mod_revision, version;
};

struct rec_resp {
	enum ks_etcd_watch_kind kind;
	int64_t revision;
	size_t n_events;
	struct rec_event ev[REC_EVENTS];
	double at;
};

struct recorder {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rec_resp r[REC_MAX];
	size_t n;
	struct ks_etcd *c;        /* for the reload after COMPACTED */
	int64_t reload_revision;  /* what that reload read */
};

static void rec_init(struct recorder *rec, struct ks_etcd *c)
{
	memset(rec, 0, sizeof(*rec));
	pthread_mutex_init(&rec->lock, NULL);
	pthread_cond_init(&rec->cond, NULL);
	rec->c = c;
}

static int64_t rec_cb(void *arg, const struct ks_etcd_watch_response *r)
{
	struct recorder *rec = arg;
	struct rec_resp x = {
		.kind = r->kind,
		.revision = r->revision,
		.n_events = r->n_events,
		.at = st_now(),
	};
	int64_t restart = 0;

	for (size_t i = 0; i < r->n_events && i < REC_EVENTS; i++) {
		const struct ks_etcd_kv *kv = &r->events[i].kv;
		struct rec_event *e = &x.ev[i];

		e->type = r->events[i].type;
		snprintf(e->key, sizeof(e->key), "%s", kv->key);
		e->value_len = kv->value_len;
		memcpy(e->value, kv->value,
		       kv->value_len < sizeof(e->value) ? kv->value_len
							: sizeof(e->value));
		e->create_revision = kv->create_revision;
		e->mod_revision = kv->mod_revision;
		e->version = kv->version;
	}
	if (r->kind == KS_ETCD_WATCH_COMPACTED) {
		/* what the store will do: reload everything, go on after it */
		struct ks_etcd_keys all = { .key = "", .prefix = true };
		struct ks_etcd_kvs kvs = { 0 };

		if (ks_etcd_range(rec->c, &all, 0, &kvs) == 0) {
			restart = kvs.revision + 1;
			rec->reload_revision = kvs.revision;
		}
		ks_etcd_kvs_free(&kvs);
	}
	pthread_mutex_lock(&rec->lock);
	if (rec->n < REC_MAX)
		rec->r[rec->n++] = x;
	pthread_cond_broadcast(&rec->cond);
	pthread_mutex_unlock(&rec->lock);
	return restart;
}

/* The index of the first response of `kind` at or after *from, waiting up
 * to `timeout` s; -1 if none came.  *from moves past it. */
static int rec_wait(struct recorder *rec, enum ks_etcd_watch_kind kind,
		    size_t *from, double timeout)
{
	double end = st_now() + timeout;
	int found = -1;

	pthread_mutex_lock(&rec->lock);
	for (;;) {
		for (size_t i = *from; i < rec->n; i++) {
			if (rec->r[i].kind == kind) {
				found = (int)i;
				*from = i + 1;
				break;
			}
		}
		if (found >= 0 || st_now() >= end)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&rec->cond, &rec->lock, &ts);
	}
	pthread_mutex_unlock(&rec->lock);
	return found;
}

/* All events delivered from index *from on, in order, as one list; waits
 * until there are `want` of them (or timeout). */
static size_t rec_events(struct recorder *rec, size_t from, size_t want,
			 struct rec_event *out, double timeout)
{
	double end = st_now() + timeout;
	size_t n = 0;

	for (;;) {
		n = 0;
		pthread_mutex_lock(&rec->lock);
		for (size_t i = from; i < rec->n; i++)
			for (size_t k = 0; k < rec->r[i].n_events &&
					   k < REC_EVENTS; k++)
				if (n < want)
					out[n++] = rec->r[i].ev[k];
		pthread_mutex_unlock(&rec->lock);
		if (n >= want || st_now() >= end)
			return n;
		usleep(10000);
	}
}

/* ---- tests -------------------------------------------------------------------- */

static void test_roundtrip(void)
{
	struct ks_etcd *c = client(etcd.url, "/kst/", 5);
	struct ks_etcd *other = client(etcd.url, "/other/", 5);
	struct ks_etcd_kvs kvs = { 0 };
	static char big[1 << 20];
	const char bin[] = { 'a', 0, 'b', 0, 0, '\xff', '\n' };
	int64_t r1, r2, r3;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	KT_EQ(put(c, "bin", bin, sizeof(bin), &r1), 0);
	KT_EQ(put(c, "empty", "", 0, &r2), 0);
	KT_EQ(put(c, "big", big, sizeof(big), &r3), 0);
	KT_EQ(put(other, "bin", "other", 5, NULL), 0);
	KT_CHECK(r1 > 0 && r2 == r1 + 1 && r3 == r2 + 1);

	KT_EQ(get(c, "bin", &kvs), 0);
	KT_EQ(kvs.n, 1);
	if (kvs.n == 1) {
		KT_CHECK(strcmp(kvs.kvs[0].key, "bin") == 0);
		KT_EQ(kvs.kvs[0].value_len, sizeof(bin));
		KT_CHECK(memcmp(kvs.kvs[0].value, bin, sizeof(bin)) == 0);
		KT_EQ(kvs.kvs[0].create_revision, r1);
		KT_EQ(kvs.kvs[0].mod_revision, r1);
		KT_EQ(kvs.kvs[0].version, 1);
	}
	KT_CHECK(kvs.revision >= r3 + 1);

	KT_EQ(get(c, "empty", &kvs), 0);
	KT_EQ(kvs.n, 1);
	if (kvs.n == 1) {
		KT_EQ(kvs.kvs[0].value_len, 0);
		KT_CHECK(kvs.kvs[0].value != NULL);
	}
	KT_EQ(get(c, "big", &kvs), 0);
	KT_EQ(kvs.n, 1);
	if (kvs.n == 1) {
		KT_EQ(kvs.kvs[0].value_len, sizeof(big));
		KT_CHECK(memcmp(kvs.kvs[0].value, big, sizeof(big)) == 0);
	}
	KT_EQ(get(c, "nothing", &kvs), 0);
	KT_EQ(kvs.n, 0);

	/* a second put: version 2, create_revision kept */
	KT_EQ(put(c, "bin", "x", 1, &r2), 0);
	KT_EQ(get(c, "bin", &kvs), 0);
	if (kvs.n == 1) {
		KT_EQ(kvs.kvs[0].version, 2);
		KT_EQ(kvs.kvs[0].create_revision, r1);
		KT_EQ(kvs.kvs[0].mod_revision, r2);
	}
	/* and an old revision still has the old value */
	{
		struct ks_etcd_keys k = { .key = "bin" };
		KT_EQ(ks_etcd_range(c, &k, r1, &kvs), 0);
		KT_EQ(kvs.revision, r1);
		KT_CHECK(kvs.n == 1 && kvs.kvs[0].value_len == sizeof(bin));
		KT_EQ(ks_etcd_range(c, &k, r2 + 1000, &kvs), ERANGE);
	}

	/* prefix isolation: only our keys, stripped of the prefix */
	{
		struct ks_etcd_keys all = { .key = "", .prefix = true };
		KT_EQ(ks_etcd_range(c, &all, 0, &kvs), 0);
		KT_EQ(kvs.n, 3);
		if (kvs.n == 3) {
			KT_CHECK(strcmp(kvs.kvs[0].key, "big") == 0);
			KT_CHECK(strcmp(kvs.kvs[1].key, "bin") == 0);
			KT_CHECK(strcmp(kvs.kvs[2].key, "empty") == 0);
		}
		KT_EQ(ks_etcd_range(other, &all, 0, &kvs), 0);
		KT_EQ(kvs.n, 1);
	}
	KT_EQ(del(c, "bin", NULL), 0);
	KT_EQ(del(c, "big", NULL), 0);
	KT_EQ(del(c, "empty", NULL), 0);
	KT_EQ(del(other, "bin", NULL), 0);
	ks_etcd_kvs_free(&kvs);
	ks_etcd_free(other);
	ks_etcd_free(c);
}

static void test_paging(void)
{
	struct ks_etcd_options o = {
		.endpoints = etcd.url, .prefix = "/page/", .timeout = 5,
		.page_size = 3,
	};
	struct ks_etcd *c = NULL;
	struct ks_etcd_kvs kvs = { 0 };
	struct ks_etcd_keys all = { .key = "", .prefix = true };
	struct ks_etcd_keys some = { .key = "k03", .range_end = "k07" };
	struct ks_etcd_keys pre = { .key = "k1", .prefix = true };
	char key[32];
	int64_t rev = 0;

	KT_EQ(ks_etcd_create(&o, &c), 0);
	for (int i = 0; i < 17; i++) {
		snprintf(key, sizeof(key), "k%02d", i);
		KT_EQ(put(c, key, key, strlen(key), &rev), 0);
	}
	KT_EQ(ks_etcd_range(c, &all, 0, &kvs), 0);
	KT_EQ(kvs.n, 17);
	KT_EQ(kvs.revision, rev);
	for (size_t i = 0; i < kvs.n; i++) {
		snprintf(key, sizeof(key), "k%02zu", i);
		KT_CHECK(strcmp(kvs.kvs[i].key, key) == 0);
	}
	KT_EQ(ks_etcd_range(c, &some, 0, &kvs), 0);
	KT_EQ(kvs.n, 4);
	KT_EQ(ks_etcd_range(c, &pre, 0, &kvs), 0);
	KT_EQ(kvs.n, 7);   /* k10..k16 */
	/* a snapshot: pages at the revision asked for */
	KT_EQ(put(c, "k00x", "new", 3, NULL), 0);
	KT_EQ(ks_etcd_range(c, &all, rev, &kvs), 0);
	KT_EQ(kvs.n, 17);
	{
		struct ks_etcd_op op = { .type = KS_ETCD_OP_DELETE, .keys = all };
		struct ks_etcd_txn_result r = { 0 };
		KT_EQ(ks_etcd_txn(c, NULL, 0, &op, 1, NULL, 0, &r), 0);
		KT_EQ(r.n_responses, 1);
		if (r.n_responses == 1)
			KT_EQ(r.responses[0].deleted, 18);
		ks_etcd_txn_result_free(&r);
	}
	ks_etcd_kvs_free(&kvs);
	ks_etcd_free(c);
}

static void test_txn(void)
{
	struct ks_etcd *c = client(etcd.url, "/kst/", 5);
	struct ks_etcd_txn_result r = { 0 };
	int64_t rev;
	double t0;
	int n = 100;

	/* create if absent: version 0 */
	struct ks_etcd_cmp absent = {
		.key = "s", .target = KS_ETCD_CMP_VERSION, .result = KS_ETCD_EQUAL,
		.number = 0,
	};
	struct ks_etcd_op put_s = {
		.type = KS_ETCD_OP_PUT, .keys = { .key = "s" }, .value = "v1",
		.value_len = 2,
	};
	struct ks_etcd_op read_s = {
		.type = KS_ETCD_OP_RANGE, .keys = { .key = "s" },
	};
	KT_EQ(ks_etcd_txn(c, &absent, 1, &put_s, 1, &read_s, 1, &r), 0);
	KT_CHECK(r.succeeded);
	rev = r.revision;
	/* again: fails, and the failure branch's range says why */
	KT_EQ(ks_etcd_txn(c, &absent, 1, &put_s, 1, &read_s, 1, &r), 0);
	KT_CHECK(!r.succeeded);
	KT_EQ(r.revision, rev);
	KT_EQ(r.n_responses, 1);
	if (r.n_responses == 1) {
		KT_EQ(r.responses[0].kvs.n, 1);
		if (r.responses[0].kvs.n == 1) {
			KT_EQ(r.responses[0].kvs.kvs[0].version, 1);
			KT_CHECK(memcmp(r.responses[0].kvs.kvs[0].value, "v1",
					3) == 0);
		}
	}

	/* every target and result */
	struct ks_etcd_cmp cmps[] = {
		{ .key = "s", .target = KS_ETCD_CMP_VALUE, .result = KS_ETCD_EQUAL,
		  .value = "v1", .value_len = 2 },
		{ .key = "s", .target = KS_ETCD_CMP_MOD, .result = KS_ETCD_EQUAL,
		  .number = rev },
		{ .key = "s", .target = KS_ETCD_CMP_CREATE,
		  .result = KS_ETCD_NOT_EQUAL, .number = 0 },
		{ .key = "s", .target = KS_ETCD_CMP_VERSION,
		  .result = KS_ETCD_GREATER, .number = 0 },
		{ .key = "s", .target = KS_ETCD_CMP_VERSION,
		  .result = KS_ETCD_LESS, .number = 2 },
	};
	struct ks_etcd_op put2 = put_s;
	put2.value = "v2";
	KT_EQ(ks_etcd_txn(c, cmps, 5, &put2, 1, NULL, 0, &r), 0);
	KT_CHECK(r.succeeded);
	KT_EQ(r.revision, rev + 1);
	/* now value, mod_revision and version have moved on: those fail */
	for (int i = 0; i < 5; i++) {
		if (i == 2 || i == 3)
			continue;   /* still true */
		KT_EQ(ks_etcd_txn(c, &cmps[i], 1, &put2, 1, NULL, 0, &r), 0);
		KT_CHECK(!r.succeeded);
	}

	/* errors: the same key twice, too large */
	KT_EQ(ks_etcd_txn(c, NULL, 0, (struct ks_etcd_op[]){ put_s, put2 }, 2,
			  NULL, 0, &r), EINVAL);
	{
		size_t len = 2 << 20;
		char *v = calloc(1, len);
		struct ks_etcd_op huge = put_s;

		huge.value = v;
		huge.value_len = len;
		KT_EQ(ks_etcd_txn(c, NULL, 0, &huge, 1, NULL, 0, &r), EFBIG);
		free(v);
	}

	/* latency: compare-and-swap increments, one after another */
	t0 = st_now();
	for (int i = 0; i < n; i++) {
		struct ks_etcd_cmp cas = {
			.key = "s", .target = KS_ETCD_CMP_VERSION,
			.result = KS_ETCD_EQUAL, .number = 2 + i,
		};
		KT_EQ(ks_etcd_txn(c, &cas, 1, &put2, 1, NULL, 0, &r), 0);
		KT_CHECK(r.succeeded);
	}
	printf("   txn (compare-and-swap put) round trip: %.2f ms\n",
	       (st_now() - t0) * 1000 / n);
	t0 = st_now();
	for (int i = 0; i < n; i++) {
		struct ks_etcd_kvs kvs = { 0 };
		KT_EQ(get(c, "s", &kvs), 0);
		ks_etcd_kvs_free(&kvs);
	}
	printf("   range of one key round trip: %.2f ms\n",
	       (st_now() - t0) * 1000 / n);
	KT_EQ(del(c, "s", NULL), 0);
	ks_etcd_txn_result_free(&r);
	ks_etcd_free(c);
}

static void test_watch(void)
{
	struct ks_etcd *c = client(etcd.url, "/w/", 5);
	struct ks_etcd *writer = client(etcd.url, "/w/", 5);
	struct ks_etcd *outside = client(etcd.url, "/wx/", 5);
	static struct recorder rec;
	struct ks_etcd_status st;
	struct rec_event ev[8];
	struct ks_etcd_txn_result r = { 0 };
	size_t at = 0;
	int64_t r1, r2, r3;
	double t_put, delay = 0;
	int i;

	rec_init(&rec, c);
	KT_EQ(ks_etcd_status(c, 0, &st, NULL, 0), 0);
	KT_EQ(ks_etcd_watch_start(c, st.revision + 1, rec_cb, &rec), 0);
	KT_EQ(ks_etcd_watch_start(c, st.revision + 1, rec_cb, &rec), EBUSY);
	KT_CHECK(rec_wait(&rec, KS_ETCD_WATCH_CONNECTED, &at, 5) >= 0);

	KT_EQ(put(outside, "a", "no", 2, NULL), 0);   /* not ours: unseen */
	t_put = st_now();
	KT_EQ(put(writer, "a", "1", 1, &r1), 0);
	i = rec_wait(&rec, KS_ETCD_WATCH_EVENTS, &at, 5);
	KT_CHECK(i >= 0);
	if (i >= 0) {
		delay = rec.r[i].at - t_put;
		KT_EQ(rec.r[i].n_events, 1);
		KT_EQ(rec.r[i].revision, r1);
		KT_EQ(rec.r[i].ev[0].type, KS_ETCD_PUT);
		KT_CHECK(strcmp(rec.r[i].ev[0].key, "a") == 0);
		KT_EQ(rec.r[i].ev[0].mod_revision, r1);
		KT_EQ(rec.r[i].ev[0].create_revision, r1);
		KT_EQ(rec.r[i].ev[0].version, 1);
	}
	printf("   watch delivery (put called -> callback): %.2f ms\n",
	       delay * 1000);

	/* a txn of three puts: one response, three events, one revision */
	struct ks_etcd_op three[3] = {
		{ .type = KS_ETCD_OP_PUT, .keys = { .key = "a" }, .value = "2",
		  .value_len = 1 },
		{ .type = KS_ETCD_OP_PUT, .keys = { .key = "b" }, .value = "",
		  .value_len = 0 },
		{ .type = KS_ETCD_OP_PUT, .keys = { .key = "c" }, .value = "\0z",
		  .value_len = 2 },
	};
	KT_EQ(ks_etcd_txn(writer, NULL, 0, three, 3, NULL, 0, &r), 0);
	r2 = r.revision;
	i = rec_wait(&rec, KS_ETCD_WATCH_EVENTS, &at, 5);
	KT_CHECK(i >= 0);
	if (i >= 0) {
		KT_EQ(rec.r[i].n_events, 3);
		KT_EQ(rec.r[i].revision, r2);
		for (int k = 0; k < 3 && k < (int)rec.r[i].n_events; k++) {
			KT_EQ(rec.r[i].ev[k].mod_revision, r2);
			KT_CHECK(strcmp(rec.r[i].ev[k].key,
					three[k].keys.key) == 0);
		}
		KT_EQ(rec.r[i].ev[0].version, 2);
		KT_EQ(rec.r[i].ev[1].value_len, 0);
		KT_EQ(rec.r[i].ev[2].value_len, 2);
		KT_CHECK(memcmp(rec.r[i].ev[2].value, "\0z", 2) == 0);
	}

	/* deletes */
	struct ks_etcd_op del_all = {
		.type = KS_ETCD_OP_DELETE, .keys = { .key = "", .prefix = true },
	};
	KT_EQ(ks_etcd_txn(writer, NULL, 0, &del_all, 1, NULL, 0, &r), 0);
	r3 = r.revision;
	i = rec_wait(&rec, KS_ETCD_WATCH_EVENTS, &at, 5);
	KT_CHECK(i >= 0);
	if (i >= 0) {
		KT_EQ(rec.r[i].n_events, 3);
		for (int k = 0; k < 3 && k < (int)rec.r[i].n_events; k++) {
			KT_EQ(rec.r[i].ev[k].type, KS_ETCD_DELETE);
			KT_EQ(rec.r[i].ev[k].mod_revision, r3);
		}
	}
	{
		struct ks_etcd_stats s;
		ks_etcd_get_stats(c, &s);
		KT_CHECK(s.connected);
		KT_EQ(s.revision, r3);
	}

	/* watch delivery delay over many puts */
	{
		double sum = 0, worst = 0;
		int n = 50, got = 0;

		for (int k = 0; k < n; k++) {
			t_put = st_now();
			KT_EQ(put(writer, "d", "x", 1, NULL), 0);
			i = rec_wait(&rec, KS_ETCD_WATCH_EVENTS, &at, 5);
			if (i >= 0) {
				double d = rec.r[i].at - t_put;
				sum += d;
				worst = d > worst ? d : worst;
				got++;
			}
		}
		KT_EQ(got, n);
		printf("   put + watch delivery: mean %.2f ms, worst %.2f ms "
		       "(%d puts)\n", sum * 1000 / (got ? got : 1), worst * 1000,
		       got);
	}
	(void)rec_events;
	(void)ev;
	ks_etcd_watch_stop(c);
	ks_etcd_watch_stop(c);   /* twice: a no-op */
	KT_EQ(del(writer, "d", NULL), 0);
	KT_EQ(del(outside, "a", NULL), 0);
	ks_etcd_txn_result_free(&r);
	ks_etcd_free(outside);
	ks_etcd_free(writer);
	ks_etcd_free(c);
}

/* etcd stopped (SIGSTOP): requests end in time with ETIMEDOUT, the watch
 * notices within keepalive + dead_after and comes back after SIGCONT. */
static void test_stopped(void)
{
	const double timeout = 1.0;
	struct ks_etcd *c = client(etcd.url, "/st/", timeout);
	static struct recorder rec;
	struct ks_etcd_kvs kvs = { 0 };
	struct ks_etcd_status st;
	size_t at = 0;
	double t0, t_stop, took;
	int i;

	rec_init(&rec, c);
	KT_EQ(put(c, "x", "1", 1, NULL), 0);   /* a warm connection */
	KT_EQ(ks_etcd_status(c, 0, &st, NULL, 0), 0);
	KT_EQ(ks_etcd_watch_start(c, st.revision + 1, rec_cb, &rec), 0);
	KT_CHECK(rec_wait(&rec, KS_ETCD_WATCH_CONNECTED, &at, 5) >= 0);

	etcd_proc_signal(&etcd, SIGSTOP);
	etcd_proc_wait_stopped(&etcd);
	t_stop = t0 = st_now();
	KT_EQ(get(c, "x", &kvs), ETIMEDOUT);
	took = st_now() - t0;
	printf("   range against a stopped etcd: ETIMEDOUT after %.3f s "
	       "(timeout %.1f s)\n", took, timeout);
	KT_CHECK(took >= timeout * 0.9 && took < timeout + 0.3);
	t0 = st_now();
	KT_EQ(put(c, "x", "2", 1, NULL), ETIMEDOUT);
	took = st_now() - t0;
	printf("   txn against a stopped etcd: ETIMEDOUT after %.3f s\n", took);
	KT_CHECK(took < timeout + 0.3);

	i = rec_wait(&rec, KS_ETCD_WATCH_DISCONNECTED, &at, 5);
	KT_CHECK(i >= 0);
	if (i >= 0)
		printf("   watch noticed the stop after %.2f s (keepalive 0.5 s, "
		       "dead after 1 s)\n", rec.r[i].at - t_stop);
	{
		struct ks_etcd_stats s;
		ks_etcd_get_stats(c, &s);
		KT_CHECK(!s.connected);
	}
	etcd_proc_signal(&etcd, SIGCONT);
	t0 = st_now();
	i = rec_wait(&rec, KS_ETCD_WATCH_CONNECTED, &at, 10);
	KT_CHECK(i >= 0);
	if (i >= 0)
		printf("   watch back %.2f s after SIGCONT\n", rec.r[i].at - t0);
	/* the put that timed out was applied (etcd had read it): the watch
	 * tells, so nothing is lost even then */
	KT_EQ(get(c, "x", &kvs), 0);
	KT_EQ(del(c, "x", NULL), 0);
	ks_etcd_kvs_free(&kvs);
	ks_etcd_free(c);
}

/* The watch resumes from the revision after the last it delivered: changes
 * made while it was away (through another port of a restarted etcd) all
 * arrive, once, in order. */
static void test_resume(void)
{
	struct ks_etcd *c = client(etcd.url, "/r/", 2);
	static struct recorder rec;
	struct ks_etcd_status st;
	struct rec_event ev[8];
	char other_url[64], both[160];
	int64_t revs[5];
	size_t at = 0, events_from;
	int n;

	rec_init(&rec, c);
	KT_EQ(put(c, "k", "0", 1, &revs[0]), 0);
	KT_EQ(ks_etcd_status(c, 0, &st, NULL, 0), 0);
	KT_EQ(ks_etcd_watch_start(c, revs[0], rec_cb, &rec), 0);
	KT_CHECK(rec_wait(&rec, KS_ETCD_WATCH_CONNECTED, &at, 5) >= 0);
	events_from = at;
	KT_CHECK(rec_events(&rec, events_from, 1, ev, 5) == 1);

	/* etcd goes away; back on another port only */
	etcd_proc_stop(&etcd);
	KT_CHECK(rec_wait(&rec, KS_ETCD_WATCH_DISCONNECTED, &at, 5) >= 0);
	snprintf(other_url, sizeof(other_url), "http://127.0.0.1:%d",
		 etcd_free_port());
	KT_EQ(etcd_proc_start(&etcd, other_url), 0);
	{
		struct ks_etcd *w2 = client(other_url, "/r/", 5);
		KT_EQ(put(w2, "k", "1", 1, &revs[1]), 0);
		KT_EQ(put(w2, "k2", "2", 1, &revs[2]), 0);
		KT_EQ(del(w2, "k", &revs[3]), 0);
		ks_etcd_free(w2);
	}
	/* and back where the watch looks */
	etcd_proc_stop(&etcd);
	snprintf(both, sizeof(both), "%s,%s", etcd.url, other_url);
	KT_EQ(etcd_proc_start(&etcd, both), 0);
	KT_CHECK(rec_wait(&rec, KS_ETCD_WATCH_CONNECTED, &at, 10) >= 0);
	KT_EQ(put(c, "k2", "3", 1, &revs[4]), 0);

	n = (int)rec_events(&rec, events_from, 5, ev, 10);
	KT_EQ(n, 5);
	for (int k = 0; k < n && k < 5; k++)
		KT_EQ(ev[k].mod_revision, revs[k]);
	if (n == 5) {
		KT_EQ(ev[3].type, KS_ETCD_DELETE);
		KT_CHECK(strcmp(ev[2].key, "k2") == 0);
		KT_EQ(ev[4].version, 2);
	}
	{
		struct ks_etcd_stats s;
		ks_etcd_get_stats(c, &s);
		KT_CHECK(s.reconnects >= 1);
		KT_EQ(s.revision, revs[4]);
	}
	ks_etcd_watch_stop(c);
	KT_EQ(del(c, "k2", NULL), 0);
	ks_etcd_free(c);
}

/* A watch from a compacted revision reports it; the callback reloads and
 * the watch goes on from there. */
static void test_compacted(void)
{
	struct ks_etcd *c = client(etcd.url, "/cp/", 5);
	static struct recorder rec;
	struct ks_etcd_kvs kvs = { 0 };
	struct rec_event ev[4];
	int64_t old, now, later;
	size_t at = 0;
	int i;

	rec_init(&rec, c);
	KT_EQ(put(c, "a", "1", 1, &old), 0);
	KT_EQ(put(c, "a", "2", 1, NULL), 0);
	KT_EQ(put(c, "b", "3", 1, &now), 0);
	KT_EQ(ks_etcd_compact(c, now), 0);
	{
		struct ks_etcd_keys k = { .key = "a" };
		KT_EQ(ks_etcd_range(c, &k, old, &kvs), ESTALE);
	}
	KT_EQ(ks_etcd_watch_start(c, old, rec_cb, &rec), 0);
	i = rec_wait(&rec, KS_ETCD_WATCH_COMPACTED, &at, 5);
	KT_CHECK(i >= 0);
	if (i >= 0)
		KT_EQ(rec.r[i].revision, now);
	KT_CHECK(rec.reload_revision >= now);
	KT_EQ(put(c, "c", "4", 1, &later), 0);
	KT_CHECK(rec_events(&rec, at, 1, ev, 5) == 1);
	KT_EQ(ev[0].mod_revision, later);
	{
		struct ks_etcd_stats s;
		ks_etcd_get_stats(c, &s);
		KT_EQ(s.compactions, 1);
	}
	ks_etcd_watch_stop(c);
	{
		struct ks_etcd_op op = {
			.type = KS_ETCD_OP_DELETE,
			.keys = { .key = "", .prefix = true },
		};
		struct ks_etcd_txn_result r = { 0 };
		KT_EQ(ks_etcd_txn(c, NULL, 0, &op, 1, NULL, 0, &r), 0);
		ks_etcd_txn_result_free(&r);
	}
	ks_etcd_kvs_free(&kvs);
	ks_etcd_free(c);
}

/* The first endpoint is a dead port: requests and the watch go on with the
 * second; with only dead endpoints, status fails in time with a message. */
static void test_failover(void)
{
	char dead[64], list[160], msg[512];
	struct ks_etcd *c;
	struct ks_etcd_kvs kvs = { 0 };
	struct ks_etcd_status st;
	struct ks_etcd_stats s;
	static struct recorder rec;
	size_t at = 0;
	double t0, took;

	snprintf(dead, sizeof(dead), "http://127.0.0.1:%d", etcd_free_port());
	snprintf(list, sizeof(list), "%s, %s", dead, etcd.url);
	c = client(list, "/f/", 2);
	rec_init(&rec, c);
	t0 = st_now();
	KT_EQ(put(c, "a", "1", 1, NULL), 0);
	took = st_now() - t0;
	printf("   put past a dead first endpoint: %.2f ms\n", took * 1000);
	KT_CHECK(took < 1.0);
	ks_etcd_get_stats(c, &s);
	KT_EQ(s.failovers, 1);
	KT_CHECK(strcmp(s.endpoint, etcd.url) == 0);
	KT_EQ(get(c, "a", &kvs), 0);
	KT_EQ(kvs.n, 1);
	KT_EQ(ks_etcd_status(c, 0, &st, NULL, 0), 0);
	KT_CHECK(strcmp(st.endpoint, etcd.url) == 0);
	KT_CHECK(strcmp(st.version, "3.4.23") == 0 || st.version[0] != '\0');
	KT_CHECK(st.has_leader);
	KT_EQ(ks_etcd_watch_start(c, 1, rec_cb, &rec), 0);
	KT_CHECK(rec_wait(&rec, KS_ETCD_WATCH_CONNECTED, &at, 5) >= 0);
	ks_etcd_watch_stop(c);
	KT_EQ(del(c, "a", NULL), 0);
	ks_etcd_free(c);

	/* a watch that starts on the dead one moves on by itself */
	snprintf(list, sizeof(list), "%s,%s", dead, etcd.url);
	c = client(list, "/f/", 2);
	rec_init(&rec, c);
	at = 0;
	KT_EQ(ks_etcd_watch_start(c, 1, rec_cb, &rec), 0);
	KT_CHECK(rec_wait(&rec, KS_ETCD_WATCH_DISCONNECTED, &at, 5) >= 0);
	KT_CHECK(rec_wait(&rec, KS_ETCD_WATCH_CONNECTED, &at, 5) >= 0);
	ks_etcd_free(c);   /* stops the watch too */

	/* nobody home */
	c = client(dead, "/f/", 0.5);
	t0 = st_now();
	KT_EQ(ks_etcd_status(c, 0, &st, msg, sizeof(msg)), ETIMEDOUT);
	took = st_now() - t0;
	printf("   status with no endpoint: %.3f s, \"%s\"\n", took, msg);
	KT_CHECK(took < 0.5 + 0.3);
	KT_CHECK(strstr(msg, dead) != NULL);
	ks_etcd_kvs_free(&kvs);
	ks_etcd_free(c);
}

/* Several threads at once through one client: compare-and-swap increments
 * of one key, retried on conflict, all land. */
struct incr_arg {
	struct ks_etcd *c;
	int n;
	int conflicts;
	int errors;
};

static void *incr_thread(void *p)
{
	struct incr_arg *a = p;

	for (int done = 0; done < a->n;) {
		struct ks_etcd_kvs kvs = { 0 };
		struct ks_etcd_txn_result r = { 0 };
		int64_t version = 0;
		char v[32];

		if (get(a->c, "n", &kvs) != 0) {
			a->errors++;
			continue;
		}
		if (kvs.n == 1)
			version = kvs.kvs[0].version;
		ks_etcd_kvs_free(&kvs);
		snprintf(v, sizeof(v), "%lld", (long long)version + 1);
		struct ks_etcd_cmp cas = {
			.key = "n", .target = KS_ETCD_CMP_VERSION,
			.result = KS_ETCD_EQUAL, .number = version,
		};
		struct ks_etcd_op op = {
			.type = KS_ETCD_OP_PUT, .keys = { .key = "n" }, .value = v,
			.value_len = strlen(v),
		};
		if (ks_etcd_txn(a->c, &cas, 1, &op, 1, NULL, 0, &r) != 0)
			a->errors++;
		else if (r.succeeded)
			done++;
		else
			a->conflicts++;
		ks_etcd_txn_result_free(&r);
	}
	return NULL;
}

static void test_threads(void)
{
	struct ks_etcd *c = client(etcd.url, "/th/", 5);
	struct ks_etcd_kvs kvs = { 0 };
	struct incr_arg args[6];
	pthread_t t[6];
	int conflicts = 0;
	double t0 = st_now();

	for (int i = 0; i < 6; i++) {
		args[i] = (struct incr_arg){ .c = c, .n = 40 };
		pthread_create(&t[i], NULL, incr_thread, &args[i]);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		KT_EQ(args[i].errors, 0);
		conflicts += args[i].conflicts;
	}
	printf("   6 threads x 40 increments: %.0f increments/s, %d conflicts\n",
	       240 / (st_now() - t0), conflicts);
	KT_EQ(get(c, "n", &kvs), 0);
	KT_EQ(kvs.n, 1);
	if (kvs.n == 1) {
		KT_EQ(kvs.kvs[0].version, 240);
		KT_CHECK(strcmp(kvs.kvs[0].value, "240") == 0);
	}
	KT_EQ(del(c, "n", NULL), 0);
	ks_etcd_kvs_free(&kvs);
	ks_etcd_free(c);
}

/* ---- a member that takes a request and dies ------------------------------ */

/* What the fake member does with each request it reads in full. */
enum fake_mode {
	FAKE_SWALLOW,   /* closes the connection: never reached etcd */
	FAKE_HANG,      /* keeps the connection, never answers (SIGSTOP) */
	FAKE_LAND,      /* hands it to the real etcd, drops etcd's answer and
			 * closes (killed after applying, before answering) */
};

struct fake_member {
	int listen_fd;
	char url[64];
	enum fake_mode mode;
	int etcd_port;          /* for FAKE_LAND */
	atomic_int taken;       /* requests read in full */
	atomic_bool stop;
	pthread_t thread;
};

/* Reads one HTTP request (headers and Content-Length bytes of body) into
 * buf; its length, or -1. */
static ssize_t read_request(int fd, char *buf, size_t size)
{
	size_t len = 0;

	while (len + 1 < size) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t got;
		char *end, *cl;

		if (poll(&p, 1, 5000) <= 0)
			return -1;
		got = read(fd, buf + len, size - 1 - len);
		if (got <= 0)
			return -1;
		len += (size_t)got;
		buf[len] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end == NULL)
			continue;
		cl = strcasestr(buf, "Content-Length:");
		if (cl == NULL || cl > end)
			return (ssize_t)len;
		if (len >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10))
			return (ssize_t)len;
	}
	return -1;
}

/* FAKE_LAND: the request to the real etcd, its answer read and dropped. */
static void land(struct fake_member *f, const char *req, size_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)f->etcd_port) };
	char answer[65536];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    write(fd, req, len) == (ssize_t)len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		/* the answer's first bytes: etcd has applied it; they go
		 * nowhere */
		if (poll(&p, 1, 5000) > 0 &&
		    read(fd, answer, sizeof(answer)) <= 0)
			printf("   fake member: no answer from etcd\n");
	}
	close(fd);
}

static void *fake_member_run(void *arg)
{
	struct fake_member *f = arg;
	int held[16], n_held = 0;

	while (!atomic_load(&f->stop)) {
		struct pollfd p = { .fd = f->listen_fd, .events = POLLIN };
		static char req[1 << 16];
		ssize_t len;
		int fd;

		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept(f->listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		len = read_request(fd, req, sizeof(req));
		if (len > 0) {
			if (f->mode == FAKE_LAND)
				land(f, req, (size_t)len);
			atomic_fetch_add(&f->taken, 1);
		}
		if (f->mode == FAKE_HANG && len > 0 && n_held < 16) {
			held[n_held++] = fd;
			continue;
		}
		/* a reset, as from a process killed with its socket open */
		struct linger l = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
		close(fd);
	}
	for (int i = 0; i < n_held; i++)
		close(held[i]);
	return NULL;
}

static void fake_member_start(struct fake_member *f, enum fake_mode mode)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);

	memset(f, 0, sizeof(*f));
	f->mode = mode;
	f->etcd_port = etcd.client_port;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (f->listen_fd < 0 ||
	    bind(f->listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(f->listen_fd, 16) != 0 ||
	    getsockname(f->listen_fd, (struct sockaddr *)&a, &alen) != 0 ||
	    pthread_create(&f->thread, NULL, fake_member_run, f) != 0) {
		printf("cannot start a fake member\n");
		exit(1);
	}
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d",
		 ntohs(a.sin_port));
}

static void fake_member_stop(struct fake_member *f)
{
	atomic_store(&f->stop, true);
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
}

/* "Create n = 1 if absent", reading n in the failure branch. */
static int create_n(struct ks_etcd *c, bool resendable,
		    struct ks_etcd_txn_result *r)
{
	struct ks_etcd_cmp absent = {
		.key = "n", .target = KS_ETCD_CMP_VERSION,
		.result = KS_ETCD_EQUAL, .number = 0,
	};
	struct ks_etcd_op put_n = {
		.type = KS_ETCD_OP_PUT, .keys = { .key = "n" }, .value = "1",
		.value_len = 1,
	};
	struct ks_etcd_op read_n = {
		.type = KS_ETCD_OP_RANGE, .keys = { .key = "n" },
	};

	if (resendable)
		return ks_etcd_txn_resendable(c, &absent, 1, &put_n, 1,
					      &read_n, 1, r);
	return ks_etcd_txn(c, &absent, 1, &put_n, 1, &read_n, 1, r);
}

/* A member takes a write and dies (or hangs, or dies after applying it)
 * before answering: a plain write fails with its fate unknown; a
 * resendable one goes to the next member within the timeout, which
 * applies it, or refuses it when the first copy applied, saying so. */
static void test_resend(void)
{
	struct fake_member f;
	struct ks_etcd_txn_result r = { 0 };
	struct ks_etcd_kvs kvs = { 0 };
	struct ks_etcd_stats s;
	char list[160];
	struct ks_etcd *c;
	double t0, took;

	/* died before etcd had it: a plain write is not sent again */
	fake_member_start(&f, FAKE_SWALLOW);
	snprintf(list, sizeof(list), "%s,%s", f.url, etcd.url);
	c = client(list, "/rs/", 5);
	KT_EQ(create_n(c, false, &r), EIO);
	KT_EQ(atomic_load(&f.taken), 1);
	KT_EQ(get(c, "n", &kvs), 0);
	KT_EQ(kvs.n, 0);
	ks_etcd_get_stats(c, &s);
	KT_EQ(s.resends, 0);
	ks_etcd_free(c);

	/* a resendable one is, and applies once */
	c = client(list, "/rs/", 5);
	KT_EQ(ks_etcd_txn_resendable(c, NULL, 0, NULL, 0, NULL, 0, &r),
	      EINVAL);
	t0 = st_now();
	KT_EQ(create_n(c, true, &r), 0);
	took = st_now() - t0;
	printf("   resendable write past a member that died with it: "
	       "%.2f ms\n", took * 1000);
	KT_CHECK(r.succeeded);
	KT_EQ(r.earlier_copy, EIO);
	KT_EQ(atomic_load(&f.taken), 2);
	ks_etcd_get_stats(c, &s);
	KT_EQ(s.resends, 1);
	KT_CHECK(strcmp(s.endpoint, etcd.url) == 0);
	KT_EQ(get(c, "n", &kvs), 0);
	KT_CHECK(kvs.n == 1 && kvs.kvs[0].version == 1);
	/* the next starts where the last answer came from: no resend */
	KT_EQ(del(c, "n", NULL), 0);
	KT_EQ(create_n(c, true, &r), 0);
	KT_CHECK(r.succeeded);
	KT_EQ(r.earlier_copy, 0);
	KT_EQ(del(c, "n", NULL), 0);
	ks_etcd_free(c);
	fake_member_stop(&f);

	/* hung with it: the next member gets it within the timeout */
	fake_member_start(&f, FAKE_HANG);
	snprintf(list, sizeof(list), "%s,%s", f.url, etcd.url);
	c = client(list, "/rs/", 2);
	t0 = st_now();
	KT_EQ(create_n(c, true, &r), 0);
	took = st_now() - t0;
	printf("   resendable write past a hung member: %.3f s (timeout "
	       "2 s)\n", took);
	KT_CHECK(r.succeeded);
	KT_EQ(r.earlier_copy, ETIMEDOUT);
	KT_CHECK(took < 2.0 + 0.3);
	KT_EQ(del(c, "n", NULL), 0);
	ks_etcd_free(c);
	fake_member_stop(&f);

	/* applied, then died before answering: the resend is refused, the
	 * failure branch shows the first copy's write, applied once */
	fake_member_start(&f, FAKE_LAND);
	snprintf(list, sizeof(list), "%s,%s", f.url, etcd.url);
	c = client(list, "/rs/", 5);
	KT_EQ(create_n(c, true, &r), 0);
	KT_CHECK(!r.succeeded);
	KT_EQ(r.earlier_copy, EIO);
	KT_EQ(r.n_responses, 1);
	if (r.n_responses == 1) {
		KT_EQ(r.responses[0].kvs.n, 1);
		if (r.responses[0].kvs.n == 1)
			KT_EQ(r.responses[0].kvs.kvs[0].version, 1);
	}
	KT_EQ(get(c, "n", &kvs), 0);
	KT_CHECK(kvs.n == 1 && kvs.kvs[0].version == 1);
	KT_EQ(del(c, "n", NULL), 0);
	ks_etcd_free(c);
	fake_member_stop(&f);
	ks_etcd_kvs_free(&kvs);
	ks_etcd_txn_result_free(&r);
}

static void test_bad_options(void)
{
	struct ks_etcd_options o = { .prefix = "/", .timeout = 1 };
	struct ks_etcd *c = NULL;
	const char *bad[] = { "", "127.0.0.1:2379", "http://", "http://a b",
			      "http://a,,http://b", "ftp://x" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.endpoints = bad[i];
		KT_EQ(ks_etcd_create(&o, &c), EINVAL);
		KT_CHECK(c == NULL);
	}
	o.endpoints = "http://127.0.0.1:1";
	o.timeout = 0;
	KT_EQ(ks_etcd_create(&o, &c), EINVAL);
	o.timeout = 1;
	KT_EQ(ks_etcd_create(&o, &c), 0);
	KT_EQ(ks_etcd_watch_start(c, 0, rec_cb, NULL), EINVAL);
	ks_etcd_free(c);
}

int main(void)
{
	int err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (system("command -v etcd >/dev/null") != 0) {
		printf("etcd is not installed (Debian: etcd-server)\n");
		return 77;   /* meson: skipped */
	}
	atexit(cleanup_etcd);
	for (int tries = 0; tries < 3; tries++) {
		etcd_proc_cleanup(&etcd);
		err = etcd_proc_init(&etcd);
		if (!err)
			err = etcd_proc_start(&etcd, NULL);
		if (!err)
			break;
	}
	if (err) {
		printf("could not start etcd: %s (log in %s/etcd.log)\n",
		       strerror(err), etcd.dir);
		return 1;
	}
	printf("etcd at %s, data in %s\n", etcd.url, etcd.dir);
	KT_RUN_HERE(test_bad_options, "bad options");
	KT_RUN_HERE(test_roundtrip, "roundtrip");
	KT_RUN_HERE(test_paging, "paging");
	KT_RUN_HERE(test_txn, "txn");
	KT_RUN_HERE(test_watch, "watch");
	KT_RUN_HERE(test_threads, "threads");
	KT_RUN_HERE(test_failover, "failover");
	KT_RUN_HERE(test_resend, "resend");
	KT_RUN_HERE(test_compacted, "compacted");
	KT_RUN_HERE(test_stopped, "stopped");
	KT_RUN_HERE(test_resume, "resume");
	return kt_finish("etcd_client");
}
